"""Time values for flow matching: the training distribution and the sampling schedule.

Everything here is a pure function of its arguments; there is no scheduler object. t = 1 is noise and
t = 0 is data (`x_t = (1 - t) x0 + t noise`).

More tokens (bigger or longer videos) carry more redundant signal, so at a given t the image is easier
to see through the noise; shifting t towards 1 spends more of training and sampling at high noise,
where the layout is decided (SD3, FLUX). The same shift is applied to both.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

# FLUX's token-dependent shift: mu is linear in the token count through these two points.
_MU_TOKENS = (256, 4096)
_MU_VALUES = (0.5, 1.15)


def shift_t(t: Tensor | float, shift: float) -> Tensor | float:
    """Shift times towards noise: `t' = s t / (1 + (s - 1) t)`; fixes 0 and 1, and s = 1 is identity.

    FLUX writes the same map as `e^mu / (e^mu + 1/t - 1)` with `s = e^mu`.
    """
    _check_shift(shift)
    return shift * t / (1 + (shift - 1) * t)


def unshift_t(t: Tensor | float, shift: float) -> Tensor | float:
    """Inverse of `shift_t`: the unshifted time u with `shift_t(u, shift) == t`."""
    _check_shift(shift)
    return t / (shift - (shift - 1) * t)


def token_shift(num_tokens: int) -> float:
    """FLUX's shift for a sequence of `num_tokens` patches: `e^mu`, mu from 0.5 at 256 to 1.15 at 4096.

    mu is linear in the token count and extrapolated linearly outside [256, 4096].
    """
    if num_tokens <= 0:
        raise ValueError(f"num_tokens must be a positive integer, got {num_tokens}")
    (n0, n1), (mu0, mu1) = _MU_TOKENS, _MU_VALUES
    mu = mu0 + (mu1 - mu0) * (num_tokens - n0) / (n1 - n0)
    return math.exp(mu)


def sample_t(
    shape: tuple[int, ...] | torch.Size,
    shift: float = 1.0,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Training times: logit-normal `sigmoid(n)`, `n ~ N(0, 1)` (SD3), then shifted; float32 in (0, 1).

    The median is `shift_t(0.5, shift)` since both maps are monotone.
    """
    n = torch.randn(shape, generator=generator, device=device)
    return shift_t(torch.sigmoid(n), shift)


def timesteps(steps: int, shift: float = 1.0, start: float = 1.0) -> Tensor:
    """Sampling schedule: `steps + 1` times (float64) decreasing from `start` to 0, shifted.

    The grid is uniform in the unshifted time u and mapped through `shift_t`, so ts[0] == start
    exactly. `start < 1` is for SDEdit: all `steps` steps are spent between `start` and 0, spaced as
    the full schedule would space them over that range.
    """
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    if not 0.0 <= start <= 1.0:
        raise ValueError(f"start must be in [0, 1], got {start}")
    u0 = unshift_t(start, shift)
    u = torch.linspace(u0, 0.0, steps + 1, dtype=torch.float64)
    ts = shift_t(u, shift)
    ts[0], ts[-1] = start, 0.0  # exact ends despite rounding in the round trip through unshift_t
    return ts


def forcing_times(
    ts: Tensor, frames: int, ar_step: int, block: int = 1, held: Tensor | None = None
) -> Tensor:
    """Diffusion forcing's schedule: a time per latent frame, (iterations + 1, frames), row i the times
    after i iterations, all taken from the grid `ts` (`timesteps`: steps + 1 times, ts[0] to 0).

    Frames go in blocks of `block` (the last may be shorter). Each iteration a block moves one step down
    `ts`, except that while the block before it is unfinished it stays `ar_step` steps behind that block
    (waiting at ts[0] until then), so later blocks are noisier than earlier ones. A block whose frames are
    all `held (frames,)` is finished from the start (at 0), and the block after a finished one moves
    freely. With `ar_step` 0 every row has one time, the grid's (synchronous sampling); otherwise b blocks
    take steps + (b - 1) * min(ar_step, steps) iterations, fewer where blocks are held. SkyReels-V2's
    asynchronous schedule (diffusers' `generate_timestep_matrix`), in tessera's time (docs/design.md).
    """
    steps, count = len(ts) - 1, -(-frames // block)
    done = [held is not None and bool(held[b * block : (b + 1) * block].all()) for b in range(count)]
    row = [steps if d else 0 for d in done]
    rows = [row]
    while len(rows) == 1 or min(row) < steps:  # at least one iteration, if only a zero-length one
        new: list[int] = []
        for b in range(count):
            if done[b]:
                new.append(steps)
            elif b == 0 or row[b - 1] == steps:
                new.append(min(row[b] + 1, steps))
            else:
                new.append(max(new[b - 1] - ar_step, 0))
        row = new
        rows.append(row)
    index = torch.tensor(rows, device=ts.device).repeat_interleave(block, dim=1)[:, :frames]
    return ts[index]


def _check_shift(shift: float) -> None:
    if not shift > 0:
        raise ValueError(f"shift must be positive (1 = no shift), got {shift}")
