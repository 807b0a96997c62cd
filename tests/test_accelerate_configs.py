"""The accelerate configs of examples/accelerate/ load with accelerate's own parser and say what they claim."""

from pathlib import Path

import pytest
from accelerate.commands.config.config_args import load_config_from_file
from accelerate.utils import DistributedType

CONFIGS = Path(__file__).resolve().parents[1] / "examples" / "accelerate"
EXPECTED = {
    "ddp.yaml": (DistributedType.MULTI_GPU, {}),
    "fsdp.yaml": (DistributedType.FSDP, {"fsdp_version": 2}),
    "fsdp_cpu.yaml": (DistributedType.FSDP, {"fsdp_version": 2}),
    "deepspeed_zero2.yaml": (DistributedType.DEEPSPEED, {"zero_stage": 2}),
    "deepspeed_zero3.yaml": (DistributedType.DEEPSPEED, {"zero_stage": 3}),
}


def test_every_config_is_listed():
    assert sorted(p.name for p in CONFIGS.glob("*.yaml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_config_loads_with_accelerate(name):
    config = load_config_from_file(str(CONFIGS / name))
    kind, settings = EXPECTED[name]
    assert config.distributed_type == kind and config.num_processes == 2
    plugin = config.fsdp_config if kind == DistributedType.FSDP else config.deepspeed_config
    assert settings.items() <= (plugin or {}).items()
    if name == "fsdp_cpu.yaml":
        assert config.use_cpu and config.mixed_precision == "no"
    else:
        assert not config.use_cpu and config.mixed_precision == "bf16"
