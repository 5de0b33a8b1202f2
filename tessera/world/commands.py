"""What `tessera world render` and `tessera world show` do, as plain functions.

Clip i of a render is the scene of seed `seed + i`, so `show --seed S` draws the clip that `render`
wrote from seed S. Each clip is `clip_NNNNNN.mp4` with `clip_NNNNNN.json` (captions, per-frame boxes,
visibility, 3D state, camera, events) and `clip_NNNNNN.npz` (ids and depth maps). Files are written to
a temporary name and renamed, the video last, so an interrupted render leaves no half-written clip and
a rerun renders only what is missing (removing a killed run's temp files), to the same bytes as a run
never stopped; `captions.jsonl` is rebuilt at the end.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from tessera.video import atomic_file, check_writable, contact_sheet, write_video
from tessera.world.captions import captions
from tessera.world.render import _check_size, render
from tessera.world.sampler import SPLITS, WorldConfig, WorldSampler
from tessera.world.truth import clip_arrays, clip_truth


def _check_common(frames: int, size: tuple[int, int], fps: float, split: str) -> tuple[int, int]:
    if int(frames) < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    if not (math.isfinite(float(fps)) and float(fps) > 0):
        raise ValueError(f"--fps must be a positive finite number, got {fps}")
    if split not in SPLITS:
        raise ValueError(f"unknown split '{split}'; allowed: {', '.join(SPLITS)}")
    return _check_size(size)


def clip_done(out: Path, name: str) -> bool:
    """All three files of clip `name` are in `out`."""
    return all((out / f"{name}{ext}").is_file() for ext in (".mp4", ".json", ".npz"))


def render_command(
    count: int,
    out: str | os.PathLike,
    seed: int = 0,
    frames: int = 33,
    size: tuple[int, int] = (128, 128),
    fps: float = 16.0,
    split: str = "train",
    device: str = "cpu",
    batch: int | None = None,
) -> Path:
    """Render `count` clips of size (width, height) into folder `out`; returns the folder. Clips that
    are already complete are kept, so an interrupted run can be rerun to finish."""
    size = _check_common(frames, size, fps, split)
    if int(count) < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a folder; give a folder path")
    check_writable(out, out)
    out.mkdir(parents=True, exist_ok=True)
    for stale in [*out.glob(".clip_*.tmp*"), *out.glob(".captions.jsonl.*.tmp*")]:
        stale.unlink()  # temp files of a render that was killed (atomic_file's names)
    sampler = WorldSampler(WorldConfig(frames=int(frames), fps=float(fps)), split)
    scenes = {f"clip_{i:06d}": sampler.sample(seed + i) for i in range(count)}
    todo = [name for name in scenes if not clip_done(out, name)]
    step = batch or (1 if str(device) == "cpu" else 16)
    for start in range(0, len(todo), step):
        names = todo[start : start + step]
        result = render([scenes[n] for n in names], size, device)
        for b, name in enumerate(names):
            scene = scenes[name]
            detailed, short = captions(scene)
            truth = {"file": f"{name}.mp4", "seed": scene.seed, "split": split, "caption": detailed,
                     "short_caption": short} | clip_truth(scene, result, b)  # fmt: skip
            arrays = clip_arrays(result, b)
            with atomic_file(out / f"{name}.npz") as tmp:
                _save_npz(tmp, arrays)
            with atomic_file(out / f"{name}.json") as tmp:
                tmp.write_text(json.dumps(truth))
            write_video(out / f"{name}.mp4", result.frames[b].cpu(), fps=float(fps))
    lines = [
        json.dumps(
            {
                "file": f"{name}.mp4",
                "short_caption": captions(s)[1],
                "caption": captions(s)[0],
                "seed": s.seed,
                "truth": f"{name}.json",
                "arrays": f"{name}.npz",
            }
        )  # fmt: skip
        for name, s in scenes.items()
    ]
    with atomic_file(out / "captions.jsonl") as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return out


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as f:
        np.savez_compressed(f, **arrays)


def show_command(
    seed: int,
    out: str | os.PathLike,
    frames: int = 33,
    size: tuple[int, int] = (256, 256),
    split: str = "train",
    fps: float = 16.0,
) -> Path:
    """Draw a contact sheet (PNG) of the clip of `seed` with its short and detailed caption."""
    size = _check_common(frames, size, fps, split)
    out = Path(out)
    if out.is_dir() or out.suffix.lower() != ".png":
        raise ValueError(f"-o {out}: the contact sheet is a PNG; give a file name such as sheet.png")
    check_writable(out, out.parent)
    scene = WorldSampler(WorldConfig(frames=int(frames), fps=float(fps)), split).sample(seed)
    detailed, short = captions(scene)
    sheet = contact_sheet(render(scene, size).frames[0], columns=8, title=f"{short}\n{detailed}")
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(out) as tmp:
        sheet.save(tmp, format="PNG")
    return out
