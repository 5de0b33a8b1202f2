"""Does the judge count a soft object once? The scene parser's track linking, as shipped and gated by
distance alone, on the same held-out renders, clean and blurred (about what a VAE round trip does).

    python bench/linking.py [--scenes 24] [--frames 9]
    python bench/linking.py --truth-suite full --out runs/truth-linking   # the truth, judged by the variant

The shipped linker (`tessera.eval.tracks.link_tracks`) joins a detection to a live track only when the
centroid distance plus 0.3 per differing colour or shape label is under 0.25 frame widths, so an object
whose label flips from one frame to the next starts a new track. The variant (`labels_gate=False`)
gates candidates by distance alone and uses the labels only to rank them. Both link the same detections
of each clip (the parser runs once per clip), and both are scored as `parser_accuracy` scores the
shipped one: `count` (1 - |significant tracks - objects seen| / objects) and `tracks` (each object found
by its shape and colour with the right size). `--truth-suite` instead runs `tessera eval --truth` on
that suite with the variant: a copy of the shipped parser folder whose config says `labels_gate: false`
(OUT/parser-distance-linking, which `tessera eval --parser` takes too): the ceiling a judge must keep.
"""

from __future__ import annotations

import argparse
import functools
import json
import shutil
from pathlib import Path

import numpy as np
import torch

from tessera.eval.parser import DEFAULT_DIR, detect, load_parser, predict
from tessera.eval.parser_train import BLURRED_SIGMA, gaussian_blur, render_pool
from tessera.eval.tracks import COLOUR_NAMES, MIN_AREA, SHAPES, SIZE_NAMES, ClipParse, link_tracks

link_by_distance = functools.partial(link_tracks, labels_gate=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenes", type=int, default=24)
    ap.add_argument("--frames", type=int, default=9)
    ap.add_argument("--truth-suite", help="score the truth on this suite (quick, full) with the variant")
    ap.add_argument("--out", default="runs/truth-linking", help="results folder of --truth-suite")
    args = ap.parse_args()
    if args.truth_suite:
        from tessera.eval.suite import eval_command  # only this mode runs the suite

        judge = Path(args.out) / "parser-distance-linking"  # the shipped parser, linking by distance
        shutil.copytree(DEFAULT_DIR, judge, dirs_exist_ok=True)
        config = json.loads((judge / "config.json").read_text()) | {"labels_gate": False}
        (judge / "config.json").write_text(json.dumps(config, indent=1) + "\n")
        results = eval_command(
            suite=args.truth_suite, out=Path(args.out), truth=True, device="cpu", parser=judge
        )
        print(json.dumps(results["metrics"], indent=1))
        return
    scenes, frames, size = args.scenes, args.frames, 128
    parser = load_parser(None, "cpu")
    pool = render_pool(scenes, frames, size, "heldout", 10_000, "cpu")
    linkers = {"shipped (labels gate)": link_tracks, "distance gates, labels rank": link_by_distance}
    print(f"held-out split, {scenes} scenes x {frames} frames at {size}x{size}, the shipped parser")
    print("| frames | linker | count | tracks |\n|---|---|---|---|")
    for blur in (0.0, BLURRED_SIGMA):
        scores = {name: ([], []) for name in linkers}
        for c in range(scenes):
            sl = slice(c * frames, (c + 1) * frames)
            video, ids = pool["frames"][sl].cpu(), pool["ids"][sl].cpu()
            if blur > 0:
                x = gaussian_blur(video.permute(0, 3, 1, 2).float(), blur)
                video = x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
            dets, comp = detect(predict(parser, video.numpy()))
            shown = torch.stack([(ids == k).flatten(1).sum(1) for k in range(1, 5)], 1) >= MIN_AREA * size**2
            seen = int((shown.sum(0) >= max(2, np.ceil(0.15 * frames))).sum())
            for name, link in linkers.items():
                parse = ClipParse(link(dets, frames), frames, comp, dets)
                if seen:
                    scores[name][0].append(max(0.0, 1 - abs(len(parse.significant()) - seen) / seen))
                for k in range(1, 5):
                    mask = ids == k
                    if mask.any():
                        named = (("shape", SHAPES), ("colour", COLOUR_NAMES), ("size", SIZE_NAMES))
                        want = [names[pool[a][sl][mask][0]] for a, names in named]
                        track = parse.find(want[0], want[1])
                        scores[name][1].append(track is not None and track.size == want[2])
        for name, (count, found) in scores.items():
            kind = "clean" if blur == 0 else f"blurred, sigma {blur} px"
            print(f"| {kind} | {name} | {np.mean(count):.3f} | {np.mean(found):.3f} |")


if __name__ == "__main__":
    main()
