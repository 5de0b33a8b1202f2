"""DiT training by flow matching, top to bottom.

Each step takes `batch_size` clips (split over ranks) by global sample index and, per clip:
1. picks the caption (detailed, short, or empty with `caption_dropout`, for guidance);
2. encodes the clip to normalised latents x0 with the frozen VAE (or reads them from the latent cache);
3. draws a conditioning task (`tasks.draw_task`): given latent frames sit at t = 0 with no loss, and
   non-prefix given frames reach the DiT through `cond` (masked-video latents + mask channels);
4. draws one t for the clip's other frames (logit-normal, shifted for its token count) and the noise,
   and forms `x_t = (1 - t) x0 + t noise`.
All draws use a generator seeded by (seed, sample index): a resumed run and a run over several ranks
see exactly the same numbers. The text encoder and the DiT then run on the whole batch, packed into
one sequence (per-clip attention) or one call per shape ("bucketed"), and the loss is the squared
error to `v = noise - x0` averaged over every loss frame of the global batch (as `flow_loss` defines);
with `object_weight` (world data) the latent cells under an object weigh more within each frame.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from tessera.checkpoint import Model, lr_at, save_model
from tessera.conditioning import for_task, given_latents
from tessera.config import get_preset
from tessera.data.buckets import Shape, group_by_shape, latent_shape, num_tokens, step_shape
from tessera.data.source import make_source, samples
from tessera.flow.loss import add_noise, flow_loss
from tessera.flow.schedules import sample_t, token_shift
from tessera.parallel import TokenSplit
from tessera.sampling import sample_latents
from tessera.seeding import generator
from tessera.train import distributed
from tessera.train.common import autocast, card, finite, initial_model, optimizer_step, set_lr, ship_model
from tessera.train.config import ConfigError, DiTTrainConfig, parse_shapes, parse_weights
from tessera.train.kept import KeptBatch, KeptSet, encode_clips, encode_conds, object_cells
from tessera.train.logger import Logger, save_sample
from tessera.train.run import StopFlag, end_of_step, load_checkpoint, save_checkpoint, start
from tessera.train.state import EMA
from tessera.train.tasks import draw_task
from tessera.video import to_uint8


@dataclass
class Batch:
    """One rank's clips, ready for the network: lists, because clips differ in shape."""

    ids: Tensor  # (B, L) caption token ids
    text_mask: Tensor  # (B, L) bool
    x0: list[Tensor]  # each (C, T_z, h, w) clean normalised latents
    noise: list[Tensor]  # each like x0
    t: list[Tensor]  # each (T_z,): 0 on given frames
    cond: list[Tensor | None]  # each (C + 4, T_z, h, w), or None for text-to-video
    loss_mask: list[Tensor]  # each (T_z,) bool: frames that carry loss
    weight: list[Tensor] | None  # with object_weight: each (T_z, h, w), 1 + object_weight on object cells
    tokens: int  # spacetime patches in the batch
    loss_frames: int  # frames that carry loss, counted on the CPU (no GPU sync)


class LatentCache:
    """Per clip key: clean latents, captions and, where the source gives object masks, their
    `object_cells`, computed once with the frozen VAE ("encode once, train many epochs") and kept on the
    training device; needs a source with `key(index)` and finitely many clips. `cond` inputs are not
    cached: random masks rarely repeat, so they are built each step from the clip (which a finite world
    source keeps rendered)."""

    def __init__(self) -> None:
        self.items: dict[object, dict] = {}

    def load(self, indices: range, source, vae: nn.Module, shape: Shape | None = None) -> list[dict]:
        """Items {"x0", "caption", "short_caption", "key"} of `indices` (all fitted to `shape` if given),
        encoding only the missing ones."""
        keys = [(source.key(g, shape), shape) for g in indices]
        missing = [g for g, k in zip(indices, keys, strict=True) if k not in self.items]
        if missing:
            device = next(vae.parameters()).device
            fresh = samples(source, missing, shape)
            videos = [s["video"].to(device) for s in fresh]
            for sample, x0 in zip(fresh, encode_clips(vae, videos), strict=True):
                item = {**sample, "video": None, "objects": None, "x0": x0}  # masks kept as cells only
                if "objects" in sample:
                    item["cells"] = object_cells(sample["objects"])
                self.items[(sample["key"], shape)] = item
        return [self.items[k] for k in keys]


# ---------------------------------------------------------------------------------------------
# Inputs


def pick_caption(sample: dict, cfg: DiTTrainConfig, gen: torch.Generator) -> str:
    """Empty with probability caption_dropout, else the short caption with short_caption_prob, else
    the detailed one."""
    u = float(torch.rand((), generator=gen))
    if u < cfg.caption_dropout:
        return ""
    if u < cfg.caption_dropout + (1 - cfg.caption_dropout) * cfg.short_caption_prob:
        return sample.get("short_caption") or sample["caption"]
    return sample["caption"]


def make_batch(
    indices: range,
    source,
    model: Model,
    cfg: DiTTrainConfig,
    device: torch.device,
    cache: LatentCache | None,
    shape: Shape | None = None,
) -> Batch:
    """The clips at global sample `indices` (all of `shape` if given), with their captions, tasks,
    times and noise drawn.

    Every draw of a clip comes from its own generator, in a fixed order (caption, task, t, noise), so
    the batch does not depend on how clips are grouped; the VAE then runs once per clip shape."""
    mix = parse_weights(cfg.tasks, "tasks")
    if cache is not None:
        with autocast(cfg, device):  # like every VAE call here: bf16 on a GPU
            items = cache.load(indices, source, model.vae, shape)
    else:
        items = [{**s, "video": s["video"].to(device)} for s in samples(source, indices, shape)]
    captions, tasks, pixel_masks, ts, noises, masks, tokens = [], [], [], [], [], [], 0
    weigh = cfg.object_weight > 0
    for g, item in zip(indices, items, strict=True):
        gen = generator(cfg.seed, "sample", g)
        latent = (
            item["x0"].shape
            if cache is not None
            else (model.config.vae.z_channels, *latent_shape(item["video"].shape[1:]))
        )
        captions.append(pick_caption(item, cfg, gen))
        task, pixel_mask = draw_task(mix, 1 + 4 * (latent[1] - 1), gen)
        given = given_latents(pixel_mask)
        n = num_tokens(tuple(latent[1:]), model.config.dit.patch)
        t_clip = sample_t((1,), cfg.shift or token_shift(n), generator=gen)
        ts.append(torch.where(given, torch.zeros_like(t_clip), t_clip))  # (T_z,): given frames are clean
        masks.append(~given)  # loss on the generated frames only
        noises.append(torch.randn(latent, generator=gen))
        tasks.append(task), pixel_masks.append(pixel_mask)
        tokens += n
    loss_frames = int(sum(m.sum() for m in masks))
    noises, ts, masks = (to_device(xs, device) for xs in (noises, ts, masks))
    with autocast(cfg, device):  # the VAE is frozen: bf16 on a GPU, like the DiT
        if cache is None:
            videos = [for_task(task, item["video"]) for task, item in zip(tasks, items, strict=True)]
            x0s, conds = encode_batch(model.vae, videos, pixel_masks)
            cells = [
                task_cells(task, item) if weigh else None for task, item in zip(tasks, items, strict=True)
            ]
        else:  # latents from the cache; clips with given frames (for cond) or re-timed by their task reloaded
            x0s = [item["x0"] for item in items]
            cells = [item.get("cells") for item in items]
            need = [
                i
                for i, (task, m) in enumerate(zip(tasks, pixel_masks, strict=True))
                if m.any() or task == "loop"
            ]
            loaded = samples(source, [indices[i] for i in need], shape)
            clips = [s["video"].to(device) for s in loaded]
            videos = [for_task(tasks[i], v) for i, v in zip(need, clips, strict=True)]
            conds = [None] * len(items)
            for i, cond in zip(
                need, encode_conds(model.vae, videos, [pixel_masks[i] for i in need]), strict=True
            ):
                conds[i] = cond
            looped = [k for k, i in enumerate(need) if tasks[i] == "loop"]  # their cached x0 is of the source
            for k, x0 in zip(looped, encode_clips(model.vae, [videos[k] for k in looped]), strict=True):
                x0s[need[k]] = x0
                cells[need[k]] = task_cells("loop", loaded[k]) if weigh else None
    weights = None
    if weigh:
        if any(c is None for c in cells):
            raise ConfigError("object_weight needs object masks: train on data 'world'")
        weights = [1 + cfg.object_weight * c.to(device) for c in cells]
    ids, text_mask = model.tokenizer.encode(captions, model.config.text.max_len)
    return Batch(
        ids.to(device), text_mask.to(device), x0s, noises, ts, conds, masks, weights, tokens, loss_frames
    )


def task_cells(task: str, sample: dict) -> Tensor | None:
    """`object_cells` of the clip a task trains on (re-timed like its video), None without a mask."""
    objects = sample.get("objects")
    return None if objects is None else object_cells(for_task(task, objects[None])[0])


def to_device(xs: list[Tensor], device: torch.device) -> list[Tensor]:
    """Move CPU tensors of one dtype to `device` in a single copy. A copy from pageable memory waits
    for the GPU, so one per clip and per kind (three per clip before) stalled each step 200 times."""
    flat = torch.cat([x.flatten() for x in xs]).to(device)
    return [part.view(x.shape) for part, x in zip(flat.split([x.numel() for x in xs]), xs, strict=True)]


@torch.no_grad()
def encode_batch(
    vae: nn.Module, videos: list[Tensor], pixel_masks: list[Tensor]
) -> tuple[list[Tensor], list[Tensor | None]]:
    """Clean latents x0 of every clip (3, T, H, W) and `cond` of those with given frames (None for
    text-to-video), with one VAE call per clip shape for each."""
    return encode_clips(vae, videos), encode_conds(vae, videos, pixel_masks)


# ---------------------------------------------------------------------------------------------
# The network pass


class DiTStep(nn.Module):
    """Text encoder + DiT as one module (what DDP/FSDP wrap): batch -> summed per-frame loss."""

    def __init__(
        self, dit: nn.Module, text: nn.Module, packed: bool, split: TokenSplit | None = None
    ) -> None:
        super().__init__()
        self.dit, self.text, self.packed = dit, text, packed
        self.split = split  # how each clip's tokens spread over the sequence-parallel group, or None

    def forward(self, b: Batch | KeptBatch) -> Tensor:
        """Sum over the batch's loss frames of each frame's mean squared error to v = noise - x0."""
        text, text_mask = self.text(b.ids, b.text_mask)  # (B, L, D), (B, L)
        if isinstance(b, KeptBatch):  # one shape, already batched: one DiT call
            v = self.dit(add_noise(b.x0, b.noise, b.t), b.t, text, text_mask, b.cond, split=self.split)
            return flow_loss(v, b.x0, b.noise, b.loss_mask, b.weight, reduction="sum")
        if self.packed:
            x_t = [
                add_noise(x0[None], n[None], t[None])[0] for x0, n, t in zip(b.x0, b.noise, b.t, strict=True)
            ]
            v = self.dit.forward_packed(x_t, b.t, text, text_mask, b.cond)
            weights = b.weight or [None] * len(v)
            return sum(
                flow_loss(v_i[None], x0[None], n[None], keep[None], None if w is None else w[None], "sum")
                for v_i, x0, n, keep, w in zip(v, b.x0, b.noise, b.loss_mask, weights, strict=True)
            )
        # Bucketed: one batched DiT call per distinct clip shape, noise and loss batched with it.
        total = text.new_zeros((), dtype=torch.float32)
        for group in group_by_shape([tuple(x.shape) for x in b.x0]):
            x0, noise = torch.stack([b.x0[i] for i in group]), torch.stack([b.noise[i] for i in group])
            t, keep = torch.stack([b.t[i] for i in group]), torch.stack([b.loss_mask[i] for i in group])
            conds = [b.cond[i] for i in group]
            weight = None if b.weight is None else torch.stack([b.weight[i] for i in group])
            cond = None
            if any(c is not None for c in conds):
                zero = x0.new_zeros(self.dit.cfg.cond_channels, *x0.shape[2:])
                cond = torch.stack([zero if c is None else c for c in conds])
            v = self.dit(add_noise(x0, noise, t), t, text[group], text_mask[group], cond, split=self.split)
            total = total + flow_loss(v, x0, noise, keep, weight, reduction="sum")
        return total


# ---------------------------------------------------------------------------------------------
# The loop


def check_sequence_parallel(cfg: DiTTrainConfig, d: distributed.Dist) -> None:
    """With sp > 1 every clip's token count must split evenly over the group. Under FSDP every rank must
    make the same DiT calls, one per distinct shape with bucketed batching: with several data-parallel
    groups that holds only for a single shape."""
    patch, shapes = get_preset(cfg.preset).dit.patch, [s for s, _ in parse_shapes(cfg.shapes)]
    for shape in shapes:
        n = num_tokens(latent_shape(shape), patch)
        if n % d.sp:
            raise ConfigError(f"shape {shape} has {n} tokens, which do not split over sp = {d.sp} ranks")
    mixed = cfg.batch_shapes == "mixed" and len(shapes) > 1
    if d.mode == "fsdp" and cfg.batching == "bucketed" and d.dp_size > 1 and mixed:
        raise ConfigError(
            "fsdp with bucketed batching over several data-parallel groups needs one shape per step: "
            "batch_shapes 'one' or a single shape in --shapes (groups holding different shapes would "
            "make different sharded calls)"
        )


def graphs_per_shape(compiled: bool, shapes: int):
    """Room in the compiler's cache for every clip shape: a few graphs each (a static one, then dynamic ones
    guarded on optional inputs). Past the default limit (8) the blocks run eager for the shapes that come
    later, which a run of 7 shapes met on an H100; the limit is raised for the run only."""
    if not compiled:
        return contextlib.nullcontext()
    limit = torch._dynamo.config.recompile_limit
    return torch._dynamo.config.patch(recompile_limit=max(limit, 4 * shapes))


def train_dit(cfg: DiTTrainConfig, out: str | Path, resume: bool = False, source=None) -> dict:
    """Train (or with `resume`, continue) the DiT run in folder `out`; returns {"step", "losses"}.

    `source` overrides the data set (anything with `sample(index) -> dict`, see `tessera.data.source`).
    """
    d = distributed.setup(cfg.distributed, cfg.device, cfg.sp)
    run = Path(out)
    if cfg.batch_size % d.dp_size:
        raise ConfigError(
            f"batch_size {cfg.batch_size} must be a multiple of the {d.dp_size} data-parallel groups "
            f"({d.world_size} ranks / sp {d.sp})"
        )
    check_sequence_parallel(cfg, d)
    if not resume:
        start(run, cfg, d)
    if not (resume or cfg.init or cfg.vae_from or cfg.preset == "tiny"):  # tiny: tests, any VAE will do
        warnings.warn(
            "training the DiT on the latents of an untrained VAE; pass --init or --vae-from with the "
            "model/ folder of a `tessera train vae` run",
            stacklevel=2,
        )
    model = initial_model(cfg, run, resume).to(d.device)
    model.vae.eval().requires_grad_(False)
    model.text.requires_grad_(not cfg.freeze_text)
    model.dit.checkpointed(cfg.checkpoint_fraction if cfg.checkpointing else 0.0, cfg.checkpoint_mode)
    if cfg.compile:
        for block in model.dit.blocks:
            block.compile()
    split = distributed.split(model.dit.cfg.heads, d)
    trainee = DiTStep(model.dit, model.text, cfg.batching == "packed", split)
    wrapped = distributed.wrap(trainee, d)
    params = [p for p in trainee.parameters() if p.requires_grad]
    fused = d.device.type == "cuda" and d.mode != "fsdp"  # one kernel for all tensors: fewer launches
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused or None)
    ema = EMA(trainee)
    step = 0
    if resume:
        step = load_checkpoint(run, d, {"raw": trainee}, ema, {"adamw": (trainee, optimizer)})["step"]

    shapes = parse_shapes(cfg.shapes)
    source = source or make_source(
        cfg.data, shapes, cfg.seed, d.device, cfg.world_clips, cfg.object_weight > 0
    )
    if cfg.cache_latents and (getattr(source, "size", None) is None or not hasattr(source, "key")):
        raise ConfigError("cache_latents needs a finite data set: a data folder, or world_clips > 0")
    cache = LatentCache() if cfg.cache_latents and not cfg.task_variants else None
    kept = KeptSet(source, model, cfg, d.device) if cfg.task_variants else None
    local = cfg.batch_size // d.dp_size  # clips per data-parallel group (its sp ranks share them)
    logger = Logger(run, step, cfg.steps, d.main, "train dit")
    losses: list[float] = []

    def checkpoint() -> None:
        ship = ship_model(model, ema, d)
        meta = {"kind": "dit", "step": step, "data_position": step * cfg.batch_size, "preset": cfg.preset}
        write = lambda: save_model(ship, run / "model", card("dit", cfg, step, d.device))
        save_checkpoint(run, d, {"raw": trainee}, ema, {"adamw": (trainee, optimizer)}, meta, write)

    def sample(step: int) -> None:
        write_samples(ship_model(model, ema, d), run, cfg, step, d.device)

    with StopFlag(cfg.time_limit_min) as stop, logger, graphs_per_shape(cfg.compile, len(shapes)):
        while step < cfg.steps:
            first = step * cfg.batch_size + d.dp_rank * local
            t_data = time.perf_counter()
            shape = step_shape(shapes, cfg.seed, step) if cfg.batch_shapes == "one" else None
            if kept is not None:  # everything encoded once: the batch is gathered on the device
                batch = kept.batch(first, local, shape or shapes[0][0], step, d.dp_rank)
            else:
                batch = make_batch(range(first, first + local), source, model, cfg, d.device, cache, shape)
            t_data = time.perf_counter() - t_data  # rendering, loading and VAE encoding
            # The global count of loss frames normalises the loss; the stop vote rides along.
            frames, stops, tokens = distributed.dp_sum(
                [float(batch.loss_frames), float(stop.should_stop()), batch.tokens], d
            )
            set_lr(optimizer, lr_at(step, cfg.lr, cfg.warmup, cfg.steps, cfg.schedule, cfg.min_lr_ratio))
            with autocast(cfg, d.device):
                err = wrapped(batch)
            (err * d.world_size / frames).backward()  # ranks average gradients: this gives sum / frames
            grad_norm = optimizer_step(optimizer, params, cfg.grad_clip)
            ema.update(cfg.ema_decay)
            loss = finite(distributed.dp_sum([err.item()], d)[0] / frames, "loss", step)
            losses.append(loss)
            step += 1
            lr = optimizer.param_groups[0]["lr"]
            metrics = {"loss": loss, "grad_norm": grad_norm, "lr": lr, "data_s": t_data}
            logger.step(step, tokens, metrics, write=step % cfg.log_every == 0 or step == cfg.steps)
            if end_of_step(step, cfg, stops > 0, checkpoint, sample):
                break
    distributed.barrier(d)
    return {"step": step, "losses": losses}


def write_samples(
    ship: Model | None, run: Path, cfg: DiTTrainConfig, step: int, device: torch.device
) -> None:
    """Sample the prompt with the EMA weights at the first multi-frame shape; rank 0 only."""
    if ship is None:
        return

    shapes = [s for s, _ in parse_shapes(cfg.shapes)]
    shape = next((s for s in shapes if s[0] > 1), shapes[0])
    ship.to(device)
    t0 = time.perf_counter()
    z = sample_latents(ship, cfg.sample_prompt, latent_shape(shape), steps=25, guidance=5.0, seed=0)
    frames = to_uint8(ship.vae.decode_latents(z).float().cpu())
    title = f"step {step}: {cfg.sample_prompt} ({time.perf_counter() - t0:.1f} s)"
    save_sample(run / "samples", f"step{step:07d}", frames, title)
