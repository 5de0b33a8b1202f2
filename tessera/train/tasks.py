"""Conditioning tasks for DiT training: which frames of a clip are given, and the DiT's `cond` input.

One mechanism serves every capability (DESIGN.md, "Conditioning on given frames"). A task marks given
*pixel* frames of a clip of T = 1 + 4(T_z - 1) frames:

    t2v         nothing given (text-to-video)
    i2v         the first frame (image-to-video)
    extend      the first 1 + 4(k - 1) frames, k in [1, T_z - 1] (continue a clip forward)
    last        the last frame (end on a given image)
    first_last  the first and the last frame (connect two images; a loop when they are equal)
    tail        the last 4k frames, k in [1, T_z - 1] (extend a clip backward)

From the pixel mask follow
- the latent frames held clean (`t = 0`, no loss): latent j is exact only when pixel frames 0..4j are
  all given (the causal VAE's latent j depends on those and nothing later), so only a given prefix;
- `cond` (C_z + 4, T_z, h, w): the normalised VAE latents of the masked video (given frames, zeros =
  mid-grey elsewhere) and 4 mask channels per latent frame, one per pixel frame it covers; latent
  frame 0 covers only pixel frame 0, whose mask fills all 4 channels (Wan's layout). Text-to-video
  uses `cond = None`, which the DiT reads as zeros, so no VAE call is spent on it.

Sampling must build `cond` with these same functions (`pixel_mask_for`, `build_cond`).
"""

from __future__ import annotations

import torch
from torch import Tensor

TASKS = ("t2v", "i2v", "extend", "last", "first_last", "tail")


def check_mix(mix: dict[str, float]) -> None:
    """Raise ValueError for a task name that does not exist."""
    unknown = sorted(set(mix) - set(TASKS))
    if unknown:
        raise ValueError(f"unknown conditioning tasks {unknown}; allowed: {', '.join(TASKS)}")


def pixel_mask_for(task: str, frames: int, k: int = 1) -> Tensor:
    """Given pixel frames (frames,) bool of `task` on a clip of `frames` frames (k for extend / tail)."""
    t_z = 1 + (frames - 1) // 4
    mask = torch.zeros(frames, dtype=torch.bool)
    if task == "i2v":
        mask[0] = True
    elif task == "extend":
        mask[: 1 + 4 * (min(k, t_z - 1) - 1)] = True
    elif task == "last":
        mask[-1] = True
    elif task == "first_last":
        mask[0] = mask[-1] = True
    elif task == "tail":
        mask[frames - 4 * min(k, t_z - 1) :] = True
    elif task != "t2v":
        raise ValueError(f"unknown conditioning task '{task}'; allowed: {', '.join(TASKS)}")
    return mask


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
    k = int(torch.randint(1, t_z, (1,), generator=generator))  # used by extend and tail only
    return task, pixel_mask_for(task, frames, k)


def given_latents(pixel_mask: Tensor) -> Tensor:
    """Latent frames (T_z,) bool held clean: latent j iff pixel frames 0..4j are all given."""
    frames = pixel_mask.shape[0]
    prefix = torch.cumprod(pixel_mask.to(torch.int64), 0).bool()  # pixel frames 0..i all given
    return prefix[torch.arange(0, frames, 4)]


def mask_channels(pixel_mask: Tensor, height: int, width: int) -> Tensor:
    """(4, T_z, h, w) float: latent frame 0 repeats pixel frame 0's flag 4 times, latent j > 0 carries
    pixel frames 4j-3..4j."""
    m = torch.cat([pixel_mask[:1].repeat(4), pixel_mask[1:]]).float()  # (4 T_z,)
    m = m.view(-1, 4).T  # (4, T_z)
    return m[:, :, None, None].expand(-1, -1, height, width).contiguous()


@torch.no_grad()
def build_cond(vae: torch.nn.Module, video: Tensor, pixel_mask: Tensor) -> Tensor:
    """The DiT's extra input for clip `video` (3, T, H, W) with given frames `pixel_mask` (T,):
    (C_z + 4, T_z, H/8, W/8) = [normalised latents of the masked video | mask channels]."""
    keep = pixel_mask.to(video.device, video.dtype)[None, :, None, None]
    z = vae.encode_latents((video * keep)[None])[0]  # (C_z, T_z, h, w)
    return torch.cat([z, mask_channels(pixel_mask, *z.shape[-2:]).to(z)], dim=0)
