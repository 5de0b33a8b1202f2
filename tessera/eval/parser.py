"""The scene parser: a small U-Net that labels every pixel (object or not; its shape, colour and size),
then connected components of same-colour object pixels become detections, linked into tracks.

Per-pixel labelling plus grouping (rather than a detector) keeps the network small and fast on a CPU;
colour and shape names are unique within a world scene, so same-label pieces of one frame (an object cut
in two by an occluder) are merged into one detection. The network also sees two coordinate channels,
since an object's size follows from its apparent size and where it stands in the image (perspective).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tessera.checkpoint import CheckpointError, load_into, load_tensors, save_tensors
from tessera.eval.tracks import (
    COLOUR_NAMES,
    MIN_AREA,
    SIZE_NAMES,
    ClipParse,
    Detection,
    link_tracks,
    mask_stats,
)
from tessera.world.scene import SHAPES

HEADS = {"object": 1, "shape": len(SHAPES), "colour": len(COLOUR_NAMES), "size": len(SIZE_NAMES)}
DEFAULT_DIR = Path(__file__).resolve().parent.parent / "assets" / "parser"


@dataclass(frozen=True)
class ParserConfig:
    """Input side (frames are resized to size x size), the channel width of the first level, and how its
    detections are linked into tracks (`link_tracks`' `labels_gate`: True, a differing shape or colour
    label counts against a link; False, distance alone decides and the labels only rank candidates) and
    named objects found (`ClipParse.find_share`: 0, by each track's vote)."""

    size: int = 128
    width: int = 32
    labels_gate: bool = True
    find_share: float = 0.0


def _block(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride, 1),
        nn.GroupNorm(8, c_out),
        nn.SiLU(),
        nn.Conv2d(c_out, c_out, 3, 1, 1),
        nn.GroupNorm(8, c_out),
        nn.SiLU(),
    )


class SceneParser(nn.Module):
    """Frames (B, 3, S, S) in [-1, 1] -> per-pixel logits (B, 22, S, S): object, 6 shapes, 12 colours,
    3 sizes (HEADS order)."""

    def __init__(self, cfg: ParserConfig) -> None:
        super().__init__()
        self.cfg = cfg
        w = cfg.width
        self.enc = nn.ModuleList(
            [_block(5, w), _block(w, 2 * w, 2), _block(2 * w, 3 * w, 2), _block(3 * w, 4 * w, 2)]
        )
        self.context = nn.Linear(4 * w, 4 * w)  # whole-frame context added to the bottleneck
        self.dec = nn.ModuleList([_block(7 * w, 3 * w), _block(5 * w, 2 * w), _block(3 * w, w)])
        self.head = nn.Conv2d(w, sum(HEADS.values()), 1)

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps at S, S/2, S/4, S/8 (the last with global context added)."""
        b, _, h, w = x.shape
        ys, xs = torch.meshgrid(
            torch.linspace(-1, 1, h, device=x.device),
            torch.linspace(-1, 1, w, device=x.device),
            indexing="ij",
        )
        h_ = torch.cat([x, xs.expand(b, 1, h, w), ys.expand(b, 1, h, w)], 1)
        feats = []
        for block in self.enc:
            h_ = block(h_)
            feats.append(h_)
        feats[-1] = feats[-1] + self.context(feats[-1].mean((2, 3)))[:, :, None, None]
        return feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.encode(x)
        h = feats[-1]
        for block, skip in zip(self.dec, reversed(feats[:-1]), strict=True):
            h = block(torch.cat([F.interpolate(h, size=skip.shape[-2:], mode="nearest"), skip], 1))
        return self.head(h)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 4 * width) pooled bottleneck features: the video feature space of `fwd`."""
        return self.encode(x)[-1].mean((2, 3))


def prepare(video: np.ndarray | torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (T, H, W, 3) -> float (T, 3, size, size) in [-1, 1] (area-resized)."""
    x = torch.as_tensor(np.asarray(video)).permute(0, 3, 1, 2).float() / 127.5 - 1
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x


@torch.no_grad()
def predict(parser: SceneParser, video: np.ndarray, batch: int = 16) -> dict[str, torch.Tensor]:
    """Per-pixel labels at the parser's size: object (T, S, S) bool, and probabilities per head."""
    dev = next(parser.parameters()).device
    x = prepare(video, parser.cfg.size)
    logits = torch.cat([parser(x[i : i + batch].to(dev)).float().cpu() for i in range(0, len(x), batch)])
    parts = torch.split(logits, list(HEADS.values()), dim=1)
    out = {"object": parts[0][:, 0] > 0}
    for name, p in zip(list(HEADS)[1:], parts[1:], strict=True):
        out[name] = p.softmax(1)
    return out


def components(labels: torch.Tensor) -> torch.Tensor:
    """4-connected components of equal non-negative labels (T, H, W) -> component ids (T, H, W), 0 where
    the label is negative. Label propagation: each pixel takes the largest id among same-label
    neighbours until nothing changes."""
    t, h, w = labels.shape
    ids = torch.arange(1, t * h * w + 1, dtype=torch.float32).view(t, h, w) * (labels >= 0)
    pad_lab = F.pad(labels.float(), (1, 1, 1, 1), value=-1)
    for _ in range(h * w):
        p = F.pad(ids, (1, 1, 1, 1))
        new = ids
        for dy, dx in ((0, 1), (2, 1), (1, 0), (1, 2)):
            same = pad_lab[:, dy : dy + h, dx : dx + w] == labels
            new = torch.maximum(new, torch.where(same & (labels >= 0), p[:, dy : dy + h, dx : dx + w], 0))
        if torch.equal(new, ids):
            break
        ids = new
    return ids.long()


def detect(pred: dict[str, torch.Tensor], min_area: float = MIN_AREA) -> tuple[list[Detection], np.ndarray]:
    """Detections from per-pixel predictions: components of same-colour object pixels, attributes by
    probability-mass vote; same (colour, shape) pieces of a frame are merged. Also returns the
    component map (T, S, S) (detection.label values, 0 background)."""
    colour = torch.where(pred["object"], pred["colour"].argmax(1), -1)
    comp = components(colour)
    t_len, h, w = colour.shape
    out_map = np.zeros((t_len, h, w), dtype=np.int16)
    dets: list[Detection] = []
    for f in range(t_len):
        merged: dict[tuple[int, int], np.ndarray] = {}
        for cid in torch.unique(comp[f]).tolist():
            if cid == 0:
                continue
            mask = comp[f] == cid
            if mask.sum() < max(2.0, min_area * h * w):
                continue
            key = (
                int(pred["colour"][f][:, mask].sum(1).argmax()),
                int(pred["shape"][f][:, mask].sum(1).argmax()),
            )
            merged[key] = merged.get(key, np.zeros((h, w), bool)) | mask.numpy()
        for (c, s), mask in merged.items():
            size = int(pred["size"][f][:, torch.from_numpy(mask)].sum(1).argmax())
            label = len(dets) + 1
            out_map[f][mask] = label
            dets.append(Detection(f, s, c, size, *mask_stats(mask), label=label))
    return dets, out_map


def parse_video(parser: SceneParser, video: np.ndarray) -> ClipParse:
    """The parse of a uint8 video (T, H, W, 3): detections linked into tracks, instance map at the
    parser's size (0 background, i + 1 = track i)."""
    dets, comp = detect(predict(parser, video))
    tracks = link_tracks(dets, len(video), labels_gate=parser.cfg.labels_gate)
    lut = np.zeros(len(dets) + 1, dtype=np.int16)
    for d in dets:
        lut[d.label] = d.track + 1
    return ClipParse(tracks, len(video), lut[comp], dets, parser.cfg.find_share)


def save_parser(parser: SceneParser, folder: str | Path, accuracy: dict | None = None) -> Path:
    """Write `config.json`, `parser.safetensors` (sharded past 16 MiB) and `accuracy.json`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(asdict(parser.cfg), indent=1) + "\n")
    save_tensors(folder, "parser", parser.state_dict())
    if accuracy is not None:
        (folder / "accuracy.json").write_text(json.dumps(accuracy, indent=1) + "\n")
    return folder


def load_parser(folder: str | Path | None = None, device: str | torch.device = "cpu") -> SceneParser:
    """Load a parser folder (default: the shipped one in tessera/assets/parser)."""
    folder = Path(folder) if folder is not None else DEFAULT_DIR
    if not (folder / "config.json").exists():
        raise CheckpointError(
            f"{folder}: no trained scene parser (config.json missing); train one with "
            "`python scripts/train_parser.py --out DIR` or use the oracle (--truth-parse)"
        )
    cfg = ParserConfig(**json.loads((folder / "config.json").read_text()))
    if not 0.0 <= cfg.find_share <= 1.0:
        raise CheckpointError(f"{folder}: find_share must be in [0, 1] (0: by vote); got {cfg.find_share}")
    parser = SceneParser(cfg)
    load_into(parser, load_tensors(folder, "parser"), str(folder))
    return parser.to(device).eval()


def has_parser(folder: str | Path | None = None) -> bool:
    """Whether a trained parser folder exists (default: the shipped one)."""
    return ((Path(folder) if folder is not None else DEFAULT_DIR) / "config.json").exists()
