"""Atomic file writes: a temp file beside the target, then one rename, so a reader never sees half a
file and a failed write leaves the old one in place. Model folders, tokenizers and reports all use them."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def usual_mode(path: Path) -> None:
    """Give `path` (and, for a folder, everything in it) the permissions a plain `open`/`mkdir` would
    have under the process umask. Temp files and folders are private (0600/0700) and keep that mode
    through the rename, which would leave a saved model unreadable to the other users of a machine."""
    umask = os.umask(0)
    os.umask(umask)
    for p in [path, *(path.rglob("*") if path.is_dir() else [])]:
        p.chmod((0o777 if p.is_dir() else 0o666) & ~umask)


def atomic_write_text(path: Path, text: str) -> None:
    """Write UTF-8 text to `path` through a temp file and one rename (the temp file is removed if the
    write fails)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        usual_mode(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
