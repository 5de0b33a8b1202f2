"""What `long_permanence` can reach under the benchmark's judge: per prompt, the scene rendered at `long`'s
length (LONG_TIMES the suite's clip; the world sets its paths relative to a clip's duration, so the scene
plays out stretched over it, but for falls and bounces, which keep their real speed: a video that keeps
every object as its scene does, not a continuation like a model's) and
scored in `long`'s segments as `tessera eval --capabilities` scores a model's long video: read by the
renderer's object ids (a perfect judge: objects leave the view only where the scene makes them), by the
shipped scene parser, and by the parser after the model's VAE round trip (what a DiT that drew the truth
exactly would get); then the model's own `long` video of the caption, as the eval samples it.

    python bench/long_ceiling.py [--model DIR] [--suite quick] [--steps 25] [--device cpu] [--no-sample]
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
from suite_bench import ran, suite_parser

from tessera import pipeline
from tessera.eval.capability import LONG_TIMES, long_permanence
from tessera.eval.corrupt import render_clip
from tessera.eval.parser import load_parser, parse_video
from tessera.eval.prompts import load_prompt_set
from tessera.eval.recon import vae_roundtrip
from tessera.eval.tracks import parse_truth


def readings(model, parser, prompt, device: str, sampling: dict | None) -> dict[str, float]:
    """long_permanence of one prompt's stretched truth under each judge, and of the model's long video
    (when `sampling` is given)."""
    scene = prompt.scene()
    length = 1 + LONG_TIMES * (scene.frames - 1)
    truth = render_clip(dataclasses.replace(scene, frames=length), (128, 128), device)
    segments, _ = pipeline.long_segments(length, scene.frames)
    objects = [(o.shape, o.colour) for o in scene.objects]
    row = {
        "truth, renderer ids": long_permanence(objects, parse_truth(truth.scene, truth.ids), segments),
        "truth, parser": long_permanence(objects, parse_video(parser, truth.frames), segments),
        "VAE round trip, parser": long_permanence(
            objects, parse_video(parser, vae_roundtrip(model.vae, truth.frames)), segments
        ),
    }
    if sampling is not None:
        video = pipeline.long(model, prompt.caption, length, scene.frames, **sampling).numpy()
        row["model's long video, parser"] = long_permanence(objects, parse_video(parser, video), segments)
    return row


def main() -> None:
    ap = suite_parser(__doc__)
    ap.add_argument("--no-sample", action="store_true", help="the ceilings only, no long video sampled")
    args = ap.parse_args()
    model = pipeline.load(args.model, args.device)
    dev = str(pipeline.pick_device(args.device))
    parser = load_parser(None, dev)
    sampling = None if args.no_sample else {"steps": args.steps, "guidance": args.guidance, "seed": args.seed}
    t0, rows = time.time(), []
    for p in load_prompt_set(args.suite)[: args.limit]:
        rows.append(readings(model, parser, p, dev, sampling))
        print(p.id, p.short, " ".join(f"{k}={v:.2f}" for k, v in rows[-1].items()), flush=True)
    print("\n" + ran(args, len(rows), dev, time.time() - t0, f", long at {LONG_TIMES}x the clip"))
    print("| long_permanence of | mean | prompts at 0 | prompts ≥ 0.8 |\n|---|---|---|---|")
    for k in rows[0]:
        v = np.array([r[k] for r in rows])
        print(f"| {k} | {v.mean():.3f} | {(v == 0).sum()} of {len(v)} | {(v >= 0.8).sum()} of {len(v)} |")


if __name__ == "__main__":
    main()
