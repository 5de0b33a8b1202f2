"""Sequence parallelism on N GPUs: DiT training throughput and one long video sampled across the GPUs,
each against the same work on one GPU, measured in the same run.

    torchrun --nproc-per-node 2 bench/bench_sp.py             # wan-1.3b at 32,760 and 75,600 tokens
    torchrun --nproc-per-node 4 bench/bench_sp.py --cache sp_cache   # the 1-GPU part reused if cached
    torchrun --nproc-per-node 4 bench/bench_sp.py --cache sp_cache --mode ring  # ring attention on CUDA
    torchrun --nproc-per-node 2 bench/bench_sp.py --preset tiny --device cpu --train-shapes 9x32x32 \\
        --sample-shape 9x32x32 --text-len 8                   # a CPU (gloo) smoke run of the script itself

Run from the repository root with tessera installed (`pip install -e .`; else prefix `PYTHONPATH=.`).
One command prints the table. Rank 0 first does every measurement on its GPU alone while the other ranks
wait at a barrier (or reads them from `--cache DIR`, where it also writes them); then all N ranks repeat
the work with the DiT sequence-parallel over them (`tessera.parallel`, `--mode auto`: Ulysses when the
heads divide over N, else ring attention). Random weights (the zero-initialised layers set to small
random values so the output is not trivially zero); shapes are pixel FRAMESxHEIGHTxWIDTH, tokens =
(1 + (F-1)/4) * H/16 * W/16 for the VAE's 4x8x8 and the DiT's 1x2x2 patches (81x720x1280: 75,600).

- peak: the best bf16 matmul throughput measured on rank 0's GPU (square matmuls), not the data sheet.
- training step: one clip; bf16 autocast forward + backward with activation checkpointing, gradient
  clipping and AdamW on fp32 weights, as `tessera train dit` runs it; on N GPUs the DiT is wrapped as the
  trainer wraps it (`--dist fsdp`: FSDP2 over all ranks, or ddp) and all N ranks share the clip. The time
  is the median of `--iters` steps after `--warmup`. MFU = 3 x forward FLOPs (`dit_flops`; recomputation
  not counted) / step time / (GPUs x peak). Scaling efficiency = t(1 GPU) / (N x t(N GPUs)).
- sampling: `--sample-steps` Euler steps with classifier-free guidance (both branches in one batch of 2)
  of the DiT alone, bf16 weights, from the same noise; time per step after one warm-up call. The N-GPU
  latents are compared with the 1-GPU ones: max |difference| and relative L2 difference (bf16 rounds at
  2^-8 = 0.0039 relative).
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
from timing import matmul_peak, sync, timed

from tessera.config import get_preset
from tessera.models.dit import DiT, dit_flops
from tessera.parallel import SequenceParallel, pick_mode
from tessera.train.distributed import Dist, wrap

# NVLink multicast (NVLS) stays off, as where this was measured; set before NCCL initialises (in `main`).
SAFE_NCCL = dict(NCCL_NVLS_ENABLE="0", TORCH_SYMM_MEM_DISABLE_MULTICAST="1", NVSHMEM_DISABLE_NVLS="1")


def parse_shape(text: str) -> tuple[int, int, int]:
    f, h, w = (int(v) for v in text.lower().split("x"))
    return f, h, w


def latents(shape: tuple[int, int, int]) -> tuple[int, int, int]:
    """Pixel (F, H, W) -> latent (T_z, H/8, W/8)."""
    f, h, w = shape
    return 1 + (f - 1) // 4, h // 8, w // 8


def tokens_of(cfg, shape: tuple[int, int, int]) -> int:
    pt, ph, pw = cfg.patch
    t, h, w = latents(shape)
    return (t // pt) * (h // ph) * (w // pw)


def make_dit(cfg, device: torch.device, dtype: torch.dtype, parallel: bool) -> DiT:
    """The same random DiT on every rank (seeded; with `parallel`, also broadcast from rank 0 to be sure)."""
    torch.manual_seed(0)
    with torch.device(device):
        dit = DiT(cfg)
    with torch.no_grad():
        for p in dit.parameters():
            if not p.any():  # adaLN-zero and the zero output layer: make the output depend on the input
                p.normal_(std=0.02)
        dit = dit.to(dtype)
        if parallel:
            for p in dit.parameters():
                dist.broadcast(p.data, 0)
    return dit


def inputs(cfg, shape, text_len: int, batch: int, device: torch.device, dtype: torch.dtype) -> dict:
    """Random DiT inputs from a CPU generator: the same numbers on every rank."""
    g = torch.Generator().manual_seed(1)
    t_z, h, w = latents(shape)
    mask = torch.ones(batch, text_len, dtype=torch.bool)
    mask[1:, 1:] = False  # rows after the first: an empty caption (one token), as guidance uses
    return dict(
        x=torch.randn(batch, cfg.in_channels, t_z, h, w, generator=g).to(device),
        t=torch.rand(batch, t_z, generator=g).to(device),
        text=torch.randn(batch, text_len, cfg.text_dim, generator=g).to(device, dtype),
        text_mask=mask.to(device),
        cond=torch.randn(batch, cfg.cond_channels, t_z, h, w, generator=g).to(device),
    )


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"


def free() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# --- the two measurements -------------------------------------------------------------------------


def train_time(cfg, shape, args, device: torch.device, d: Dist | None) -> float:
    """Seconds per training step of one clip: on this device alone (d None) or sequence-parallel over all
    ranks, wrapped as the trainer wraps it."""
    dit = make_dit(cfg, device, torch.float32, parallel=d is not None).train()
    dit.checkpointed(1.0 if args.checkpointing else 0.0)
    a = inputs(cfg, shape, args.text_len, 1, device, torch.float32)
    target = torch.randn(a["x"].shape, generator=torch.Generator().manual_seed(2)).to(device)
    model = dit if d is None else wrap(SequenceParallel(dit, None, args.mode), d)
    opt = torch.optim.AdamW(dit.parameters(), lr=1e-5)
    bf16 = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    def step() -> None:
        with bf16:
            v = model(**a)
        (v.float() - target).square().mean().backward()
        torch.nn.utils.clip_grad_norm_(dit.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    return timed(step, device, args.warmup, args.iters)


@torch.no_grad()
def sample(cfg, shape, args, device: torch.device, parallel: bool) -> tuple[float, torch.Tensor]:
    """(seconds per Euler step, final latents on the CPU) of guided sampling with the DiT alone."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    dit = make_dit(cfg, device, dtype, parallel).eval()
    dit = SequenceParallel(dit, None, args.mode) if parallel else dit
    a = inputs(cfg, shape, args.text_len, 2, device, dtype)  # row 0 the caption, row 1 the empty one
    x0 = a["x"][:1].clone()  # (1, C, T_z, h, w) the noise, float32
    ts = torch.linspace(1, 0, args.sample_steps + 1).tolist()

    def v_of(x: torch.Tensor, t: float) -> torch.Tensor:
        v = dit(
            x.to(dtype).expand(2, -1, -1, -1, -1), a["t"].new_full(a["t"].shape, t), a["text"], a["text_mask"]
        )
        v_c, v_u = v.float().chunk(2)
        return v_u + args.guidance * (v_c - v_u)

    def run() -> torch.Tensor:
        x = x0
        for t, t_next in zip(ts[:-1], ts[1:], strict=True):
            x = x + (t_next - t) * v_of(x, t)
        return x

    v_of(x0, 1.0)  # warm-up
    sync(device)
    t0 = time.perf_counter()
    x = run()
    sync(device)
    return (time.perf_counter() - t0) / args.sample_steps, x.cpu()


def single(cfg, args, device: torch.device) -> tuple[dict, torch.Tensor]:
    """Every measurement on this device alone: peak, training step times, sampling (time, latents)."""
    out: dict = {"peak": matmul_peak(device), "train": {}}
    for s in args.train_shapes:
        try:
            out["train"][s] = train_time(cfg, parse_shape(s), args, device, None)
        except torch.cuda.OutOfMemoryError:
            out["train"][s] = None
        free()
        t = out["train"][s]
        print(f"1 GPU: train {s}: {'out of memory' if t is None else f'{t:.3f} s'}", flush=True)
    out["sample"], z = sample(cfg, parse_shape(args.sample_shape), args, device, parallel=False)
    free()
    print(f"1 GPU: sample {args.sample_shape}: {out['sample']:.3f} s/step", flush=True)
    return out, z


def cached_single(cfg, args, device: torch.device) -> tuple[dict, torch.Tensor]:
    """`single`, read from `--cache DIR` if it holds a run with the same settings (else measured, saved)."""
    keys = ("preset", "train_shapes", "sample_shape", "text_len", "sample_steps", "guidance", "checkpointing")
    settings = {k: getattr(args, k) for k in keys} | {"device": device_name(device)}
    folder = Path(args.cache) if args.cache else None
    if folder and (folder / "single.json").exists():
        saved = json.loads((folder / "single.json").read_text())
        if saved["settings"] == settings:
            from safetensors.torch import load_file

            print(f"1 GPU: read from {folder}", flush=True)
            return saved["result"], load_file(folder / "single_latents.safetensors")["z"]
    result, z = single(cfg, args, device)
    if folder:
        from safetensors.torch import save_file

        folder.mkdir(parents=True, exist_ok=True)
        save_file({"z": z.contiguous()}, folder / "single_latents.safetensors")
        (folder / "single.json").write_text(json.dumps({"settings": settings, "result": result}, indent=1))
    return result, z


# --- the table ------------------------------------------------------------------------------------


def table(cfg, args, one: dict, many: dict, z1: torch.Tensor, zn: torch.Tensor, world: int, device) -> str:
    name, mode = device_name(device), pick_mode(args.mode, cfg.heads, world)
    lines = [
        f"# tessera sequence parallelism, {datetime.datetime.now().isoformat(timespec='seconds')}",
        f"device: {world} x {name}; torch {torch.__version__}; python {platform.python_version()}; "
        f"preset {args.preset} ({cfg.heads} heads): {mode} attention; training wrapped by {args.dist}",
        f"measured matmul peak (1 GPU): {one['peak'] / 1e12:.3g} TFLOP/s",
        "",
        "| training | tokens | GPUs | step s | tokens/s | MFU | scaling |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in args.train_shapes:
        n = tokens_of(cfg, parse_shape(s))
        flops = 3 * dit_flops(cfg, n, args.text_len)
        for gpus, t in ((1, one["train"][s]), (world, many["train"][s])):
            if t is None:
                lines.append(f"| {s} | {n} | {gpus} | out of memory | | | |")
                continue
            scaling = f"{100 * one['train'][s] / (gpus * t):.0f}%" if one["train"][s] else "n/a"
            mfu = flops / t / (gpus * one["peak"])
            lines.append(f"| {s} | {n} | {gpus} | {t:.3f} | {n / t:.0f} | {100 * mfu:.1f}% | {scaling} |")
    n = tokens_of(cfg, parse_shape(args.sample_shape))
    diff = (zn - z1).abs().max().item()
    rel = ((zn - z1).norm() / z1.norm()).item()
    lines += [
        "",
        f"| sampling ({args.sample_steps} guided Euler steps) | tokens | s/step 1 GPU | s/step {world} GPUs "
        "| speed-up | max abs diff | rel L2 diff |",
        "|---|---|---|---|---|---|---|",
        f"| {args.sample_shape} | {n} | {one['sample']:.3f} | {many['sample']:.3f} | "
        f"{one['sample'] / many['sample']:.2f}x | {diff:.3g} | {rel:.3g} |",
    ]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="wan-1.3b")
    p.add_argument("--train-shapes", default="81x480x832,81x720x1280", help="FxHxW,... (pixels)")
    p.add_argument("--sample-shape", default="81x720x1280")
    p.add_argument("--text-len", type=int, default=512)
    p.add_argument("--warmup", type=int, default=1, help="training steps before timing")
    p.add_argument("--iters", type=int, default=2, help="timed training steps")
    p.add_argument("--sample-steps", type=int, default=3, help="timed Euler steps (after one warm-up call)")
    p.add_argument("--guidance", type=float, default=5.0)
    p.add_argument("--mode", default="auto", choices=("auto", "ulysses", "ring"))
    p.add_argument("--dist", default="fsdp", choices=("fsdp", "ddp"), help="wrapping of the N-GPU training")
    p.add_argument("--no-checkpointing", dest="checkpointing", action="store_false")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--cache", help="folder to keep (and reuse) the 1-GPU measurements in")
    p.add_argument("--json", help="also write the results to this file (rank 0)")
    args = p.parse_args()
    args.train_shapes = [s for s in args.train_shapes.split(",") if s]

    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    device = torch.device(args.device)
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True
    if world < 2:
        sys.exit("launch with `torchrun --nproc-per-node N bench/bench_sp.py` (N >= 2)")
    os.environ.update(SAFE_NCCL)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, timeout=datetime.timedelta(minutes=30))
    cfg = get_preset(args.preset).dit

    one, z1 = cached_single(cfg, args, device) if rank == 0 else ({}, None)  # the others wait here...
    dist.barrier()  # ...for rank 0's one-GPU measurements
    free()
    d = Dist(rank, world, device, args.dist)
    many: dict = {"train": {}}
    for s in args.train_shapes:
        many["train"][s] = train_time(cfg, parse_shape(s), args, device, d)
        free()
        if rank == 0:
            print(f"{world} GPUs: train {s}: {many['train'][s]:.3f} s", flush=True)
    many["sample"], zn = sample(cfg, parse_shape(args.sample_shape), args, device, parallel=True)
    if rank == 0:
        print(table(cfg, args, one, many, z1, zn, world, device), flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps({"args": vars(args), "one": one, "many": many}, indent=1))
    dist.barrier()
    sys.stdout.flush()
    # Leave without C++ destructors: gloo's teardown can abort a peer that is also exiting (as in
    # `launch_local`); every collective has finished at the barrier.
    os._exit(0)


if __name__ == "__main__":
    main()
