"""Video I/O: read and write clips as uint8 `(T, H, W, 3)`, convert to and from model tensors.

Formats
- read: .mp4 .m4v .mov .mkv .avi .webm (PyAV); .gif and .webp, animated or still (Pillow, because PyAV
  cannot read animated WebP); .png .jpg .jpeg as one-frame videos; a folder of .png/.jpg frames, sorted
  by name and taken to run at `DEFAULT_FPS`.
- write: .mp4 (H.264, yuv420p), .webm (VP9), .gif and .webp (animated, loop forever), .png (one frame),
  and a folder of `frame_00000.png`, ... for a path with no suffix or ending in "/".

H.264 in yuv420p needs even sizes: an odd height or width is padded by one row or column that repeats
the last one, so such a clip reads back one pixel taller or wider. VP9 stores odd sizes as they are.

Every write is atomic: the file (or folder) is written under a temporary name next to the target and
renamed into place, so a reader never sees half a file and a failed write leaves the old target intact.

PyAV is imported inside the functions that need it: machines without it can still use the rest.
"""

from __future__ import annotations

import math
import os
import re
import secrets
import shutil
import tempfile
import warnings
from collections.abc import Iterable, Iterator
from contextlib import closing, contextmanager
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont, ImageSequence

from tessera.errors import FileError as VideoError

DEFAULT_FPS = 16.0  # frame rate assumed for frame folders, stills and animations without timing
PYAV_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".avi", ".webm")
ANIMATION_SUFFIXES = (".gif", ".webp")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
WRITE_SUFFIXES = (".mp4", ".webm", ".gif", ".webp", ".png")
_EPS = 1e-6  # seconds; absorbs rounding in container timestamps

Frames = torch.Tensor | np.ndarray


# ----------------------------------------------------------------------------------------------------
# Reading


def read_video(
    path: str | os.PathLike,
    frames: int | None = None,
    fps: float | None = None,
    stride: int | None = None,
    start: float = 0.0,
) -> torch.Tensor:
    """Read a clip as uint8 `(T, H, W, 3)`.

    `start` skips the first seconds; `stride` keeps every k-th frame from there; `fps` instead resamples
    to that rate by taking, for each output time `start + i / fps`, the source frame nearest in time
    (frames repeat when upsampling); `frames` caps the count. Bad arguments raise ValueError; a file that
    is missing, empty, corrupt or holds no frames raises VideoError.
    """
    _check_read_args(frames, fps, stride, start)
    path = Path(path)
    with closing(_timed_frames(path, start)) as items:
        if fps is None:
            out = _take_stride(items, stride or 1, start, frames)
        else:
            out = _take_nearest(items, fps, start, frames)
    if not out:
        raise VideoError(path, f"no frames at or after start={start:g} s (the clip is shorter)")
    return torch.from_numpy(np.stack(out))


def _check_read_args(frames: int | None, fps: float | None, stride: int | None, start: float) -> None:
    """Reject argument combinations before touching the file."""
    if fps is not None and stride is not None:
        raise ValueError(f"read_video: give fps or stride, not both (got fps={fps}, stride={stride})")
    if frames is not None and (not isinstance(frames, int) or frames < 1):
        raise ValueError(f"read_video: frames must be a positive int or None, got {frames!r}")
    if stride is not None and (not isinstance(stride, int) or stride < 1):
        raise ValueError(f"read_video: stride must be a positive int or None, got {stride!r}")
    if fps is not None and not (fps > 0 and math.isfinite(fps)):
        raise ValueError(f"read_video: fps must be a positive number or None, got {fps!r}")
    if not (start >= 0 and math.isfinite(start)):
        raise ValueError(f"read_video: start must be >= 0 seconds, got {start!r}")


def _take_stride(
    items: Iterable[tuple[float, np.ndarray]], stride: int, start: float, cap: int | None
) -> list[np.ndarray]:
    """Every `stride`-th frame at or after `start`, at most `cap` of them."""
    out: list[np.ndarray] = []
    kept = (x for t, x in items if t >= start - _EPS)
    for i, x in enumerate(kept):
        if i % stride == 0:
            out.append(x)
            if cap is not None and len(out) >= cap:
                break  # stop before decoding another frame
    return out


def _take_nearest(
    items: Iterable[tuple[float, np.ndarray]], fps: float, start: float, cap: int | None
) -> list[np.ndarray]:
    """For output times `start + k / fps`, the source frame nearest in time (ties go to the earlier).

    The clip is taken to last until its last frame time plus one frame interval, so resampling 16
    frames at 16 fps to 32 fps gives 32 frames.
    """
    out: list[np.ndarray] = []
    prev: tuple[float, np.ndarray] | None = None
    interval = 0.0  # spacing of the last two source frames, to know where the clip ends

    def full() -> bool:
        return cap is not None and len(out) >= cap

    for t, x in items:
        if t < start - _EPS:
            continue
        while not full() and start + len(out) / fps <= t + _EPS:
            target = start + len(out) / fps
            use_prev = prev is not None and target - prev[0] <= t - target + _EPS
            out.append(prev[1] if use_prev else x)
        if full():
            break
        if prev is not None:
            interval = t - prev[0]
        prev = (t, x)
    # Output times after the last frame but before the clip ends show the last frame.
    while prev is not None and not full() and start + len(out) / fps < prev[0] + interval - _EPS:
        out.append(prev[1])
    return out


def _timed_frames(path: Path, start: float = 0.0) -> Iterator[tuple[float, np.ndarray]]:
    """(seconds since the first frame, uint8 (H, W, 3)) for each frame, after checking the path.

    `start` is a hint: backends that can seek may skip frames before it.
    """
    kind = _source_kind(path)
    if kind == "folder":
        return _folder_frames(path)
    if kind == "pyav":
        return _pyav_frames(path, start)
    return _pillow_frames(path)


def _source_kind(path: Path) -> str:
    """'folder', 'pyav' or 'pillow', or a VideoError for a missing, empty or unsupported path."""
    if path.is_dir():
        return "folder"
    if not path.exists():
        raise VideoError(path, "no such file or folder")
    suffix = path.suffix.lower()
    if suffix not in PYAV_SUFFIXES + ANIMATION_SUFFIXES + IMAGE_SUFFIXES:
        allowed = " ".join(PYAV_SUFFIXES + ANIMATION_SUFFIXES + IMAGE_SUFFIXES)
        raise VideoError(path, f"unsupported suffix {suffix or '(none)'!r}; readable: {allowed} or a folder")
    if path.stat().st_size == 0:
        raise VideoError(path, "file is empty (0 bytes)")
    return "pyav" if suffix in PYAV_SUFFIXES else "pillow"


def _folder_frames(path: Path) -> Iterator[tuple[float, np.ndarray]]:
    """Frames of a folder of images, sorted by file name, at DEFAULT_FPS."""
    files = _frame_files(path)
    size = None
    for i, file in enumerate(files):
        x = _read_still(file)
        if size is None:
            size = x.shape
        elif x.shape != size:
            raise VideoError(file, f"frame size {x.shape[1]}x{x.shape[0]} differs from {size[1]}x{size[0]}")
        yield i / DEFAULT_FPS, x


def _frame_files(path: Path) -> list[Path]:
    """Image files of a frame folder, sorted by name; VideoError when there are none."""
    files = sorted(f for f in path.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
    if not files:
        raise VideoError(path, f"folder has no frames (looked for {' '.join(IMAGE_SUFFIXES)} files)")
    return files


def _read_still(file: Path) -> np.ndarray:
    """One image file as uint8 (H, W, 3)."""
    if file.stat().st_size == 0:
        raise VideoError(file, "file is empty (0 bytes)")
    try:
        with Image.open(file) as im:
            return np.array(im.convert("RGB"))
    except (OSError, SyntaxError, EOFError) as e:
        raise VideoError(file, f"not a readable image ({e})") from e


def _pillow_frames(path: Path) -> Iterator[tuple[float, np.ndarray]]:
    """Frames of a gif/webp/png/jpg through Pillow; time from each frame's duration in ms."""
    try:
        with Image.open(path) as im:
            t = 0.0
            for frame in ImageSequence.Iterator(im):
                # Frames without timing (and 0 ms gif frames, which players stretch) get DEFAULT_FPS.
                duration = frame.info.get("duration") or 1000.0 / DEFAULT_FPS
                yield t, np.array(frame.convert("RGB"))
                t += duration / 1000.0
    except (OSError, SyntaxError, EOFError, ValueError) as e:
        if isinstance(e, VideoError):
            raise
        raise VideoError(path, f"not a readable image or animation ({e})") from e


def _pyav_frames(path: Path, start: float) -> Iterator[tuple[float, np.ndarray]]:
    """Decoded frames of a container file through PyAV, seeking close to `start` first."""
    # PyAV (FFmpeg) loads only when a video file is read or written
    import av

    try:
        with av.open(str(path)) as container:
            stream = _video_stream(container, path)
            stream.thread_type = "AUTO"
            count, declared = 0, stream.frames
            for t, x in _decode_from(container, stream, start):
                count += 1
                yield t, x
            if count == 0:
                raise VideoError(path, "the video stream holds no decodable frames")
            if start == 0 and declared and count < declared:  # read to the end: a short file
                warnings.warn(
                    f"{path}: its header says {declared} frames but only {count} decode (truncated?); "
                    f"using those {count}",
                    stacklevel=2,
                )
    except av.FFmpegError as e:
        raise VideoError(path, _ffmpeg_problem(e)) from e


def _ffmpeg_problem(e: Exception) -> str:
    """A short reason for a PyAV error, without errno numbers and the repeated file name."""
    # PyAV (FFmpeg) loads only when a video file is read or written
    import av

    if isinstance(e, av.error.EOFError):
        return "ends before any video data (truncated, or a container with zero frames)"
    return f"not a readable video ({getattr(e, 'strerror', None) or e})"


def _video_stream(container, path: Path):
    """The first video stream of an open PyAV container, or a VideoError naming what is there."""
    if not container.streams:
        raise VideoError(path, "holds no streams (an empty container, or one with zero frames)")
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams})
        raise VideoError(path, f"no video stream (streams: {', '.join(kinds)})")
    return container.streams.video[0]


def _decode_from(container, stream, start: float) -> Iterator[tuple[float, np.ndarray]]:
    """(time since stream start, rgb frame); seeks to the keyframe before `start` when that is safe."""
    tb = stream.time_base
    t0 = float(stream.start_time * tb) if stream.start_time is not None and tb else 0.0
    rate = float(stream.average_rate or stream.guessed_rate or DEFAULT_FPS)
    if start > 0 and tb:
        container.seek(int((t0 + start) / tb), stream=stream, backward=True)
    for i, frame in enumerate(container.decode(stream)):
        t = float(frame.time) - t0 if frame.time is not None else i / rate
        if i == 0 and start > 0 and (frame.time is None or t > start + _EPS):
            # The seek overshot (a file without a usable index) or left no timestamps to count
            # from: decode again from the beginning.
            container.seek(stream.start_time or 0, stream=stream, backward=True)
            yield from _decode_all(container, stream, t0, rate)
            return
        yield t, frame.to_ndarray(format="rgb24")


def _decode_all(container, stream, t0: float, rate: float) -> Iterator[tuple[float, np.ndarray]]:
    """Every frame from the container's current position, with times relative to `t0`."""
    for i, frame in enumerate(container.decode(stream)):
        t = float(frame.time) - t0 if frame.time is not None else i / rate
        yield t, frame.to_ndarray(format="rgb24")


def probe(path: str | os.PathLike) -> dict:
    """Facts about a clip without decoding it all: `frames, fps, width, height, duration, codec`.

    `duration` is in seconds. A file that cannot be opened, or whose first frame does not decode,
    raises VideoError.
    """
    path = Path(path)
    kind = _source_kind(path)
    if kind == "folder":
        return _probe_folder(path)
    if kind == "pyav":
        return _probe_pyav(path)
    return _probe_pillow(path)


def _probe_folder(path: Path) -> dict:
    """Probe a frame folder: count its images and open the first one."""
    files = _frame_files(path)
    h, w, _ = _read_still(files[0]).shape
    codec = "jpeg" if files[0].suffix.lower() in (".jpg", ".jpeg") else "png"
    n = len(files)
    return dict(frames=n, fps=DEFAULT_FPS, width=w, height=h, duration=n / DEFAULT_FPS, codec=codec)


def _probe_pillow(path: Path) -> dict:
    """Probe a gif/webp/png/jpg: frame count and summed frame durations."""
    try:
        with Image.open(path) as im:
            w, h = im.size
            codec = (im.format or path.suffix.lstrip(".")).lower()
            durations = [f.info.get("duration") or 1000.0 / DEFAULT_FPS for f in ImageSequence.Iterator(im)]
    except (OSError, SyntaxError, EOFError) as e:
        raise VideoError(path, f"not a readable image or animation ({e})") from e
    n = len(durations)
    duration = sum(durations) / 1000.0
    return dict(frames=n, fps=n / duration, width=w, height=h, duration=duration, codec=codec)


def _probe_pyav(path: Path) -> dict:
    """Probe a container: header facts, a packet count when the header has none, one decoded frame."""
    # PyAV (FFmpeg) loads only when a video file is read or written
    import av

    try:
        with av.open(str(path)) as container:
            stream = _video_stream(container, path)
            fps = float(stream.average_rate or stream.guessed_rate or DEFAULT_FPS)
            n = stream.frames or sum(1 for p in container.demux(stream) if p.size > 0)
            if n == 0:
                raise VideoError(path, "the video stream holds no frames")
            duration = _pyav_duration(container, stream, n / fps)
            codec = stream.codec_context.name
            w, h = stream.codec_context.width, stream.codec_context.height
        with closing(_pyav_frames(path, 0.0)) as items:
            _, x = next(items)  # the first frame must decode; VideoError otherwise
        return dict(
            frames=n, fps=fps, width=w or x.shape[1], height=h or x.shape[0], duration=duration, codec=codec
        )
    except av.FFmpegError as e:
        raise VideoError(path, _ffmpeg_problem(e)) from e


def _pyav_duration(container, stream, fallback: float) -> float:
    """Stream duration in seconds from the header (stream, then container), else `fallback`."""
    if stream.duration is not None and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000  # container durations are in microseconds
    return fallback


# ----------------------------------------------------------------------------------------------------
# Writing


def write_video(
    path: str | os.PathLike, frames: Frames, fps: float = DEFAULT_FPS, quality: int | None = None
) -> Path:
    """Write uint8 `(T, H, W, 3)` frames (torch or numpy) to `path`, atomically; returns the path.

    The format follows the suffix: .mp4 (H.264 yuv420p; odd sizes padded to even), .webm (VP9), .gif,
    .webp, .png (exactly one frame); no suffix, a trailing "/" or an existing folder writes a folder of
    `frame_00000.png`... (replacing an old folder only if it holds nothing else: `check_output`).
    `quality` in 1..100 (higher is better) sets the mp4/webm CRF and makes WebP lossy; None means
    near-transparent video (H.264 CRF 18, VP9 CRF 24) and lossless WebP. GIF and PNG ignore it.
    """
    folder = str(path).endswith(("/", os.sep)) or Path(path).is_dir() or Path(path).suffix == ""
    path = Path(path)
    x = _as_uint8_frames(frames)
    if not (fps > 0 and math.isfinite(fps)):
        raise ValueError(f"write_video: fps must be a positive number, got {fps!r}")
    if quality is not None and not (isinstance(quality, int) and 1 <= quality <= 100):
        raise ValueError(f"write_video: quality must be an int in 1..100 or None, got {quality!r}")
    if folder:
        return _write_folder(path, x)
    suffix = path.suffix.lower()
    if suffix not in WRITE_SUFFIXES:
        allowed = " ".join(WRITE_SUFFIXES)
        raise VideoError(path, f"cannot write suffix {suffix!r}; allowed: {allowed}, or a folder (no suffix)")
    if suffix == ".png" and len(x) != 1:
        raise VideoError(path, f"a .png holds one frame, got {len(x)}; write to a folder (no suffix) instead")
    with atomic_file(path) as tmp:
        if suffix in (".mp4", ".webm"):
            _write_pyav(tmp, x, fps, quality, suffix)
        elif suffix in (".gif", ".webp"):
            _write_animation(tmp, x, fps, quality, suffix)
        else:
            Image.fromarray(x[0]).save(tmp, format="PNG")
    return path


def _as_uint8_frames(frames: Frames) -> np.ndarray:
    """Validate frames as uint8 (T, H, W, 3) and return a contiguous numpy array."""
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().cpu().numpy()
    if not isinstance(frames, np.ndarray):
        raise ValueError(f"frames must be a torch.Tensor or numpy array, got {type(frames).__name__}")
    if frames.dtype != np.uint8:
        raise ValueError(
            f"frames must be uint8 (T, H, W, 3), got dtype {frames.dtype}; use to_uint8() for floats"
        )
    if frames.ndim != 4 or frames.shape[-1] != 3 or min(frames.shape) == 0:
        raise ValueError(f"frames must have shape (T, H, W, 3) with T, H, W >= 1, got {tuple(frames.shape)}")
    return np.ascontiguousarray(frames)


def _temp_name(path: Path, suffix: str) -> Path:
    """An unused hidden name next to `path`. Not mkstemp: its 0600 mode would survive the rename,
    while files created by the writers get the usual umask permissions."""
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}{suffix}"
        if not tmp.exists():
            return tmp


@contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """Yield a temporary path next to `path` (with its suffix); rename it onto `path` only if the block
    succeeds. Every file tessera writes outside a model or run folder goes through it."""
    if path.is_dir():
        raise VideoError(path, "is a folder; give a file name with a suffix")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(path, f".tmp{path.suffix}")  # keeps the suffix: encoders pick formats by it
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as e:  # a full disk says nothing of the file: name the one that was being written
        if e.filename is None or str(e.filename) == str(tmp):
            raise OSError(e.errno, e.strerror or str(e), str(path)) from e
        raise
    finally:
        tmp.unlink(missing_ok=True)


def _write_pyav(tmp: Path, x: np.ndarray, fps: float, quality: int | None, suffix: str) -> None:
    """Encode H.264 (mp4) or VP9 (webm) in yuv420p."""
    # PyAV (FFmpeg) loads only when a video file is read or written
    import av

    if suffix == ".mp4":
        x = _pad_even(x)
        codec, crf = "libx264", 18 if quality is None else round((100 - quality) * 51 / 99)
        codec_options = {"crf": str(crf), "preset": "medium"} | _x264_cpu()
    else:
        codec, crf = "libvpx-vp9", 24 if quality is None else round((100 - quality) * 63 / 99)
        # b=0 makes CRF the only rate control; good/cpu-used 4 is a common speed-quality balance.
        codec_options = {"crf": str(crf), "b": "0", "deadline": "good", "cpu-used": "4", "row-mt": "1"}
    rate = Fraction(fps).limit_denominator(1001)
    # faststart puts the index before the data, so browsers can start playing before the download ends.
    options = {"movflags": "+faststart"} if suffix == ".mp4" else {}
    with av.open(str(tmp), mode="w", format=suffix.lstrip("."), container_options=options) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.height, stream.width = x.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.options = codec_options
        for i, frame in enumerate(x):
            vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
            vf.pts = i  # in units of 1 / rate
            container.mux(stream.encode(vf))
        container.mux(stream.encode())  # flush the encoder


def _x264_cpu() -> dict[str, str]:
    """x264's instruction sets: at most AVX2 on an x86 CPU that has it. Its AVX-512 code encoded the same
    frames to other bytes from one process to the next (PyAV 17 and 18 on an AMD EPYC with AVX-512,
    2026-12-07), and the same seed must write the same bytes; elsewhere x264 chooses."""
    x86 = torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512")
    return {"x264-params": "asm=AVX2"} if x86 else {}


def _pad_even(x: np.ndarray) -> np.ndarray:
    """Pad (T, H, W, 3) to even H and W by repeating the last row / column (yuv420p needs even sizes)."""
    _, h, w, _ = x.shape
    if h % 2 == 0 and w % 2 == 0:
        return x
    return np.pad(x, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")


def _write_animation(tmp: Path, x: np.ndarray, fps: float, quality: int | None, suffix: str) -> None:
    """Animated GIF or WebP through Pillow, looping forever."""
    images = [Image.fromarray(frame) for frame in x]
    # GIF stores centiseconds and WebP milliseconds: round the frame *times*, not each duration, so
    # the clip keeps its length (16 fps in a GIF alternates 60 and 70 ms).
    tick = 10 if suffix == ".gif" else 1
    ticks = np.round(np.arange(len(x) + 1) * 1000 / fps / tick)
    durations = [max(int(d), 1) * tick for d in np.diff(ticks)]
    kw = dict(save_all=True, append_images=images[1:], duration=durations, loop=0)
    if suffix == ".gif":
        images[0].save(tmp, format="GIF", optimize=False, **kw)
    elif quality is None:
        images[0].save(tmp, format="WEBP", lossless=True, quality=50, method=4, **kw)
    else:
        images[0].save(tmp, format="WEBP", lossless=False, quality=quality, method=4, **kw)


def _write_folder(path: Path, x: np.ndarray) -> Path:
    """Write `frame_00000.png`... into a temporary folder, then swap it in for `path` (only a folder
    of frames tessera wrote, or an empty one, is ever replaced)."""
    if path.exists() and not path.is_dir():
        raise VideoError(path, "exists and is not a folder")
    _check_frame_folder(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(path, ".tmp")
    tmp.mkdir()
    try:
        for i, frame in enumerate(x):
            Image.fromarray(frame).save(tmp / f"frame_{i:05d}.png", format="PNG", compress_level=3)
        _swap_folder(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


FRAME_NAME = re.compile(r"frame_\d{5}\.png")


def _check_frame_folder(path: Path) -> None:
    """Refuse to replace a folder that holds anything but the frames tessera writes (the user's files
    would be deleted), and the working folder or one above it (it cannot be swapped out)."""
    if not path.exists():
        return
    here = Path.cwd().resolve()
    if path.resolve() == here or path.resolve() in here.parents:
        raise VideoError(path, "is the working folder or above it; give a new folder name, e.g. -o frames/")
    others = sorted(p.name for p in path.iterdir() if not FRAME_NAME.fullmatch(p.name))
    if others:
        shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
        raise VideoError(
            path, f"folder holds other files ({shown}), which writing frames would delete; give a new folder"
        )


def check_output(path: str | os.PathLike, frames: int | None = None, fps: float | None = None,
                 image: bool = False) -> Path:  # fmt: skip
    """Refuse an output path before any work: an unknown suffix, a multi-frame .png, a folder that
    holds other files, a parent that cannot be made or written, a non-finite or non-positive fps.
    `frames` is the clip length when known (None: more than one); `image` checks `save_image`'s
    suffixes. Returns the path; creates nothing that stays."""
    raw, path = str(path), Path(path)
    if fps is not None and not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"--fps must be a positive finite number; got {fps:g}")
    is_folder = not image and (raw.endswith(("/", os.sep)) or path.is_dir() or path.suffix == "")
    if is_folder:
        _check_frame_folder(path)
        parent = path
    else:
        suffixes = (".png", ".jpg", ".jpeg", ".webp") if image else WRITE_SUFFIXES
        suffix = path.suffix.lower()
        if path.is_dir():
            raise VideoError(path, "is a folder; give a file name with a suffix")
        if suffix not in suffixes:
            raise VideoError(path, f"cannot write suffix {suffix!r}; allowed: {' '.join(suffixes)}"
                             + ("" if image else ", or a folder (no suffix)"))  # fmt: skip
        if not image and suffix == ".png" and (frames is None or frames != 1):
            n = "more than one" if frames is None else str(frames)
            raise VideoError(
                path, f"a .png holds one frame but this writes {n}; use .mp4 or a folder (no suffix)"
            )
        parent = path.parent
    check_writable(path, parent)
    return path


def check_writable(path: Path, folder: Path) -> None:
    """`folder` exists (or its nearest existing ancestor is a folder) and a file can be created in it:
    tried for real, since permission bits do not tell (root, read-only mounts, full quotas)."""
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise VideoError(path, f"{probe} is not a folder, so the output cannot be made there")
    try:
        fd, name = tempfile.mkstemp(prefix=".tessera-probe-", dir=probe)
    except OSError as e:
        raise VideoError(path, f"cannot write in {probe} ({e.strerror or e})") from None
    os.close(fd)
    os.unlink(name)


def _swap_folder(new: Path, path: Path) -> None:
    """Rename `new` onto `path`; an existing folder is moved aside first and deleted after."""
    if not path.exists():
        os.replace(new, path)
        return
    old = _temp_name(path, ".old")
    os.replace(path, old)
    try:
        os.replace(new, path)
    except OSError:
        os.replace(old, path)  # put the old folder back
        raise
    shutil.rmtree(old, ignore_errors=True)


def save_image(path: str | os.PathLike, image: Image.Image | Frames) -> Path:
    """Save a PIL image or a uint8 (H, W, 3) array atomically; format from the suffix (.png .jpg .webp)."""
    path = Path(path)
    formats = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}
    if path.suffix.lower() not in formats:
        raise VideoError(
            path, f"cannot save an image as {path.suffix or '(no suffix)'!r}; allowed: {' '.join(formats)}"
        )
    if not isinstance(image, Image.Image):
        image = Image.fromarray(_as_uint8_frames(image[None])[0])  # (H, W, 3) seen as a one-frame clip
    with atomic_file(path) as tmp:
        image.save(tmp, format=formats[path.suffix.lower()])
    return path


# ----------------------------------------------------------------------------------------------------
# Tensors


def to_tensor(frames: Frames) -> torch.Tensor:
    """uint8 `(T, H, W, 3)` -> float `(3, T, H, W)` in [-1, 1] (the model's layout, without batch)."""
    if isinstance(frames, np.ndarray):
        frames = torch.from_numpy(np.ascontiguousarray(frames))
    if frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"to_tensor expects uint8 (T, H, W, 3), got {frames.dtype} {tuple(frames.shape)}")
    return frames.permute(3, 0, 1, 2).float() / 127.5 - 1.0


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Float `(3, T, H, W)` or `(1, 3, T, H, W)` in [-1, 1] -> uint8 `(T, H, W, 3)`, clamped and rounded."""
    if x.ndim == 5 and x.shape[0] == 1:
        x = x[0]
    if x.ndim != 4 or x.shape[0] != 3 or not x.is_floating_point():
        raise ValueError(
            f"to_uint8 expects float (3, T, H, W) or (1, 3, T, H, W), got {x.dtype} {tuple(x.shape)}"
        )
    x = ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round()
    return x.to(torch.uint8).permute(1, 2, 3, 0).cpu().contiguous()


# ----------------------------------------------------------------------------------------------------
# Contact sheets


def contact_sheet(
    frames: Frames, columns: int = 8, title: str | None = None, max_frames: int = 16
) -> Image.Image:
    """A grid of up to `max_frames` evenly spaced frames (first and last included), with an optional
    caption wrapped to the sheet's width above it."""
    x = _as_uint8_frames(frames)
    if columns < 1 or max_frames < 1:
        raise ValueError(f"contact_sheet: columns and max_frames must be >= 1, got {columns}, {max_frames}")
    t, h, w, _ = x.shape
    picks = np.unique(np.round(np.linspace(0, t - 1, min(t, max_frames))).astype(int))
    cols = min(columns, len(picks))
    rows = math.ceil(len(picks) / cols)
    gap = 2  # pixels between tiles and around the border
    width = cols * w + (cols + 1) * gap
    grid = Image.new("RGB", (width, rows * h + (rows + 1) * gap), (24, 24, 24))
    for k, i in enumerate(picks):
        r, c = divmod(k, cols)
        grid.paste(Image.fromarray(x[i]), (gap + c * (w + gap), gap + r * (h + gap)))
    if not title:
        return grid
    caption = _caption_block(title, width)
    sheet = Image.new("RGB", (width, caption.height + grid.height), (24, 24, 24))
    sheet.paste(caption, (0, 0))
    sheet.paste(grid, (0, caption.height))
    return sheet


def _caption_block(text: str, width: int) -> Image.Image:
    """Text in Pillow's default font, wrapped to `width` pixels, light on dark."""
    font = ImageFont.load_default()
    pad = 4
    lines = _wrap(text, font, width - 2 * pad)
    left, top, right, bottom = font.getbbox("Ag")
    line_h = bottom + 2  # bbox bottom measured from the text origin; 2 px leading
    block = Image.new("RGB", (width, 2 * pad + line_h * len(lines)), (24, 24, 24))
    draw = ImageDraw.Draw(block)
    for i, line in enumerate(lines):
        draw.text((pad, pad + i * line_h), line, fill=(235, 235, 235), font=font)
    return block


def _wrap(text: str, font, width: int) -> list[str]:
    """Greedy word wrap by measured pixel width; a word wider than a line is split by characters."""
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        line = ""
        for word in paragraph.split():
            candidate = f"{line} {word}" if line else word
            if font.getlength(candidate) <= width:
                line = candidate
                continue
            if line:
                lines.append(line)
            line = ""
            for ch in word:  # the word starts a fresh line, split wherever it overflows
                if line and font.getlength(line + ch) > width:
                    lines.append(line)
                    line = ""
                line += ch
        lines.append(line)
    return lines
