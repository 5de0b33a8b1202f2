"""CPU benchmark of the causal video VAE: time and peak memory of encode/decode.

    python bench/bench_vae.py [--preset s] [--threads 2]

Each measurement runs in a fresh subprocess. Peak memory there is `ru_maxrss` after the call minus
`ru_maxrss` after imports, model build and input creation: torch's CPU allocations are invisible to
tracemalloc, and a fresh process keeps one case's peak from hiding the next's. Time is one call's wall
clock, of the first call (cold: it includes oneDNN's one-off setup per shape) and of a second one
(warm; skipped where the first took over 20 s).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import time

# name -> (what, frames T, height, width, chunked, tile): tile "auto" = decode_latents' own choice
CASES: dict[str, tuple[str, int, int, int, bool, str | None]] = {
    "encode 33x128x128 chunked": ("encode", 33, 128, 128, True, None),
    "encode 33x128x128 whole": ("encode", 33, 128, 128, False, None),
    "decode 33x128x128 chunked": ("decode", 33, 128, 128, True, None),
    "decode 129x128x128 chunked": ("decode", 129, 128, 128, True, None),
    "decode 33x128x128 whole": ("decode", 33, 128, 128, False, None),
    "decode_latents 1x2048x2048 tiled": ("decode", 1, 2048, 2048, True, "auto"),
}


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            names = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
        return f"{names[0]} ({len(names)} logical CPUs)"
    except (OSError, IndexError):
        return platform.processor() or platform.machine()


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def run_case(name: str, preset: str, threads: int) -> dict[str, float]:
    """Run one case in this process; return seconds and peak MiB above the baseline."""
    import torch

    from tessera.config import get_preset
    from tessera.models.vae import VideoVAE

    torch.set_num_threads(threads)
    what, t, h, w, chunked, tile = CASES[name]
    vae = VideoVAE(get_preset(preset).vae).eval()
    g = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        if what == "encode":
            x = torch.rand(1, 3, t, h, w, generator=g) * 2 - 1
            run = lambda: vae.encode(x, chunked=chunked)
        else:
            t_z, s = 1 + (t - 1) // vae.time_factor, vae.space_factor
            z = torch.randn(1, vae.cfg.z_channels, t_z, h // s, w // s, generator=g)
            run = (
                (lambda: vae.decode_latents(z))
                if tile == "auto"
                else (lambda: vae.decode(z, chunked=chunked))
            )
        base = _peak_mib()
        start = time.perf_counter()
        out = run()
        cold = time.perf_counter() - start
        peak = _peak_mib() - base  # from the first call alone
        del out
        warm = float("nan")
        if cold < 20:  # a second, warm call only where it is cheap
            start = time.perf_counter()
            run()
            warm = time.perf_counter() - start
    return {"cold_s": cold, "warm_s": warm, "peak_mib": peak, "baseline_mib": base}


def main() -> None:
    """Run every case in its own subprocess and print a table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="s")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--case", help="internal: run one case and print JSON")
    args = ap.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case, args.preset, args.threads)))
        return

    import torch

    load_before = os.getloadavg()[0]
    results = {}
    for name in CASES:
        cmd = [
            sys.executable,
            __file__,
            "--case",
            name,
            "--preset",
            args.preset,
            "--threads",
            str(args.threads),
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        results[name] = json.loads(out.strip().splitlines()[-1])

    print(f"# VAE benchmark, preset '{args.preset}', {args.threads} CPU threads")
    print(f"# device: {_cpu_name()}, torch {torch.__version__}, ", end="")
    print(f"python {platform.python_version()}, {datetime.date.today().isoformat()}")
    load_after = os.getloadavg()[0]
    print(f"# 1-min load average before/after: {load_before:.1f}/{load_after:.1f} (other jobs slow timings)")
    print(f"| {'case':<34} | {'cold (s)':>8} | {'warm (s)':>8} | {'peak above baseline (MiB)':>25} |")
    print(f"|{'-' * 36}|{'-' * 10}|{'-' * 10}|{'-' * 27}|")
    for name, r in results.items():
        print(f"| {name:<34} | {r['cold_s']:>8.2f} | {r['warm_s']:>8.2f} | {r['peak_mib']:>25.0f} |")
    bases = [r["baseline_mib"] for r in results.values()]
    print(f"baseline (after imports, model build, input): {min(bases):.0f}-{max(bases):.0f} MiB")
    p33 = results["decode 33x128x128 chunked"]["peak_mib"]
    p129 = results["decode 129x128x128 chunked"]["peak_mib"]
    change = 100 * (p129 / p33 - 1)
    print(f"\nchunked decode peak, 129 vs 33 frames: {p129:.0f} vs {p33:.0f} MiB ({change:+.1f}%)")
    out_mib = 4 * 3 * (129 - 33) * 128 * 128 / 2**20
    print(f"(of which the larger output tensor itself: {out_mib:.0f} MiB)")


if __name__ == "__main__":
    main()
