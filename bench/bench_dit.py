"""DiT forward speed, and on CUDA a correctness check of the fast attention paths.

    python bench/bench_dit.py                                  # CPU: `s` preset at 33x128x128
    python bench/bench_dit.py --preset wan-1.3b --frames 81 --height 480 --width 832 --compile

On CUDA it first measures the bf16 matmul peak in the same run, then reports the forward's achieved
TFLOP/s (model FLOPs from `dit_flops`) as a fraction of that peak, and checks the bf16 forward and the
packed (flex-attention) forward against an fp32 reference. Prints a table with device, versions, date.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import time

import torch
from timing import matmul_peak

from tessera.config import get_preset
from tessera.models.dit import DiT, dit_flops


def timeit(fn, device: str, warmup: int = 2, reps: int = 5) -> float:
    """Median seconds per call of fn()."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def inputs(cfg, frames: int, height: int, width: int, device: str, batch: int = 1):
    """Random latents, per-frame times and text for one request."""
    t_z, h, w = 1 + (frames - 1) // 4, height // 8, width // 8
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, cfg.in_channels, t_z, h, w, generator=gen).to(device)
    t = torch.rand(batch, t_z, generator=gen).to(device)
    text = torch.randn(batch, 64, cfg.text_dim, generator=gen).to(device)
    mask = torch.ones(batch, 64, dtype=torch.bool, device=device)
    return x, t, text, mask


def check_cuda(cfg) -> list[tuple[str, float]]:
    """Relative error of bf16 forward and of the packed path against the fp32 reference, on CUDA."""
    torch.manual_seed(0)
    model = DiT(cfg).cuda().float()
    for p in model.parameters():  # the zero-initialised output would make every comparison trivial
        if not p.any():
            torch.nn.init.normal_(p, std=0.02)
    x, t, text, mask = inputs(cfg, 17, 256, 256, "cuda", batch=2)
    with torch.no_grad():
        ref = model(x, t, text, mask)
        with torch.autocast("cuda", torch.bfloat16):
            fast = model(x, t, text, mask).float()
        packed = model.forward_packed([x[0], x[1, :, :3]], [t[0], t[1, :3]], text, mask)
        one = model(x[1:, :, :3], t[1:, :3], text[1:], mask[1:])
    rel = lambda a, b: ((a - b).norm() / b.norm()).item()
    return [
        ("bf16 autocast vs fp32", rel(fast, ref)),
        ("packed clip 0 vs batched", rel(packed[0], ref[0])),
        ("packed clip 1 vs one by one", rel(packed[1], one[0])),
    ]


def main() -> None:
    """Run the benchmark and print the table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="s")
    ap.add_argument("--frames", type=int, default=33)
    ap.add_argument("--height", type=int, default=128)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--compile", action="store_true", help="also time a torch.compile'd forward")
    args = ap.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    cfg = get_preset(args.preset).dit
    name = torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "cpu"
    print(f"# DiT forward | {name} | torch {torch.__version__} | threads {torch.get_num_threads()} | "
          f"{datetime.date.today()}")  # fmt: skip
    if device == "cuda":
        for what, err in check_cuda(get_preset("tiny").dit):
            print(f"check: {what}: relative error {err:.2e}")
    peak = matmul_peak(device)
    model = DiT(cfg).to(device)
    x, t, text, mask = inputs(cfg, args.frames, args.height, args.width, device, args.batch)
    tokens = x.shape[2] * (x.shape[3] // cfg.patch[1]) * (x.shape[4] // cfg.patch[2])
    flops = args.batch * dit_flops(cfg, tokens, text.shape[1])
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    rows = []
    runs = [("eager", model)] + ([("compiled", torch.compile(model))] if args.compile else [])
    for label, m in runs:

        def fwd(m=m):
            with torch.no_grad(), torch.autocast(device, dtype, enabled=device == "cuda"):
                return m(x, t, text, mask)

        sec = timeit(fwd, device)
        rows.append((label, sec, flops / sec))
    print(f"peak matmul ({'bf16' if device == 'cuda' else 'fp32'}): {peak / 1e12:.3f} TFLOP/s (measured)")
    print("\n| preset | clip | tokens | mode | forward s | TFLOP/s | of peak | vs eager |")
    print("|---|---|---|---|---|---|---|---|")
    clip = f"{args.batch}x{args.frames}x{args.height}x{args.width}"
    for label, sec, rate in rows:
        print(f"| {args.preset} | {clip} | {tokens} | {label} | {sec:.3f} | {rate / 1e12:.3f} | "
              f"{rate / peak:.0%} | {rows[0][1] / sec:.2f}x |")  # fmt: skip


if __name__ == "__main__":
    main()
