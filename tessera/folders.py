"""Model folders: loading one (the shipped model, a tessera folder or a Wan checkpoint), writing new
ones (random, or grown from a trained one) and describing one for `tessera info`."""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from pathlib import Path

import torch
from safetensors import safe_open

from tessera import wan
from tessera.checkpoint import (
    Model,
    build_model,
    check_finite,
    load_into,
    load_model,
    load_tensors,
    read_json,
    save_model,
)
from tessera.config import ModelConfig, get_preset
from tessera.errors import FileError
from tessera.models.dit import deepen, widen
from tessera.models.text import Tokenizer
from tessera.requests import RequestError, pick_device


def default_model_path() -> Path | None:
    """The shipped model inside the package, if this install carries one."""
    path = Path(__file__).parent / "assets" / "model"
    return path if (path / "config.json").exists() else None


def load(path: str | Path | None = None, device: str = "auto") -> Model:
    """Load a model folder (default: the shipped model) or a Wan checkpoint folder onto a device."""
    if path is None:
        path = default_model_path()
        if path is None:
            raise RequestError(
                "this install ships no trained model yet; pass --model DIR "
                "(make a random one with `tessera model init --preset s --out DIR`)"
            )

    if wan.layout(path) is not None:
        return wan.load(path, pick_device(device))
    return load_model(path, pick_device(device))


def init_model_folder(preset: str, out: str | Path, seed: int = 0, vae: str | Path | None = None) -> Path:
    """Write a randomly initialised model folder: the tokenizer trained on world captions. With `vae` (a
    model folder of which config.json and the VAE's weights suffice, e.g. a VAE run's model or a packed
    VAE), its VAE and, where it has one, its tokenizer are taken and only the text encoder and DiT are
    random: a starting point for DiT training on a VAE trained elsewhere, or the folder that
    `tessera eval --vae-only` scores a VAE with."""
    config = get_preset(preset)
    torch.manual_seed(seed)
    own = None if vae is None else Path(vae) / "tokenizer.json"
    tokenizer = Tokenizer.from_file(own) if own is not None and own.is_file() else train_tokenizer(config)
    model = build_model(config, tokenizer)
    if vae is not None:
        take_vae(model, Path(vae))
    source = f" with the VAE of {vae}" if vae is not None else ""
    card = (
        f"# tessera `{preset}` (UNTRAINED)\n\nRandomly initialised with seed {seed}{source} by "
        "`tessera model init`. Its output is noise: use it for tests and experiments only.\n"
    )
    return save_model(model, out, card=card)


def take_vae(model: Model, donor: Path) -> None:
    """Load the VAE of model folder `donor` (its config.json and VAE weights; other parts may be absent)
    into `model`, whose preset must describe the same VAE."""
    try:
        theirs = ModelConfig.from_dict(read_json(donor / "config.json")).vae
        tensors = load_tensors(donor, "vae")
        check_finite(tensors, f"{donor}/vae")
    except (ValueError, TypeError, KeyError) as e:
        raise FileError(f"cannot take the VAE of {donor}: {e}") from e
    if theirs != model.config.vae:
        raise RequestError(
            f"{donor} holds another VAE than preset '{model.config.preset}' describes "
            f"({theirs} vs {model.config.vae}); pick a preset with its VAE"
        )
    load_into(model.vae, tensors, f"{donor}/vae")


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
    from tessera.world import caption_corpus  # the world engine loads only when a tokenizer is trained

    return Tokenizer.train(caption_corpus(count, seed=seed), vocab_size=config.text.vocab_size)


def describe(path: str | Path) -> str:
    """A summary of a model folder for `tessera info`: preset, the networks' sizes and parameters, how the
    weights are stored, and the card's opening and benchmark headline (the whole card is its README.md);
    for a Wan checkpoint folder, what it holds."""
    path = Path(path)
    if wan.layout(path) is not None:
        return wan.describe(path)
    model = load_model(path, "meta")
    c = model.config
    counts = {k: sum(p.numel() for p in m.parameters()) for k, m in model.modules().items()}
    shapes = {
        "dit": f"dim {c.dit.dim}, depth {c.dit.depth}, {c.dit.heads} heads, MLP {c.dit.ffn_dim}, "
        f"patch {'x'.join(map(str, c.dit.patch))}",
        "text": f"vocabulary {c.text.vocab_size}, dim {c.text.dim}, depth {c.text.depth}, "
        f"up to {c.text.max_len} tokens",
        "vae": f"{c.vae.z_channels} latent channels, {2 ** sum(c.vae.temporal_down)}x"
        f"{2 ** (len(c.vae.channel_mults) - 1)}x{2 ** (len(c.vae.channel_mults) - 1)} compression",
    }
    files = [f for f in path.iterdir() if f.is_file()]
    size = sum(f.stat().st_size for f in files)
    stored = f"stored as {_stored_dtypes(path)} ({size / 1e6:.1f} MB in {len(files)} files)"
    lines = [f"{path}: preset {c.preset}, {stored}"]
    lines += [f"  {k:<5} {n / 1e6:7.2f}M parameters  {shapes[k]}" for k, n in counts.items()]
    lines += [f"  {'total':<5} {sum(counts.values()) / 1e6:7.2f}M", ""]
    card = model.card.strip().splitlines()
    if card:
        lines += [f"Card ({len(card)} lines, {path / 'README.md'}):", ""] + _card_summary(card)
    return "\n".join(lines).rstrip()


def _stored_dtypes(path: Path) -> str:
    """The tensors' stored dtypes by share of elements, e.g. 'BF16' or 'BF16 (F32 for 0.1%)'."""
    elements: Counter[str] = Counter()
    for f in sorted(path.glob("*.safetensors")):
        with safe_open(str(f), "pt") as h:
            for k in h.keys():
                piece = h.get_slice(k)
                elements[piece.get_dtype()] += math.prod(piece.get_shape())
    (main, n), *rest = elements.most_common()
    total = n + sum(m for _, m in rest)
    share = [f"{d} for {m / total:.1%}" if m / total >= 1e-3 else f"{d} for {m} values" for d, m in rest]
    return main + (f" ({', '.join(share)})" if rest else "")


def _card_summary(card: list[str], opening: int = 8, table: int = 14) -> list[str]:
    """The card's title and first paragraph, then the first table of its benchmark section, if any."""
    out = [*card[:1], ""]
    body = list(card[1:])
    while body and not body[0].strip():
        body.pop(0)
    para = body[: next((i for i, ln in enumerate(body) if not ln.strip()), len(body))]
    out += para[:opening] + (["..."] if len(para) > opening else [])
    heads = [i for i, ln in enumerate(card) if ln.startswith("#") and "benchmark" in ln.lower()]
    if heads:
        rows = [i for i in range(heads[0], len(card)) if card[i].startswith("|")]
        if rows:
            first = rows[0]
            last = next((i for i in range(first, len(card)) if not card[i].startswith("|")), len(card))
            out += ["", card[heads[0]], ""] + card[first : min(last, first + table)]
    return out
