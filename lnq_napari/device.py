"""Which torch device to compute on: "auto", "cpu", "cuda" or "cuda:N" -> a ``torch.device``."""

from __future__ import annotations

from lnq_napari.errors import LNQError


def resolve_device(device=None):
    """A torch device from "auto" | "cpu" | "cuda" | "cuda:N" or a ``torch.device`` (None: "auto"); LNQError
    when CUDA is asked but absent."""
    import torch

    device = str(device or "auto").lower()
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise LNQError("device 'cuda' was asked but no CUDA GPU is available; use --device cpu or auto")
        return torch.device(device)
    if device == "cpu":
        return torch.device("cpu")
    raise LNQError(f"unknown device {device!r}; use auto, cpu or cuda")
