"""Wan 2.1 text-to-video and Wan 2.2 TI2V-5B checkpoints from a local folder, as a tessera `Model`
(nothing is downloaded).

Two layouts are recognised:
  diffusers  `model_index.json`, `transformer/`, `vae/`, `text_encoder/`, `tokenizer/` (`scheduler/` optional)
  original   the release files: the DiT's `diffusion_pytorch_model*.safetensors` (+ `config.json`),
             `Wan2.1_VAE.pth`, `models_t5_umt5-xxl-enc-bf16.pth` and the tokenizer folder `google/umt5-xxl`

The DiT becomes tessera's own `DiT` with Wan's options (`qk_norm="all"`, no condition channels); Wan's
separate q/k/v (and k/v) projections are stacked into tessera's fused ones and its Conv3d patch embedding
flattened into the equivalent Linear, both exact.

SkyReels-V2's text-to-video and diffusion-forcing (DF) folders in the diffusers layout load the same way:
their `SkyReelsV2Transformer3DModel` is Wan 2.1's DiT with, optionally, a frame-rate embedding
(`inject_sample_info`: the DiT's `fps_embed`, told `SKYREELS_FPS`) and block-causal attention
(`num_frame_per_block`: `causal_block`). A DF folder (its pipeline's class names diffusion forcing) sets
`diffusion_forcing`: the network was trained with a time per latent frame, so given frames are held clean
at t = 0 instead of at each step's noise level. The VAE is `WanVAE`, the text encoder umT5 through
`transformers` (the `wan` extra). `.pth` files are read with `torch.load(weights_only=True)`: tensors only,
never pickled code.

Wan 2.2 TI2V-5B (diffusers layout only: a `WanPipeline` with `expand_timesteps`) is Wan 2.1's DiT at 48
latent channels on Wan 2.2's VAE (`WanVAEConfig.residual`, `patch` 2: 4x16x16). diffusers gives it a time
per token, and for image-to-video holds the first latent frame clean at t = 0: tessera's per-frame time
with given frames clean at t = 0, the DiT's `diffusion_forcing` option, which every Wan 2.2 VAE folder
sets.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from tessera.checkpoint import (
    Model,
    atomic_dir,
    initialisers_skipped,
    load_into,
    load_tensors,
    read_json,
    save_tensors,
)
from tessera.config import OPTIONAL_KEYS, DiTConfig, ModelConfig, WanTextConfig, WanVAEConfig
from tessera.errors import FileError
from tessera.models.dit import DiT
from tessera.models.wan_text import (
    WanTextEncoder,
    WanTokenizer,
    umt5_config_from_original,
    umt5_from_original,
)
from tessera.models.wan_vae import WAN21_LATENT_MEAN, WAN21_LATENT_STD, WanVAE
from tessera.models.wan_vae import config_from_original as vae_config_from_original
from tessera.models.wan_vae import from_diffusers as vae_from_diffusers
from tessera.models.wan_vae import original_to_diffusers as vae_original_to_diffusers

PRESET = "wan2.1-t2v"
PRESET_22 = "wan2.2-ti2v"  # the preset of a model on Wan 2.2's VAE
DEFAULT_SHIFT = 5.0  # the original release's default sample shift for text-to-video
HEAD_DIM = 128  # every Wan 2.1 model's attention head size (used when a folder gives no head count)
ORIGINAL_VAE = ("Wan2.1_VAE.pth", "Wan2.1_VAE.safetensors")
ORIGINAL_T5 = ("models_t5_umt5-xxl-enc-bf16.pth", "models_t5_umt5-xxl-enc-bf16.safetensors")
ORIGINAL_TOKENIZER = "google/umt5-xxl"
ORIGINAL_VAE_22 = "Wan2.2_VAE.pth"  # Wan 2.2's original release: recognised, to be refused by name
TRANSFORMERS = ("WanTransformer3DModel", "SkyReelsV2Transformer3DModel")
# The frame rate a SkyReels-V2 DiT with an fps embedding is told on every call: its pipelines' default, the
# rate its clips are meant to play at (their only other choice, 16, takes the embedding's other row).
SKYREELS_FPS = 24


def layout(path: str | Path) -> str | None:
    """'diffusers', 'original', 'tessera' (written by `import_folder`), or None (not a Wan folder: e.g. a
    tessera model folder of tessera's own networks)."""
    path = Path(path)
    if _imported(path):
        return "tessera"
    if (path / "model_index.json").is_file():
        try:
            index = json.loads((path / "model_index.json").read_text())
        except (OSError, ValueError):
            return "diffusers"  # a damaged index: `load` names it
        return "diffusers" if str(index.get("_class_name", "")).startswith(("Wan", "SkyReelsV2")) else None
    if any((path / n).exists() for n in (*ORIGINAL_VAE, *ORIGINAL_T5, ORIGINAL_VAE_22)):
        return "original"
    if _original_dit_name(path):
        return "original"
    return None


def _imported(path: Path) -> bool:
    try:
        return json.loads((path / "config.json").read_text()).get("preset") in (PRESET, PRESET_22)
    except (OSError, ValueError, AttributeError):
        return False


def _original_dit_name(path: Path) -> str | None:
    name = "diffusion_pytorch_model"
    if (path / f"{name}.safetensors").exists() or (path / f"{name}.safetensors.index.json").exists():
        return name
    return None


# ---------------------------------------------------------------------------------------------
# DiT


def dit_config_from_diffusers(
    cfg: dict[str, Any], where: str = "transformer/config.json", diffusion_forcing: bool = False
) -> DiTConfig:
    """`WanTransformer3DModel`'s or `SkyReelsV2Transformer3DModel`'s config -> DiTConfig; refuses what
    tessera's DiT does not implement. `diffusion_forcing`: the folder is a SkyReels-V2 DF checkpoint."""
    kind = cfg.get("_class_name", TRANSFORMERS[0])
    if kind not in TRANSFORMERS:
        raise FileError(f"{where}: a {kind}; the transformer must be one of {', '.join(TRANSFORMERS)}")
    block = cfg.get("num_frame_per_block", 1)
    if type(block) is not int or block < 1:
        raise FileError(f"{where}: num_frame_per_block must be a whole number >= 1; got {block!r}")
    if cfg.get("image_dim") or cfg.get("added_kv_proj_dim"):
        raise FileError(f"{where}: an image-to-video Wan model (CLIP image branch); only text-to-video loads")
    if cfg.get("qk_norm", "rms_norm_across_heads") != "rms_norm_across_heads" or not cfg.get(
        "cross_attn_norm", True
    ):
        raise FileError(f"{where}: qk_norm {cfg.get('qk_norm')!r} / cross_attn_norm False are not Wan 2.1's")
    c_in, c_out = cfg.get("in_channels", 16), cfg.get("out_channels", 16)
    if c_out != c_in:
        raise FileError(f"{where}: in_channels {c_in} != out_channels {c_out} (a conditioned Wan variant)")
    heads = cfg.get("num_attention_heads", 40)
    return DiTConfig(
        in_channels=c_in,
        patch=tuple(cfg.get("patch_size", (1, 2, 2))),
        dim=heads * cfg.get("attention_head_dim", 128),
        depth=cfg.get("num_layers", 40),
        heads=heads,
        ffn_dim=cfg.get("ffn_dim", 13824),
        text_dim=cfg.get("text_dim", 4096),
        freq_dim=cfg.get("freq_dim", 256),
        eps=cfg.get("eps", 1e-6),
        qk_norm="all",
        conditioned=False,
        diffusion_forcing=diffusion_forcing,
        fps_embed=SKYREELS_FPS if cfg.get("inject_sample_info") else None,
        causal_block=block,
    )


def dit_config_from_original(state: dict[str, Tensor], cfg: dict[str, Any] | None) -> DiTConfig:
    """DiTConfig of an original-release DiT from its `config.json` (WanModel) or, without one, its shapes."""
    if cfg and cfg.get("model_type", "t2v") != "t2v":
        raise FileError(f"config.json: model_type {cfg['model_type']!r}; only text-to-video (t2v) loads")
    w = state["patch_embedding.weight"]  # (dim, in_dim, pt, ph, pw)
    dim = w.shape[0]
    heads = (cfg or {}).get("num_heads", dim // HEAD_DIM)
    return DiTConfig(
        in_channels=w.shape[1],
        patch=tuple(w.shape[2:]),
        dim=dim,
        depth=1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks.")),
        heads=heads,
        ffn_dim=state["blocks.0.ffn.0.weight"].shape[0],
        text_dim=state["text_embedding.0.weight"].shape[1],
        freq_dim=state["time_embedding.0.weight"].shape[1],
        eps=(cfg or {}).get("eps", 1e-6),
        qk_norm="all",
        conditioned=False,
    )


def dit_original_to_diffusers(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Original-release DiT names -> diffusers' `WanTransformer3DModel` names (tensors unchanged)."""
    renames = [
        ("time_embedding.0.", "condition_embedder.time_embedder.linear_1."),
        ("time_embedding.2.", "condition_embedder.time_embedder.linear_2."),
        ("text_embedding.0.", "condition_embedder.text_embedder.linear_1."),
        ("text_embedding.2.", "condition_embedder.text_embedder.linear_2."),
        ("time_projection.1.", "condition_embedder.time_proj."),
        ("head.modulation", "scale_shift_table"),
        ("head.head.", "proj_out."),
    ]
    block = {
        "self_attn": "attn1",
        "cross_attn": "attn2",
        "o": "to_out.0",
        "q": "to_q",
        "k": "to_k",
        "v": "to_v",
        "norm3": "norm2",  # the original's norm3 is the cross-attention's input norm
        "modulation": "scale_shift_table",
    }
    out = {}
    for key, value in state.items():
        k = key.removeprefix("model.diffusion_model.")
        if k.startswith("blocks."):
            parts = k.split(".")
            parts = parts[:2] + [block.get(p, p) for p in parts[2:]]
            k = ".".join(parts).replace(".ffn.0.", ".ffn.net.0.proj.").replace(".ffn.2.", ".ffn.net.2.")
        else:
            for a, b in renames:
                if k.startswith(a):
                    k = b + k[len(a) :]
        out[k] = value
    return out


def dit_from_diffusers(state: dict[str, Tensor], cfg: DiTConfig) -> dict[str, Tensor]:
    """diffusers' `WanTransformer3DModel` state dict -> tessera `DiT` names and layouts (all exact):
    q/k/v and k/v stacked into the fused projections, the Conv3d patch kernel flattened into the Linear
    (patchify orders a token's values as a flattened Conv3d kernel), and the output rows reordered from
    Wan's (pt, ph, pw, C) to tessera's (C, pt, ph, pw)."""
    s = dict(state)
    p = math.prod(cfg.patch)

    def take(name: str) -> Tensor:
        if name not in s:
            raise KeyError(name)
        return s.pop(name)

    out = {
        "patch_embed.weight": take("patch_embedding.weight").flatten(1),
        "patch_embed.bias": take("patch_embedding.bias"),
        "text_embed.fc1.weight": take("condition_embedder.text_embedder.linear_1.weight"),
        "text_embed.fc1.bias": take("condition_embedder.text_embedder.linear_1.bias"),
        "text_embed.fc2.weight": take("condition_embedder.text_embedder.linear_2.weight"),
        "text_embed.fc2.bias": take("condition_embedder.text_embedder.linear_2.bias"),
        "time_embed.0.weight": take("condition_embedder.time_embedder.linear_1.weight"),
        "time_embed.0.bias": take("condition_embedder.time_embedder.linear_1.bias"),
        "time_embed.2.weight": take("condition_embedder.time_embedder.linear_2.weight"),
        "time_embed.2.bias": take("condition_embedder.time_embedder.linear_2.bias"),
        "time_proj.1.weight": take("condition_embedder.time_proj.weight"),
        "time_proj.1.bias": take("condition_embedder.time_proj.bias"),
        "head.modulation": take("scale_shift_table").reshape(2, cfg.dim),
    }
    if cfg.fps_embed is not None:  # SkyReels-V2's frame-rate embedding and its projection
        out["fps_embed.weight"] = take("fps_embedding.weight")
        for part in ("weight", "bias"):
            out[f"fps_proj.0.{part}"] = take(f"fps_projection.net.0.proj.{part}")
            out[f"fps_proj.2.{part}"] = take(f"fps_projection.net.2.{part}")
    # proj_out rows are (pt, ph, pw, C); tessera's unpatchify reads (C, pt, ph, pw)
    order = torch.arange(p * cfg.in_channels).view(p, cfg.in_channels).T.flatten()
    out["head.linear.weight"] = take("proj_out.weight")[order]
    out["head.linear.bias"] = take("proj_out.bias")[order]
    for i in range(cfg.depth):
        a, b = f"blocks.{i}.", f"blocks.{i}."
        for part in ("weight", "bias"):
            qkv = [take(f"{a}attn1.to_{x}.{part}") for x in "qkv"]
            out[f"{b}self_attn.qkv.{part}"] = torch.cat(qkv)
            out[f"{b}self_attn.out.{part}"] = take(f"{a}attn1.to_out.0.{part}")
            out[f"{b}cross_attn.q.{part}"] = take(f"{a}attn2.to_q.{part}")
            out[f"{b}cross_attn.kv.{part}"] = torch.cat(
                [take(f"{a}attn2.to_k.{part}"), take(f"{a}attn2.to_v.{part}")]
            )
            out[f"{b}cross_attn.out.{part}"] = take(f"{a}attn2.to_out.0.{part}")
            out[f"{b}norm_cross.{part}"] = take(f"{a}norm2.{part}")
            out[f"{b}mlp.fc1.{part}"] = take(f"{a}ffn.net.0.proj.{part}")
            out[f"{b}mlp.fc2.{part}"] = take(f"{a}ffn.net.2.{part}")
        for attn, mine in (("attn1", "self_attn"), ("attn2", "cross_attn")):
            out[f"{b}{mine}.q_norm.weight"] = take(f"{a}{attn}.norm_q.weight")
            out[f"{b}{mine}.k_norm.weight"] = take(f"{a}{attn}.norm_k.weight")
        out[f"{b}modulation"] = take(f"{a}scale_shift_table").reshape(6, cfg.dim)
    if s:
        raise KeyError(f"unexpected weights {sorted(s)[:5]}")
    return out


# ---------------------------------------------------------------------------------------------
# Loading


def load(
    path: str | Path,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | None = None,
    offload_text: bool | None = None,
    text_len: int = 512,
) -> Model:
    """Load a Wan 2.1 text-to-video folder (either layout) as a tessera `Model` on `device`.

    dtype: the networks' parameter type (default: bf16 on CUDA, fp32 on the CPU). offload_text: keep the
    text encoder on the CPU between encodings (default: on CUDA). text_len: tokens per caption (Wan's 512;
    the DiT attends to all of them)."""
    path, device = Path(path), torch.device(device)
    kind = layout(path)
    if kind is None:
        raise FileError(
            f"{path}: not a Wan folder (no model_index.json, and none of the original release files)"
        )
    dtype = dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)
    loaders = {"diffusers": _load_diffusers, "original": _load_original, "tessera": _load_imported}
    parts = loaders[kind](path, dtype)
    config, vae, text, dit, tokenizer = parts
    config = dataclasses.replace(config, text=dataclasses.replace(config.text, max_len=text_len))
    model = Model(config, vae, text, dit, tokenizer, card=_card(path, kind, config))
    model.to(device).eval()
    text.offload = device.type == "cuda" if offload_text is None else offload_text
    if text.offload:
        text.to("cpu")
    return model


def import_folder(src: str | Path, out: str | Path, dtype: torch.dtype = torch.bfloat16) -> Path:
    """Write a Wan folder (either layout) as a tessera model folder at `out`, atomically: config.json,
    `dit`/`vae` safetensors in tessera's own layouts (fused projections: nothing to convert on loading),
    the umT5 encoder (`text_encoder/`, transformers' format) and `tokenizer/`, parameters in `dtype`."""
    model = load(src, "cpu", dtype=dtype, offload_text=False)
    card = (
        f"# {title(model.config)}, imported\n\nWritten by `tessera model import` from {src} "
        f"({layout(src)} layout), parameters in {str(dtype).removeprefix('torch.')}. Sample with "
        "`tessera generate PROMPT --model THIS_FOLDER`; see docs/wan.md.\n"
    )
    with atomic_dir(Path(out)) as tmp:
        (tmp / "config.json").write_text(json.dumps(model.config.to_dict(), indent=2))
        save_tensors(tmp, "dit", model.dit.state_dict(), {"component": "dit"})
        save_tensors(tmp, "vae", model.vae.state_dict(), {"component": "vae"})
        model.text.encoder.save_pretrained(str(tmp / "text_encoder"), safe_serialization=True)
        model.tokenizer.save(tmp / "tokenizer")
        (tmp / "README.md").write_text(card)
    return Path(out)


def _load_imported(path: Path, dtype: torch.dtype):
    def config():
        raw = read_json(path / "config.json")
        _check_sections(raw, {"vae": WanVAEConfig, "text": WanTextConfig, "dit": DiTConfig})
        parts = {
            "vae": WanVAEConfig(**_tuples(raw["vae"])),
            "text": WanTextConfig(**raw["text"]),
            "dit": DiTConfig(**_tuples(raw["dit"])),
        }
        return ModelConfig(**parts, preset=raw["preset"], flow_shift=raw.get("flow_shift"))

    def dit():
        return _build_dit(cfg.dit, load_tensors(path, "dit"), dtype)

    def vae():
        module = _meta(WanVAE, cfg.vae)
        load_into(_weights_to(module, dtype), load_tensors(path, "vae"), f"{path}/vae")
        return module

    def text():
        # optional dependency (the wan extra), loaded only when used
        from transformers import UMT5Config

        folder = path / "text_encoder"
        hf = UMT5Config.from_pretrained(str(_need(folder / "config.json").parent), local_files_only=True)
        return _build_umt5(hf, load_tensors(folder, "model"), dtype)

    def tok():

        return WanTokenizer.from_folder(_need(path / "tokenizer"))

    cfg = _component(path / "config.json", "config", config)
    dit_module = _component(path, "DiT (dit*.safetensors)", dit)
    vae_module = _component(path, "VAE (vae.safetensors)", vae)
    text_module = _component(path / "text_encoder", "text encoder (umT5)", text)
    tokenizer = _component(path / "tokenizer", "tokenizer", tok)
    return cfg, vae_module, text_module, dit_module, tokenizer


def _check_sections(raw: dict, parts: dict) -> None:
    """Every section present with exactly its dataclass's keys (a typo never becomes a default), less the
    keys added since folders were first written (`OPTIONAL_KEYS`), which take their defaults."""
    for name, kind in parts.items():
        allowed = {f.name for f in dataclasses.fields(kind)}
        got = raw.get(name)
        if not isinstance(got, dict) or not allowed - OPTIONAL_KEYS.get(name, set()) <= set(got) <= allowed:
            have = sorted(got) if isinstance(got, dict) else got
            raise FileError(f"config section '{name}': keys {have}, expected {sorted(allowed)}")


def _tuples(d: dict) -> dict:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}


def _component(path: Path, what: str, fn: Any) -> Any:
    """Run a component's loader; any failure becomes one FileError line naming the component."""
    try:
        return fn()
    except FileError as e:
        raise FileError(f"Wan {what}: {e}") from None
    except FileNotFoundError as e:
        raise FileError(f"Wan {what}: missing {e.filename or e}") from None
    except (KeyError, ValueError, RuntimeError, OSError, EOFError, TypeError) as e:
        raise FileError(f"Wan {what} ({path}): unreadable or incomplete: {type(e).__name__}: {e}") from None


def _need(path: Path) -> Path:
    if not path.exists():
        raise FileNotFoundError(2, "missing", str(path))
    return path


def _load_diffusers(path: Path, dtype: torch.dtype):
    def dit():
        folder = path / "transformer"
        raw = read_json(_need(folder / "config.json"))
        cfg = dit_config_from_diffusers(raw, f"{folder}/config.json", _forcing(index))
        return cfg, _build_dit(
            cfg, dit_from_diffusers(load_tensors(folder, "diffusion_pytorch_model"), cfg), dtype
        )

    def vae():
        folder = path / "vae"
        raw = read_json(_need(folder / "config.json"))
        cfg = vae_config_from_diffusers(raw, f"{folder}/config.json")
        module = _meta(WanVAE, cfg)
        state = vae_from_diffusers(module, load_tensors(folder, "diffusion_pytorch_model"))
        state |= _latent_stats(raw.get("latents_mean"), raw.get("latents_std"), cfg.z_channels)
        load_into(_weights_to(module, dtype), state, f"{folder}")
        return cfg, module

    def text():
        folder = path / "text_encoder"
        # optional dependency (the wan extra), loaded only when used
        from transformers import UMT5Config

        hf = UMT5Config.from_pretrained(str(_need(folder / "config.json").parent), local_files_only=True)
        state = load_tensors(folder, "model")
        return _build_umt5(hf, state, dtype)

    def tok():

        return WanTokenizer.from_folder(_need(path / "tokenizer"))

    index = read_json(path / "model_index.json", FileError)
    _check_index(index, path / "model_index.json")
    dit_cfg, dit_module = _component(path / "transformer", "transformer (DiT)", dit)
    vae_cfg, vae_module = _component(path / "vae", "VAE", vae)
    text_module = _component(path / "text_encoder", "text encoder (umT5)", text)
    tokenizer = _component(path / "tokenizer", "tokenizer", tok)
    shift = _scheduler_shift(path / "scheduler" / "scheduler_config.json")
    config = _config(dit_cfg, vae_cfg, text_module, shift)
    return config, vae_module, text_module, dit_module, tokenizer


# Pipelines of text-to-video weights (SkyReels-V2's diffusion-forcing pipelines all run its DF weights;
# diffusers runs Wan 2.2 TI2V-5B's image-to-video through WanImageToVideoPipeline with expand_timesteps)
PIPELINES = (
    "WanPipeline",
    "WanVideoToVideoPipeline",
    "WanImageToVideoPipeline",
    "SkyReelsV2Pipeline",
    "SkyReelsV2DiffusionForcingPipeline",
    "SkyReelsV2DiffusionForcingImageToVideoPipeline",
    "SkyReelsV2DiffusionForcingVideoToVideoPipeline",
)


def _forcing(index: dict) -> bool:
    """Whether a diffusers folder's pipeline is SkyReels-V2's diffusion forcing (a time per latent frame;
    a model on Wan 2.2's VAE gets the same in `_config`)."""
    return "DiffusionForcing" in str(index.get("_class_name", ""))


def _check_index(index: dict, where: Path) -> None:
    """Refuse the Wan pipelines whose weights tessera does not run, naming why."""
    kind = index.get("_class_name")
    if kind not in PIPELINES or (kind == "WanImageToVideoPipeline" and not index.get("expand_timesteps")):
        raise FileError(
            f"{where}: a {kind}; tessera runs Wan 2.1 text-to-video checkpoints, Wan 2.2 TI2V-5B and "
            f"SkyReels-V2's text-to-video and diffusion-forcing ones ({', '.join(PIPELINES)}; "
            "WanImageToVideoPipeline only with expand_timesteps), not image-to-video (CLIP image branch), "
            "VACE or animation models"
        )
    if (index.get("transformer_2") or [None])[0] is not None or index.get("boundary_ratio"):
        raise FileError(
            f"{where}: a two-expert Wan 2.2 model (transformer_2); only single-DiT models load "
            "(Wan 2.1, Wan 2.2 TI2V-5B)"
        )


def _load_original(path: Path, dtype: torch.dtype):
    if (path / ORIGINAL_VAE_22).exists():
        raise FileError(
            f"{path}: Wan 2.2's original release files ({ORIGINAL_VAE_22}) are not supported; use its "
            "diffusers layout (Wan-AI/Wan2.2-TI2V-5B-Diffusers)"
        )

    def dit():
        name = _original_dit_name(path)
        if name is None:
            raise FileNotFoundError(2, "missing", str(path / "diffusion_pytorch_model.safetensors"))
        raw = load_tensors(path, name)
        cfg_file = path / "config.json"
        cfg = dit_config_from_original(raw, read_json(cfg_file) if cfg_file.exists() else None)
        return cfg, _build_dit(cfg, dit_from_diffusers(dit_original_to_diffusers(raw), cfg), dtype)

    def vae():
        raw = _read_weights(_first(path, ORIGINAL_VAE))
        cfg = vae_config_from_original(raw)
        module = _meta(WanVAE, cfg)
        state = vae_from_diffusers(module, vae_original_to_diffusers(raw, cfg.num_res_blocks))
        state |= _latent_stats(None, None, cfg.z_channels)
        load_into(_weights_to(module, dtype), state, str(_first(path, ORIGINAL_VAE)))
        return cfg, module

    def text():

        raw = _read_weights(_first(path, ORIGINAL_T5))
        return _build_umt5(umt5_config_from_original(raw), umt5_from_original(raw), dtype)

    def tok():

        return WanTokenizer.from_folder(_need(path / ORIGINAL_TOKENIZER))

    dit_cfg, dit_module = _component(path, "DiT (diffusion_pytorch_model*.safetensors)", dit)
    vae_cfg, vae_module = _component(path, f"VAE ({ORIGINAL_VAE[0]})", vae)
    text_module = _component(path, f"text encoder ({ORIGINAL_T5[0]})", text)
    tokenizer = _component(path, f"tokenizer ({ORIGINAL_TOKENIZER}/)", tok)
    config = _config(dit_cfg, vae_cfg, text_module, DEFAULT_SHIFT)
    return config, vae_module, text_module, dit_module, tokenizer


def _first(path: Path, names: tuple[str, ...]) -> Path:
    for n in names:
        if (path / n).exists():
            return path / n
    raise FileNotFoundError(2, "missing", str(path / names[0]))


def _read_weights(file: Path) -> dict[str, Tensor]:
    """A .safetensors file, or a .pth read as tensors only (`weights_only=True`, memory-mapped)."""
    if file.suffix == ".safetensors":
        return load_tensors(file.parent, file.name.removesuffix(".safetensors"))
    try:
        state = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as e:
        if "mmap" not in str(e):
            raise
        state = torch.load(file, map_location="cpu", weights_only=True)  # the legacy (pre-zip) format
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise FileError(f"{file}: expected a flat dict of tensors")
    return state


def _meta(kind: type, cfg: Any) -> Any:
    with torch.device("meta"), initialisers_skipped():
        return kind(cfg)


def _weights_to(vae: WanVAE, dtype: torch.dtype) -> WanVAE:
    """The VAE's parameters in `dtype`; its latent statistics stay float32 (a rounded scale would shift
    every latent the DiT sees)."""
    for p in vae.parameters():
        p.data = p.data.to(dtype)
    return vae


def _build_dit(cfg: DiTConfig, state: dict[str, Tensor], dtype: torch.dtype) -> DiT:
    module = _meta(DiT, cfg).to(dtype)
    load_into(module, state, "DiT")
    return module


def _build_umt5(hf_config: Any, state: dict[str, Tensor], dtype: torch.dtype):
    # optional dependency (the wan extra), loaded only when used
    from transformers import UMT5EncoderModel

    with torch.device("meta"):
        enc = UMT5EncoderModel(hf_config)
    if "shared.weight" not in state and "encoder.embed_tokens.weight" in state:
        state["shared.weight"] = state["encoder.embed_tokens.weight"]
    state.setdefault("encoder.embed_tokens.weight", state.get("shared.weight"))
    load_into(enc.to(dtype), state, "umT5 encoder")
    return WanTextEncoder(enc)


def vae_config_from_diffusers(cfg: dict[str, Any], where: str = "vae/config.json") -> WanVAEConfig:
    """`AutoencoderKLWan`'s config -> WanVAEConfig: Wan 2.1's VAE, or Wan 2.2's (`is_residual`, pixels in
    `patch_size` squares, its own decoder width); refuses what `WanVAE` does not implement."""
    residual, patch = bool(cfg.get("is_residual")), cfg.get("patch_size") or 1
    base = cfg.get("base_dim", 96)
    decoder_base = cfg.get("decoder_base_dim") or base
    if cfg.get("attn_scales"):
        raise FileError(f"{where}: attn_scales other than [] are not Wan's")
    if type(patch) is not int or patch < 1:
        raise FileError(f"{where}: patch_size must be a whole number >= 1; got {patch!r}")
    if decoder_base != base and not residual:
        raise FileError(f"{where}: a decoder_base_dim unlike base_dim needs is_residual (Wan 2.2)")
    c_in, c_out = cfg.get("in_channels", 3 * patch**2), cfg.get("out_channels", 3 * patch**2)
    if c_in != c_out or c_in % patch**2:
        raise FileError(f"{where}: in_channels {c_in} / out_channels {c_out} with patch_size {patch}")
    out = WanVAEConfig(
        in_channels=c_in // patch**2,
        z_channels=cfg.get("z_dim", 16),
        base_channels=base,
        channel_mults=tuple(cfg.get("dim_mult", (1, 2, 4, 4))),
        temporal_down=tuple(cfg.get("temperal_downsample", (False, True, True))),
        num_res_blocks=cfg.get("num_res_blocks", 2),
        residual=residual,
        patch=patch,
        decoder_base_channels=decoder_base if decoder_base != base else None,
    )
    if cfg.get("scale_factor_spatial", out.space_factor) != out.space_factor:
        raise FileError(
            f"{where}: scale_factor_spatial {cfg['scale_factor_spatial']} but the layers compress "
            f"{out.space_factor}x"
        )
    return out


def _latent_stats(mean: list | None, std: list | None, channels: int) -> dict[str, Tensor]:
    mean = WAN21_LATENT_MEAN if mean is None else mean
    std = WAN21_LATENT_STD if std is None else std
    if len(mean) != channels or len(std) != channels:
        raise FileError(f"latents_mean/latents_std need {channels} values, got {len(mean)}/{len(std)}")
    return {"latent_mean": torch.tensor(mean, dtype=torch.float32), "latent_std": torch.tensor(std)}


def _scheduler_shift(file: Path) -> float:
    """The flow shift a diffusers folder's scheduler config names, else the release default."""
    if not file.exists():
        return DEFAULT_SHIFT
    cfg = read_json(file)
    for key in ("flow_shift", "shift"):
        if isinstance(cfg.get(key), int | float) and cfg[key] > 0:
            return float(cfg[key])
    return DEFAULT_SHIFT


def _config(dit: DiTConfig, vae: WanVAEConfig, text: Any, shift: float) -> ModelConfig:
    """The model's config; a model on Wan 2.2's VAE (TI2V-5B) takes a time per latent frame, as trained
    (its image-to-video holds the first latent frame clean at t = 0)."""
    d_model = text.encoder.config.d_model
    if d_model != dit.text_dim:
        raise FileError(f"the text encoder's width {d_model} differs from the DiT's text_dim {dit.text_dim}")
    if dit.in_channels != vae.z_channels:
        raise FileError(
            f"the DiT's in_channels {dit.in_channels} differ from the VAE's latent channels {vae.z_channels}"
        )
    if vae.residual:
        dit = dataclasses.replace(dit, diffusion_forcing=True)
    preset = PRESET_22 if vae.residual else PRESET
    return ModelConfig(
        vae=vae, text=WanTextConfig(max_len=512, dim=d_model), dit=dit, preset=preset, flow_shift=shift
    )


def _card(path: Path, kind: str, config: ModelConfig) -> str:
    d = config.dit
    vae = "Wan 2.2's VAE" if config.vae.residual else "Wan's VAE"
    return (
        f"# {title(config)} ({kind} layout)\n\nLoaded from {path}: a {d.depth}-block DiT of width "
        f"{d.dim} ({d.heads} heads), {vae}, umT5 text encoder; flow shift {config.flow_shift}.\n"
        + "".join(f"{line}\n" for line in _variant_lines(d, config.vae))
    )


def title(config: ModelConfig) -> str:
    """What a Wan-family model is, in a few words (its model card's title)."""
    if config.vae.residual:
        return "Wan 2.2 TI2V-5B (text and image to video)"
    return "SkyReels-V2 diffusion forcing" if config.dit.diffusion_forcing else "Wan 2.1 text-to-video"


def _variant_lines(d: DiTConfig, vae: WanVAEConfig) -> list[str]:
    """What sets a SkyReels-V2 or Wan 2.2 model apart from Wan 2.1's, one line each (none for Wan 2.1's)."""
    lines = []
    if vae.residual:
        s = vae.space_factor
        lines.append(
            f"Wan 2.2 VAE: 4x{s}x{s} compression, {vae.z_channels} latent channels; frame sides must be "
            f"multiples of {s * max(d.patch[1:])}."
        )
    if d.diffusion_forcing:
        what = "Image-to-video" if vae.residual else "Diffusion forcing"
        lines.append(f"{what}: a time per latent frame; given frames are held clean at t = 0.")
    if d.fps_embed is not None:
        lines.append(f"Frame-rate embedding: told {d.fps_embed} fps on every call.")
    if d.causal_block > 1:
        lines.append(f"Block-causal attention over blocks of {d.causal_block} latent frames.")
    return lines


def _index(path: Path) -> dict:
    """A diffusers folder's model_index.json, or {} where there is none or it cannot be read."""
    try:
        index = json.loads((path / "model_index.json").read_text())
    except (OSError, ValueError):
        return {}
    return index if isinstance(index, dict) else {}


def estimate_memory(config: ModelConfig, frames: int, height: int, width: int) -> int:
    """Rough peak bytes of sampling a Wan model beyond its resident weights (free memory is measured with
    them loaded): both guidance branches' activations of one block in 4 bytes (fused attention kernels
    keep no scores on a GPU), one decode chunk (`chunk_frames` full-size frames) through the VAE's widest
    full-resolution layers, and the decoded clip in float32."""
    d, v = config.dit, config.vae
    pt, ph, pw = d.patch
    s = v.space_factor
    tokens = (1 + (frames - 1) // 4) // pt * (height // s // ph) * (width // s // pw)
    acts = 2 * tokens * (6 * d.dim + 2 * d.ffn_dim) * 4
    width_full = (v.decoder_base_channels or v.base_channels) * v.channel_mults[0]  # at the patched size
    decode = 8 * v.chunk_frames * width_full * height * width // v.patch**2 * 4
    return int(acts + decode + frames * 3 * height * width * 4 + 2**28)


def describe(path: str | Path) -> str:
    """What a Wan folder holds, read from its configs and file sizes (no weights are loaded)."""
    path = Path(path)
    kind = layout(path)
    index = _index(path) if kind == "diffusers" else {}
    vae = _vae_config(path, kind)
    family = "SkyReels-V2" if str(index.get("_class_name", "")).startswith("SkyReelsV2") else "Wan 2.1"
    if vae.residual or index.get("expand_timesteps"):
        family = "Wan 2.2 TI2V-5B"
    elif kind == "original" and (path / ORIGINAL_VAE_22).exists():
        family = "Wan 2.2 (original release files, not supported: use the diffusers layout)"
    lines = [f"# {family} checkpoint ({kind} layout)", "", f"Folder: {path}", "", "## Components", ""]
    if kind == "tessera":
        card = path / "README.md"
        lines[0] = card.read_text().strip() if card.exists() else lines[0]
        parts = {
            "DiT": path / "dit.safetensors",
            "VAE": path / "vae.safetensors",
            "text encoder (umT5)": path / "text_encoder",
            "tokenizer": path / "tokenizer",
        }
    elif kind == "diffusers":
        parts = {
            "transformer (DiT)": path / "transformer",
            "VAE": path / "vae",
            "text encoder (umT5)": path / "text_encoder",
            "tokenizer": path / "tokenizer",
        }
    else:
        parts = {
            "DiT": path / f"{_original_dit_name(path) or 'diffusion_pytorch_model'}.safetensors",
            "VAE": _first_or(path, ORIGINAL_VAE),
            "text encoder (umT5)": _first_or(path, ORIGINAL_T5),
            "tokenizer": path / ORIGINAL_TOKENIZER,
        }
    for what, p in parts.items():
        lines.append(f"- {what}: {p.name} ({_size(p)})" if _present(p) else f"- {what}: MISSING ({p})")
    cfg_file = path / ("transformer/config.json" if kind == "diffusers" else "config.json")
    shift = DEFAULT_SHIFT
    if kind == "diffusers":
        shift = _scheduler_shift(path / "scheduler" / "scheduler_config.json")
    if cfg_file.exists():
        try:
            raw = read_json(cfg_file)
            if kind == "original" and {"num_layers", "dim", "num_heads", "ffn_dim"} <= set(raw):
                lines += ["", "## DiT", "", f"{raw['num_layers']} blocks, width {raw['dim']}, "]
                lines[-1] += f"{raw['num_heads']} heads, MLP {raw['ffn_dim']} (config.json)"
            elif kind == "original":
                lines += ["", "## DiT config", "", json.dumps(raw)]
            else:
                d = (
                    dit_config_from_diffusers(raw, diffusion_forcing=_forcing(index) or vae.residual)
                    if kind == "diffusers"
                    else DiTConfig(**_tuples(raw["dit"]))
                )
                shift = raw.get("flow_shift") or shift if kind == "tessera" else shift
                lines += [
                    "",
                    "## DiT",
                    "",
                    f"{d.depth} blocks, width {d.dim}, {d.heads} heads, MLP {d.ffn_dim}",
                ]
                n = _dit_params(d)
                lines.append(f"parameters: {n / 1e9:.2f}B" if n >= 1e8 else f"parameters: {n / 1e6:.2f}M")
                lines += _variant_lines(d, vae)
        except (ValueError, TypeError, KeyError) as e:  # FileError too
            lines += ["", f"DiT config unreadable: {e}"]
    lines += ["", f"Sampling: flow shift {shift} (override with --shift)."]
    return "\n".join(lines)


def _vae_config(path: Path, kind: str | None) -> WanVAEConfig:
    """A folder's VAE config, read without weights; Wan 2.1's defaults where it cannot be read."""
    try:
        if kind == "diffusers":
            return vae_config_from_diffusers(read_json(path / "vae" / "config.json"))
        if kind == "tessera":
            return WanVAEConfig(**_tuples(read_json(path / "config.json")["vae"]))
    except (ValueError, TypeError, KeyError, OSError):  # FileError too: the loader names the problem
        pass
    return WanVAEConfig()


def _first_or(path: Path, names: tuple[str, ...]) -> Path:
    return next((path / n for n in names if (path / n).exists()), path / names[0])


def _present(p: Path) -> bool:
    return p.exists() or Path(str(p) + ".index.json").exists()


def _size(p: Path) -> str:
    """Bytes of a file, a folder, or the shards of `NAME.safetensors` (`NAME-0000i-of-0000n.safetensors`)."""
    if p.is_dir():
        files = [f for f in p.rglob("*") if f.is_file()]
    else:
        files = [p] if p.exists() else sorted(p.parent.glob(p.name.replace(".safetensors", "-*.safetensors")))
    size = sum(f.stat().st_size for f in files)
    return f"{size / 2**30:.2f} GiB" if size >= 2**30 else f"{size / 2**20:.1f} MiB"


def _dit_params(cfg: DiTConfig) -> int:
    return sum(t.numel() for t in _meta(DiT, cfg).parameters())
