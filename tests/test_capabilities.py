"""Conditioned generation: sizes, lengths, and given frames held exactly at the latent level."""

import inspect
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tessera import capabilities, pipeline, sampling
from tessera.video import read_video, write_video

FAST = {"steps": 2, "guidance": 2.0, "seed": 0}


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return pipeline.load(tiny_model_dir, "cpu")


def clip(frames: int, height: int = 32, width: int = 32, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (frames, height, width, 3), generator=gen, dtype=torch.uint8)


def test_image_is_one_frame_of_the_requested_size(model):
    img = pipeline.image(model, "a red cube", width=48, height=32, **FAST)
    assert img.shape == (32, 48, 3) and img.dtype == torch.uint8


def test_animate_holds_the_image_latent_exactly(model):
    still = clip(1)[0]
    frames, z = pipeline.animate(model, still, "a red cube", frames=9, return_latents=True, **FAST)
    assert frames.shape == (9, 32, 32, 3)
    assert torch.equal(z[:, :, 0], pipeline.encode(model, still[None])[:, :, 0])  # encoded alone


def test_extend_forward_holds_the_reencoded_tail(model):
    source = clip(9)
    joined, z = pipeline.extend(
        model, source, "x", frames=9, direction="forward", overlap=5, return_latents=True, **FAST
    )
    assert joined.shape == (9 + 9 - 5, 32, 32, 3)
    # The source comes back unchanged up to its first shared frame; the shared five fade into the new
    # clip's rendering of them, which continues after them.
    new = pipeline.decode(model, z)
    assert torch.equal(joined[:5], source[:5]) and torch.equal(joined[8:], new[4:])
    assert torch.equal(joined[4:9], pipeline.crossfade(source[4:], new[:5]))
    assert torch.equal(z[:, :, :2], pipeline.encode(model, source[-5:])[:, :, :2])
    cut = pipeline.extend(model, source, "x", frames=9, direction="forward", overlap=5, blend=False, **FAST)
    assert torch.equal(cut[:9], source) and torch.equal(cut[9:], joined[9:])  # blend=False: all unchanged


def test_extend_backward_returns_new_frames_before_the_source(model):
    source = clip(9)
    joined, z = pipeline.extend(
        model, source, "x", frames=9, direction="backward", overlap=4, return_latents=True, **FAST
    )
    assert joined.shape == (9 - 4 + 9, 32, 32, 3) and z.shape[2] == 3
    new = pipeline.decode(model, z)
    assert torch.equal(joined[-6:], source[3:]) and torch.equal(joined[:5], new[:5])
    assert torch.equal(joined[5:9], pipeline.crossfade(new[5:], source[:4]))
    cut = pipeline.extend(model, source, "x", frames=9, direction="backward", overlap=4, blend=False, **FAST)
    assert torch.equal(cut[-9:], source)


def test_connect_joins_a_bridge_b(model):
    a, b = clip(5, seed=1), clip(5, seed=2)
    joined, z = pipeline.connect(model, a, b, "x", frames=9, return_latents=True, **FAST)
    assert joined.shape == (5 + 7 + 5, 32, 32, 3)
    assert torch.equal(joined[:5], a) and torch.equal(joined[-5:], b)
    assert torch.equal(z[:, :, 0], pipeline.encode(model, a[-1:])[:, :, 0])


def test_connect_with_motion_holds_a_tail_clean(model):
    a, b = clip(9, seed=1), clip(9, seed=2)
    joined, z = pipeline.connect(model, a, b, "x", frames=17, return_latents=True, **FAST)
    assert joined.shape == (9 + 17 - 5 - 4 + 9, 32, 32, 3)
    bridge = pipeline.decode(model, z)  # the shared frames fade between the clips and the bridge
    assert torch.equal(joined[:5], a[:5]) and torch.equal(joined[-6:], b[3:])
    assert torch.equal(joined[4:9], pipeline.crossfade(a[4:], bridge[:5]))
    assert torch.equal(joined[-9:-5], pipeline.crossfade(bridge[-4:], b[:4]))
    cut = pipeline.connect(model, a, b, "x", frames=17, blend=False, **FAST)
    assert torch.equal(cut[:9], a) and torch.equal(cut[-9:], b)
    # A's last 5 frames are the bridge's first two latent frames, held clean (exact by causality)
    torch.testing.assert_close(z[:, :, :2], pipeline.encode(model, a[-5:]), rtol=0, atol=1e-5)


def test_crossfade_runs_from_one_rendering_to_the_other():
    a = torch.zeros(5, 2, 2, 3, dtype=torch.uint8)
    b = torch.full((5, 2, 2, 3), 200, dtype=torch.uint8)
    f = pipeline.crossfade(a, b)
    assert f.dtype == torch.uint8 and torch.equal(f[0], a[0]) and torch.equal(f[-1], b[-1])
    assert f[:, 0, 0, 0].tolist() == [0, 50, 100, 150, 200]  # linear in the frame index
    assert torch.equal(pipeline.crossfade(a[:1], b[:1]), a[:1])  # one frame: the first rendering's


def test_loop_gives_its_frame_at_both_ends(model, monkeypatch):
    """The trained `loop` pattern: the loop frame given first (its latent held clean) and last."""
    from tessera.conditioning import given_latents, pixel_mask_for

    seen = {}
    real = pipeline.conditioned

    def spy(m, prompt, frames_in, mask, *args, **kwargs):
        seen.update(clip=frames_in, mask=mask)
        return real(m, prompt, frames_in, mask, *args, **kwargs)

    monkeypatch.setattr(capabilities, "conditioned", spy)
    source = clip(5, seed=3)
    out, z = pipeline.loop(model, "x", 9, source, 32, 32, return_latents=True, **FAST)
    assert out.shape == (9, 32, 32, 3)
    assert torch.equal(seen["mask"], pixel_mask_for("loop", 9))
    assert given_latents(seen["mask"]).tolist() == [True, False, False]  # only latent 0 held clean
    assert torch.equal(seen["clip"][:, -1], seen["clip"][:, 0])  # the same frame at the far end
    torch.testing.assert_close(z[:, :, :1], pipeline.encode(model, source[:1]), rtol=0, atol=1e-5)
    # What is left of the gap is faded out over the last frames (4 of 9): the last frame is the first.
    decoded = pipeline.decode(model, z)
    assert pipeline.loop_fade(9) == 4 and [pipeline.loop_fade(n) for n in (5, 17, 33)] == [2, 8, 8]
    assert torch.equal(out, pipeline.close_loop(decoded, 4)) and torch.equal(out[-1], out[0])
    as_decoded = pipeline.loop(model, "x", 9, source, 32, 32, fade=0, **FAST)
    assert torch.equal(as_decoded, decoded)
    short = pipeline.loop(model, "x", 5, source, 32, 32, **FAST)  # fades 2 frames
    assert torch.equal(short[-1], short[0]) and not torch.equal(short[-3], short[0])
    with pytest.raises(ValueError, match="--fade must be between 0 and 7"):
        pipeline.loop(model, "x", 9, source, 32, 32, fade=8, **FAST)


def test_close_loop_fades_the_last_frames_into_the_first():
    x = torch.zeros(6, 2, 2, 3, dtype=torch.uint8)
    x[0], x[1:] = 200, 40
    y = pipeline.close_loop(x, 4)
    assert torch.equal(y[:2], x[:2]) and torch.equal(y[-1], x[0])  # only the last 4 frames change
    assert y[:, 0, 0, 0].tolist() == [200, 40, 80, 120, 160, 200]  # linear in the frame index
    assert torch.equal(pipeline.close_loop(x, 0), x)


def test_edit_at_strength_zero_returns_the_source_latents(model):
    source = clip(5)
    _, z = pipeline.edit(model, source, "x", strength=0.0, return_latents=True, **FAST)
    assert torch.equal(z, pipeline.encode(model, source))
    out, z1 = pipeline.edit(model, source, "x", strength=0.5, return_latents=True, **FAST)
    assert out.shape == source.shape and not torch.equal(z1, z)


def test_long_goes_past_the_window(model):
    out = pipeline.long(model, "x", frames=17, window=9, height=32, width=32, **FAST)
    assert out.shape == (17, 32, 32, 3)
    first = pipeline.generate(model, "x", 9, 32, 32, **FAST)  # the first window; 5 frames overlap
    cut = pipeline.long(model, "x", frames=17, window=9, height=32, width=32, blend=False, **FAST)
    assert torch.equal(cut[:9], first)  # unblended: the first window comes back whole
    assert torch.equal(out[:5], first[:5]) and not torch.equal(out[5:9], first[5:9])  # blended after
    # Only the shared frames differ (5..8 and 9..12): later windows are conditioned on the unblended frames.
    assert torch.equal(out[13:], cut[13:]) and not torch.equal(out[9:13], cut[9:13])


def test_sizes_fit_only_at_the_same_aspect_ratio(model):
    assert pipeline.fit(clip(1, 64, 64), 32, 32).shape == (1, 32, 32, 3)
    with pytest.raises(ValueError, match="64x32.*32x32"):
        pipeline.animate(model, clip(1, 32, 64)[0], "x", frames=5, height=32, width=32, **FAST)


def test_frame_counts_not_1_plus_4k_are_refused_with_neighbours(model):
    with pytest.raises(ValueError, match="try 5 or 9"):
        pipeline.animate(model, clip(1)[0], "x", frames=7, **FAST)


def test_cli_extend_and_image(tiny_model_dir, tmp_path):
    src = write_video(tmp_path / "src.gif", clip(5).numpy(), fps=8)
    common = ["--model", str(tiny_model_dir), "--steps", "2", "--no-expand"]
    run = [sys.executable, "-m", "tessera.cli"]
    r = subprocess.run(
        [*run, "extend", str(src), "x", "--forward", "--frames", "9", "-o", str(tmp_path / "e.gif"), *common],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert read_video(tmp_path / "e.gif").shape[0] == 5 + 9 - 5
    sampling = ["--sampler", "heun", "--guidance-interval", "0.2,0.8"]  # every command takes generate's
    r = subprocess.run(
        [*run, "extend", str(src), "x", "--frames", "9", "-o", str(tmp_path / "h.gif"), *common, *sampling],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    heun, euler = read_video(tmp_path / "h.gif"), read_video(tmp_path / "e.gif")
    assert heun.shape == euler.shape and not torch.equal(heun, euler)
    r = subprocess.run(
        [*run, "edit", str(src), "x", "--guidance-interval", "0.8", "-o", str(tmp_path / "x.gif"), *common],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode != 0 and "--guidance-interval must look like LO,HI" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "x.gif").exists()
    r = subprocess.run(
        [*run, "image", "x", "--size", "48x32", "-o", str(tmp_path / "i.png"), *common],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert read_video(tmp_path / "i.png").shape == (1, 32, 48, 3)
    r = subprocess.run(
        [*run, "loop", "x", "--frames", "9", "--size", "32x32", "--fade", "8", "-o", str(tmp_path / "l.gif")]
        + common,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode != 0 and "--fade must be between 0 and 7" in r.stderr and "Traceback" not in r.stderr


def test_each_capability_checks_its_request_once_and_before_any_work(model, monkeypatch):
    """The size, length and memory of a request are checked once, where it enters (windows and stills
    sampled inside a capability are not checked again), and a bad one is refused before any sampling."""
    calls, samples = [], []
    check, sample = sampling.check_request, sampling.sample_latents
    monkeypatch.setattr(sampling, "check_request", lambda *a: (calls.append(a[1:4]), check(*a))[1])
    monkeypatch.setattr(
        capabilities, "sample_latents", lambda *a, **k: (samples.append(1), sample(*a, **k))[1]
    )
    v, kw = clip(9), {"steps": 1, "seed": 0}
    runs = {  # a request with a good length, and with a bad one (6: not 1 + 4k)
        "animate": lambda n: pipeline.animate(model, v[0], "x", n, **kw),
        "extend": lambda n: pipeline.extend(model, v, "x", n, "backward", **kw),
        "connect": lambda n: pipeline.connect(model, v, v, "x", n, **kw),
        "loop": lambda n: pipeline.loop(model, "x", n, None, 32, 32, **kw),
        "edit": lambda n: pipeline.edit(model, v[:n], "x", 0.5, **kw),
        "long": lambda n: pipeline.long(model, "x", 2 * n + 3, 9, None, 32, 32, **kw),  # 13: 2 windows
    }
    for name, run in runs.items():
        calls.clear()
        run(5)
        assert len(calls) == 1, (name, calls)
        calls.clear(), samples.clear()
        with pytest.raises(pipeline.RequestError, match="--frames|the video has"):
            run(6)
        assert len(calls) <= 1 and samples == [], name


def test_backward_extend_conditions_through_cond_as_training_builds_it(model, monkeypatch):
    from tessera.conditioning import build_cond, pixel_mask_for
    from tessera.video import to_tensor

    seen = {}
    real = pipeline.sample_latents

    def spy(*args, **kwargs):
        seen.update(inspect.signature(real).bind(*args, **kwargs).arguments)  # by name, however passed
        return real(*args, **kwargs)

    monkeypatch.setattr(sampling, "sample_latents", spy)
    source = clip(9)
    pipeline.extend(model, source, "x", frames=9, direction="backward", overlap=4, **FAST)
    x0_given, given, cond = seen.get("x0_given"), seen.get("given"), seen["cond"]
    assert x0_given is None and given is None  # a tail's latents depend on unknown frames: none held
    video = torch.zeros(3, 9, 32, 32)
    video[:, 5:] = to_tensor(source[:4])
    assert torch.equal(cond[0], build_cond(model.vae, video, pixel_mask_for("tail", 9, 1)))


def test_gallery_script_writes_one_gif_per_capability(tiny_model_dir, tmp_path):
    script = Path(__file__).resolve().parent.parent / "scripts" / "gallery.py"
    args = [
        "--model",
        str(tiny_model_dir),
        "--out",
        str(tmp_path),
        "--steps",
        "1",
        "--size",
        "32",
        "--frames",
        "17",
    ]
    r = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    gifs = sorted(p.stem for p in tmp_path.glob("*.gif"))
    assert len(gifs) == 10 and {"text-to-video", "image-to-video", "connect", "loop", "edit", "long"} <= set(
        gifs
    )
    table = (tmp_path / "gallery.md").read_text()
    assert all(f"![{name}]({name}.gif)" in table for name in gifs)
    assert read_video(tmp_path / "long.gif").shape[0] == 49  # past the 17-frame window


def test_every_capability_gives_the_same_bytes_on_one_and_two_threads(model):
    """MKL's matrix products round by thread count unless its strict reproducible mode is on (set
    when tessera is imported): each capability, sampled on 1 and then 2 threads, matches bytewise."""
    import os

    assert os.environ["MKL_CBWR"] == "AUTO,STRICT"
    kw = {"steps": 2, "seed": 3}
    runs = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        v = pipeline.generate(model, "a red cube slides left", 9, 32, 48, **kw)
        runs.append([
            v,
            pipeline.animate(model, v[0], "x", 9, **kw),
            pipeline.extend(model, v, "x", 9, **kw),
            pipeline.connect(model, v, v, "x", 9, **kw),
            pipeline.loop(model, "x", 9, v, 32, 48, **kw),
            pipeline.edit(model, v, "a blue cube", 0.6, **kw),
        ])  # fmt: skip
    torch.set_num_threads(1)
    assert all(torch.equal(a, b) for a, b in zip(*runs, strict=True))
