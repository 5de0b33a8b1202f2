"""Building blocks shared by the networks: RMSNorm, the MLP, adaLN `modulate`, and one `attention()`.

`attention()` is the only place that knows about attention kernels. On CUDA it asks SDPA for the
fastest backend first (cuDNN, then flash, then memory-efficient, then math, which always works); for
packed sequences it uses `flex_attention` with a block-diagonal document mask, and falls back to running
SDPA segment by segment if flex is missing or fails. On the CPU it is plain SDPA with a boolean mask,
the reference the fast paths are checked against.
"""

from __future__ import annotations

import inspect
import warnings
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class RMSNorm(nn.Module):
    """Root-mean-square norm over the last dim with a learned gain (no mean subtraction, no bias)."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        # Weight in x's dtype keeps the fused kernel under autocast (it accumulates in float32 anyway).
        return F.rms_norm(x, (x.shape[-1],), self.weight.to(x.dtype), self.eps)


class MLP(nn.Module):
    """Two-layer feed-forward net with tanh-approximated GELU: dim -> hidden -> out (default dim)."""

    def __init__(self, dim: int, hidden: int, out: int | None = None) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, out or dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """adaLN: `x * (1 + scale) + shift`; scale = shift = 0 leaves x unchanged (adaLN-zero start)."""
    return torch.addcmul(shift, x, 1 + scale)


# --- masks ------------------------------------------------------------------------------------------


@dataclass
class SegmentMask:
    """Block-diagonal mask for packed sequences: query i may see key j iff their segment ids match.

    Segments are contiguous runs (clips are packed one after another), which lets the CUDA fallback
    run SDPA once per segment instead of materialising an (Lq, Lk) mask.
    """

    q_segments: Tensor  # (Lq,) long, non-decreasing
    kv_segments: Tensor  # (Lk,) long, non-decreasing
    block_mask: Any = None  # flex_attention BlockMask on CUDA, else None

    def dense(self) -> Tensor:
        """The mask as a bool tensor (Lq, Lk), True = attend."""
        return self.q_segments[:, None] == self.kv_segments[None, :]

    def runs(self) -> list[tuple[int, int, int, int]]:
        """(q_start, q_end, kv_start, kv_end) for each segment id present among the queries."""
        ids = torch.unique_consecutive(self.q_segments)
        q_lo = torch.searchsorted(self.q_segments, ids).tolist()
        q_hi = torch.searchsorted(self.q_segments, ids, right=True).tolist()
        k_lo = torch.searchsorted(self.kv_segments, ids).tolist()
        k_hi = torch.searchsorted(self.kv_segments, ids, right=True).tolist()
        return list(zip(q_lo, q_hi, k_lo, k_hi, strict=True))


def segment_mask(q_segments: Tensor, kv_segments: Tensor) -> SegmentMask:
    """Build the block-diagonal mask once per forward; on CUDA also its flex_attention BlockMask."""
    mask = SegmentMask(q_segments, kv_segments)
    if q_segments.is_cuda and _flex_ok():
        try:
            mask.block_mask = _block_mask(q_segments, kv_segments)
        except Exception as e:  # any failure: the per-segment SDPA path still gives the exact answer
            _disable_flex(e)
    return mask


def _block_mask(q_segments: Tensor, kv_segments: Tensor) -> Any:
    # flex attention loads only on the path that uses it
    from torch.nn.attention.flex_attention import create_block_mask

    def same_segment(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        return q_segments[q_idx] == kv_segments[kv_idx]

    args = (same_segment, None, None, len(q_segments), len(kv_segments))
    try:  # compiled mask building never materialises the dense (Lq, Lk) mask (1 GB at 32k tokens)
        return create_block_mask(*args, device=q_segments.device, _compile=True)
    except Exception:
        return create_block_mask(*args, device=q_segments.device)


# --- attention --------------------------------------------------------------------------------------

_FLEX_STATE: dict[str, Any] = {"ok": None, "fn": None}


def _flex_ok() -> bool:
    if _FLEX_STATE["ok"] is None:
        try:
            # flex attention loads only on the path that uses it
            from torch.nn.attention.flex_attention import flex_attention

            # Uncompiled flex_attention is a slow reference; compiled it is a fused Triton kernel.
            _FLEX_STATE["fn"] = torch.compile(flex_attention)
            _FLEX_STATE["ok"] = True
        except Exception:
            _FLEX_STATE["ok"] = False
    return _FLEX_STATE["ok"]


def _disable_flex(e: Exception) -> None:
    warnings.warn(
        f"flex_attention unavailable ({type(e).__name__}: {e}); using SDPA per segment", stacklevel=3
    )
    _FLEX_STATE["ok"] = False


CUDNN_FROM_TOKENS = 4096  # shorter sequences skip cuDNN attention (see `_cuda_backends`)


def _cuda_backends(tokens: int) -> list[Any]:
    """SDPA backends, fastest first; math always runs.

    Long sequences (H100, head dim 128: cuDNN ~620 TFLOP/s, flash ~360) go to cuDNN first. Short ones go
    to flash, and with a mask (which flash cannot take: the cross-attention to captions) to
    memory-efficient attention, cuDNN last: cuDNN builds an execution plan for every new shape, and a
    training batch of small clips brings new shapes all the time (measured on the H100: 430 ms of CPU in
    cuDNN attention backward per step against 5 ms of GPU work, at 64 clips of up to 1,088 tokens; and
    220 ms of CPU in the masked cross-attention per step at 128 clips of 576 tokens, whose caption
    length changes from batch to batch)."""
    # the SDPA backend switch loads only on the path that uses it
    from torch.nn.attention import SDPBackend as Backend

    fast = [Backend.CUDNN_ATTENTION, Backend.FLASH_ATTENTION, Backend.EFFICIENT_ATTENTION]
    if tokens < CUDNN_FROM_TOKENS:
        fast = fast[1:] + fast[:1]
    return [*fast, Backend.MATH]


def _sdpa(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None) -> Tensor:
    """Plain SDPA; on CUDA inside the backend priority list (SDPA skips backends that cannot run)."""
    if not q.is_cuda:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    ctx = _cuda_backend_context(q.shape[-2])
    if ctx is None:  # no backend control in this torch: let SDPA choose
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    try:
        with ctx:
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    except RuntimeError:  # a backend accepted the inputs but failed to run: let SDPA choose alone
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def _cuda_backend_context(tokens: int) -> Any:
    """`sdpa_kernel` over the priority list for `tokens` queries; `set_priority` (torch >= 2.6) makes the
    order binding."""
    try:
        # the SDPA backend switch loads only on the path that uses it
        from torch.nn.attention import sdpa_kernel

        if _SET_PRIORITY:
            return sdpa_kernel(_cuda_backends(tokens), set_priority=True)
        return sdpa_kernel(_cuda_backends(tokens))
    except Exception:
        return None


def _has_set_priority() -> bool:
    try:
        # the SDPA backend switch loads only on the path that uses it
        from torch.nn.attention import sdpa_kernel

        return "set_priority" in inspect.signature(sdpa_kernel).parameters
    except Exception:
        return False


_SET_PRIORITY = _has_set_priority()


def _dense_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor) -> Tensor:
    """SDPA with a bool mask; a query row with no visible key returns 0 (not NaN, in forward and backward)."""
    visible = mask.any(-1, keepdim=True)  # (..., Lq, 1)
    out = _sdpa(q, k, v, mask | ~visible)  # unmask empty rows so softmax stays finite...
    return out * visible.to(out.dtype)  # ...then zero them


def _segment_attention(q: Tensor, k: Tensor, v: Tensor, mask: SegmentMask) -> Tensor:
    """Exact block-diagonal attention as one SDPA call per segment (fast backends, no mask)."""
    out = q.new_zeros(q.shape[:-1] + (v.shape[-1],))
    for q0, q1, k0, k1 in mask.runs():
        if k1 > k0:  # a segment without keys (e.g. an empty caption) keeps output 0
            out[:, :, q0:q1] = _sdpa(q[:, :, q0:q1], k[:, :, k0:k1], v[:, :, k0:k1])
    return out


def attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | SegmentMask | None = None) -> Tensor:
    """Scaled dot-product attention, q (B, heads, Lq, Dh), k/v (B, heads, Lk, Dh) -> (B, heads, Lq, Dh).

    mask: None (full attention), a bool tensor broadcastable to (B, heads, Lq, Lk) with True = attend,
    or a `SegmentMask` for packed sequences. Query rows that see no key return 0.
    """
    if mask is None:
        return _sdpa(q, k, v)
    if isinstance(mask, Tensor):
        return _dense_attention(q, k, v, mask)
    if not q.is_cuda:
        return _dense_attention(q, k, v, mask.dense())
    if mask.block_mask is not None and _FLEX_STATE["ok"]:
        try:
            return _FLEX_STATE["fn"](q, k, v, block_mask=mask.block_mask)
        except Exception as e:
            _disable_flex(e)
    return _segment_attention(q, k, v, mask)
