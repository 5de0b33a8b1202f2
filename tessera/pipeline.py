"""Generation: every capability is one sampler call with different conditions.

`sample_latents` is the single place where text is encoded, noise is drawn, given latent frames are
held clean (DESIGN.md: per-frame time, `t = 0` on given frames) and the flow is integrated. The public
functions (`generate`, and the conditioned ones built on it) only decide the shapes and the
conditions, then decode. Each passes its sampler keywords (`Sampling`: steps, guidance, seed, sampler,
progress) through to `sample_latents` unchanged.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

import torch

from tessera.checkpoint import Model, build_model, load_into, load_model, load_tensors, read_json, save_model
from tessera.config import ModelConfig, get_preset, is_wan
from tessera.flow.samplers import guided, sample_euler, sample_heun, sdedit_start
from tessera.flow.schedules import timesteps, token_shift
from tessera.models.dit import deepen, widen
from tessera.models.text import Tokenizer

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing.Unpack from Python 3.11

SAMPLERS = {"euler": sample_euler, "heun": sample_heun}
MAX_SIDE = 2048
LOOP_FADE = 8  # most frames over which `loop` fades out what is left of the gap back to its first frame


class RequestError(ValueError):
    """A generation request the model cannot serve; the message names the argument and valid values."""


class Sampling(TypedDict, total=False):
    """The sampler keywords every capability takes and passes through to `sample_latents`; each one
    left out takes its default there (25 steps, guidance 5, seed 0, euler, no progress bar, the empty
    negative prompt, the model's own flow shift)."""

    steps: int
    guidance: float
    guidance_interval: tuple[float, float] | None
    seed: int
    sampler: str
    progress: bool
    negative_prompt: str
    shift: float | None


# ---------------------------------------------------------------------------------------------
# Loading


def default_model_path() -> Path | None:
    """The shipped model inside the package, if this install carries one."""
    path = Path(__file__).parent / "assets" / "model"
    return path if (path / "config.json").exists() else None


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


def load(path: str | Path | None = None, device: str = "auto") -> Model:
    """Load a model folder (default: the shipped model) or a Wan 2.1 checkpoint folder onto a device."""
    if path is None:
        path = default_model_path()
        if path is None:
            raise RequestError(
                "this install ships no trained model yet; pass --model DIR "
                "(make a random one with `tessera model init --preset s --out DIR`)"
            )
    from tessera import wan

    if wan.layout(path) is not None:
        return wan.load(path, pick_device(device))
    return load_model(path, pick_device(device))


def init_model_folder(preset: str, out: str | Path, seed: int = 0, vae: str | Path | None = None) -> Path:
    """Write a randomly initialised model folder: the tokenizer trained on world captions. With `vae` (a
    model folder holding at least `vae.safetensors`, config.json and tokenizer.json, e.g. a VAE run's
    model), its VAE weights and tokenizer are taken and only the text encoder and DiT are random: a
    starting point for DiT training on a VAE trained elsewhere."""
    config = get_preset(preset)
    torch.manual_seed(seed)
    if vae is None:
        model = build_model(config, train_tokenizer(config))
    else:
        vae = Path(vae)
        theirs = ModelConfig.from_dict(read_json(vae / "config.json"))
        if theirs.vae != config.vae:
            raise RequestError(f"{vae}: its VAE config differs from preset '{preset}''s; use that preset")
        model = build_model(config, Tokenizer.from_file(vae / "tokenizer.json"))
        load_into(model.vae, load_tensors(vae, "vae"), f"{vae}/vae")
    source = f" with the VAE of {vae}" if vae is not None else ""
    card = (
        f"# tessera `{preset}` (UNTRAINED)\n\nRandomly initialised with seed {seed}{source} by "
        "`tessera model init`. Its output is noise: use it for tests and experiments only.\n"
    )
    return save_model(model, out, card=card)


def grow_model_folder(src: str | Path, preset: str, out: str | Path) -> Path:
    """Write the trained model folder `src` as the deeper and/or wider `preset` (the same but for the DiT's
    depth and MLP width): the VAE, text encoder and tokenizer as they are, the DiT grown by `deepen` and
    `widen` so that the new folder generates exactly what `src` does until it is trained further
    (`tessera train dit --init OUT`)."""
    model, config = load_model(src), get_preset(preset)
    have = model.config.dit
    grown = dataclasses.replace(have, depth=config.dit.depth, ffn_dim=config.dit.ffn_dim)
    if (model.config.vae, model.config.text, grown) != (config.vae, config.text, config.dit):
        raise RequestError(
            f"{src} holds a '{model.config.preset}' model, which differs from preset '{preset}' in more "
            "than the DiT's depth and MLP width; grow into a preset that only adds blocks or MLP units "
            "(e.g. s -> s-deep, s-deeper -> s-wide)"
        )
    want = config.dit
    more = (want.depth - have.depth, want.ffn_dim - have.ffn_dim)
    if min(more) < 0 or max(more) == 0:
        raise RequestError(
            f"preset '{preset}' has {want.depth} DiT blocks of MLP width {want.ffn_dim} and {src} has "
            f"{have.depth} of width {have.ffn_dim}; growing needs more of one and no fewer of either"
        )
    model.dit, model.config = widen(deepen(model.dit, want.depth), want.ffn_dim), config
    card = (
        f"# tessera `{preset}` grown from {src} (not trained further)\n\nWritten by `tessera model grow`: "
        f"the source's weights, its {have.depth} DiT blocks interleaved with {more[0]} new ones that start "
        f"silent, each MLP's {have.ffn_dim} hidden units followed by {more[1]} new ones that start silent, "
        "so it samples exactly as the source does.\n"
    )
    return save_model(model, out, card=card)


def train_tokenizer(config: ModelConfig, count: int = 4000, seed: int = 0) -> Tokenizer:
    """A BPE tokenizer trained on `count` world captions (no rendering, a second of CPU)."""
    from tessera.world import caption_corpus

    return Tokenizer.train(caption_corpus(count, seed=seed), vocab_size=config.text.vocab_size)


def describe(path: str | Path) -> str:
    """A model folder's card, config and parameter counts (or a Wan folder's parts), for `tessera info`."""
    from tessera import wan

    if wan.layout(path) is not None:
        return wan.describe(path)
    model = load_model(path, "meta")
    counts = {k: sum(p.numel() for p in m.parameters()) for k, m in model.modules().items()}
    lines = [model.card.strip(), "", "## Config", "", "```", _pretty(model.config.to_dict()), "```", ""]
    lines += ["## Parameters", ""] + [f"- {k}: {n / 1e6:.2f}M" for k, n in counts.items()]
    return "\n".join(lines)


def _pretty(d: dict, indent: int = 0) -> str:
    out = []
    for k, v in d.items():
        if isinstance(v, dict):
            out += [" " * indent + f"{k}:", _pretty(v, indent + 2)]
        else:
            out.append(" " * indent + f"{k}: {v}")
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# Request checks: refuse before any work, naming the nearest valid values.


def check_request(config: ModelConfig, frames: int, height: int, width: int, device: torch.device) -> None:
    """Raise RequestError unless (frames, height, width) is servable on `device`."""
    _check_frames(frames)
    for name, v in (("height", height), ("width", width)):
        if v < 16 or v % 16 or v > MAX_SIDE:
            near = min(MAX_SIDE, max(16, 16 * round(v / 16)))
            raise RequestError(
                f"--{name} must be a multiple of 16 between 16 and {MAX_SIDE}; got {v}, try {near}"
            )
    need, have = estimate_memory(config, frames, height, width), available_memory(device)
    if need > have:
        fit = frames
        while fit > 1 and estimate_memory(config, fit, height, width) > have:
            fit -= 4
        raise RequestError(
            f"{frames} frames at {width}x{height} need about {need / 2**30:.1f} GiB but {device} has "
            f"{have / 2**30:.1f} GiB free; at this size at most {fit} frames fit, or lower the size"
        )


def _request_shape(model: Model, frames: int, height: int, width: int) -> tuple[int, int, int]:
    """The latent shape (T_z, h, w) of `frames` frames at height x width, once `check_request` passes."""
    check_request(model.config, frames, height, width, _device(model))
    return (1 + (frames - 1) // 4, height // 8, width // 8)


def _device(model: Model) -> torch.device:
    """The device the model's DiT (and so sampling) runs on."""
    return next(model.dit.parameters()).device


def estimate_memory(config: ModelConfig, frames: int, height: int, width: int) -> int:
    """Rough peak bytes of sampling with guidance (two branches) and chunked, tiled decoding."""
    if is_wan(config):
        from tessera import wan

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


# ---------------------------------------------------------------------------------------------
# Sampling


@contextmanager
def across_ranks(model: Model, sp: int = 0) -> Iterator[bool]:
    """Within the block the DiT runs sequence-parallel over the processes of a `torchrun --nproc-per-node N`
    launch, each holding 1/N of the video's tokens (`tessera.parallel`); yields True on the one process
    that should write files. Every process makes the same request and gets the same result.

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
        yield True
        return
    import torch.distributed as dist

    from tessera.parallel import sequence_parallel

    device = _device(model)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        with sequence_parallel(model.dit):
            yield dist.get_rank() == 0
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
    steps: int = 25,
    guidance: float = 5.0,
    seed: int = 0,
    sampler: str = "euler",
    guidance_interval: tuple[float, float] | None = None,
    x0_given: torch.Tensor | None = None,
    given: torch.Tensor | None = None,
    cond: torch.Tensor | None = None,
    progress: bool = False,
    x0_src: torch.Tensor | None = None,
    strength: float = 1.0,
    negative_prompt: str = "",
    shift: float | None = None,
) -> torch.Tensor:
    """Sample normalised latents (1, C_z, T_z, h, w) for `prompt`, holding `given` frames clean.

    `given (1, T_z)` bool marks latent frames fixed to `x0_given`; `cond` is the DiT's extra input
    (masked-video latents + pixel-frame mask) or None for plain text-to-video. With `x0_src` (SDEdit)
    the flow starts from the source noised to `t = strength` instead of from pure noise.
    `guidance_interval = (lo, hi)` applies guidance only at times in [lo, hi] (`samplers.guided`).
    The unconditional branch of guidance encodes `negative_prompt` (empty: the null caption). `shift`
    shifts the time grid towards noise: None takes the model's `flow_shift`, and a model without one the
    token-count shift. A DiT without condition channels holds the given frames at the current noise
    level (the initial noise's own draw) instead of clean at t = 0: such a network was trained with one
    time for the whole clip.
    """
    if sampler not in SAMPLERS:
        raise RequestError(f"--sampler must be one of {', '.join(SAMPLERS)}; got '{sampler}'")
    if steps < 1:
        raise RequestError(f"--steps must be at least 1; got {steps}")
    check_guidance_interval(guidance_interval)
    if shift is not None and not shift > 0:
        raise RequestError(f"--shift must be positive (1 = no shift); got {shift}")
    device = _device(model)
    t_z, h, w = latent_shape
    captions = [prompt] if guidance == 1 else [prompt, negative_prompt]  # conditional, then unconditional
    text, text_mask = encode_text(model, captions, device)
    gen = torch.Generator("cpu").manual_seed(seed)  # CPU generator: the same noise on every device
    noise = torch.randn(1, model.config.vae.z_channels, t_z, h, w, generator=gen).to(device)

    dtype = next(model.dit.parameters()).dtype  # bf16 weights (Wan on a GPU) see bf16 inputs

    def dit_fn(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        n = len(x_t)  # 2 (the caption, then the null one), or 1 outside a guidance interval
        c = None if cond is None else cond.expand(n, -1, -1, -1, -1).to(dtype)
        return model.dit(x_t.to(dtype), t, text[:n].to(dtype), text_mask[:n], c).to(x_t.dtype)

    # both branches in one batch
    v_fn = dit_fn if guidance == 1 else guided(dit_fn, guidance, guidance_interval)
    pt, ph, pw = model.config.dit.patch
    if not 0.0 <= strength <= 1.0:
        raise RequestError(f"--strength must be in [0, 1]; got {strength}")
    shift = model.config.flow_shift if shift is None else shift
    if shift is None:
        shift = token_shift(t_z // pt * (h // ph) * (w // pw))
    ts = timesteps(steps, shift, start=strength).to(device)
    x_start = noise if x0_src is None else sdedit_start(x0_src.to(noise), noise, strength)
    held_noise = None if model.config.dit.conditioned or given is None else noise
    return SAMPLERS[sampler](
        v_fn, x_start, ts, x0_given=x0_given, given=given, progress=progress, given_noise=held_noise
    )


def check_guidance_interval(interval: tuple[float, float] | None) -> None:
    """Refuse a guidance interval that is not LO < HI within [0, 1] (None: guidance at every time)."""
    if interval is not None and not 0 <= interval[0] < interval[1] <= 1:
        raise RequestError(f"--guidance-interval must be LO,HI with 0 <= LO < HI <= 1; got {interval}")


def generate(
    model: Model,
    prompt: str,
    frames: int = 33,
    height: int = 128,
    width: int = 128,
    **sampling: Unpack[Sampling],
) -> torch.Tensor:
    """Text-to-video: uint8 frames (T, H, W, 3) for `prompt`."""
    z = sample_latents(model, prompt, _request_shape(model, frames, height, width), **sampling)
    return decode(model, z)


# ---------------------------------------------------------------------------------------------
# Conditioned capabilities: each is `conditioned` (one `sample_latents` call) with a pixel mask.
#
# Which pixel frames are given decides everything else, exactly as in training (tessera.train.tasks):
# the latent frames held clean are `given_latents(mask)` (exact only for a given prefix, by the VAE's
# causality), and the DiT's `cond` input is `build_cond(vae, clip, mask)` for any non-empty mask.


def conditioned(
    model: Model,
    prompt: str,
    clip: torch.Tensor | None,
    pixel_mask: torch.Tensor,
    height: int,
    width: int,
    **sampling: Unpack[Sampling],
) -> torch.Tensor:
    """Latents (1, C_z, T_z, h, w) of a clip whose pixel frames `pixel_mask (T,)` are given by `clip`.

    `clip (3, T, H, W)` in [-1, 1] holds the given frames (other frames are ignored: zeroed as in
    training). The latent frames of a given prefix come back exactly equal to the clip's encoding.
    """
    from tessera.train.tasks import build_cond, given_latents

    shape = _request_shape(model, pixel_mask.shape[0], height, width)
    device = _device(model)
    x0_given = given = cond = None
    if pixel_mask.any() and not model.config.dit.conditioned:
        # No condition channels: the latent frames whose pixel frames are all given are held (at the
        # noise level of each step); exact for a given prefix, from the zero-filled clip elsewhere.
        from tessera.train.tasks import mask_channels

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
    from tessera.video import to_uint8

    return to_uint8(model.vae.decode_latents(z).float().cpu())


def encode(model: Model, frames_u8: torch.Tensor) -> torch.Tensor:
    """uint8 frames (T, H, W, 3), T = 1 + 4k -> normalised latents (1, C_z, T_z, h, w) (posterior mean)."""
    from tessera.video import to_tensor

    return model.vae.encode_latents(to_tensor(frames_u8)[None].to(_device(model)))


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


def _clip(frames_u8: torch.Tensor, total: int, at: int) -> torch.Tensor:
    """A (3, total, H, W) clip in [-1, 1]: `frames_u8` placed from frame `at`, zeros elsewhere."""
    from tessera.video import to_tensor

    x = to_tensor(frames_u8)
    out = x.new_zeros(3, total, *x.shape[2:])
    out[:, at : at + x.shape[1]] = x
    return out


def _size_of(frames_u8: torch.Tensor, height: int | None, width: int | None) -> tuple[int, int]:
    """(height, width) asked for, defaulting to the input's own size."""
    return (height or int(frames_u8.shape[-3]), width or int(frames_u8.shape[-2]))


def _out(
    model: Model, z: torch.Tensor, return_latents: bool
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    frames = decode(model, z)
    return (frames, z) if return_latents else frames


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


def image(
    model: Model, prompt: str, width: int = 128, height: int = 128, **sampling: Unpack[Sampling]
) -> torch.Tensor:
    """Text-to-image: uint8 (H, W, 3), sampled as a one-frame video; large frames decode in tiles."""
    return generate(model, prompt, 1, height, width, **sampling)[0]


def animate(
    model: Model,
    image: torch.Tensor,
    prompt: str,
    frames: int = 33,
    height: int | None = None,
    width: int | None = None,
    return_latents: bool = False,
    **sampling: Unpack[Sampling],
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Image-to-video: uint8 (frames, H, W, 3) starting at `image (H, W, 3)` (size: the image's own).

    Pixel frame 0 is given; latent frame 0 (the image encoded alone, exact by causality) is held clean.
    """
    from tessera.train.tasks import pixel_mask_for

    height, width = _size_of(torch.as_tensor(image), height, width)
    still = fit(image, height, width, "image")
    _check_frames(frames)
    z = conditioned(
        model, prompt, _clip(still, frames, 0), pixel_mask_for("i2v", frames), height, width, **sampling
    )
    return _out(model, z, return_latents)


def extend(
    model: Model,
    video: torch.Tensor,
    prompt: str,
    frames: int = 33,
    direction: str = "forward",
    overlap: int | None = None,
    return_latents: bool = False,
    blend: bool = True,
    **sampling: Unpack[Sampling],
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Continue `video (T, H, W, 3)` forward or backward with a new clip of `frames` frames.

    forward: the new clip's first `overlap` frames (1 + 4k, a prefix) are the source's last `overlap`
    frames, re-encoded as a clip of their own and held clean (exact by causality). Returns the source
    followed by the new clip's frames after the overlap: T + frames - overlap frames.
    backward: the new clip's last `overlap` frames (4k) are the source's first `overlap` frames, given
    through `cond` only (their latents depend on the unknown frames before them). Returns the new
    clip's frames before the overlap followed by the source.
    With `blend` the source's overlap frames fade into the new clip's rendering of them (`crossfade`:
    the frame farthest from the join stays the source's), so the join shows no cut; every other source
    frame comes back unchanged. Without it the whole source comes back unchanged.
    """
    video = torch.as_tensor(video)
    new, z, n = _extension(model, video, prompt, frames, direction, overlap, **sampling)
    joined = join_clip(video, new, n, direction, blend)
    return (joined, z) if return_latents else joined


def _extension(
    model: Model,
    video: torch.Tensor,
    prompt: str,
    frames: int,
    direction: str,
    overlap: int | None,
    **sampling: Unpack[Sampling],
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """`extend`'s new clip: its frames (frames, H, W, 3), its latents, and n, the source frames it shares."""
    from tessera.train.tasks import pixel_mask_for

    if direction not in ("forward", "backward"):
        raise RequestError(f"direction must be 'forward' or 'backward'; got '{direction}'")
    _check_frames(frames)
    t_z = 1 + (frames - 1) // 4
    if t_z < 2:
        raise RequestError(f"--frames must be at least 5 to extend (one new latent frame); got {frames}")
    k = _overlap_latents(overlap, t_z, len(video), direction)
    height, width = int(video.shape[1]), int(video.shape[2])
    if direction == "forward":
        n = 1 + 4 * (k - 1)  # given prefix frames
        mask = pixel_mask_for("extend", frames, k)
        clip = _clip(video[len(video) - n :], frames, 0)
    else:
        n = 4 * k
        mask = pixel_mask_for("tail", frames, k)
        clip = _clip(video[:n], frames, frames - n)
    z = conditioned(model, prompt, clip, mask, height, width, **sampling)
    return decode(model, z), z, n


def join_clip(video: torch.Tensor, new: torch.Tensor, n: int, direction: str, blend: bool) -> torch.Tensor:
    """The source and a new clip that shares `n` of its frames, each shared frame once (faded, with
    `blend`, from the source's frame farthest from the join into the new clip's frame at it)."""
    if direction == "forward":
        shared = crossfade(video[len(video) - n :], new[:n]) if blend else video[len(video) - n :]
        return torch.cat([video[: len(video) - n], shared, new[n:]])
    shared = crossfade(new[-n:], video[:n]) if blend else video[:n]
    return torch.cat([new[:-n], shared, video[n:]])


def _overlap_latents(overlap: int | None, t_z: int, source: int, direction: str) -> int:
    """The task's k from the overlap in pixel frames (default: about half the new clip, as fits)."""
    if direction == "forward":
        fits = min(t_z - 1, 1 + (source - 1) // 4)  # 1 + 4(k - 1) <= source, one latent left to make
        if overlap is None:
            return max(1, min(fits, (t_z + 1) // 2))
        if (overlap - 1) % 4 or not 1 <= overlap <= 1 + 4 * (fits - 1):
            raise RequestError(
                f"forward --overlap must be 1 + 4k frames between 1 and {1 + 4 * (fits - 1)}; got {overlap}"
            )
        return 1 + (overlap - 1) // 4
    fits = min(t_z - 1, source // 4)
    if fits < 1:
        raise RequestError(f"extending backward needs a source of at least 4 frames; got {source}")
    if overlap is None:
        return max(1, min(fits, t_z // 2))
    if overlap % 4 or not 4 <= overlap <= 4 * fits:
        raise RequestError(
            f"backward --overlap must be a multiple of 4 between 4 and {4 * fits}; got {overlap}"
        )
    return overlap // 4


def connect(
    model: Model,
    video_a: torch.Tensor,
    video_b: torch.Tensor,
    prompt: str,
    frames: int = 33,
    return_latents: bool = False,
    blend: bool = True,
    **sampling: Unpack[Sampling],
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """A bridge of `frames` frames from where A ends to where B starts: returns A, the bridge, B joined.

    The trained `connect` pattern: the bridge starts with A's last 5 frames (a prefix: two latent
    frames held clean, exact, and they carry A's motion into the bridge) and ends with B's first 4
    (through `cond`). Bridges shorter than 17 frames, or clips too short to lend those frames, use the
    `first_last` pattern: one frame from each. B is fitted to A's size when only the scale differs.
    Shared frames appear once: A + the bridge's new frames + B. With `blend` the shared frames fade
    between the given clips and the bridge's rendering of them, as in `extend`.
    """
    from tessera.train.tasks import pixel_mask_for

    video_a = torch.as_tensor(video_a)
    height, width = int(video_a.shape[1]), int(video_a.shape[2])
    video_b = fit(video_b, height, width, "second video")
    _check_frames(frames)
    if frames < 5:
        raise RequestError(f"--frames must be at least 5 to connect two clips; got {frames}")
    with_motion = frames >= 17 and len(video_a) >= 5 and len(video_b) >= 4
    mask = pixel_mask_for("connect", frames, 3) if with_motion else pixel_mask_for("first_last", frames)
    head, tail = (5, 4) if with_motion else (1, 1)
    clip = _clip(video_a[-head:], frames, 0)
    clip[:, frames - tail :] = _clip(video_b[:tail], tail, 0)
    z = conditioned(model, prompt, clip, mask, height, width, **sampling)
    bridge = decode(model, z)
    blend = blend and with_motion  # (one shared frame each: nothing to fade through, the given ones stay)
    joined = join_clip(video_b, join_clip(video_a, bridge, head, "forward", blend), tail, "backward", blend)
    return (joined, z) if return_latents else joined


def loop(
    model: Model,
    prompt: str,
    frames: int = 33,
    video: torch.Tensor | None = None,
    height: int = 128,
    width: int = 128,
    return_latents: bool = False,
    fade: int | None = None,
    **sampling: Unpack[Sampling],
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """A clip of `frames` frames that starts and ends on the same frame (the trained `loop` pattern).

    The loop frame is `video`'s first frame (fitted to height x width) or, without a video, a
    one-frame sample of `prompt`. Latent 0 is held clean; the far end goes through `cond`, and the model
    brings the clip back to the loop frame itself. (Overwriting the last latent frame with the first, as
    this did before, made the ends worse: with the shipped model the last-to-first change was 3.9-8.4
    times the clip's median frame change on three quick-suite prompts, against 1.4-2.9 without; the
    first latent decodes to one frame, any later one to four.) What the model leaves of the gap is
    faded out over the last `fade` frames (`close_loop`; default `loop_fade(frames)`; 0: as decoded), so
    the last frame is the first exactly: for seamless repeated playback drop the last frame.
    """
    from tessera.train.tasks import pixel_mask_for

    _check_frames(frames)
    if frames < 5:
        raise RequestError(f"--frames must be at least 5 to loop; got {frames}")
    fade = loop_fade(frames) if fade is None else fade
    _check_fade(fade, frames)
    if video is None:
        _request_shape(model, frames, height, width)  # refuse the whole request before sampling the still
        still = generate(model, prompt, 1, height, width, **sampling)
    else:
        still = fit(torch.as_tensor(video)[:1], height, width, "video")
    clip = _clip(still, frames, 0)
    clip[:, -1] = clip[:, 0]
    z = conditioned(model, prompt, clip, pixel_mask_for("loop", frames), height, width, **sampling)
    looped = close_loop(decode(model, z), fade)
    return (looped, z) if return_latents else looped


def loop_fade(frames: int) -> int:
    """`loop`'s default fade: LOOP_FADE frames, at most half the clip's steps (8 of 17 or 33, 4 of 9).

    On the quick suite's 17-frame loops (`python bench/seams.py`, CPU, 2026-12-04) the closing's largest
    step was 2.08 times the clip's median frame change as decoded, 1.57 with 4 frames faded and 1.17 with
    8 (every prompt within 1.5 with 8, against 4 of 8 as decoded)."""
    return min(LOOP_FADE, (frames - 1) // 2)


def close_loop(frames_u8: torch.Tensor, fade: int) -> torch.Tensor:
    """uint8 (T, H, W, 3) with its last `fade` frames faded toward its first (`crossfade`), linearly,
    so that the last frame is the first exactly; `fade` 0 returns the frames as they are."""
    _check_fade(fade, len(frames_u8))
    if fade == 0:
        return frames_u8
    n = fade + 1  # the first of these keeps its weight 0: `fade` frames change
    tail = crossfade(frames_u8[-n:], frames_u8[:1].expand(n, -1, -1, -1))
    return torch.cat([frames_u8[:-n], tail])


def edit(
    model: Model,
    video: torch.Tensor,
    prompt: str,
    strength: float = 0.6,
    return_latents: bool = False,
    **sampling: Unpack[Sampling],
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """SDEdit: re-imagine `video (T, H, W, 3)` under `prompt`, keeping more of it the lower `strength`.

    The source latents are noised to `t = strength` and the flow is integrated from there (0 returns
    the source latents exactly; 1 ignores the source).
    """
    video = torch.as_tensor(video)
    frames, height, width = (int(v) for v in video.shape[:3])
    _request_shape(model, frames, height, width)
    if not 0.0 <= strength <= 1.0:
        raise RequestError(f"--strength must be in [0, 1]; got {strength}")
    x0_src = encode(model, video)
    z = sample_latents(model, prompt, tuple(x0_src.shape[2:]), x0_src=x0_src, strength=strength, **sampling)
    return _out(model, z, return_latents)


def long(
    model: Model,
    prompt: str,
    frames: int = 65,
    window: int = 33,
    overlap: int | None = None,
    height: int = 128,
    width: int = 128,
    blend: bool = True,
    **sampling: Unpack[Sampling],
) -> torch.Tensor:
    """A video longer than the trained length: a text-to-video window, then forward extensions.

    Each later window's prefix is the previous windows' last `overlap` frames (1 + 4k), re-encoded
    from pixels and held clean, as in `extend`; window i samples with seed + i (`seed` default 0).
    With `blend` the returned video fades across each overlap as `extend` does, but every window is
    conditioned on the frames as sampled, so `blend` changes only what is shown, never what is sampled.
    (Conditioned on the faded frames instead, each prefix would start on a VAE round trip of the last;
    tried on the quick suite, long_permanence read lower, by no more than its noise: no reason to.)
    """
    segments, overlap = long_segments(frames, window, overlap)
    seed = sampling.pop("seed", 0)
    sampled = generate(model, prompt, segments[0][1], height, width, seed=seed, **sampling)
    shown = sampled
    for i, (a, b) in enumerate(segments[1:], start=1):  # the last window may be shorter
        size = overlap + b - a
        new, _, n = _extension(model, sampled, prompt, size, "forward", overlap, seed=seed + i, **sampling)
        sampled = join_clip(sampled, new, n, "forward", blend=False)  # what the next window is given
        shown = join_clip(shown, new, n, "forward", blend)
    return shown


def long_segments(
    frames: int, window: int = 33, overlap: int | None = None
) -> tuple[list[tuple[int, int]], int]:
    """How `long` lays out a video: the frames [a, b) each window adds (the first window, then each
    extension's new frames), and the overlap in frames (default: about half a window, 1 + 4k)."""
    _check_frames(frames)
    _check_frames(window)
    if window < 9:
        raise RequestError(f"--window must be at least 9 frames; got {window}")
    t_z = 1 + (window - 1) // 4
    overlap = 1 + 4 * ((t_z - 1) // 2) if overlap is None else overlap
    if (overlap - 1) % 4 or not 1 <= overlap <= window - 4:
        raise RequestError(f"--overlap must be 1 + 4k frames between 1 and {window - 4}; got {overlap}")
    cuts = [0, min(frames, window), *range(window + window - overlap, frames, window - overlap)]
    cuts = sorted(set(cuts + [frames]))
    return list(zip(cuts, cuts[1:], strict=False)), overlap


def _check_fade(fade: int, frames: int) -> None:
    if not 0 <= fade <= frames - 2:
        raise RequestError(f"--fade must be between 0 and {frames - 2} (frames - 2); got {fade}")


def _check_frames(frames: int) -> None:
    """Refuse a frame count not of the form 1 + 4k, naming the nearest valid ones."""
    if frames < 1 or (frames - 1) % 4:
        lo = max(1, 1 + 4 * ((frames - 1) // 4))
        raise RequestError(
            f"--frames must be 1 + 4k (1, 5, 9, ..., 33, ...); got {frames}, try {lo} or {lo + 4}"
        )
