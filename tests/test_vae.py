"""Properties of the causal video VAE (tiny preset, fp32, CPU)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import tessera.models.vae as vae_module
from tessera.config import get_preset
from tessera.models.vae import VideoVAE, kl_loss

CFG = get_preset("tiny").vae


@pytest.fixture(scope="module")
def vae() -> VideoVAE:
    torch.manual_seed(0)
    return VideoVAE(CFG).eval()


def video(t: int, h: int = 16, w: int = 16, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, t, h, w, generator=g) * 2 - 1


def latents(t_z: int, h: int = 2, w: int = 2, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, CFG.z_channels, t_z, h, w, generator=g)


@pytest.mark.parametrize(("t", "t_z"), [(1, 1), (5, 2), (13, 4)])
@torch.no_grad()
def test_shapes(vae: VideoVAE, t: int, t_z: int) -> None:
    x = video(t, 16, 24)
    mean, logvar = vae.encode(x)
    assert mean.shape == logvar.shape == (1, CFG.z_channels, t_z, 2, 3)
    assert vae.decode(mean).shape == x.shape
    recon, m, lv = vae(x, generator=torch.Generator().manual_seed(0))
    assert recon.shape == x.shape and m.shape == lv.shape == mean.shape


@torch.no_grad()
def test_image_is_first_frame_of_video(vae: VideoVAE) -> None:
    x = video(9)
    assert torch.allclose(vae.encode(x[:, :, :1])[0], vae.encode(x)[0][:, :, :1], atol=1e-5)


@pytest.mark.parametrize("chunked", [False, True])
@torch.no_grad()
def test_encoder_is_causal(vae: VideoVAE, chunked: bool) -> None:
    x = video(9)  # latent frames: 0 <- pixel 0, 1 <- pixels 1..4, 2 <- pixels 5..8
    mean, _ = vae.encode(x, chunked=chunked)
    for first_changed, kept in [(5, 2), (1, 1)]:
        y = x.clone()
        y[:, :, first_changed:] = video(9 - first_changed, seed=1)
        mean_y, _ = vae.encode(y, chunked=chunked)
        assert torch.allclose(mean_y[:, :, :kept], mean[:, :, :kept], atol=1e-6)
        assert not torch.allclose(mean_y[:, :, kept:], mean[:, :, kept:], atol=1e-3)


@pytest.mark.parametrize("chunked", [False, True])
@torch.no_grad()
def test_decoder_is_causal(vae: VideoVAE, chunked: bool) -> None:
    z = latents(3)
    x = vae.decode(z, chunked=chunked)
    for j in [1, 0]:  # latent frames <= j give pixel frames 0..4j
        z2 = z.clone()
        z2[:, :, j + 1 :] = latents(2 - j, seed=1)
        x2 = vae.decode(z2, chunked=chunked)
        kept = 1 + 4 * j
        assert torch.allclose(x2[:, :, :kept], x[:, :, :kept], atol=1e-6)
        assert not torch.allclose(x2[:, :, kept:], x[:, :, kept:], atol=1e-3)


@pytest.mark.parametrize(("chunk_frames", "grad"), [(4, False), (8, True)])
def test_chunked_equals_whole_clip(chunk_frames: int, grad: bool) -> None:
    torch.manual_seed(0)
    vae = VideoVAE(dataclasses.replace(CFG, chunk_frames=chunk_frames)).eval()
    x = video(13)  # with 8-frame chunks: 1 + 8 + a shorter last chunk of 4
    z = latents(4)
    # under autograd the caches are fresh copies per chunk; without, they are overwritten in place
    with torch.set_grad_enabled(grad):
        mean_c, logvar_c = vae.encode(x, chunked=True)
        mean_w, logvar_w = vae.encode(x, chunked=False)
        x_c, x_w = vae.decode(z, chunked=True), vae.decode(z, chunked=False)
    torch.testing.assert_close(mean_c, mean_w, atol=1e-5, rtol=0)
    torch.testing.assert_close(logvar_c, logvar_w, atol=1e-5, rtol=0)
    torch.testing.assert_close(x_c, x_w, atol=1e-5, rtol=0)


@torch.no_grad()
def test_tiled_decode_matches_away_from_seams(vae: VideoVAE) -> None:
    # 40x40 latents in 24-tiles overlapping by 8: tiles start at 0 and 16 on each axis. The tiny
    # decoder sees about 10 latent pixels around a point, so latent [0, 12) and [28, 40) on both axes
    # lie wholly inside one tile and must match exactly; the seams are blended.
    z = latents(1, 40, 40)
    full = vae.decode(z)
    tiled = vae.decode(z, tile=24, overlap=8)
    assert tiled.shape == full.shape
    for a, b in [(0, 96), (224, 320)]:
        for c, d in [(0, 96), (224, 320)]:
            torch.testing.assert_close(tiled[..., a:b, c:d], full[..., a:b, c:d], atol=1e-5, rtol=0)
    err_blend = (tiled - full).abs().mean()
    err_hard = (vae.decode(z, tile=20, overlap=0) - full).abs().mean()  # abutting tiles, no blending
    assert err_blend < 0.1 * full.std()
    assert err_blend < err_hard


@torch.no_grad()
def test_decode_latents_tiles_large_frames(vae: VideoVAE, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vae_module, "AUTO_TILE_ABOVE", 8)  # shrink the threshold to keep the test small
    monkeypatch.setattr(vae_module, "AUTO_TILE", 8)
    monkeypatch.setattr(vae_module, "AUTO_OVERLAP", 2)
    small, large = latents(1, 8, 8), latents(1, 12, 12)
    torch.testing.assert_close(vae.decode_latents(small), vae.decode(small), atol=0, rtol=0)
    tiled = vae.decode_latents(large)
    torch.testing.assert_close(tiled, vae.decode(large, tile=8, overlap=2), atol=0, rtol=0)
    assert not torch.allclose(tiled, vae.decode(large), atol=1e-4)


@torch.no_grad()
def test_normalised_latents_round_trip() -> None:
    torch.manual_seed(0)
    vae = VideoVAE(CFG).eval()
    assert {"latent_mean", "latent_std"} <= set(vae.state_dict())
    vae.latent_mean.copy_(torch.randn(CFG.z_channels))
    vae.latent_std.copy_(torch.rand(CFG.z_channels) + 0.5)
    x = video(5)
    mean, _ = vae.encode(x)
    z = vae.encode_latents(x)
    expected = (mean - vae.latent_mean.view(1, -1, 1, 1, 1)) / vae.latent_std.view(1, -1, 1, 1, 1)
    torch.testing.assert_close(z, expected)
    torch.testing.assert_close(vae.decode_latents(z), vae.decode(mean), atol=1e-5, rtol=1e-5)
    g = torch.Generator().manual_seed(3)
    z_s = vae.encode_latents(x, sample=True, generator=g)
    assert not torch.allclose(z_s, z)
    assert torch.equal(z_s, vae.encode_latents(x, sample=True, generator=torch.Generator().manual_seed(3)))


@pytest.mark.parametrize(
    "kernel, stride",
    [((1, 3, 3), (1, 1, 1)), ((1, 3, 3), (1, 2, 2)), ((3, 3, 3), (1, 1, 1)), ((3, 1, 1), (2, 1, 1))],
)
def test_frame_conv_2d_form_is_the_3d_conv(kernel: tuple, stride: tuple) -> None:
    """The 2D form over frames (what CUDA runs) computes the Conv3d, values and gradients: one frame deep,
    and three deep (the causal conv's kernel, and the temporal downsampler's with stride 2 in time)."""
    torch.manual_seed(0)
    pad = (0, kernel[1] // 2, kernel[2] // 2)
    conv = torch.nn.Conv3d(5, 7, kernel, stride=stride, padding=pad).double()
    x = torch.randn(2, 5, 7, 9, 10, dtype=torch.float64, requires_grad=True)
    outs = [vae_module.frame_conv(conv, x, as_2d) for as_2d in (False, True)]
    grads = [torch.autograd.grad(o.square().sum(), [x, conv.weight, conv.bias]) for o in outs]
    torch.testing.assert_close(outs[1], outs[0], atol=1e-12, rtol=0)
    assert outs[1].is_contiguous()
    last = vae_module.frame_conv(conv, x.detach().contiguous(memory_format=torch.channels_last_3d), True)
    assert last.is_contiguous(memory_format=torch.channels_last_3d)  # the input's layout is kept
    torch.testing.assert_close(last, outs[0].detach(), atol=1e-12, rtol=0)
    for a, b in zip(grads[1], grads[0], strict=True):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


def test_whole_vae_same_with_2d_frame_convs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole VAE's round trip is the same function with every conv that `frame_conv` serves in its
    2D form over frames."""
    torch.manual_seed(0)
    model = VideoVAE(CFG).double().eval()
    x = video(5).double()
    want = model.decode(model.encode(x)[0])
    plain, calls = vae_module.frame_conv, []
    monkeypatch.setattr(
        vae_module, "frame_conv", lambda conv, v, as_2d: calls.append(conv) or plain(conv, v, True)
    )
    torch.testing.assert_close(model.decode(model.encode(x)[0]), want, atol=1e-10, rtol=0)
    assert {c.kernel_size for c in calls} >= {(1, 3, 3), (3, 3, 3)}  # the causal convs took the 2D form too


def test_kl_loss() -> None:
    zeros = torch.zeros(2, 4, 3, 2, 2)
    assert kl_loss(zeros, zeros).item() == 0.0
    assert kl_loss(zeros + 0.5, zeros).item() == pytest.approx(0.125)  # mean^2 / 2
    assert kl_loss(zeros, zeros + 1.0).item() > 0
    assert kl_loss(zeros, zeros - 1.0).item() > 0


def test_it_learns() -> None:
    torch.manual_seed(0)
    vae = VideoVAE(CFG)
    # a smooth moving pattern: learnable in a few steps
    t, yy, xx = torch.meshgrid(torch.arange(5.0), torch.arange(16.0), torch.arange(16.0), indexing="ij")
    x = torch.stack([torch.sin((xx + 2 * t) / 3), torch.cos(yy / 4), torch.sin((xx + yy) / 5)])[None] * 0.8
    opt = torch.optim.Adam(vae.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(0)

    def recon_error() -> float:
        with torch.no_grad():
            return (vae.decode(vae.encode(x)[0]) - x).pow(2).mean().item()

    before = recon_error()
    for _ in range(8):
        recon, mean, logvar = vae(x, generator=g)
        loss = (recon - x).pow(2).mean() + 1e-4 * kl_loss(mean, logvar)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert recon_error() < 0.5 * before


@pytest.mark.parametrize(
    ("shape", "match"),
    [
        ((1, 3, 6, 16, 16), r"1 \+ 4k"),
        ((1, 3, 5, 20, 16), "multiples of 8"),
        ((1, 4, 5, 16, 16), r"\(B, 3, T, H, W\)"),
        ((3, 5, 16, 16), r"\(B, 3, T, H, W\)"),
    ],
)
def test_bad_video_shapes(vae: VideoVAE, shape: tuple[int, ...], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        vae.encode(torch.zeros(shape))


def test_bad_latents_and_tiles(vae: VideoVAE) -> None:
    with pytest.raises(ValueError, match=r"\(B, 4, T_z >= 1, h, w\)"):
        vae.decode(torch.zeros(1, 5, 2, 2, 2))
    with pytest.raises(ValueError, match="tile > overlap"):
        vae.decode(latents(1), tile=4, overlap=4)
    with pytest.raises(ValueError, match="chunk_frames"):
        VideoVAE(dataclasses.replace(CFG, chunk_frames=6))
