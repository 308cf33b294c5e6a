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
