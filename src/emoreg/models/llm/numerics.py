"""Which numeric path a run takes here: bf16 where the hardware runs it fast, else fp32."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...errors import EmoregError

BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # CPU flags that make bf16 matmuls fast


def cpu_bf16_flags(cpuinfo: str | None = None) -> list[str]:
    """The CPU flags of ``BF16_FLAGS`` this machine has (``cpuinfo``: the text of /proc/cpuinfo,
    read when None; an unreadable file gives none)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return []
    words = set(cpuinfo.split())
    return [flag for flag in BF16_FLAGS if flag in words]


def bf16_fast(device, cpuinfo: str | None = None) -> bool:
    """Whether bf16 matmuls are fast here: CUDA with bf16 support, or a CPU with AVX-512 BF16 or
    AMX (measured 2.6x fp32 on a 1024^3 matmul); on other CPUs they are ~100x slower than fp32."""
    import torch

    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return bool(cpu_bf16_flags(cpuinfo))


def resolve_dtype(choice: str, device, cpuinfo: str | None = None) -> str:
    """``bf16`` or ``fp32`` for a model's ``dtype`` parameter: ``auto`` takes bf16 where it is fast."""
    if choice not in ("auto", "bf16", "fp32"):
        raise EmoregError(f"llm: dtype must be auto, bf16 or fp32, got {choice!r}")
    if choice == "auto":
        return "bf16" if bf16_fast(device, cpuinfo) else "fp32"
    return choice


def numerics() -> dict[str, Any]:
    """What decides a run's numeric path on this machine, for its environment.json."""
    import torch

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    return {"device": device.type, "cpu_bf16_flags": cpu_bf16_flags(), "bf16_fast": bf16_fast(device),
            "auto_dtype": resolve_dtype("auto", device), "torch_threads": torch.get_num_threads(),
            "cuda_device": torch.cuda.get_device_name(0) if cuda else None}
