"""Sequence parallelism for the DiT's self-attention: Ulysses (Jacobs et al. 2023, DeepSpeed-Ulysses), and
ring attention (`tessera.ring`) where the head count does not divide over the ranks.

Each of the P ranks of a group holds a contiguous shard of the video tokens, (B, N/P, D), and runs every
per-token layer (projections, norms, MLP, cross-attention, modulation) on its shard alone. Only
self-attention needs all tokens. Ulysses: q, k, v of shape (B, H, N/P, Dh) go through one all-to-all that
turns the token shard into a head shard, (B, H/P, N, Dh); attention runs locally over all tokens for H/P
heads; a second all-to-all turns the result back into (B, H, N/P, Dh). Ring: each rank keeps its queries
and the K/V shards travel around the ring, merged by log-sum-exp. RoPE is applied before either, so each
shard must carry its tokens' global positions. Cross-attention needs no exchange: every rank holds all
text tokens.

Traffic per rank and layer: Ulysses sends and receives 4 tensors of B*N*D/P values (q, k, v, out), falling
as P grows, but needs H % P == 0; ring sends (P - 1) K/V shards of 2*B*N*D/P values each (about 2*B*N*D,
not falling with P) and works for any H. `token_split(mode="auto")` picks Ulysses when it can.

Gradients: both are autograd-exact (the backward of an all-to-all is the inverse all-to-all; ring
attention has its own backward). `gather_sequence` returns the full output on every rank and assumes
every rank then computes the same loss from it; its backward keeps this rank's slice of the gradient.
Summing the parameter gradients over the group (all_reduce SUM) then gives exactly the one-process gradient.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from tessera.errors import RequestError as SequenceParallelError
from tessera.models.layers import SegmentMask, attention
from tessera.ring import ring_attention

MODES = ("auto", "ulysses", "ring")


def group_size(group: Any) -> int:
    """Number of ranks in `group` (a ProcessGroup; None is the default group)."""
    return dist.get_world_size(group)


def group_rank(group: Any) -> int:
    """This process's rank within `group`."""
    return dist.get_rank(group)


def check_heads(heads: int, world: int) -> None:
    """Ulysses splits heads over ranks: a SequenceParallelError unless heads % world == 0."""
    if heads % world:
        raise SequenceParallelError(
            f"Ulysses sequence parallelism needs the number of attention heads ({heads}) to be divisible by "
            f"the sequence-parallel size P = {world}; choose P among the divisors of {heads}, "
            "or use ring attention (mode 'ring' or 'auto'), which has no such limit"
        )


def pick_mode(mode: str, heads: int, world: int) -> str:
    """'ulysses' or 'ring' for `heads` over `world` ranks: 'auto' is Ulysses when heads % world == 0."""
    if mode not in MODES:
        raise SequenceParallelError(f"unknown sequence-parallel mode '{mode}'; choose {', '.join(MODES)}")
    if mode == "auto":
        return "ring" if heads % world else "ulysses"
    if mode == "ulysses":
        check_heads(heads, world)
    return mode


# --- sharding the sequence ------------------------------------------------------------------------


def shard_sequence(x: Tensor, rank: int, world: int, dim: int = 1) -> Tensor:
    """This rank's contiguous shard of x along `dim` (tokens): (B, N, D) -> (B, N/world, D) for dim=1.

    Rank r keeps tokens [r N/world, (r+1) N/world), so its positions are the global ones sliced alike.
    """
    n = x.shape[dim]
    if n % world:
        raise SequenceParallelError(
            f"the sequence of {n} tokens (dim {dim} of shape {tuple(x.shape)}) cannot be split evenly over "
            f"{world} ranks; use a token count divisible by {world}"
        )
    if not 0 <= rank < world:
        raise SequenceParallelError(f"rank {rank} is outside 0..{world - 1}")
    size = n // world
    return x.narrow(dim, rank * size, size)


def local_shard(x: Tensor, group: Any, dim: int = 1) -> Tensor:
    """`shard_sequence` for this process's rank in `group`."""
    return shard_sequence(x, group_rank(group), group_size(group), dim)


class _GatherSequence(torch.autograd.Function):
    """All-gather of token shards along `dim`; backward keeps this rank's slice (the loss is replicated)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, group: Any, dim: int) -> Tensor:
        ctx.group, ctx.dim = group, dim
        parts = [torch.empty_like(x) for _ in range(group_size(group))]
        dist.all_gather(parts, x.contiguous(), group=group)
        return torch.cat(parts, dim=dim)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        return local_shard(grad, ctx.group, ctx.dim).contiguous(), None, None


def gather_sequence(x: Tensor, group: Any, dim: int = 1) -> Tensor:
    """Concatenate every rank's shard along `dim` in rank order: (B, N/P, D) -> (B, N, D) on every rank.

    Backward assumes each rank computes the same loss from the full output, so it passes on only this
    rank's slice of the gradient; sum parameter gradients over the group afterwards.
    """
    return _GatherSequence.apply(x, group, dim)


# --- the all-to-all -------------------------------------------------------------------------------


def _all_to_all(x: Tensor, group: Any, scatter_dim: int, gather_dim: int) -> Tensor:
    """Split x into P chunks along scatter_dim, send chunk i to rank i, concatenate what arrives along
    gather_dim in rank order. Swapping the two dims gives the inverse exchange."""
    world = group_size(group)
    send = torch.stack(x.tensor_split(world, dim=scatter_dim))  # (P, *chunk), chunk i goes to rank i
    recv = torch.empty_like(send)  # (P, *chunk), chunk j came from rank j
    dist.all_to_all_single(recv, send, group=group)
    return torch.cat(recv.unbind(0), dim=gather_dim)


class _AllToAll(torch.autograd.Function):
    """Autograd-exact all-to-all: the backward is the same exchange with the dims swapped."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, group: Any, scatter_dim: int, gather_dim: int) -> Tensor:
        ctx.group, ctx.dims = group, (scatter_dim, gather_dim)
        return _all_to_all(x, group, scatter_dim, gather_dim)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None, None]:
        scatter_dim, gather_dim = ctx.dims
        return _all_to_all(grad, ctx.group, gather_dim, scatter_dim), None, None, None


def seq_to_heads(x: Tensor, group: Any) -> Tensor:
    """(B, H, N/P, Dh) token shard of all heads -> (B, H/P, N, Dh) all tokens of this rank's heads."""
    return _AllToAll.apply(x, group, 1, 2)


def heads_to_seq(x: Tensor, group: Any) -> Tensor:
    """(B, H/P, N, Dh) -> (B, H, N/P, Dh): the inverse of `seq_to_heads`."""
    return _AllToAll.apply(x, group, 2, 1)


def ulysses_attention(
    q: Tensor, k: Tensor, v: Tensor, group: Any, mask: Tensor | SegmentMask | None = None
) -> Tensor:
    """Self-attention over the whole sequence from token shards: q, k, v (B, H, N/P, Dh) -> (B, H, N/P, Dh).

    Equals `attention` on the gathered (B, H, N, Dh) tensors, sliced back to this rank's tokens. `mask`,
    if given, is over the full sequence (N, N) and the same for every head. RoPE must already be applied
    with the tokens' global positions.
    """
    check_heads(q.shape[1], group_size(group))
    q, k, v = (seq_to_heads(a, group) for a in (q, k, v))  # each (B, H/P, N, Dh)
    return heads_to_seq(attention(q, k, v, mask), group)  # (B, H, N/P, Dh)


def sequence_attention(
    q: Tensor, k: Tensor, v: Tensor, group: Any, mask: Tensor | SegmentMask | None, mode: str
) -> Tensor:
    """Self-attention from token shards, (B, H, N/P, Dh) each -> (B, H, N/P, Dh), by `mode` 'ulysses' or
    'ring' (ring takes no mask: the DiT's batched forward has none)."""
    if mode == "ring":
        if mask is not None:
            raise SequenceParallelError("ring attention takes no attention mask; use mode 'ulysses'")
        return ring_attention(q, k, v, group)
    return ulysses_attention(q, k, v, group, mask)


# --- running a DiT sequence-parallel --------------------------------------------------------------


@dataclass(frozen=True)
class TokenSplit:
    """One clip's tokens spread over `group` (the DiT's `Split`): each rank takes a contiguous share,
    self-attention exchanges shares by `mode` ('ulysses' or 'ring'), and the output is gathered."""

    group: Any
    mode: str

    def shard(self, x: Tensor, dim: int) -> Tensor:
        return local_shard(x, self.group, dim)

    def gather(self, x: Tensor, dim: int) -> Tensor:
        return gather_sequence(x, self.group, dim)

    def attention(self, q: Tensor, k: Tensor, v: Tensor, mask: SegmentMask | None) -> Tensor:
        return sequence_attention(q, k, v, self.group, mask, self.mode)


def token_split(heads: int, group: Any = None, mode: str = "auto") -> TokenSplit:
    """The split of a DiT with `heads` attention heads over `group` (None: the default group of all
    ranks), its `mode` chosen once: 'ulysses', 'ring', or 'auto' = Ulysses where the head count
    divides over the group, else ring. A SequenceParallelError for an unknown mode, or for 'ulysses'
    when the head count does not divide."""
    group = dist.group.WORLD if group is None else group
    return TokenSplit(group, pick_mode(mode, heads, group_size(group)))


class SequenceParallel(nn.Module):
    """A DiT that runs sequence-parallel over `group`: called as the DiT is, `(x, t, text, text_mask,
    cond)`, on every rank of the group with the same full inputs, in forward and backward; each rank
    runs the blocks on its share of the tokens and returns the whole v. The split is fixed here, once
    (`token_split`); the DiT's parameters are the wrapped DiT's own. Only the batched `forward` is
    supported (not `forward_packed`)."""

    def __init__(self, dit: nn.Module, group: Any = None, mode: str = "auto") -> None:
        super().__init__()
        self.dit = dit
        self.split = token_split(dit.cfg.heads, group, mode)

    def forward(self, *args: Any, **kwargs: Any) -> Tensor:
        """`DiT.forward`'s arguments but `split`, which is this wrapper's."""
        return self.dit(*args, split=self.split, **kwargs)

    def forward_packed(self, *args: Any, **kwargs: Any) -> list[Tensor]:
        raise SequenceParallelError("forward_packed does not support sequence parallelism; use forward")
