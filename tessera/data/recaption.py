"""Re-captioning: caption a folder or manifest of videos with the captioner and write a manifest the
trainer reads (`{"file", "caption", "original_caption"}` per line, paths relative to the manifest).

Resumable: files already in the output manifest are skipped, and each batch is appended (and flushed)
as soon as it is captioned, so an interrupted run loses at most one batch. Files that cannot be read,
and (with short captions) captions that cannot be read back as a scene, are reported in the returned
summary and skipped. The run's settings (captioner, detailed or short, beams) are kept next to the
manifest (`<stem>.settings.json`); resuming with other settings is refused, so one manifest never
mixes two kinds of caption.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from tqdm import tqdm

from tessera.caption.expand import short_from_detailed
from tessera.caption.parse import ParseError
from tessera.caption.weights import caption_clips, load_captioner
from tessera.data.folder import DataError, FolderDataset
from tessera.files import atomic_write_text
from tessera.video import VideoError, read_video


def recaption(
    input: str | Path,
    out_manifest: str | Path,
    captioner_dir: str | Path | None = None,
    batch_size: int = 16,
    detailed: bool = True,
    beams: int = 1,
    device: str = "cpu",
    progress: bool = True,
) -> dict:
    """Caption every video of `input` (a folder or manifest) into `out_manifest`; returns
    {"captioned", "skipped_done", "failed": [{"file", "error"}], "manifest"}."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    items = FolderDataset(input).items
    out_manifest = Path(out_manifest)
    out_manifest.parent.mkdir(parents=True, exist_ok=True)
    _check_settings(out_manifest, captioner_dir, detailed, beams)
    done = _done(out_manifest)
    todo = [it for it in items if str(it.path.resolve()) not in done]
    bundle = load_captioner(captioner_dir, device)
    failed: list[dict] = []
    captioned = 0
    with open(out_manifest, "a") as f, tqdm(total=len(todo), desc="recaption", disable=not progress) as bar:
        for start in range(0, len(todo), batch_size):
            batch, clips = [], []
            for it in todo[start : start + batch_size]:
                try:
                    clips.append(read_video(it.path))
                    batch.append(it)
                except VideoError as e:
                    failed.append({"file": str(it.path), "error": e.problem})
            texts = caption_clips(bundle, clips, beams=beams) if clips else []
            for it, text in zip(batch, texts, strict=True):
                try:
                    caption = text if detailed else short_from_detailed(text)
                except ParseError as e:  # a garbled caption (say, five objects) has no short form
                    failed.append({"file": str(it.path), "error": f"caption {text!r} has no short form: {e}"})
                    continue
                rel = os.path.relpath(it.path.resolve(), out_manifest.parent.resolve())
                f.write(json.dumps({"file": rel, "caption": caption, "original_caption": it.caption}) + "\n")
                captioned += 1
            f.flush()
            bar.update(len(todo[start : start + batch_size]))
    return {"captioned": captioned, "skipped_done": len(items) - len(todo), "failed": failed,
            "manifest": str(out_manifest)}  # fmt: skip


def _check_settings(manifest: Path, captioner_dir, detailed: bool, beams: int) -> None:
    """Write the settings file on the first run; refuse to resume `manifest` with other settings."""
    path = manifest.with_name(f"{manifest.stem}.settings.json")
    captioner = None if captioner_dir is None else str(Path(captioner_dir).resolve())
    settings = {"captioner": captioner, "detailed": detailed, "beams": beams}
    if manifest.exists() and manifest.stat().st_size > 0:
        old = json.loads(path.read_text()) if path.exists() else settings  # an older manifest: unknown
        changed = ", ".join(f"{k}: {old.get(k)} -> {v}" for k, v in settings.items() if old.get(k) != v)
        if changed:
            raise DataError(f"{manifest} was captioned with other settings ({changed}); resume with the "
                            "same settings or write another manifest")  # fmt: skip
        return
    atomic_write_text(path, json.dumps(settings, indent=1))


def _done(manifest: Path) -> set[str]:
    """Absolute paths already captioned in `manifest` (a torn last line from a crash is dropped)."""
    if not manifest.exists():
        return set()
    lines = manifest.read_text().splitlines()
    done, good = set(), []
    for n, line in enumerate(lines, start=1):
        try:
            file = json.loads(line)["file"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            if n == len(lines):  # an interrupted write: drop it and caption that file again
                break
            raise DataError(f"{manifest}:{n}: not a manifest line ({e})") from e
        done.add(str((manifest.parent / file).resolve()))
        good.append(line)
    if len(good) != len(lines):
        manifest.write_text("".join(g + "\n" for g in good))
    return done
