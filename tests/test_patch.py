"""Spacetime patches: exact round trips, raster order, Conv3d equivalence, packing."""

import pytest
import torch

from tessera.models.patch import pack, patchify, positions, unpack, unpatchify


@pytest.mark.parametrize(
    "shape, patch",
    [
        ((2, 3, 1, 4, 6), (1, 2, 2)),
        ((1, 4, 5, 8, 8), (1, 2, 2)),
        ((2, 2, 4, 6, 9), (2, 3, 3)),
        ((1, 1, 3, 2, 2), (1, 1, 1)),
    ],
)
def test_unpatchify_inverts_patchify_exactly(shape: tuple, patch: tuple) -> None:
    x = torch.randn(shape)
    tokens = patchify(x, patch)
    B, C, T, H, W = shape
    assert tokens.shape == (
        B,
        (T // patch[0]) * (H // patch[1]) * (W // patch[2]),
        C * patch[0] * patch[1] * patch[2],
    )
    assert torch.equal(unpatchify(tokens, patch, (T, H, W)), x)


def test_tokens_are_in_thw_raster_order_with_conv3d_value_order() -> None:
    x = torch.randn(1, 3, 2, 4, 6)
    patch = (1, 2, 2)
    tokens = patchify(x, patch)  # (1, 12, 12)
    pos = positions((2, 2, 3))
    for n, (t, h, w) in enumerate(
        pos.tolist()
    ):  # token n holds x[:, :, t, 2h:2h+2, 2w:2w+2] flattened (C, ph, pw)
        assert torch.equal(tokens[0, n], x[0, :, t, 2 * h : 2 * h + 2, 2 * w : 2 * w + 2].reshape(-1))
    # Hence a Linear on tokens is a Conv3d with stride = patch and the same (flattened) weight.
    weight = torch.randn(5, 3, *patch, dtype=torch.float64)
    conv = torch.nn.functional.conv3d(x.double(), weight, stride=patch)  # (1, 5, 2, 2, 3)
    lin = patchify(x.double(), patch) @ weight.reshape(5, -1).T  # (1, 12, 5)
    torch.testing.assert_close(lin, conv.flatten(2).transpose(1, 2))


def test_pack_unpack_round_trip() -> None:
    clips = [torch.randn(4, 3, 4, 6), torch.randn(4, 1, 8, 2), torch.randn(4, 2, 2, 2)]
    packed = pack(clips, (1, 2, 2))
    assert packed.lengths == [18, 4, 2]
    assert packed.tokens.shape == (1, 24, 16)
    assert packed.segments.tolist() == [0] * 18 + [1] * 4 + [2] * 2
    # Each clip's positions start at 0, exactly as if it were alone.
    assert torch.equal(packed.positions[18:22], positions((1, 4, 1)))
    for a, b in zip(unpack(packed.tokens, packed), clips, strict=True):
        assert torch.equal(a, b)
    # Unpacking output tokens with another channel count (e.g. v without the condition channels).
    out = unpack(packed.tokens[..., :8], packed)
    assert [tuple(o.shape) for o in out] == [(2, 3, 4, 6), (2, 1, 8, 2), (2, 2, 2, 2)]


def test_clear_errors_for_shapes_that_do_not_fit_the_patch() -> None:
    with pytest.raises(ValueError, match="H=5 must be a positive multiple of the patch size 2"):
        patchify(torch.randn(1, 2, 1, 5, 4), (1, 2, 2))
    with pytest.raises(ValueError, match="T=3"):
        pack([torch.randn(2, 3, 4, 4)], (2, 2, 2))
    with pytest.raises(ValueError, match=r"\(B, C, T, H, W\)"):
        patchify(torch.randn(2, 4, 4, 4), (1, 2, 2))
    with pytest.raises(ValueError, match="one C"):
        pack([torch.randn(2, 1, 4, 4), torch.randn(3, 1, 4, 4)], (1, 2, 2))
    with pytest.raises(ValueError, match="need N = 4"):
        unpatchify(torch.randn(1, 5, 8), (1, 2, 2), (1, 4, 4))
