"""Video I/O: round trips per format, frame selection, clear errors on bad files, atomic writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tessera import video
from tessera.video import VideoError, contact_sheet, probe, read_video, to_tensor, to_uint8, write_video

T, H, W = 17, 32, 48
FORMATS = [".mp4", ".webm", ".gif", ".webp", ""]  # "" is a folder of pngs


def smooth_clip(t: int = T, h: int = H, w: int = W) -> np.ndarray:
    """Gentle colour gradients that drift over time: (t, h, w, 3) uint8."""
    tt = np.linspace(0, 1, t)[:, None, None]
    y = np.linspace(0, 1, h)[None, :, None]
    x = np.linspace(0, 1, w)[None, None, :]
    zero = np.zeros((t, h, w))
    r = 128 + 60 * np.sin(np.pi * (x + tt))
    g = 128 + 60 * np.cos(np.pi * (y - tt))
    b = 128 + 50 * np.sin(np.pi * (x + y) / 2)
    return np.stack([zero + r, zero + g, zero + b], -1).round().astype(np.uint8)


def index_clip(t: int = T) -> np.ndarray:
    """Flat grey frames whose brightness encodes the frame index: frame i has value 10 + 14 i."""
    return np.stack([np.full((H, W, 3), 10 + 14 * i, np.uint8) for i in range(t)])


def indices(frames: torch.Tensor) -> list[int]:
    """Decode the frame index back from brightness (robust to codec error of a few levels)."""
    return [round((f.float().mean().item() - 10) / 14) for f in frames]


def psnr(a, b) -> float:
    err = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)
    return float("inf") if err == 0 else 10 * np.log10(255**2 / err)


@pytest.fixture(scope="module")
def index_files(tmp_path_factory) -> dict[str, Path]:
    """The index clip written once in every format, at 16 fps."""
    root = tmp_path_factory.mktemp("index")
    return {s: write_video(root / f"clip{s}", index_clip(), fps=16) for s in FORMATS}


# ---------------------------------------------------------------------------------------------------
# Round trips


@pytest.mark.parametrize(
    "suffix,min_psnr", [(".mp4", 30), (".webm", 30), (".gif", 25), (".webp", 99), ("", 99)]
)
def test_round_trip_keeps_shape_and_content(tmp_path, suffix, min_psnr):
    clip = smooth_clip()
    path = write_video(tmp_path / f"clip{suffix}", torch.from_numpy(clip), fps=16)
    back = read_video(path)
    assert back.dtype == torch.uint8 and back.shape == (T, H, W, 3)
    assert psnr(back, clip) > min_psnr  # webp (lossless) and png folders are exact: inf
    info = probe(path)
    assert (info["frames"], info["width"], info["height"]) == (T, W, H)
    assert info["fps"] == pytest.approx(16, rel=0.02)
    assert info["duration"] == pytest.approx(T / 16, abs=0.02)


def test_gif_with_few_colours_is_exact(tmp_path):
    clip = index_clip()  # 17 colours fit a palette exactly
    assert torch.equal(read_video(write_video(tmp_path / "a.gif", clip)), torch.from_numpy(clip))


def test_lossy_webp_and_lower_quality_mp4(tmp_path):
    clip = smooth_clip()
    assert psnr(read_video(write_video(tmp_path / "a.webp", clip, quality=90)), clip) > 30
    best = write_video(tmp_path / "best.mp4", clip)
    small = write_video(tmp_path / "small.mp4", clip, quality=10)
    assert small.stat().st_size < best.stat().st_size


def test_odd_size_mp4_is_padded_by_edge_replication(tmp_path):
    clip = smooth_clip(h=31, w=47)
    back = read_video(write_video(tmp_path / "odd.mp4", clip)).numpy()
    assert back.shape == (T, 32, 48, 3)
    assert psnr(back[:, :31, :47], clip) > 30
    # The added row and column copy their neighbours (up to codec error).
    assert np.abs(back[:, 31, :47].astype(int) - clip[:, 30].astype(int)).mean() < 4
    assert np.abs(back[:, :31, 47].astype(int) - clip[:, :, 46].astype(int)).mean() < 4


def test_odd_size_webm_keeps_size(tmp_path):
    clip = smooth_clip(h=31, w=47)
    back = read_video(write_video(tmp_path / "odd.webm", clip))
    assert back.shape == (T, 31, 47, 3) and psnr(back, clip) > 30


def test_single_images_and_stills(tmp_path):
    frame = smooth_clip(t=1)
    png = write_video(tmp_path / "one.png", frame)
    assert torch.equal(read_video(png), torch.from_numpy(frame))
    Image.fromarray(frame[0]).save(tmp_path / "one.jpg", quality=95)
    assert read_video(tmp_path / "one.jpg").shape == (1, H, W, 3)
    assert probe(png)["frames"] == 1
    for suffix in (".gif", ".webp"):
        assert read_video(write_video(tmp_path / f"still{suffix}", frame)).shape == (1, H, W, 3)


def test_folder_frames_are_named_and_sorted(tmp_path):
    out = write_video(str(tmp_path / "frames") + "/", index_clip(5))
    assert sorted(p.name for p in out.iterdir()) == [f"frame_{i:05d}.png" for i in range(5)]
    assert indices(read_video(out)) == [0, 1, 2, 3, 4]


# ---------------------------------------------------------------------------------------------------
# Frame selection: frames, stride, fps, start


@pytest.mark.parametrize("suffix", FORMATS)
def test_selection(index_files, suffix):
    path = index_files[suffix]
    assert indices(read_video(path)) == list(range(T))
    assert indices(read_video(path, frames=5)) == [0, 1, 2, 3, 4]
    assert indices(read_video(path, stride=3)) == [0, 3, 6, 9, 12, 15]
    assert indices(read_video(path, fps=8)) == [0, 2, 4, 6, 8, 10, 12, 14, 16]
    assert indices(read_video(path, fps=4, frames=3)) == [0, 4, 8]
    assert indices(read_video(path, start=0.5)) == list(range(8, T))
    assert indices(read_video(path, start=0.5, stride=2, frames=3)) == [8, 10, 12]
    assert indices(read_video(path, frames=100)) == list(range(T))


def test_fps_resampling_picks_nearest_and_repeats(index_files):
    path = index_files[".mp4"]
    # 16 -> 10 fps: output times 0, 0.1, 0.2 ... nearest source frames at 16 fps.
    assert indices(read_video(path, fps=10)) == [0, 2, 3, 5, 6, 8, 10, 11, 13, 14, 16]
    # 16 -> 48 fps: each source frame three times; the clip still lasts 17 / 16 s.
    up = indices(read_video(path, fps=48))
    assert len(up) == 3 * T and up[:6] == [0, 0, 1, 1, 1, 2] and up[-1] == 16


def test_start_past_the_end_is_a_clear_error(index_files):
    with pytest.raises(VideoError, match="start=5"):
        read_video(index_files[".mp4"], start=5.0)


@pytest.mark.parametrize(
    "kwargs", [dict(fps=8, stride=2), dict(frames=0), dict(stride=0), dict(fps=-1.0), dict(start=-1.0)]
)
def test_bad_read_arguments(index_files, kwargs):
    with pytest.raises(ValueError) as info:
        read_video(index_files[".mp4"], **kwargs)
    assert not isinstance(info.value, VideoError)  # an argument problem, not a file problem


# ---------------------------------------------------------------------------------------------------
# Bad files


def make_bad(tmp_path: Path, kind: str) -> Path:
    rng = np.random.default_rng(0)
    path = tmp_path / {"random": "x.mp4", "empty": "x.mp4", "text": "x.mp4", "missing": "x.mp4"}.get(
        kind, kind
    )
    if kind == "random":
        path.write_bytes(rng.bytes(4096))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("this is a note, not a video\n" * 10)
    elif kind == "folder":
        path.mkdir()
    elif kind in ("x.gif", "x.webp", "x.png"):
        path.write_bytes(rng.bytes(4096))
    elif kind == "x.txt":
        path.write_text("hello")
    return path


@pytest.mark.parametrize(
    "kind,problem",
    [
        ("random", "not a readable video"),
        ("empty", "empty"),
        ("text", "not a readable video"),
        ("missing", "no such file"),
        ("folder", "no frames"),
        ("x.gif", "not a readable image"),
        ("x.webp", "not a readable image"),
        ("x.png", "not a readable image"),
        ("x.txt", "unsupported suffix"),
    ],
)
def test_bad_files_raise_video_error_naming_the_file(tmp_path, kind, problem):
    path = make_bad(tmp_path, kind)
    for fn in (read_video, probe):
        with pytest.raises(VideoError, match=problem) as info:
            fn(path)
        assert str(path) in str(info.value) and info.value.path == path


def test_truncated_mp4_and_zero_frame_containers(tmp_path):
    import av

    data = write_video(tmp_path / "full.mp4", smooth_clip()).read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoError, match="cut.mp4"):
        read_video(tmp_path / "cut.mp4")
    for name, codec in (("zero.mp4", "libx264"), ("zero.mkv", "libx264")):
        with av.open(str(tmp_path / name), "w") as container:
            stream = container.add_stream(codec, rate=16)
            stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
            container.start_encoding()  # header only, no frames
        with pytest.raises(VideoError, match="zero frames"):
            read_video(tmp_path / name)


def test_audio_only_file_names_its_streams(tmp_path):
    import av

    path = tmp_path / "sound.mkv"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        container.mux(stream.encode(frame))
        container.mux(stream.encode())
    with pytest.raises(VideoError, match="no video stream.*audio"):
        probe(path)


def test_folder_with_mixed_sizes(tmp_path):
    Image.new("RGB", (W, H)).save(tmp_path / "a.png")
    Image.new("RGB", (W + 2, H)).save(tmp_path / "b.png")
    with pytest.raises(VideoError, match="differs"):
        read_video(tmp_path)


# ---------------------------------------------------------------------------------------------------
# Writing: validation and atomicity


def test_write_rejects_bad_input(tmp_path):
    clip = smooth_clip(t=2)
    with pytest.raises(VideoError, match=r"\.avi.*allowed: .mp4 .webm .gif .webp .png"):
        write_video(tmp_path / "a.avi", clip)
    with pytest.raises(VideoError, match="folder"):
        write_video(tmp_path / "a.png", clip)  # two frames into one png
    with pytest.raises(ValueError, match="uint8"):
        write_video(tmp_path / "a.mp4", clip.astype(np.float32))
    with pytest.raises(ValueError, match=r"\(T, H, W, 3\)"):
        write_video(tmp_path / "a.mp4", clip[0])
    with pytest.raises(ValueError, match="fps"):
        write_video(tmp_path / "a.mp4", clip, fps=0)
    assert list(tmp_path.iterdir()) == []  # nothing written, no temp files


@pytest.mark.parametrize("suffix", [".mp4", ".gif"])
def test_failed_write_leaves_existing_target_untouched(tmp_path, monkeypatch, suffix):
    target = write_video(tmp_path / f"keep{suffix}", index_clip(3))
    before = target.read_bytes()

    def broken(tmp, *args):
        tmp.write_bytes(b"half a file")
        raise RuntimeError("disk full")

    monkeypatch.setattr(video, "_write_pyav", broken)
    monkeypatch.setattr(video, "_write_animation", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        write_video(target, smooth_clip())
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [target.name]  # temp file removed


def test_overwrite_and_folder_atomicity(tmp_path, monkeypatch):
    path = write_video(tmp_path / "clip.mp4", index_clip(3))
    write_video(path, index_clip(5))  # overwriting replaces the file
    assert indices(read_video(path)) == [0, 1, 2, 3, 4]
    folder = write_video(tmp_path / "frames", index_clip(4))
    write_video(folder, index_clip(2))  # a shorter clip leaves no stale frames behind
    assert len(list(folder.iterdir())) == 2

    def failing_save(self, fp, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        write_video(folder, index_clip(6))
    assert indices(read_video(folder)) == [0, 1]  # old frames intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "frames"]


# ---------------------------------------------------------------------------------------------------
# Tensors and contact sheets


def test_tensor_round_trip_is_exact():
    clip = torch.from_numpy(smooth_clip())
    x = to_tensor(clip)
    assert x.shape == (3, T, H, W) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1
    assert torch.equal(to_uint8(x), clip)
    assert torch.equal(to_uint8(x[None]), clip)  # (1, 3, T, H, W) works too
    assert to_uint8(torch.full((3, 1, 2, 2), 5.0)).eq(255).all()  # clamped
    with pytest.raises(ValueError, match=r"\(3, T, H, W\)"):
        to_uint8(torch.zeros(2, 3, 1, 2, 2))
    with pytest.raises(ValueError, match="uint8"):
        to_tensor(clip.float())


def test_contact_sheet_layout_and_caption():
    clip = index_clip()
    sheet = contact_sheet(clip, columns=4, max_frames=8)
    gap = 2
    assert sheet.size == (4 * W + 5 * gap, 2 * H + 3 * gap)
    tiles = np.asarray(sheet)
    picks = np.round(np.linspace(0, T - 1, 8)).astype(int)  # evenly spaced, first and last included
    for k, i in enumerate(picks):
        r, c = divmod(k, 4)
        top, left = gap + r * (H + gap), gap + c * (W + gap)
        assert (tiles[top : top + H, left : left + W] == clip[i]).all()
    titled = contact_sheet(clip, columns=4, max_frames=8, title="a red ball " * 20 + "x" * 80)
    assert titled.width == sheet.width and titled.height > sheet.height + 40  # several wrapped lines
    caption = np.asarray(titled)[: titled.height - sheet.height]
    assert caption.max() > 200  # text drawn
    assert contact_sheet(clip[:3], columns=8).size == (3 * W + 4 * gap, H + 2 * gap)


def test_save_image(tmp_path):
    frame = smooth_clip(t=1)[0]
    path = video.save_image(tmp_path / "a.png", frame)
    assert (np.asarray(Image.open(path)) == frame).all()
    video.save_image(path, contact_sheet(index_clip(2)))  # PIL image, overwriting atomically
    assert Image.open(path).size == (2 * W + 6, H + 4)
    with pytest.raises(VideoError, match="allowed"):
        video.save_image(tmp_path / "a.bmp", frame)
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]


def test_a_truncated_video_is_read_as_far_as_it_decodes_with_a_warning(tmp_path):
    x = (np.random.default_rng(0).random((33, 64, 64, 3)) * 255).astype(np.uint8)
    data = write_video(tmp_path / "full.mp4", x).read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 4])
    with pytest.warns(UserWarning, match=r"header says 33 frames but only (\d+) decode"):
        n = len(read_video(tmp_path / "cut.mp4"))
    assert 0 < n < 33
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(read_video(tmp_path / "full.mp4")) == 33  # a whole file: no warning
        assert len(read_video(tmp_path / "cut.mp4", frames=2)) == 2  # never read to the cut: none


def test_check_output_refuses_before_any_work_and_never_touches_the_users_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    mine = tmp_path / "thesis"
    (mine / "sub").mkdir(parents=True)
    (mine / "thesis.txt").write_text("years of work")
    (mine / "sub" / "notes.md").write_text("notes")
    clip = index_clip(3)
    for path, frames, words in [
        (mine, 3, "holds other files"),
        (Path("."), 3, "working folder"),
        (Path(".."), 3, "working folder"),
        (tmp_path / "a.png", 3, "a .png holds one frame"),
        (tmp_path / "a.txt", 3, "cannot write suffix '.txt'"),
        (mine / "thesis.txt" / "a.mp4", 3, "is not a folder"),
    ]:
        with pytest.raises(VideoError, match=words):
            video.check_output(path, frames, 16.0)
    with pytest.raises(VideoError, match="holds other files"):
        write_video(mine, clip)  # the writer itself refuses too
    for fps in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="--fps must be a positive finite number"):
            video.check_output(tmp_path / "a.mp4", 3, fps)
    assert (mine / "thesis.txt").read_text() == "years of work" and (mine / "sub" / "notes.md").exists()
    frames = write_video(tmp_path / "frames", clip)
    assert video.check_output(frames, 3, 16.0) == frames  # a folder of tessera's frames may be replaced
    write_video(frames, index_clip(2))
    assert len(list(frames.iterdir())) == 2
    assert video.check_output(tmp_path / "new" / "deeper" / "a.mp4", 3, 16.0)
    assert not (tmp_path / "new").exists() and not list(tmp_path.glob(".tessera-probe-*"))
