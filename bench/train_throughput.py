"""GPU benchmark of DiT training: matmul peak, training tokens/s and MFU, and forward time beside
diffusers' `WanTransformer3DModel` (random weights, the same shape).

    python bench/train_throughput.py                       # H100: s and wan-1.3b at 81x480x832
    python bench/train_throughput.py --only forward        # just the forward comparison
    python bench/train_throughput.py --device cpu --presets tiny --frames 9 --height 32 --width 32 \
        --text-len 8 --steps 2 --no-compile               # a CPU smoke run of the script itself

Prints one table with the device, versions and date. Definitions:
- peak: the best bf16 matmul throughput measured here (square matmuls of a few sizes), not the data sheet.
- training step: bf16 autocast forward + backward of the DiT on one clip of the given size (text of
  `--text-len` tokens, the conditioning channels filled) + gradient clipping + fused AdamW on fp32 master
  weights; the time is the median over `--steps` steps after warm-up.
- MFU = 3 x forward FLOPs (`dit_flops`: matmuls and attention; recomputation not counted) / step time
  / peak. When a step does not fit in memory it is retried with more of the blocks checkpointed (the
  "ckpt" column: the fraction of blocks that recompute their activations; recomputation is not counted).
  `--checkpoint-mode selective` keeps the attention outputs of checkpointed blocks and recomputes the
  rest (the "ckpt" column then reads "0.5 sel"); `--checkpoint-mode full,selective` runs both searches
  and prints the step-time ratio of the first mode to each other one, measured in the same process.
- `--memory-budget 0.5,0.3`: instead of whole blocks, let the compiler choose what each compiled block
  recomputes (torch's activation memory budget: 1 keeps what the default partitioner keeps, 0 recomputes
  all it can; it drops the activations that are cheapest to recompute per byte first, so attention
  outputs are kept and matmul and pointwise outputs go); tried in order until one fits, no block
  checkpointing ("ckpt" shows "budget B").
- `--profile` prints the top kernels of one more training step of each configuration that fits.
- forward: bf16 weights, inference mode, both models compiled with `torch.compile` (or both eager);
  ratio = diffusers time / ours (above 1 means ours is faster). Wan's text width is 4096 (umT5) and
  ours is the preset's; both see `--text-len` text tokens.

diffusers is not a dependency: install it from a wheel first (`pip install --no-deps .whl/diffusers-*.whl`)
or pass `--no-diffusers`.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import platform

import torch
import torch._functorch.config  # the activation memory budget (--memory-budget)
from timing import matmul_peak, sync, timed

from tessera.config import get_preset
from tessera.models.dit import DiT, dit_flops


def latent_inputs(cfg, frames: int, height: int, width: int, text_len: int, device, dtype=torch.float32):
    """Random latents (1, C, T_z, H/8, W/8), per-frame t, text, mask and cond for the DiT."""
    t_z, h, w = 1 + (frames - 1) // 4, height // 8, width // 8
    g = dict(device=device, dtype=dtype)
    x = torch.randn(1, cfg.in_channels, t_z, h, w, **g)
    cond = torch.randn(1, cfg.cond_channels, t_z, h, w, **g)
    t = torch.rand(1, t_z, device=device)
    text = torch.randn(1, text_len, cfg.text_dim, **g)
    mask = torch.ones(1, text_len, dtype=torch.bool, device=device)
    pt, ph, pw = cfg.patch
    return x, t, text, mask, cond, (t_z // pt) * (h // ph) * (w // pw)


def train_bench(
    preset: str,
    args,
    device: torch.device,
    peak: float,
    checkpointing: float,
    budget: float = 1.0,
    mode: str = "full",
) -> dict:
    """One training configuration; {"oom": True} when it does not fit. `budget`: the compiler's
    activation memory budget for each block (compiled runs only); `mode`: the DiT's checkpoint_mode."""
    cfg = get_preset(preset).dit
    dit = DiT(cfg).to(device).checkpointed(float(checkpointing), mode)
    if args.compile:
        torch._dynamo.reset()  # compiled blocks are reused across DiT instances: recompile for this budget
        torch._functorch.config.activation_memory_budget = budget
        for block in dit.blocks:
            block.compile()
    fused = device.type == "cuda"
    opt = torch.optim.AdamW(dit.parameters(), lr=1e-4, fused=fused)
    x0, t, text, mask, cond, tokens = latent_inputs(
        cfg, args.frames, args.height, args.width, args.text_len, device
    )
    noise = torch.randn_like(x0)
    x_t = (1 - t[:, None, :, None, None]) * x0 + t[:, None, :, None, None] * noise
    target = noise - x0

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            v = dit(x_t, t, text, mask, cond)
        loss = (v.float() - target).square().mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(dit.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    try:
        s = timed(step, device, warmup=2, iters=args.steps)
    except torch.OutOfMemoryError:
        return {"oom": True}
    if args.profile:  # one more step under the profiler: its kernels, most GPU time first
        with torch.profiler.profile() as prof:
            step()
            sync(device)
        key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
        print(prof.key_averages().table(sort_by=key, row_limit=15, max_name_column_width=70), flush=True)
    flops = 3 * dit_flops(cfg, tokens, args.text_len)
    peak_mem = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    params = sum(p.numel() for p in dit.parameters())
    return dict(
        preset=preset, tokens=tokens, params_m=params / 1e6, step_s=s, tokens_per_s=tokens / s,
        tflops=flops / s / 1e12, mfu=flops / s / peak, peak_gib=peak_mem, checkpointing=checkpointing,
        budget=budget,
    )  # fmt: skip


def fractions(arg: str, name: str = "--checkpointing") -> list[float]:
    """--checkpointing -> the fractions of checkpointed blocks to try, in order, until one fits (or
    --memory-budget -> the budgets)."""
    named = {"auto": [0.0, 0.25, 0.5, 0.75, 1.0], "on": [1.0], "off": [0.0]}
    if arg in named:
        return named[arg]
    try:
        values = [float(v) for v in arg.split(",")]
    except ValueError:
        raise SystemExit(f"{name}: auto, on, off or fractions like 0.5,1; got '{arg}'") from None
    if not all(0 <= v <= 1 for v in values):
        raise SystemExit(f"{name} fractions must be in [0, 1]; got '{arg}'")
    return values


def free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def forward_ours(args, device: torch.device) -> float:
    """Seconds per forward of our DiT (wan-1.3b preset) in bf16."""
    cfg = get_preset(args.forward_preset).dit
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    dit = DiT(cfg).to(device, dtype).eval()
    x, t, text, mask, cond, _ = latent_inputs(
        cfg, args.frames, args.height, args.width, args.text_len, device, dtype
    )
    fn = torch.compile(dit) if args.compile else dit
    with torch.inference_mode():
        return timed(lambda: fn(x, t, text, mask, cond), device, warmup=2, iters=args.steps)


def forward_diffusers(args, device: torch.device) -> float:
    """Seconds per forward of diffusers' WanTransformer3DModel with Wan 2.1 1.3B's shape in bf16."""
    from diffusers import WanTransformer3DModel

    cfg = get_preset(args.forward_preset).dit
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    model = WanTransformer3DModel(
        patch_size=cfg.patch, num_attention_heads=cfg.heads, attention_head_dim=cfg.dim // cfg.heads,
        in_channels=cfg.in_channels, out_channels=cfg.in_channels, text_dim=4096, freq_dim=cfg.freq_dim,
        ffn_dim=cfg.ffn_dim, num_layers=cfg.depth, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
        eps=cfg.eps,
    ).to(device, dtype).eval()  # fmt: skip
    t_z, h, w = 1 + (args.frames - 1) // 4, args.height // 8, args.width // 8
    x = torch.randn(1, cfg.in_channels, t_z, h, w, device=device, dtype=dtype)
    timestep = torch.tensor([500], device=device)
    text = torch.randn(1, args.text_len, 4096, device=device, dtype=dtype)
    fn = torch.compile(model) if args.compile else model
    call = lambda: fn(hidden_states=x, timestep=timestep, encoder_hidden_states=text, return_dict=False)
    with torch.inference_mode():
        return timed(call, device, warmup=2, iters=args.steps)


def header(device: torch.device) -> list[str]:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    return [
        f"# tessera train throughput, {datetime.datetime.now().isoformat(timespec='seconds')}",
        f"device: {name}; torch {torch.__version__}; python {platform.python_version()}",
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", default="s,wan-1.3b")
    p.add_argument("--forward-preset", default="wan-1.3b")
    p.add_argument("--frames", type=int, default=81)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--width", type=int, default=832)
    p.add_argument("--text-len", type=int, default=512)
    p.add_argument("--steps", type=int, default=5, help="timed iterations (after 2 warm-up ones)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--only", choices=("all", "train", "forward"), default="all")
    p.add_argument(
        "--checkpointing",
        default="auto",
        help="auto (the smallest fraction of checkpointed blocks that fits: 0, 0.25, 0.5, 0.75, 1), on, off, "
        "or a comma-separated list of fractions to try in order",
    )
    p.add_argument(
        "--checkpoint-mode",
        default="full",
        help="full, selective, or both as 'full,selective' (each searched, then their step-time ratio)",
    )
    p.add_argument(
        "--memory-budget",
        help="comma-separated activation memory budgets in [0, 1] to try in order, with no block "
        "checkpointing (compiled runs only; replaces --checkpointing)",
    )
    p.add_argument("--profile", action="store_true", help="print the top kernels of one training step")
    p.add_argument("--no-compile", dest="compile", action="store_false")
    p.add_argument("--no-diffusers", dest="diffusers", action="store_false")
    p.add_argument("--json", help="also write the results to this file")
    args = p.parse_args()
    if args.memory_budget and not args.compile:
        p.error("--memory-budget needs compiled blocks; drop --no-compile")
    modes = args.checkpoint_mode.split(",")
    if not modes or set(modes) - {"full", "selective"}:
        p.error(f"--checkpoint-mode: full, selective or full,selective; got '{args.checkpoint_mode}'")
    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = True
    lines = header(device)
    results: dict = {"args": vars(args)}
    peak = matmul_peak(device)
    results["peak_tflops"] = peak / 1e12
    lines.append(f"measured bf16 matmul peak: {peak / 1e12:.0f} TFLOP/s")
    print("\n".join(lines), flush=True)

    if args.only in ("all", "train"):
        results["train"] = []
        cols = ("preset", "tokens", "params", "ckpt", "step s", "tokens/s", "TFLOP/s", "MFU", "peak GiB")
        print(f"\n| {' | '.join(cols)} |\n|{'---|' * len(cols)}")
        ratios = []
        for preset in args.presets.split(","):
            if args.memory_budget:
                tries = [(0.0, b) for b in fractions(args.memory_budget, "--memory-budget")]
            else:
                tries = [(f, 1.0) for f in fractions(args.checkpointing)]
            fitted = {}
            for mode in modes:
                for ckpt, budget in tries:
                    r = train_bench(preset, args, device, peak, ckpt, budget, mode)
                    free(device)
                    what = f"budget {budget:g}" if args.memory_budget else f"{ckpt:g}"
                    what += " sel" if mode == "selective" and ckpt else ""
                    if not r.get("oom"):
                        break
                    print(f"| {preset} | out of memory with checkpointing {what} |", flush=True)
                results["train"].append(r | {"mode": mode})
                if not r.get("oom"):
                    fitted[mode] = r["step_s"]
                    print(
                        f"| {preset} | {r['tokens']} | {r['params_m']:.0f}M | {what} | "
                        f"{r['step_s']:.3f} | {r['tokens_per_s']:.0f} | {r['tflops']:.0f} | "
                        f"{100 * r['mfu']:.1f}% | {r['peak_gib']:.1f} |",
                        flush=True,
                    )
            if modes[0] in fitted:
                ratios += [(preset, m, fitted[modes[0]] / s) for m, s in fitted.items() if m != modes[0]]
        for preset, mode, ratio in ratios:
            print(f"{preset}: step time {modes[0]} / {mode} = {ratio:.2f} (above 1: {mode} is faster)")

    if args.only in ("all", "forward"):
        mode = "compiled" if args.compile else "eager"
        ours = forward_ours(args, device)
        free(device)
        results["forward"] = {"ours_s": ours, "mode": mode}
        print(f"\nforward {args.forward_preset} at {args.frames}x{args.height}x{args.width}, {mode}:")
        print(f"  ours: {1000 * ours:.1f} ms", flush=True)
        if args.diffusers:
            try:
                theirs = forward_diffusers(args, device)
            except ImportError as e:
                print(f"  diffusers: not installed ({e}); install its wheel or pass --no-diffusers")
            else:
                results["forward"] |= {"diffusers_s": theirs, "ratio": theirs / ours}
                print(f"  diffusers WanTransformer3DModel: {1000 * theirs:.1f} ms")
                print(f"  ratio diffusers / ours: {theirs / ours:.2f} (above 1: ours is faster)")
            free(device)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
