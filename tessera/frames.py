"""Pixel helpers of the capabilities: fitting given frames to a size, placing them in a clip, and fading
between two renderings of the same frames."""

from __future__ import annotations

import torch

from tessera.requests import RequestError
from tessera.video import to_tensor


def fit(frames_u8: torch.Tensor, height: int, width: int, what: str = "input") -> torch.Tensor:
    """uint8 (T, H, W, 3) resized and centre-cropped to (height, width) when the aspect ratios match.

    A different aspect ratio is refused: the user's framing is never silently changed.
    """
    frames_u8 = torch.as_tensor(frames_u8)
    if frames_u8.ndim == 3:
        frames_u8 = frames_u8[None]
    if frames_u8.ndim != 4 or frames_u8.shape[-1] != 3 or frames_u8.dtype != torch.uint8:
        raise RequestError(
            f"{what} must be uint8 (T, H, W, 3); got {frames_u8.dtype} {tuple(frames_u8.shape)}"
        )
    H, W = frames_u8.shape[1:3]
    if (H, W) == (height, width):
        return frames_u8
    if abs(W / H - width / height) > 0.01 * (width / height):
        raise RequestError(
            f"{what} is {W}x{H} but {width}x{height} was asked for: the aspect ratios differ; "
            f"crop the {what} yourself or ask for a size of its aspect ratio"
        )
    scale = max(height / H, width / W)  # cover the target, then crop the (tiny) excess evenly
    h, w = max(height, round(H * scale)), max(width, round(W * scale))
    x = frames_u8.permute(0, 3, 1, 2).float()  # (T, 3, H, W)
    x = torch.nn.functional.interpolate(x, size=(h, w), mode="bilinear", antialias=True, align_corners=False)
    top, left = (h - height) // 2, (w - width) // 2
    x = x[:, :, top : top + height, left : left + width]
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def to_clip(frames_u8: torch.Tensor, total: int, at: int) -> torch.Tensor:
    """A (3, total, H, W) clip in [-1, 1]: `frames_u8` placed from frame `at`, zeros elsewhere."""
    x = to_tensor(frames_u8)
    out = x.new_zeros(3, total, *x.shape[2:])
    out[:, at : at + x.shape[1]] = x
    return out


def size_of(frames_u8: torch.Tensor, height: int | None, width: int | None) -> tuple[int, int]:
    """(height, width) asked for, defaulting to the input's own size."""
    return (height or int(frames_u8.shape[-3]), width or int(frames_u8.shape[-2]))


def crossfade(start: torch.Tensor, end: torch.Tensor) -> torch.Tensor:
    """Two renderings of the same frames (n, H, W, 3) uint8 faded from `start` (its first frame exactly)
    to `end` (its last frame exactly), linearly in frame index; one frame is `start`'s.

    Given frames come back from the VAE a little changed (the shipped VAE: about 27 dB). Returned
    unchanged beside decoded new frames they make a cut at the join: on a still scene the change
    across it was up to 17 times the scene's own frame change (extend_seam). Fading through the frames
    that the given ones share with the new clip spreads that difference over them."""
    n = len(start)
    w = torch.linspace(0, 1, n).view(n, 1, 1, 1) if n > 1 else torch.zeros(1, 1, 1, 1)
    return ((1 - w) * start.float() + w * end.float()).round().clamp(0, 255).to(torch.uint8)
