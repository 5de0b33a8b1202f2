"""Causal 3D video VAE: 4x8x8 (time x height x width) compression, KL-regularised.

Pixels `x (B, 3, T, H, W)` in [-1, 1] with `T = 1 + 4k`  <->  latents `z (B, C_z, 1 + k, H/8, W/8)`.

Causality organises everything. Every convolution over time pads only the past (with zeros), so the
latents of pixel frames 0..t depend on nothing later. The temporal down- and upsamplers pass the first
frame through alone, so an image is a one-frame video: latent frame 0 is pixel frame 0, and latent frame
k > 0 covers pixel frames 4k-3..4k.

Because each layer only looks back, a clip can run in chunks: the first frame alone, then
`cfg.chunk_frames` pixel frames at a time. Each causal convolution keeps the last frames of its
(past-padded) input in a cache, a plain dict passed in explicitly and keyed by the module, and prepends
them to the next chunk. The result equals running the whole clip at once, and activation memory stays
flat in T. Normalisation is an RMS over channels at each position (no statistics over time or space), so
chunking is exact, and spatial tiles agree with the full decode wherever a tile holds the whole receptive
field; large frames decode by tiles blended linearly over their overlap.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tessera.config import VAEConfig

# decode_latents tiles automatically when a latent frame is larger than this on either side
# (64 latent pixels = 512 pixels), with AUTO_TILE x AUTO_TILE latent tiles overlapping by AUTO_OVERLAP.
AUTO_TILE_ABOVE = 64
AUTO_TILE = 64
AUTO_OVERLAP = 8

Cache = dict  # nn.Module -> Tensor: the past frames each causal layer carries from one chunk to the next


class ChannelRMSNorm(nn.Module):
    """RMS norm over channels at each (t, h, w): mixes nothing across time or space, so it is causal."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))

    def forward(self, x: Tensor) -> Tensor:
        """x (B, C, T, H, W) -> same shape; statistics in fp32 for low-precision inputs."""
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(dim=1, keepdim=True) + self.eps)
        return (h * self.weight.float().view(1, -1, 1, 1, 1)).to(x.dtype)


class CausalConv3d(nn.Module):
    """3D convolution that pads time with zeros on the past side only; spatial padding is 'same'."""

    def __init__(self, c_in: int, c_out: int, kernel: tuple[int, int, int] = (3, 3, 3)):
        super().__init__()
        kt, kh, kw = kernel
        self.past = kt - 1  # frames of history each output frame sees
        self.conv = nn.Conv3d(c_in, c_out, kernel, padding=(0, kh // 2, kw // 2))
        self.as_2d = False  # on CUDA, run as a 2D convolution over frames (`frame_conv`)

    def forward(self, x: Tensor, cache: Cache | None = None) -> Tensor:
        """x (B, C, T, H, W) -> (B, C_out, T, H, W). `cache` None: x is a whole clip; a dict: x is the
        next chunk of a clip, and the dict carries this layer's past between chunks."""
        if self.past == 0:
            return frame_conv(self.conv, x, self.as_2d and x.is_cuda)
        prev = None if cache is None else cache.get(self)
        if prev is None and x.shape[2] == 1:
            # A lone first frame (an image, or a clip's first chunk) has only zeros in its past:
            # only the kernel's last time slice touches data, so a 2D conv gives the same result
            # at a third of the cost.
            if cache is not None:  # the next chunk's past: zeros, then this frame
                cache[self] = F.pad(x, (0, 0, 0, 0, self.past - 1, 0))
            return self._first_frame(x)
        if prev is None:
            prev = x.new_zeros(x.shape[0], x.shape[1], self.past, *x.shape[3:])
        x = torch.cat([prev, x], dim=2)  # (B, C, past + T, H, W)
        if cache is not None:
            _remember(cache, self, x[:, :, -self.past :])
        return frame_conv(self.conv, x, self.as_2d and x.is_cuda)

    def _first_frame(self, x: Tensor) -> Tensor:
        w = self.conv.weight[:, :, -1]  # (C_out, C_in, kh, kw)
        y = F.conv2d(x[:, :, 0], w, self.conv.bias, padding=self.conv.padding[1:])
        return y.unsqueeze(2)


class ResBlock(nn.Module):
    """norm -> SiLU -> causal conv, twice, plus a (1x1x1-projected) skip."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.norm1, self.conv1 = ChannelRMSNorm(c_in), CausalConv3d(c_in, c_out)
        self.norm2, self.conv2 = ChannelRMSNorm(c_out), CausalConv3d(c_out, c_out)
        self.skip = nn.Conv3d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, cache: Cache | None = None) -> Tensor:
        """x (B, C_in, T, H, W) -> (B, C_out, T, H, W)."""
        h = self.conv1(F.silu(self.norm1(x)), cache)
        h = self.conv2(F.silu(self.norm2(h)), cache)
        return self.skip(x) + h


class SpatialDown(nn.Module):
    """Per-frame 3x3 convolution with stride 2: (B, C, T, H, W) -> (B, C, T, H/2, W/2)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv3d(channels, channels, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))

    def forward(self, x: Tensor, cache: Cache | None = None) -> Tensor:
        """Per frame, so it needs no cache."""
        return frame_conv(self.conv, x, x.is_cuda)


class SpatialUp(nn.Module):
    """Nearest 2x upsampling then a per-frame 3x3 conv: (B, C_in, T, H, W) -> (B, C_out, T, 2H, 2W)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = nn.Conv3d(c_in, c_out, (1, 3, 3), padding=(0, 1, 1))

    def forward(self, x: Tensor, cache: Cache | None = None) -> Tensor:
        """Per frame, so it needs no cache."""
        x = F.interpolate(x, scale_factor=(1.0, 2.0, 2.0), mode="nearest")
        return frame_conv(self.conv, x, x.is_cuda)


def frame_conv(conv: nn.Conv3d, x: Tensor, as_2d: bool) -> Tensor:
    """A Conv3d without time padding, (B, C, T, H, W) -> (B, C_out, T', H', W'); `as_2d`: run as one 2D
    convolution over the output frames (the same numbers, other kernels), keeping x's memory layout. A
    kernel `kt` frames deep sees each output frame's `kt` input frames stacked as channels (C * kt in,
    x copied `kt` times); one frame deep, it is a plain 2D convolution over the B*T frames.

    On CUDA the 2D form is used for one-frame-deep kernels: for the 3D form cuDNN picked its direct grouped
    kernel for the gradient of SpatialUp's input, 125 ms of a 203 ms VAE training step
    (`bench/vae_step_profile.py --by-shape`, H100, g2-z32, batch 32 of 33x64x64 crops). Deeper kernels
    use it where `CausalConv3d.as_2d` is set. On the CPU the 3D form is kept (the shipped model's outputs
    stay byte for byte)."""
    if not as_2d:
        return conv(x)
    assert conv.padding[0] == 0 and conv.groups == 1, "time padding and groups are not supported"
    (kt, *_), (st, *_) = conv.kernel_size, conv.stride
    B, C, T, H, W = x.shape
    t_out = (T - kt) // st + 1
    if kt == 1:
        frames = x[:, :, ::st].transpose(1, 2).reshape(B * t_out, C, H, W)
    else:  # (B, C, kt, T', H, W): tap j of output frame i is input frame i * st + j
        taps = torch.stack([x[:, :, j : j + st * (t_out - 1) + 1 : st] for j in range(kt)], dim=2)
        frames = taps.permute(0, 3, 1, 2, 4, 5).reshape(B * t_out, C * kt, H, W)
    weight = conv.weight.reshape(conv.out_channels, C * kt, *conv.kernel_size[1:])  # (C, kt) flattened alike
    y = F.conv2d(frames, weight, conv.bias, conv.stride[1:], conv.padding[1:], conv.dilation[1:])
    y = y.view(B, t_out, *y.shape[1:]).transpose(1, 2)
    last = x.is_contiguous(memory_format=torch.channels_last_3d) and not x.is_contiguous()
    return y.contiguous(memory_format=torch.channels_last_3d if last else torch.contiguous_format)


def convs_over_frames(model: nn.Module, on: bool = True) -> nn.Module:
    """Run every `CausalConv3d` of `model` on CUDA as a 2D convolution over frames (`frame_conv`), or not."""
    for m in model.modules():
        if isinstance(m, CausalConv3d):
            m.as_2d = on
    return model


class TemporalDown(nn.Module):
    """Halves time, keeping the first frame alone: frames (0), (0,1,2), (2,3,4), ... -> one frame each.

    From the start of a clip T is odd and the output has 1 + (T-1)/2 frames; a later chunk (T even)
    prepends the previous chunk's last frame and gives T/2.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv3d(channels, channels, (3, 1, 1), stride=(2, 1, 1))

    def forward(self, x: Tensor, cache: Cache | None = None) -> Tensor:
        """x (B, C, T, H, W) -> (B, C, T', H, W) as above."""
        prev = None if cache is None else cache.get(self)
        if prev is not None:
            y = self.conv(torch.cat([prev, x], dim=2))
        else:
            rest = self.conv(x) if x.shape[2] >= 3 else x[:, :, :0]  # windows (0,1,2), (2,3,4), ...
            y = torch.cat([x[:, :, :1], rest], dim=2)
        if cache is not None:
            _remember(cache, self, x[:, :, -1:])
        return y


class TemporalUp(nn.Module):
    """Doubles time except for the first frame: a causal conv makes 2C channels per frame, split into two
    frames; the clip's first frame stays one frame. (B, C, T, H, W) -> (B, C, 2T - 1 or 2T, H, W)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = CausalConv3d(channels, 2 * channels, (3, 1, 1))

    def forward(self, x: Tensor, cache: Cache | None = None) -> Tensor:
        """Output 2T - 1 frames at the start of a clip, 2T for a later chunk."""
        first = cache is None or self.conv not in cache
        y = self.conv(x, cache)  # (B, 2C, T, H, W)
        b, c2, t, h, w = y.shape
        # (B, 2, C, T, H, W) -> (B, C, T, 2, H, W) -> (B, C, 2T, H, W): frame i becomes frames 2i, 2i+1
        y = y.view(b, 2, c2 // 2, t, h, w).permute(0, 2, 3, 1, 4, 5).reshape(b, c2 // 2, 2 * t, h, w)
        if first:
            y = torch.cat([x[:, :, :1], y[:, :, 2:]], dim=2)
        return y


class Encoder(nn.Module):
    """(B, 3, T, H, W) -> (B, 2 C_z, T_z, H/8, W/8): the posterior's mean and log-variance, stacked."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        chs = [cfg.base_channels * m for m in cfg.channel_mults]
        self.conv_in = CausalConv3d(cfg.in_channels, chs[0])
        blocks: list[nn.Module] = []
        c = chs[0]
        for i, ch in enumerate(chs):
            for _ in range(cfg.num_res_blocks):
                blocks.append(ResBlock(c, ch))
                c = ch
            if i < len(chs) - 1:
                blocks.append(SpatialDown(c))
                if cfg.temporal_down[i]:
                    blocks.append(TemporalDown(c))
        blocks += [ResBlock(c, c), ResBlock(c, c)]  # middle, at the latent resolution
        self.blocks = nn.ModuleList(blocks)
        self.norm_out = ChannelRMSNorm(c)
        self.conv_out = CausalConv3d(c, 2 * cfg.z_channels)

    def forward(self, x: Tensor, cache: Cache | None = None) -> Tensor:
        """Whole clip (cache None) or the next chunk of one (cache a dict shared across chunks)."""
        h = self.conv_in(x, cache)
        for block in self.blocks:
            h = block(h, cache)
        return self.conv_out(F.silu(self.norm_out(h)), cache)


class Decoder(nn.Module):
    """(B, C_z, T_z, H/8, W/8) -> (B, 3, T, H, W), mirroring the encoder."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        chs = [cfg.base_channels * m for m in cfg.channel_mults]
        c = chs[-1]
        self.conv_in = CausalConv3d(cfg.z_channels, c)
        blocks: list[nn.Module] = [ResBlock(c, c), ResBlock(c, c)]  # middle
        for i in reversed(range(len(chs))):
            for _ in range(cfg.num_res_blocks):
                blocks.append(ResBlock(c, chs[i]))
                c = chs[i]
            if i > 0:
                if cfg.temporal_down[i - 1]:
                    blocks.append(TemporalUp(c))
                # change width before the larger resolution: the full-size levels are the costly ones
                blocks.append(SpatialUp(c, chs[i - 1]))
                c = chs[i - 1]
        self.blocks = nn.ModuleList(blocks)
        self.norm_out = ChannelRMSNorm(c)
        self.conv_out = CausalConv3d(c, cfg.in_channels)

    def forward(self, z: Tensor, cache: Cache | None = None) -> Tensor:
        """Whole clip (cache None) or the next chunk of one (cache a dict shared across chunks)."""
        h = self.conv_in(z, cache)
        for block in self.blocks:
            h = block(h, cache)
        return self.conv_out(F.silu(self.norm_out(h)), cache)


class VideoVAE(nn.Module):
    """Causal 3D VAE with chunked (flat-memory) encode/decode and tiled decode of large frames."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        _check_config(cfg)
        self.cfg = cfg
        self.time_factor = 2 ** sum(cfg.temporal_down)  # 4
        self.space_factor = cfg.space_factor  # 8
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        # Per-channel statistics of the latents (set after training), saved with the weights.
        self.register_buffer("latent_mean", torch.zeros(cfg.z_channels))
        self.register_buffer("latent_std", torch.ones(cfg.z_channels))

    def encode(self, x: Tensor, chunked: bool = True) -> tuple[Tensor, Tensor]:
        """x (B, 3, T, H, W) in [-1, 1], T = 1 + 4k, H and W multiples of 8 -> (mean, logvar), each
        (B, C_z, T_z, H/8, W/8). `chunked` runs the first frame alone, then `cfg.chunk_frames` frames
        at a time with the causal caches (flat memory in T); False runs the whole clip at once."""
        self._check_video(x)
        if not chunked:
            h = self.encoder(x)
        else:
            h = self._run_chunks(
                self.encoder, x, self.cfg.chunk_frames, self.cfg.chunk_frames // self.time_factor
            )
        mean, logvar = h.chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def decode(self, z: Tensor, chunked: bool = True, tile: int | None = None, overlap: int = 8) -> Tensor:
        """Raw (unnormalised) z (B, C_z, T_z, h, w) -> x (B, 3, 1 + 4(T_z - 1), 8h, 8w).

        `chunked` decodes one chunk of latent frames at a time with the causal caches (flat memory in
        T). `tile` (latent pixels) decodes tile x tile windows, neighbours sharing `overlap` latent
        pixels, blended linearly across the overlap, so memory is bounded in frame size too."""
        self._check_latent(z)
        if tile is not None and (tile <= overlap or overlap < 0):
            raise ValueError(
                f"decode: need tile > overlap >= 0 (latent pixels), got tile={tile}, overlap={overlap}"
            )
        if tile is not None and max(z.shape[3:]) > tile:
            return self._decode_tiled(z, chunked, tile, overlap)
        return self._decode_frames(z, chunked)

    def encode_latents(
        self, x: Tensor, sample: bool = False, generator: torch.Generator | None = None, chunked: bool = True
    ) -> Tensor:
        """x -> normalised latents `(z - latent_mean) / latent_std` per channel; z is the posterior mean,
        or a sample from it with `sample=True`. Encodes in chunks unless `chunked` is False (faster on a
        GPU with memory to spare: one call per layer instead of one per layer and chunk)."""
        mean, logvar = self.encode(x, chunked=chunked)
        z = _reparameterise(mean, logvar, generator) if sample else mean
        return (z - _per_channel(self.latent_mean, z)) / _per_channel(self.latent_std, z)

    def decode_latents(self, z: Tensor, tile: int | None = None) -> Tensor:
        """Normalised latents -> pixels (B, 3, T, H, W). With `tile` None, frames larger than
        AUTO_TILE_ABOVE latent pixels (512 pixels) on either side decode in AUTO_TILE-sized tiles."""
        z = z * _per_channel(self.latent_std, z) + _per_channel(self.latent_mean, z)
        if tile is None and max(z.shape[3:]) > AUTO_TILE_ABOVE:
            return self.decode(z, tile=AUTO_TILE, overlap=AUTO_OVERLAP)
        return self.decode(z, tile=tile)

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Training pass: x -> (recon, mean, logvar), decoding a reparameterised sample of the posterior.
        Runs whole clips: backprop keeps every activation anyway, so chunking would save nothing."""
        mean, logvar = self.encode(x, chunked=False)
        recon = self.decode(_reparameterise(mean, logvar, generator), chunked=False)
        return recon, mean, logvar

    def _run_chunks(self, net: nn.Module, x: Tensor, size_in: int, size_out: int) -> Tensor:
        # x (B, C, T, H, W) through `net` chunk by chunk (first frame alone, then size_in frames, each
        # giving size_out frames), written into one preallocated output: the peak is the output plus
        # one chunk's activations, whatever T is.
        if x.shape[2] == 1:
            return net(x)  # a single frame is a single chunk: no caches to keep
        t_out = 1 + (x.shape[2] - 1) * size_out // size_in
        cache: Cache = {}
        out = None
        for (t0, t1), (o0, o1) in zip(_chunks(x.shape[2], size_in), _chunks(t_out, size_out), strict=True):
            y = net(x[:, :, t0:t1], cache)
            if out is None:
                out = y.new_empty(*y.shape[:2], t_out, *y.shape[3:])
            out[:, :, o0:o1] = y
        return out

    def _decode_frames(self, z: Tensor, chunked: bool) -> Tensor:
        if not chunked:
            return self.decoder(z)
        return self._run_chunks(
            self.decoder, z, self.cfg.chunk_frames // self.time_factor, self.cfg.chunk_frames
        )

    def _decode_tiled(self, z: Tensor, chunked: bool, tile: int, overlap: int) -> Tensor:
        s = self.space_factor
        b, _, t_z, h, w = z.shape
        t = 1 + self.time_factor * (t_z - 1)
        out = z.new_zeros(b, self.cfg.in_channels, t, h * s, w * s)
        weight = z.new_zeros(h * s, w * s)  # sum of blend weights per pixel
        spans_h, spans_w = _tile_spans(h, tile, overlap), _tile_spans(w, tile, overlap)
        for i, (h0, h1) in enumerate(spans_h):
            for j, (w0, w1) in enumerate(spans_w):
                x_tile = self._decode_frames(z[:, :, :, h0:h1, w0:w1], chunked)
                # (th, tw) pixels: 1 inside, crossfading linearly with each neighbour across the overlap
                mask = torch.outer(_blend_1d(spans_h, i, s, z), _blend_1d(spans_w, j, s, z))
                out[..., h0 * s : h1 * s, w0 * s : w1 * s].addcmul_(x_tile, mask)
                weight[h0 * s : h1 * s, w0 * s : w1 * s] += mask
        return out.div_(weight)

    def _check_video(self, x: Tensor) -> None:
        c, f, s = self.cfg.in_channels, self.time_factor, self.space_factor
        if x.dim() != 5 or x.shape[1] != c:
            raise ValueError(f"encode: expected video (B, {c}, T, H, W), got shape {tuple(x.shape)}")
        if (x.shape[2] - 1) % f != 0:
            raise ValueError(
                f"encode: frame count T must be 1 + {f}k (1, {1 + f}, {1 + 2 * f}, ...), got T={x.shape[2]}"
            )
        if x.shape[3] % s or x.shape[4] % s:
            raise ValueError(
                f"encode: height and width must be multiples of {s}, got {x.shape[3]}x{x.shape[4]}"
            )

    def _check_latent(self, z: Tensor) -> None:
        c = self.cfg.z_channels
        if z.dim() != 5 or z.shape[1] != c or z.shape[2] < 1:
            raise ValueError(f"decode: expected latents (B, {c}, T_z >= 1, h, w), got shape {tuple(z.shape)}")


def kl_loss(mean: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mean, exp(logvar)) || N(0, 1)), averaged over every latent element (and the batch)."""
    return 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).mean()


def _reparameterise(mean: Tensor, logvar: Tensor, generator: torch.Generator | None) -> Tensor:
    noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
    return mean + torch.exp(0.5 * logvar) * noise


def _remember(cache: Cache, key: nn.Module, frames: Tensor) -> None:
    """Keep `frames` (a view into this chunk's activations) as `key`'s past for the next chunk.

    A copy, so the view does not pin the whole chunk. Outside autograd the previous chunk's buffer is
    overwritten in place: later chunks then allocate nothing that outlives them, so the allocator's heap
    does not fragment and the peak stays flat however many chunks run."""
    old = cache.get(key)
    if old is not None and old.shape == frames.shape and not torch.is_grad_enabled():
        old.copy_(frames)
    else:
        cache[key] = frames.clone()


def _per_channel(v: Tensor, like: Tensor) -> Tensor:
    return v.to(like.dtype).view(1, -1, 1, 1, 1)


def _chunks(n: int, size: int) -> list[tuple[int, int]]:
    """Frame ranges of a causal chunked run: the first frame alone, then `size` at a time."""
    return [(0, 1)] + [(i, min(i + size, n)) for i in range(1, n, size)]


def _tile_spans(n: int, tile: int, overlap: int) -> list[tuple[int, int]]:
    """Latent ranges [i0, i1) of tiles covering n: as few as keep neighbours overlapping by at least
    `overlap`, spread evenly."""
    if n <= tile:
        return [(0, n)]
    count = math.ceil((n - overlap) / (tile - overlap))
    return [(a, a + tile) for a in (round(k * (n - tile) / (count - 1)) for k in range(count))]


def _blend_1d(spans: list[tuple[int, int]], k: int, s: int, like: Tensor) -> Tensor:
    """Blend weights (pixels) of tile k along one axis: 1 inside, linear ramps across its overlap with
    each neighbour, so two neighbours' weights sum to 1 there; never 0."""
    i0, i1 = spans[k]
    w = like.new_ones((i1 - i0) * s)
    if k > 0 and (r := (spans[k - 1][1] - i0) * s) > 0:
        w[:r] = (torch.arange(r, device=w.device, dtype=w.dtype) + 0.5) / r  # rising from ~0 to ~1
    if k < len(spans) - 1 and (r := (i1 - spans[k + 1][0]) * s) > 0:
        fall = (torch.arange(r, 0, -1, device=w.device, dtype=w.dtype) - 0.5) / r
        w[-r:] = torch.minimum(w[-r:], fall)
    return w


def _check_config(cfg: VAEConfig) -> None:
    downs = len(cfg.channel_mults) - 1
    if len(cfg.temporal_down) != downs:
        raise ValueError(
            f"VAEConfig: temporal_down needs one flag per downsample ({downs}), got {len(cfg.temporal_down)}"
        )
    f = 2 ** sum(cfg.temporal_down)
    if cfg.chunk_frames < f or cfg.chunk_frames % f:
        raise ValueError(
            f"VAEConfig: chunk_frames must be a positive multiple of {f}, got {cfg.chunk_frames}"
        )
