"""The command line, run as a user would: real processes, real files."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tessera.video import read_video


def tessera(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "tessera.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def test_generate_writes_the_requested_video_deterministically(tiny_model_dir, tmp_path):
    common = ["--model", str(tiny_model_dir), "--frames", "9", "--height", "32", "--width", "48"]
    for name in ("a.mp4", "b.mp4"):
        r = tessera("generate", "a red cube slides left", "-o", str(tmp_path / name), *common, "--steps", "3")
        assert r.returncode == 0, r.stderr
    a, b = read_video(tmp_path / "a.mp4"), read_video(tmp_path / "b.mp4")
    assert a.shape == (9, 32, 48, 3) and a.dtype == torch.uint8
    assert torch.equal(a, b)


@pytest.mark.parametrize(
    "flags, named",
    [
        (["--frames", "10"], "--frames"),
        (["--height", "30"], "--height"),
        (["--width", "4096"], "--width"),
        (["--frames", "100001"], "frames at"),
        (["--sampler", "rk9"], "--sampler"),
        (["--guidance-interval", "0.5"], "--guidance-interval must look like LO,HI"),
        (["--guidance-interval", "0.9,0.1"], "--guidance-interval must be LO,HI with 0 <= LO < HI <= 1"),
        (["--model", "/nonexistent"], "model folder not found"),
        (["--no-such-flag"], "No such option: --no-such-flag"),
    ],
)
def test_invalid_requests_exit_nonzero_naming_the_argument(tiny_model_dir, tmp_path, flags, named):
    args = ["generate", "x", "-o", str(tmp_path / "x.mp4"), "--model", str(tiny_model_dir), *flags]
    r = tessera(*args)
    assert r.returncode != 0
    assert named in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "x.mp4").exists()


def test_train_flags_reach_the_config_and_bad_values_are_named(tmp_path):
    run = tmp_path / "run"
    r = tessera("train", "dit", "--out", str(run), "--preset", "tiny", "--schedule", "linear")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "'schedule' = 'linear'" in r.stderr and "cosine or constant" in r.stderr
    r = tessera("train", "vae", "--out", str(run), "--preset", "tiny", "--min-lr-ratio", "2")
    assert r.returncode != 0 and "'min_lr_ratio' = 2.0" in r.stderr and "[0, 1]" in r.stderr
    r = tessera("train", "dit", "--out", str(run), "--preset", "tiny", "--short-caption-prob", "1.5")
    assert r.returncode != 0 and "'short_caption_prob' = 1.5" in r.stderr and "[0, 1]" in r.stderr
    r = tessera("train", "vae", "--out", str(run), "--preset", "tiny", "--seed", "-1")
    assert r.returncode != 0 and "'seed' = -1" in r.stderr and "an integer >= 0" in r.stderr
    assert not run.exists()  # refused before any work


def test_model_init_and_info(tmp_path):
    r = tessera("model", "init", "--preset", "tiny", "--out", str(tmp_path / "m"))
    assert r.returncode == 0, r.stderr
    r = tessera("info", str(tmp_path / "m"))
    assert r.returncode == 0 and "UNTRAINED" in r.stdout and "preset tiny, stored as F32" in r.stdout
    assert "dit " in r.stdout and "M parameters  dim 32, depth 2, 2 heads" in r.stdout
    r = tessera("info", str(Path(__file__).parents[1] / "tessera/assets/model"))  # a summary, not the card
    assert r.returncode == 0 and "preset s-deeper, stored as BF16" in r.stdout
    assert "text_alignment" in r.stdout  # the benchmark's headline table
    assert len(r.stdout.splitlines()) < 45
    r = tessera("model", "init", "--preset", "huge", "--out", str(tmp_path / "m2"))
    assert r.returncode == 2 and "unknown preset 'huge'" in r.stderr
    r = tessera("model", "grow", str(tmp_path / "m"), "--preset", "s-deep", "--out", str(tmp_path / "m3"))
    assert r.returncode == 2 and "in more than the DiT's depth" in r.stderr and "Traceback" not in r.stderr


def test_readme_documents_real_commands_and_flags():
    """Every command line in the README's Commands block is a real command, and every flag it shows is
    one that command takes (the README lost this section once without any test noticing)."""
    import re

    from typer.testing import CliRunner

    from tessera.cli import app

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    sections = [s.split("\n", 1)[0] for s in readme.split("\n## ")[1:]]
    for name in ("The two commands", "Commands", "The world", "Training", "Many GPUs", "The benchmark"):
        assert name in sections, name
    block = readme.split("\n## Commands\n", 1)[1].split("```bash\n", 1)[1].split("\n```", 1)[0]
    lines = block.replace("\\\n", " ").splitlines()
    groups = {"model", "world", "train", "data"}
    checked = 0
    for line in (ln.split("#")[0] for ln in lines if ln.startswith("tessera ")):
        words = line.split()
        command = words[1:3] if words[1] in groups else words[1:2]
        result = CliRunner().invoke(app, [*command, "--help"], terminal_width=200)
        assert result.exit_code == 0, (line, result.output)
        for flag in re.findall(r"(?<![\w-])--[a-z][\w-]*", line):
            assert flag in result.output, (command, flag)
        checked += 1
    assert checked >= 15  # the block has 19 command lines


def test_generate_gives_the_same_bytes_in_two_processes_on_different_thread_counts(tiny_model_dir, tmp_path):
    import os

    files = []
    for threads in ("1", "2"):
        out = tmp_path / f"t{threads}.mp4"
        cmd = [sys.executable, "-m", "tessera.cli", "generate", "a red cube slides left", "-o", str(out)]
        cmd += [
            "--model",
            str(tiny_model_dir),
            "--frames",
            "9",
            "--height",
            "32",
            "--width",
            "32",
            "--steps",
            "2",
        ]
        env = dict(os.environ, OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
        env.pop("MKL_CBWR", None)  # as a user's shell has it: tessera sets it itself
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
        assert r.returncode == 0, r.stderr
        files.append(out.read_bytes())
    assert files[0] == files[1]


CAPABILITIES = ("generate", "image", "animate", "extend", "connect", "loop", "edit", "long")


def test_every_command_that_samples_takes_the_options_of_tessera_options():
    """One options object: each capability command's sampling flags are `tessera.options.SAMPLING`'s
    fields (name, default, help), the same --size/--height/--width, and `eval` the same flags with the
    suite's defaults."""
    import inspect

    from tessera import cli
    from tessera.options import SAMPLING

    for name in (*CAPABILITIES, "eval_"):
        params = inspect.signature(getattr(cli, name)).parameters
        for f in SAMPLING:
            option = params[f.name].annotation.__metadata__[0]
            assert option.help.startswith(f.metadata["help"]), (name, f.name)
            assert params[f.name].default == (None if name == "eval_" else f.default), (name, f.name)
        assert {"size", "height", "width"} <= params.keys(), name
        assert "sampling" not in params and params["height"].default is None is params["width"].default


@pytest.mark.parametrize("name", CAPABILITIES)
def test_every_capability_command_shows_the_same_progress_bar(name, tiny_model_dir, tmp_path):
    """Each command draws the sampler's bar on stderr (steps done of steps), and takes --size."""
    from tessera.video import write_video

    write_video(tmp_path / "v.mp4", torch.zeros(9, 32, 32, 3, dtype=torch.uint8))
    given = {"animate": ["v.mp4"], "extend": ["v.mp4"], "connect": ["v.mp4", "v.mp4"], "edit": ["v.mp4"]}
    frames = {"image": [], "edit": [], "long": ["--frames", "13", "--window", "9"]}.get(
        name, ["--frames", "5"]
    )
    out = tmp_path / ("o.png" if name == "image" else "o.mp4")
    args = [name, *[str(tmp_path / g) for g in given.get(name, [])], "x", "-o", str(out), *frames]
    r = tessera(*args, "--model", str(tiny_model_dir), "--steps", "2", "--size", "32x32", "--no-expand")
    assert r.returncode == 0, r.stderr
    assert "euler: 100%" in r.stderr and "2/2" in r.stderr, r.stderr
    assert read_video(out).shape[1:3] == (32, 32)


def test_a_given_video_is_fitted_to_the_size_asked_for(tiny_model_dir, tmp_path):
    """--size on a command whose output takes the given video's size: the video is fitted (same aspect
    ratio) before anything loads, or refused in one line."""
    from tessera.video import write_video

    write_video(tmp_path / "v.mp4", torch.zeros(9, 32, 48, 3, dtype=torch.uint8))
    base = ["extend", str(tmp_path / "v.mp4"), "x", "--frames", "5", "--steps", "1", "--no-expand"]
    r = tessera(*base, "-o", str(tmp_path / "o.mp4"), "--model", str(tiny_model_dir), "--size", "96x64")
    assert r.returncode == 0, r.stderr
    assert read_video(tmp_path / "o.mp4").shape[1:3] == (64, 96)
    r = tessera(*base, "-o", str(tmp_path / "p.mp4"), "--model", "nowhere", "--size", "64x64")
    assert r.returncode == 2 and "the aspect ratios differ" in r.stderr and not (tmp_path / "p.mp4").exists()


def test_train_flags_are_the_training_configs_fields():
    """`train vae` and `train dit` take one flag per field of their config, read once from the fields,
    and a flag reaches the config."""
    import dataclasses
    import inspect

    import typer.main

    from tessera import cli
    from tessera.train.config import DiTTrainConfig, VAETrainConfig, make_config

    for name, cls in (("train_vae", VAETrainConfig), ("train_dit", DiTTrainConfig)):
        params = inspect.signature(getattr(cli, name)).parameters
        fields = [f.name for f in dataclasses.fields(cls)]
        assert list(params) == ["out", "config", "resume", *fields]
        assert all(params[f].default is None for f in fields)
    command = typer.main.get_command(cli.app).commands["train"].commands["dit"]
    argv = ["--preset", "tiny", "--ema-decay", "0.99", "--train-text", "--grad-clip", "0.5", "--no-compile"]
    flags = command.make_context("dit", argv).params
    cfg = make_config("dit", None, **{k: v for k, v in flags.items() if k not in ("out", "config", "resume")})
    assert (cfg.ema_decay, cfg.freeze_text, cfg.grad_clip, cfg.compile) == (0.99, False, 0.5, False)
    flags = command.make_context("dit", ["--freeze-text", "--checkpointing"]).params
    assert flags["freeze_text"] is True and flags["checkpointing"] is True and flags["lr"] is None
