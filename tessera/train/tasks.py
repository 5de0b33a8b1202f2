"""The conditioning-task mix of DiT training: which task each clip trains on (the tasks themselves, and
how a task's given frames become `cond`, are `tessera.conditioning`, shared with sampling)."""

from __future__ import annotations

import torch
from torch import Tensor

from tessera.conditioning import TASKS, pixel_mask_for


def check_mix(mix: dict[str, float]) -> None:
    """Raise ValueError for a task name that does not exist."""
    unknown = sorted(set(mix) - set(TASKS))
    if unknown:
        raise ValueError(f"unknown conditioning tasks {unknown}; allowed: {', '.join(TASKS)}")


def draw_task(mix: dict[str, float], frames: int, generator: torch.Generator) -> tuple[str, Tensor]:
    """Draw a task from the weighted mix and its pixel mask for a clip of `frames` frames.

    A one-frame clip (an image) is always text-to-video: giving its frame would leave nothing to learn.
    """
    check_mix(mix)
    if frames == 1:
        return "t2v", torch.zeros(1, dtype=torch.bool)
    names = list(mix)
    weights = torch.tensor([mix[n] for n in names], dtype=torch.float64)
    task = names[int(torch.multinomial(weights, 1, generator=generator))]
    t_z = 1 + (frames - 1) // 4
    k = int(torch.randint(1, t_z, (1,), generator=generator))  # used by extend, tail and connect
    return task, pixel_mask_for(task, frames, k, generator)
