"""Pick the fastest torch device present: CUDA, then Apple's MPS, else the CPU."""

from __future__ import annotations

import os


def pick_device(prefer: str | None = None) -> "torch.device":  # noqa: F821
    """`prefer` (or env FACELAB_DEVICE) forces one, e.g. "cpu" to compare against a GPU."""
    import torch

    choice = prefer or os.environ.get("FACELAB_DEVICE")
    if choice:
        return torch.device(choice)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def native_bf16(device: "torch.device") -> bool:  # noqa: F821
    """Whether the device computes bfloat16 natively (a CPU with AVX-512 BF16 or AMX): elsewhere
    autocast to bf16 emulates it, slower than fp32."""
    import torch

    if device.type != "cpu":
        return False
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # torch's own CPU probes
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def train_dtype(precision: str, device: "torch.device") -> "torch.dtype | None":  # noqa: F821
    """The autocast dtype of a training step for `ModelConfig.precision` on `device`, or None
    (plain fp32). "auto" is bf16 only where it is native (`native_bf16`); on a GPU it stays
    fp32, which is what facelab has been measured with there."""
    import torch

    if precision == "bf16" or (precision == "auto" and native_bf16(device)):
        return torch.bfloat16
    return None
