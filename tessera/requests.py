"""Requests checked at the public boundary: the checks that raise `RequestError` (`tessera.errors`) for a
request the model cannot serve, before any work, naming the nearest valid values. Each rule is written
here once; the boundaries (the command line before it loads anything, the web page, the capabilities and
`sample_latents`) call these functions rather than restating them."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

import torch

from tessera import wan
from tessera.config import ModelConfig, is_wan
from tessera.errors import RequestError
from tessera.flow.samplers import SAMPLERS
from tessera.options import DEFAULTS as D


def pick_device(device: str = "auto") -> torch.device:
    """'auto' -> cuda when available, else cpu; anything else is checked. Under torchrun 'cuda' is the
    process's own GPU, cuda:LOCAL_RANK."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and int(os.environ.get("WORLD_SIZE", "1")) > 1 and torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise RequestError(f"--device must be cpu, cuda, cuda:N or auto; got '{device}'")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RequestError(f"--device {device} asked for, but this machine has no CUDA GPU; use cpu")
    return torch.device(device)


MAX_SIDE = 2048


MAX_SEED = 2**63 - 1


def check_request(
    config: ModelConfig, frames: int, height: int, width: int, device: torch.device, source: str | None = None
) -> None:
    """Raise RequestError unless (frames, height, width) is servable on `device` (`source`: `check_sides`)."""
    check_frames(frames)
    m = side_multiple(config)
    p = max(config.dit.patch[1:])
    why = f" for this model ({config.vae.space_factor}x VAE x {p}x{p} patches)" if m != 16 else ""
    check_sides(height, width, source, m, why)
    need, have = estimate_memory(config, frames, height, width), available_memory(device)
    if need > have:
        fit = frames
        while fit > 1 and estimate_memory(config, fit, height, width) > have:
            fit -= 4
        raise RequestError(
            f"{frames} frames at {width}x{height} need about {need / 2**30:.1f} GiB but {device} has "
            f"{have / 2**30:.1f} GiB free; at this size at most {fit} frames fit, or lower the size"
        )


def check_sides(
    height: int | None, width: int | None, source: str | None = None, multiple: int = 16, why: str = ""
) -> None:
    """Refuse a size that is not a multiple of `multiple` (16; a model's own: `side_multiple`, `why`
    saying where it comes from) in multiple..MAX_SIDE. `source` names what the size came from: "--size"
    (WIDTHxHEIGHT), or the given image or video whose size the output takes (no size was asked for then);
    None means --height and --width, where a side left out (None) is not checked."""
    m, top = multiple, MAX_SIDE // multiple * multiple
    if all(v is None or (m <= v <= top and v % m == 0) for v in (height, width)):
        return
    near = [None if v is None else min(top, max(m, m * round(v / m))) for v in (height, width)]
    if source == "--size":
        raise RequestError(
            f"--size {width}x{height}: both sides must be multiples of {m} between {m} and {top}{why}; "
            f"try {near[1]}x{near[0]}"
        )
    if source is not None:
        raise RequestError(
            f"{source} is {width}x{height}; its sides must be multiples of {m} between {m} and {top}"
            f"{why}: resize or crop it, e.g. to {near[1]}x{near[0]}"
        )
    for name, v, n in (("height", height, near[0]), ("width", width, near[1])):
        if v is not None and (v < m or v % m or v > top):
            raise RequestError(
                f"--{name} must be a multiple of {m} between {m} and {top}{why}; got {v}, try {n}"
            )


def side_multiple(config: ModelConfig) -> int:
    """What a model's frame sides must be multiples of: its VAE's spatial factor times its DiT's patch,
    and at least 16 (16 for tessera's own models and Wan 2.1, 32 for Wan 2.2 TI2V-5B)."""
    return max(16, config.vae.space_factor * max(config.dit.patch[1:]))


def estimate_memory(config: ModelConfig, frames: int, height: int, width: int) -> int:
    """Rough peak bytes of sampling with guidance (two branches) and chunked, tiled decoding."""
    if is_wan(config):
        return wan.estimate_memory(config, frames, height, width)
    pt, ph, pw = config.dit.patch
    t_z, h_z, w_z = 1 + (frames - 1) // 4, height // 8, width // 8
    tokens = (t_z // pt) * (h_z // ph) * (w_z // pw)
    d = config.dit
    params = 4 * 12 * d.depth * d.dim**2  # fp32 weights, a generous bound
    acts = 2 * tokens * (6 * d.dim + 2 * d.ffn_dim) * 4  # one block's activations, both branches
    scores = 2 * d.heads * tokens * min(tokens, 4096) * 4  # attention scores if materialised in blocks
    tile = min(height, 512) * min(width, 512)
    decode = 5 * config.vae.base_channels * max(config.vae.channel_mults) * tile * 4 * 4
    return int(params + acts + scores + decode + 2**28)


def available_memory(device: torch.device) -> int:
    """Free bytes on `device` (MemAvailable on the CPU)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    if device.type == "meta":
        return 1 << 62
    try:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        return int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def check_sampling(
    steps: int = D.steps, guidance: float = D.guidance, seed: int = D.seed, sampler: str = D.sampler,
    guidance_interval: tuple[float, float] | None = D.guidance_interval, shift: float | None = D.shift,
    ar_step: int = D.ar_step, causal_block: int | None = D.causal_block,
    condition_noise: float = D.condition_noise,
) -> None:  # fmt: skip
    """Refuse sampler settings no model can use, before any work (the CLI calls it before loading); which
    models take `ar_step`, `causal_block` and `condition_noise` is `check_forcing`'s, once a model is
    loaded."""
    if sampler not in SAMPLERS:
        raise RequestError(f"--sampler must be one of {', '.join(SAMPLERS)}; got '{sampler}'")
    if steps < 1:
        raise RequestError(f"--steps must be at least 1; got {steps}")
    if not (math.isfinite(guidance) and guidance >= 0):
        raise RequestError(f"--guidance must be a finite number >= 0 (1 = no guidance); got {guidance:g}")
    if not 0 <= seed <= MAX_SEED:
        raise RequestError(f"--seed must be an integer from 0 to {MAX_SEED} (2^63 - 1); got {seed}")
    if shift is not None and not shift > 0:
        raise RequestError(f"--shift must be positive (1 = no shift); got {shift}")
    if ar_step < 0:
        raise RequestError(
            f"--ar-step must be a whole number >= 0 (0: one schedule for every frame); got {ar_step}"
        )
    if causal_block is not None and causal_block < 1:
        raise RequestError(f"--causal-block must be a whole number >= 1 (latent frames); got {causal_block}")
    if not 0.0 <= condition_noise < 1.0:
        raise RequestError(f"--condition-noise must be a time in [0, 1) (0: clean); got {condition_noise:g}")
    check_guidance_interval(guidance_interval)


def check_forcing(
    config: ModelConfig,
    ar_step: int = D.ar_step,
    causal_block: int | None = D.causal_block,
    condition_noise: float = D.condition_noise,
) -> None:
    """Refuse diffusion forcing's options (`ar_step` > 0, a `causal_block`, `condition_noise` > 0) for a
    model not trained with a time per latent frame for every frame: all but SkyReels-V2's DF models
    (`DiTConfig.diffusion_forcing`; Wan 2.2 TI2V-5B sets it only to hold its first frame)."""
    if not ar_step and causal_block is None and not condition_noise:
        return
    wan22 = is_wan(config) and config.vae.residual
    if config.dit.diffusion_forcing and not wan22:
        return
    flag = (
        f"--ar-step {ar_step}" if ar_step
        else f"--causal-block {causal_block}" if causal_block is not None
        else f"--condition-noise {condition_noise:g}"
    )  # fmt: skip
    what = wan.title(config) if is_wan(config) else "one of tessera's own models"
    raise RequestError(
        f"{flag} needs a SkyReels-V2 diffusion-forcing model (one trained with a time per latent frame); "
        f"this is {what}, which samples with --ar-step 0, no --causal-block and --condition-noise 0"
    )


FORCING = ("ar_step", "causal_block", "condition_noise")  # the options `check_forcing` judges


def forcing(sampling: Mapping[str, Any]) -> dict[str, Any]:
    """The diffusion-forcing options among sampler keywords, for `check_forcing(config, **forcing(s))`."""
    return {k: sampling[k] for k in FORCING if k in sampling}


def check_strength(strength: float) -> None:
    """Refuse an SDEdit strength outside [0, 1] (0 keeps the source, 1 ignores it)."""
    if not 0.0 <= strength <= 1.0:
        raise RequestError(f"--strength must be in [0, 1]; got {strength:g}")


def check_guidance_interval(interval: tuple[float, float] | None) -> None:
    """Refuse a guidance interval that is not LO < HI within [0, 1] (None: guidance at every time)."""
    if interval is not None and not 0 <= interval[0] < interval[1] <= 1:
        raise RequestError(f"--guidance-interval must be LO,HI with 0 <= LO < HI <= 1; got {interval}")


def check_finite_latents(z: torch.Tensor, guidance: float) -> None:
    """Stop before decoding when sampling produced NaN or inf: nothing gets written."""
    bad = int((~torch.isfinite(z)).sum())
    if bad:
        raise RequestError(
            f"sampling produced {bad} non-finite latent values (NaN or inf), so nothing was written; "
            f"likely cause: the model's weights (diverged training?) or an extreme --guidance ({guidance:g})"
        )


def check_edit_frames(frames: int) -> None:
    """edit keeps the source's length, which must be 1 + 4k (the command has no --frames)."""
    if (frames - 1) % 4:
        raise RequestError(
            f"the video has {frames} frames; edit needs 1 + 4k (..., 29, 33, ...): "
            f"trim it to {1 + 4 * ((frames - 1) // 4)}"
        )


def check_frames(frames: int, option: str = "--frames") -> None:
    """Refuse a frame count not of the form 1 + 4k, naming the nearest valid ones."""
    if frames < 1 or (frames - 1) % 4:
        lo = max(1, 1 + 4 * ((frames - 1) // 4))
        raise RequestError(
            f"{option} must be 1 + 4k (1, 5, 9, ..., 33, ...); got {frames}, try {lo} or {lo + 4}"
        )


def check_fade(fade: int, frames: int) -> None:
    if not 0 <= fade <= frames - 2:
        raise RequestError(f"--fade must be between 0 and {frames - 2} (frames - 2); got {fade}")
