"""Wan 2.1 in tessera beside diffusers, on random weights at the real 1.3B shape, in one process.

    python bench/bench_wan.py                 # H100: everything at 81x480x832, 50 steps end to end
    python bench/bench_wan.py --quick         # the same comparisons in a few minutes (see below)
    python bench/bench_wan.py --tiny          # CPU smoke run of the script at tiny shapes

Both sides get the same random weights: diffusers' modules are built first and tessera's are converted
from them (`tessera.wan`), so every comparison also checks that the outputs agree (max |difference|).
- DiT forward: one clip at FRAMESxHEIGHTxWIDTH, 512 text tokens, bf16, inference mode (`--grad-modes
  inference,no_grad` adds a row under no_grad, as `WanPipeline` runs), both compiled (`module.compile()`;
  `--no-compile`: both eager); the median of `--iters` calls after two warm-ups.
  ratio = diffusers time / tessera time (above 1: tessera is faster).
- VAE decode: Wan's VAE (random weights, Wan's config) decoding clips of each length in `--lengths`, bf16,
  one call after a warm-up call on the shortest clip; frames/s and the peak GPU memory above the resident
  weights (`max_memory_allocated`). tessera decodes in chunks of `--vae-chunks` pixel frames (Wan's own
  loop is 4; any multiple of 4 gives the same result; "16cl": chunks of 16 with the convolution weights
  in channels-last layout, which cuDNN's tensor-core kernels prefer; "bm": cuDNN's autotuner on, with a
  row of diffusers under the autotuner too; "f": every causal conv as one 2D conv over frames with the
  time taps stacked as channels, `tessera.models.vae.frame_conv`), diffusers in its own loop.
- End to end: text encoding (a random umT5-XXL, 512 tokens; a word-level tokenizer built here, since
  nothing is downloaded), `--steps` Euler steps with guidance 5 and a negative prompt, and decoding, at
  FRAMESxHEIGHTxWIDTH; wall time and the peak GPU memory of the whole call, weights included. tessera
  runs as `tessera generate` would on a GPU: bf16 weights, the text encoder kept on the CPU and brought to
  the GPU only to encode, the VAE in its default chunks (8 frames) when `--vae-chunks` has them;
  diffusers as `WanPipeline` with every module on the GPU. A second run of each
  times every DiT call alone (the device waited for before and after), so the table also gives the DiT's
  seconds a step inside the pipelines: diffusers calls it once per guidance branch, tessera once with
  both branches as a batch of two.
`--quick`: DiT forward 3 iterations, decode lengths 17 and 81, end to end at 10 steps (the table says so).
Each part runs even if another fails (its row reads "failed: ...").
"""

from __future__ import annotations

import argparse
import datetime
import gc
import platform
import time
import traceback

import torch
from timing import sync, timed

TEXT_LEN = 512
WORDS = "a red fox runs through snow in the forest at dawn blurry low quality static".split()


def wan_shape(tiny: bool) -> dict:
    """diffusers' configs: Wan 2.1 1.3B (transformer, VAE, umT5-XXL) or tiny ones for the CPU run."""
    if tiny:
        return dict(
            transformer=dict(
                num_attention_heads=2, attention_head_dim=12, text_dim=32, freq_dim=16, ffn_dim=32,
                num_layers=2,
            ),
            vae=dict(base_dim=8, z_dim=16, num_res_blocks=1),
            text=dict(vocab_size=64, d_model=32, d_kv=8, d_ff=48, num_layers=2, num_heads=4),
        )  # fmt: skip
    return dict(
        transformer=dict(
            num_attention_heads=12, attention_head_dim=128, text_dim=4096, freq_dim=256, ffn_dim=8960,
            num_layers=30,
        ),
        vae=dict(base_dim=96, z_dim=16, num_res_blocks=2),
        text=dict(vocab_size=256384, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64),
    )  # fmt: skip


def build_transformer(shape: dict, device, dtype):
    from diffusers import WanTransformer3DModel

    torch.manual_seed(0)
    with torch.device(device):
        model = WanTransformer3DModel(
            patch_size=(1, 2, 2), in_channels=16, out_channels=16, cross_attn_norm=True,
            qk_norm="rms_norm_across_heads", eps=1e-6, **shape,
        )  # fmt: skip
    return model.to(dtype).eval()


def tessera_dit(ref, dtype, device):
    from tessera import wan
    from tessera.models.dit import DiT

    cfg = wan.dit_config_from_diffusers(dict(ref.config))
    with torch.device("meta"):
        dit = DiT(cfg)
    dit.load_state_dict(wan.dit_from_diffusers(ref.state_dict(), cfg), assign=True)
    return dit.to(device, dtype).eval()


def build_vae(shape: dict, device, dtype):
    from diffusers import AutoencoderKLWan

    torch.manual_seed(1)
    with torch.device(device):
        return AutoencoderKLWan(**shape).to(dtype).eval()


def tessera_vae(ref, dtype, device, chunk: int = 8, channels_last: bool = False, over_frames: bool = False):
    from tessera import wan
    from tessera.models.vae import convs_over_frames
    from tessera.models.wan_vae import WanVAE, from_diffusers

    cfg = wan.vae_config_from_diffusers(dict(ref.config))
    cfg = type(cfg)(**{**cfg.__dict__, "chunk_frames": chunk})
    with torch.device("meta"):
        vae = WanVAE(cfg)
    state = from_diffusers(vae, ref.state_dict())
    state |= wan._latent_stats(ref.config.latents_mean, ref.config.latents_std, cfg.z_channels)
    vae.load_state_dict(state, assign=True)
    vae.to(device).eval()
    for p in vae.parameters():  # the latent statistics stay float32, as `tessera.wan.load` keeps them
        p.data = p.data.to(dtype)
        if channels_last and p.ndim in (4, 5):  # cuDNN's tensor-core kernels prefer channels last
            p.data = p.data.contiguous(
                memory_format=torch.channels_last_3d if p.ndim == 5 else torch.channels_last
            )
    return convs_over_frames(vae, over_frames)


def gib(peak: float) -> str:
    """A peak in GiB for the tables; '-' where none was counted (the CPU has no peak counter)."""
    return f"{peak:.2f} GiB" if peak == peak else "- GiB"


def peak_above(device, fn) -> tuple[object, float, float]:
    """(result, seconds, peak GiB above what was allocated before the call)."""
    cuda = torch.device(device).type == "cuda"
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    sec = time.perf_counter() - t0
    peak = (torch.cuda.max_memory_allocated(device) - base) / 2**30 if cuda else float("nan")
    return out, sec, peak


class Models:
    """Both sides' networks, built once (diffusers' random, tessera's converted from them) and shared by
    the parts, so each compiles once; `place` puts one side on the device and the other on the CPU."""

    def __init__(self, args, shape: dict, device, dtype) -> None:
        self.args, self.shape, self.device, self.dtype = args, shape, device, dtype
        self._cache: dict = {}

    def get(self, name: str):
        if name not in self._cache:
            self._cache[name] = self._build(name)
        return self._cache[name]

    def _build(self, name: str):
        a, d, dt = self.args, self.device, self.dtype
        if name == "ref_dit":
            m = build_transformer(self.shape["transformer"], d, dt)
            if a.compile:
                m.compile()  # in place: the module keeps its class and attributes (WanPipeline reads them)
            return m
        if name == "dit":
            m = tessera_dit(self.get("ref_dit"), dt, d)
            if a.compile:
                m.compile()
            return m
        if name == "ref_vae":
            return build_vae(self.shape["vae"], d, dt)
        if name.startswith("vae"):
            spec = name[3:]
            return tessera_vae(
                self.get("ref_vae"), dt, d, int(spec.rstrip("clbmf")), "cl" in spec, "f" in spec
            )
        if name == "text":
            from transformers import UMT5Config, UMT5EncoderModel

            torch.manual_seed(3)
            with torch.device(d):
                cfg = UMT5Config(feed_forward_proj="gated-gelu", **self.shape["text"])
                return UMT5EncoderModel(cfg).to(dt).eval()
        raise KeyError(name)

    def place(self, on: list[str]) -> None:
        """Move the named networks to the device and every other built one to the CPU."""
        for name, m in self._cache.items():
            m.to(self.device if name in on else "cpu")
        gc.collect()
        if torch.device(self.device).type == "cuda":
            torch.cuda.empty_cache()


def bench_dit(args, models: Models, device, dtype, rows: list) -> None:
    ref, ours = models.get("ref_dit"), models.get("dit")
    models.place(["ref_dit", "dit"])
    t_z, h, w = 1 + (args.frames - 1) // 4, args.height // 8, args.width // 8
    g = torch.Generator(device).manual_seed(0)
    x = torch.randn(1, 16, t_z, h, w, device=device, generator=g).to(dtype)
    text = torch.randn(1, TEXT_LEN, models.shape["transformer"]["text_dim"], device=device, generator=g).to(
        dtype
    )
    mask = torch.ones(1, TEXT_LEN, dtype=torch.bool, device=device)
    t = torch.full((1, t_z), 0.5, device=device)
    timestep = torch.tensor([500.0], device=device)
    for grad in args.grad_modes:
        # WanPipeline runs under no_grad; the timed rows default to inference mode
        with torch.inference_mode() if grad == "inference" else torch.no_grad():
            got = ours(x, t, text, mask).float()
            diff = (got - ref(x, timestep, text, return_dict=False)[0].float()).abs().max().item()
            t_ours = timed(lambda: ours(x, t, text, mask), device, warmup=2, iters=args.iters)
            t_ref = timed(
                lambda: ref(x, timestep, text, return_dict=False), device, warmup=2, iters=args.iters
            )
        mode = ("compiled" if args.compile else "eager") + ("" if grad == "inference" else ", no_grad")
        tokens = t_z * (h // 2) * (w // 2)
        rows.append(
            f"| DiT forward, {mode}, {args.frames}x{args.height}x{args.width} ({tokens:,} tokens) | "
            f"{t_ref:.3f} s | {t_ours:.3f} s | **{t_ref / t_ours:.2f}x** | max diff {diff:.2e} ({dtype}) |"
        )


def bench_vae(args, models: Models, device, dtype, rows: list) -> None:
    ref = models.get("ref_vae")
    ours = {c: models.get(f"vae{c}") for c in args.vae_chunks}
    models.place(["ref_vae", *(f"vae{c}" for c in args.vae_chunks)])
    tuned = lambda spec: torch.backends.cudnn.flags(enabled=True, benchmark="bm" in spec)
    h, w = args.height // 8, args.width // 8
    g = torch.Generator(device).manual_seed(2)
    with torch.inference_mode():
        warm = torch.randn(1, 16, 2, h, w, device=device, generator=g).to(dtype)
        ref.decode(warm)
        for spec, vae in ours.items():
            with tuned(spec):
                vae.decode(warm)
        for frames in args.lengths:
            z = torch.randn(1, 16, 1 + (frames - 1) // 4, h, w, device=device, generator=g).to(dtype)
            want, t_ref, m_ref = peak_above(device, lambda z=z: ref.decode(z).sample)
            cells = []
            if any("bm" in c for c in ours):  # the autotuner is any user's switch: diffusers gets it too
                with tuned("bm"):
                    ref.decode(warm)
                    _, t_bm, m_bm = peak_above(device, lambda z=z: ref.decode(z).sample)
                cells.append(f"diffusers with the autotuner: {frames / t_bm:.1f} fps, {gib(m_bm)}")
            for chunk, vae in ours.items():
                with tuned(chunk):
                    got, t_ours, m_ours = peak_above(device, lambda z=z, vae=vae: vae.decode(z))
                diff = (got.float().clamp(-1, 1) - want.float()).abs().max().item()
                del got
                cells.append(
                    f"chunk {chunk}: {frames / t_ours:.1f} fps, {gib(m_ours)}, "
                    f"**{t_ref / t_ours:.2f}x**, diff {diff:.1e}"
                )
            del want
            rows.append(
                f"| VAE decode {frames}x{args.height}x{args.width} | {frames / t_ref:.1f} fps, "
                f"{gib(m_ref)} | " + "; ".join(cells) + " | | |"
            )


def tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2} | {w: i + 3 for i, w in enumerate(WORDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )


def peak_total(device, fn) -> tuple[float, float]:
    """(seconds, peak GiB allocated during the call, the resident weights included)."""
    _, sec, above = peak_above(device, fn)
    if torch.device(device).type != "cuda":
        return sec, float("nan")
    return sec, torch.cuda.max_memory_allocated(device) / 2**30


class Clocked:
    """A network seen through a stopwatch: every call waits for the device before and after, and adds its
    seconds to `times`; everything else is the network's own (the pipelines read its config and dtype)."""

    def __init__(self, net, device) -> None:
        self.__dict__.update(_net=net, _device=device, times=[])

    def __call__(self, *a, **k):
        sync(self._device)
        t0 = time.perf_counter()
        out = self._net(*a, **k)
        sync(self._device)
        self.times.append(time.perf_counter() - t0)
        return out

    def __getattr__(self, name: str):
        return getattr(self._net, name)


def bench_end_to_end(args, models: Models, device, dtype, rows: list) -> None:
    from diffusers import FlowMatchEulerDiscreteScheduler, WanPipeline

    from tessera import pipeline, wan
    from tessera.checkpoint import Model
    from tessera.config import ModelConfig, WanTextConfig, WanVAEConfig
    from tessera.models.wan_text import WanTextEncoder, WanTokenizer

    prompt, negative = "a red fox runs through snow in the forest at dawn", "blurry low quality static"
    # the default chunk (what `tessera generate` decodes with) if asked for, else the longest plain one
    plain = [c for c in args.vae_chunks if c.isdigit()]
    chunk = str(WanVAEConfig.chunk_frames) if str(WanVAEConfig.chunk_frames) in plain else plain[-1]
    text, tok = models.get("text"), tokenizer()
    ref_dit, ref_vae, dit, vae = (models.get(n) for n in ("ref_dit", "ref_vae", "dit", f"vae{chunk}"))
    size = dict(height=args.height, width=args.width, num_frames=args.frames, max_sequence_length=TEXT_LEN)

    # diffusers: WanPipeline, every module on the GPU
    models.place(["ref_dit", "ref_vae", "text"])
    pipe = WanPipeline(
        tokenizer=tok, text_encoder=text, vae=ref_vae, transformer=ref_dit,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
    )  # fmt: skip
    clock_ref = Clocked(ref_dit, device)
    call = lambda: pipe(
        prompt=prompt, negative_prompt=negative, num_inference_steps=args.steps, guidance_scale=5.0,
        output_type="pt", **size,
    ).frames  # fmt: skip
    with torch.inference_mode():
        pipe(prompt=prompt, negative_prompt=negative, num_inference_steps=1, output_type="latent", **size)
        t_ref, m_ref = peak_total(device, call)
        object.__setattr__(pipe, "transformer", clock_ref)  # a second run, each DiT call timed alone
        call()
        object.__setattr__(pipe, "transformer", ref_dit)

    # tessera: bf16 weights, the text encoder on the CPU but while it encodes
    models.place(["dit", f"vae{chunk}"])
    encoder = WanTextEncoder(text)
    encoder.offload = torch.device(device).type == "cuda"
    text_cfg = WanTextConfig(TEXT_LEN, text.config.d_model)
    config = ModelConfig(vae=vae.cfg, text=text_cfg, dit=dit.cfg, preset=wan.PRESET, flow_shift=3.0)
    model = Model(config, vae, encoder, dit, WanTokenizer(tok))
    t_z = 1 + (args.frames - 1) // 4
    shape = (t_z, args.height // 8, args.width // 8)
    run = lambda: pipeline.generate(
        model, prompt, args.frames, args.height, args.width, steps=args.steps, guidance=5.0,
        negative_prompt=negative,
    )  # fmt: skip
    with torch.inference_mode():
        pipeline.sample_latents(model, prompt, shape, steps=1, guidance=5.0, negative_prompt=negative)
        t_ours, m_ours = peak_total(device, run)
        model.dit = clock = Clocked(dit, device)
        run()
        model.dit = dit
    where = "text encoder offloaded" if encoder.offload else "all on one device"
    per = lambda c: f"{sum(c.times) / args.steps:.3f} s of DiT a step ({len(c.times)} calls)"
    rows.append(
        f"| end to end {args.frames}x{args.height}x{args.width}, {args.steps} steps, CFG, decode | "
        f"{t_ref:.1f} s, peak {gib(m_ref)} | {t_ours:.1f} s, peak {gib(m_ours)} ({where}) | "
        f"**{t_ref / t_ours:.2f}x** | a second run, each DiT call timed: diffusers {per(clock_ref)}, "
        f"tessera {per(clock)} |"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=81)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--width", type=int, default=832)
    p.add_argument("--steps", type=int, default=50, help="end-to-end sampler steps")
    p.add_argument("--iters", type=int, default=5, help="timed DiT forwards (after 2 warm-up ones)")
    p.add_argument("--lengths", default="17,33,49,81", help="VAE decode clip lengths (frames)")
    p.add_argument(
        "--vae-chunks",
        default="4,8,16",
        help="tessera's VAE decode chunk sizes (pixel frames); suffixes: 'cl' weights channels-last, "
        "'bm' cuDNN's autotuner on (torch.backends.cudnn.benchmark) while tessera decodes, "
        "'f' causal convs as 2D convs over frames",
    )
    p.add_argument("--parts", default="dit,vae,e2e")
    p.add_argument(
        "--grad-modes",
        default="inference",
        help="DiT forward under 'inference' (inference_mode), 'no_grad' or both",
    )
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--no-compile", dest="compile", action="store_false")
    p.add_argument("--quick", action="store_true", help="fewer iterations, lengths and steps (minutes)")
    p.add_argument("--tiny", action="store_true", help="tiny random models and shapes on the CPU (smoke run)")
    p.add_argument(
        "--dtype", choices=("bf16", "fp32"), help="weights' type (default: bf16 on CUDA, else fp32)"
    )
    args = p.parse_args()
    if args.tiny:
        args.device, args.compile = "cpu", False
        args.frames, args.height, args.width, args.steps, args.iters = 9, 32, 32, 2, 1
        args.lengths = "5,9"
    if args.quick:
        args.iters, args.steps = min(args.iters, 3), min(args.steps, 10)
        args.lengths = args.lengths if args.tiny else "17,81"
    args.lengths = [int(v) for v in args.lengths.split(",")]
    args.vae_chunks = args.vae_chunks.split(",")
    args.grad_modes = args.grad_modes.split(",")
    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}.get(args.dtype, dtype)
    models = Models(args, wan_shape(args.tiny), device, dtype)

    import diffusers
    import transformers

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    lines = [
        f"# Wan 2.1 1.3B in tessera vs diffusers ({'tiny CPU smoke run' if args.tiny else 'random weights'}) "
        f"{datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}",
        f"device: {name}; torch {torch.__version__}; diffusers {diffusers.__version__}; "
        f"transformers {transformers.__version__}; python {platform.python_version()}; {dtype}",
        "",
        "| what | diffusers | tessera | diffusers / tessera | note |",
        "|---|---|---|---|---|",
    ]
    rows: list[str] = []
    parts = {"dit": bench_dit, "vae": bench_vae, "e2e": bench_end_to_end}
    for part in args.parts.split(","):
        try:
            parts[part](args, models, device, dtype, rows)
        except Exception as e:  # report and go on: one part's failure must not lose the others
            traceback.print_exc()
            rows.append(f"| {part} | failed: {type(e).__name__}: {str(e).splitlines()[0][:120]} | | | |")
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        print("\n".join(lines + rows), flush=True)  # after every part: a later failure loses nothing


if __name__ == "__main__":
    main()
