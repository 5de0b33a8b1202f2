"""Spacetime patches: cut latent video into tokens, put it back, and pack clips of any size together.

A clip (C, T, H, W) with patch (pt, ph, pw) becomes N = (T/pt)(H/ph)(W/pw) tokens of C*pt*ph*pw values,
in (t, h, w) raster order; each token's values are ordered (C, pt, ph, pw), the order of a Conv3d weight
flattened, so a Linear on patchified tokens is the same map as a Conv3d with stride = patch.
Packing (NaViT's Patch n' Pack) lays several clips' tokens end to end in one sequence; the segment id of
each token says which clip it came from, so attention can be kept block-diagonal and nothing is padded.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


def _grid(shape: tuple[int, int, int], patch: tuple[int, int, int]) -> tuple[int, int, int]:
    """Token grid (T/pt, H/ph, W/pw); a clear error if a side is not a multiple of its patch size."""
    for name, n, p in zip("THW", shape, patch, strict=True):
        if p < 1 or n < 1 or n % p:
            raise ValueError(
                f"{name}={n} must be a positive multiple of the patch size {p} "
                f"(shape (T, H, W) = {tuple(shape)}, patch (pt, ph, pw) = {tuple(patch)})"
            )
    return shape[0] // patch[0], shape[1] // patch[1], shape[2] // patch[2]


def patchify(x: Tensor, patch: tuple[int, int, int]) -> Tensor:
    """x (B, C, T, H, W) -> tokens (B, N, C*pt*ph*pw), N = (T/pt)(H/ph)(W/pw) in (t, h, w) raster order."""
    if x.ndim != 5:
        raise ValueError(f"patchify expects (B, C, T, H, W), got shape {tuple(x.shape)}")
    B, C = x.shape[:2]
    gt, gh, gw = _grid(tuple(x.shape[2:]), patch)
    pt, ph, pw = patch
    x = x.reshape(B, C, gt, pt, gh, ph, gw, pw)
    x = x.permute(0, 2, 4, 6, 1, 3, 5, 7)  # (B, gt, gh, gw, C, pt, ph, pw)
    return x.reshape(B, gt * gh * gw, C * pt * ph * pw)


def unpatchify(tokens: Tensor, patch: tuple[int, int, int], shape: tuple[int, int, int]) -> Tensor:
    """tokens (B, N, C*pt*ph*pw) -> x (B, C, T, H, W) for the clip shape (T, H, W); inverse of patchify."""
    B, N, D = tokens.shape
    gt, gh, gw = _grid(tuple(shape), patch)
    pt, ph, pw = patch
    if N != gt * gh * gw or D % (pt * ph * pw):
        raise ValueError(
            f"tokens {tuple(tokens.shape)} do not fit shape (T, H, W) = {tuple(shape)} with patch {patch}: "
            f"need N = {gt * gh * gw} and D a multiple of {pt * ph * pw}"
        )
    C = D // (pt * ph * pw)
    x = tokens.reshape(B, gt, gh, gw, C, pt, ph, pw)
    x = x.permute(0, 4, 1, 5, 2, 6, 3, 7)  # (B, C, gt, pt, gh, ph, gw, pw)
    return x.reshape(B, C, gt * pt, gh * ph, gw * pw)


def positions(grid: tuple[int, int, int], device: torch.device | str | None = None) -> Tensor:
    """(t, h, w) integer ids of every token of a (gt, gh, gw) grid, (N, 3) long, in raster order."""
    axes = [torch.arange(n, device=device) for n in grid]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)


@dataclass
class Packed:
    """Several clips' tokens end to end in one sequence."""

    tokens: Tensor  # (1, N_total, C*pt*ph*pw)
    positions: Tensor  # (N_total, 3) long (t, h, w) ids, each clip starting at 0
    segments: Tensor  # (N_total,) long, clip index of each token (non-decreasing)
    shapes: list[tuple[int, int, int]]  # (T, H, W) of each clip
    patch: tuple[int, int, int]

    @property
    def lengths(self) -> list[int]:
        """Tokens per clip."""
        pt, ph, pw = self.patch
        return [(t // pt) * (h // ph) * (w // pw) for t, h, w in self.shapes]


def pack(clips: list[Tensor], patch: tuple[int, int, int]) -> Packed:
    """Patchify clips (C, T_i, H_i, W_i) (same C, any T/H/W) and lay them end to end in one sequence."""
    if not clips:
        raise ValueError("pack needs at least one clip")
    if any(c.ndim != 4 or c.shape[0] != clips[0].shape[0] for c in clips):
        raise ValueError(f"pack expects clips (C, T, H, W) with one C, got {[tuple(c.shape) for c in clips]}")
    shapes = [tuple(c.shape[1:]) for c in clips]
    tokens = torch.cat([patchify(c[None], patch) for c in clips], dim=1)  # (1, N_total, D)
    device = clips[0].device
    grids = [_grid(s, patch) for s in shapes]
    pos = torch.cat([positions(g, device) for g in grids])  # (N_total, 3), each clip from (0, 0, 0)
    lengths = torch.tensor([gt * gh * gw for gt, gh, gw in grids], device=device)
    segments = torch.repeat_interleave(torch.arange(len(clips), device=device), lengths)  # (N_total,)
    return Packed(tokens, pos, segments, shapes, tuple(patch))


def unpack(tokens: Tensor, packed: Packed) -> list[Tensor]:
    """tokens (1, N_total, C'*pt*ph*pw) laid out like `packed` -> list of clips (C', T_i, H_i, W_i).

    C' may differ from the packed input's C (e.g. a network maps input + condition channels to v).
    """
    if tokens.ndim == 2:
        tokens = tokens[None]
    if tokens.shape[:2] != (1, sum(packed.lengths)):
        raise ValueError(f"tokens {tuple(tokens.shape)} must be (1, {sum(packed.lengths)}, D) to unpack")
    parts = torch.split(tokens, packed.lengths, dim=1)
    return [unpatchify(p, packed.patch, s)[0] for p, s in zip(parts, packed.shapes, strict=True)]
