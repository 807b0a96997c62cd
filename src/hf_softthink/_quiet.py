"""Third-party log messages that a user of this package cannot act on, filtered at import.

* bitsandbytes (>= 0.48), when first imported on a CPU with AVX512-BF16, tries to download an optional
  fused 4-bit kernel with the `kernels` package and, without it (or without network), logs
  "Failed to load CPU gemm_4bit_forward from kernels-community: No module named 'kernels' ...". It then
  uses its own CPU kernel; 4-bit loading and training work either way. peft imports bitsandbytes whenever
  it is installed, so the message appeared on every LoRA run. Only that message is dropped; installing
  `kernels` (and having network) enables the fused kernel. A program that imports peft or bitsandbytes
  *before* hf_softthink still gets the message once.
"""

from __future__ import annotations

import logging

#: the logger of bitsandbytes' CPU backend, and the start of the message dropped from it
BITSANDBYTES_CPU_LOGGER = "bitsandbytes.backends.cpu.ops"
KERNELS_NOTICE = "Failed to load CPU gemm_4bit_forward from kernels-community"


class _DropKernelsNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(KERNELS_NOTICE)


def quiet_third_party_notices() -> None:
    """Install the filters (idempotent)."""
    logger = logging.getLogger(BITSANDBYTES_CPU_LOGGER)
    if not any(isinstance(f, _DropKernelsNotice) for f in logger.filters):
        logger.addFilter(_DropKernelsNotice())
