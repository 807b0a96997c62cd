#!/usr/bin/env bash
# Wheels the GPU image lacks for benchmarks/check_gpu.py and benchmarks/check_multi_gpu.py. The image of the
# device tool (nvidia-h200: Python 3.12, torch 2.11 cu130) has torch, accelerate, peft, tokenizers, safetensors,
# huggingface-hub, pandas, pyarrow ...; it lacks our pinned transformers 5.24 (it has 5.17) and trl 1.16, and
# datasets, bitsandbytes and deepspeed; it has no `unzip`. Run HERE, from the repository root, where PyPI is
# reachable: it fills .whl/ (git-ignored through .git/info/exclude) for Python 3.12 on x86-64, pinned to the
# versions this project is tested with. Nothing here or there needs `unzip`: wheels are read and trimmed with
# Python's zipfile, and installed with `pip install --no-index --target`.
#
# * bitsandbytes ships one library per CUDA / ROCm version (43 MB); the device tool carries at most 64 MiB, so
#   the wheel is trimmed to the CUDA versions in $BNB_CUDA (default 130,132: torch 2.11 cu130 loads
#   libbitsandbytes_cuda130.so) and its RECORD rewritten to match.
# * DeepSpeed is published as a source archive only: it is built here into a pure-Python wheel (its CUDA ops
#   are compiled just in time there, if ever; the trainer's own AdamW needs none).
#
# Then on the GPU machine (the device tool: carry .whl), one command installs them and runs the check:
#   PYTHONUNBUFFERED=1 python3 benchmarks/check_gpu.py --wheels .whl --out "$OUT"
# or, for the multi-GPU check alone:
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl \
#     && PYTHONPATH=/tmp/site:src python3 benchmarks/check_multi_gpu.py --out "$OUT/multi_gpu"
set -euo pipefail
cd "$(dirname "$0")/.."
exclude="$(git rev-parse --git-common-dir)/info/exclude"
mkdir -p "$(dirname "$exclude")"
grep -qx '/.whl/' "$exclude" 2>/dev/null || echo '/.whl/' >> "$exclude"
rm -rf .whl
mkdir -p .whl
platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64
           --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
target=(--python-version 3.12 --implementation cp "${platforms[@]}")
python3 -m pip download -q --no-deps --only-binary=:all: "${target[@]}" -d .whl \
    transformers==5.24.0 trl==1.16.0 peft==0.21.2 bitsandbytes==0.50.2 \
    datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 xxhash==4.1.0 fsspec==2026.9.0 \
    regex==2026.11.19 typing_extensions==4.16.0 \
    hjson==3.1.0 pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 \
    py-cpuinfo==9.0.0 msgpack==1.2.4 ninja==1.13.2
python3 -m pip download -q --no-deps --no-binary=:all: -d .whl/src deepspeed==0.19.8
python3 -m pip wheel -q --no-deps --no-build-isolation -w .whl .whl/src/deepspeed-*.tar.gz
rm -rf .whl/src

# bitsandbytes: keep the libraries of the CUDA versions in $BNB_CUDA only (Python's zipfile; no unzip)
python3 benchmarks/check_gpu.py --trim-bitsandbytes .whl/bitsandbytes-*.whl --keep-cuda "${BNB_CUDA:-130,132}"

# the install step of the GPU machine, checked here for that platform (pip resolves nothing: --no-deps)
rm -rf .whl/.check
python3 -m pip install -q --no-index --no-deps --no-compile --only-binary=:all: "${target[@]}" \
    --target .whl/.check .whl/*.whl
rm -rf .whl/.check
du -ch .whl/*.whl | tail -1
ls .whl
