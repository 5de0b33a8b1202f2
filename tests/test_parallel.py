"""Ulysses sequence parallelism: gloo on the CPU, 2 and 4 processes on loopback, against one process."""

import dataclasses

import pytest
import torch
import torch.distributed as dist

from tessera.config import PRESETS, DiTConfig
from tessera.models.dit import DiT
from tessera.models.layers import attention
from tessera.parallel import (
    SequenceParallelError,
    check_heads,
    gather_sequence,
    sequence_parallel,
    shard_sequence,
    ulysses_attention,
)
from tessera.train.distributed import launch_local

TINY: DiTConfig = PRESETS["tiny"].dit  # 2 heads: fine for P = 2
FOUR_HEADS = dataclasses.replace(TINY, dim=64, heads=4, ffn_dim=128)  # for P = 4


# --- one process ---------------------------------------------------------------------------------


def test_shards_tile_the_sequence_and_bad_splits_are_refused() -> None:
    """Concatenating every rank's shard in rank order gives the sequence back; uneven splits are an error."""
    x = torch.randn(2, 12, 5)
    torch.testing.assert_close(
        torch.cat([shard_sequence(x, r, 4) for r in range(4)], dim=1), x, rtol=0, atol=0
    )
    assert shard_sequence(x, 1, 3).shape == (2, 4, 5)
    with pytest.raises(SequenceParallelError, match="12 tokens.*5 ranks"):
        shard_sequence(x, 0, 5)
    with pytest.raises(SequenceParallelError, match=r"heads \(6\).*P = 4.*ring attention"):
        check_heads(6, 4)


# --- several processes (each check runs on every rank) --------------------------------------------


def _check_attention(world: int) -> None:
    """Ulysses attention on token shards == full attention, values and q/k/v gradients, with and without
    a full-sequence mask."""
    rank = dist.get_rank()
    g = torch.Generator().manual_seed(0)
    B, H, N, Dh = 2, 4, 6 * world, 8
    q, k, v = (torch.randn(B, H, N, Dh, generator=g, requires_grad=True) for _ in range(3))
    w = torch.randn(B, H, N, Dh, generator=g)
    mask = (torch.rand(N, N, generator=g) < 0.6) | torch.eye(N, dtype=torch.bool)
    for m in (None, mask):
        ref = attention(q, k, v, m)
        grads_ref = torch.autograd.grad((ref * w).sum(), (q, k, v))
        shards = [shard_sequence(a, rank, world, dim=2).detach().requires_grad_() for a in (q, k, v)]
        out = ulysses_attention(*shards, None, m)  # (B, H, N/P, Dh)
        torch.testing.assert_close(out, shard_sequence(ref, rank, world, 2), rtol=0, atol=1e-5)
        # Each rank's loss is its tokens' share; the exchange's backward brings the other ranks' parts.
        (out * shard_sequence(w, rank, world, 2)).sum().backward()
        for s, gr in zip(shards, grads_ref, strict=True):
            torch.testing.assert_close(s.grad, shard_sequence(gr, rank, world, 2), rtol=0, atol=1e-5)


def _make_dit(cfg: DiTConfig) -> DiT:
    """Same weights on every rank; the zero-initialised ones nudged so v and every gradient are non-zero."""
    torch.manual_seed(0)
    model = DiT(cfg).train()
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():
                p.normal_(std=0.2)
    return model


def _inputs(cfg: DiTConfig) -> dict:
    """3 latent frames of 2x2 patches: 12 tokens, so shards of 6 (P = 2) or 3 (P = 4) straddle frames."""
    g = torch.Generator().manual_seed(1)
    B, T, H, W, L = 2, 3, 4, 4, 5
    text_mask = torch.ones(B, L, dtype=torch.bool)
    text_mask[1, 3:] = False
    return dict(
        x=torch.randn(B, cfg.in_channels, T, H, W, generator=g),
        t=torch.rand(B, T, generator=g),  # a different time per frame: tokens must find their own frame
        text=torch.randn(B, L, cfg.text_dim, generator=g),
        text_mask=text_mask,
        cond=torch.randn(B, cfg.cond_channels, T, H, W, generator=g),
    )


def _check_dit(cfg: DiTConfig) -> None:
    """Sequence-parallel DiT forward == one-process forward; summed gradients == one-process gradients."""
    model, inputs = _make_dit(cfg), _inputs(cfg)
    w = torch.randn(inputs["x"].shape, generator=torch.Generator().manual_seed(2))
    v_ref = model(**inputs)
    (v_ref * w).sum().backward()
    grads_ref = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    model.checkpointing = True  # recomputation in backward repeats the exchanges on every rank alike
    with sequence_parallel(model):
        assert model.sp_group is not None and model.blocks[0].self_attn.sp_group is not None
        v = model(**inputs)
        torch.testing.assert_close(v, v_ref, rtol=0, atol=1e-5)
        (v * w).sum().backward()  # every rank computes the same loss from the gathered v
    assert model.sp_group is None and model.blocks[0].self_attn.sp_group is None  # hook restored
    # Each rank holds only its tokens' part of the gradient (the embedding sees only its own tokens)...
    assert (model.patch_embed.weight.grad - grads_ref["patch_embed.weight"]).abs().max() > 1e-2
    for name, p in model.named_parameters():
        dist.all_reduce(p.grad)  # ...and the sum of the parts is the whole
        assert grads_ref[name].abs().max() > 0, name
        torch.testing.assert_close(
            p.grad, grads_ref[name], rtol=1e-4, atol=1e-4, msg=lambda m, n=name: f"{n}: {m}"
        )


def _check_errors(world: int) -> None:
    """Heads not divisible by P: a clear error before any exchange; packed forward is refused."""
    model = _make_dit(TINY)
    if TINY.heads % world:
        with pytest.raises(SequenceParallelError, match=rf"heads \({TINY.heads}\).*P = {world}"):
            with sequence_parallel(model):
                pass
        q = torch.randn(1, TINY.heads, 4, 16)
        with pytest.raises(SequenceParallelError, match=rf"heads \({TINY.heads}\).*P = {world}"):
            ulysses_attention(q, q, q, None)
    else:
        inputs = _inputs(TINY)
        with sequence_parallel(model), pytest.raises(SequenceParallelError, match="forward_packed"):
            model.forward_packed(
                list(inputs["x"]), list(inputs["t"]), inputs["text"], inputs["text_mask"], None
            )


def _worker(world: int, cfg: DiTConfig) -> None:
    dist.init_process_group("gloo")  # RANK, WORLD_SIZE, MASTER_* set by launch_local (127.0.0.1)
    _check_attention(world)
    _check_dit(cfg)
    _check_errors(world)
    y = gather_sequence(torch.full((1, 2, 3), float(dist.get_rank())), None)
    assert y[0, :, 0].tolist() == [float(r) for r in range(world) for _ in range(2)]  # rank order


@pytest.mark.parametrize("world,cfg", [(2, TINY), (4, FOUR_HEADS)], ids=["P2", "P4"])
def test_ulysses_matches_one_process(world: int, cfg: DiTConfig) -> None:
    """Attention, the full tiny DiT forward and its parameter gradients under P-way sequence parallelism
    equal the one-process results (1e-5 attention and v, 1e-4 gradients); bad head counts are refused."""
    launch_local(_worker, world, world, cfg)
