"""Dataclass configs for every component, and the named presets.

A model folder's `config.json` is `asdict(ModelConfig)`; `ModelConfig.from_dict` reads it back and
refuses unknown or missing keys, so a typo never silently becomes a default. The only keys that may be
missing are those added after model folders were first shipped (`OPTIONAL_KEYS`): a folder written
before them takes their defaults, which reproduce the behaviour it was written with.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class VAEConfig:
    """Causal 3D VAE: 4x8x8 (time x height x width) compression, KL-regularised."""

    in_channels: int = 3
    z_channels: int = 16  # latent channels C_z
    base_channels: int = 64
    # Channel multiplier per resolution level; len(channel_mults) - 1 = 3 spatial halvings (8x).
    channel_mults: tuple[int, ...] = (1, 2, 4, 4)
    # Which of the 3 downsamples also halve time (two of them: 4x). Mirrored in the decoder.
    temporal_down: tuple[bool, ...] = (False, True, True)
    num_res_blocks: int = 2
    chunk_frames: int = 4  # pixel frames per causal chunk after the first frame (memory is flat)

    @property
    def space_factor(self) -> int:
        """Pixels per latent pixel along each side (8)."""
        return 2 ** (len(self.channel_mults) - 1)


@dataclass(frozen=True)
class WanVAEConfig:
    """Wan's causal VAE (`tessera.models.wan_vae`): Wan 2.1's 4x8x8 compression like `VAEConfig`, its own
    layers; with `residual` and `patch` = 2, Wan 2.2's 4x16x16 one (the TI2V-5B model's)."""

    in_channels: int = 3  # pixel channels (before `patch`)
    z_channels: int = 16
    base_channels: int = 96
    channel_mults: tuple[int, ...] = (1, 2, 4, 4)
    temporal_down: tuple[bool, ...] = (False, True, True)
    num_res_blocks: int = 2
    # pixel frames per decode chunk after the first; any multiple of 4 (Wan's own loop) is exact. 8: 1.35x
    # diffusers' decode at flat memory on an H100 (4: 1.28x), see docs/PERFORMANCE.md
    chunk_frames: int = 8
    # Wan 2.2: down and up blocks with parameter-free shortcuts (averaging, duplicating) around them.
    residual: bool = False
    # Wan 2.2: pixels are cut into patch x patch squares stacked as channels before the encoder (and the
    # decoder's output is laid back out), multiplying the spatial compression by `patch`.
    patch: int = 1
    decoder_base_channels: int | None = None  # the decoder's base width (None: base_channels)

    @property
    def space_factor(self) -> int:
        """Pixels per latent pixel along each side (8 for Wan 2.1, 16 for Wan 2.2)."""
        return 2 ** (len(self.channel_mults) - 1) * self.patch


@dataclass(frozen=True)
class WanTextConfig:
    """umT5 through `transformers` (`tessera.models.wan_text`): captions padded to `max_len` tokens."""

    max_len: int = 512
    dim: int = 4096  # the encoder's d_model = the DiT's text_dim


@dataclass(frozen=True)
class TextConfig:
    """BPE tokenizer + small transformer text encoder."""

    vocab_size: int = 4096
    max_len: int = 128  # tokens per caption, longer captions are truncated
    dim: int = 256
    depth: int = 4
    heads: int = 4


QK_NORMS = ("head", "all")


@dataclass(frozen=True)
class DiTConfig:
    """Diffusion transformer over spacetime patches of the latent video."""

    in_channels: int = 16  # = VAE z_channels
    patch: tuple[int, int, int] = (1, 2, 2)  # (pt, ph, pw) on latents
    dim: int = 384
    depth: int = 12
    heads: int = 6
    ffn_dim: int = 1536
    text_dim: int = 256  # = TextConfig.dim
    freq_dim: int = 256  # sinusoidal time-embedding width
    rope_theta: float = 10000.0
    eps: float = 1e-6
    # RMSNorm of q and k: "head" normalises each head's channels (tessera's own models), "all" the whole
    # projection across heads, as Wan 2.1 does.
    qk_norm: str = "head"
    # Whether the network takes condition channels (masked-video latents + pixel mask) beside x; Wan's
    # text-to-video models do not, and then every given frame is held through the latents alone.
    conditioned: bool = True
    # Trained with a time per latent frame and no condition channels: SkyReels-V2's diffusion forcing, and
    # Wan 2.2 TI2V-5B (its image-to-video holds the first latent frame at t = 0). Given latent frames are
    # then held clean at t = 0, as with condition channels, rather than at each step's noise level (how a
    # network trained with one time per clip sees them).
    diffusion_forcing: bool = False
    # SkyReels-V2's frame-rate embedding: None (none: every other model), or the frame rate the network
    # is told on every call (16 takes the embedding's first row, any other rate its second).
    fps_embed: int | None = None
    # Block-causal self-attention: a token sees the latent frames of its own block of `causal_block`
    # frames and of the blocks before it (SkyReels-V2's num_frame_per_block); 1 is full attention.
    causal_block: int = 1

    def __post_init__(self) -> None:
        if self.qk_norm not in QK_NORMS:
            raise ValueError(f"qk_norm must be one of {', '.join(QK_NORMS)}; got '{self.qk_norm}'")
        if self.fps_embed is not None and not (type(self.fps_embed) is int and self.fps_embed > 0):
            raise ValueError(f"fps_embed must be None or a positive whole frame rate; got {self.fps_embed!r}")
        if not (type(self.causal_block) is int and self.causal_block >= 1):
            raise ValueError(
                f"causal_block must be a whole number >= 1 (latent frames); got {self.causal_block!r}"
            )

    @property
    def per_frame_time(self) -> bool:
        """Whether given latent frames are held clean at t = 0 (a time per latent frame, as trained)."""
        return self.conditioned or self.diffusion_forcing

    @property
    def cond_channels(self) -> int:
        """Extra input channels: VAE latents of the masked video + 4 pixel-frame mask channels (0 for a
        network without condition channels)."""
        return self.in_channels + 4 if self.conditioned else 0


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model folder's networks."""

    vae: VAEConfig | WanVAEConfig = field(default_factory=VAEConfig)  # WanVAEConfig: a Wan checkpoint
    text: TextConfig | WanTextConfig = field(default_factory=TextConfig)
    dit: DiTConfig = field(default_factory=DiTConfig)
    preset: str = "custom"
    # Sampling's shift of the time grid towards noise: None is the token-count shift (`token_shift`),
    # a number is a fixed shift (Wan 2.1: 3 at 480p, 5 at 720p).
    flow_shift: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        """Rebuild from `to_dict()` output; unknown or missing keys are an error."""
        parts = {"vae": VAEConfig, "text": TextConfig, "dit": DiTConfig}
        _check_keys("model", d, {f.name for f in dataclasses.fields(cls)})
        kw: dict[str, Any] = {k: d[k] for k in ("preset", "flow_shift") if k in d}
        for name, kind in parts.items():
            _check_keys(name, d[name], {f.name for f in dataclasses.fields(kind)})
            kw[name] = kind(**{k: tuple(v) if isinstance(v, list) else v for k, v in d[name].items()})
        return cls(**kw)


# Keys added after model folders were first shipped, per config section: a folder without them takes
# the defaults (today's behaviour for every folder written before).
OPTIONAL_KEYS = {
    "model": {"flow_shift"},
    "dit": {"qk_norm", "conditioned", "diffusion_forcing", "fps_embed", "causal_block"},
    "vae": {"residual", "patch", "decoder_base_channels"},  # WanVAEConfig's Wan 2.2 options
}


def _check_keys(where: str, d: dict[str, Any], allowed: set[str]) -> None:
    if not isinstance(d, dict):
        raise ValueError(f"config section '{where}' must be a mapping, got {type(d).__name__}")
    unknown, missing = set(d) - allowed, allowed - set(d) - OPTIONAL_KEYS.get(where, set())
    if unknown or missing:
        raise ValueError(
            f"config section '{where}': unknown keys {sorted(unknown)}, missing keys {sorted(missing)}; "
            f"allowed keys are {sorted(allowed)}"
        )


def _preset(name: str, vae: VAEConfig, text: TextConfig, **dit: Any) -> ModelConfig:
    dit_cfg = DiTConfig(in_channels=vae.z_channels, text_dim=text.dim, **dit)
    return ModelConfig(vae=vae, text=text, dit=dit_cfg, preset=name)


_TINY_VAE = VAEConfig(z_channels=4, base_channels=8, channel_mults=(1, 1, 2, 2), num_res_blocks=1)
_TINY_TEXT = TextConfig(vocab_size=512, max_len=64, dim=32, depth=1, heads=2)
_SMALL_VAE = VAEConfig(z_channels=16, base_channels=32, channel_mults=(1, 2, 4, 4), num_res_blocks=1)
_SMALL_TEXT = TextConfig(vocab_size=2048, max_len=128, dim=256, depth=2, heads=4)
_BIG_TEXT = TextConfig(vocab_size=8192, max_len=256, dim=512, depth=6, heads=8)

PRESETS: dict[str, ModelConfig] = {
    # Tests: seconds on a CPU.
    "tiny": _preset("tiny", _TINY_VAE, _TINY_TEXT, dim=32, depth=2, heads=2, ffn_dim=64, freq_dim=32),
    # Small enough to ship in the package: a 9.1M-parameter DiT, a 2.1M text encoder and an 8.2M VAE,
    # 39 MB in bf16; a 33x128x128 clip samples in well under a minute on 2 CPU cores.
    "s": _preset("s", _SMALL_VAE, _SMALL_TEXT, dim=256, depth=8, heads=4, ffn_dim=1024),
    # `s` with half as many blocks again (a 13.4M DiT), grown from a trained `s` by `tessera model grow`
    # (the sixth shipped version).
    "s-deep": _preset("s-deep", _SMALL_VAE, _SMALL_TEXT, dim=256, depth=12, heads=4, ffn_dim=1024),
    # The shipped model's size: `s-deep` with four more blocks (a 17.6M DiT, 56 MB in bf16 with the VAE
    # and text encoder), grown from it the same way.
    "s-deeper": _preset("s-deeper", _SMALL_VAE, _SMALL_TEXT, dim=256, depth=16, heads=4, ffn_dim=1024),
    # `s-deeper` with MLPs twice as wide (a 26.0M DiT), grown from it by `tessera model grow` (new units
    # start silent).
    "s-wide": _preset("s-wide", _SMALL_VAE, _SMALL_TEXT, dim=256, depth=16, heads=4, ffn_dim=2048),
    # Second-generation VAEs for the latent-channel and width sweep (`bench/vae_sweep.py`): the `s` VAE's
    # layout with 16, 32 or 48 latent channels, and a wider one; the DiT is `s-deeper`'s.
    **{
        f"g2-z{z}{'-w' + str(w) if w != 32 else ''}": _preset(
            f"g2-z{z}{'-w' + str(w) if w != 32 else ''}",
            dataclasses.replace(_SMALL_VAE, z_channels=z, base_channels=w),
            _SMALL_TEXT,
            dim=256,
            depth=16,
            heads=4,
            ffn_dim=1024,
        )  # fmt: skip
        for z, w in ((16, 32), (32, 32), (48, 32), (32, 48), (48, 48))
    },
    # The second generation's DiT sizes on the g2-z32 VAE (32 latent channels), for the size sweep at equal
    # GPU minutes; `bench/generate_cost.py` measures what each costs the CPU's default generate.
    **{
        f"g2-z32-d{dim}": _preset(
            f"g2-z32-d{dim}",
            dataclasses.replace(_SMALL_VAE, z_channels=32),
            _SMALL_TEXT,
            dim=dim,
            depth=depth,
            heads=dim // 64,
            ffn_dim=4 * dim,
        )  # fmt: skip
        for dim, depth in ((384, 12), (512, 12))
    },
    # Wider DiTs on the `s` VAE and text encoder, for the DiT size sweep (`bench/train_step_bench.py`).
    "g2-d512": _preset("g2-d512", _SMALL_VAE, _SMALL_TEXT, dim=512, depth=12, heads=8, ffn_dim=2048),
    "g2-d768": _preset("g2-d768", _SMALL_VAE, _SMALL_TEXT, dim=768, depth=12, heads=12, ffn_dim=3072),
    "b": _preset("b", VAEConfig(), _BIG_TEXT, dim=768, depth=12, heads=12, ffn_dim=3072),
    "l": _preset("l", VAEConfig(), _BIG_TEXT, dim=1024, depth=24, heads=16, ffn_dim=4096),
    # The Wan 2.1 1.3B transformer's shape, for benchmarks.
    "wan-1.3b": _preset("wan-1.3b", VAEConfig(), _BIG_TEXT, dim=1536, depth=30, heads=12, ffn_dim=8960),
}


def is_wan(config: ModelConfig) -> bool:
    """A Wan checkpoint's config (Wan's VAE and umT5; `tessera.wan`), not one of tessera's own models."""
    return isinstance(config.vae, WanVAEConfig)


def get_preset(name: str) -> ModelConfig:
    """The named preset, or a clear error listing the ones that exist."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset '{name}'; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]
