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

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__.splitlines()[0])
model_app = typer.Typer(no_args_is_help=True, help="Make and inspect model folders.")
world_app = typer.Typer(no_args_is_help=True, help="The synthetic world engine.")
app.add_typer(model_app, name="model")
app.add_typer(world_app, name="world")

Opt = typer.Option


def _size(text: str) -> tuple[int, int]:
    """Parse 'WxH' into (width, height)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"--size must look like WIDTHxHEIGHT, e.g. 128x128; got '{text}'") from None
    return w, h


@app.command()
def generate(
    prompt: Annotated[str, typer.Argument(help="What the video shows.")],
    out: Annotated[Path, Opt("-o", "--out", help="Output video (.mp4, .webm, .gif, .webp).")] = Path(
        "out.mp4"
    ),
    model: Annotated[Path | None, Opt(help="Model folder (default: the shipped model).")] = None,
    frames: Annotated[int, Opt(help="Frame count, of the form 1 + 4k.")] = 33,
    height: Annotated[int, Opt(help="Height in pixels, a multiple of 16.")] = 128,
    width: Annotated[int, Opt(help="Width in pixels, a multiple of 16.")] = 128,
    steps: Annotated[int, Opt(help="Sampler steps.")] = 25,
    guidance: Annotated[float, Opt(help="Classifier-free guidance scale (1 = off).")] = 5.0,
    seed: Annotated[int, Opt(help="Random seed; the same seed gives the same video.")] = 0,
    sampler: Annotated[str, Opt(help="euler or heun.")] = "euler",
    fps: Annotated[float, Opt(help="Frames per second of the written file.")] = 16.0,
    device: Annotated[str, Opt(help="cpu, cuda, or auto.")] = "auto",
) -> None:
    """Text-to-video: write a video for PROMPT."""
    from tessera import pipeline, video

    m = pipeline.load(model, device)
    frames_u8 = pipeline.generate(
        m, prompt, frames=frames, height=height, width=width, steps=steps, guidance=guidance,
        seed=seed, sampler=sampler, progress=True,
    )  # fmt: skip
    typer.echo(f"wrote {video.write_video(out, frames_u8, fps=fps)}")


@app.command()
def info(model: Annotated[Path, typer.Argument(help="Model folder.")]) -> None:
    """Print a model folder's card and config."""
    from tessera import pipeline

    typer.echo(pipeline.describe(model))


@model_app.command("init")
def model_init(
    out: Annotated[Path, Opt("--out", help="Folder to write.")],
    preset: Annotated[str, Opt(help="tiny, s, b, l or wan-1.3b.")] = "s",
    seed: Annotated[int, Opt(help="Initialisation seed.")] = 0,
) -> None:
    """Write a randomly initialised (untrained) model folder."""
    from tessera import pipeline

    typer.echo(f"wrote {pipeline.init_model_folder(preset, out, seed=seed)}")


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
    from tessera.world import show_command

    typer.echo(f"wrote {show_command(seed, out, frames=frames, size=_size(size), split=split)}")


def main() -> None:
    """Console entry point: run the app, turning library errors into one-line messages."""
    try:
        app(standalone_mode=False)
    except (ValueError, FileNotFoundError) as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(2)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(130)
    except Exception as e:  # click usage errors: show click's own message
        import click

        if isinstance(e, click.ClickException):
            e.show()
            sys.exit(e.exit_code)
        raise


if __name__ == "__main__":
    main()
