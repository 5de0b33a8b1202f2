"""Sequence parallelism (Ulysses and ring): gloo on the CPU, 2 and 4 processes on loopback, against one
process: attention, the DiT forward and backward, FSDP2 training steps, and `tessera generate`."""

import dataclasses
import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from tessera.checkpoint import load_state
from tessera.config import PRESETS, DiTConfig
from tessera.models.dit import DiT
from tessera.models.layers import attention
from tessera.parallel import (
    SequenceParallel,
    SequenceParallelError,
    check_heads,
    gather_sequence,
    pick_mode,
    sequence_attention,
    shard_sequence,
    ulysses_attention,
)
from tessera.train.config import ConfigError, make_config
from tessera.train.distributed import Dist, launch_local
from tessera.train.dit import check_sequence_parallel, train_dit
from tessera.train.logger import read_metrics
from tessera.video import read_video

TINY: DiTConfig = PRESETS["tiny"].dit  # 2 heads: Ulysses at P = 2, ring at P = 4
FOUR_HEADS = dataclasses.replace(TINY, dim=64, heads=4, ffn_dim=128)  # Ulysses at P = 4
THREE_HEADS = dataclasses.replace(TINY, dim=48, heads=3, ffn_dim=96)  # ring at P = 2


pytestmark = pytest.mark.usefixtures("one_thread")


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


def test_auto_mode_prefers_ulysses_and_falls_back_to_ring() -> None:
    assert pick_mode("auto", 12, 4) == "ulysses" and pick_mode("auto", 12, 8) == "ring"
    assert pick_mode("auto", 2, 4) == "ring" and pick_mode("ring", 12, 4) == "ring"
    with pytest.raises(SequenceParallelError, match=r"heads \(12\).*P = 8"):
        pick_mode("ulysses", 12, 8)
    with pytest.raises(
        SequenceParallelError, match="unknown sequence-parallel mode 'ringo'.*auto, ulysses, ring"
    ):
        pick_mode("ringo", 12, 4)


def test_training_config_refuses_what_sequence_parallelism_cannot_run() -> None:
    """Packed batching, token counts that do not split, and FSDP groups that would make different calls."""
    with pytest.raises(ConfigError, match="'sp' = 2.*--batching bucketed"):
        make_config("dit", preset="tiny", sp=2)
    cfg = make_config("dit", preset="tiny", sp=4, batching="bucketed", shapes="9x32x32,5x32x48")
    fsdp = Dist(0, 8, torch.device("cpu"), "fsdp", sp=4)
    with pytest.raises(ConfigError, match="one shape per step"):
        check_sequence_parallel(cfg, fsdp)
    check_sequence_parallel(dataclasses.replace(cfg, batch_shapes="one"), fsdp)  # one shape per step: fine
    check_sequence_parallel(cfg, dataclasses.replace(fsdp, mode="ddp"))  # 12 tokens each: fine under DDP
    with pytest.raises(ConfigError, match=r"\(9, 48, 48\) has 27 tokens.*sp = 2"):
        check_sequence_parallel(
            dataclasses.replace(cfg, shapes="9x48x48", sp=2), dataclasses.replace(fsdp, sp=2, mode="ddp")
        )


# --- several processes (each check runs on every rank) --------------------------------------------


class Clips:
    """A fast deterministic source of 9x32x32 clips (12 DiT tokens): a coloured square sliding over grey."""

    size = None

    def sample(self, i: int) -> dict:
        g = torch.Generator().manual_seed(i)
        video = torch.full((3, 9, 32, 32), -0.5)
        colour = torch.rand(3, 1, 1, generator=g) * 2 - 1
        for f in range(9):
            video[:, f, 8:16, 2 * f + i % 8 :][:, :, :8] = colour
        return {"video": video, "caption": f"a square, clip {i}", "short_caption": "a square", "key": i}


def _train_config(model: Path):
    return make_config(
        "dit", preset="tiny", init=str(model), steps=2, batch_size=2, shapes="9x32x32", batching="bucketed",
        log_every=1, ckpt_every=0, sample_every=0, warmup=1, schedule="constant", lr=1e-3,
    )  # fmt: skip


@pytest.fixture(scope="module")
def one_process_run(tmp_path_factory, tiny_model_dir: Path) -> Path:
    """Two training steps of the tiny DiT in one process."""
    run = tmp_path_factory.mktemp("train") / "one"
    train_dit(_train_config(tiny_model_dir), run, source=Clips())
    return run


def _assert_same_run(run: Path, ref: Path) -> None:
    """Same losses and gradient norms per step (Adam would hide a wrong gradient scale from the weights),
    same raw and EMA weights."""
    for key in ("loss", "grad_norm"):
        assert [r[key] for r in read_metrics(run)] == pytest.approx(
            [r[key] for r in read_metrics(ref)], rel=1e-5
        )
    want = load_state(ref / "state")[0]
    for k, v in load_state(run / "state")[0].items():
        if k.startswith(("raw.", "ema.")):
            assert torch.allclose(v, want[k], atol=1e-4), (run.name, k, (v - want[k]).abs().max())


def _check_attention(world: int) -> None:
    """Ulysses and ring attention on token shards == full attention, values and q/k/v gradients; Ulysses
    also with a full-sequence mask; ring also with a head count that does not divide over the ranks."""
    rank = dist.get_rank()
    g = torch.Generator().manual_seed(0)
    N, Dh = 6 * world, 8
    mask = (torch.rand(N, N, generator=g) < 0.6) | torch.eye(N, dtype=torch.bool)
    cases = [("ulysses", 4, None), ("ulysses", 4, mask), ("ring", 4, None), ("ring", 3, None)]
    for mode, H, m in cases:
        q, k, v = (torch.randn(2, H, N, Dh, generator=g, requires_grad=True) for _ in range(3))
        w = torch.randn(2, H, N, Dh, generator=g)
        ref = attention(q, k, v, m)
        grads_ref = torch.autograd.grad((ref * w).sum(), (q, k, v))
        shards = [shard_sequence(a, rank, world, dim=2).detach().requires_grad_() for a in (q, k, v)]
        out = sequence_attention(*shards, None, m, mode)  # (B, H, N/P, Dh)
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


def _check_dit(cfg: DiTConfig, mode: str) -> None:
    """Sequence-parallel DiT forward == one-process forward; summed gradients == one-process gradients."""
    model, inputs = _make_dit(cfg), _inputs(cfg)
    w = torch.randn(inputs["x"].shape, generator=torch.Generator().manual_seed(2))
    v_ref = model(**inputs)
    (v_ref * w).sum().backward()
    grads_ref = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    model.checkpointed(1.0)  # recomputation in backward repeats the exchanges on every rank alike
    parallel = SequenceParallel(model)  # auto
    assert parallel.split.mode == mode and parallel.split.group is dist.group.WORLD
    v = parallel(**inputs)
    torch.testing.assert_close(v, v_ref, rtol=0, atol=1e-5)
    (v * w).sum().backward()  # every rank computes the same loss from the gathered v
    torch.testing.assert_close(model(**inputs), v_ref, rtol=0, atol=0)  # the DiT itself is unchanged
    # Each rank holds only its tokens' part of the gradient (the embedding sees only its own tokens)...
    assert (model.patch_embed.weight.grad - grads_ref["patch_embed.weight"]).abs().max() > 1e-2
    for name, p in model.named_parameters():
        dist.all_reduce(p.grad)  # ...and the sum of the parts is the whole
        assert grads_ref[name].abs().max() > 0, name
        torch.testing.assert_close(
            p.grad, grads_ref[name], rtol=1e-4, atol=1e-4, msg=lambda m, n=name: f"{n}: {m}"
        )


def _check_errors(world: int) -> None:
    """Ulysses with a head count that does not divide: a clear error before any exchange; ring refuses a
    mask; the packed forward is refused."""
    model = _make_dit(THREE_HEADS)
    with pytest.raises(SequenceParallelError, match=rf"heads \(3\).*P = {world}"):
        SequenceParallel(model, mode="ulysses")
    q = torch.randn(1, 3, 4, 16)
    with pytest.raises(SequenceParallelError, match=rf"heads \(3\).*P = {world}"):
        ulysses_attention(q, q, q, None)
    with pytest.raises(SequenceParallelError, match="ring attention takes no attention mask"):
        sequence_attention(q, q, q, None, torch.ones(4 * world, 4 * world, dtype=torch.bool), "ring")
    inputs = _inputs(THREE_HEADS)
    with pytest.raises(SequenceParallelError, match="forward_packed"):
        xs, ts = list(inputs["x"]), list(inputs["t"])
        SequenceParallel(model).forward_packed(xs, ts, inputs["text"], inputs["text_mask"], None)


def _worker(world: int, ulysses_cfg: DiTConfig, ring_cfg: DiTConfig, model: Path, run: Path) -> None:
    dist.init_process_group("gloo")  # RANK, WORLD_SIZE, MASTER_* set by launch_local (127.0.0.1)
    _check_attention(world)
    _check_dit(ulysses_cfg, "ulysses")
    _check_dit(ring_cfg, "ring")
    _check_errors(world)
    y = gather_sequence(torch.full((1, 2, 3), float(dist.get_rank())), None)
    assert y[0, :, 0].tolist() == [float(r) for r in range(world) for _ in range(2)]  # rank order
    # Training in the same processes (starting them is the slow part): FSDP2 over all ranks, sp = 2.
    train_dit(dataclasses.replace(_train_config(model), distributed="fsdp", sp=2), run, source=Clips())


@pytest.mark.parametrize(
    "world,ulysses_cfg,ring_cfg", [(2, TINY, THREE_HEADS), (4, FOUR_HEADS, TINY)], ids=["P2", "P4"]
)
def test_sequence_parallel_matches_one_process(
    world: int,
    ulysses_cfg: DiTConfig,
    ring_cfg: DiTConfig,
    one_process_run,
    tiny_model_dir: Path,
    tmp_path: Path,
) -> None:
    """Attention, the full tiny DiT forward and its parameter gradients under P-way sequence parallelism,
    Ulysses and ring, equal the one-process results (1e-5 attention and v, 1e-4 gradients). Two FSDP2
    training steps of the tiny preset with sp = 2 (P = 2: one group; P = 4: two data-parallel groups of 2)
    give the one-process losses, gradient norms and weights."""
    launch_local(_worker, world, world, ulysses_cfg, ring_cfg, tiny_model_dir, tmp_path / "run")
    _assert_same_run(tmp_path / "run", one_process_run)


# --- sampling -------------------------------------------------------------------------------------


def _generate(model: Path, out: Path) -> None:
    """`tessera generate` as torchrun would run it in each process; each rank names its own file."""
    from tessera.cli import app

    rank = os.environ.get("RANK", "0")
    args = ["generate", "a red square", "--model", str(model), "-o", str(out / f"rank{rank}.webp")]
    args += [
        "--frames",
        "9",
        "--height",
        "32",
        "--width",
        "32",
        "--steps",
        "3",
        "--no-expand",
        "--device",
        "cpu",
    ]
    app(args, standalone_mode=False)


def test_generate_across_processes_matches_one_process(tmp_path: Path, tiny_model_dir: Path) -> None:
    """One video sampled over 2 processes equals the one-process video; only rank 0 writes it."""
    (tmp_path / "one").mkdir(), (tmp_path / "sp").mkdir()
    _generate(tiny_model_dir, tmp_path / "one")
    launch_local(_generate, 2, tiny_model_dir, tmp_path / "sp")
    assert sorted(p.name for p in (tmp_path / "sp").iterdir()) == ["rank0.webp"]
    one, sp = read_video(tmp_path / "one" / "rank0.webp"), read_video(tmp_path / "sp" / "rank0.webp")
    assert one.shape == (9, 32, 32, 3) and one.float().std() > 1  # not a blank video
    assert (one.int() - sp.int()).abs().max() <= 1  # lossless WebP: equal up to rounding of float noise
