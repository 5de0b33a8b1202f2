"""DiT training speed as `tessera train dit` runs it, beside the bare DiT step, in the same run.

    python bench/train_step_bench.py                                  # GPU: s-deeper and g2-d512
    python bench/train_step_bench.py --presets tiny --frames 9 --size 32 --batch 4 --steps 4 \
        --world-clips 8 --no-compile --paths kept                    # a CPU smoke run of the script

For each preset, with clips of `--frames`x`--size`x`--size` in batches of `--batch`:
- `kept`: `train_dit` itself on world data with the kept set (`task_variants 2`: clips, captions and
  conditioning inputs encoded once on the device), compiled, one shape per step;
- `streaming`: `train_dit` as the shipped config ran it before the kept set (latents cached, but every
  conditioned clip's `cond` encoded by the VAE each step, per-clip Python to build the batch);
- `bare`: the DiT alone, forward + backward + fused AdamW on random inputs of the same shape, compiled;
- `shipped`: `train_dit` with `--config` as it stands (the shipped recipe: its six clip shapes, its
  batch, activation checkpointing, no compile), only the preset, steps and `--world-clips` set; its clips
  vary in shape, so it has no MFU; it is the reference of the last column where it ran.
A path's clips/s is the median of `train_dit`'s own logged rates after its first `--warm` logged
intervals (the kept set's build and compilation come before them). MFU = 3 x forward FLOPs (`dit_flops`)
x clips/s / the bf16 matmul peak measured in this run. Prints one table with device, versions and date.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import tempfile
from pathlib import Path

import torch
from timing import matmul_peak, timed

from tessera.config import get_preset
from tessera.models.dit import DiT, dit_flops
from tessera.train.config import make_config
from tessera.train.dit import train_dit
from tessera.train.logger import read_metrics

TEXT_LEN = 128  # text tokens per clip in the bare step (the kept set pads captions to the longest)


def real_path(preset: str, path: str, args: argparse.Namespace, out: Path) -> float:
    """Clips/s of `train_dit` on world data along `path` ("kept" or "streaming")."""
    shape = f"{args.frames}x{args.size}x{args.size}"
    base = json.loads(Path(args.config).read_text())
    common = dict(
        preset=preset, steps=args.steps, world_clips=args.world_clips, log_every=args.log_every,
        ckpt_every=0, sample_every=0, init="",
    )  # fmt: skip
    if path == "shipped":  # the config file as it stands: its shapes, batching, checkpointing, no compile
        train_dit(make_config("dit", None, **(base | common)), out / f"{preset}-{path}")
        batch = base.get("batch_size", args.batch)
        rates = [r["steps_per_s"] for r in read_metrics(out / f"{preset}-{path}")][args.warm :]
        return statistics.median(rates) * batch if rates else float("nan")
    over = dict(
        preset=preset, shapes=shape, batch_size=args.batch, steps=args.steps, world_clips=args.world_clips,
        batch_shapes="one", batching="bucketed", compile=not args.no_compile, checkpointing=False,
        log_every=args.log_every, ckpt_every=0, sample_every=0, init="", warmup=10,
        task_variants=2 if path == "kept" else 0, cache_latents=path == "streaming",
    )  # fmt: skip
    cfg = make_config("dit", None, **(base | over))
    train_dit(cfg, out / f"{preset}-{path}")
    rates = [r["steps_per_s"] for r in read_metrics(out / f"{preset}-{path}")][args.warm :]
    return statistics.median(rates) * args.batch if rates else float("nan")


def bare_step(preset: str, args: argparse.Namespace, device: torch.device) -> float:
    """Clips/s of the DiT's forward + backward + AdamW alone (bf16 autocast, compiled)."""
    cfg = get_preset(preset).dit
    dit = DiT(cfg).to(device).train()
    opt = torch.optim.AdamW(dit.parameters(), lr=1e-5, fused=device.type == "cuda" or None)
    t_z, h = 1 + (args.frames - 1) // 4, args.size // 8
    g = dict(device=device)
    x = torch.randn(args.batch, cfg.in_channels, t_z, h, h, **g)
    cond = torch.randn(args.batch, cfg.cond_channels, t_z, h, h, **g)
    t = torch.rand(args.batch, t_z, **g)
    text = torch.randn(args.batch, TEXT_LEN, cfg.text_dim, **g)
    mask = torch.ones(args.batch, TEXT_LEN, dtype=torch.bool, **g)
    model = dit if args.no_compile else torch.compile(dit)

    def step() -> None:
        with torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda"):
            loss = model(x, t, text, mask, cond).float().square().mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return args.batch / timed(step, device, warmup=3, iters=10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--presets", default="s-deeper,g2-d512")
    ap.add_argument(
        "--paths", default="kept,streaming,bare", help="which of kept, streaming, bare, shipped to run"
    )
    ap.add_argument("--streaming-presets", default="s-deeper", help="presets that also run 'streaming'")
    ap.add_argument("--config", default="scripts/shipped/dit.json")
    ap.add_argument("--frames", type=int, default=33)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=80)
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--warm", type=int, default=2, help="logged intervals left out (build, compilation)")
    ap.add_argument("--world-clips", type=int, default=2048)
    ap.add_argument("--no-compile", action="store_true")
    args = ap.parse_args()
    if args.steps // args.log_every <= args.warm:  # else the real paths have no rate left to read
        ap.error(
            f"--steps {args.steps} / --log-every {args.log_every} gives {args.steps // args.log_every} "
            f"logged intervals; more than --warm {args.warm} are needed"
        )
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    paths = args.paths.split(",")
    peak = matmul_peak(device)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.presets.split(","):
            cfg = get_preset(preset).dit
            tokens = (1 + (args.frames - 1) // 4) * (args.size // 16) ** 2
            flops = 3 * dit_flops(cfg, tokens, TEXT_LEN)
            rates = {}
            for path in paths:
                if path in ("streaming", "shipped") and preset not in args.streaming_presets.split(","):
                    continue
                run = (
                    bare_step
                    if path == "bare"
                    else lambda p, a, d, path=path: real_path(p, path, a, Path(tmp))
                )
                rates[path] = run(preset, args, device)
                print(
                    f"{preset} {path}: {rates[path]:.0f} clips/s", flush=True
                )  # kept if the run is cut short
                torch.cuda.empty_cache() if device.type == "cuda" else None
            params = sum(p.numel() for p in DiT(cfg).parameters()) / 1e6
            rows.append((preset, params, cfg.dim, cfg.depth, rates, flops))
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    clip = f"{args.frames}x{args.size}x{args.size}"
    print(
        f"\n{name}, torch {torch.__version__}, {datetime.date.today()}, clips {clip}, batch {args.batch},",
        end=" ",
    )
    print(f"matmul peak {peak / 1e12:.0f} TFLOP/s (measured)")
    print("| preset | DiT params | dim x depth | path | clips/s | MFU | vs shipped (else streaming) |")
    print("|---|---|---|---|---|---|---|")
    for preset, params, dim, depth, rates, flops in rows:
        for path, rate in rates.items():
            ref = rates.get("shipped", rates.get("streaming"))
            mfu = "–" if path == "shipped" else f"{100 * rate * flops / peak:.1f}%"  # its clips vary in shape
            vs = "–" if ref is None else f"{rate / ref:.2f}x"  # neither reference ran for this preset
            cells = [preset, f"{params:.1f}M", f"{dim} x {depth}", path, f"{rate:.0f}", mfu, vs]
            print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
