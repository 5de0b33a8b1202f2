"""Model folders and training state, written atomically, loaded strictly, never pickled.

A model folder holds:
  config.json                      `ModelConfig.to_dict()`
  vae.safetensors, text.safetensors, dit.safetensors
                                   one file per component, or, past 16 MiB, shards
                                   `dit-00001-of-00003.safetensors` ... with `dit.safetensors.index.json`
  tokenizer.json                   the BPE tokenizer (HF `tokenizers` format)
  README.md                        the model card: data, steps, device, measured scores

Loading builds every network on the meta device and assigns the stored tensors with `strict=True`, so
a missing, extra or mis-shaped tensor is an error that names it, never a silently random weight.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from tessera.config import ModelConfig
from tessera.errors import FileError as CheckpointError
from tessera.files import usual_mode
from tessera.models.dit import DiT
from tessera.models.text import TextEncoder, Tokenizer
from tessera.models.vae import VideoVAE

SHARD_BYTES = 16 * 2**20  # 16 MiB
COMPONENTS = ("vae", "text", "dit")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


@dataclass
class Model:
    """The networks of one model folder, plus the tokenizer and the card text."""

    config: ModelConfig
    vae: VideoVAE
    text: TextEncoder
    dit: DiT
    tokenizer: Tokenizer
    card: str = ""

    def modules(self) -> dict[str, nn.Module]:
        return {"vae": self.vae, "text": self.text, "dit": self.dit}

    def to(self, device: torch.device | str) -> Model:
        for m in self.modules().values():
            m.to(device)
        return self

    def eval(self) -> Model:
        for m in self.modules().values():
            m.eval().requires_grad_(False)
        return self


def build_model(config: ModelConfig, tokenizer: Tokenizer, device: torch.device | str = "cpu") -> Model:
    """Randomly initialised networks for `config` on `device` ("meta" builds without memory)."""
    if tokenizer.vocab_size > config.text.vocab_size:
        raise CheckpointError(
            f"tokenizer has {tokenizer.vocab_size} tokens but the text encoder's vocab_size is "
            f"{config.text.vocab_size}; they must agree"
        )
    meta = torch.device(device).type == "meta"
    with torch.device(device), initialisers_skipped() if meta else contextlib.nullcontext():
        vae, text, dit = VideoVAE(config.vae), TextEncoder(config.text), DiT(config.dit)
    return Model(config, vae, text, dit, tokenizer)


# nn.init's in-place initialisers (each returns its tensor)
INITIALISERS = ("normal_", "trunc_normal_", "uniform_", "xavier_uniform_", "xavier_normal_")
INITIALISERS += ("kaiming_uniform_", "kaiming_normal_", "zeros_", "ones_", "constant_", "orthogonal_")


@contextmanager
def initialisers_skipped() -> Iterator[None]:
    """`torch.nn.init`'s initialisers as no-ops while networks are built on the meta device, whose values
    are never used (their weights are loaded next). On the meta device the first `normal_` imports
    torch._dynamo, which no CPU generation needs: `tessera generate PROMPT --steps 1` went from 7.6-8.3 s
    to 6.9-7.0 s with the shipped model (three runs each, 2-core CPU, 2026-12-06)."""
    saved = {name: getattr(nn.init, name) for name in INITIALISERS}
    for name in INITIALISERS:
        setattr(nn.init, name, lambda tensor, *args, **kwargs: tensor)
    try:
        yield
    finally:
        for name, fn in saved.items():
            setattr(nn.init, name, fn)


# ---------------------------------------------------------------------------------------------
# Atomic writes


@contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Yield a temp folder beside `path`; on success it replaces `path` in one rename."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise CheckpointError(f"{path} exists and is not a folder")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        yield tmp
        usual_mode(tmp)
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


# ---------------------------------------------------------------------------------------------
# Sharded safetensors


def save_tensors(folder: Path, name: str, tensors: dict[str, torch.Tensor], metadata: dict | None = None):
    """Save `tensors` as `name.safetensors`, or as 16 MiB shards plus `name.safetensors.index.json`."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for k, v in tensors.items():
        nbytes = v.numel() * v.element_size()
        if shards[-1] and size + nbytes > SHARD_BYTES:
            shards.append({})
            size = 0
        shards[-1][k] = v
        size += nbytes
    meta = {k: str(v) for k, v in (metadata or {}).items()}
    if len(shards) == 1:
        _save_file(shards[0], folder / f"{name}.safetensors", meta)
        return
    weight_map, sums = {}, {}
    for i, shard in enumerate(shards):
        fname = f"{name}-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        _save_file(shard, folder / fname, meta)
        weight_map.update({k: fname for k in shard})
        sums[fname] = file_sha256(folder / fname)
    index = {"metadata": {"total_size": sum(v.numel() * v.element_size() for v in tensors.values())}}
    index["weight_map"] = weight_map
    index["sha256"] = sums
    (folder / f"{name}.safetensors.index.json").write_text(json.dumps(index, indent=1))


def _save_file(tensors: dict[str, torch.Tensor], path: Path, meta: dict) -> None:
    """`safetensors.save_file`, its I/O failures (a full disk) raised as the OSError they are."""
    try:
        save_file(tensors, str(path), metadata=meta)
    except SafetensorError as e:
        code = re.search(r"os error (\d+)", str(e))
        if code is None:
            raise
        raise OSError(int(code.group(1)), os.strerror(int(code.group(1))), str(path)) from e


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _verify_shards(index: Path, sums: dict | None, files: list[str]) -> None:
    """Check each shard against the index's SHA-256: a corrupt or swapped shard is named. An index
    written before shards had checksums loads with a one-line notice."""
    if sums is None:
        print(f"notice: {index} has no shard checksums (written by an older tessera); not verified",
              file=sys.stderr)  # fmt: skip
        return
    for fname in files:
        path = index.parent / fname
        if fname not in sums:
            raise CheckpointError(f"{index}: no checksum for shard {fname}")
        if path.exists() and file_sha256(path) != sums[fname]:
            raise CheckpointError(
                f"{path}: checksum differs from {index.name} (the shard is corrupt or swapped with another)"
            )


def load_tensors(folder: Path, name: str) -> dict[str, torch.Tensor]:
    """Load `name.safetensors` or its shards (verified against the index's checksums); every failure
    names the file and the problem."""
    folder = Path(folder)
    single, index = folder / f"{name}.safetensors", folder / f"{name}.safetensors.index.json"
    if index.exists():
        data = read_json(index)
        weight_map = data.get("weight_map")
        if not isinstance(weight_map, dict):
            raise CheckpointError(f"{index}: no 'weight_map' in the shard index")
        files = sorted(set(weight_map.values()))
        _verify_shards(index, data.get("sha256"), files)
    elif single.exists():
        files = [single.name]
    else:
        pickled = [p.name for p in folder.glob(f"{name}*") if p.suffix in PICKLE_SUFFIXES]
        if pickled:
            raise CheckpointError(
                f"{folder}: found {pickled} but tessera loads only safetensors weights, never pickle"
            )
        raise CheckpointError(f"{folder}: missing {single.name} (or a sharded {index.name})")
    out: dict[str, torch.Tensor] = {}
    for fname in files:
        path = folder / fname
        if not path.exists():
            raise CheckpointError(f"{path}: shard listed in the index is missing")
        try:
            out.update(load_file(str(path)))
        except (SafetensorError, OSError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"{path}: not a valid safetensors file (truncated or corrupt?): {e}") from e
    return out


def read_json(path: str | Path, error: type[ValueError] = CheckpointError) -> dict:
    """A JSON object from `path`; `error` (naming the file) if it is missing, not JSON, or not an object."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise error(f"{path}: missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise error(f"{path}: not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise error(f"{path}: expected a JSON object")
    return data


def load_into(module: nn.Module, tensors: dict[str, torch.Tensor], where: str) -> None:
    """`load_state_dict(strict=True, assign=True)` with an error that names the offending keys."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    shapes = [
        f"{k}: stored {tuple(tensors[k].shape)}, model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in tensors and tensors[k].shape != v.shape
    ]
    if missing or unexpected or shapes:
        raise CheckpointError(
            f"{where}: weights do not match the config: missing {missing[:5]}, unexpected "
            f"{unexpected[:5]}, shape mismatches {shapes[:5]}"
        )
    # Weights may be stored in a narrower float type (shipped models keep bf16 on disk); the module
    # computes in the dtype it was built with.
    tensors = {k: v.to(expected[k].dtype) if v.is_floating_point() else v for k, v in tensors.items()}
    module.load_state_dict(tensors, strict=True, assign=True)


def check_finite(tensors: dict[str, torch.Tensor], where: str) -> None:
    """Refuse weights holding NaN or inf, naming the tensors: they would only ever make noise."""
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise CheckpointError(f"{where}: non-finite weights (NaN or inf) in {', '.join(bad[:5])}{more}")


def narrow(module: nn.Module, dtype: torch.dtype | None) -> dict[str, torch.Tensor]:
    """`module.state_dict()` with its floating-point *parameters* cast to `dtype` (None: unchanged).

    Buffers (the VAE's latent statistics, RoPE tables) keep their precision: they are tiny, and a
    rounded latent scale would shift every latent the DiT sees."""
    params = {name for name, _ in module.named_parameters()}
    return {
        k: v.to(dtype) if dtype is not None and k in params and v.is_floating_point() else v
        for k, v in module.state_dict().items()
    }


# ---------------------------------------------------------------------------------------------
# Model folders


def save_model(
    model: Model, out: str | Path, card: str | None = None, dtype: torch.dtype | None = None
) -> Path:
    """Write `model` as a model folder at `out` (atomically: a reader never sees half a folder).

    `dtype` (e.g. torch.bfloat16) stores the parameters narrower: half the bytes for a shipped model;
    `load_model` casts them back to the dtype the networks are built in."""
    out = Path(out)
    with atomic_dir(out) as tmp:
        (tmp / "config.json").write_text(json.dumps(model.config.to_dict(), indent=2))
        for name, module in model.modules().items():
            save_tensors(tmp, name, narrow(module, dtype), {"component": name})
        model.tokenizer.save(tmp / "tokenizer.json")
        (tmp / "README.md").write_text(card if card is not None else model.card)
    return out


def load_model(path: str | Path, device: torch.device | str = "cpu") -> Model:
    """Load a model folder onto `device`, strictly; clear errors for anything missing or mismatched."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path}: model folder not found (make one with `tessera model init`)")
    try:
        config = ModelConfig.from_dict(read_json(path / "config.json"))
    except (ValueError, TypeError, KeyError) as e:
        raise CheckpointError(f"{path / 'config.json'}: {e}") from e
    try:
        tokenizer = Tokenizer.from_file(path / "tokenizer.json")
    except ValueError as e:
        raise CheckpointError(str(e)) from e
    model = build_model(config, tokenizer, device="meta")
    for name, module in model.modules().items():
        tensors = load_tensors(path, name)
        check_finite(tensors, f"{path}/{name}")
        load_into(module, tensors, f"{path}/{name}")
    card = path / "README.md"
    model.card = card.read_text() if card.exists() else ""
    return model.to(device).eval()


# ---------------------------------------------------------------------------------------------
# Training state: tensors in safetensors, everything else in JSON; never pickle.


def save_state(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Save training state (flat tensor dict + JSON-able meta) atomically as `path` (a folder)."""
    with atomic_dir(Path(path)) as tmp:
        save_tensors(tmp, "state", tensors)
        (tmp / "state.json").write_text(json.dumps(meta, indent=1))


def load_state(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Inverse of `save_state`."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path}: training state not found")
    return load_tensors(path, "state"), read_json(path / "state.json")


# ---------------------------------------------------------------------------------------------
# Flattening nested state (optimizer state dicts) into tensors + a JSON skeleton, and the learning rate
# of a step: what every trainer (the DiT's, the VAE's, the captioner's) saves and resumes with


def flatten(tree: Any, prefix: str, tensors: dict[str, Tensor]) -> Any:
    """Move every tensor of `tree` into `tensors` under `prefix...` and return a JSON-able skeleton.

    Dict keys keep their types (optimizers index state by int), tuples stay tuples.
    """
    if isinstance(tree, Tensor):
        tensors[prefix] = tree.detach().cpu().contiguous()
        return {"tensor": prefix}
    if isinstance(tree, dict):
        return {"dict": [[k, flatten(v, f"{prefix}/{k}", tensors)] for k, v in tree.items()]}
    if isinstance(tree, (list, tuple)):
        items = [flatten(v, f"{prefix}/{i}", tensors) for i, v in enumerate(tree)]
        return {"tuple": items} if isinstance(tree, tuple) else {"list": items}
    if tree is None or isinstance(tree, (bool, int, float, str)):
        return {"value": tree}
    raise TypeError(f"cannot store {type(tree).__name__} at {prefix} in training state")


def unflatten(skeleton: Any, tensors: dict[str, Tensor]) -> Any:
    """Inverse of `flatten`."""
    ((kind, body),) = skeleton.items()
    if kind == "tensor":
        return tensors[body]
    if kind == "dict":
        return {k: unflatten(v, tensors) for k, v in body}
    if kind in ("list", "tuple"):
        items = [unflatten(v, tensors) for v in body]
        return tuple(items) if kind == "tuple" else items
    return body


def lr_at(step: int, lr: float, warmup: int, steps: int, schedule: str, min_lr_ratio: float) -> float:
    """Learning rate of 0-based `step`: linear warm-up, then cosine to `lr * min_lr_ratio`, or constant."""
    if step < warmup:
        return lr * (step + 1) / warmup
    if schedule == "constant":
        return lr
    progress = min(1.0, (step - warmup) / max(1, steps - warmup))
    return lr * (min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))
