"""The diffusion transformer and its parts: attention masks, RoPE, packing, time and text conditioning."""

import math

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from tessera.config import PRESETS, DiTConfig
from tessera.models import layers
from tessera.models.dit import DiT, deepen, dit_flops, widen
from tessera.models.rope import apply_rope, rope_freqs, rope_split

CFG: DiTConfig = PRESETS["tiny"].dit


def make_dit(seed: int = 0, nudge: bool = True) -> DiT:
    """The tiny DiT; nudge gives the zero-initialised weights small random values so v depends on inputs."""
    torch.manual_seed(seed)
    model = DiT(CFG).eval()
    if nudge:
        with torch.no_grad():
            for p in model.parameters():
                if not p.any():
                    p.normal_(std=0.2)
    return model


def make_inputs(B: int = 2, T: int = 2, H: int = 4, W: int = 6, L: int = 5, seed: int = 1) -> dict:
    g = torch.Generator().manual_seed(seed)
    return dict(
        x=torch.randn(B, CFG.in_channels, T, H, W, generator=g),
        t=torch.rand(B, T, generator=g),
        text=torch.randn(B, L, CFG.text_dim, generator=g),
        text_mask=torch.ones(B, L, dtype=torch.bool),
        cond=torch.randn(B, CFG.cond_channels, T, H, W, generator=g),
    )


# --- attention ---------------------------------------------------------------------------------------


def test_segment_attention_paths_agree_and_empty_rows_are_zero() -> None:
    """CPU dense mask == the per-segment SDPA loop (the CUDA fallback); a query without keys gets 0."""
    q, k, v = (torch.randn(2, 3, n, 8, requires_grad=True) for n in (9, 7, 7))
    mask = layers.segment_mask(torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2]), torch.tensor([0, 0, 1, 1, 1, 1, 3]))
    dense = layers.attention(q, k, v, mask)
    torch.testing.assert_close(layers._segment_attention(q, k, v, mask), dense)
    assert dense[:, :, 5:].abs().max() == 0  # segment 2 has no keys
    for i in range(3):  # segment 0 by itself
        torch.testing.assert_close(
            dense[:, :, i], layers.attention(q[:, :, i : i + 1], k[:, :, :2], v[:, :, :2])[:, :, 0]
        )
    dense.sum().backward()
    assert all(torch.isfinite(x.grad).all() for x in (q, k, v))


# --- RoPE --------------------------------------------------------------------------------------------


def test_rope_split_matches_wan() -> None:
    assert rope_split(128) == (44, 42, 42)
    assert rope_split(16) == (8, 4, 4)
    with pytest.raises(ValueError, match="even head_dim"):
        rope_split(7)


def test_rope_scores_depend_only_on_relative_position() -> None:
    torch.manual_seed(0)
    Dh = 24
    q, k = torch.randn(1, 2, 10, Dh, dtype=torch.float64), torch.randn(1, 2, 10, Dh, dtype=torch.float64)
    pos = torch.randint(0, 20, (10, 3))
    scores = [
        apply_rope(q, rope_freqs(Dh, p)) @ apply_rope(k, rope_freqs(Dh, p)).transpose(-1, -2)
        for p in (pos, pos + torch.tensor([7, -3, 11]))
    ]
    torch.testing.assert_close(scores[0], scores[1], atol=1e-5, rtol=1e-5)  # cos/sin are float32
    # ...and positions do matter: moving one axis of some tokens changes their scores.
    moved = pos.clone()
    moved[:5, 1] += 3
    other = apply_rope(q, rope_freqs(Dh, moved)) @ apply_rope(k, rope_freqs(Dh, moved)).transpose(-1, -2)
    assert (other - scores[0]).abs().max() > 1e-2
    # Rotation keeps norms.
    torch.testing.assert_close(apply_rope(q, rope_freqs(Dh, pos)).norm(dim=-1), q.norm(dim=-1))


# --- DiT ---------------------------------------------------------------------------------------------


def test_output_is_exactly_zero_at_init_until_the_final_layer_moves() -> None:
    model = make_dit(nudge=False)
    v = model(**make_inputs())
    assert v.shape == (2, CFG.in_channels, 2, 4, 6)
    assert v.abs().max() == 0
    with torch.no_grad():
        model.head.linear.weight.normal_()
    assert model(**make_inputs()).abs().min() > 0


def test_packed_forward_equals_clips_one_by_one() -> None:
    model = make_dit()
    g = torch.Generator().manual_seed(2)
    shapes, lengths, L = [(3, 4, 6), (1, 6, 4), (2, 2, 2)], [5, 2, 7], 7  # clip 1 is a one-frame image
    xs = [torch.randn(CFG.in_channels, *s, generator=g) for s in shapes]
    conds = [torch.randn(CFG.cond_channels, *s, generator=g) for s in shapes]
    ts = [torch.rand(s[0], generator=g) for s in shapes]
    text = torch.randn(3, L, CFG.text_dim, generator=g)
    text_mask = torch.arange(L)[None] < torch.tensor(lengths)[:, None]  # (3, L), different caption lengths
    with torch.no_grad():
        packed = model.forward_packed(xs, ts, text, text_mask, conds)
        for i in range(3):
            alone = model(xs[i][None], ts[i][None], text[i : i + 1], text_mask[i : i + 1], conds[i][None])[0]
            torch.testing.assert_close(packed[i], alone, atol=1e-5, rtol=1e-5)
        # No conds means zeros (text-to-video), in both entry points; an empty caption is allowed.
        text_mask[1] = False
        packed = model.forward_packed(xs, ts, text, text_mask)
        assert all(torch.isfinite(v).all() for v in packed)
        alone = model(xs[1][None], ts[1][None], text[1:2], text_mask[1:2])[0]
        torch.testing.assert_close(packed[1], alone, atol=1e-5, rtol=1e-5)


def test_time_is_per_frame_and_the_model_is_deterministic() -> None:
    model = make_dit()
    inputs = make_inputs(B=1, T=3)
    with torch.no_grad():
        v = model(**inputs)
        torch.testing.assert_close(model(**inputs), v, atol=0, rtol=0)
        inputs["t"] = inputs["t"].clone()
        inputs["t"][0, 1] += 0.3
        change = (model(**inputs) - v).abs().amax(dim=(0, 1, 3, 4))  # (T,) per latent frame
    assert change[1] > 1e-3  # the frame whose time moved
    assert change[0] > 1e-6 and change[2] > 1e-6  # the others, through attention
    assert change[1] > change[0] and change[1] > change[2]


def test_padding_text_tokens_do_not_change_the_output() -> None:
    model = make_dit()
    inputs = make_inputs(B=2, L=6)
    inputs["text_mask"][0, 3:] = False
    inputs["text_mask"][1, 5:] = False
    with torch.no_grad():
        v = model(**inputs)
        inputs["text"][0, 3:] = 100 * torch.randn(3, CFG.text_dim)  # junk under the padding
        torch.testing.assert_close(model(**inputs), v)
        short = dict(inputs, x=inputs["x"][:1], t=inputs["t"][:1], cond=inputs["cond"][:1])
        short.update(text=inputs["text"][:1, :3], text_mask=inputs["text_mask"][:1, :3])
        torch.testing.assert_close(model(**short), v[:1], atol=1e-5, rtol=1e-5)  # padding removed
        inputs["text"][0, :3] += 1  # real tokens do matter
        assert (model(**inputs)[0] - v[0]).abs().max() > 1e-3


def _attention_calls(model: DiT, inputs: dict) -> tuple[list[torch.Tensor], int, int, int]:
    """Gradients of one forward + backward, the fused attention kernels run in forward and in backward
    (their recomputation), and the matmuls run in backward (ATen calls seen by a dispatch mode)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from tessera.models.dit import _ATTENTION_OPS

    class Count(TorchDispatchMode):
        calls = matmuls = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            Count.calls += func in _ATTENTION_OPS
            Count.matmuls += func.__name__.split(".")[0] in ("mm", "addmm", "bmm")
            return func(*args, **(kwargs or {}))

    model.zero_grad()
    with Count():
        loss = model(**inputs).square().mean()
        forward, Count.matmuls = Count.calls, 0
        loss.backward()
    return [p.grad.clone() for p in model.parameters()], forward, Count.calls - forward, Count.matmuls


def test_checkpointing_gives_the_same_gradients() -> None:
    model = make_dit().train()
    inputs = make_inputs()
    runs = {}
    # none, every block, the first half of the blocks; then keeping attention outputs
    modes = [(0.0, "full"), (1.0, "full"), (0.5, "full"), (1.0, "selective"), (0.5, "selective")]
    for ckpt, mode in modes:
        assert model.checkpointed(ckpt, mode) is model  # configured once, in place
        runs[ckpt, mode] = _attention_calls(model, inputs)
    reference, forward, again, matmuls = runs[0.0, "full"]
    assert forward == 2 * len(model.blocks) and again == 0  # self- and cross-attention per block
    for grads, *_ in runs.values():
        for a, b in zip(reference, grads, strict=True):
            torch.testing.assert_close(a, b)
    # Full checkpointing reruns both attentions of each checkpointed block; selective reruns none.
    assert runs[1.0, "full"][2] == forward and runs[0.5, "full"][2] == forward // 2
    assert runs[1.0, "selective"][2] == 0 and runs[0.5, "selective"][2] == 0
    # ...but it does recompute the linear layers: as many more matmuls in backward as full checkpointing.
    assert runs[1.0, "selective"][3] == runs[1.0, "full"][3] > matmuls
    with pytest.raises(ValueError, match="checkpoint_mode 'some'; allowed: full, selective"):
        model.checkpointed(1.0, "some")  # refused when configured, before any forward
    n = len(model.blocks)  # the refused call changed nothing: the last mode, half the blocks, stays
    assert [b.recompute for b in model.blocks] == ["selective"] * round(n / 2) + [None] * (n - round(n / 2))


def test_deepen_keeps_the_function_and_the_new_blocks_learn() -> None:
    model, inputs = make_dit(), make_inputs()
    grown = deepen(model, 5)  # 2 blocks -> 5: old 0, two copies of it, old 1, one copy
    assert len(grown.blocks) == 5 and grown.cfg.depth == 5
    with torch.no_grad():
        assert torch.equal(grown(**inputs), model(**inputs))  # exactly: new blocks add zeros
    for j, i in [(0, 0), (3, 1)]:  # old blocks in their places, unchanged
        for k, v in model.blocks[i].state_dict().items():
            assert torch.equal(grown.blocks[j].state_dict()[k], v), (j, k)
    new = [grown.blocks[j] for j in (1, 2, 4)]
    for block in new:  # a copy of the block before it, with what it writes silenced
        assert not block.self_attn.out.weight.any() and not block.mlp.fc2.weight.any()
        assert not block.cross_attn.out.weight.any() and block.self_attn.qkv.weight.any()
    assert torch.equal(new[1].self_attn.qkv.weight, model.blocks[0].self_attn.qkv.weight)
    assert torch.equal(new[2].mlp.fc1.weight, model.blocks[1].mlp.fc1.weight)
    # One optimizer step moves the silenced projections, so the new blocks start to contribute.
    grown.train()
    opt = torch.optim.SGD(grown.parameters(), lr=0.1)
    grown(**inputs).square().mean().backward()
    opt.step()
    assert all(b.self_attn.out.weight.any() and b.mlp.fc2.weight.any() for b in new)
    with torch.no_grad():
        assert not torch.allclose(grown.eval()(**inputs), model(**inputs))
    with pytest.raises(ValueError, match="depth 1 is below the network's 2 blocks"):
        deepen(model, 1)


def test_widen_keeps_the_function_and_the_new_units_learn() -> None:
    model, inputs = make_dit(), make_inputs()
    old = model.cfg.ffn_dim
    wide = widen(model, 3 * old)
    assert wide.cfg.ffn_dim == 3 * old and wide.blocks[1].mlp.fc1.weight.shape[0] == 3 * old
    with torch.no_grad():
        assert torch.allclose(wide(**inputs), model(**inputs), atol=1e-6, rtol=0)  # new units add zeros
    for a, b in zip(model.blocks, wide.blocks, strict=True):
        assert torch.equal(b.mlp.fc1.weight[:old], a.mlp.fc1.weight) and b.mlp.fc1.weight[old:].any()
        assert (
            torch.equal(b.mlp.fc2.weight[:, :old], a.mlp.fc2.weight) and not b.mlp.fc2.weight[:, old:].any()
        )
        assert torch.equal(b.self_attn.qkv.weight, a.self_attn.qkv.weight)
    # One step moves the new output columns (their units are active), so the new units start to count.
    wide.train()
    opt = torch.optim.SGD(wide.parameters(), lr=0.1)
    wide(**inputs).square().mean().backward()
    opt.step()
    assert all(b.mlp.fc2.weight[:, old:].any() for b in wide.blocks)
    with pytest.raises(ValueError, match=f"ffn_dim 8 is below the network's {old}"):
        widen(model, 8)


def test_parameter_counts_of_presets() -> None:
    for name, lo, hi in [
        ("s", 9.1e6, 9.2e6),
        ("s-deep", 13.3e6, 13.4e6),
        ("s-deeper", 17.5e6, 17.6e6),
        ("s-wide", 25.9e6, 26.1e6),
        ("wan-1.3b", 1.2e9, 1.5e9),
    ]:
        with torch.device("meta"):
            model = DiT(PRESETS[name].dit)
        n = sum(p.numel() for p in model.parameters())
        assert lo <= n <= hi, (name, n)


def _math_sdpa(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Attention as two visible matmuls, so FlopCounterMode counts them (it skips CPU fused SDPA)."""
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return scores.softmax(-1) @ v


def test_dit_flops_matches_a_direct_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(layers, "_sdpa", _math_sdpa)
    model = make_dit()
    inputs = make_inputs(B=1, T=2, H=16, W=16, L=9)  # 2 * 8 * 8 = 128 tokens
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(**inputs)
    assert dit_flops(CFG, 128, 9) == pytest.approx(counter.get_total_flops(), rel=0.03)


def test_clear_errors_for_bad_inputs() -> None:
    model = make_dit(nudge=False)
    inputs = make_inputs()
    bad = [
        (dict(x=inputs["x"][:, :3]), "in_channels = 4"),
        (dict(t=inputs["t"][:, :1]), "one value per latent frame"),
        (dict(x=inputs["x"][..., :5], cond=None), "W = 5 is not a multiple of the patch size 2"),
        (dict(cond=inputs["cond"][:, :4]), "cond_channels = in_channels \\+ 4"),
        (dict(text=inputs["text"][..., :3]), "text_dim=32"),
        (dict(text_mask=inputs["text_mask"].float()), "text_mask must be bool"),
    ]
    for change, message in bad:
        with pytest.raises(ValueError, match=message):
            model(**dict(inputs, **change))
    with pytest.raises(ValueError, match="3 captions"):
        model.forward_packed(
            [inputs["x"][0]], [inputs["t"][0]], torch.randn(3, 2, 32), torch.ones(3, 2, dtype=bool)
        )
