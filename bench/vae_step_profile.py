"""Where a VAE training step spends its time: data (world render on first touch, or the kept clips) vs
network (forward, loss, backward, optimizer), with the top operators of one step from the PyTorch profiler.

    python bench/vae_step_profile.py --config scripts/shipped/vae.json [--steps 6] [--set crop=64 ...]
    python bench/vae_step_profile.py --config scripts/shipped/vae.json --set kept=true --set compile=true

Uses the same `load_batch` (or, with `kept`, `KeptClips`), `VAEStep` and `vae_loss` as `tessera train vae`,
on the default device, from a fresh model of the config's preset; with `compile`, the encoder and decoder
are compiled as the trainer compiles them (the first steps, which compile, are left out of the means).
"""

from __future__ import annotations

import argparse
import contextlib
import json

import torch
from dit_step_profile import sync  # the same clock: waits for the device, then reads the time

from tessera.checkpoint import build_model
from tessera.config import get_preset
from tessera.data.buckets import step_shape
from tessera.data.source import make_source
from tessera.models.text import Tokenizer
from tessera.models.vae import convs_over_frames
from tessera.pipeline import pick_device
from tessera.train.common import autocast
from tessera.train.config import make_config, parse_shapes
from tessera.train.vae import KeptClips, VAEStep, load_batch, vae_loss


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True, help="VAE training config JSON")
    ap.add_argument("--set", action="append", default=[], help="KEY=JSON_VALUE over the config (repeatable)")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument(
        "--channels-last",
        action="store_true",
        help="the VAE's weights and the clips in channels-last 3D layout (what cuDNN's kernels read)",
    )
    ap.add_argument(
        "--over-frames",
        action="store_true",
        help="every causal conv as a 2D conv over frames, time taps stacked as channels (`frame_conv`)",
    )
    ap.add_argument(
        "--by-shape", action="store_true", help="group the operator table by input shapes as well"
    )
    args = ap.parse_args()
    device = pick_device("auto")
    cfg = make_config(
        "vae", args.config, **{k: json.loads(v) for k, v in (kv.split("=", 1) for kv in args.set)}
    )
    config = get_preset(cfg.preset)
    model = build_model(config, Tokenizer.train(["a"], config.text.vocab_size), device)
    vae = model.vae.train().requires_grad_(True)
    layout = torch.channels_last_3d if args.channels_last else torch.contiguous_format
    vae.to(memory_format=layout)
    convs_over_frames(vae, args.over_frames)
    if cfg.compile:
        vae.encoder.compile()
        vae.decoder.compile()
    trainee = VAEStep(vae)
    opt = torch.optim.AdamW(trainee.parameters(), lr=1e-5)
    shapes = parse_shapes(cfg.shapes)
    source = make_source(cfg.data, shapes, cfg.seed, device, cfg.world_clips, cfg.object_weight > 0)
    kept = KeptClips(source, cfg, device, vae.cfg.z_channels) if cfg.kept else None

    def batch_of(step: int):
        one = cfg.batch_shapes == "one" or cfg.kept
        shape = step_shape(shapes, cfg.seed, step) if one else None
        if kept is not None:
            return kept.batch(step * cfg.batch_size, cfg.batch_size, shape, step, 0)
        idx = range(step * cfg.batch_size, (step + 1) * cfg.batch_size)
        return load_batch(idx, source, cfg, device, vae.cfg.z_channels, shape)

    first = []
    for step in range(args.steps):  # first touch: every clip rendered
        t0 = sync(device)
        batch_of(step)
        first.append(sync(device) - t0)
    rows = []
    for step in range(args.steps):  # the same clips again: kept, as in every epoch past the first
        last = step == args.steps - 1
        t0 = sync(device)
        with torch.profiler.profile() if last else contextlib.nullcontext() as p_data:
            groups, eps, objects = batch_of(step)
            groups = [x.contiguous(memory_format=layout) for x in groups]
        t1 = sync(device)
        profile = torch.profiler.profile(record_shapes=args.by_shape)
        with profile if last else contextlib.nullcontext() as p_net:
            with autocast(cfg, device):
                outs = trainee(groups, eps)
            total, _ = vae_loss(groups, outs, None, cfg, objects)
            total.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            t2 = sync(device)
        rows.append((t1 - t0, t2 - t1, sum(x.numel() // 3 for x in groups)))
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(p_data.key_averages().table(sort_by="self_cpu_time_total", row_limit=10))
    table = p_net.key_averages(group_by_input_shape=args.by_shape).table(sort_by=key, row_limit=12)
    print(table)
    render = sum(first[1:]) / (len(first) - 1)
    skip = max(1, len(rows) // 2) if cfg.compile else 1  # compiled: the first steps compile
    data, net = (sum(r[i] for r in rows[skip:]) / (len(rows) - skip) for i in (0, 1))
    pixels = sum(r[2] for r in rows) / len(rows)
    print(
        f"device {device}; preset {cfg.preset}; batch {cfg.batch_size} clips of {cfg.shapes}, "
        f"crop {cfg.crop}, kept {cfg.kept}, compile {cfg.compile}, channels-last {args.channels_last}, "
        f"over frames {args.over_frames}; "
        f"first build {first[0]:.1f} s"
    )
    print("| first touch (s/step) | kept data (s/step) | network (s/step) | steps/s kept | Mpixels/s kept |")
    print("|---|---|---|---|---|")
    row = [f"{render:.3f}", f"{data:.3f}", f"{net:.3f}", f"{1 / (data + net):.2f}"]
    print("| " + " | ".join([*row, f"{pixels / (data + net) / 1e6:.1f}"]) + " |")


if __name__ == "__main__":
    main()
