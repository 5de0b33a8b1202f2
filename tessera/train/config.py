"""Training configs: one flat dataclass per trainer, saved as `train_config.json` in the run folder.

Values come, in order, from the dataclass defaults, an optional JSON file (`--config FILE`, any subset
of the fields) and command-line flags. Unknown keys and wrong types are errors that list what exists,
so a typo never silently trains with a default.

Shapes are strings `FRAMESxHEIGHTxWIDTH` (frames of the form 1 + 4k, sides multiples of 16) with an
optional weight `:W`, e.g. `"1x64x64:1,17x64x64:3,17x64x96:1"`: images, clips and aspect ratios mixed.
The task mix is `name:weight,...` over `tessera.conditioning.TASKS`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tessera.checkpoint import read_json
from tessera.config import PRESETS
from tessera.errors import RequestError as ConfigError
from tessera.models.dit import CHECKPOINT_MODES
from tessera.train.tasks import check_mix


@dataclass(frozen=True)
class VAETrainConfig:
    """Everything that decides a VAE training run (model size comes from the preset)."""

    preset: str = "s"
    data: str = "world"  # "world" or a folder / manifest.jsonl of videos and images
    steps: int = 20000
    batch_size: int = 8  # global: split over ranks
    shapes: str = "17x64x64:3,1x64x64:1"
    batch_shapes: str = "mixed"  # "mixed": each clip draws a shape; "one": each step draws one for all
    lr: float = 2e-4
    weight_decay: float = 0.0
    warmup: int = 200
    schedule: str = "cosine"  # or "constant" (after warm-up)
    min_lr_ratio: float = 0.1  # cosine ends at lr * min_lr_ratio
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    l1_weight: float = 1.0
    detail_weight: float = 0.0  # > 0: L1 per pixel weighted by 1 + this x its contrast to its surround
    object_weight: float = 0.0  # > 0 (world data): L1 on object pixels weighted by 1 + this (world masks)
    ssim_weight: float = 0.5  # structural term: 1 - SSIM per frame
    kl_weight: float = 1e-6
    adv_weight: float = 0.0  # 0 turns the adversarial term off
    adv_start: int = 5000  # steps of reconstruction-only warm-up before the discriminator acts
    disc_lr: float = 1e-4
    freeze_encoder: bool = False  # True: only the decoder trains; the init's latents and statistics stay
    stats_clips: int = 64  # clips encoded at the end to measure the latent mean/std
    world_clips: int = 0  # > 0: the world source repeats its first N clips, rendered once and kept
    # > 0: train on random crop x crop windows of each clip (the VAE is convolutional, with no attention
    # and per-position norms, so a crop is as good a training example as a frame, at a fraction of its cost)
    crop: int = 0
    # True: the finite set's clips (world_clips, or a data folder) are kept on the device as uint8 with their
    # object masks, and a step crops them and draws its posterior noise there (`KeptClips` in
    # tessera/train/vae.py): no per-clip Python, no host copy; needs one clip shape per step
    kept: bool = False
    seed: int = 0
    init: str = ""  # a model folder to start from ("" = random init + tokenizer from world captions)
    device: str = "auto"
    precision: str = "auto"  # "auto" (bf16 autocast on CUDA), "bf16" or "fp32"
    compile: bool = False
    distributed: str = "auto"  # "auto" (ddp when launched with several ranks), "none", "ddp", "fsdp"
    log_every: int = 10
    ckpt_every: int = 1000
    sample_every: int = 1000  # 0 = never
    time_limit_min: float = 0.0  # checkpoint and stop cleanly after this many minutes (0 = no limit)

    def __post_init__(self) -> None:
        _check_common(self)
        for name in ("l1_weight", "detail_weight", "ssim_weight", "kl_weight", "adv_weight"):
            _check(getattr(self, name) >= 0, name, getattr(self, name), "a weight >= 0")
        _check(self.stats_clips >= 1, "stats_clips", self.stats_clips, "an integer >= 1")
        _check(self.world_clips >= 0, "world_clips", self.world_clips, "an integer >= 0")
        _check(
            self.crop >= 0 and self.crop % 16 == 0, "crop", self.crop, "0 (whole frames) or a multiple of 16"
        )
        _check(
            not self.kept or (self.world_clips > 0 or self.data != "world"), "kept", self.kept,
            "False unless the data set is finite (world_clips > 0, or a data folder)",
        )  # fmt: skip
        _check(
            not self.kept or (self.batch_shapes == "one" or "," not in self.shapes), "kept", self.kept,
            "False unless every step has one clip shape (batch_shapes 'one', or a single shape)",
        )  # fmt: skip
        _check(
            not self.freeze_encoder or self.init, "freeze_encoder", self.freeze_encoder,
            "False unless init names a trained model (a random encoder is not worth keeping)",
        )  # fmt: skip


@dataclass(frozen=True)
class DiTTrainConfig:
    """Everything that decides a DiT training run (model size comes from the preset)."""

    preset: str = "s"
    data: str = "world"
    steps: int = 20000
    batch_size: int = 16  # global clips per step, split over ranks
    shapes: str = "1x64x64:1,17x64x64:4,17x64x96:1,9x96x64:1"
    batch_shapes: str = "mixed"  # "mixed": each clip draws a shape; "one": each step draws one for all
    batching: str = "packed"  # "packed" (one sequence, per-clip attention) or "bucketed" (a call per shape)
    tasks: str = "t2v:6,i2v:2,extend:2,tail:1,connect:1,loop:1,first_last:1,last:1,random:1"
    caption_dropout: float = 0.1  # empty caption, for classifier-free guidance
    short_caption_prob: float = 0.2  # use the short caption instead of the detailed one
    object_weight: float = 0.0  # > 0 (world data): latent cells under an object weigh 1 + this in the loss
    freeze_text: bool = False  # False: the text encoder trains jointly with the DiT
    cache_latents: bool = False  # encode each clip once (needs a finite data set or world_clips > 0)
    world_clips: int = 0  # > 0: the world source repeats its first N clips, rendered once and kept
    # > 0: the kept set (tessera/train/kept.py): the finite set's clips, captions and this many conditioning
    # tasks per clip encoded once on the device, so a step only gathers (needs one shape per step)
    task_variants: int = 0
    shift: float = 0.0  # training-time shift; 0 = token-dependent (FLUX), as the sampler uses
    lr: float = 1e-4
    weight_decay: float = 0.0
    warmup: int = 500
    schedule: str = "cosine"
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    seed: int = 0
    init: str = ""  # a model folder (trained VAE, tokenizer) to start from
    # a model folder whose VAE alone the run takes (its config.json and VAE weights suffice), with the text
    # encoder, tokenizer and DiT fresh from the preset: a VAE trained under another preset, carried small
    vae_from: str = ""
    device: str = "auto"
    precision: str = "auto"
    compile: bool = False
    checkpointing: bool = False  # activation checkpointing in the DiT blocks
    checkpoint_fraction: float = 1.0  # with checkpointing: the fraction of blocks (from the first) it covers
    checkpoint_mode: str = "full"  # recompute whole blocks, or "selective": all but the attention outputs
    distributed: str = "auto"
    sp: int = 1  # sequence parallel: ranks sharing each clip's tokens (needs batching "bucketed")
    log_every: int = 10
    ckpt_every: int = 1000
    sample_every: int = 1000
    sample_prompt: str = "a red ball rolls across a wooden floor"
    time_limit_min: float = 0.0

    def __post_init__(self) -> None:
        _check_common(self)
        _check(self.batching in ("packed", "bucketed"), "batching", self.batching, "packed or bucketed")
        for name in ("caption_dropout", "short_caption_prob"):
            _check(0 <= getattr(self, name) <= 1, name, getattr(self, name), "a probability in [0, 1]")
        _check(self.world_clips >= 0, "world_clips", self.world_clips, "an integer >= 0")
        _check(self.task_variants >= 0, "task_variants", self.task_variants, "an integer >= 0")
        _check(
            self.task_variants == 0 or (self.batch_shapes == "one" or "," not in self.shapes),
            "task_variants", self.task_variants,
            "0 unless every step has one clip shape (batch_shapes 'one', or a single shape)",
        )  # fmt: skip
        _check(
            0 < self.checkpoint_fraction <= 1, "checkpoint_fraction", self.checkpoint_fraction, "in (0, 1]"
        )

        modes = " or ".join(CHECKPOINT_MODES)
        _check(self.checkpoint_mode in CHECKPOINT_MODES, "checkpoint_mode", self.checkpoint_mode, modes)
        _check(self.shift >= 0, "shift", self.shift, "0 (token-dependent) or a positive shift")
        _check(self.sp >= 1, "sp", self.sp, "an integer >= 1 (ranks per sequence-parallel group)")
        _check(
            self.sp == 1 or self.batching == "bucketed",
            "sp",
            self.sp,
            "1 with packed batching; use --batching bucketed for sequence parallelism",
        )

        _check(not (self.init and self.vae_from), "vae_from", self.vae_from, "empty when init is given")
        check_mix(parse_weights(self.tasks, "tasks"))


TrainConfig = VAETrainConfig | DiTTrainConfig

# Fields that may change when a run is resumed: they do not alter what the next step computes (the data
# position is global, so a run may also resume on another number of ranks).
RESUMABLE = {
    "steps",
    "compile",  # same arithmetic, fused kernels
    "log_every",
    "ckpt_every",
    "sample_every",
    "time_limit_min",
    "device",
    "sample_prompt",
    "distributed",
    "sp",
}


def _check(ok: bool, name: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"training config '{name}' = {value!r} is not valid; allowed: {allowed}")


def _check_common(cfg: TrainConfig) -> None:

    _check(cfg.preset in PRESETS, "preset", cfg.preset, ", ".join(PRESETS))
    for name in ("steps", "batch_size", "log_every"):
        _check(getattr(cfg, name) >= 1, name, getattr(cfg, name), "an integer >= 1")
    for name in ("warmup", "ckpt_every", "sample_every", "seed"):
        _check(getattr(cfg, name) >= 0, name, getattr(cfg, name), "an integer >= 0")
    _check(cfg.lr > 0, "lr", cfg.lr, "a positive learning rate")
    _check(cfg.schedule in ("cosine", "constant"), "schedule", cfg.schedule, "cosine or constant")
    _check(cfg.batch_shapes in ("mixed", "one"), "batch_shapes", cfg.batch_shapes, "mixed or one")
    _check(0 <= cfg.min_lr_ratio <= 1, "min_lr_ratio", cfg.min_lr_ratio, "a ratio in [0, 1]")
    _check(cfg.grad_clip >= 0, "grad_clip", cfg.grad_clip, "a norm >= 0 (0 = no clipping)")
    _check(0 <= cfg.ema_decay < 1, "ema_decay", cfg.ema_decay, "a decay in [0, 1)")
    _check(cfg.precision in ("auto", "bf16", "fp32"), "precision", cfg.precision, "auto, bf16 or fp32")
    modes = ("auto", "none", "ddp", "fsdp")
    _check(cfg.distributed in modes, "distributed", cfg.distributed, ", ".join(modes))
    _check(cfg.time_limit_min >= 0, "time_limit_min", cfg.time_limit_min, "minutes >= 0 (0 = no limit)")
    _check(cfg.object_weight >= 0, "object_weight", cfg.object_weight, "a weight >= 0")
    _check(
        cfg.object_weight == 0 or cfg.data == "world", "object_weight", cfg.object_weight,
        "0 unless data is 'world' (only the world engine gives object masks)",
    )  # fmt: skip
    parse_shapes(cfg.shapes)


def parse_weights(text: str, what: str) -> dict[str, float]:
    """`"a:3,b:1"` -> {"a": 3.0, "b": 1.0}; a name without `:W` weighs 1."""
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, w = part.partition(":")
        try:
            weight = float(w) if w else 1.0
        except ValueError:
            raise ConfigError(f"{what}: weight of '{name}' must be a number, got '{w}'") from None
        if weight < 0 or name in out:
            raise ConfigError(f"{what}: '{part}' repeats a name or has a negative weight")
        out[name] = weight
    if not out or sum(out.values()) <= 0:
        raise ConfigError(f"{what}: '{text}' must list at least one entry with a positive weight")
    return out


def parse_shapes(text: str) -> list[tuple[tuple[int, int, int], float]]:
    """`"17x64x64:3,1x64x64"` -> [((17, 64, 64), 3.0), ((1, 64, 64), 1.0)], each shape checked."""
    out = []
    for spec, weight in parse_weights(text, "shapes").items():
        try:
            t, h, w = (int(v) for v in spec.lower().split("x"))
        except ValueError:
            raise ConfigError(f"shapes: '{spec}' must look like FRAMESxHEIGHTxWIDTH, e.g. 17x64x64") from None
        if t < 1 or (t - 1) % 4 or h < 16 or w < 16 or h % 16 or w % 16:
            raise ConfigError(
                f"shapes: '{spec}' needs frames of the form 1 + 4k (1, 5, 9, 17, ...) and height and "
                "width multiples of 16"
            )
        out.append(((t, h, w), weight))
    return out


def config_class(kind: str) -> type[VAETrainConfig] | type[DiTTrainConfig]:
    """The config dataclass of a trainer kind ('vae' or 'dit')."""
    classes = {"vae": VAETrainConfig, "dit": DiTTrainConfig}
    if kind not in classes:
        raise ConfigError(f"unknown trainer '{kind}'; choose vae or dit")
    return classes[kind]


def make_config(kind: str, file: str | Path | None = None, **overrides: Any) -> TrainConfig:
    """Defaults, then the JSON `file` (if given), then `overrides` (None values are skipped)."""
    cls = config_class(kind)
    values: dict[str, Any] = {}
    if file is not None:
        values.update(read_config_file(file))
    values.update({k: v for k, v in overrides.items() if v is not None})
    return build(cls, values)


def build(cls: type, values: dict[str, Any]) -> TrainConfig:
    """`cls(**values)` with checked names and types (ints accepted for floats, nothing else coerced)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"unknown training config keys {unknown}; allowed: {', '.join(fields)}")
    defaults = cls()
    for name, value in values.items():
        want = type(getattr(defaults, name))
        ok = isinstance(value, want) and not (want is int and isinstance(value, bool))
        if want is float and isinstance(value, int) and not isinstance(value, bool):
            values[name], ok = float(value), True
        if not ok:
            raise ConfigError(f"training config '{name}' must be {want.__name__}, got {value!r}")
    return cls(**values)


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A JSON object of config fields; a clear error if the file is missing or not JSON."""
    data = read_json(path, ConfigError)
    data.pop("kind", None)
    return data


def to_json(cfg: TrainConfig) -> str:
    """The config as `train_config.json` text, with its trainer kind."""
    kind = "vae" if isinstance(cfg, VAETrainConfig) else "dit"
    return json.dumps({"kind": kind, **asdict(cfg)}, indent=2)
