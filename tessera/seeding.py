"""Seeds from names: `seed_for(seed, "what", index)` is the same 63-bit seed in every process and Python
run, so a draw keyed by what it is for (a sample, a step, a scene) never depends on the order of other
draws or on how many processes share the work."""

from __future__ import annotations

import hashlib
from typing import Any

import torch


def seed_for(*keys: Any) -> int:
    """A 63-bit seed from any tuple of ints and strings, the same in every process and Python run."""
    digest = hashlib.blake2b(repr(keys).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def generator(*keys: Any, device: torch.device | str = "cpu") -> torch.Generator:
    """A torch generator on `device` seeded by `seed_for(*keys)`."""
    return torch.Generator(device).manual_seed(seed_for(*keys))
