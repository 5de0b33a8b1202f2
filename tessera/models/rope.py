"""3D rotary position embedding over (t, h, w), split per head dim as in Wan 2.1.

Each head's channels are read as d/2 pairs; pair i is rotated by the angle `pos_axis * freq_i`, so the
dot product of a query at p and a key at p' depends on p - p' only. Time gets `d - 4*(d//6)` channels,
height and width `2*(d//6)` each (d = 128: 44, 42, 42). Pairs are adjacent channels (2i, 2i+1), the
layout of a complex view, and the arithmetic is real cos/sin (complex ops are slow under compile/bf16).
"""

from __future__ import annotations

import torch
from torch import Tensor


def rope_split(head_dim: int) -> tuple[int, int, int]:
    """Channels given to the (t, h, w) axes for one head of size head_dim."""
    if head_dim % 2 or head_dim < 6:
        raise ValueError(f"3D RoPE needs an even head_dim >= 6, got {head_dim}")
    hw = 2 * (head_dim // 6)
    return head_dim - 2 * hw, hw, hw


def rope_freqs(head_dim: int, positions: Tensor, theta: float = 10000.0) -> tuple[Tensor, Tensor]:
    """cos and sin of the rotation angles, each (N, head_dim/2) float32, for positions (N, 3) (t, h, w)."""
    if positions.ndim != 2 or positions.shape[1] != 3:
        raise ValueError(f"positions must be (N, 3) (t, h, w) ids, got shape {tuple(positions.shape)}")
    angles = []
    for axis, dim in enumerate(rope_split(head_dim)):
        # dim channels -> dim/2 frequencies theta^(-2i/dim), i = 0 .. dim/2 - 1
        freqs = theta ** -(torch.arange(0, dim, 2, device=positions.device, dtype=torch.float64) / dim)
        angles.append(positions[:, axis, None].double() * freqs)  # (N, dim/2)
    angle = torch.cat(angles, dim=1)  # (N, head_dim/2); float64 so large positions keep their phase
    return angle.cos().float(), angle.sin().float()


def apply_rope(x: Tensor, freqs: tuple[Tensor, Tensor]) -> Tensor:
    """Rotate x (B, heads, N, Dh) by freqs = (cos, sin), each (N, Dh/2); computed in float32."""
    cos, sin = freqs
    x_pairs = x.float().unflatten(-1, (-1, 2))  # (B, heads, N, Dh/2, 2)
    x1, x2 = x_pairs[..., 0], x_pairs[..., 1]
    out = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)  # (B, heads, N, Dh/2, 2)
    return out.flatten(-2).to(x.dtype)  # (B, heads, N, Dh)
