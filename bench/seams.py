"""How much the fades take out of the cuts at `extend`'s join and at a loop's closing, on a suite's
prompts: per prompt, one forward extension of the truth clip's first half (extend_seam with its source
frames returned as given, and faded into the model's rendering of them, as `extend` does by default)
and one loop of its caption, as decoded and with its last F frames faded back to its first
(`pipeline.close_loop`) for each F asked for. Every loop column is scored by loop_closure over the
same closing steps, the longest fade's (a largest step over more steps is larger). The fades are
post-processing, so each prompt samples once per capability and every column sees the same samples.

    python bench/seams.py [--model DIR] [--suite quick] [--fades 0,2,4,8] [--steps 25] [--device cpu]
"""

from __future__ import annotations

import time

import numpy as np
import torch
from suite_bench import ran, suite_parser

from tessera import pipeline
from tessera.eval.capability import change, extend_seam, frame_steps, half_clip, loop_closure
from tessera.eval.corrupt import render_clip
from tessera.eval.prompts import load_prompt_set


def seams(model, caption: str, truth: np.ndarray, fades: list[int], sampling: dict) -> dict[str, float]:
    """extend_seam of the truth clip itself (the ceiling), as given and blended; the extension's own
    median step after the join (how much the model's new frames move, over the truth's mean step); and
    loop_closure for each fade."""
    frames, h, w = truth.shape[:3]
    half = half_clip(frames)
    typical = change(truth)
    source = torch.as_tensor(truth[:half])
    cut, z = pipeline.extend(model, source, caption, frames, blend=False, return_latents=True, **sampling)
    new = pipeline.decode(model, z)  # the extension's own frames: its rendering of the source's
    assert len(cut) == frames, "the default overlap is the whole source"  # so the fade spans all of it
    faded = pipeline.join_clip(source, new, half, "forward", blend=True)  # as `extend` returns it
    row = {
        "extend, the truth clip itself": extend_seam(truth, half, typical, given=truth[:half]),
        "extend as given": extend_seam(cut.numpy(), half, typical, given=truth[:half]),
        "extend blended": extend_seam(faded.numpy(), half, typical, given=truth[:half]),
        "extend, new frames' median step": float(np.median(frame_steps(new[half:].numpy()))) / typical,
    }
    looped = pipeline.loop(model, caption, frames, height=h, width=w, fade=0, **sampling)
    window = max(fades)  # every column is scored over the same closing steps, the longest fade's
    for f in fades:
        row[f"loop fade {f}"] = loop_closure(pipeline.close_loop(looped, f).numpy(), window)
    return row


def main() -> None:
    ap = suite_parser(__doc__)
    ap.add_argument("--fades", default="0,2,4,8", help="loop fades to score, in frames")
    args = ap.parse_args()
    fades = [int(f) for f in args.fades.split(",")]
    model = pipeline.load(args.model, args.device)
    dev = str(pipeline.pick_device(args.device))
    sampling = {"steps": args.steps, "guidance": args.guidance, "seed": args.seed}
    t0, rows = time.time(), []
    for p in load_prompt_set(args.suite)[: args.limit]:
        truth = render_clip(p.scene(), (128, 128), dev).frames
        rows.append(seams(model, p.caption, truth, fades, sampling))
        print(p.id, " ".join(f"{k}={v:.2f}" for k, v in rows[-1].items()), flush=True)
    print("\n" + ran(args, len(rows), dev, time.time() - t0))
    print("| score (about 1 is seamless) | mean | median | max | prompts ≤ 1.5 |\n|---|---|---|---|---|")
    for k in rows[0]:
        v = np.array([r[k] for r in rows])
        within = f"{(v <= 1.5).sum()} of {len(v)}"
        print(f"| {k} | {v.mean():.2f} | {np.median(v):.2f} | {v.max():.2f} | {within} |")


if __name__ == "__main__":
    main()
