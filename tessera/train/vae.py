"""VAE training, top to bottom.

Loss per clip: L1 (pixels weighted up by their contrast with `detail_weight`, and on world data by the
object masks with `object_weight`) + `ssim_weight` (1 - SSIM, per frame) on the reconstruction of a
posterior sample, plus `kl_weight` KL to N(0, 1), plus, after `adv_start` steps, `adv_weight` times a
hinge generator loss against a PatchGAN discriminator over frames trained from scratch (no pretrained
perceptual network is needed). Clip losses are averaged over the global batch. Batches may mix shapes (images
and clips): the VAE runs once per shape inside one module call.

Every checkpoint writes the EMA weights with freshly measured latent statistics: the per-channel mean
and std of the posterior means of `stats_clips` clips, stored in the VAE's `latent_mean`/`latent_std`
buffers, so `encode_latents` gives the DiT unit-scale latents. With `freeze_encoder` only the decoder
trains and the init's encoder and statistics are kept bit for bit: the latents do not move, so the DiT
of the init's model folder (which the run's `model/` carries) samples exactly as before, and only how
its latents become pixels changes.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tessera.checkpoint import lr_at, save_model
from tessera.data.buckets import Shape, group_by_shape, latent_shape, step_shape
from tessera.data.source import BUILD_CHUNK, WorldSource, make_source, samples, share
from tessera.folders import load
from tessera.seeding import generator
from tessera.train import distributed
from tessera.train.common import autocast, card, finite, initial_model, optimizer_step, set_lr, ship_model
from tessera.train.config import ConfigError, VAETrainConfig, parse_shapes
from tessera.train.distributed import Dist
from tessera.train.logger import Logger, save_sample
from tessera.train.run import StopFlag, end_of_step, load_checkpoint, save_checkpoint, start
from tessera.train.state import EMA
from tessera.video import to_uint8

STATS_OFFSET = 1 << 40  # sample indices for latent statistics, far from any training index


# ---------------------------------------------------------------------------------------------
# Loss terms


def ssim(x: Tensor, y: Tensor, window: int = 11, sigma: float = 1.5, data_range: float = 2.0) -> Tensor:
    """Mean SSIM per image of x, y (N, 3, H, W) (Gaussian window, valid region) -> (N,) fp32; pixels span
    `data_range` (2 for the [-1, 1] of training; the benchmark's [0, 1] frames pass 1).

    Always computed in fp32 with autocast off: the variances are differences of blurred squares
    (E[x^2] - E[x]^2), and in bf16 (8 bits of mantissa) their rounding error (~0.002) is as large as
    the constant c2 = 0.0036 that keeps the ratio finite. Under bf16 autocast the blur convolutions ran
    in bf16, the SSIM gradient became noise 18x larger than the true one (cosine -0.17 with it), swamped
    the L1 term, and the VAE did not learn (L1 0.33, 14 dB after 2000 steps on the H100).

    The Gaussian window is separable, so the five blurred maps are one stack multiplied by a banded matrix
    of taps on each side (rows, then columns): plain fp32 matrix products, where cuDNN ran the depthwise
    convolution of the same blur in TF32 (a 10-bit mantissa) on the GPU."""
    with torch.autocast(x.device.type, enabled=False):
        x, y = x.float(), y.float()
        c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
        g = torch.exp(-((torch.arange(window, device=x.device) - window // 2) ** 2) / (2 * sigma**2))
        g = g / g.sum()
        h, w = x.shape[-2:]
        rows, cols = _band(g, h), _band(g, w)  # (h - window + 1, h), (w - window + 1, w)
        mx, my, xx, yy, xy = rows @ torch.stack([x, y, x * x, y * y, x * y]) @ cols.T
        vx, vy, cxy = xx - mx**2, yy - my**2, xy - mx * my
        s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
        return s.mean(dim=(1, 2, 3))


def _band(taps: Tensor, n: int) -> Tensor:
    """The (n - k + 1, n) matrix whose row i holds the k `taps` at columns i .. i + k - 1: multiplying by
    it is a 'valid' 1D correlation along that axis."""
    m, k = n - taps.numel() + 1, taps.numel()
    at = torch.arange(m, device=taps.device)[:, None] + torch.arange(k, device=taps.device)
    return taps.new_zeros(m, n).scatter_(1, at, taps.expand(m, k))


def frames_of(video: Tensor) -> Tensor:
    """(B, 3, T, H, W) -> (B*T, 3, H, W)."""
    return video.transpose(1, 2).flatten(0, 1)


class Discriminator(nn.Module):
    """PatchGAN over single frames: strided 4x4 convs, one logit per patch."""

    def __init__(self, channels: int = 64, layers: int = 3) -> None:
        super().__init__()
        mods: list[nn.Module] = [nn.Conv2d(3, channels, 4, 2, 1), nn.LeakyReLU(0.2)]
        c = channels
        for _ in range(layers - 1):
            mods += [nn.Conv2d(c, 2 * c, 4, 2, 1), nn.GroupNorm(8, 2 * c), nn.LeakyReLU(0.2)]
            c *= 2
        mods.append(nn.Conv2d(c, 1, 3, 1, 1))
        self.net = nn.Sequential(*mods)

    def forward(self, frames: list[Tensor]) -> list[Tensor]:
        """Frame batches (N_i, 3, H_i, W_i) -> patch logits (N_i, 1, H_i/2^layers, W_i/2^layers) each.

        A list in one call, because under DDP a module may run only once per backward pass."""
        return [self.net(f) for f in frames]


class VAEStep(nn.Module):
    """The VAE as one module (what DDP/FSDP wrap): clips grouped by shape -> per-clip loss terms."""

    def __init__(self, vae: nn.Module) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, groups: list[Tensor], eps: list[Tensor]) -> list[tuple[Tensor, Tensor, Tensor]]:
        """Per group x (B, 3, T, H, W) and its posterior noise eps -> (recon, mean, logvar)."""
        out = []
        for x, e in zip(groups, eps, strict=True):
            mean, logvar = self.vae.encode(x, chunked=False)
            z = mean + torch.exp(0.5 * logvar) * e  # reparameterised posterior sample
            out.append((self.vae.decode(z, chunked=False), mean, logvar))
        return out


def clip_losses(
    x: Tensor,
    recon: Tensor,
    mean: Tensor,
    logvar: Tensor,
    cfg: VAETrainConfig,
    objects: Tensor | None = None,
) -> dict[str, Tensor]:
    """Per-clip (B,) terms: l1 (weighted by contrast with `cfg.detail_weight` and by the object mask
    `objects` (B, T, H, W) with `cfg.object_weight`), ssim (1 - SSIM), kl."""
    B = x.shape[0]
    err = (recon.float() - x.float()).abs()
    extra = []  # per-pixel weights on top of 1, (B, 1, T, H, W)
    if cfg.detail_weight > 0:
        extra.append(cfg.detail_weight * contrast(x.float()))
    if cfg.object_weight > 0 and objects is not None:
        extra.append(cfg.object_weight * object_region(objects))
    if extra:
        w = 1 + sum(extra)
        err = err * (w / w.mean(dim=(1, 2, 3, 4), keepdim=True))  # the mean weight stays 1 per clip
    l1 = err.mean(dim=(1, 2, 3, 4))
    s = 1 - ssim(frames_of(recon.float()), frames_of(x.float())).view(B, -1).mean(1)
    kl = 0.5 * (mean.float().pow(2) + logvar.float().exp() - 1 - logvar.float()).mean(dim=(1, 2, 3, 4))
    return {"l1": l1, "ssim": s, "kl": kl}


def contrast(x: Tensor, window: int = 15) -> Tensor:
    """Per pixel, how far its colour is from the mean of its `window` x `window` surround in the same
    frame: x (B, 3, T, H, W) -> (B, 1, T, H, W), mean absolute difference over the channels.

    Small objects on smooth ground are high-contrast but few pixels, so a plain L1 lets a VAE blur them
    away at a good PSNR (a 26 dB world VAE lost every object); weighting by contrast keeps them."""
    B, C, T, H, W = x.shape
    f = frames_of(x)  # (B T, 3, H, W)
    local = F.avg_pool2d(f, window, stride=1, padding=window // 2, count_include_pad=False)
    d = (f - local).abs().mean(dim=1, keepdim=True)  # (B T, 1, H, W)
    return d.view(B, T, 1, H, W).transpose(1, 2)


def object_region(objects: Tensor, grow: int = 2) -> Tensor:
    """The object mask (B, T, H, W) grown by `grow` pixels, as (B, 1, T, H, W) floats: the pixels just
    outside an object hold its silhouette against the ground, so they count as the object's.

    The world's objects cover a few percent of a frame; the second shipped VAE, trained on plain and
    contrast-weighted L1, reconstructed held-out 33-frame world clips at 28.8 dB but their object
    pixels at 15.0 dB (`tessera train eval-vae`: objects mostly gone), which capped what any DiT on its
    latents could draw."""
    B, T, H, W = objects.shape
    m = objects.reshape(B * T, 1, H, W).float()
    m = F.max_pool2d(m, 2 * grow + 1, stride=1, padding=grow)
    return m.view(B, T, 1, H, W).transpose(1, 2)


def adversarial_g(disc: nn.Module, recon: Tensor) -> Tensor:
    """Per-clip hinge generator loss -D(recon), through a detached copy of D's parameters (so the
    generator loss trains the VAE only and D's gradients stay its own)."""
    params = {k: v.detach() for k, v in disc.named_parameters()}
    (logits,) = torch.func.functional_call(disc, params, ([frames_of(recon)],))
    return -logits.view(recon.shape[0], -1).mean(1)


def discriminator_loss(disc: nn.Module, xs: list[Tensor], recons: list[Tensor]) -> Tensor:
    """Hinge loss of D summed over clips: real frames of each group x and its (detached) reconstruction."""
    logits = disc([frames_of(v) for x, r in zip(xs, recons, strict=True) for v in (x, r.detach())])
    total = logits[0].new_zeros(())
    for x, real, fake in zip(xs, logits[0::2], logits[1::2], strict=True):
        B = x.shape[0]
        total = total + (F.relu(1 - real).view(B, -1).mean(1) + F.relu(1 + fake).view(B, -1).mean(1)).sum()
    return total


TERMS = ("l1", "ssim", "kl", "adv")


def vae_loss(
    groups: list[Tensor],
    outs: list[tuple[Tensor, Tensor, Tensor]],
    disc: nn.Module | None,
    cfg: VAETrainConfig,
    objects: list[Tensor | None] | None = None,
) -> tuple[Tensor, Tensor]:
    """Weighted loss summed over clips (the caller divides by the global batch), and the sums of each
    unweighted term (TERMS order) for logging. `disc` None: no adversarial term (warm-up or off);
    `objects` the object masks of each group (None where the data has none).
    Call it outside autocast: the reconstruction terms are computed in fp32."""
    total, terms = groups[0].new_zeros((), dtype=torch.float32), groups[0].new_zeros(len(TERMS))
    objects = objects or [None] * len(groups)
    for x, (recon, mean, logvar), obj in zip(groups, outs, objects, strict=True):
        parts = clip_losses(x, recon, mean, logvar, cfg, obj)
        parts["adv"] = torch.zeros_like(parts["l1"])
        if disc is not None:
            with autocast(cfg, recon.device):  # D runs as in its own step (bf16 on CUDA)
                parts["adv"] = adversarial_g(disc, recon.float()).float()
        weights = (cfg.l1_weight, cfg.ssim_weight, cfg.kl_weight, cfg.adv_weight)
        total = total + sum(w * parts[k] for w, k in zip(weights, TERMS, strict=True)).sum()
        terms = terms + torch.stack([parts[k].detach().float().sum() for k in TERMS])
    return total, terms


# ---------------------------------------------------------------------------------------------
# Data


def load_batch(
    indices: range,
    source,
    cfg: VAETrainConfig,
    device: torch.device,
    z_channels: int,
    shape: Shape | None = None,
) -> tuple[list[Tensor], list[Tensor], list[Tensor | None]]:
    """Clips at global `indices` (all of `shape` if given) grouped by shape: (groups (B_g, 3, T, H, W),
    posterior noise per group (B_g, C_z, T_z, H/8, W/8), object masks per group (B_g, T, H, W) or None
    where the source has none), each clip's noise drawn from its own (seed, index) generator."""
    videos, eps, objects = [], [], []
    for g, sample in zip(indices, samples(source, indices, shape), strict=True):
        video, mask = crop_clip(
            sample["video"], sample.get("objects"), cfg.crop, generator(cfg.seed, "crop", g)
        )
        _, t, h, w = video.shape
        videos.append(video)
        objects.append(mask)
        shape = (z_channels, *latent_shape((t, h, w)))
        eps.append(torch.randn(shape, generator=generator(cfg.seed, "posterior", g)))
    groups = group_by_shape([tuple(v.shape) for v in videos])
    stack = lambda xs, group: torch.stack([xs[i] for i in group]).to(device)
    return (
        [stack(videos, group) for group in groups],
        [stack(eps, group) for group in groups],
        [None if any(objects[i] is None for i in group) else stack(objects, group) for group in groups],
    )


def crop_clip(
    video: Tensor, objects: Tensor | None, crop: int, gen: torch.Generator
) -> tuple[Tensor, Tensor | None]:
    """A random `crop` x `crop` window of `video` (3, T, H, W) and of its object masks (T, H, W), at a
    position drawn from `gen`; the clip unchanged where `crop` is 0 or not smaller than the frame."""
    _, _, h, w = video.shape
    if crop <= 0 or (crop >= h and crop >= w):
        return video, objects
    ch, cw = min(crop, h), min(crop, w)
    y = int(torch.randint(0, h - ch + 1, (), generator=gen))
    x = int(torch.randint(0, w - cw + 1, (), generator=gen))
    window = lambda a: a[..., y : y + ch, x : x + cw]
    return window(video), None if objects is None else window(objects)


class KeptClips:
    """A finite set's clips kept on the training device (`kept` in the config), one shape at a time.

    On first use of a shape, its share of the set (`source.shares`, or all of a folder) is rendered or
    loaded once, in chunks, into one uint8 tensor (N, T, H, W, 3) beside its object masks (N, T, H, W);
    the source's own copies are then dropped. A step gathers its clips by index (the same clips, in the
    same order, as the streaming path's `source.key`), cuts each one's `crop` window at a position drawn
    on the device, and draws the posterior noise there: no per-clip Python and no host copy, so the step
    is the VAE's arithmetic. Pixels of a folder's clips are rounded to uint8 (within 1/255 of the
    streaming path's floats); world clips are uint8 renders, so theirs are exact.
    """

    def __init__(self, source, cfg: VAETrainConfig, device: torch.device, z_channels: int) -> None:
        if getattr(source, "size", None) is None:
            raise ConfigError("kept needs a finite data set: world_clips > 0, or a data folder")
        self.source, self.cfg, self.device, self.z_channels = source, cfg, device, z_channels
        self.sets: dict[Shape, tuple[Tensor, Tensor | None]] = {}

    def batch(
        self, first: int, count: int, shape: Shape, step: int, rank: int
    ) -> tuple[list[Tensor], list[Tensor], list[Tensor | None]]:
        """The clips at global indices first .. first + count - 1, all of `shape`, as `load_batch`'s one
        group: ([videos (B, 3, T, h, w)], [noise (B, C_z, T_z, h/8, w/8)], [masks (B, T, h, w) or None])."""
        video, objects = self.sets.get(shape) or self._build(shape)
        dev, (_, t, h, w, _) = self.device, video.shape
        gen = generator(self.cfg.seed, "kept-vae", step, rank, device=dev)
        clip = torch.arange(first, first + count, device=dev) % video.shape[0]
        crop = self.cfg.crop
        ch, cw = (h, w) if crop <= 0 or (crop >= h and crop >= w) else (min(crop, h), min(crop, w))
        y = (torch.rand(count, generator=gen, device=dev) * (h - ch + 1)).long()
        x = (torch.rand(count, generator=gen, device=dev) * (w - cw + 1)).long()
        rows = (y[:, None] + torch.arange(ch, device=dev))[:, None, :, None]  # (B, 1, ch, 1)
        cols = (x[:, None] + torch.arange(cw, device=dev))[:, None, None, :]  # (B, 1, 1, cw)
        b, f = clip[:, None, None, None], torch.arange(t, device=dev)[None, :, None, None]
        pixels = video[b, f, rows, cols]  # (B, T, ch, cw, 3)
        clips = pixels.permute(0, 4, 1, 2, 3).float() / 127.5 - 1.0
        mask = None if objects is None else objects[b, f, rows, cols]
        eps = torch.randn((count, self.z_channels, *latent_shape((t, ch, cw))), generator=gen, device=dev)
        return [clips], [eps], [mask]

    @torch.no_grad()
    def _build(self, shape: Shape) -> tuple[Tensor, Tensor | None]:
        """`shape`'s share of the set, rendered or loaded once into uint8 on the device."""
        n = share(self.source, shape)
        videos, masks = [], []
        for first in range(0, n, BUILD_CHUNK):
            for it in samples(self.source, list(range(first, min(n, first + BUILD_CHUNK))), shape):
                pixels = ((it["video"].to(self.device) + 1) * 127.5).round().clamp(0, 255)
                videos.append(pixels.to(torch.uint8).permute(1, 2, 3, 0))
                masks.append(None if it.get("objects") is None else it["objects"].to(self.device, torch.bool))
            if hasattr(self.source, "forget"):
                self.source.forget(shape)  # kept here now: the source's copies go
        objects = None if any(m is None for m in masks) else torch.stack(masks)
        self.sets[shape] = (torch.stack(videos), objects)
        return self.sets[shape]


# ---------------------------------------------------------------------------------------------
# The loop


def train_vae(cfg: VAETrainConfig, out: str | Path, resume: bool = False, source=None) -> dict:
    """Train (or with `resume`, continue) the VAE run in folder `out`; returns {"step", "losses"}."""
    d = distributed.setup(cfg.distributed, cfg.device)
    run = Path(out)
    if cfg.batch_size % d.world_size:
        raise ConfigError(f"batch_size {cfg.batch_size} must be a multiple of the {d.world_size} ranks")
    if not resume:
        start(run, cfg, d)
    model = initial_model(cfg, run, resume).to(d.device)
    vae = model.vae.train().requires_grad_(True)
    if cfg.freeze_encoder:  # before the optimizer and EMA, which take the trainable parameters only
        vae.encoder.requires_grad_(False)
    if cfg.compile:  # training calls encode/decode, so compile the two networks themselves
        vae.encoder.compile()
        vae.decoder.compile()
    trainee = VAEStep(vae)
    wrapped = distributed.wrap(trainee, d)
    params = [p for p in trainee.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.5, 0.9))
    ema = EMA(trainee)
    modules: dict[str, nn.Module] = {"raw": trainee}
    optimizers = {"adamw": (trainee, optimizer)}
    disc = disc_wrapped = None
    if cfg.adv_weight > 0:
        torch.manual_seed(cfg.seed + 1)
        disc = Discriminator().to(d.device)
        disc_wrapped = (
            distributed.wrap(disc, Dist(d.rank, d.world_size, d.device, "ddp")) if d.world_size > 1 else disc
        )
        disc_opt = torch.optim.AdamW(disc.parameters(), lr=cfg.disc_lr, betas=(0.5, 0.9))
        modules["disc"], optimizers["disc"] = disc, (disc, disc_opt)
    step = 0
    if resume:
        step = load_checkpoint(run, d, modules, ema, optimizers)["step"]

    shapes = parse_shapes(cfg.shapes)
    source = source or make_source(
        cfg.data, shapes, cfg.seed, d.device, cfg.world_clips, cfg.object_weight > 0
    )
    local = cfg.batch_size // d.world_size
    logger = Logger(run, step, cfg.steps, d.main, "train vae")
    losses: list[float] = []
    z_channels = vae.cfg.z_channels
    kept = KeptClips(source, cfg, d.device, z_channels) if cfg.kept else None

    def checkpoint() -> None:
        ship = ship_model(model, ema, d)
        meta = {"kind": "vae", "step": step, "data_position": step * cfg.batch_size, "preset": cfg.preset}

        def write() -> None:
            vae = ship.vae.to(d.device)
            if not cfg.freeze_encoder:  # a frozen encoder keeps the init's statistics, exactly
                set_latent_stats(vae, source, cfg, d.device)
            psnr = reconstruction_psnr(vae, source, cfg.stats_clips, d.device)
            extra = (
                f"- latent stats from {cfg.stats_clips} clips; reconstruction PSNR {psnr['psnr']:.2f} dB "
                f"on them{object_text(psnr)}\n"
            )
            save_model(ship.to("cpu"), run / "model", card("vae", cfg, step, d.device, extra))

        save_checkpoint(run, d, modules, ema, optimizers, meta, write)

    def sample(step: int) -> None:
        ship = ship_model(model, ema, d)
        if ship is not None:
            write_sample(ship.vae.to(d.device), source, run, step, d.device)

    use_adv = lambda s: disc is not None and s >= cfg.adv_start
    with StopFlag(cfg.time_limit_min) as stop, logger:
        while step < cfg.steps:
            first = step * cfg.batch_size + d.rank * local
            one = cfg.batch_shapes == "one" or cfg.kept
            shape = step_shape(shapes, cfg.seed, step) if one else None
            if kept is not None:
                groups, eps, objects = kept.batch(first, local, shape, step, d.rank)
            else:
                groups, eps, objects = load_batch(
                    range(first, first + local), source, cfg, d.device, z_channels, shape
                )
            stops = distributed.all_sum([float(stop.should_stop())], d)[0]
            set_lr(optimizer, lr_at(step, cfg.lr, cfg.warmup, cfg.steps, cfg.schedule, cfg.min_lr_ratio))
            with autocast(cfg, d.device):  # generator (VAE) step: the networks in bf16 on CUDA ...
                outs = wrapped(groups, eps)
            # ... and the loss terms in fp32 (SSIM's variances are lost in bf16; see `ssim`)
            total, terms = vae_loss(groups, outs, disc if use_adv(step) else None, cfg, objects)
            (total * d.world_size / cfg.batch_size).backward()
            grad_norm = optimizer_step(optimizer, params, cfg.grad_clip)
            ema.update(cfg.ema_decay)
            d_loss = 0.0
            if use_adv(step):  # discriminator step on the same clips
                set_lr(disc_opt, cfg.disc_lr)
                with autocast(cfg, d.device):
                    dl = discriminator_loss(disc_wrapped, groups, [o[0].float() for o in outs])
                (dl * d.world_size / cfg.batch_size).backward()
                optimizer_step(disc_opt, list(disc.parameters()), cfg.grad_clip)
                d_loss = float(dl.detach())
            sums = distributed.all_sum([float(total.detach()), d_loss, *terms.tolist()], d)
            loss = finite(sums[0] / cfg.batch_size, "loss", step)
            losses.append(loss)
            step += 1
            metrics = {"loss": loss, "grad_norm": grad_norm, "lr": optimizer.param_groups[0]["lr"]}
            metrics |= {k: v / cfg.batch_size for k, v in zip(["d_loss", *TERMS], sums[1:], strict=True)}
            pixels = sum(x.numel() / 3 for x in groups) * d.world_size
            logger.step(step, pixels, metrics, write=step % cfg.log_every == 0 or step == cfg.steps)
            if end_of_step(step, cfg, stops > 0, checkpoint, sample):
                break
    distributed.barrier(d)
    return {"step": step, "losses": losses}


# ---------------------------------------------------------------------------------------------
# Latent statistics, evaluation, samples


@torch.no_grad()
def set_latent_stats(vae: nn.Module, source, cfg: VAETrainConfig, device: torch.device) -> None:
    """Measure the per-channel mean/std of posterior means over `stats_clips` clips into the buffers."""
    zs = []
    for i in range(cfg.stats_clips):
        x = source.sample(STATS_OFFSET + i)["video"].to(device)
        zs.append(vae.encode(x[None])[0].float().transpose(0, 1).flatten(1))  # (C_z, T_z*h*w)
    z = torch.cat(zs, dim=1)
    vae.latent_mean.copy_(z.mean(1))
    vae.latent_std.copy_(z.std(1).clamp_min(1e-4))


@torch.no_grad()
def reconstruction_psnr(
    vae: nn.Module, source, clips: int, device: torch.device, offset: int = STATS_OFFSET
) -> dict[str, float | None]:
    """Mean PSNR (dB, pixels compared on a [0, 1] scale) of mean-latent reconstructions of `clips`
    clips: {"psnr": of whole clips, "object_psnr": of their object pixels alone, over the clips that
    show objects (None where the source has no object masks or no clip shows one)}."""
    whole, objects = [], []
    db = lambda mse: 10 * math.log10(1 / max(mse, 1e-12))
    for i in range(clips):
        sample = source.sample(offset + i)
        x = sample["video"].to(device)[None]
        recon = vae.decode(vae.encode(x)[0]).clamp(-1, 1)
        err = ((recon.float() - x.float()) / 2).square().mean(1)[0]  # (T, H, W) on a [0, 1] scale
        whole.append(db(err.mean().item()))
        mask = sample.get("objects")
        if mask is not None and mask.any():
            objects.append(db(err[mask.to(err.device)].mean().item()))
    return {"psnr": sum(whole) / clips, "object_psnr": sum(objects) / len(objects) if objects else None}


def object_text(psnr: dict) -> str:
    """', objects X dB' where `reconstruction_psnr` measured the object pixels, else ''."""
    return "" if psnr["object_psnr"] is None else f", their object pixels {psnr['object_psnr']:.2f} dB"


@torch.no_grad()
def write_sample(vae: nn.Module, source, run: Path, step: int, device: torch.device) -> None:
    """Original | reconstruction side by side, as an mp4 and a contact sheet."""
    x = source.sample(STATS_OFFSET)["video"].to(device)[None]
    recon = vae.decode(vae.encode(x)[0])
    both = torch.cat([x, recon.clamp(-1, 1)], dim=-1)  # (1, 3, T, H, 2W)
    save_sample(
        run / "samples", f"step{step:07d}", to_uint8(both.float().cpu()), f"step {step}: original | VAE"
    )


def evaluate_vae(
    model_dir: str | Path, clips: int = 16, shape: str = "17x128x128", device: str = "auto"
) -> dict[str, float | None]:
    """Reconstruction PSNR of a model folder's (or a run folder's `model/`) VAE on `clips` held-out world
    clips of `shape` (pixels compared in [0, 1], posterior-mean latents), whole and on object pixels
    (`reconstruction_psnr`'s dict)."""
    model_dir = Path(model_dir)
    if (model_dir / "model" / "config.json").exists():  # a run folder
        model_dir = model_dir / "model"
    model = load(model_dir, device)
    dev = next(model.vae.parameters()).device
    source = WorldSource(parse_shapes(shape), seed=0, device=dev, split="heldout", objects=True)
    return reconstruction_psnr(model.vae, source, clips, dev, offset=0)
