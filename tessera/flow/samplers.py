"""Samplers: integrate `dx/dt = v` from ts[0] (noise) down to ts[-1] (data), as plain functions.

A model function maps `(x_t (B, C, T_z, H, W), t (B, T_z)) -> v` of x_t's shape; text, guidance and
conditioning channels are closed over by the caller (see `guided`), so samplers only see x and t.

Given frames (docs/design.md): `given (B, T_z)` marks latent frames known clean, with values in `x0_given`.
Before every model call those frames are set to their clean values and their time to 0, as in
training; everything else gets the current t. They are set once more at the end, so the result equals
`x0_given` there exactly. With `given_noise` (for a network trained with one time per clip, such as
Wan's text-to-video DiT) the given frames are instead held at the current noise level, noised with
`given_noise` along the path to t, and every frame gets the same t.

SDEdit: start from `sdedit_start(x0_src, noise, strength)` with `timesteps(steps, shift, start=strength)`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from itertools import pairwise

import torch
from torch import Tensor
from tqdm import tqdm

from tessera.flow.loss import add_noise

ModelFn = Callable[[Tensor, Tensor], Tensor]
Progress = bool | Callable[[int, int], None]  # a tqdm bar, or called with (steps done, steps) after each step


def sample_euler(
    model_fn: ModelFn,
    noise: Tensor,
    ts: Tensor,
    x0_given: Tensor | None = None,
    given: Tensor | None = None,
    progress: Progress = False,
    given_noise: Tensor | None = None,
) -> Tensor:
    """First-order Euler: `x <- x + (t_next - t) v(x, t)`. One model call per step.

    `noise` is the state at ts[0]: pure noise when ts[0] = 1, or `sdedit_start(...)` for SDEdit.
    """
    ts_list = _check_inputs(noise, ts, x0_given, given)
    x = noise
    for t, t_next in _steps(ts_list, progress, "euler"):
        if t_next == t:
            continue  # a zero-length step (e.g. SDEdit at strength 0) needs no model call
        x = x + (t_next - t) * _velocity(model_fn, x, t, x0_given, given, given_noise)
    return _impose(x, x0_given, given)


def sample_heun(
    model_fn: ModelFn,
    noise: Tensor,
    ts: Tensor,
    x0_given: Tensor | None = None,
    given: Tensor | None = None,
    progress: Progress = False,
    given_noise: Tensor | None = None,
) -> Tensor:
    """Second-order Heun: Euler predictor, trapezoid corrector; two model calls per step.

    A step ending at t = 0 stays an Euler step (one call), as in EDM and k-diffusion: it saves a call,
    and one Euler step's local error O(h^2) is already of the method's global order.
    """
    ts_list = _check_inputs(noise, ts, x0_given, given)
    x = noise
    for t, t_next in _steps(ts_list, progress, "heun"):
        if t_next == t:
            continue
        dt = t_next - t
        v = _velocity(model_fn, x, t, x0_given, given, given_noise)
        x_pred = x + dt * v
        if t_next == 0:
            x = x_pred
        else:
            v_next = _velocity(model_fn, x_pred, t_next, x0_given, given, given_noise)
            x = x + dt * (v + v_next) / 2
    return _impose(x, x0_given, given)


def _steps(ts_list: list[float], progress: Progress, name: str) -> Iterator[tuple[float, float]]:
    """The (t, t_next) pairs, shown as a tqdm bar (`progress` True) or reported to a callable one."""
    pairs = list(pairwise(ts_list))
    if not callable(progress):
        yield from tqdm(pairs, disable=not progress, desc=name)
        return
    for i, pair in enumerate(pairs):
        yield pair
        progress(i + 1, len(pairs))


def sdedit_start(x0_src: Tensor, noise: Tensor, strength: float) -> Tensor:
    """SDEdit's starting point: the source noised along the path to `t = strength` (0 keeps it, 1 drops it).

    Sample from it with `timesteps(steps, shift, start=strength)`.
    """
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be in [0, 1], got {strength}")
    t = torch.full(x0_src.shape[:1], strength, device=x0_src.device)  # (B,), same t for every frame
    return add_noise(x0_src, noise, t)


def guided(
    model_fn_batched: ModelFn, guidance: float, interval: tuple[float, float] | None = None
) -> ModelFn:
    """Classifier-free guidance, `v = v_u + g (v_c - v_u)`, with both branches in ONE batched call.

    `model_fn_batched(x (2B, ...), t (2B, T_z))` must treat the first B samples as conditional (the
    caption) and the last B as unconditional (the empty caption): the caller builds its text tokens
    as `cat([cond, uncond])`. The returned function has the plain `(x (B, ...), t (B, T_z))` signature.
    With guidance 1 it returns the conditional branch exactly (the call still runs both halves, so the
    batched function's contract never changes).

    With `interval = (lo, hi)` guidance acts only at times `lo <= t <= hi` (t of the frames being
    generated: the largest in `t`); elsewhere the conditional branch alone runs, as a batch of B, which
    the batched function must then read as B conditional samples (Kynkäänniemi et al. 2024: guidance in
    a limited interval of noise levels).
    """
    lo, hi = interval or (0.0, 1.0)

    def model_fn(x: Tensor, t: Tensor) -> Tensor:
        if not lo <= float(t.max()) <= hi:
            return model_fn_batched(x, t)  # outside the interval: the caption's branch, half the work
        v = model_fn_batched(torch.cat([x, x]), torch.cat([t, t]))  # (2B, C, T_z, H, W)
        v_c, v_u = v.chunk(2)
        if guidance == 1:
            return v_c
        return v_u + guidance * (v_c - v_u)

    return model_fn


def _velocity(
    model_fn: ModelFn,
    x: Tensor,
    t: float,
    x0_given: Tensor | None,
    given: Tensor | None,
    given_noise: Tensor | None = None,
) -> Tensor:
    """The model's v at time t, with given frames clean and at t = 0 (or, with `given_noise`, noised to
    t like the rest)."""
    B, _, T_z = x.shape[:3]
    t_frames = torch.full((B, T_z), t, dtype=_t_dtype(x), device=x.device)  # (B, T_z)
    if given is not None and given_noise is not None:
        noised = add_noise(x0_given, given_noise, t_frames[:, 0])
        return model_fn(_impose(x, noised, given), t_frames)
    if given is not None:
        t_frames = t_frames.masked_fill(given, 0.0)
    return model_fn(_impose(x, x0_given, given), t_frames)


def _impose(x: Tensor, x0_given: Tensor | None, given: Tensor | None) -> Tensor:
    """x with the given frames replaced by their clean values."""
    if given is None:
        return x
    return torch.where(given[:, None, :, None, None], x0_given, x)  # mask (B, 1, T_z, 1, 1)


def _t_dtype(x: Tensor) -> torch.dtype:
    # Times stay at least float32 even for bf16 latents: the time embedding sees 1000 t.
    return torch.promote_types(x.dtype, torch.float32)


def _check_inputs(noise: Tensor, ts: Tensor, x0_given: Tensor | None, given: Tensor | None) -> list[float]:
    """Validate shapes and the schedule; returns ts as Python floats."""
    if noise.ndim != 5:
        raise ValueError(f"expected a latent video (B, C, T_z, H, W), got shape {tuple(noise.shape)}")
    if ts.ndim != 1 or len(ts) < 2:
        raise ValueError(f"ts must be a 1-D schedule with at least 2 times, got shape {tuple(ts.shape)}")
    ts_list = [float(t) for t in ts.tolist()]
    if any(b > a for a, b in pairwise(ts_list)) or not 0 <= ts_list[-1] <= ts_list[0] <= 1:
        raise ValueError(f"ts must decrease (non-strictly) within [0, 1], got {ts_list}")
    if (x0_given is None) != (given is None):
        raise ValueError("x0_given and given must be passed together (or both left out)")
    if given is not None:
        B, _, T_z = noise.shape[:3]
        if tuple(given.shape) != (B, T_z) or given.dtype != torch.bool:
            raise ValueError(
                f"given must be a bool tensor (B, T_z) = ({B}, {T_z}), got {given.dtype} {tuple(given.shape)}"
            )
        if x0_given.shape != noise.shape:
            raise ValueError(f"x0_given {tuple(x0_given.shape)} must have noise's shape {tuple(noise.shape)}")
    return ts_list


SAMPLERS = {"euler": sample_euler, "heun": sample_heun}  # the `--sampler` names
