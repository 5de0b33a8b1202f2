"""Ring attention (Liu et al. 2023): exact self-attention over a sequence split across the P ranks of a group,
for any number of heads (Ulysses, in `tessera.parallel`, needs heads % P == 0).

Each rank keeps its query shard q (B, H, N/P, Dh) and passes its key/value shard around the ring: at step s
rank r holds the K/V of rank (r - s) mod P, attends to it and merges the partial result into a running one
with the log-sum-exp (online softmax) rule of flash attention. With lse the log of a row's softmax
normaliser over the keys seen so far,

    lse_new = logaddexp(lse, lse_b),   out_new = out * exp(lse - lse_new) + out_b * exp(lse_b - lse_new),

which after all P blocks is exactly softmax(q k^T / sqrt(Dh)) v over every key. The next block's transfer
overlaps the current block's attention. Merging happens in float32.

The backward pass is the flash-attention backward per block with the final `out` and `lse`: block j adds
its share to dq locally, and its dk_j, dv_j contributions travel around the ring with the block (P shifts
bring them home). On CUDA with bf16/fp16 each block uses the fused flash kernels (which return the lse);
elsewhere a float32 reference computes the block (exact, memory O((N/P)^2) per block).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

_FLASH = {"ok": True}  # cleared (with a warning) if the fused kernels fail once


def ring_attention(q: Tensor, k: Tensor, v: Tensor, group: Any) -> Tensor:
    """Self-attention over the whole sequence from token shards: q, k, v (B, H, N/P, Dh) -> (B, H, N/P, Dh).

    Equals full attention on the (B, H, N, Dh) tensors gathered in rank order, sliced to this rank's tokens;
    autograd-exact. Under autocast the inputs are cast to the autocast dtype first (as SDPA would be);
    `group` None is the default group.
    """
    group = dist.group.WORLD if group is None else group
    kind = q.device.type
    dtype = torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else q.dtype
    q, k, v = (a.to(dtype) for a in (q, k, v))
    if dist.get_world_size(group) == 1:
        return torch.nn.functional.scaled_dot_product_attention(q, k, v)
    return _RingAttention.apply(q, k, v, group)


# --- passing tensors around the ring ---------------------------------------------------------------


def _shift(x: Tensor, group: Any, tag: int) -> Callable[[], Tensor]:
    """Start sending x to the next rank and receiving the previous rank's x; returns `wait() -> received`."""
    world, rank = dist.get_world_size(group), dist.get_rank(group)
    to = dist.get_global_rank(group, (rank + 1) % world)
    frm = dist.get_global_rank(group, (rank - 1) % world)
    recv = torch.empty_like(x)
    ops = [dist.P2POp(dist.isend, x, to, group, tag), dist.P2POp(dist.irecv, recv, frm, group, tag)]
    works = dist.batch_isend_irecv(ops)

    def wait() -> Tensor:
        for w in works:
            w.wait()
        return recv

    return wait


# --- one block: q against one K/V shard -----------------------------------------------------------


def _use_flash(q: Tensor) -> bool:
    return _FLASH["ok"] and q.is_cuda and q.dtype in (torch.float16, torch.bfloat16) and q.shape[-1] <= 256


def _flash_failed(e: Exception) -> None:
    warnings.warn(
        f"ring attention: fused flash kernel failed ({e}); using the float32 reference", stacklevel=3
    )
    _FLASH["ok"] = False


def _block_forward(q: Tensor, k: Tensor, v: Tensor, scale: float) -> tuple[Tensor, Tensor, tuple]:
    """Attention of q to one K/V block: out (B, H, n, Dh), lse (B, H, n) float32, and the flash kernel's
    extra outputs its backward needs (empty for the reference)."""
    if _use_flash(q):
        try:
            out, lse, cum_q, cum_k, max_q, max_k, seed, offset, _ = (
                torch.ops.aten._scaled_dot_product_flash_attention(q, k, v, 0.0, False, False, scale=scale)
            )
            return out, lse, (cum_q, cum_k, max_q, max_k, seed, offset)
        except RuntimeError as e:
            _flash_failed(e)
    s = torch.matmul(q.float(), k.float().transpose(-1, -2)) * scale  # (B, H, n, m) scores
    lse = s.logsumexp(-1)  # (B, H, n)
    return torch.matmul((s - lse[..., None]).exp(), v.float()), lse, ()


def _block_backward(
    dout: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor, scale: float, extra: tuple
) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients of the merged output with respect to q and this block's k, v, given the *final* out and
    lse (so p = exp(s - lse) are this block's entries of the full softmax)."""
    if extra and _FLASH["ok"]:
        cum_q, cum_k, max_q, max_k, seed, offset = extra
        try:
            return torch.ops.aten._scaled_dot_product_flash_attention_backward(
                dout, q, k, v, out, lse, cum_q, cum_k, max_q, max_k, 0.0, False, seed, offset, scale=scale
            )
        except RuntimeError as e:
            _flash_failed(e)
    qf, kf, vf, doutf = q.float(), k.float(), v.float(), dout.float()
    p = (torch.matmul(qf, kf.transpose(-1, -2)) * scale - lse[..., None]).exp()  # (B, H, n, m)
    dv = torch.matmul(p.transpose(-1, -2), doutf)
    delta = (doutf * out.float()).sum(-1, keepdim=True)  # (B, H, n, 1) = rowsum(dout * out)
    ds = p * (torch.matmul(doutf, vf.transpose(-1, -2)) - delta)  # gradient of the scores
    return torch.matmul(ds, kf) * scale, torch.matmul(ds.transpose(-1, -2), qf) * scale, dv


def _merge(out: Tensor, lse: Tensor, out_b: Tensor, lse_b: Tensor) -> tuple[Tensor, Tensor]:
    """Fold one block's (out_b, lse_b) into the running float32 (out, lse)."""
    new = torch.logaddexp(lse, lse_b)  # (B, H, n)
    return out * (lse - new).exp()[..., None] + out_b.float() * (lse_b - new).exp()[..., None], new


# --- the ring -------------------------------------------------------------------------------------


class _RingAttention(torch.autograd.Function):
    """Forward: K/V blocks around the ring with an online-softmax merge. Backward: the blocks go around
    again, each carrying its accumulated dk, dv back to its owner."""

    @staticmethod
    def forward(ctx: Any, q: Tensor, k: Tensor, v: Tensor, group: Any) -> Tensor:
        world, scale = dist.get_world_size(group), q.shape[-1] ** -0.5
        kv = torch.stack([k, v])  # (2, B, H, n, Dh): what travels
        with torch.autocast(q.device.type, enabled=False):
            for step in range(world):
                nxt = _shift(kv, group, tag=0) if step < world - 1 else None
                out_b, lse_b, extra = _block_forward(q, kv[0], kv[1], scale)
                if step == 0:
                    out, lse, ctx.extra = out_b.float(), lse_b, extra
                else:
                    out, lse = _merge(out, lse, out_b, lse_b)
                if nxt is not None:
                    kv = nxt()
        out = out.to(q.dtype)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.group, ctx.scale = group, scale
        return out

    @staticmethod
    def backward(ctx: Any, dout: Tensor) -> tuple[Tensor, Tensor, Tensor, None]:
        q, k, v, out, lse = ctx.saved_tensors
        group, scale, world = ctx.group, ctx.scale, dist.get_world_size(ctx.group)
        dout, kv = dout.contiguous(), torch.stack([k, v])
        dq, back = torch.zeros_like(q, dtype=torch.float32), None
        with torch.autocast(q.device.type, enabled=False):
            for step in range(world):
                nxt = _shift(kv, group, tag=1) if step < world - 1 else None
                dq_b, dk_b, dv_b = _block_backward(dout, q, kv[0], kv[1], out, lse, scale, ctx.extra)
                dq += dq_b
                dkv = torch.stack([dk_b, dv_b]).float()  # this block's share of its (dk, dv)
                if back is not None:
                    dkv += back()  # what the ranks before added to the same block
                back = _shift(dkv, group, tag=2)  # the block's gradient follows the block
                if nxt is not None:
                    kv = nxt()
            dkv = back()  # after P shifts every block's gradient is home: (2, B, H, n, Dh)
        return dq.to(q.dtype), dkv[0].to(k.dtype), dkv[1].to(v.dtype), None
