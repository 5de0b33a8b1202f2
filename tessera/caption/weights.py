"""Captioner folders and the one call that captions clips.

    FOLDER/config.json          CaptionerConfig
    FOLDER/captioner.safetensors  weights (16 MiB shards plus an index where larger)
    FOLDER/tokenizer.json       the caption tokenizer
    FOLDER/metrics.json         measured scores (written by the trainer), README.md a short card

The shipped weights live in `tessera/assets/captioner/` (`default_dir()`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from tessera.caption.model import Captioner, CaptionerConfig, beam_search, greedy, prepare
from tessera.checkpoint import CheckpointError, atomic_dir, load_into, load_tensors, narrow, save_tensors
from tessera.models.text import Tokenizer


@dataclass
class CaptionerBundle:
    """A captioner network with its tokenizer."""

    model: Captioner
    tokenizer: Tokenizer

    @property
    def cfg(self) -> CaptionerConfig:
        return self.model.cfg


def default_dir() -> Path:
    """Where the shipped captioner weights live."""
    return Path(__file__).resolve().parent.parent / "assets" / "captioner"


def save_captioner(
    bundle: CaptionerBundle,
    out: str | Path,
    metrics: dict | None = None,
    card: str = "",
    dtype: torch.dtype | None = None,
) -> Path:
    """Write a captioner folder atomically; `dtype` (e.g. torch.bfloat16, as shipped) stores the
    parameters narrower, like `save_model`."""
    out = Path(out)
    with atomic_dir(out) as tmp:
        (tmp / "config.json").write_text(json.dumps(bundle.cfg.to_dict(), indent=2))
        save_tensors(tmp, "captioner", narrow(bundle.model, dtype), {"component": "captioner"})
        bundle.tokenizer.save(tmp / "tokenizer.json")
        if metrics is not None:
            (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2))
        (tmp / "README.md").write_text(card or "# tessera captioner\n")
    return out


def load_captioner(path: str | Path | None = None, device: str | torch.device = "cpu") -> CaptionerBundle:
    """Load a captioner folder (default: the shipped one), strictly; clear errors when it is missing."""
    path = Path(path) if path is not None else default_dir()
    if not (path / "config.json").is_file():
        hint = " (the shipped weights are missing: train them with `python -m tessera.caption.train`)"
        raise CheckpointError(
            f"{path}: not a captioner folder (no config.json){hint if path == default_dir() else ''}"
        )
    try:
        cfg = CaptionerConfig.from_dict(json.loads((path / "config.json").read_text()))
        tokenizer = Tokenizer.from_file(path / "tokenizer.json")
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: {e}") from e
    with torch.device("meta"):
        model = Captioner(cfg)
    load_into(model, load_tensors(path, "captioner"), f"{path}/captioner")
    return CaptionerBundle(model.to(device).eval(), tokenizer)


@torch.no_grad()
def caption_clips(
    bundle: CaptionerBundle, clips: list[torch.Tensor], beams: int = 1, batch_size: int = 16
) -> list[str]:
    """Detailed captions of uint8 (T, H, W, 3) clips: greedy (`beams=1`) or beam search."""
    if beams < 1:
        raise ValueError(f"beams must be >= 1, got {beams}")
    device = next(bundle.model.parameters()).device
    tok, out = bundle.tokenizer, []
    starts = tok.word_starts()  # for the repeat guard
    for start in range(0, len(clips), batch_size):
        video = torch.stack([prepare(c, bundle.cfg) for c in clips[start : start + batch_size]]).to(device)
        if beams == 1:
            rows = greedy(bundle.model, video, tok.bos_id, word_start=starts)
        else:
            rows = beam_search(bundle.model, video, tok.bos_id, beams, word_start=starts)
        out += [tok.decode(r).strip() for r in rows]
    return out
