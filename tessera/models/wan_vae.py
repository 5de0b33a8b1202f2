"""Wan's causal video VAEs behind tessera's VAE interface (`VideoVAE`'s encode/decode, chunks, tiles).

Wan 2.1's: the same 4x8x8 compression and 16 latent channels as tessera's own VAE, with Wan's layers: an
RMS norm that is `normalize(x) * sqrt(C) * gamma`, a single-head spatial attention in the middle blocks,
temporal downsamplers that are stride-2 convolutions seeing one frame of the previous chunk, and temporal
upsamplers that turn each frame into two by a causal convolution which never sees the first frame.

Wan 2.2's (`WanVAEConfig.residual` and `patch`, the TI2V-5B model's: 4x16x16, 48 latent channels) is the
same layers arranged differently: pixels are cut into 2x2 squares stacked as 12 channels first (and laid
back out after the decoder), each encoder level is a down block whose input, averaged over the block's
2x2 (x2 in time) cells into its output channels, is added to its output (`AvgDown`), and each decoder
level an up block whose input, repeated into those cells, is added likewise (`DupUp`); the decoder has its
own base width. The shortcuts mix nothing across cells, so they are as causal and chunkable as the rest.

Wan runs its VAE one chunk at a time (the first frame, then 4 pixel frames or 1 latent frame at a time)
and its weights were trained for exactly that computation. Each layer here is written so that a whole
clip and any split into chunks after the first frame give the same result as Wan's chunk loop, with the
per-layer past carried in the same explicit cache as `VideoVAE` (a dict keyed by module). Decoding then
runs through `VideoVAE._run_chunks`: memory is one chunk's activations plus the output, flat in length.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tessera.config import WanVAEConfig
from tessera.models.vae import Cache, CausalConv3d, VideoVAE, _remember

# Per-channel statistics of Wan 2.1's latents, published with its VAE (diffusers' `latents_mean` and
# `latents_std`; the original release hard-codes the same numbers).
WAN21_LATENT_MEAN = (
    -0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
    0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921,
)  # fmt: skip
WAN21_LATENT_STD = (
    2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
    3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160,
)  # fmt: skip


class WanNorm(nn.Module):
    """`x / ||x||_C * sqrt(C) * gamma` over channels (dim 1): an RMS norm with Wan's epsilon placement."""

    def __init__(self, channels: int, spatial_dims: int = 3) -> None:
        super().__init__()
        self.scale = channels**0.5
        self.gamma = nn.Parameter(torch.ones(channels, *([1] * spatial_dims)))

    def forward(self, x: Tensor) -> Tensor:
        # the norm reduced in float32 without a float32 copy of x; then x is read once per factor
        norm = torch.linalg.vector_norm(x, dim=1, keepdim=True, dtype=torch.float32)
        return x * (self.scale / norm.clamp_min(1e-12)).to(x.dtype) * self.gamma.to(x.dtype)


class ResBlock(nn.Module):
    """norm -> SiLU -> causal conv, twice, plus a (1x1x1 conv) shortcut."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.norm1 = WanNorm(c_in)
        self.conv1 = CausalConv3d(c_in, c_out)
        self.norm2 = WanNorm(c_out)
        self.conv2 = CausalConv3d(c_out, c_out)
        self.conv_shortcut = CausalConv3d(c_in, c_out, (1, 1, 1)) if c_in != c_out else None

    def forward(self, x: Tensor, cache: Cache | None = None) -> Tensor:
        skip = x if self.conv_shortcut is None else self.conv_shortcut(x)
        h = self.conv1(F.silu(self.norm1(x)), cache)
        return skip + self.conv2(F.silu(self.norm2(h)), cache)


class Attention(nn.Module):
    """Single-head self-attention over the pixels of each frame (time is untouched: causal)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = WanNorm(channels, spatial_dims=2)
        self.to_qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        b, c, t, h, w = x.shape
        y = self.to_qkv(self.norm(x.transpose(1, 2).reshape(b * t, c, h, w)))  # (bt, 3c, h, w)
        q, k, v = y.flatten(2).transpose(1, 2)[:, None].chunk(3, dim=-1)  # each (bt, 1, hw, c)
        y = F.scaled_dot_product_attention(q, k, v)[:, 0].transpose(1, 2).reshape(b * t, c, h, w)
        return x + self.proj(y).view(b, t, c, h, w).transpose(1, 2)


class MidBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.resnets = nn.ModuleList([ResBlock(channels, channels), ResBlock(channels, channels)])
        self.attentions = nn.ModuleList([Attention(channels)])

    def forward(self, x: Tensor, cache: Cache | None = None) -> Tensor:
        x = self.resnets[0](x, cache)
        return self.resnets[1](self.attentions[0](x), cache)


def _per_frame(fn: nn.Module, x: Tensor) -> Tensor:
    """A 2D module applied to every frame of x (B, C, T, H, W)."""
    b, _, t = x.shape[:3]
    y = fn(x.transpose(1, 2).flatten(0, 1))
    return y.unflatten(0, (b, t)).transpose(1, 2)


class Down(nn.Module):
    """Halve height and width (pad right/bottom, stride-2 conv); with `temporal`, then halve time too.

    Time: frame 0 passes alone; every later output frame is a stride-2 convolution over three frames,
    the first of them the last frame of the previous pair (of the previous chunk across a chunk edge)."""

    def __init__(self, channels: int, temporal: bool) -> None:
        super().__init__()
        self.resample = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(channels, channels, 3, stride=2))
        self.time_conv = nn.Conv3d(channels, channels, (3, 1, 1), stride=(2, 1, 1)) if temporal else None

    def forward(self, x: Tensor, cache: Cache | None = None) -> Tensor:
        x = _per_frame(self.resample, x)
        if self.time_conv is None:
            return x
        prev = None if cache is None else cache.get(self)
        if prev is not None:
            y = self.time_conv(torch.cat([prev, x], dim=2))
        elif x.shape[2] == 1:
            y = x
        else:
            y = torch.cat([x[:, :, :1], self.time_conv(x)], dim=2)
        if cache is not None:
            _remember(cache, self, x[:, :, -1:])
        return y


class Up(nn.Module):
    """With `temporal`, double time first: frame 0 stays one frame, every later frame becomes two through
    a causal (3, 1, 1) convolution to twice the channels, which sees only frames after the first. Then
    double height and width (nearest) and convolve to `c_out`."""

    def __init__(self, channels: int, c_out: int, temporal: bool) -> None:
        super().__init__()
        self.resample = nn.Sequential(
            nn.Upsample(scale_factor=2.0, mode="nearest-exact"), nn.Conv2d(channels, c_out, 3, padding=1)
        )
        self.time_conv = CausalConv3d(channels, 2 * channels, (3, 1, 1)) if temporal else None

    def forward(self, x: Tensor, cache: Cache | None = None) -> Tensor:
        if self.time_conv is not None:
            first = cache is None or self not in cache
            head, rest = (x[:, :, :1], x[:, :, 1:]) if first else (None, x)
            if cache is not None:
                cache[self] = True  # the first frame has gone by
            if rest.shape[2]:
                b, c, t, h, w = rest.shape
                r = self.time_conv(rest, cache).view(b, 2, c, t, h, w)
                rest = torch.stack((r[:, 0], r[:, 1]), dim=3).reshape(b, c, 2 * t, h, w)
                x = rest if head is None else torch.cat([head, rest], dim=2)
            else:
                x = head
        return _per_frame(self._spatial, x)

    def _spatial(self, f: Tensor) -> Tensor:
        """(N, C, H, W) -> (N, c_out, 2H, 2W); the nearest upsampling in float32, as Wan does."""
        return self.resample[1](self.resample[0](f.float()).to(f.dtype))


class UpBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, num_res_blocks: int, up: str | None) -> None:
        super().__init__()
        self.resnets = nn.ModuleList(
            ResBlock(c_in if i == 0 else c_out, c_out) for i in range(num_res_blocks + 1)
        )
        self.upsamplers = None
        if up is not None:
            self.upsamplers = nn.ModuleList([Up(c_out, c_out // 2, temporal=up == "3d")])

    def forward(self, x: Tensor, cache: Cache | None = None) -> Tensor:
        for r in self.resnets:
            x = r(x, cache)
        return x if self.upsamplers is None else self.upsamplers[0](x, cache)


class AvgDown(nn.Module):
    """Wan 2.2's down-block shortcut: (B, c_in, T, H, W) -> (B, c_out, T/ft, H/fs, W/fs), each output
    channel the mean of a group of consecutive input channels of the (ft, fs, fs) cells stacked as channels
    (channel-major). An odd frame count gets one zero frame before the first, as Wan pads: in a chunked run
    only the first chunk (one frame) is odd, and a whole clip pairs its frames as the chunks do."""

    def __init__(self, c_in: int, c_out: int, ft: int, fs: int) -> None:
        super().__init__()
        if c_in * ft * fs * fs % c_out:
            raise ValueError(f"AvgDown: {c_in} channels x {ft * fs * fs} cells do not group into {c_out}")
        self.c_out, self.ft, self.fs = c_out, ft, fs

    def forward(self, x: Tensor) -> Tensor:
        ft, fs = self.ft, self.fs
        x = F.pad(x, (0, 0, 0, 0, (-x.shape[2]) % ft, 0))
        b, c, t, h, w = x.shape
        x = x.view(b, c, t // ft, ft, h // fs, fs, w // fs, fs).permute(0, 1, 3, 5, 7, 2, 4, 6)
        return x.reshape(b, self.c_out, -1, t // ft, h // fs, w // fs).mean(2)


class DupUp(nn.Module):
    """Wan 2.2's up-block shortcut, `AvgDown`'s transpose: (B, c_in, T, H, W) -> (B, c_out, ft T, fs H,
    fs W), each input channel repeated over a group of the (ft, fs, fs) cells' output channels. With
    `first` (a clip's first frame) the ft - 1 frames before its last copy are dropped, as the temporal
    upsampler keeps the first frame single."""

    def __init__(self, c_in: int, c_out: int, ft: int, fs: int) -> None:
        super().__init__()
        if c_out * ft * fs * fs % c_in:
            raise ValueError(f"DupUp: {c_in} channels do not spread over {c_out} x {ft * fs * fs} cells")
        self.repeats = c_out * ft * fs * fs // c_in
        self.c_out, self.ft, self.fs = c_out, ft, fs

    def forward(self, x: Tensor, first: bool) -> Tensor:
        ft, fs = self.ft, self.fs
        b, _, t, h, w = x.shape
        x = x.repeat_interleave(self.repeats, dim=1).view(b, self.c_out, ft, fs, fs, t, h, w)
        x = x.permute(0, 1, 5, 2, 6, 3, 7, 4).reshape(b, self.c_out, t * ft, h * fs, w * fs)
        return x[:, :, ft - 1 :] if first else x


class DownBlock(nn.Module):
    """Wan 2.2's encoder level: residual blocks, then (`down`) a `Down`, plus the `AvgDown` shortcut."""

    def __init__(self, c_in: int, c_out: int, num_res_blocks: int, down: bool, temporal: bool) -> None:
        super().__init__()
        self.resnets = nn.ModuleList(
            ResBlock(c_in if j == 0 else c_out, c_out) for j in range(num_res_blocks)
        )
        self.downsampler = Down(c_out, temporal) if down else None
        self.avg_shortcut = AvgDown(c_in, c_out, 2 if temporal else 1, 2 if down else 1)

    def forward(self, x: Tensor, cache: Cache | None = None) -> Tensor:
        skip = self.avg_shortcut(x)
        for r in self.resnets:
            x = r(x, cache)
        x = x if self.downsampler is None else self.downsampler(x, cache)
        return x + skip


class ResidualUpBlock(nn.Module):
    """Wan 2.2's decoder level: residual blocks, then (`up`) an `Up` that keeps the width, plus the
    `DupUp` shortcut."""

    def __init__(self, c_in: int, c_out: int, num_res_blocks: int, up: str | None) -> None:
        super().__init__()
        self.resnets = nn.ModuleList(
            ResBlock(c_in if i == 0 else c_out, c_out) for i in range(num_res_blocks + 1)
        )
        self.upsampler = None if up is None else Up(c_out, c_out, temporal=up == "3d")
        self.avg_shortcut = None if up is None else DupUp(c_in, c_out, 2 if up == "3d" else 1, 2)

    def forward(self, x: Tensor, cache: Cache | None = None) -> Tensor:
        first = cache is None or self not in cache
        if cache is not None:
            cache[self] = True  # the first frame has gone by
        skip = None if self.avg_shortcut is None else self.avg_shortcut(x, first)
        for r in self.resnets:
            x = r(x, cache)
        x = x if self.upsampler is None else self.upsampler(x, cache)
        return x if skip is None else x + skip


def patchify(x: Tensor, p: int) -> Tensor:
    """(B, C, T, H, W) -> (B, C p p, T, H/p, W/p): each p x p square's pixels as channels, ordered as Wan
    2.2 orders them (channel, then column, then row)."""
    if p == 1:
        return x
    b, c, t, h, w = x.shape
    x = x.view(b, c, t, h // p, p, w // p, p).permute(0, 1, 6, 4, 2, 3, 5)
    return x.reshape(b, c * p * p, t, h // p, w // p)


def unpatchify(x: Tensor, p: int) -> Tensor:
    """`patchify`'s inverse: (B, C p p, T, h, w) -> (B, C, T, h p, w p)."""
    if p == 1:
        return x
    b, cpp, t, h, w = x.shape
    x = x.view(b, cpp // (p * p), p, p, t, h, w).permute(0, 1, 4, 5, 3, 6, 2)
    return x.reshape(b, cpp // (p * p), t, h * p, w * p)


class Encoder(nn.Module):
    """Pixels (B, 3, T, H, W) -> posterior parameters (B, 2 C_z, T_z, H/s, W/s) (after Wan's quant conv),
    s = `cfg.space_factor`."""

    def __init__(self, cfg: WanVAEConfig) -> None:
        super().__init__()
        self.patch = cfg.patch
        dims = [cfg.base_channels * m for m in (1, *cfg.channel_mults)]
        last = len(cfg.channel_mults) - 1
        self.conv_in = CausalConv3d(cfg.in_channels * cfg.patch**2, dims[0])
        layers: list[nn.Module] = []
        for i, (c_in, c_out) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
            if cfg.residual:
                temporal = i < last and cfg.temporal_down[i]
                layers.append(DownBlock(c_in, c_out, cfg.num_res_blocks, i < last, temporal))
                continue
            for j in range(cfg.num_res_blocks):
                layers.append(ResBlock(c_in if j == 0 else c_out, c_out))
            if i < last:
                layers.append(Down(c_out, cfg.temporal_down[i]))
        self.down_blocks = nn.ModuleList(layers)
        self.mid_block = MidBlock(dims[-1])
        self.norm_out = WanNorm(dims[-1])
        self.conv_out = CausalConv3d(dims[-1], 2 * cfg.z_channels)
        self.quant_conv = CausalConv3d(2 * cfg.z_channels, 2 * cfg.z_channels, (1, 1, 1))

    def forward(self, x: Tensor, cache: Cache | None = None) -> Tensor:
        x = self.conv_in(patchify(x, self.patch), cache)
        for layer in self.down_blocks:
            x = layer(x, cache)
        x = self.mid_block(x, cache)
        return self.quant_conv(self.conv_out(F.silu(self.norm_out(x)), cache))


class Decoder(nn.Module):
    """Latents (B, C_z, T_z, h, w) -> pixels (B, 3, 1 + 4 (T_z - 1), s h, s w) (Wan's post-quant conv
    first), s = `cfg.space_factor`."""

    def __init__(self, cfg: WanVAEConfig) -> None:
        super().__init__()
        self.patch = cfg.patch
        mults = cfg.channel_mults
        base = cfg.decoder_base_channels or cfg.base_channels
        dims = [base * m for m in (mults[-1], *mults[::-1])]
        temporal_up = cfg.temporal_down[::-1]
        self.post_quant_conv = CausalConv3d(cfg.z_channels, cfg.z_channels, (1, 1, 1))
        self.conv_in = CausalConv3d(cfg.z_channels, dims[0])
        self.mid_block = MidBlock(dims[0])
        blocks: list[nn.Module] = []
        for i, (c_in, c_out) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
            up = None if i == len(mults) - 1 else ("3d" if temporal_up[i] else "2d")
            if cfg.residual:
                blocks.append(ResidualUpBlock(c_in, c_out, cfg.num_res_blocks, up))
            else:  # Wan 2.1's upsamplers halve the width, which the next level's input takes
                blocks.append(UpBlock(c_in // 2 if i > 0 else c_in, c_out, cfg.num_res_blocks, up))
        self.up_blocks = nn.ModuleList(blocks)
        self.norm_out = WanNorm(dims[-1])
        self.conv_out = CausalConv3d(dims[-1], cfg.in_channels * cfg.patch**2)

    def forward(self, z: Tensor, cache: Cache | None = None) -> Tensor:
        x = self.mid_block(self.conv_in(self.post_quant_conv(z), cache), cache)
        for block in self.up_blocks:
            x = block(x, cache)
        return unpatchify(self.conv_out(F.silu(self.norm_out(x)), cache), self.patch)


class WanVAE(VideoVAE):
    """Wan's VAE (2.1's, or 2.2's with `cfg.residual` and `cfg.patch`) with `VideoVAE`'s interface:
    encode/decode (chunked by default), encode_latents and decode_latents (normalised by Wan's published
    latent statistics), tiled decoding on request.

    `tile` (latent pixels, None: whole frames) is the tile size `decode_latents` uses; Wan's decoder at
    480x832 fits a 24 GB GPU untiled, so tiling is a memory option, not automatic."""

    def __init__(self, cfg: WanVAEConfig) -> None:
        nn.Module.__init__(self)
        _check(cfg)
        self.cfg = cfg
        self.time_factor = 2 ** sum(cfg.temporal_down)
        self.space_factor = cfg.space_factor
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.register_buffer("latent_mean", torch.zeros(cfg.z_channels))
        self.register_buffer("latent_std", torch.ones(cfg.z_channels))
        self.tile: int | None = None
        self.tile_overlap = 8

    def encode(self, x: Tensor, chunked: bool = True) -> tuple[Tensor, Tensor]:
        """`VideoVAE.encode` on x cast to the weights' type; the posterior comes back in float32."""
        mean, logvar = super().encode(x.to(self._dtype()), chunked)
        return mean.float(), logvar.float()

    def decode(self, z: Tensor, chunked: bool = True, tile: int | None = None, overlap: int = 8) -> Tensor:
        """`VideoVAE.decode` on z cast to the weights' type (pixels come back in that type)."""
        return super().decode(z.to(self._dtype()), chunked, tile, overlap)

    def _dtype(self) -> torch.dtype:
        return self.decoder.conv_in.conv.weight.dtype

    def decode_latents(self, z: Tensor, tile: int | None = None) -> Tensor:
        """Normalised latents -> pixels (B, 3, T, H, W), tiled when `tile` (or `self.tile`) is set."""
        z = z * self.latent_std.to(z.dtype).view(1, -1, 1, 1, 1) + self.latent_mean.to(z.dtype).view(
            1, -1, 1, 1, 1
        )
        return self.decode(z, tile=tile or self.tile, overlap=self.tile_overlap)


def _check(cfg: WanVAEConfig) -> None:
    downs = len(cfg.channel_mults) - 1
    if len(cfg.temporal_down) != downs:
        raise ValueError(
            f"WanVAEConfig: temporal_down needs one flag per downsample ({downs}), "
            f"got {len(cfg.temporal_down)}"
        )
    f = 2 ** sum(cfg.temporal_down)
    if cfg.chunk_frames < f or cfg.chunk_frames % f:
        raise ValueError(
            f"WanVAEConfig: chunk_frames must be a positive multiple of {f}, got {cfg.chunk_frames}"
        )
    if not (type(cfg.patch) is int and cfg.patch >= 1):
        raise ValueError(f"WanVAEConfig: patch must be a whole number >= 1, got {cfg.patch!r}")
    if cfg.decoder_base_channels is not None and not cfg.residual:
        raise ValueError("WanVAEConfig: decoder_base_channels is a Wan 2.2 (residual) option")


# ---------------------------------------------------------------------------------------------
# Checkpoint layouts


def from_diffusers(vae: WanVAE, state: dict[str, Tensor]) -> dict[str, Tensor]:
    """diffusers' `AutoencoderKLWan` state dict -> this module's names (the tensors themselves unchanged;
    the latent statistics are buffers, filled from the diffusers config by the loader)."""
    out = {}
    for mine in vae.state_dict():
        if mine in ("latent_mean", "latent_std"):
            continue
        theirs = _diffusers_name(vae, mine)
        if theirs in state:
            out[mine] = state[theirs]
    return out


def _diffusers_name(vae: WanVAE, mine: str) -> str:
    name = mine
    for side, quant in (("encoder.", "quant_conv"), ("decoder.", "post_quant_conv")):
        if name.startswith(side + quant + "."):
            name = name[len(side) :]
    return re.sub(r"\.conv\.(weight|bias)$", r".\1", name) if _in_causal_conv(vae, mine) else name


def _in_causal_conv(vae: WanVAE, key: str) -> bool:
    module = key.rsplit(".", 2)[0]
    return isinstance(vae.get_submodule(module), CausalConv3d)


def config_from_original(state: dict[str, Tensor]) -> WanVAEConfig:
    """The WanVAEConfig of an original-release VAE state dict, read off its shapes (the release ships no
    config): base width, latent channels, per-level widths and residual blocks per level."""
    base = state["encoder.conv1.weight"].shape[0]
    levels: list[list[int]] = [[]]
    i = 0
    while (
        f"encoder.downsamples.{i}.residual.6.weight" in state
        or f"encoder.downsamples.{i}.resample.1.weight" in state
    ):
        if f"encoder.downsamples.{i}.resample.1.weight" in state:
            levels.append([])
        else:
            levels[-1].append(state[f"encoder.downsamples.{i}.residual.6.weight"].shape[0])
        i += 1
    temporal = tuple(
        f"encoder.downsamples.{j}.time_conv.weight" in state
        for j in range(i)
        if f"encoder.downsamples.{j}.resample.1.weight" in state
    )
    return WanVAEConfig(
        z_channels=state["conv2.weight"].shape[0],
        base_channels=base,
        channel_mults=tuple(level[0] // base for level in levels),
        temporal_down=temporal,
        num_res_blocks=len(levels[0]),
    )


def original_to_diffusers(state: dict[str, Tensor], num_res_blocks: int = 2) -> dict[str, Tensor]:
    """The original release's VAE state dict (`Wan2.1_VAE.pth`) -> diffusers' names.

    The original keeps flat lists (`encoder.downsamples.N`, `decoder.upsamples.N`, `middle.0/1/2`,
    `head.0/2`, residual blocks as `residual.0/2/3/6` + `shortcut`, `conv1`/`conv2` for the quant convs);
    the decoder's flat list is regrouped into up blocks of `num_res_blocks + 1` residual blocks and one
    resample each."""
    res = {"residual.0.gamma": "norm1.gamma", "residual.2": "conv1", "residual.3.gamma": "norm2.gamma"}
    res |= {"residual.6": "conv2", "shortcut": "conv_shortcut"}
    per_level = num_res_blocks + 2  # residual blocks + the resample of a decoder level
    out = {}
    for key, value in state.items():
        k = key
        if k.startswith(("conv1.", "conv2.")):
            k = ("quant_conv." if k.startswith("conv1.") else "post_quant_conv.") + k.split(".", 1)[1]
        else:
            k = re.sub(r"^(encoder|decoder)\.conv1\.", r"\1.conv_in.", k)
            k = re.sub(r"^(encoder|decoder)\.head\.0\.", r"\1.norm_out.", k)
            k = re.sub(r"^(encoder|decoder)\.head\.2\.", r"\1.conv_out.", k)
            k = re.sub(r"^(encoder|decoder)\.middle\.1\.", r"\1.mid_block.attentions.0.", k)
            k = re.sub(
                r"^(encoder|decoder)\.middle\.([02])\.",
                lambda m: f"{m.group(1)}.mid_block.resnets.{int(m.group(2)) // 2}.",
                k,
            )
            k = k.replace("encoder.downsamples.", "encoder.down_blocks.")
            m = re.match(r"^decoder\.upsamples\.(\d+)\.(.*)$", k)
            if m:
                i, rest = int(m.group(1)), m.group(2)
                level, j = divmod(i, per_level)
                if j == per_level - 1:
                    k = f"decoder.up_blocks.{level}.upsamplers.0.{rest}"
                else:
                    k = f"decoder.up_blocks.{level}.resnets.{j}.{rest}"
            for a, b in res.items():
                k = re.sub(rf"\.{re.escape(a)}(\.|$)", rf".{b}\1", k)
        out[k] = value
    return out
