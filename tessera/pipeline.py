"""Generation: every capability is one sampler call with different conditions.

`sample_latents` is the single place where text is encoded, noise is drawn, given latent frames are
held clean (DESIGN.md: per-frame time, `t = 0` on given frames) and the flow is integrated. The public
functions (`generate`, and the conditioned ones built on it) only decide the shapes and the
conditions, then decode.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from tessera.checkpoint import Model, build_model, load_model, save_model
from tessera.config import ModelConfig, get_preset
from tessera.flow.samplers import guided, sample_euler, sample_heun
from tessera.flow.schedules import timesteps, token_shift
from tessera.models.text import Tokenizer

SAMPLERS = {"euler": sample_euler, "heun": sample_heun}
MAX_SIDE = 2048


class RequestError(ValueError):
    """A generation request the model cannot serve; the message names the argument and valid values."""


# ---------------------------------------------------------------------------------------------
# Loading


def default_model_path() -> Path | None:
    """The shipped model inside the package, if this install carries one."""
    path = Path(__file__).parent / "assets" / "model"
    return path if (path / "config.json").exists() else None


def pick_device(device: str = "auto") -> torch.device:
    """'auto' -> cuda when available, else cpu; anything else is checked."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise RequestError(f"--device must be cpu, cuda, cuda:N or auto; got '{device}'")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RequestError(f"--device {device} asked for, but this machine has no CUDA GPU; use cpu")
    return torch.device(device)


def load(path: str | Path | None = None, device: str = "auto") -> Model:
    """Load a model folder (default: the shipped model) onto a device."""
    if path is None:
        path = default_model_path()
        if path is None:
            raise RequestError(
                "this install ships no trained model yet; pass --model DIR "
                "(make a random one with `tessera model init --preset s --out DIR`)"
            )
    return load_model(path, pick_device(device))


def init_model_folder(preset: str, out: str | Path, seed: int = 0) -> Path:
    """Write a randomly initialised model folder: the tokenizer trained on world captions."""
    config = get_preset(preset)
    torch.manual_seed(seed)
    model = build_model(config, train_tokenizer(config))
    card = (
        f"# tessera `{preset}` (UNTRAINED)\n\nRandomly initialised with seed {seed} by "
        "`tessera model init`. Its output is noise: use it for tests and experiments only.\n"
    )
    return save_model(model, out, card=card)


def train_tokenizer(config: ModelConfig, count: int = 4000, seed: int = 0) -> Tokenizer:
    """A BPE tokenizer trained on `count` world captions (no rendering, a second of CPU)."""
    from tessera.world import caption_corpus

    return Tokenizer.train(caption_corpus(count, seed=seed), vocab_size=config.text.vocab_size)


def describe(path: str | Path) -> str:
    """A model folder's card, config and parameter counts, for `tessera info`."""
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
    if frames < 1 or (frames - 1) % 4:
        lo = max(1, 1 + 4 * ((frames - 1) // 4))
        raise RequestError(
            f"--frames must be 1 + 4k (1, 5, 9, ..., 33, ...); got {frames}, try {lo} or {lo + 4}"
        )
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


def estimate_memory(config: ModelConfig, frames: int, height: int, width: int) -> int:
    """Rough peak bytes of sampling with guidance (two branches) and chunked, tiled decoding."""
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
    x0_given: torch.Tensor | None = None,
    given: torch.Tensor | None = None,
    cond: torch.Tensor | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Sample normalised latents (1, C_z, T_z, h, w) for `prompt`, holding `given` frames clean.

    `given (1, T_z)` bool marks latent frames fixed to `x0_given`; `cond` is the DiT's extra input
    (masked-video latents + pixel-frame mask) or None for plain text-to-video.
    """
    if sampler not in SAMPLERS:
        raise RequestError(f"--sampler must be one of {', '.join(SAMPLERS)}; got '{sampler}'")
    if steps < 1:
        raise RequestError(f"--steps must be at least 1; got {steps}")
    device = next(model.dit.parameters()).device
    t_z, h, w = latent_shape
    captions = [prompt] if guidance == 1 else [prompt, ""]  # conditional, then the null caption
    text, text_mask = encode_text(model, captions, device)
    gen = torch.Generator("cpu").manual_seed(seed)  # CPU generator: the same noise on every device
    noise = torch.randn(1, model.config.vae.z_channels, t_z, h, w, generator=gen).to(device)

    def dit_fn(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        c = None if cond is None else cond.expand(len(x_t), -1, -1, -1, -1)
        return model.dit(x_t, t, text, text_mask, c)

    v_fn = dit_fn if guidance == 1 else guided(dit_fn, guidance)  # both branches in one batch
    pt, ph, pw = model.config.dit.patch
    ts = timesteps(steps, token_shift(t_z // pt * (h // ph) * (w // pw))).to(device)
    return SAMPLERS[sampler](v_fn, noise, ts, x0_given=x0_given, given=given, progress=progress)


def generate(
    model: Model,
    prompt: str,
    frames: int = 33,
    height: int = 128,
    width: int = 128,
    steps: int = 25,
    guidance: float = 5.0,
    seed: int = 0,
    sampler: str = "euler",
    progress: bool = False,
) -> torch.Tensor:
    """Text-to-video: uint8 frames (T, H, W, 3) for `prompt`."""
    from tessera.video import to_uint8

    device = next(model.dit.parameters()).device
    check_request(model.config, frames, height, width, device)
    shape = (1 + (frames - 1) // 4, height // 8, width // 8)
    z = sample_latents(model, prompt, shape, steps, guidance, seed, sampler, progress=progress)
    return to_uint8(model.vae.decode_latents(z).float().cpu())
