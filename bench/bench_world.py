"""World engine throughput: clips per second for 33x128x128 clips (sampling + rendering + captions).

    python bench/bench_world.py                      # CPU, and CUDA in batches when available
    python bench/bench_world.py --device cuda --batches 64 256 --clips 1024

Prints a table with the device, torch version and date. Not a test.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import time

import torch

from tessera.world import WorldConfig, WorldSampler, captions, render, shading


def clips_per_second(
    device: str, batch: int, clips: int, size: int, frames: int, antialias: bool, max_rays: int | None = None
) -> float:
    """Sample, caption and render `clips` scenes in batches of `batch`; clips per second (after warm-up)."""
    sampler = WorldSampler(WorldConfig(frames=frames, fps=16.0))
    shading.ground_atlas(device)  # every ground texture, made once per process
    render([sampler.sample(10**9 + i) for i in range(batch)], (size, size), device, antialias=antialias)
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for first in range(0, clips, batch):
        scenes = [sampler.sample(first + i) for i in range(min(batch, clips - first))]
        [captions(s) for s in scenes]
        render(scenes, (size, size), device, antialias=antialias, max_rays=max_rays)
    if device == "cuda":
        torch.cuda.synchronize()
    return clips / (time.perf_counter() - start)


def main() -> None:
    """Run the benchmark and print the table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=["cpu", "cuda", "all"], default="all")
    ap.add_argument(
        "--clips", type=int, default=None, help="clips per measurement (default 20 CPU, 1024 CUDA)"
    )
    ap.add_argument("--batches", type=int, nargs="+", default=None, help="scenes rendered per call")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--frames", type=int, default=33)
    ap.add_argument("--max-rays", type=int, default=None, help="rays per render chunk (default: render's)")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    devices = [d for d in devices if d == "cpu" or torch.cuda.is_available()]
    name = torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu"
    clip = f"{args.frames}x{args.size}x{args.size}"
    print(f"# world engine, {clip} clips | torch {torch.__version__} | {name} | "
          f"cpu threads {torch.get_num_threads()} | {datetime.date.today()}")  # fmt: skip
    print("| device | batch | anti-aliasing | clips/s |")
    print("|---|---|---|---|")
    for device in devices:
        batches = args.batches or ([1, 4] if device == "cpu" else [64, 256])
        clips = args.clips or (20 if device == "cpu" else 1024)
        for batch in batches:
            for aa in (True, False):
                rate = clips_per_second(device, batch, clips, args.size, args.frames, aa, args.max_rays)
                print(f"| {device} | {batch} | {'on' if aa else 'off'} | {rate:.1f} |", flush=True)


if __name__ == "__main__":
    main()
