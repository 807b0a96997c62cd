#!/usr/bin/env bash
# Wheels the GPU image lacks for benchmarks/check_multi_gpu.py (it has torch, accelerate, peft, tokenizers,
# safetensors, pandas, pyarrow ...; not transformers 5.24, trl 1.16, datasets or deepspeed). Run HERE, from the
# repository root, where PyPI is reachable; it fills .whl/ (git-ignored through .git/info/exclude) for
# Python 3.12 on x86-64. DeepSpeed is published as a source archive only: it is built here into a pure-Python
# wheel (its CUDA ops are compiled just in time there, if ever; the trainer's own AdamW needs none).
#
# Then on the GPU machine (the device tool: carry .whl):
#   python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl \
#     && PYTHONPATH=/tmp/site:src python3 benchmarks/check_multi_gpu.py --out "$OUT/multi_gpu"
set -euo pipefail
cd "$(dirname "$0")/.."
exclude="$(git rev-parse --git-common-dir)/info/exclude"
grep -qx '/.whl/' "$exclude" 2>/dev/null || echo '/.whl/' >> "$exclude"
mkdir -p .whl
platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
           --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${platforms[@]}" -d .whl \
    transformers==5.24.0 trl==1.16.0 peft==0.21.2 datasets dill multiprocess xxhash \
    hjson pydantic pydantic-core annotated-types typing-inspection py-cpuinfo msgpack ninja
python3 -m pip download -q --no-deps --no-binary=:all: -d .whl/src deepspeed
python3 -m pip wheel -q --no-deps --no-build-isolation -w .whl .whl/src/deepspeed-*.tar.gz
rm -rf .whl/src
ls .whl
