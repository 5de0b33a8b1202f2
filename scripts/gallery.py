"""Render one GIF per capability with a model (default: the shipped one): the README's gallery.

    python scripts/gallery.py [--model DIR] [--out docs/gallery] [--steps 25] [--size 128] [--frames 33]

Inputs that a capability needs (an image to animate, clips to extend, connect or edit) are held-out
world renders, so every GIF can be checked against the scene it came from. Prompts are the world's own
detailed captions (what the model was trained on), written beside each GIF in `gallery.md` with the
time each took. Look at every GIF before committing it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from tessera import pipeline
from tessera.eval.capability import half_clip, recolour
from tessera.video import write_video
from tessera.world import WorldConfig, WorldSampler, captions, render

SEEDS = (11, 12, 13, 14)  # held-out scenes used as inputs


def world_clip(seed: int, frames: int, size: int) -> tuple[torch.Tensor, str]:
    """A held-out world clip (T, H, W, 3) uint8 and its detailed caption."""
    scene = WorldSampler(WorldConfig(frames=frames), "heldout").sample(seed)
    return render([scene], (size, size), "cpu").frames[0], captions(scene)[0]


def capabilities(model, size: int, frames: int, sampling: dict) -> dict[str, callable]:
    """name -> a function returning (frames (T, H, W, 3) uint8, prompt)."""
    half = half_clip(frames)
    a, cap_a = world_clip(SEEDS[0], frames, size)
    b, _ = world_clip(SEEDS[1], frames, size)
    c, cap_c = world_clip(SEEDS[2], frames, size)
    d, cap_d = world_clip(SEEDS[3], frames, size)
    edited = recolour(cap_d)  # the source caption with its first colour swapped, as `eval --capabilities`
    kw = dict(height=size, width=size)
    return {
        "text-to-video": lambda: (pipeline.generate(model, cap_a, frames, **kw, **sampling), cap_a),
        "text-to-video-landscape": lambda: (
            pipeline.generate(model, cap_c, frames, size, size * 3 // 2 // 16 * 16, **sampling),
            cap_c,
        ),
        "text-to-image": lambda: (pipeline.image(model, cap_c, 2 * size, 2 * size, **sampling)[None], cap_c),
        "image-to-video": lambda: (pipeline.animate(model, a[:1], cap_a, frames, **sampling), cap_a),
        "extend-forward": lambda: (
            pipeline.extend(model, c[:half], cap_c, frames, "forward", **sampling),
            cap_c,
        ),
        "extend-backward": lambda: (
            pipeline.extend(model, c[-half:], cap_c, frames, "backward", **sampling),
            cap_c,
        ),
        "connect": lambda: (pipeline.connect(model, a[:half], b[:half], cap_a, frames, **sampling), cap_a),
        "loop": lambda: (pipeline.loop(model, cap_c, frames, **kw, **sampling), cap_c),
        "edit": lambda: (pipeline.edit(model, d, edited, 0.6, **sampling), edited),
        "long": lambda: (pipeline.long(model, cap_a, 3 * frames - 2, frames, **kw, **sampling), cap_a),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model folder (default: the shipped model)")
    ap.add_argument("--out", default="docs/gallery", help="folder for the GIFs and gallery.md")
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--size", type=int, default=128, help="side of square clips, a multiple of 16")
    ap.add_argument("--frames", type=int, default=33, help="frames per clip, of the form 1 + 4k (>= 17)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--only", default="", help="comma-separated capability names (default: all)")
    args = ap.parse_args()
    model = pipeline.load(args.model, args.device)
    sampling = dict(steps=args.steps, guidance=5.0, seed=0)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = ["| capability | GIF | prompt | frames | seconds |", "|---|---|---|---|---|"]
    todo = capabilities(model, args.size, args.frames, sampling)
    wanted = [n for n in args.only.split(",") if n] or list(todo)
    unknown = sorted(set(wanted) - set(todo))
    if unknown:
        raise SystemExit(f"unknown capabilities {unknown}; choose from {', '.join(todo)}")
    for name in wanted:
        t0 = time.perf_counter()
        frames, prompt = todo[name]()
        seconds = time.perf_counter() - t0
        write_video(out / f"{name}.gif", frames, fps=12)
        rows.append(f"| {name} | ![{name}]({name}.gif) | {prompt} | {len(frames)} | {seconds:.1f} |")
        print(f"{name}: {tuple(frames.shape)} in {seconds:.1f} s")
    where = args.model or "the shipped model"
    device = next(model.dit.parameters()).device
    command = " ".join(["python scripts/gallery.py", *sys.argv[1:]])
    settings = f"{args.steps} steps, {args.frames} frames, on {device}"
    head = f"# Gallery\n\nMade by `{command}` with {where}, {settings}.\n\n"
    (out / "gallery.md").write_text(head + "\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
