"""What a resumable run of the DiT or VAE trainer needs besides the model: EMA and RNG states (the
learning-rate schedule and the flattening of optimizer state live in `tessera.checkpoint`, a floor
below, so that the captioner's trainer shares them; see docs/design.md, "Floors").

Randomness in the trainers never comes from global generators: every random draw of a step uses a
generator seeded by `tessera.seeding.seed_for(seed, "what", step or sample index)`. A resumed run
therefore draws the same numbers without replaying anything, and a sample's noise is the same however
many ranks share the batch. The global RNG states are still saved and restored, for any library code
that uses them.
"""

from __future__ import annotations

import math
import random

import numpy as np
import torch
from torch import Tensor, nn

from tessera.train.distributed import like


class EMA:
    """Exponential moving average of a module's trainable parameters, kept beside them (same device,
    same sharding: under FSDP each rank averages its own shard).

    The decay ramps up as `min(decay, (1 + n) / (10 + n))` after n updates, so short runs are not
    dominated by the random initialisation.
    """

    def __init__(self, module: nn.Module) -> None:
        named = [(k, p) for k, p in module.named_parameters() if p.requires_grad]
        self.names = [k for k, _ in named]
        self.params = [p for _, p in named]
        self.shadow = [p.detach().clone().float() for p in self.params]
        self.updates = 0

    @torch.no_grad()
    def update(self, decay: float) -> None:
        """shadow <- d shadow + (1 - d) param."""
        d = min(decay, (1 + self.updates) / (10 + self.updates))
        torch._foreach_lerp_(self.shadow, [p.detach().float() for p in self.params], 1 - d)
        self.updates += 1

    def tensors(self) -> dict[str, Tensor]:
        """name -> shadow tensor (sharded tensors stay sharded; see `distributed.full_tensors`)."""
        return dict(zip(self.names, self.shadow, strict=True))

    @torch.no_grad()
    def load(self, tensors: dict[str, Tensor], updates: int) -> None:
        """Restore shadows from full tensors (each rank takes its shard of a sharded parameter)."""
        missing = sorted(set(self.names) - set(tensors))
        if missing:
            raise ValueError(f"EMA state lacks {missing[:5]}; was it saved by another model?")
        for name, s in zip(self.names, self.shadow, strict=True):
            s.copy_(like(tensors[name], s))
        self.updates = updates


# ---------------------------------------------------------------------------------------------
# Global RNG states as uint8 tensors


def rng_tensors() -> dict[str, Tensor]:
    """torch (CPU and CUDA), numpy and Python RNG states, each as a uint8 tensor."""
    out = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["rng.cuda"] = torch.cuda.get_rng_state()
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    np_state = np.concatenate([keys.astype(np.uint32), np.array([pos, has_gauss], dtype=np.uint32)])
    out["rng.numpy"] = torch.from_numpy(np_state.view(np.uint8).copy())
    out["rng.numpy_gauss"] = torch.from_numpy(np.array([gauss], dtype=np.float64).view(np.uint8).copy())
    version, internal, gauss_next = random.getstate()
    py = np.array(internal, dtype=np.uint64)  # 624 words + position, all < 2**32
    out["rng.python"] = torch.from_numpy(py.view(np.uint8).copy())
    out["rng.python_gauss"] = torch.from_numpy(
        np.array([np.nan if gauss_next is None else gauss_next], dtype=np.float64).view(np.uint8).copy()
    )
    return out


def set_rng(tensors: dict[str, Tensor]) -> None:
    """Inverse of `rng_tensors` (a missing CUDA state is skipped)."""
    torch.set_rng_state(tensors["rng.torch"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])
    words = tensors["rng.numpy"].numpy().view(np.uint32)
    (gauss,) = tensors["rng.numpy_gauss"].numpy().view(np.float64)
    np.random.set_state(("MT19937", words[:-2], int(words[-2]), int(words[-1]), float(gauss)))
    internal = tuple(int(v) for v in tensors["rng.python"].numpy().view(np.uint64))
    (gauss_next,) = tensors["rng.python_gauss"].numpy().view(np.float64)
    random.setstate((3, internal, None if math.isnan(gauss_next) else float(gauss_next)))
