"""Training the captioner on world clips and their detailed captions, top to bottom.

1. A BPE tokenizer is trained on the captions of `tokenizer_corpus` train-split scenes.
2. A pool of `pool` train-split clips is rendered on the device (uint8, kept there) at the captioner's
   input size: `frames` frames over the world's 2-second clip (the same scene at a lower frame rate: the
   world's motion is closed form in time, so the clip and its caption are unchanged). With `refresh`,
   every `refresh_every` steps the next `refresh` clips of the pool (in turn) are replaced by scenes never
   drawn before, so a long run sees many more scenes than the pool holds (`pool_scenes`).
3. Each step draws `batch_size` pool clips (seeded by (seed, step), so a resumed run draws the same
   batches from the same pool) and takes one AdamW step on the teacher-forced next-token loss.
4. Checkpoints: `RUN/model/` (a captioner folder) and `RUN/state/` (weights, optimizer, step), each by
   one atomic rename; `resume=True` continues from `RUN/state/`.
5. At the end the captioner is scored (greedy and beam) on unseen train-split clips and on the held-out
   split (`metrics.py`); the scores go to `RUN/metrics.json` and `RUN/model/metrics.json`.

On the H100: `tessera train captioner --out runs/captioner --preset s-hybrid --device cuda`; a run's
scores again, on any device: `tessera train eval-captioner runs/captioner/model`.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from tessera.caption.metrics import material_visible, score, summarise
from tessera.caption.model import CAPTIONER_PRESETS, Captioner, CaptionerConfig, caption_loss
from tessera.caption.weights import CaptionerBundle, caption_clips, load_captioner, save_captioner
from tessera.checkpoint import flatten, load_state, lr_at, save_state, unflatten
from tessera.files import atomic_write_text
from tessera.models.text import Tokenizer
from tessera.requests import pick_device
from tessera.seeding import generator
from tessera.world import WorldConfig, WorldSampler, caption_corpus, detailed_caption, render
from tessera.world.dataset import scene_seed

CLIP_SECONDS = 2.0  # the world's default clip: 33 frames at 16 fps


@dataclass(frozen=True)
class CaptionerTrainConfig:
    """Captioner training run; `pool` distinct clips are rendered once and revisited."""

    preset: str = "s"
    steps: int = 4000
    batch_size: int = 64
    lr: float = 5e-4
    warmup: int = 200
    weight_decay: float = 0.05
    pool: int = 20000
    refresh: int = 0  # pool clips replaced by new scenes every `refresh_every` steps; 0 = a fixed pool
    refresh_every: int = 20
    render_batch: int = 256
    tokenizer_corpus: int = 4000
    seed: int = 0
    eval_clips: int = 256
    beam_clips: int = 32
    ckpt_every: int = 1000
    log_every: int = 100
    time_limit_min: float = 0.0  # stop training (checkpoint, evaluate) after this many minutes; 0 = none
    device: str = "auto"


def world_clips(
    cfg: CaptionerConfig, split: str, seeds: list[int], device: torch.device, render_batch: int = 256
):
    """Render the scenes of `seeds` at the captioner's input: uint8 (N, F, S, S, 3) on `device`, and
    the scenes."""
    world = WorldConfig(frames=cfg.frames, fps=max(cfg.frames - 1, 1) / CLIP_SECONDS)
    sampler = WorldSampler(world, split)
    scenes = [sampler.sample(s) for s in seeds]
    frames = torch.empty(len(scenes), cfg.frames, cfg.size, cfg.size, 3, dtype=torch.uint8, device=device)
    for start in range(0, len(scenes), render_batch):
        chunk = scenes[start : start + render_batch]
        frames[start : start + len(chunk)] = render(chunk, (cfg.size, cfg.size), device).frames
    return frames, scenes


def eval_seeds(count: int, seed: int = 0) -> list[int]:
    """The scene seeds of the evaluation clips (one list for both splits; never drawn in training)."""
    return [scene_seed(seed + 1_000_003, 7, i) for i in range(count)]


def pool_scenes(cfg: CaptionerTrainConfig, step: int, slots: range | None = None) -> list[int]:
    """The train-split scene index each pool slot (of `slots`, default all) holds when step `step` runs.

    Slot j starts with scene j. Refresh k (at step k * refresh_every, k >= 1) gives chunk (k - 1) mod
    (pool / refresh) of `refresh` slots their next scenes; slot j's g-th scene is j + g * pool, so no scene
    comes twice, and the pool at any step follows from the step alone (a resumed run renders it again).
    """
    refreshes = step // cfg.refresh_every if cfg.refresh else 0
    chunks = cfg.pool // cfg.refresh if cfg.refresh else 1
    out = []
    for j in slots if slots is not None else range(cfg.pool):
        c = j // cfg.refresh if cfg.refresh else 0
        out.append(j + cfg.pool * ((refreshes - 1 - c) // chunks + 1 if refreshes > c else 0))
    return out


def refreshed_slots(cfg: CaptionerTrainConfig, step: int) -> range:
    """The pool slots that get new scenes just before step `step` runs (empty at most steps)."""
    if not cfg.refresh or step == 0 or step % cfg.refresh_every:
        return range(0)
    chunk = (step // cfg.refresh_every - 1) % (cfg.pool // cfg.refresh)
    return range(chunk * cfg.refresh, (chunk + 1) * cfg.refresh)


def _render_pool(cfg: CaptionerTrainConfig, mcfg: CaptionerConfig, tokenizer: Tokenizer, step: int,
                 slots: range, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """Frames, caption ids and mask of pool `slots` as they stand at `step`; captions padded to
    `max_len`, so refreshed rows fit the pool's tensors."""
    seeds = [scene_seed(cfg.seed, 0, i) for i in pool_scenes(cfg, step, slots)]
    frames, scenes = world_clips(mcfg, "train", seeds, device, cfg.render_batch)
    ids, mask = tokenizer.encode([detailed_caption(s) for s in scenes], mcfg.max_len)
    pad = mcfg.max_len - ids.shape[1]
    ids = torch.nn.functional.pad(ids, (0, pad), value=tokenizer.pad_id)
    return frames, ids.to(device), torch.nn.functional.pad(mask, (0, pad)).to(device)


def train_captioner(cfg: CaptionerTrainConfig, out: str, resume: bool = False) -> dict:
    """Train (or resume) a captioner run in folder `out`; returns {"step", "loss", "metrics"}."""
    run, device, t0 = Path(out), pick_device(cfg.device), time.monotonic()
    if cfg.preset not in CAPTIONER_PRESETS:
        raise ValueError(
            f"unknown captioner preset '{cfg.preset}'; choose one of {', '.join(CAPTIONER_PRESETS)}"
        )
    if cfg.refresh and (cfg.refresh < 0 or cfg.pool % cfg.refresh or cfg.refresh_every < 1):
        raise ValueError(
            f"refresh must divide pool and refresh_every be at least 1; got refresh={cfg.refresh}, "
            f"pool={cfg.pool}, refresh_every={cfg.refresh_every}"
        )
    if (run / "state").exists() and not resume:
        raise ValueError(f"{run} already holds a captioner run; resume it or pick a new folder")
    run.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run / "train_config.json", json.dumps(asdict(cfg), indent=2))
    mcfg = CAPTIONER_PRESETS[cfg.preset]
    tokenizer = Tokenizer.train(caption_corpus(cfg.tokenizer_corpus, cfg.seed), mcfg.vocab_size)
    mcfg = CaptionerConfig(**{**mcfg.to_dict(), "vocab_size": tokenizer.vocab_size})
    torch.manual_seed(cfg.seed)
    model = Captioner(mcfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.98), weight_decay=cfg.weight_decay)
    step = 0
    if resume:
        tensors, meta = load_state(run / "state")
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        opt.load_state_dict(unflatten(meta["optimizer"], tensors))
        step = meta["step"]
    start = step
    frames, ids, mask = _render_pool(cfg, mcfg, tokenizer, step, range(cfg.pool), device)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    fresh = f", {cfg.refresh} new every {cfg.refresh_every} steps" if cfg.refresh else ""
    print(f"captioner: {params:.1f}M params, pool of {cfg.pool} clips{fresh} "
          f"rendered in {time.monotonic() - t0:.0f}s", flush=True)  # fmt: skip
    loss = float("nan")
    deadline = t0 + 60 * cfg.time_limit_min if cfg.time_limit_min > 0 else None
    bundle = CaptionerBundle(model, tokenizer)
    while step < cfg.steps and (deadline is None or time.monotonic() < deadline):
        slots = refreshed_slots(cfg, step)
        if slots and step > start:  # a resumed run's first pool already holds them
            rows = slice(slots.start, slots.stop)
            frames[rows], ids[rows], mask[rows] = _render_pool(cfg, mcfg, tokenizer, step, slots, device)
        loss = _step(model, opt, cfg, step, frames, ids, mask)
        step += 1
        if step % cfg.log_every == 0:
            print(f"step {step} loss {loss:.4f} ({time.monotonic() - t0:.0f}s)", flush=True)
        if step % cfg.ckpt_every == 0:
            _checkpoint(run, bundle, opt, step)
    _checkpoint(run, bundle, opt, step)
    minutes = (time.monotonic() - t0) / 60
    metrics = evaluate(bundle, cfg, device)
    metrics |= {
        "steps": step,
        "final_loss": loss,
        "train_pool": cfg.pool,
        "minutes": minutes,
        "device": str(device),
    }
    save_captioner(bundle, run / "model", metrics, card=_card(cfg, metrics))
    atomic_write_text(run / "metrics.json", json.dumps(metrics, indent=2))
    return {"step": step, "loss": loss, "metrics": metrics}


def train_command(out: str | Path | None, resume: str | Path | None, **flags) -> str:
    """`tessera train captioner`: a new run in `out` from the flags given (None = the default), or the run
    `resume` continued under its own config with the given flags changed (e.g. more steps). Returns the
    scores as a table and the step reached."""
    if (out is None) == (resume is None):
        raise ValueError("give --out RUN for a new captioner run or --resume RUN to continue one")
    flags = {k: v for k, v in flags.items() if v is not None}
    base: dict = {}
    if resume is not None:
        saved = Path(resume) / "train_config.json"
        if not saved.is_file():
            raise ValueError(f"{resume}: not a captioner run folder (no train_config.json)")
        base = json.loads(saved.read_text())
    cfg = CaptionerTrainConfig(**{**base, **flags})
    result = train_captioner(cfg, str(out if out is not None else resume), resume=resume is not None)
    return f"{metrics_table(result['metrics'])}\ncaptioner run stopped at step {result['step']}"


def eval_command(
    captioner: str | Path,
    clips: int,
    beam_clips: int,
    device: str = "auto",
    out: str | Path | None = None,
    pool_clips: int = 0,
) -> str:
    """`tessera train eval-captioner`: `evaluate` a captioner folder on `clips` clips per split (the first
    `beam_clips` also with beam search) and, with `pool_clips`, greedy on that many of the first clips a
    seed-0 run trains on; the scores as a table, and as JSON into `out` if given."""
    if clips < 1 or not 0 <= beam_clips <= clips or pool_clips < 0:
        raise ValueError(
            f"need clips >= 1, 0 <= beam-clips <= clips and pool-clips >= 0; got {clips}, {beam_clips} "
            f"and {pool_clips}"
        )
    dev = pick_device(device)
    cfg = CaptionerTrainConfig(eval_clips=clips, beam_clips=beam_clips)
    metrics = evaluate(load_captioner(captioner, dev), cfg, dev, pool_clips)
    if out is not None:
        atomic_write_text(Path(out), json.dumps(metrics, indent=2))
    return metrics_table(metrics)


def _step(model: Captioner, opt, cfg: CaptionerTrainConfig, step: int, frames, ids, mask) -> float:
    g = generator(cfg.seed, "captioner-batch", step)
    idx = torch.randint(0, frames.shape[0], (cfg.batch_size,), generator=g).to(frames.device)
    video = frames[idx].permute(0, 4, 1, 2, 3).float() / 127.5 - 1.0  # (B, 3, F, S, S)
    for group in opt.param_groups:
        group["lr"] = lr_at(step, cfg.lr, cfg.warmup, cfg.steps, "cosine", 0.1)
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=video.is_cuda):
        loss = caption_loss(model, video, ids[idx], mask[idx])
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return float(loss.detach())


def _checkpoint(run, bundle: CaptionerBundle, opt, step: int) -> None:
    tensors = {f"model.{k}": v for k, v in bundle.model.state_dict().items()}
    skeleton = flatten(opt.state_dict(), "optim", tensors)
    save_captioner(bundle, run / "model")
    save_state(run / "state", tensors, {"step": step, "optimizer": skeleton})


def evaluate(
    bundle: CaptionerBundle, cfg: CaptionerTrainConfig, device: torch.device, pool_clips: int = 0
) -> dict:
    """Scores on unseen train-split clips and on the held-out split, greedy, and with beam search on
    the first `beam_clips` of each; material accuracy also on the objects whose material shows. With
    `pool_clips`, also greedy on the first clips of `cfg.seed`'s training pool ("pool_greedy": the gap
    to "train_greedy" is what the captioner learned by heart)."""
    bundle.model.eval()
    out: dict = {}
    unseen = eval_seeds(cfg.eval_clips, cfg.seed)
    pool = [scene_seed(cfg.seed, 0, i) for i in range(pool_clips)]
    for name, split, seeds in (
        ("train", "train", unseen),
        ("heldout", "heldout", unseen),
        ("pool", "train", pool),
    ):
        if not seeds:
            continue
        frames, scenes = world_clips(bundle.cfg, split, seeds, device, cfg.render_batch)
        visible = material_visible(scenes, frames, batch=cfg.render_batch)
        clips = list(frames)
        greedy_caps = caption_clips(bundle, clips, beams=1, batch_size=64)
        out[f"{name}_greedy"] = summarise(
            sum((score(*x) for x in zip(greedy_caps, scenes, visible, strict=True)), Counter())
        )
        n = min(cfg.beam_clips, len(clips)) if name != "pool" else 0
        if n:
            beam_caps = caption_clips(bundle, clips[:n], beams=4)
            out[f"{name}_beam4"] = summarise(
                sum((score(*x) for x in zip(beam_caps, scenes[:n], visible[:n], strict=True)), Counter())
            )
            triples = zip(scenes[:3], greedy_caps, beam_caps, strict=False)
            out[f"{name}_examples"] = [
                {"truth": detailed_caption(s), "greedy": g, "beam4": b} for s, g, b in triples
            ]
    bundle.model.train()
    return out


def metrics_table(metrics: dict) -> str:
    """The scores of `evaluate` as a markdown table, one row per split and decoding."""
    cols = ("attribute_f1", "shape_f1", "colour_f1", "size_f1", "material_f1", "material_seen_accuracy",
            "motion_accuracy", "camera_accuracy")  # fmt: skip
    rows = [f"| {k} | " + " | ".join(f"{v.get(c, float('nan')):.3f}" for c in cols) + f" | {v['clips']} |"
            for k, v in metrics.items() if isinstance(v, dict) and "attribute_f1" in v]  # fmt: skip
    return "\n".join([
        "| eval | attribute F1 | shape | colour | size | material | material acc. where shown | motion acc. "
        "| camera acc. | clips |",
        "|---|---|---|---|---|---|---|---|---|---|", *rows,
    ])  # fmt: skip


def _card(cfg: CaptionerTrainConfig, metrics: dict) -> str:
    return "\n".join([
        "# tessera captioner", "",
        f"Video-to-text captioner (preset `{cfg.preset}`) trained from scratch on {cfg.pool} world clips "
        f"and their detailed captions, {metrics['steps']} steps of batch {cfg.batch_size} "
        f"on {metrics['device']} "
        f"({metrics['minutes']:.1f} min).", "", metrics_table(metrics), "",
    ])  # fmt: skip
