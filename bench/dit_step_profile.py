"""Where a DiT training step spends its time: data (render, load, VAE encode) vs network (forward,
backward, optimizer), with the top kernels of one step from the PyTorch profiler.

    python bench/dit_step_profile.py --init MODEL_FOLDER --config scripts/shipped/dit.json [--steps 6]

Uses the same `make_batch` and `DiTStep` as `tessera train dit`, on the default device.
"""

from __future__ import annotations

import argparse
import time

import torch

from tessera.checkpoint import load_model
from tessera.data.source import make_source
from tessera.pipeline import pick_device
from tessera.train.common import autocast
from tessera.train.config import make_config, parse_shapes
from tessera.train.dit import DiTStep, LatentCache, make_batch


def sync(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--init", required=True, help="model folder (trained VAE)")
    ap.add_argument("--config", required=True, help="DiT training config JSON")
    ap.add_argument("--steps", type=int, default=6)
    args = ap.parse_args()
    device = pick_device("auto")
    cfg = make_config("dit", args.config)
    model = load_model(args.init, device)
    model.vae.requires_grad_(False)
    trainee = DiTStep(model.dit, model.text, packed=cfg.batching == "packed").train().requires_grad_(True)
    opt = torch.optim.AdamW(trainee.parameters(), lr=1e-5)
    source = make_source(cfg.data, parse_shapes(cfg.shapes), cfg.seed, device, cfg.world_clips)
    cache = LatentCache() if cfg.cache_latents else None
    batches = [range(i * cfg.batch_size, (i + 1) * cfg.batch_size) for i in range(args.steps)]
    for idx in batches[:2]:  # first touch: rendering, cache fill, cuDNN tuning
        make_batch(idx, source, model, cfg, device, cache)
    rows = []
    for k, idx in enumerate(batches):
        t0 = sync(device)
        batch = make_batch(idx, source, model, cfg, device, cache)
        t1 = sync(device)
        prof = torch.profiler.profile() if k == len(batches) - 1 else None
        with prof or torch.autograd.profiler.record_function("step"):
            with autocast(cfg, device):
                loss = trainee(batch)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            t2 = sync(device)
        rows.append((t1 - t0, t2 - t1, batch.tokens))
    if prof is not None:
        key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
        print(prof.key_averages().table(sort_by=key, row_limit=12))
    data, net = (sum(r[i] for r in rows[1:]) / (len(rows) - 1) for i in (0, 1))
    tokens = sum(r[2] for r in rows) / len(rows)
    print(f"device {device}; batch {cfg.batch_size} clips, {tokens:.0f} tokens; shapes {cfg.shapes}")
    print("| data (s/step) | network (s/step) | steps/s |\n|---|---|---|")
    print(f"| {data:.3f} | {net:.3f} | {1 / (data + net):.2f} |")


if __name__ == "__main__":
    main()
