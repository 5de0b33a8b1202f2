"""Real-video ingestion: a folder (or list) of videos -> training clips, `manifest.jsonl` and a summary.

Per input file: probe it (duration, fps, size, codec); decode it at `fps`; detect shot cuts; split into
shots; filter each shot (too short, static, too dark: each reason counted); cut each kept shot into
clips of its training bucket's length, resized to cover and centre-cropped (`buckets.resize_crop`);
write them as mp4; optionally cache VAE latents and caption them with the captioner.

Shot cuts (our own detector): each frame gets a colour histogram (8 bins per channel) and a 16 x 16
grey thumbnail; the change between neighbours is the histogram distance (half the L1, in [0, 1]) plus
the mean thumbnail difference (in [0, 1]). A cut is a change above `cut_threshold` that is also
`cut_ratio` times the median change in a window of frames around it, so steady camera motion or
flicker does not cut while a real change of scene does.

Resumable: each finished file leaves `records/<key>.json` (written atomically; the key is a hash of
the file's path, size and modification time) and its clips; a rerun skips files that have a record and
rebuilds `manifest.jsonl` and `summary.json` from all records. Unreadable or corrupt files are
skipped with a reason, never fatal.
"""

from __future__ import annotations

import hashlib
import json
import statistics
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from tessera.checkpoint import atomic_write_text
from tessera.data.buckets import BucketError, Shape, nearest_bucket, resize_crop
from tessera.data.folder import IMAGE_SUFFIXES, VIDEO_SUFFIXES, DataError

DEFAULT_BUCKETS: tuple[Shape, ...] = ((33, 128, 128), (33, 128, 224), (33, 224, 128), (17, 128, 128),
                                      (17, 128, 224), (17, 224, 128))  # fmt: skip


@dataclass(frozen=True)
class IngestConfig:
    """Thresholds and shapes of an ingest run."""

    buckets: tuple[Shape, ...] = DEFAULT_BUCKETS
    fps: float = 16.0  # clips are resampled to the training frame rate
    min_seconds: float = 0.5  # shots shorter than this (or than the smallest bucket) are "too_short"
    max_clips_per_shot: int = 4
    dark_threshold: float = 16.0  # mean luma (0..255) below this: "too_dark"
    static_threshold: float = 4.0  # thumbnail change between frames (0..255, see shot_filter) below: "static"
    cut_threshold: float = 0.35
    cut_ratio: float = 4.0
    cut_window: int = 8
    quality: int | None = None  # mp4 quality (None: near-transparent)


def frame_changes(frames: torch.Tensor) -> torch.Tensor:
    """uint8 (T, H, W, 3) -> (T - 1,) change between each frame and the next (histogram + thumbnail)."""
    x = frames.permute(0, 3, 1, 2).float()  # (T, 3, H, W)
    hist = torch.stack([_histogram(f) for f in x])  # (T, 24)
    thumb = F.adaptive_avg_pool2d(x.mean(1, keepdim=True), 16).flatten(1) / 255.0  # (T, 256)
    d_hist = 0.5 * (hist[1:] - hist[:-1]).abs().sum(1) / 3  # each channel's histogram sums to 1
    d_thumb = (thumb[1:] - thumb[:-1]).abs().mean(1)
    return d_hist + d_thumb


def _histogram(frame: torch.Tensor) -> torch.Tensor:
    """(3, H, W) float 0..255 -> (24,) per-channel 8-bin histograms, each summing to 1."""
    bins = (frame.clamp(0, 255) / 32).long().clamp(max=7).flatten(1)  # (3, H*W)
    counts = torch.zeros(3, 8).scatter_add_(1, bins, torch.ones_like(bins, dtype=torch.float))
    return (counts / bins.shape[1]).flatten()


def detect_cuts(frames: torch.Tensor, cfg: IngestConfig = IngestConfig()) -> list[int]:
    """Frame indices where a new shot starts (never 0), by the adaptive rule in the module docstring."""
    if frames.shape[0] < 2:
        return []
    d = frame_changes(frames).tolist()
    cuts = []
    for i, v in enumerate(d):
        around = d[max(0, i - cfg.cut_window) : i] + d[i + 1 : i + 1 + cfg.cut_window]
        local = statistics.median(around) if around else 0.0
        if v > cfg.cut_threshold and v > cfg.cut_ratio * local:
            cuts.append(i + 1)
    return cuts


def shot_filter(frames: torch.Tensor, fps: float, cfg: IngestConfig) -> str | None:
    """Why a shot is dropped ("too_short", "too_dark", "static"), or None to keep it."""
    min_frames = min(b[0] for b in cfg.buckets)
    if frames.shape[0] < min_frames or frames.shape[0] / fps < cfg.min_seconds:
        return "too_short"
    luma = frames.float() @ torch.tensor([0.299, 0.587, 0.114])  # (T, H, W)
    if luma.mean() < cfg.dark_threshold:
        return "too_dark"
    # Largest change of a 32 x 32 thumbnail between neighbouring frames, averaged over the shot: a small
    # moving object counts, codec noise (a level or two after averaging) does not.
    thumb = F.adaptive_avg_pool2d(luma[:, None], 32)[:, 0]  # (T, 32, 32)
    if (thumb[1:] - thumb[:-1]).abs().flatten(1).amax(1).mean() < cfg.static_threshold:
        return "static"
    return None


def file_key(path: Path) -> str:
    """A stable id of one input file version: its path, size and modification time."""
    st = path.stat()
    return hashlib.blake2b(
        f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode(), digest_size=8
    ).hexdigest()


def list_inputs(videos: str | Path | list) -> list[Path]:
    """Files to ingest: a folder (every file in it, recursively, sorted), one file, or a list of them."""
    if isinstance(videos, (list, tuple)):
        return [Path(v) for v in videos]
    p = Path(videos)
    if not p.exists():
        raise DataError(f"{p}: not found (give a folder of videos or a video file)")
    if p.is_file():
        return [p]
    return sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith("."))


def ingest(
    videos: str | Path | list,
    out: str | Path,
    cfg: IngestConfig = IngestConfig(),
    captioner_dir: str | Path | None = None,
    vae_model: str | Path | None = None,
    device: str = "cpu",
    progress: bool = True,
) -> dict:
    """Ingest `videos` into dataset folder `out` (clips/, latents/, records/, manifest.jsonl,
    summary.json); returns the summary. Safe to rerun: finished files are skipped."""
    from tqdm import tqdm

    out = Path(out)
    (out / "records").mkdir(parents=True, exist_ok=True)
    files = [f for f in list_inputs(videos) if out.resolve() not in f.resolve().parents]
    tools = _Tools(captioner_dir, vae_model, device)
    for f in tqdm(files, desc="ingest", unit="file", disable=not progress):
        try:
            key = file_key(f)
        except OSError as e:
            _write_record(out, hashlib.blake2b(str(f).encode(), digest_size=8).hexdigest(),
                          {"source": str(f), "skipped": "unreadable", "error": str(e)})  # fmt: skip
            continue
        if (out / "records" / f"{key}.json").exists():
            continue
        _write_record(out, key, ingest_file(f, out, key, cfg, tools))
    return write_outputs(out)


def ingest_file(path: Path, out: Path, key: str, cfg: IngestConfig, tools: _Tools) -> dict:
    """Ingest one file; the record lists its clips and counts, or the reason it was skipped."""
    from tessera.video import VideoError, probe, read_video, write_video

    record: dict = {"source": str(path), "key": key}
    if path.suffix.lower() not in VIDEO_SUFFIXES + IMAGE_SUFFIXES:
        return record | {"skipped": "not_video", "error": f"suffix {path.suffix!r} is not a video"}
    try:
        info = probe(path)
        frames = read_video(path, fps=cfg.fps)
    except VideoError as e:
        return record | {"skipped": "corrupt", "error": e.problem}
    except (OSError, RuntimeError, ValueError) as e:
        return record | {"skipped": "corrupt", "error": str(e)}
    record["probe"] = info
    cuts = detect_cuts(frames, cfg)
    bounds = list(zip([0, *cuts], [*cuts, frames.shape[0]], strict=True))
    filtered: Counter = Counter()
    clips = []
    for s, (a, b) in enumerate(bounds):
        shot = frames[a:b]
        reason = shot_filter(shot, cfg.fps, cfg)
        try:
            bucket = (
                nearest_bucket(b - a, shot.shape[1], shot.shape[2], list(cfg.buckets)) if not reason else None
            )
        except BucketError:
            reason = "too_short"
        if reason:
            filtered[reason] += 1
            continue
        t = bucket[0]
        for c in range(min(cfg.max_clips_per_shot, (b - a) // t)):
            x = resize_crop(shot[c * t : (c + 1) * t].permute(3, 0, 1, 2).float() / 127.5 - 1, bucket)
            name = f"{path.stem}-{key[:8]}-s{s:02d}c{c:02d}"
            u8 = ((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 3, 0)
            write_video(out / "clips" / f"{name}.mp4", u8, fps=cfg.fps, quality=cfg.quality)
            start = (a + c * t) / cfg.fps
            clips.append({"file": f"clips/{name}.mp4", "caption": "", "source": str(path), "shot": s,
                          "start": round(start, 3), "end": round(start + t / cfg.fps, 3),
                          "frames": t, "height": bucket[1], "width": bucket[2], "fps": cfg.fps})  # fmt: skip
            tools.finish(clips[-1], u8, x, out, name)
    return record | {"cuts": [round(c / cfg.fps, 3) for c in cuts], "shots": len(bounds),
                     "filtered": dict(filtered), "clips": clips}  # fmt: skip


class _Tools:
    """The optional captioner and VAE, loaded once per run."""

    def __init__(self, captioner_dir, vae_model, device: str) -> None:
        self.device = device
        self.captioner = None
        self.vae = None
        if captioner_dir is not None:
            from tessera.caption.weights import load_captioner

            self.captioner = load_captioner(captioner_dir, device)
        if vae_model is not None:
            from tessera.checkpoint import load_model

            self.vae = load_model(vae_model, device).vae

    @torch.no_grad()
    def finish(self, clip: dict, u8: torch.Tensor, x: torch.Tensor, out: Path, name: str) -> None:
        """Caption the clip and cache its latents, where asked."""
        if self.captioner is not None:
            from tessera.caption.weights import caption_clips

            clip["caption"] = caption_clips(self.captioner, [u8])[0]
        if self.vae is not None:
            from safetensors.torch import save_file

            z = self.vae.encode_latents(x[None].to(self.device))[0].cpu().contiguous()
            (out / "latents").mkdir(exist_ok=True)
            save_file({"z": z}, str(out / "latents" / f"{name}.safetensors"))
            clip["latents"] = f"latents/{name}.safetensors"


def _write_record(out: Path, key: str, record: dict) -> None:
    atomic_write_text(out / "records" / f"{key}.json", json.dumps(record, indent=1))


def write_outputs(out: str | Path) -> dict:
    """Rebuild `manifest.jsonl` and `summary.json` from the records in `out/records/`."""
    out = Path(out)
    records = [json.loads(p.read_text()) for p in sorted((out / "records").glob("*.json"))]
    records.sort(key=lambda r: r["source"])
    clips = [c for r in records for c in r.get("clips", [])]
    filtered: Counter = Counter()
    for r in records:
        filtered.update(r.get("filtered", {}))
    skipped = [{"source": r["source"], "reason": r["skipped"], "error": r.get("error", "")} for r in records
               if "skipped" in r]  # fmt: skip
    summary = {
        "files": len(records),
        "files_ingested": len(records) - len(skipped),
        "files_skipped": dict(Counter(s["reason"] for s in skipped)),
        "skipped": skipped,
        "shots": sum(r.get("shots", 0) for r in records),
        "cuts": sum(len(r.get("cuts", [])) for r in records),
        "shots_filtered": dict(filtered),
        "clips": len(clips),
        "clip_seconds": round(sum(c["end"] - c["start"] for c in clips), 3),
        "source_seconds": round(sum(r.get("probe", {}).get("duration", 0.0) for r in records), 3),
        "captioned": sum(bool(c["caption"]) for c in clips),
        "sources": [
            {"source": r["source"], **r["probe"], "cuts_s": r["cuts"], "clips": len(r["clips"])}
            for r in records
            if "probe" in r
        ],  # fmt: skip
    }
    atomic_write_text(out / "manifest.jsonl", "".join(json.dumps(c) + "\n" for c in clips))
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    return summary


__all__ = ["IngestConfig", "asdict", "detect_cuts", "frame_changes", "ingest", "shot_filter", "write_outputs"]
