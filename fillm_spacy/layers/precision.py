"""The precision the frozen LLM layers run in at inference.

Frozen layers never train, so they may run in whatever precision is fastest as long as the heads
read the same features within tolerance. bfloat16 matrix products are fast where the hardware
has them (x86 CPUs with AVX512-BF16 or AMX, CUDA GPUs with compute capability 8.0+) and slower than
float32 where it does not, so "auto" picks bfloat16 only there. Weights stay as loaded (the base
model is shared and its fingerprint unchanged): the layers run under torch.autocast, and their
outputs go back to float32 before the encoder's own modules.
"""

import logging
from functools import cache
from pathlib import Path
from typing import FrozenSet, Optional, Tuple

import torch

PRECISIONS = ("auto", "float32", "bfloat16")
# x86 flags (Linux /proc/cpuinfo) whose presence makes bfloat16 matrix products fast.
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")

logger = logging.getLogger("fillm_spacy")


@cache
def cpu_info() -> Tuple[str, FrozenSet[str]]:
    """The first CPU's model name and flags from Linux /proc/cpuinfo ("", no flags elsewhere)."""
    name, flags = "", frozenset()
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return name, flags
    for line in lines:
        key, _, value = line.partition(":")
        if key.strip() == "model name" and not name:
            name = value.strip()
        elif key.strip() == "flags":
            return name, frozenset(value.split())
    return name, flags


def cpu_has_fast_bf16() -> bool:
    return any(flag in cpu_info()[1] for flag in BF16_CPU_FLAGS)


def device_has_fast_bf16(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_has_fast_bf16()


_FELL_BACK = set()


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")


def inference_dtype(precision: str, device: torch.device) -> Optional[torch.dtype]:
    """The autocast dtype for `precision` on `device`, None for plain float32. "bfloat16" on a
    device without fast bfloat16 falls back to float32 with one log line (it would run slower)."""
    check_precision(precision)
    if precision == "float32" or device.type not in ("cpu", "cuda"):
        return None
    if device_has_fast_bf16(device):
        return torch.bfloat16
    if precision == "bfloat16" and device.type not in _FELL_BACK:
        _FELL_BACK.add(device.type)
        logger.warning(
            "precision='bfloat16': this %s has no fast bfloat16 (CPU flags %s); the LLM layers run in float32.",
            device.type,
            " or ".join(BF16_CPU_FLAGS),
        )
    return None
