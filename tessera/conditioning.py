"""Conditioning on given frames: which frames of a clip are given, and the DiT's `cond` input, built
the same way for sampling and for training.

One mechanism serves every capability (docs/design.md, "Conditioning on given frames"). A task marks given
*pixel* frames of a clip of T = 1 + 4(T_z - 1) frames:

    t2v         nothing given (text-to-video)
    i2v         the first frame (image-to-video)
    extend      the first 1 + 4(k - 1) frames, k in [1, T_z - 1] (continue a clip forward)
    last        the last frame (end on a given image)
    first_last  the first and the last frame (connect two images)
    tail        the last 4k frames, k in [1, T_z - 1] (extend a clip backward)
    connect     the first 1 + 4(a - 1) and the last 4b frames, a = ceil(k/2), b = floor(k/2) (the
                last frame when b = 0): the end of one clip and the start of another, with motion
    loop        the first and the last frame of a clip made periodic: it plays its first half and then
                that half backwards, so it ends on the frame it starts with (`for_task`)
    random      each frame given with probability 1/4 (at least one, never all): anything in between

From the pixel mask follow
- the latent frames held clean (`t = 0`, no loss): latent j is exact only when pixel frames 0..4j are
  all given (the causal VAE's latent j depends on those and nothing later), so only a given prefix;
- `cond` (C_z + 4, T_z, h, w): the normalised VAE latents of the masked video (given frames, zeros =
  mid-grey elsewhere) and 4 mask channels per latent frame, one per pixel frame it covers; latent
  frame 0 covers only pixel frame 0, whose mask fills all 4 channels (Wan's layout). Text-to-video
  uses `cond = None`, which the DiT reads as zeros, so no VAE call is spent on it.

Sampling and training both build `cond` with these functions (`pixel_mask_for`, `build_cond`); the
training mix that draws a task per clip is `tessera.train.tasks`.
"""

from __future__ import annotations

import torch
from torch import Tensor

TASKS = ("t2v", "i2v", "extend", "last", "first_last", "tail", "connect", "loop", "random")


def pixel_mask_for(task: str, frames: int, k: int = 1, generator: torch.Generator | None = None) -> Tensor:
    """Given pixel frames (frames,) bool of `task` on a clip of `frames` frames (k for extend, tail and
    connect; `generator` draws the frames of `random`)."""
    t_z = 1 + (frames - 1) // 4
    k = max(1, min(k, t_z - 1))
    mask = torch.zeros(frames, dtype=torch.bool)
    if task == "i2v":
        mask[0] = True
    elif task == "extend":
        mask[: 1 + 4 * (k - 1)] = True
    elif task == "last":
        mask[-1] = True
    elif task in ("first_last", "loop"):
        mask[0] = mask[-1] = True
    elif task == "tail":
        mask[frames - 4 * k :] = True
    elif task == "connect":
        head, tail = (k + 1) // 2, k // 2  # latent frames' worth at each end; head + tail = k < T_z
        mask[: 1 + 4 * (head - 1)] = True
        mask[frames - max(1, 4 * tail) :] = True
    elif task == "random":
        mask = torch.rand(frames, generator=generator) < 0.25
        if not mask.any() or mask.all():
            mask[:] = False
            mask[int(torch.randint(frames, (1,), generator=generator))] = True
    elif task != "t2v":
        raise ValueError(f"unknown conditioning task '{task}'; allowed: {', '.join(TASKS)}")
    return mask


def for_task(task: str, video: Tensor) -> Tensor:
    """The clip a task trains on, from a source clip (C, T, H, W) with odd T: the `loop` task plays the
    first (T + 1) / 2 frames and then the same frames backwards (T frames, first == last); every other
    task trains on the clip as it is."""
    if task != "loop":
        return video
    half = video[:, : (video.shape[1] + 1) // 2]
    return torch.cat([half, half.flip(1)[:, 1:]], dim=1)


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
    return build_conds(vae, video[None], pixel_mask[None])[0]


@torch.no_grad()
def build_conds(vae: torch.nn.Module, videos: Tensor, pixel_masks: Tensor, chunked: bool = True) -> Tensor:
    """`build_cond` for a batch of equal-shape clips in one VAE call: videos (B, 3, T, H, W), masks
    (B, T) -> (B, C_z + 4, T_z, H/8, W/8). `chunked` as in `VideoVAE.encode_latents`."""
    keep = pixel_masks.to(videos.device, videos.dtype)[:, None, :, None, None]
    z = vae.encode_latents(videos * keep, chunked=chunked)  # (B, C_z, T_z, h, w)
    masks = torch.stack([mask_channels(m, *z.shape[-2:]) for m in pixel_masks]).to(z)
    return torch.cat([z, masks], dim=1)
