"""Where a DiT training step spends its time: data (render, load, VAE encode) vs network (forward,
backward, optimizer), with the top kernels of one step from the PyTorch profiler.

    python bench/dit_step_profile.py --init MODEL_FOLDER --config scripts/shipped/dit.json [--steps 6]
        [--set batch_shapes='"mixed"' --set batch_size=16 ...]   # config fields overridden (JSON values)

Uses the same `make_batch` and `DiTStep` as `tessera train dit`, on the default device.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time

import torch

from tessera.checkpoint import load_model
from tessera.data.buckets import step_shape
from tessera.data.source import make_source
from tessera.pipeline import pick_device
from tessera.train.common import autocast
from tessera.train.config import make_config, parse_shapes
from tessera.train.dit import DiTStep, LatentCache, make_batch


def sync(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter()


def aten_calls(prof: torch.profiler.profile) -> int:
    """ATen operator calls recorded (each a dispatch on the CPU, most a kernel launch on a GPU)."""
    return sum(e.count for e in prof.key_averages() if e.key.startswith("aten::"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--init", required=True, help="model folder (trained VAE)")
    ap.add_argument("--config", required=True, help="DiT training config JSON")
    ap.add_argument("--set", action="append", default=[], help="KEY=JSON_VALUE over the config (repeatable)")
    ap.add_argument("--steps", type=int, default=6)
    args = ap.parse_args()
    device = pick_device("auto")
    cfg = make_config(
        "dit", args.config, **{k: json.loads(v) for k, v in (kv.split("=", 1) for kv in args.set)}
    )
    model = load_model(args.init, device)
    model.vae.requires_grad_(False)
    if cfg.compile:  # as `tessera train dit` does
        for block in model.dit.blocks:
            block.compile()
    trainee = DiTStep(model.dit, model.text, packed=cfg.batching == "packed").train().requires_grad_(True)
    opt = torch.optim.AdamW(trainee.parameters(), lr=1e-5)
    shapes = parse_shapes(cfg.shapes)
    source = make_source(cfg.data, shapes, cfg.seed, device, cfg.world_clips)
    cache = LatentCache() if cfg.cache_latents else None

    def batch_of(step: int):
        shape = step_shape(shapes, cfg.seed, step) if cfg.batch_shapes == "one" else None
        idx = range(step * cfg.batch_size, (step + 1) * cfg.batch_size)
        return make_batch(idx, source, model, cfg, device, cache, shape)

    for step in range(2):  # first touch: rendering, cache fill
        batch_of(step)
    rows = []
    for step in range(args.steps):
        last = step == args.steps - 1
        t0 = sync(device)
        with torch.profiler.profile() if last else contextlib.nullcontext() as p_data:
            batch = batch_of(step)
        t1 = sync(device)
        with torch.profiler.profile() if last else contextlib.nullcontext() as p_net:
            with autocast(cfg, device):
                loss = trainee(batch)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            t2 = sync(device)
        rows.append((t1 - t0, t2 - t1, batch.tokens))
    keys = ["self_cpu_time_total"] + (["self_cuda_time_total"] if device.type == "cuda" else [])
    for key in keys:  # on a GPU the host side (dispatch) and the kernels both matter
        print(p_data.key_averages().table(sort_by=key, row_limit=12))
        print(p_net.key_averages().table(sort_by=key, row_limit=12))
    data, net = (sum(r[i] for r in rows[1:]) / (len(rows) - 1) for i in (0, 1))
    tokens = sum(r[2] for r in rows) / len(rows)
    print(f"device {device}; batch {cfg.batch_size} clips, {tokens:.0f} tokens", end="; ")
    print(f"shapes {cfg.shapes} ({cfg.batch_shapes})")
    print("| data (s/step) | network (s/step) | steps/s | ATen calls: data | ATen calls: network |")
    print("|---|---|---|---|---|")
    print(f"| {data:.3f} | {net:.3f} | {1 / (data + net):.2f} | {aten_calls(p_data)} | {aten_calls(p_net)} |")


if __name__ == "__main__":
    main()
