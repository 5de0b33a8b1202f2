"""Diffusion transformer over spacetime patches of latent video (Wan 2.1's block layout).

The network knows nothing of diffusion: latents, a time per latent frame and text go in, a velocity comes
out. Each block is self-attention (RMS-normalised q/k, 3D RoPE) -> cross-attention to the caption -> MLP,
with adaLN modulation (shift, scale, gate) of the self-attention and the MLP from the time embedding.

Time conditioning, Wan-style: one shared projection maps each frame's time embedding to the 6 modulation
vectors, and every block adds its own learned (6, D) table. That costs depth * 6 * D parameters instead
of depth * 6 * D^2 for per-block projections (10M of the `s` preset's ~30M otherwise). The projection and
the tables start at zero (adaLN-zero: every block starts as the identity, as in DiT), and the final
Linear starts at zero, so the untrained network outputs exactly 0.

Each token takes the modulation of its own latent frame, so frames can sit at different t: given frames
are clean (t = 0) while the rest are noisy (docs/design.md, "conditioning on given frames").

Two ways of running the same function are fixed once, never read from attributes set from outside:
activation checkpointing (`DiT.checkpointed`, in training) and sequence parallelism, where a `Split` passed
to `forward` says how this process's share of the tokens is cut out, gathered back and attended over
(`tessera.parallel.SequenceParallel` builds one; the network itself knows no process groups).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Protocol

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import CheckpointPolicy, checkpoint, create_selective_checkpoint_contexts

from tessera.config import DiTConfig
from tessera.errors import RequestError
from tessera.models.layers import MLP, RMSNorm, SegmentMask, attention, modulate, segment_mask
from tessera.models.patch import pack, patchify, positions, unpack, unpatchify
from tessera.models.rope import apply_rope, rope_freqs

Rope = tuple[Tensor, Tensor]  # (cos, sin), each (N, head_dim/2)
Attend = Callable[[Tensor, Tensor, Tensor, SegmentMask | None], Tensor]  # (q, k, v, mask) -> out


class Split(Protocol):
    """One clip's tokens spread over several processes (`tessera.parallel.TokenSplit`)."""

    def shard(self, x: Tensor, dim: int) -> Tensor: ...  # this process's contiguous share along `dim`
    def gather(self, x: Tensor, dim: int) -> Tensor: ...  # every share along `dim`, in order
    def attention(self, q: Tensor, k: Tensor, v: Tensor, mask: SegmentMask | None) -> Tensor: ...


CHECKPOINT_MODES = ("full", "selective")
# The attention kernels whose outputs a "selective" checkpoint keeps (every fused SDPA backend; the
# flex_attention of packed batches on CUDA is not an ATen op and is recomputed like the rest).
_ATTENTION_OPS = {
    getattr(torch.ops.aten, name).default
    for name in (
        "_scaled_dot_product_cudnn_attention",
        "_scaled_dot_product_flash_attention",
        "_scaled_dot_product_efficient_attention",
        "_scaled_dot_product_flash_attention_for_cpu",
    )
    if hasattr(torch.ops.aten, name)
}


def _keep_attention(ctx, op, *args, **kwargs) -> CheckpointPolicy:
    """Selective checkpointing: save attention outputs, recompute everything else in backward."""
    return CheckpointPolicy.MUST_SAVE if op in _ATTENTION_OPS else CheckpointPolicy.PREFER_RECOMPUTE


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal features of `1000 t`: t (...) in [0, 1] -> (..., dim) as [cos | sin]."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = 1000 * t.float()[..., None] * freqs  # (..., half)
    return torch.cat([args.cos(), args.sin()], dim=-1)


def _qk_norms(dim: int, heads: int, eps: float, qk_norm: str) -> tuple[RMSNorm, RMSNorm]:
    """RMSNorms of q and k: over each head's channels ("head") or over all heads' at once ("all")."""
    width = dim if qk_norm == "all" else dim // heads
    return RMSNorm(width, eps), RMSNorm(width, eps)


def _heads(x: Tensor, heads: int) -> Tensor:
    """(B, N, D) -> (B, heads, N, D / heads)."""
    return x.unflatten(-1, (heads, -1)).transpose(1, 2)


class SelfAttention(nn.Module):
    """Multi-head self-attention with RMSNorm on q and k (per head, or across heads) and 3D RoPE.

    q, k and v come from one fused projection; a checkpoint with three (Wan's) is the same map with their
    rows stacked, which the converters do on loading."""

    def __init__(self, dim: int, heads: int, eps: float, qk_norm: str = "head") -> None:
        super().__init__()
        self.heads = heads
        self.across = qk_norm == "all"
        self.qkv = nn.Linear(dim, 3 * dim)
        self.q_norm, self.k_norm = _qk_norms(dim, heads, eps, qk_norm)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: Tensor, rope: Rope, mask: SegmentMask | None, attend: Attend = attention) -> Tensor:
        """x (B, N, D) -> (B, N, D); `attend` is `attention`, or a `Split`'s when x is a token shard."""
        if self.across:
            q, k, v = self.qkv(x).chunk(3, dim=-1)  # each (B, N, D)
            q, k, v = (
                _heads(self.q_norm(q), self.heads),
                _heads(self.k_norm(k), self.heads),
                _heads(v, self.heads),
            )
            q, k = apply_rope(q, rope), apply_rope(k, rope)
        else:
            qkv = self.qkv(x).unflatten(-1, (3, self.heads, -1))  # (B, N, 3, heads, Dh)
            q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, heads, N, Dh)
            q, k = apply_rope(self.q_norm(q), rope), apply_rope(self.k_norm(k), rope)
        return self.out(attend(q, k, v, mask).transpose(1, 2).flatten(2))  # (B, N, D)


class CrossAttention(nn.Module):
    """Multi-head attention from video tokens to text tokens (RMS-normalised q/k, no positions)."""

    def __init__(self, dim: int, heads: int, eps: float, qk_norm: str = "head") -> None:
        super().__init__()
        self.heads = heads
        self.across = qk_norm == "all"
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.q_norm, self.k_norm = _qk_norms(dim, heads, eps, qk_norm)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: Tensor, text: Tensor, mask: Tensor) -> Tensor:
        """x (B, N, D), text (B, L, D), mask bool broadcastable to (B, heads, N, L) -> (B, N, D)."""
        if self.across:
            k, v = self.kv(text).chunk(2, dim=-1)  # each (B, L, D)
            q, k = _heads(self.q_norm(self.q(x)), self.heads), _heads(self.k_norm(k), self.heads)
            v = _heads(v, self.heads)
            return self.out(attention(q, k, v, mask).transpose(1, 2).flatten(2))
        q = self.q_norm(self.q(x).unflatten(-1, (self.heads, -1)).transpose(1, 2))  # (B, heads, N, Dh)
        k, v = self.kv(text).unflatten(-1, (2, self.heads, -1)).permute(2, 0, 3, 1, 4)  # (B, heads, L, Dh)
        return self.out(attention(q, self.k_norm(k), v, mask).transpose(1, 2).flatten(2))


class Block(nn.Module):
    """Modulated self-attention, cross-attention (pre-norm, unmodulated), modulated MLP."""

    def __init__(self, cfg: DiTConfig) -> None:
        super().__init__()
        D = cfg.dim
        self.norm1 = nn.LayerNorm(D, eps=cfg.eps, elementwise_affine=False)
        self.self_attn = SelfAttention(D, cfg.heads, cfg.eps, cfg.qk_norm)
        self.norm_cross = nn.LayerNorm(D, eps=cfg.eps)
        self.cross_attn = CrossAttention(D, cfg.heads, cfg.eps, cfg.qk_norm)
        self.norm2 = nn.LayerNorm(D, eps=cfg.eps, elementwise_affine=False)
        self.mlp = MLP(D, cfg.ffn_dim)
        self.modulation = nn.Parameter(torch.zeros(6, D))  # this block's offset to the shared projection
        # None, or a mode of CHECKPOINT_MODES, chosen once by `DiT.checkpointed`. The checkpoint sits inside
        # forward so that a compiled block compiles it too (the compiler then honours the selective policy).
        self.recompute: str | None = None

    def forward(self, *args) -> Tensor:
        """See `_forward`; with `recompute` set (and gradients on), activations are recomputed in
        backward: all of them ("full") or all but the attention outputs ("selective")."""
        if self.recompute is None or not (self.training and torch.is_grad_enabled()):
            return self._forward(*args)
        if self.recompute == "selective":
            context = functools.partial(create_selective_checkpoint_contexts, _keep_attention)
            return checkpoint(self._forward, *args, use_reentrant=False, context_fn=context)
        return checkpoint(self._forward, *args, use_reentrant=False)

    def _forward(
        self,
        x: Tensor,
        e: Tensor,
        frame: Tensor,
        rope: Rope,
        self_mask: SegmentMask | None,
        text: Tensor,
        cross_mask: Tensor,
        attend: Attend,
    ) -> Tensor:
        """x (B, N, D); e (B, F, 6, D) per-frame modulation; frame (N,) each token's row of e."""
        mod = (e + self.modulation)[:, frame]  # (B, N, 6, D)
        shift1, scale1, gate1, shift2, scale2, gate2 = mod.unbind(2)  # each (B, N, D)
        x = x + gate1 * self.self_attn(modulate(self.norm1(x), shift1, scale1), rope, self_mask, attend)
        x = x + self.cross_attn(self.norm_cross(x), text, cross_mask)
        return x + gate2 * self.mlp(modulate(self.norm2(x), shift2, scale2))


class Head(nn.Module):
    """Final norm, shift/scale from the time embedding, zero-initialised Linear to patch values."""

    def __init__(self, dim: int, out: int, eps: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=eps, elementwise_affine=False)
        self.modulation = nn.Parameter(torch.zeros(2, dim))
        self.linear = nn.Linear(dim, out)

    def forward(self, x: Tensor, e_time: Tensor, frame: Tensor) -> Tensor:
        """x (B, N, D), e_time (B, F, D) -> (B, N, out)."""
        shift, scale = (e_time[:, :, None] + self.modulation)[:, frame].unbind(2)  # each (B, N, D)
        return self.linear(modulate(self.norm(x), shift, scale))


class DiT(nn.Module):
    """Diffusion transformer: v = DiT(x_t, t per latent frame, text, condition channels)."""

    def __init__(self, cfg: DiTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        D, p = cfg.dim, math.prod(cfg.patch)
        if D % cfg.heads:
            raise ValueError(f"dim {D} must be divisible by heads {cfg.heads}")
        self.patch_embed = nn.Linear((cfg.in_channels + cfg.cond_channels) * p, D)  # = Conv3d, stride patch
        self.text_embed = MLP(cfg.text_dim, D, D)
        self.time_embed = nn.Sequential(nn.Linear(cfg.freq_dim, D), nn.SiLU(), nn.Linear(D, D))
        self.time_proj = nn.Sequential(nn.SiLU(), nn.Linear(D, 6 * D))  # shared by all blocks
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self.head = Head(D, cfg.in_channels * p, cfg.eps)
        if cfg.fps_embed is not None:  # SkyReels-V2's frame rate: two learned rows, mapped to modulation
            self.fps_embed = nn.Embedding(2, D)
            self.fps_proj = nn.Sequential(nn.Linear(D, D), nn.SiLU(), nn.Linear(D, 6 * D))
        self.reset_parameters()

    def checkpointed(self, fraction: float = 1.0, mode: str = "full") -> DiT:
        """This DiT, its first `fraction` of blocks recomputing their activations in backward (0: none).

        A fraction trades memory for less recomputation: the largest model that fits runs fastest with
        the smallest fraction that fits. `mode` "full" recomputes the whole block; "selective" keeps the
        attention outputs (the costliest part to recompute at long sequences, and small: one (N, D)
        tensor per attention) and recomputes the linear layers and pointwise ops. Set once, in place
        (as `train()` is); forward and the results are unchanged, only memory and time.
        """
        if mode not in CHECKPOINT_MODES:
            raise ValueError(f"checkpoint_mode '{mode}'; allowed: {', '.join(CHECKPOINT_MODES)}")
        if not 0 <= fraction <= 1:
            raise ValueError(f"checkpoint fraction {fraction} must be in [0, 1]")
        recompute = round(float(fraction) * len(self.blocks))
        for i, block in enumerate(self.blocks):
            block.recompute = mode if i < recompute else None
        return self

    def reset_parameters(self) -> None:
        """Xavier Linears, N(0, 0.02) time MLP, zeros for every modulation and the output (adaLN-zero)."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        for m in self.time_embed:
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.02)
        for p in [*self.time_proj[1].parameters(), *self.head.linear.parameters()]:
            nn.init.zeros_(p)
        for b in [*self.blocks, self.head]:
            nn.init.zeros_(b.modulation)

    def forward(
        self,
        x: Tensor,
        t: Tensor,
        text: Tensor,
        text_mask: Tensor,
        cond: Tensor | None = None,
        split: Split | None = None,
        causal_block: int | None = None,
    ) -> Tensor:
        """x (B, C, T_z, H, W), t (B, T_z), text (B, L, text_dim), text_mask (B, L) bool,
        cond (B, cond_channels, T_z, H, W) or None (zeros: text-to-video) -> v (B, C, T_z, H, W).
        With `split` this process runs the blocks on its share of the tokens only (every process
        passes the same inputs and gets the whole v). `causal_block` replaces the config's for this call
        (SkyReels' causal block size: block-causal attention over that many latent frames; 1: full)."""
        B, _, T, H, W = self._check_clip(x, t, cond, batched=True)
        self._check_text(text, text_mask, B)
        if self.cfg.cond_channels:
            cond = x.new_zeros(B, self.cfg.cond_channels, T, H, W) if cond is None else cond
            x_in = torch.cat([x, cond], dim=1)
        else:
            x_in = x
        tokens = self.patch_embed(patchify(x_in, self.cfg.patch))  # (B, N, D)
        pos = positions(self._grid(T, H, W), x.device)  # (N, 3) (t, h, w) ids
        if split is not None:  # keep this process's tokens, with their global positions
            tokens, pos = split.shard(tokens, 1), split.shard(pos, 0)
        e_time = self._time_embedding(self._patch_time(t))  # (B, F, D)
        cross_mask = text_mask[:, None, None, :]  # (B, 1, 1, L): broadcast over heads and queries
        frame = pos[:, 0]  # (N,) each token's temporal patch = its row of e_time
        block = self.cfg.causal_block if causal_block is None else causal_block
        causal = self._causal_mask(frame, split, block)  # None: full attention
        attend = attention if split is None else split.attention
        out = self._run(tokens, e_time, frame, pos, causal, self.text_embed(text), cross_mask, attend)
        if split is not None:
            out = split.gather(out, 1)  # (B, N/P, C*p) shares -> (B, N, C*p) everywhere
        return unpatchify(out, self.cfg.patch, (T, H, W))

    def forward_packed(
        self,
        xs: list[Tensor],
        ts: list[Tensor],
        text: Tensor,
        text_mask: Tensor,
        conds: list[Tensor] | None = None,
    ) -> list[Tensor]:
        """Clips xs[i] (C, T_i, H_i, W_i) with times ts[i] (T_i,) and captions text[i] (L, text_dim),
        text_mask[i] (L,), packed into one sequence; conds[i] (cond_channels, T_i, H_i, W_i) or None.
        Attention stays within each clip and its own caption, so this equals running the clips one by one.
        Returns v per clip, (C, T_i, H_i, W_i)."""
        if self.cfg.causal_block > 1:
            raise ValueError("forward_packed does not support block-causal attention (causal_block > 1)")
        packed = pack(self._packed_inputs(xs, ts, text, text_mask, conds), self.cfg.patch)
        # All clips' frames in one (1, F_total) time row; a token's row = its clip's first row + its t id.
        t_all = torch.cat([self._patch_time(t[None])[0] for t in ts])[None]  # (1, F_total)
        frames = torch.tensor(
            [0] + [s[0] // self.cfg.patch[0] for s in packed.shapes[:-1]], device=t_all.device
        )
        frame = packed.positions[:, 0] + frames.cumsum(0)[packed.segments]  # (N_total,)
        e_time = self._time_embedding(t_all)  # (1, F_total, D)
        # Only real caption tokens are kept, laid end to end: (1, L_real, D) with their clip ids.
        text_seg = torch.repeat_interleave(torch.arange(len(xs), device=text.device), text_mask.sum(1))
        cross_mask = packed.segments[:, None] == text_seg[None, :]  # (N_total, L_real) own caption only
        self_mask = segment_mask(packed.segments, packed.segments)  # block-diagonal per clip
        tokens = self.patch_embed(packed.tokens)  # (1, N_total, D)
        text_tokens = self.text_embed(text[text_mask])[None]  # (1, L_real, D)
        out = self._run(
            tokens, e_time, frame, packed.positions, self_mask, text_tokens, cross_mask, attention
        )
        return unpack(out, packed)

    def _packed_inputs(
        self, xs: list[Tensor], ts: list[Tensor], text: Tensor, text_mask: Tensor, conds: list[Tensor] | None
    ) -> list[Tensor]:
        """Checked clips with their condition channels (zeros where None): (C + cond_channels, T, H, W)."""
        conds = [None] * len(xs) if conds is None else conds
        if not (len(xs) == len(ts) == len(conds) == len(text)):
            raise ValueError(
                f"got {len(xs)} clips, {len(ts)} times, {len(conds)} conds, {len(text)} captions"
            )
        self._check_text(text, text_mask, len(xs))
        inputs = []
        for x, t, c in zip(xs, ts, conds, strict=True):
            self._check_clip(x[None], t[None], None if c is None else c[None], batched=False)
            c = x.new_zeros(self.cfg.cond_channels, *x.shape[1:]) if c is None else c
            inputs.append(torch.cat([x, c]))
        return inputs

    def _run(
        self,
        x: Tensor,
        e_time: Tensor,
        frame: Tensor,
        pos: Tensor,
        self_mask: SegmentMask | None,
        text: Tensor,
        cross_mask: Tensor,
        attend: Attend = attention,
    ) -> Tensor:
        """Blocks and head on embedded tokens x (B, N, D) -> (B, N, C*pt*ph*pw)."""
        e = self._modulation(e_time)  # (B, F, 6, D)
        rope = rope_freqs(self.cfg.dim // self.cfg.heads, pos, self.cfg.rope_theta)
        for block in self.blocks:
            x = block(x, e, frame, rope, self_mask, text, cross_mask, attend)
        return self.head(x, e_time, frame)

    def _modulation(self, e_time: Tensor) -> Tensor:
        """Time embeddings (B, F, D) -> the blocks' shared modulation (B, F, 6, D), with the frame-rate
        term added where configured (one per sample, the same for every frame; the head does not see it)."""
        e = self.time_proj(e_time).unflatten(-1, (6, -1))
        if self.cfg.fps_embed is None:
            return e
        row = torch.full(e.shape[:1], int(self.cfg.fps_embed != 16), device=e.device)  # 16 fps: row 0
        return e + self.fps_proj(self.fps_embed(row)).unflatten(-1, (6, -1))[:, None]

    def _causal_mask(self, frame: Tensor, split: Split | None, causal_block: int) -> Tensor | None:
        """With `causal_block` > 1, the (N, N) bool self-attention mask in which a token sees the tokens of
        its own block of latent frames and of earlier blocks (dense: N^2 bytes); else None."""
        if causal_block == 1:
            return None
        if split is not None:
            raise RequestError("block-causal attention (causal_block > 1) does not run sequence-parallel")
        block = frame // causal_block  # frame: each token's temporal patch
        return block[:, None] >= block[None, :]

    def _time_embedding(self, t: Tensor) -> Tensor:
        """t (B, F) -> (B, F, D); the float32 sinusoids are cast to the weights' dtype (bf16 models)."""
        return self.time_embed(timestep_embedding(t, self.cfg.freq_dim).to(self.time_embed[0].weight.dtype))

    def _patch_time(self, t: Tensor) -> Tensor:
        """t (B, T_z) -> (B, T_z / pt): one time per temporal patch (the mean; exact for pt = 1)."""
        return t.unflatten(1, (-1, self.cfg.patch[0])).mean(-1)

    def _grid(self, T: int, H: int, W: int) -> tuple[int, int, int]:
        pt, ph, pw = self.cfg.patch
        return T // pt, H // ph, W // pw

    def _check_clip(self, x: Tensor, t: Tensor, cond: Tensor | None, batched: bool) -> tuple[int, ...]:
        """Shapes of one batch (x (B, C, T, H, W)); a ValueError naming what is wrong otherwise."""
        what = "x" if batched else "xs[i]"
        want = "(B, C, T_z, H, W)" if batched else "(C, T_z, H, W)"
        if x.ndim != 5 or x.shape[1] != self.cfg.in_channels:
            got = tuple(x.shape) if batched else tuple(x.shape[1:])
            raise ValueError(
                f"{what} must be {want} with C = in_channels = {self.cfg.in_channels}, got {got}"
            )
        B, _, T, H, W = x.shape
        if t.shape != (B, T):
            raise ValueError(f"t must have one value per latent frame, shape {(B, T)}, got {tuple(t.shape)}")
        if cond is not None and not self.cfg.conditioned:
            raise ValueError("this DiT takes no condition channels (conditioned = False); pass cond=None")
        if cond is not None and cond.shape != (B, self.cfg.cond_channels, T, H, W):
            raise ValueError(
                f"cond must be {(B, self.cfg.cond_channels, T, H, W)} (cond_channels = in_channels + 4), "
                f"got {tuple(cond.shape)}"
            )
        for name, n, p in zip(("T_z", "H", "W"), (T, H, W), self.cfg.patch, strict=True):
            if n % p:
                raise ValueError(
                    f"{name} = {n} is not a multiple of the patch size {p} (patch {self.cfg.patch})"
                )
        return B, self.cfg.in_channels, T, H, W

    def _check_text(self, text: Tensor, text_mask: Tensor, B: int) -> None:
        if text.ndim != 3 or text.shape[0] != B or text.shape[2] != self.cfg.text_dim:
            raise ValueError(
                f"text must be (B={B}, L, text_dim={self.cfg.text_dim}), got {tuple(text.shape)}"
            )
        if text_mask.shape != text.shape[:2] or text_mask.dtype != torch.bool:
            raise ValueError(
                f"text_mask must be bool {tuple(text.shape[:2])}, got {text_mask.dtype} "
                f"{tuple(text_mask.shape)}"
            )


def deepen(dit: DiT, depth: int) -> DiT:
    """A copy of `dit` with `depth` blocks that computes exactly the same function (a warm start for a
    deeper network). The old blocks keep their order, each followed by its share of the new ones
    (block j of the result comes from old block `j * old // depth`: 8 -> 12 puts one new block after
    each of blocks 0, 2, 4 and 6); a new block is a copy of the old block before it with the three
    projections that write to the residual stream (self-attention out, cross-attention out, MLP fc2)
    set to zero, so it adds nothing until training moves them, while its other weights start as
    trained features."""
    old = len(dit.blocks)
    if depth < old:
        raise ValueError(f"depth {depth} is below the network's {old} blocks; growing only adds blocks")
    grown = DiT(dataclasses.replace(dit.cfg, depth=depth)).to(dit.patch_embed.weight.device)
    sources = [j * old // depth for j in range(depth)]  # each old block's index, repeated for its copies
    state = {k: v for k, v in dit.state_dict().items() if not k.startswith("blocks.")}
    for j, i in enumerate(sources):
        block = {f"blocks.{j}.{k}": v for k, v in dit.blocks[i].state_dict().items()}
        if j > 0 and sources[j - 1] == i:  # a copy: silence what it writes
            for name in ("self_attn.out", "cross_attn.out", "mlp.fc2"):
                for part in ("weight", "bias"):
                    block[f"blocks.{j}.{name}.{part}"] = torch.zeros_like(block[f"blocks.{j}.{name}.{part}"])
        state |= block
    grown.load_state_dict(state)
    return grown


def widen(dit: DiT, ffn_dim: int) -> DiT:
    """A copy of `dit` whose MLPs have `ffn_dim` hidden units and that computes exactly the same function
    (a warm start for a wider network). Each MLP keeps its trained units first; the new units' input
    weights are a fresh network's (Xavier, zero bias) and their output weights (the new columns of fc2)
    are zero, so they add nothing until training moves those columns, which get a gradient at once
    (their units' activations are not zero) while the input weights follow once the columns move."""
    old = dit.cfg.ffn_dim
    if ffn_dim < old:
        raise ValueError(f"ffn_dim {ffn_dim} is below the network's {old}; widening only adds units")
    wide = DiT(dataclasses.replace(dit.cfg, ffn_dim=ffn_dim)).to(dit.patch_embed.weight.device)
    state = dit.state_dict()
    fresh = wide.state_dict()
    for j in range(len(dit.blocks)):
        p = f"blocks.{j}.mlp."
        for name in ("fc1.weight", "fc1.bias"):  # trained rows first, the fresh network's after them
            state[p + name] = torch.cat([state[p + name], fresh[p + name][old:].to(state[p + name])])
        w = state[p + "fc2.weight"]
        state[p + "fc2.weight"] = torch.cat([w, w.new_zeros(w.shape[0], ffn_dim - old)], dim=1)
    wide.load_state_dict(state)
    return wide


def dit_flops(cfg: DiTConfig, tokens: int, text_len: int) -> float:
    """Forward FLOPs of one clip of `tokens` video tokens and `text_len` text tokens (2 per multiply-add).

    Counts every matmul (projections, MLPs, embeddings, head) and attention's two matmuls; leaves out the
    per-frame time MLP and elementwise work (norms, softmax, RoPE), which are a few percent at most.
    """
    N, L, D, Fd = tokens, text_len, cfg.dim, cfg.ffn_dim
    p = math.prod(cfg.patch)
    per_block = (
        2 * N * 4 * D * D  # self-attention q, k, v, out
        + 4 * N * N * D  # q k^T and attn v
        + 2 * N * 2 * D * D
        + 2 * L * 2 * D * D  # cross-attention q, out (video) and k, v (text)
        + 4 * N * L * D  # cross-attention q k^T and attn v
        + 2 * N * 2 * D * Fd  # MLP
    )
    embed = 2 * N * (cfg.in_channels + cfg.cond_channels) * p * D + 2 * L * (cfg.text_dim * D + D * D)
    return float(cfg.depth * per_block + embed + 2 * N * D * cfg.in_channels * p)
