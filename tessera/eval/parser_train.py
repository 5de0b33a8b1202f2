"""Training the scene parser on world renders, and measuring it on held-out renders.

Targets come from the renderer: `ids` gives each pixel's object, the scene gives that object's shape,
colour and size. Losses: binary cross-entropy for "object", cross-entropy for the attributes on object
pixels, each object's pixels weighted by 1 / sqrt(its area) so small, far objects count.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tessera.checkpoint import CheckpointError
from tessera.eval.parser import (
    HEADS,
    ParserConfig,
    SceneParser,
    detect,
    load_parser,
    parse_video,
    predict,
    save_parser,
)
from tessera.eval.results import EvalError
from tessera.eval.tracks import COLOUR_NAMES, MIN_AREA, SIZE_NAMES
from tessera.requests import pick_device
from tessera.world import WorldConfig, WorldSampler, render
from tessera.world.scene import SHAPES


def render_pool(
    count: int, frames: int, size: int, split: str, seed: int, device: str | torch.device, batch: int = 8
) -> dict[str, torch.Tensor]:
    """`count` scenes of `frames` frames at size x size: frames uint8 (N, S, S, 3), per-pixel targets
    (N, S, S) long (shape, colour, size; -1 off objects), object ids (N, S, S), visible fraction per
    id (N, 5) (index 0 unused)."""
    sampler = WorldSampler(WorldConfig(frames=frames), split)
    out: dict[str, list[torch.Tensor]] = {
        k: [] for k in ("frames", "shape", "colour", "size", "ids", "visible")
    }
    for start in range(0, count, batch):
        scenes = [sampler.sample(seed + i) for i in range(start, min(start + batch, count))]
        r = render(scenes, size=(size, size), device=device)
        for b, scene in enumerate(scenes):
            ids = r.ids[b].long()  # (T, S, S)
            lut = torch.full((3, 5), -1, dtype=torch.long, device=ids.device)
            for k, ob in enumerate(scene.objects):
                lut[:, k + 1] = torch.tensor(
                    [SHAPES.index(ob.shape), COLOUR_NAMES.index(ob.colour), SIZE_NAMES.index(ob.size)]
                )
            counts = torch.stack([(ids == k).flatten(1).sum(1) for k in range(5)], 1).float()  # (T, 5)
            alone = torch.zeros_like(counts)
            alone[:, 1 : 1 + len(scene.objects)] = r.coverage[b, :, : len(scene.objects)].float()
            out["visible"].append((counts / alone.clamp(min=1)).cpu())
            out["frames"].append(r.frames[b].cpu())
            out["ids"].append(ids.to(torch.uint8).cpu())
            for i, key in enumerate(("shape", "colour", "size")):
                out[key].append(lut[i][ids].cpu())
    return {k: torch.cat(v) for k, v in out.items()}


def parser_loss(logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Object BCE + attribute CEs on object pixels, per-pixel weights 1 / sqrt(object area)."""
    ids = batch["ids"].long()
    on = ids > 0
    area = torch.zeros(ids.shape[0], 5, device=ids.device).scatter_add_(
        1, ids.flatten(1), torch.ones_like(ids.flatten(1), dtype=torch.float)
    )
    wgt = torch.where(on, area.gather(1, ids.flatten(1)).view_as(ids).clamp(min=1).rsqrt(), 0.0)
    wgt = wgt / wgt.sum().clamp(min=1e-6)
    parts = torch.split(logits.float(), list(HEADS.values()), dim=1)
    obj_w = torch.where(on, 4.0, 1.0)  # objects are rare pixels: weigh them up
    loss = F.binary_cross_entropy_with_logits(parts[0][:, 0], on.float(), weight=obj_w)
    for key, p in zip(("shape", "colour", "size"), parts[1:], strict=True):
        ce = F.cross_entropy(p, batch[key].clamp(min=0), reduction="none")
        loss = loss + (ce * wgt).sum()
    return loss


def gaussian_blur(x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur of images x (N, C, H, W), edges replicated; sigma in pixels, one for all
    images or a tensor (N,) of one per image (<= 0.05: that image unchanged). One grouped convolution
    per axis, however many sigmas."""
    n, c = x.shape[:2]
    sig = torch.as_tensor(sigma, dtype=torch.float32).flatten().expand(n)  # (N,), where it was given
    top = float(sig.max()) if n else 0.0  # no device sync when the sigmas come from the CPU (degrade)
    if top <= 0.05:
        return x
    sig = sig.to(x.device)
    r = max(1, int(np.ceil(3 * top)))
    d = torch.arange(-r, r + 1, device=x.device, dtype=torch.float32)
    k = torch.exp(-0.5 * (d / sig.clamp(min=0.05)[:, None]) ** 2)  # (N, 2r + 1)
    k = torch.where((sig > 0.05)[:, None], k, (d == 0).float())  # a delta where no blur is asked
    k = (k / k.sum(1, keepdim=True)).to(x.dtype).repeat_interleave(c, 0)  # (N * C, 2r + 1)
    y = x.reshape(1, n * c, *x.shape[2:])
    y = F.conv2d(F.pad(y, (r, r, 0, 0), mode="replicate"), k[:, None, None, :], groups=n * c)
    y = F.conv2d(F.pad(y, (0, 0, r, r), mode="replicate"), k[:, None, :, None], groups=n * c)
    return y.view_as(x)


LUMA = (0.299, 0.587, 0.114)  # Rec. 601
BLURRED_SIGMA = 2.0  # px at 128 px: about what the shipped VAE's round trip does to objects


def degrade(x: torch.Tensor, prob: float, gen: torch.Generator) -> torch.Tensor:
    """Frames x (N, 3, H, W) in [-1, 1], each with probability `prob` softened the way a VAE round trip
    or a sampler softens objects: a Gaussian blur (sigma up to 2.5 px at 128 px), the colour blurred
    further than the brightness (up to 4 px: colour bleeding in from the background), a tint of up to
    ±0.04 per channel and noise of up to 0.03. Generic, not any one model's round trip, so a parser
    trained on it does not learn one VAE. Targets stay those of the clean frame. All frames at once on
    x's device; `gen` (CPU) draws everything, so the result depends only on it and x."""
    n, scale = len(x), x.shape[-2] / 128
    pick = torch.rand(n, generator=gen) < prob
    u, tint = torch.rand(n, 3, generator=gen), torch.rand(n, 3, generator=gen) * 0.08 - 0.04
    noise_gen = torch.Generator(x.device).manual_seed(int(torch.randint(2**62, (), generator=gen)))
    if not pick.any():
        return x
    i = torch.nonzero(pick).flatten()
    u, i_dev = u[i], i.to(x.device)  # u stays on the CPU: the blurs read their largest sigma without a sync
    v = gaussian_blur(x[i_dev].float(), 2.5 * scale * u[:, 0])
    y = sum(w * v[:, c : c + 1] for c, w in enumerate(LUMA))
    cr, cb = gaussian_blur(torch.cat([v[:, :1] - y, v[:, 2:] - y], 1), 4 * scale * u[:, 1]).split(1, 1)
    r, b = y + cr, y + cb
    v = torch.cat([r, (y - LUMA[0] * r - LUMA[2] * b) / LUMA[1], b], 1) + tint[i].to(v)[:, :, None, None]
    noise = torch.randn(v.shape, generator=noise_gen, device=x.device)
    v = v + noise * 0.03 * u[:, 2].to(v)[:, None, None, None]
    out = x.clone()
    out[i_dev] = v.clamp(-1, 1).to(out.dtype)
    return out


def train_parser(
    out: str | Path,
    steps: int = 2000,
    scenes: int = 400,
    frames: int = 9,
    size: int = 128,
    width: int = 32,
    batch_size: int = 32,
    lr: float = 2e-3,
    device: str = "auto",
    eval_scenes: int = 40,
    seed: int = 0,
    log_every: int = 100,
    degrade_prob: float = 0.0,
    init: str | Path | None = None,
) -> dict:
    """Train a parser on `scenes` train-split renders (`frames` each), with `degrade_prob` of the frames
    softened by `degrade`, measure it on `eval_scenes` held-out renders, clean and blurred by
    BLURRED_SIGMA, and write it with its accuracy to `out`. Returns the accuracy dict. With `init` (a
    parser folder) training starts from that parser's weights and width instead of a random one."""
    if not 0 <= degrade_prob <= 1:
        raise EvalError(f"degrade_prob must be a probability in [0, 1], got {degrade_prob}")
    start = load_parser(init) if init is not None else None
    if start is not None and (start.cfg.width, start.cfg.size) != (width, size):
        raise EvalError(
            f"init parser {init} has width {start.cfg.width} and size {start.cfg.size}; "
            f"asked for width {width} and size {size}: they must match"
        )
    dev = pick_device(device)
    torch.manual_seed(seed)
    t0 = time.time()
    pool = render_pool(scenes, frames, size, "train", seed, dev)
    pool = {k: v.to(dev) for k, v in pool.items()}
    print(f"rendered {len(pool['frames'])} training frames in {time.time() - t0:.0f}s", flush=True)
    parser = start if start is not None else SceneParser(ParserConfig(size=size, width=width))
    parser = parser.to(dev).train()
    opt = torch.optim.AdamW(parser.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    n = len(pool["frames"])
    for step in range(steps):
        idx = torch.randint(0, n, (batch_size,), generator=gen).to(dev)
        batch = {k: v[idx] for k, v in pool.items()}
        x = batch["frames"].permute(0, 3, 1, 2).float() / 127.5 - 1
        if torch.rand((), generator=gen) < 0.5:  # mirror: left-right is symmetric in the world
            x, batch = x.flip(-1), {k: v.flip(-1) if v.ndim == 3 else v for k, v in batch.items()}
        if degrade_prob > 0:
            x = degrade(x, degrade_prob, gen)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            loss = parser_loss(parser(x), batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % log_every == 0 or step == steps - 1:
            print(f"step {step} loss {loss.item():.4f} ({time.time() - t0:.0f}s)", flush=True)
    parser.eval()
    acc = parser_accuracy(parser, eval_scenes, frames=frames, size=size, device=dev)
    blurred = parser_accuracy(parser, eval_scenes, frames=frames, size=size, device=dev, blur=BLURRED_SIGMA)
    acc |= {
        "blurred": {k: v for k, v in blurred.items() if k != "objects"},
        "train": {
            "steps": steps,
            "scenes": scenes,
            "frames": frames,
            "size": size,
            "width": width,
            "batch_size": batch_size,
            "degrade_prob": degrade_prob,
            "init": str(init) if init is not None else None,
            "lr": lr,
            "device": str(dev),
            "seconds": round(time.time() - t0, 1),
        },
    }
    save_parser(parser.cpu(), out, acc)
    return acc


@torch.no_grad()
def parser_accuracy(
    parser: SceneParser,
    scenes: int = 40,
    frames: int = 9,
    size: int = 128,
    device: str | torch.device = "cpu",
    seed: int = 10_000,
    blur: float = 0.0,
) -> dict:
    """Accuracy on held-out-split renders, over objects at least half visible (visible fraction >= 0.5)
    and covering >= MIN_AREA: detection rate (a detection with mask IoU >= 0.5), attribute accuracy among
    detected objects, all-correct rate over all such objects, track-level attribute accuracy, and the
    object count (`count`: 1 - |significant tracks - objects seen that long| / objects, as
    `text_alignment` counts). With `blur` the frames are Gaussian-blurred by that many pixels (at 128 px)
    before parsing, about what a VAE round trip does to objects; the targets stay the clean ones."""
    pool = render_pool(scenes, frames, size, "heldout", seed, device)
    hits = {"objects": 0, "detected": 0, "shape": 0, "colour": 0, "size": 0, "all": 0}
    track_ok, track_n, counts = 0, 0, []
    for c in range(scenes):
        sl = slice(c * frames, (c + 1) * frames)
        video, ids, vis = pool["frames"][sl].cpu(), pool["ids"][sl].cpu(), pool["visible"][sl].cpu()
        if blur > 0:
            x = gaussian_blur(video.permute(0, 3, 1, 2).float(), blur * size / 128)
            video = x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
        video = video.numpy()
        dets, comp = detect(predict(parser, video))
        comp_t = torch.from_numpy(comp.astype(np.int64))
        for f in range(frames):
            for k in range(1, 5):
                mask = ids[f] == k
                if vis[f, k] < 0.5 or mask.sum() < max(1.0, MIN_AREA * size * size):
                    continue
                hits["objects"] += 1
                want = (
                    pool["shape"][sl][f][mask][0].item(),
                    pool["colour"][sl][f][mask][0].item(),
                    pool["size"][sl][f][mask][0].item(),
                )
                best, best_iou = None, 0.5
                for d in (d for d in dets if d.frame == f):
                    m = comp_t[f] == d.label
                    iou = (m & mask).sum().item() / max(1, (m | mask).sum().item())
                    if iou >= best_iou:
                        best, best_iou = d, iou
                if best is None:
                    continue
                got = (best.shape, best.colour, best.size)
                hits["detected"] += 1
                for i, key in enumerate(("shape", "colour", "size")):
                    hits[key] += got[i] == want[i]
                hits["all"] += got == want
        parse = parse_video(parser, video)
        shown = torch.stack([(ids == k).flatten(1).sum(1) for k in range(1, 5)], 1) >= MIN_AREA * size**2
        seen = int((shown.sum(0) >= max(2, np.ceil(0.15 * frames))).sum())  # objects seen long enough
        if seen:
            counts.append(max(0.0, 1 - abs(len(parse.significant()) - seen) / seen))
        for k in range(1, 5):
            present = (ids == k).flatten(1).sum(1) > 0
            if not present.any():
                continue
            track_n += 1
            mask = ids == k
            want = (
                SHAPES[pool["shape"][sl][mask][0]],
                COLOUR_NAMES[pool["colour"][sl][mask][0]],
                SIZE_NAMES[pool["size"][sl][mask][0]],
            )
            tr = parse.find(want[0], want[1])
            track_ok += tr is not None and tr.size == want[2]
    n, det = max(1, hits["objects"]), max(1, hits["detected"])
    return {
        "objects": hits["objects"],
        "detection": hits["detected"] / n,
        "shape": hits["shape"] / det,
        "colour": hits["colour"] / det,
        "size": hits["size"] / det,
        "all_attributes": hits["all"] / n,
        "tracks": track_ok / max(1, track_n),
        "count": float(np.mean(counts)) if counts else 1.0,
        "note": f"held-out split, {scenes} scenes x {frames} frames at {size}x{size}; objects >= 50% visible"
        + (f"; blurred by sigma {blur} px at 128" if blur > 0 else ""),
    }


def main(argv: list[str] | None = None) -> None:
    """Command line: `python scripts/train_parser.py --out DIR [--steps N ...]`, or `--measure DIR` to
    measure a trained parser (clean and blurred held-out renders) without training."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="folder for the trained parser")
    ap.add_argument("--measure", help="a parser folder to measure instead of training one")
    for name, default in (
        ("steps", 2000),
        ("scenes", 400),
        ("frames", 9),
        ("size", 128),
        ("width", 32),
        ("batch-size", 32),
        ("eval-scenes", 40),
        ("seed", 0),
    ):
        ap.add_argument(f"--{name}", type=int, default=default)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--degrade", type=float, default=0.0, help="fraction of frames softened (see degrade)")
    ap.add_argument("--init", help="a parser folder to fine-tune (--width and --size must match it)")
    ap.add_argument("--device", default="auto")
    a = ap.parse_args(argv)
    try:
        if a.measure:
            dev = pick_device(a.device)
            parser = load_parser(a.measure, dev)
            kw = {"scenes": a.eval_scenes, "frames": a.frames, "size": a.size, "device": dev}
            blurred = parser_accuracy(parser, **kw, blur=BLURRED_SIGMA)
            acc = parser_accuracy(parser, **kw) | {"blurred": blurred}
            print(json.dumps(acc, indent=1))
            return
        if not a.out:
            ap.error("give --out DIR to train a parser, or --measure DIR to measure one")
        acc = train_parser(
            a.out,
            a.steps,
            a.scenes,
            a.frames,
            a.size,
            a.width,
            a.batch_size,
            a.lr,
            a.device,
            a.eval_scenes,
            a.seed,
            degrade_prob=a.degrade,
            init=a.init,
        )
    except (EvalError, CheckpointError) as e:  # bad arguments or folders: say which, no traceback
        ap.error(str(e))
    print(json.dumps(acc, indent=1))
    print(f"wrote {Path(a.out).resolve()}")
