"""Buckets: fit any clip to one of a few training shapes, and group or count clips by shape.

A bucket is a shape `(T, H, W)` in pixels (T = 1 + 4k, sides multiples of 16). A clip goes to the
bucket with the most frames it can fill and, among those, the closest aspect ratio (in log space, so
2:1 and 1:2 are equally far from 1:1); it is then resized to cover the bucket and centre-cropped, and
its first T frames are kept. Images are one-frame clips and go to one-frame buckets.

Batches of mixed shapes run either packed (one sequence, per-clip attention: `DiT.forward_packed`)
or bucketed (one batched call per shape: `group_by_shape`); both give the same loss.
"""

from __future__ import annotations

import math
from collections import defaultdict

import torch
import torch.nn.functional as F
from torch import Tensor

from tessera.errors import RequestError as BucketError
from tessera.seeding import generator

Shape = tuple[int, int, int]  # (T, H, W) in pixels


def nearest_bucket(frames: int, height: int, width: int, buckets: list[Shape]) -> Shape:
    """The bucket for a clip of `frames` frames of `height` x `width`: most frames first, then aspect."""
    fits = [b for b in buckets if b[0] <= frames]
    if not fits:
        raise BucketError(
            f"a clip of {frames} frames fits none of the buckets {buckets}: each needs at least its own "
            "frame count (add a one-frame bucket such as 1x64x64 for images)"
        )
    t = max(b[0] for b in fits)
    aspect = math.log(width / height)
    return min(
        (b for b in fits if b[0] == t), key=lambda b: (abs(math.log(b[2] / b[1]) - aspect), -b[1] * b[2])
    )


def resize_crop(video: Tensor, shape: Shape) -> Tensor:
    """video (3, T0, H0, W0) -> (3, T, H, W): first T frames, resized to cover (H, W), centre-cropped."""
    t, h, w = shape
    if video.ndim != 4 or video.shape[1] < t:
        raise BucketError(f"cannot take {t} frames from a clip of shape {tuple(video.shape)} (3, T, H, W)")
    x = video[:, :t].transpose(0, 1)  # (T, 3, H0, W0): frames as a batch of images
    h0, w0 = x.shape[-2:]
    scale = max(h / h0, w / w0)
    size = (max(h, round(h0 * scale)), max(w, round(w0 * scale)))
    if size != (h0, w0):
        x = F.interpolate(x.float(), size=size, mode="bilinear", antialias=True, align_corners=False)
    top, left = (size[0] - h) // 2, (size[1] - w) // 2
    return x[:, :, top : top + h, left : left + w].transpose(0, 1).clamp(-1, 1).contiguous()


def group_by_shape(shapes: list[tuple[int, ...]]) -> list[list[int]]:
    """Indices grouped by equal shape, groups in order of first appearance."""
    groups: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for i, s in enumerate(shapes):
        groups[tuple(s)].append(i)
    return list(groups.values())


def latent_shape(shape: Shape, time_factor: int = 4, space_factor: int = 8) -> Shape:
    """Pixel shape (T, H, W) -> latent shape (1 + (T-1)/4, H/8, W/8)."""
    t, h, w = shape
    return 1 + (t - 1) // time_factor, h // space_factor, w // space_factor


def num_tokens(latent: Shape, patch: tuple[int, int, int]) -> int:
    """Spacetime patches of a latent clip (T_z, h, w)."""
    return math.prod(n // p for n, p in zip(latent, patch, strict=True))


def pick_shape(shapes: list[tuple[Shape, float]], generator: torch.Generator) -> Shape:
    """Draw one shape from weighted `(shape, weight)` pairs."""
    weights = torch.tensor([w for _, w in shapes], dtype=torch.float64)
    return shapes[int(torch.multinomial(weights, 1, generator=generator))][0]


def step_shape(shapes: list[tuple[Shape, float]], seed: int, step: int) -> Shape:
    """The one shape of every clip of training step `step` (`batch_shapes = "one"`), drawn from the
    weighted shapes by (seed, step): every rank, and a resumed run, draws the same."""
    return pick_shape(shapes, generator(seed, "step-shape", step))
