"""A data set over a user's own videos and images with captions.

`FolderDataset(path)` accepts
- a folder of videos and images, each caption in a sidecar text file (`clip.mp4` + `clip.txt`), or in
  a `captions.jsonl` / `manifest.jsonl` in the folder, one `{"file": "clip.mp4", "caption": "..."}` per
  line (paths relative to the folder);
- a `manifest.jsonl` file itself (paths relative to its folder).
A file without a caption trains with the empty caption. Items are listed once, in sorted order, with
their size probed lazily; `load(i, shape)` reads an item and fits it to a bucket.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tessera.data.buckets import Shape, resize_crop
from tessera.errors import FileError as DataError
from tessera.video import probe, read_video, to_tensor

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".avi", ".webm", ".gif", ".webp")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
MANIFESTS = ("manifest.jsonl", "captions.jsonl")


@dataclass
class Item:
    """One training file and its caption."""

    path: Path
    caption: str


class FolderDataset:
    """Videos and images with captions; see the module docstring for the accepted layouts."""

    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        if not path.exists():
            raise DataError(f"{path}: data path not found (give a folder, a manifest.jsonl, or 'world')")
        self.root = path if path.is_dir() else path.parent
        if path.is_file():
            self.items = read_manifest(path)
        else:
            manifest = next((path / m for m in MANIFESTS if (path / m).exists()), None)
            self.items = read_manifest(manifest) if manifest else _scan(path)
        if not self.items:
            raise DataError(
                f"{path}: no videos or images found (suffixes {' '.join(VIDEO_SUFFIXES + IMAGE_SUFFIXES)})"
            )
        self._sizes: dict[int, tuple[int, int, int]] = {}

    def __len__(self) -> int:
        return len(self.items)

    def size(self, i: int) -> tuple[int, int, int]:
        """(frames, height, width) of item i (probed once, without decoding the whole file)."""
        if i not in self._sizes:
            info = probe(self.items[i].path)
            self._sizes[i] = (info["frames"], info["height"], info["width"])
        return self._sizes[i]

    def load(self, i: int, shape: Shape) -> dict:
        """Item i fitted to `shape`: {"video": (3, T, H, W) in [-1, 1], "caption", "short_caption"}."""
        item = self.items[i]
        video = resize_crop(to_tensor(read_video(item.path, frames=shape[0])), shape)
        return {"video": video, "caption": item.caption, "short_caption": item.caption}


def _scan(folder: Path) -> list[Item]:
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES + IMAGE_SUFFIXES)
    items = []
    for f in files:
        txt = f.with_suffix(".txt")
        items.append(Item(f, txt.read_text().strip() if txt.exists() else ""))
    return items


def read_manifest(path: Path, must_exist: bool = True) -> list[Item]:
    """The items of a `manifest.jsonl` ({"file": relative path, "caption": text} per line); a listed file
    that is missing is an error unless `must_exist` is False (ingest reports it as unreadable)."""
    items = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            file, caption = entry["file"], entry.get("caption", "")
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise DataError(f'{path}:{n}: expected {{"file": ..., "caption": ...}}, got {line[:80]!r}') from e
        if not isinstance(file, str) or not isinstance(caption, str):
            raise DataError(f"{path}:{n}: 'file' and 'caption' must be strings")
        file_path = path.parent / file
        if must_exist and not file_path.exists():
            raise DataError(f"{path}:{n}: {file_path} not found")
        items.append(Item(file_path, caption))
    return items
