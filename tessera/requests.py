"""Requests checked at the public boundary: the one error type of a request the model cannot serve, and
the checks that raise it before any work."""

from __future__ import annotations

import os

import torch


class RequestError(ValueError):
    """A generation request the model cannot serve; the message names the argument and valid values."""


def pick_device(device: str = "auto") -> torch.device:
    """'auto' -> cuda when available, else cpu; anything else is checked. Under torchrun 'cuda' is the
    process's own GPU, cuda:LOCAL_RANK."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and int(os.environ.get("WORLD_SIZE", "1")) > 1 and torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise RequestError(f"--device must be cpu, cuda, cuda:N or auto; got '{device}'")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RequestError(f"--device {device} asked for, but this machine has no CUDA GPU; use cpu")
    return torch.device(device)
