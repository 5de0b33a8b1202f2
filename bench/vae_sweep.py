"""VAE latent channels and width at a fixed GPU budget: train several VAEs side by side on one GPU for
the same minutes, then score each on held-out world clips (whole frames and object pixels).

    python bench/vae_sweep.py --presets g2-z16,g2-z32,g2-z48,g2-z32-w48 --minutes 7 --out runs/vae-sweep

Each preset trains with `scripts/shipped/vae.json` (plus `--set FIELD=JSON` overrides) in its own process,
all at once, so every run gets the same wall-clock minutes on the same card (the trainer is bound by its
per-step overheads, not by the GPU's arithmetic, so runs side by side barely slow each other; the table
reports each run's steps so that can be checked). Then `evaluate_vae` scores every run's EMA weights on
held-out world clips, and the table adds the decoder's multiply-adds per 33x128x128 clip: what decoding
the default clip costs on a CPU.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

from tessera.config import get_preset
from tessera.models.vae import VideoVAE
from tessera.train.vae import evaluate_vae


def decoder_macs(preset: str, frames: int = 33, size: int = 128) -> float:
    """Multiply-adds of one decode of a (frames, size, size) clip, counted with torch's FLOP counter."""
    from torch.utils.flop_counter import FlopCounterMode

    vae = VideoVAE(get_preset(preset).vae)
    z = torch.zeros(1, vae.cfg.z_channels, 1 + (frames - 1) // 4, size // 8, size // 8)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        vae.decode(z)
    return counter.get_total_flops() / 2


def last_step(log: Path) -> int:
    """The step a run stopped at, from the trainer's last line ("vae run stopped at step N")."""
    words = log.read_text().split()
    return int(words[-1]) if words and words[-1].isdigit() else 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--presets", default="g2-z16,g2-z32,g2-z48,g2-z32-w48")
    ap.add_argument("--minutes", type=float, default=7.0)
    ap.add_argument("--config", default="scripts/shipped/vae.json")
    ap.add_argument("--set", action="append", default=[], help="FIELD=JSON: a config field for every run")
    ap.add_argument("--clips", type=int, default=32)
    ap.add_argument("--out", default="runs/vae-sweep")
    args = ap.parse_args()
    presets = args.presets.split(",")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    base = json.loads(Path(args.config).read_text())
    for item in args.set:
        key, value = item.split("=", 1)
        base[key] = json.loads(value)
    start = time.time()
    procs = {}
    for p in presets:
        config = out / f"{p}.json"
        config.write_text(json.dumps(base | {"preset": p, "time_limit_min": args.minutes}))
        procs[p] = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tessera.cli",
                "train",
                "vae",
                "--out",
                str(out / p),
                "--config",
                str(config),
            ],
            stdout=open(out / f"{p}.log", "w"),
            stderr=subprocess.STDOUT,
        )
    codes = {p: proc.wait() for p, proc in procs.items()}
    train_min = (time.time() - start) / 60
    rows = []
    for p in presets:
        scores = {}
        if codes[p] == 0:
            for shape in ("17x128x128", "33x128x128"):
                scores[shape] = evaluate_vae(out / p, clips=args.clips, shape=shape)
        rows.append((p, codes[p], last_step(out / f"{p}.log"), scores, decoder_macs(p)))
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    date = time.strftime("%Y-%m-%d")
    print(f"\n{device}, torch {torch.__version__}, {date}, {len(presets)} runs side by side,", end=" ")
    print(f"{args.minutes} min each ({train_min:.1f} min wall), {args.clips} held-out clips per shape")
    head = ["preset", "z", "width", "steps", "17f whole / objects dB", "33f whole / objects dB"]
    print("| " + " | ".join([*head, "decode GMAC (33x128x128)"]) + " |")
    print("|---" * (len(head) + 1) + "|")
    for p, code, steps, scores, macs in rows:
        vae = get_preset(p).vae
        cells = [
            f"{s['psnr']:.2f} / {s['object_psnr']:.2f}" if s else f"failed ({code})"
            for s in (scores.get("17x128x128"), scores.get("33x128x128"))
        ]
        row = [p, vae.z_channels, vae.base_channels, steps, *cells, f"{macs / 1e9:.1f}"]
        print("| " + " | ".join(map(str, row)) + " |")
    results = {p: {"steps": s, "scores": sc} for p, _, s, sc, _ in rows}
    (out / "results.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
