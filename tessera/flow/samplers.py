"""Samplers: integrate `dx/dt = v` from ts[0] (noise) down to ts[-1] (data), as plain functions.

A model function maps `(x_t (B, C, T_z, H, W), t (B, T_z)) -> v` of x_t's shape, and samplers see
nothing else. What a request adds is a wrapper that builds that function (docs/design.md, "Flow
matching"): `guided` for classifier-free guidance (its interval, and its rule: `cfg`, or another
`GuidanceRule` passed in), `holding` for given frames.

Given frames (docs/design.md): `given (B, T_z)` marks latent frames known clean, with values in `x0_given`.
`holding` sets those frames to their clean values and their time to 0 before every model call, as in
training; everything else gets the current t. `impose` sets them once more on the result, so it equals
`x0_given` there exactly. With `given_noise` (for a network trained with one time per clip, such as
Wan's text-to-video DiT) the given frames are instead held at the current noise level, noised with
`given_noise` along the path to t, and every frame gets the same t.

SDEdit: start from `sdedit_start(x0_src, noise, strength)` with `timesteps(steps, shift, start=strength)`.

The schedule `ts` is one time per step (every latent frame at that time), or a time per latent frame per
step, (steps + 1, T_z), for diffusion forcing's asynchronous schedule (`schedules.forcing_times`): each
frame is stepped from its time in one row to its time in the next, and the model sees each row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from itertools import pairwise

import torch
from torch import Tensor
from tqdm import tqdm

from tessera.flow.loss import add_noise

ModelFn = Callable[[Tensor, Tensor], Tensor]
GuidanceRule = Callable[[Tensor, Tensor, Tensor, Tensor, float], Tensor]  # (v_c, v_u, x, t, g) -> v
Progress = bool | Callable[[int, int], None]  # a tqdm bar, or called with (steps done, steps) after each step
Time = float | tuple[float, ...]  # one row of a schedule: every latent frame's time, or each one's own


def sample_euler(model_fn: ModelFn, noise: Tensor, ts: Tensor, progress: Progress = False) -> Tensor:
    """First-order Euler: `x <- x + (t_next - t) v(x, t)`. One model call per step.

    `noise` is the state at ts[0]: pure noise when ts[0] = 1, or `sdedit_start(...)` for SDEdit. With a
    time per frame (`ts` (steps + 1, T_z)) each frame moves by its own `t_next - t` (0: it stays).
    """
    ts_list = _check_inputs(noise, ts)
    x = noise
    for t, t_next in _steps(ts_list, progress, "euler"):
        if t_next == t:
            continue  # a zero-length step (e.g. SDEdit at strength 0) needs no model call
        x = x + _dt(x, t, t_next) * model_fn(x, _times(x, t))
    return x


def sample_heun(model_fn: ModelFn, noise: Tensor, ts: Tensor, progress: Progress = False) -> Tensor:
    """Second-order Heun: Euler predictor, trapezoid corrector; two model calls per step.

    A step ending at t = 0 stays an Euler step (one call), as in EDM and k-diffusion: it saves a call,
    and one Euler step's local error O(h^2) is already of the method's global order. With a time per
    frame this holds frame by frame: frames whose step ends at 0 take the Euler step.
    """
    ts_list = _check_inputs(noise, ts)
    x = noise
    for t, t_next in _steps(ts_list, progress, "heun"):
        if t_next == t:
            continue
        dt = _dt(x, t, t_next)
        v = model_fn(x, _times(x, t))
        x_pred = x + dt * v
        end = _ends(x, t_next)
        if end is True:
            x = x_pred
        else:
            v_next = model_fn(x_pred, _times(x, t_next))
            x_heun = x + dt * (v + v_next) / 2
            x = x_heun if end is False else torch.where(end, x_pred, x_heun)
    return x


def _steps(ts_list: list[Time], progress: Progress, name: str) -> Iterator[tuple[Time, Time]]:
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

    Sample from it with `timesteps(steps, shift, start=strength)`; the strength is checked where the
    request enters (`tessera.requests.check_strength`).
    """
    t = torch.full(x0_src.shape[:1], strength, device=x0_src.device)  # (B,), same t for every frame
    return add_noise(x0_src, noise, t)


def cfg(v_c: Tensor, v_u: Tensor, x: Tensor, t: Tensor, guidance: float) -> Tensor:
    """Classifier-free guidance's rule: `v = v_u + g (v_c - v_u)` (x and t unused; other rules read them)."""
    return v_u + guidance * (v_c - v_u)


def guided(
    model_fn_batched: ModelFn,
    guidance: float,
    interval: tuple[float, float] | None = None,
    rule: GuidanceRule = cfg,
) -> ModelFn:
    """Classifier-free guidance, `v = rule(v_c, v_u, x, t, g)` (`cfg`: `v_u + g (v_c - v_u)`), with both
    branches in ONE batched call.

    `model_fn_batched(x (2B, ...), t (2B, T_z))` must treat the first B samples as conditional (the
    caption) and the last B as unconditional (the empty caption, or a negative prompt): the caller
    builds its text tokens as `cat([cond, uncond])`. The returned function has the plain
    `(x (B, ...), t (B, T_z))` signature. With guidance 1 it returns the conditional branch exactly (the
    call still runs both halves, so the batched function's contract never changes).

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
        return rule(v_c, v_u, x, t, guidance)

    return model_fn


def holding(
    model_fn: ModelFn,
    x0_given: Tensor,
    given: Tensor,
    given_noise: Tensor | None = None,
    renoise: tuple[float, torch.Generator] | None = None,
) -> ModelFn:
    """`model_fn` with the latent frames `given (B, T_z)` held: before every call they are set to their
    clean values `x0_given` and their time to 0 (or, with `given_noise`, noised to t like the rest and
    left at t). With `renoise = (c, generator)` they are shown at time c instead, noised afresh at every
    call with noise drawn from `generator` (SkyReels-V2's `addnoise_condition`, c = its value / 1000).
    The sampler's own result still needs `impose` to end on `x0_given` exactly."""
    B, _, T_z = x0_given.shape[:3]
    if tuple(given.shape) != (B, T_z) or given.dtype != torch.bool:
        raise ValueError(
            f"given must be a bool tensor (B, T_z) = ({B}, {T_z}), got {given.dtype} {tuple(given.shape)}"
        )

    def held(x: Tensor, t: Tensor) -> Tensor:
        if given_noise is not None:
            return model_fn(impose(x, add_noise(x0_given, given_noise, t[:, 0]), given), t)
        if renoise is None:
            return model_fn(impose(x, x0_given, given), t.masked_fill(given, 0.0))
        c, generator = renoise
        frames = given.any(0)  # the noise covers the given frames alone, drawn in their order
        part = x0_given[:, :, frames]
        noise = torch.randn(part.shape, generator=generator).to(part)
        shown = x0_given.clone()
        shown[:, :, frames] = add_noise(part, noise, torch.full((B,), c, dtype=t.dtype, device=t.device))
        return model_fn(impose(x, shown, given), t.masked_fill(given, c))

    return held


def impose(x: Tensor, x0_given: Tensor, given: Tensor) -> Tensor:
    """x with the given frames `given (B, T_z)` replaced by their clean values `x0_given`."""
    return torch.where(given[:, None, :, None, None], x0_given, x)  # mask (B, 1, T_z, 1, 1)


def _times(x: Tensor, t: Time) -> Tensor:
    """The model's time input at t: (B, T_z), every latent frame at t, or at its own time of a row
    (`holding` sets given ones)."""
    B, _, T_z = x.shape[:3]
    if isinstance(t, tuple):
        return torch.tensor([t] * B, dtype=_t_dtype(x), device=x.device)
    return torch.full((B, T_z), t, dtype=_t_dtype(x), device=x.device)


def _dt(x: Tensor, t: Time, t_next: Time) -> float | Tensor:
    """The step `t_next - t`: a number, or per latent frame (T_z, 1, 1) in x's dtype for rows of times."""
    if isinstance(t, tuple):
        dt = torch.tensor([b - a for a, b in zip(t, t_next, strict=True)], dtype=x.dtype, device=x.device)
        return dt[:, None, None]
    return t_next - t


def _ends(x: Tensor, t_next: Time) -> bool | Tensor:
    """Whether the step ends at t = 0: a bool, or for a row where only some frames do, a (T_z, 1, 1) mask."""
    if not isinstance(t_next, tuple):
        return t_next == 0
    if all(v == 0 for v in t_next) or not any(v == 0 for v in t_next):
        return t_next[0] == 0
    return torch.tensor([v == 0 for v in t_next], device=x.device)[:, None, None]


def _t_dtype(x: Tensor) -> torch.dtype:
    # Times stay at least float32 even for bf16 latents: the time embedding sees 1000 t.
    return torch.promote_types(x.dtype, torch.float32)


def _check_inputs(noise: Tensor, ts: Tensor) -> list[Time]:
    """Validate shapes and the schedule; returns ts as Python floats (a tuple per row of a time per frame)."""
    if noise.ndim != 5:
        raise ValueError(f"expected a latent video (B, C, T_z, H, W), got shape {tuple(noise.shape)}")
    if ts.ndim not in (1, 2) or len(ts) < 2 or ts.ndim == 2 and ts.shape[1] != noise.shape[2]:
        raise ValueError(
            f"ts must be a 1-D schedule with at least 2 times, or (at least 2, T_z = {noise.shape[2]}) "
            f"times per latent frame; got shape {tuple(ts.shape)}"
        )
    ts_list = [float(t) if ts.ndim == 1 else tuple(float(v) for v in t) for t in ts.tolist()]
    for column in ts.reshape(len(ts), -1).T.tolist():
        if any(b > a for a, b in pairwise(column)) or not 0 <= column[-1] <= column[0] <= 1:
            raise ValueError(f"ts must decrease (non-strictly) within [0, 1], got {ts_list}")
    return ts_list


SAMPLERS = {"euler": sample_euler, "heun": sample_heun}  # the `--sampler` names
