"""The kept set: a finite training set made once on the training device, so a DiT step only gathers.

`tessera train dit` with `task_variants > 0` builds, for each clip shape of the run, that shape's share
of the finite set (`world_clips`, or a data folder) once:
- the clean latents x0 (N, C, T_z, h, w) of every clip, and its object cells where the data has masks;
- every caption, detailed and short, tokenised once (N, L), with the empty caption beside them;
- for each clip, `task_variants` conditioning tasks drawn from the run's task mix without text-to-video,
  each with its `cond` input (the VAE latents of the masked video and the mask channels), its given
  latent frames, and (for `loop`, which re-times the clip) its own x0 and cells.
A step then draws everything else on the device: which clips (the same order as the streaming path),
text-to-video or one of the clip's variants (in the mix's proportion), the caption (empty, short or
detailed), t and the noise. No VAE call and no per-clip Python happen inside a step, and every tensor
of a step has one shape, so a compiled step is reused.

The price is variety: a clip keeps its `task_variants` conditioned tasks for the whole run, where the
streaming path draws a fresh one (with a VAE pass) every time. Over thousands of clips every task and
length still appears many times.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tessera.checkpoint import Model
from tessera.conditioning import build_conds, for_task, given_latents
from tessera.data.buckets import Shape, group_by_shape, num_tokens
from tessera.data.source import BUILD_CHUNK, samples, share
from tessera.flow.schedules import sample_t, token_shift
from tessera.seeding import generator
from tessera.train.config import DiTTrainConfig, parse_weights
from tessera.train.tasks import draw_task
from tessera.train.vae import object_region


@dataclass
class ShapeSet:
    """One clip shape's share of the kept set, all on the training device."""

    x0: Tensor  # (N, C, T_z, h, w) clean normalised latents, fp32
    cells: Tensor | None  # (N, T_z, h, w) object cells, None without masks
    ids: Tensor  # (2N + 1, L) caption tokens: detailed (first N), short (next N), empty (last)
    text_mask: Tensor  # (2N + 1, L) bool
    var_x0: Tensor  # (N, M, C, T_z, h, w): the clip each variant trains on (loop re-times it)
    var_cond: Tensor  # (N, M, C + 4, T_z, h, w)
    var_given: Tensor  # (N, M, T_z) bool: latent frames held clean
    var_cells: Tensor | None  # (N, M, T_z, h, w)
    tokens: int  # spacetime patches per clip


@dataclass
class KeptBatch:
    """A step's clips of one shape, batched: what `DiTStep` runs as one DiT call."""

    ids: Tensor  # (B, L)
    text_mask: Tensor  # (B, L)
    x0: Tensor  # (B, C, T_z, h, w)
    noise: Tensor
    t: Tensor  # (B, T_z): 0 on given frames
    cond: Tensor  # (B, C + 4, T_z, h, w): zeros for text-to-video
    loss_mask: Tensor  # (B, T_z) bool
    weight: Tensor | None  # (B, T_z, h, w)
    tokens: int
    loss_frames: Tensor  # () on the device: no host sync to build a batch


class KeptSet:
    """The kept set of a run: one `ShapeSet` per clip shape, built on first use."""

    def __init__(self, source, model: Model, cfg: DiTTrainConfig, device: torch.device) -> None:
        if getattr(source, "size", None) is None or not hasattr(source, "key"):
            raise ValueError("task_variants needs a finite data set: a data folder, or world_clips > 0")
        self.source, self.model, self.cfg, self.device = source, model, cfg, device
        mix = parse_weights(cfg.tasks, "tasks")
        self.t2v = mix.get("t2v", 0.0) / sum(mix.values())  # share of steps' clips without given frames
        self.conditioned = {k: w for k, w in mix.items() if k != "t2v"}
        self.sets: dict[Shape, ShapeSet] = {}

    def batch(self, first: int, count: int, shape: Shape, step: int, rank: int) -> KeptBatch:
        """The clips at global sample indices first .. first + count - 1, all of `shape`."""
        s = self.sets.get(shape) or self._build(shape)
        n, m = s.x0.shape[0], s.var_x0.shape[1]
        cfg, dev = self.cfg, self.device
        gen = generator(cfg.seed, "kept", step, rank, device=dev)
        # The same clips as the streaming path's `source.key`: this shape's share, in order.
        clip = (torch.arange(first, first + count, device=dev) % n).long()
        u = torch.rand(count, generator=gen, device=dev)
        variant = torch.randint(m, (count,), generator=gen, device=dev)
        use = (u >= self.t2v) if self.conditioned else torch.zeros_like(u, dtype=torch.bool)
        pick = lambda base, var: torch.where(_bcast(use, var), var[clip, variant], base[clip])
        x0 = pick(s.x0, s.var_x0)
        cond = torch.where(_bcast(use, s.var_cond), s.var_cond[clip, variant], 0)
        given = use[:, None] & s.var_given[clip, variant]
        cells = None if s.cells is None else pick(s.cells, s.var_cells)
        c = torch.rand(count, generator=gen, device=dev)  # caption: empty, short or detailed
        short = c < cfg.caption_dropout + (1 - cfg.caption_dropout) * cfg.short_caption_prob
        row = torch.where(c < cfg.caption_dropout, 2 * n, torch.where(short, n + clip, clip))
        t_clip = sample_t((count,), cfg.shift or token_shift(s.tokens), generator=gen, device=dev)
        t = torch.where(given, 0.0, t_clip[:, None])
        noise = torch.randn(x0.shape, generator=gen, device=dev)
        weight = None if cells is None else 1 + cfg.object_weight * cells.float()
        keep = ~given
        return KeptBatch(
            s.ids[row], s.text_mask[row], x0, noise, t, cond, keep, weight, s.tokens * count, keep.sum()
        )

    @torch.no_grad()
    def _build(self, shape: Shape) -> ShapeSet:
        """Render, caption, encode and draw the variants of `shape`'s share of the set, once."""
        vae, m = self.model.vae, max(1, self.cfg.task_variants)
        n = share(self.source, shape)
        parts: dict[str, list[Tensor]] = {k: [] for k in ("x0", "cells", "vx0", "vcond", "vgiven", "vcells")}
        captions: list[str] = []
        shorts: list[str] = []
        for start in range(0, n, BUILD_CHUNK):
            items = samples(self.source, list(range(start, min(n, start + BUILD_CHUNK))), shape)
            videos = [it["video"].to(self.device) for it in items]
            captions += [it["caption"] for it in items]
            shorts += [it.get("short_caption") or it["caption"] for it in items]
            with torch.autocast("cuda", torch.bfloat16, enabled=self.device.type == "cuda"):
                parts["x0"] += encode_clips(vae, videos)
                masks = [it.get("objects") for it in items]
                parts["cells"] += [None if o is None else object_cells(o.to(self.device)) for o in masks]
                for k in range(m):
                    drawn = [
                        self._variant(it["key"], k, v.shape[1]) for it, v in zip(items, videos, strict=True)
                    ]
                    clips = [for_task(task, v) for (task, _), v in zip(drawn, videos, strict=True)]
                    pixel = [mask for _, mask in drawn]
                    x0s = parts["x0"][-len(items) :]
                    conds = encode_conds(vae, clips, pixel)  # None for an image: text-to-video's zero cond
                    blank = lambda z: z.new_zeros(self.model.config.dit.cond_channels, *z.shape[1:])
                    parts["vcond"] += [blank(z) if c is None else c for c, z in zip(conds, x0s, strict=True)]
                    parts["vgiven"] += [given_latents(mask) for mask in pixel]
                    # a variant trains on its clip as it is, but a loop's on the clip it re-timed
                    looped = [j for j, (task, _) in enumerate(drawn) if task == "loop"]
                    for j, z in zip(looped, encode_clips(vae, [clips[j] for j in looped]), strict=True):
                        x0s = [*x0s[:j], z, *x0s[j + 1 :]]
                    parts["vx0"] += x0s
                    parts["vcells"] += [
                        None if o is None else object_cells(for_task(task, o[None].to(self.device))[0])
                        for (task, _), o in zip(drawn, masks, strict=True)
                    ]
            if hasattr(self.source, "forget"):
                self.source.forget(shape)  # the pixels are encoded: only the latents stay
        stack = lambda xs: torch.stack(xs).to(self.device, torch.float32)
        variants = lambda xs: _by_clip(xs, n, m).to(self.device)
        has_cells = all(c is not None for c in parts["cells"])
        ids, text_mask = self.model.tokenizer.encode([*captions, *shorts, ""], self.model.config.text.max_len)
        z_shape = tuple(parts["x0"][0].shape[1:])
        s = ShapeSet(
            x0=stack(parts["x0"]),
            cells=stack(parts["cells"]) if has_cells else None,
            ids=ids.to(self.device),
            text_mask=text_mask.to(self.device),
            var_x0=variants(parts["vx0"]).float(),
            var_cond=variants(parts["vcond"]).float(),
            var_given=variants(parts["vgiven"]),
            var_cells=variants(parts["vcells"]).float() if has_cells else None,
            tokens=num_tokens(z_shape, self.model.config.dit.patch),
        )
        self.sets[shape] = s
        return s

    def _variant(self, key: int, k: int, frames: int) -> tuple[str, Tensor]:
        """Variant k of clip `key`: a task from the mix without text-to-video, and its pixel mask."""
        gen = generator(self.cfg.seed, "variant", key, k)
        return draw_task(self.conditioned or {"t2v": 1.0}, frames, gen)


# ---------------------------------------------------------------------------------------------
# Encoding training inputs (the streaming path in `tessera.train.dit` uses these too)


def object_cells(objects: Tensor) -> Tensor:
    """The latent cells (T_z, h, w) that an object touches, as 0/1 floats, from a clip's object mask
    (T, H, W) grown by `object_region`'s 2 pixels: a cell is one latent frame (frame 0 alone, then 4
    frames, as the causal VAE groups them) by 8x8 pixels.

    The world's objects cover a few percent of a frame, so a plain flow-matching loss spends nearly all
    of its weight on the ground and sky; the objects' shape and colour are what the prompt names."""
    region = object_region(objects[None])[0]  # (1, T, H, W)
    region = torch.cat([region[:, :1].expand(-1, 3, -1, -1), region], dim=1)  # frame 0: its own cell
    return F.max_pool3d(region[None], (4, 8, 8))[0, 0]


# Training clips are encoded whole (not chunked in time): they are short, and chunking would cost a kernel
# launch per layer and chunk. Clips of one shape go through the VAE together, at most ENCODE_VOXELS
# pixels (frames x height x width, summed over the clips) a call, which bounds its activation memory
# (64 clips of 65x128x128 at once asked for 8 GiB in one convolution and ran out of memory on an H100).
ENCODE_VOXELS = 16 * 33 * 128 * 128


def encode_groups(videos: list[Tensor]) -> list[list[int]]:
    """Indices of same-shape clips (C, T, H, W), in groups of at most ENCODE_VOXELS pixels (one clip at
    least)."""
    out = []
    for group in group_by_shape([tuple(v.shape) for v in videos]):
        per = max(1, ENCODE_VOXELS // videos[group[0]][0].numel())
        out += [group[i : i + per] for i in range(0, len(group), per)]
    return out


@torch.no_grad()
def encode_clips(vae: nn.Module, videos: list[Tensor]) -> list[Tensor]:
    """Normalised latents (C_z, T_z, h, w), fp32, of clips (3, T, H, W): one VAE call per clip shape
    (and per ENCODE_VOXELS)."""
    x0s: list[Tensor] = [torch.empty(0)] * len(videos)
    for group in encode_groups(videos):
        z = vae.encode_latents(torch.stack([videos[i] for i in group]), chunked=False).float()
        for k, i in enumerate(group):
            x0s[i] = z[k]
    return x0s


@torch.no_grad()
def encode_conds(vae: nn.Module, videos: list[Tensor], pixel_masks: list[Tensor]) -> list[Tensor | None]:
    """`cond` of each clip with given frames, None for the others: one VAE call per clip shape (and per
    ENCODE_VOXELS)."""
    conds: list[Tensor | None] = [None] * len(videos)
    given = [i for i, m in enumerate(pixel_masks) if m.any()]
    for group in encode_groups([videos[i] for i in given]):
        idx = [given[k] for k in group]
        clips, masks = torch.stack([videos[i] for i in idx]), torch.stack([pixel_masks[i] for i in idx])
        c = build_conds(vae, clips, masks, chunked=False).float()
        for k, i in enumerate(idx):
            conds[i] = c[k]
    return conds


def _by_clip(xs: list[Tensor], n: int, m: int) -> Tensor:
    """Per-variant lists built variant-major within each build chunk -> (n, m, ...) in clip order."""
    out = [[None] * m for _ in range(n)]
    i = 0
    for start in range(0, n, BUILD_CHUNK):
        size = min(n, start + BUILD_CHUNK) - start
        for k in range(m):
            for j in range(size):
                out[start + j][k] = xs[i]
                i += 1
    return torch.stack([torch.stack(row) for row in out])


def _bcast(flags: Tensor, like: Tensor) -> Tensor:
    """(B,) bool -> broadcastable against a gathered (B, ...) tensor of `like`'s per-variant shape."""
    return flags.view(-1, *[1] * (like.ndim - 2))
