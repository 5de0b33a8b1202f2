"""Sampling: every capability is one sampler call with different conditions.

`sample_latents` is the single place where text is encoded, noise is drawn, given latent frames are
held clean (docs/design.md: per-frame time, `t = 0` on given frames) and the flow is integrated. The
sampler sees one model function of (x, t): the DiT with its text and `cond` closed over
(`dit_function`), wrapped by guidance (`samplers.guided`) and by the given frames (`samplers.holding`).
`conditioned` builds those conditions from given pixel frames exactly as training does
(`tessera.conditioning`); the capabilities (`tessera.capabilities`) only decide the shapes and the
conditions, then decode. Each passes its sampler keywords (`Sampling`) through unchanged.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, TypedDict

import torch
import torch.distributed as dist

from tessera.checkpoint import Model
from tessera.conditioning import build_cond, given_latents, mask_channels
from tessera.flow.samplers import (
    SAMPLERS,
    GuidanceRule,
    ModelFn,
    Progress,
    cfg,
    guided,
    holding,
    impose,
    sdedit_start,
)
from tessera.flow.schedules import forcing_times, timesteps, token_shift
from tessera.options import DEFAULTS as D
from tessera.parallel import SequenceParallel
from tessera.requests import (
    RequestError,
    check_finite_latents,
    check_forcing,
    check_request,
    check_sampling,
    check_strength,
    forcing,
)
from tessera.video import to_tensor, to_uint8

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing.Unpack from Python 3.11


class Sampling(TypedDict, total=False):
    """The sampler keywords every capability takes and passes through to `sample_latents`; each one
    left out takes its default there (`tessera.options.DEFAULTS`; no progress bar, the empty negative
    prompt, the model's own flow shift, guidance by `samplers.cfg`). `progress` is True for a bar, or a
    function called with (steps done, steps) after each step. `guidance_rule` mixes the two branches
    of guidance (`samplers.GuidanceRule`), for trying other rules than classifier-free guidance's."""

    steps: int
    guidance: float
    guidance_interval: tuple[float, float] | None
    seed: int
    sampler: str
    progress: Progress
    negative_prompt: str
    shift: float | None
    guidance_rule: GuidanceRule
    ar_step: int
    causal_block: int | None
    condition_noise: float


def request_shape(
    model: Model, frames: int, height: int, width: int, source: str | None = None
) -> tuple[int, int, int]:
    """The latent shape (T_z, h, w) of `frames` frames at height x width, once `check_request` passes
    (`source` names where the size came from: see `check_sides`)."""
    check_request(model.config, frames, height, width, model_device(model), source)
    return latent_shape(frames, height, width, model.config.vae.space_factor)


def latent_shape(frames: int, height: int, width: int, space: int = 8) -> tuple[int, int, int]:
    """The latent shape (T_z, h, w) of `frames` frames at height x width (docs/design.md, "Tensors"), for
    a request already checked; `space` is the VAE's spatial factor (`space_factor` of its config: 8, or
    16 for Wan 2.2's)."""
    return (1 + (frames - 1) // 4, height // space, width // space)


def model_device(model: Model) -> torch.device:
    """The device the model's DiT (and so sampling) runs on."""
    return next(model.dit.parameters()).device


@contextmanager
def across_ranks(model: Model, sp: int = 0) -> Iterator[tuple[Model, bool]]:
    """Within the block, the model to sample with, whose DiT runs sequence-parallel over the processes of
    a `torchrun --nproc-per-node N` launch, each holding 1/N of the video's tokens
    (`tessera.parallel.SequenceParallel`), and True on the one process that should write files. Every
    process makes the same request and gets the same result.

    `sp` is the number of processes to share the video: 0 means all launched; otherwise it must be N.
    Without torchrun (N = 1) nothing changes.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if sp not in (0, world):
        raise RequestError(
            f"--sp {sp} needs {sp} processes (`torchrun --nproc-per-node {sp} -m tessera.cli ...`); "
            f"this launch has {world}"
        )
    if world == 1:
        yield model, True
        return

    device = model_device(model)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        yield dataclasses.replace(model, dit=SequenceParallel(model.dit)), dist.get_rank() == 0
    finally:
        dist.destroy_process_group()


def encode_text(model: Model, captions: list[str], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Captions -> text tokens (B, L, D) and mask (B, L)."""
    ids, mask = model.tokenizer.encode(captions, model.config.text.max_len)
    return model.text(ids.to(device), mask.to(device))


@torch.no_grad()
def sample_latents(
    model: Model,
    prompt: str,
    latent_shape: tuple[int, int, int],
    steps: int = D.steps,
    guidance: float = D.guidance,
    seed: int = D.seed,
    sampler: str = D.sampler,
    guidance_interval: tuple[float, float] | None = D.guidance_interval,
    x0_given: torch.Tensor | None = None,
    given: torch.Tensor | None = None,
    cond: torch.Tensor | None = None,
    progress: Progress = False,
    x0_src: torch.Tensor | None = None,
    strength: float = 1.0,
    negative_prompt: str = "",
    shift: float | None = None,
    guidance_rule: GuidanceRule = cfg,
    ar_step: int = D.ar_step,
    causal_block: int | None = D.causal_block,
    condition_noise: float = D.condition_noise,
) -> torch.Tensor:
    """Sample normalised latents (1, C_z, T_z, h, w) for `prompt`, holding `given` frames clean.

    `given (1, T_z)` bool marks latent frames fixed to `x0_given`; `cond` is the DiT's extra input
    (masked-video latents + pixel-frame mask) or None for plain text-to-video. With `x0_src` (SDEdit)
    the flow starts from the source noised to `t = strength` instead of from pure noise.
    `guidance_interval = (lo, hi)` applies guidance only at times in [lo, hi], and `guidance_rule` mixes
    the branches (`samplers.guided`). The unconditional branch of guidance encodes `negative_prompt`
    (empty: the null caption). `shift` shifts the time grid towards noise: None takes the model's
    `flow_shift`, and a model without one the token-count shift. A DiT trained with one time for the
    whole clip (Wan's text-to-video: no condition channels, no diffusion forcing) holds the given frames
    at the current noise level (the initial noise's own draw) instead of clean at t = 0
    (`DiTConfig.per_frame_time`).

    Diffusion forcing (SkyReels-V2 DF models only, `check_forcing`): `ar_step` > 0 samples with a time per
    latent frame (`schedules.forcing_times`), blocks of `causal_block` latent frames (None: the model's
    own `causal_block`) each `ar_step` steps behind the block before. Every frame still takes `steps`
    steps, but the run takes more: with b blocks, none of them given, steps + (b - 1) * min(ar_step, steps)
    sampler steps (DiT calls with Euler), as SkyReels' and diffusers' DF pipelines count them. Blocks whose
    frames are all `given` are finished from the start. A `causal_block` also makes the DiT's attention
    block-causal over those blocks for this run, as those pipelines do. `condition_noise` c > 0 shows the
    given frames to the DiT at time c, noised afresh at every step (SkyReels' `addnoise_condition` / 1000;
    the noise comes from the seed's generator after the initial noise); they still end exact.
    """
    check_sampling(
        steps, guidance, seed, sampler, guidance_interval, shift, ar_step, causal_block, condition_noise
    )
    check_forcing(model.config, ar_step, causal_block, condition_noise)  # before any work
    check_strength(strength)
    device = model_device(model)
    t_z, h, w = latent_shape
    captions = [prompt] if guidance == 1 else [prompt, negative_prompt]  # conditional, then unconditional
    text, text_mask = encode_text(model, captions, device)
    gen = torch.Generator("cpu").manual_seed(seed)  # CPU generator: the same noise on every device
    noise = torch.randn(1, model.config.vae.z_channels, t_z, h, w, generator=gen).to(device)
    v_fn = dit_function(model, text, text_mask, cond, causal_block)
    if guidance != 1:
        v_fn = guided(v_fn, guidance, guidance_interval, guidance_rule)  # both branches in one batch
    if given is not None:
        given_noise = None if model.config.dit.per_frame_time else noise
        renoise = (condition_noise, gen) if condition_noise else None
        v_fn = holding(v_fn, x0_given, given, given_noise, renoise)
    pt, ph, pw = model.config.dit.patch
    shift = model.config.flow_shift if shift is None else shift
    if shift is None:
        shift = token_shift(t_z // pt * (h // ph) * (w // pw))
    ts = timesteps(steps, shift, start=strength).to(device)
    if ar_step:
        block = model.config.dit.causal_block if causal_block is None else causal_block
        ts = forcing_times(ts, t_z, ar_step, block, None if given is None else given[0])
    x_start = noise if x0_src is None else sdedit_start(x0_src.to(noise), noise, strength)
    z = SAMPLERS[sampler](v_fn, x_start, ts, progress=progress)
    z = z if given is None else impose(z, x0_given, given)
    check_finite_latents(z, guidance)
    return z


def dit_function(
    model: Model,
    text: torch.Tensor,
    text_mask: torch.Tensor,
    cond: torch.Tensor | None,
    causal_block: int | None = None,
) -> ModelFn:
    """The model's DiT as a function of (x, t), with the text and `cond` closed over. A batch of n rows
    reads the first n rows of `text`: the caption, then (for guidance) the negative prompt's. A
    `causal_block` replaces the DiT's own block-causal attention (None: its config's)."""
    dtype = next(model.dit.parameters()).dtype  # bf16 weights (Wan on a GPU) see bf16 inputs
    block = {} if causal_block is None else {"causal_block": causal_block}

    def dit_fn(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        n = len(x_t)  # 2 (the caption, then the null one), or 1 outside a guidance interval
        c = None if cond is None else cond.expand(n, -1, -1, -1, -1).to(dtype)
        return model.dit(x_t.to(dtype), t, text[:n].to(dtype), text_mask[:n], c, **block).to(x_t.dtype)

    return dit_fn


def generate(
    model: Model,
    prompt: str,
    frames: int = D.frames,
    height: int = D.height,
    width: int = D.width,
    **sampling: Unpack[Sampling],
) -> torch.Tensor:
    """Text-to-video: uint8 frames (T, H, W, 3) for `prompt`."""
    z = sample_latents(model, prompt, request_shape(model, frames, height, width), **sampling)
    return decode(model, z)


def conditioned(
    model: Model, prompt: str, clip: torch.Tensor, pixel_mask: torch.Tensor, **sampling: Unpack[Sampling]
) -> torch.Tensor:
    """Latents (1, C_z, T_z, h, w) of a clip whose pixel frames `pixel_mask (T,)` are given by `clip`.

    `clip (3, T, H, W)` in [-1, 1] holds the given frames (other frames are ignored: zeroed as in
    training) and sets the size. The latent frames of a given prefix come back exactly equal to the
    clip's encoding. The capabilities check the request (`request_shape`) before they call this.
    """
    check_forcing(model.config, **forcing(sampling))  # before the clip is encoded
    shape = latent_shape(*clip.shape[1:], model.config.vae.space_factor)
    device = model_device(model)
    x0_given = given = cond = None
    if pixel_mask.any() and not model.config.dit.conditioned:
        # No condition channels: the latent frames whose pixel frames are all given are held (clean at
        # t = 0 for a diffusion-forcing DiT, else at each step's noise level); exact for a given prefix,
        # from the zero-filled clip elsewhere.
        cond = build_cond(model.vae, clip.to(device), pixel_mask.to(device))[None]
        held = mask_channels(pixel_mask, 1, 1)[:, :, 0, 0].bool().all(0).to(device)[None]  # (1, T_z)
        x0_given, given = cond[:, : model.config.vae.z_channels], held if held.any() else None
        x0_given = x0_given if given is not None else None
        return sample_latents(model, prompt, shape, x0_given=x0_given, given=given, **sampling)
    if pixel_mask.any():
        cond = build_cond(model.vae, clip.to(device), pixel_mask.to(device))[None]  # (1, C_z + 4, T_z, h, w)
        held = given_latents(pixel_mask).to(device)[None]  # (1, T_z)
        if held.any():
            # The masked video's latents: on a given prefix they equal the prefix's own encoding.
            x0_given, given = cond[:, : model.config.vae.z_channels], held
    return sample_latents(model, prompt, shape, x0_given=x0_given, given=given, cond=cond, **sampling)


def decode(model: Model, z: torch.Tensor) -> torch.Tensor:
    """Normalised latents (1, C_z, T_z, h, w) -> uint8 frames (T, H, W, 3); tiles large frames itself."""
    return to_uint8(model.vae.decode_latents(z).float().cpu())


def encode(model: Model, frames_u8: torch.Tensor) -> torch.Tensor:
    """uint8 frames (T, H, W, 3), T = 1 + 4k -> normalised latents (1, C_z, T_z, h, w) (posterior mean)."""
    return model.vae.encode_latents(to_tensor(frames_u8)[None].to(model_device(model)))
