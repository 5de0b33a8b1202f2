"""Trainers: exact resume, distributed equivalence, packed = bucketed, loss falls, run-folder errors."""

import dataclasses
import importlib.util
import json
import math
import os
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tessera import checkpoint as ckpt
from tessera import seeding
from tessera.checkpoint import build_model, load_model, load_state, load_tensors, save_model
from tessera.conditioning import build_cond, for_task, given_latents, mask_channels, pixel_mask_for
from tessera.config import get_preset
from tessera.data.buckets import step_shape
from tessera.data.source import WorldSource
from tessera.errors import RequestError
from tessera.flow.loss import flow_loss
from tessera.models.text import Tokenizer
from tessera.train import state as st
from tessera.train.commands import train_command
from tessera.train.config import ConfigError, make_config, parse_shapes, read_config_file
from tessera.train.distributed import launch_local
from tessera.train.dit import (
    DiTStep,
    LatentCache,
    encode_batch,
    make_batch,
    object_cells,
    train_dit,
)
from tessera.train.logger import Logger, read_metrics
from tessera.train.run import RunError, resume_config
from tessera.train.tasks import draw_task
from tessera.train.vae import clip_losses, contrast, load_batch, object_region, reconstruction_psnr, train_vae

TRAINERS = {"dit": train_dit, "vae": train_vae}


pytestmark = pytest.mark.usefixtures("one_thread")


class Squares:
    """A fast deterministic source: a coloured square sliding over grey, at a few shapes.

    `stop_at`: loading that sample index sends this process SIGTERM, as a scheduler would.
    """

    size = None

    def __init__(self, shapes=((9, 32, 32), (1, 32, 32), (5, 32, 48)), stop_at: int | None = None):
        self.shapes, self.stop_at = list(shapes), stop_at

    def sample(self, i: int, shape: tuple[int, int, int] | None = None) -> dict:
        if i == self.stop_at:
            os.kill(os.getpid(), signal.SIGTERM)
        g = torch.Generator().manual_seed(i)
        t, h, w = shape or self.shapes[i % len(self.shapes)]
        video = torch.full((3, t, h, w), -0.5)
        colour = torch.rand(3, 1, 1, generator=g) * 2 - 1
        x = int(torch.randint(0, w - 8, (1,), generator=g))
        for f in range(t):
            video[:, f, 8:16, (x + f) % (w - 8) :][:, :, :8] = colour
        names = ["red", "green", "blue"]
        return {"video": video, "caption": f"a {names[i % 3]} square", "short_caption": "square", "key": i}


def tiny_config(kind: str, **kw):
    base = dict(preset="tiny", steps=10, batch_size=2, log_every=1, ckpt_every=0, sample_every=0, warmup=3)
    base |= dict(lr=1e-3, shapes="9x32x32")
    if kind == "vae":
        base |= dict(adv_weight=0.1, adv_start=3, stats_clips=2)
    return make_config(kind, **(base | kw))


def state_tensors(run: Path) -> dict[str, torch.Tensor]:
    return load_state(run / "state")[0]


def model_tensors(run: Path) -> dict[str, torch.Tensor]:
    return {f"{c}.{k}": v for c in ("vae", "text", "dit") for k, v in load_tensors(run / "model", c).items()}


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    diff = [k for k in a if not torch.equal(a[k], b[k])]
    assert not diff, f"differ: {diff[:5]}"


@pytest.fixture(scope="module", params=["dit", "vae"])
def resumed(request, tmp_path_factory, tiny_model_dir) -> tuple[str, Path, Path, list, list]:
    """One run of 10 steps straight, one stopped by SIGTERM after 5 steps and resumed for 5 more."""
    kind, tmp = request.param, tmp_path_factory.mktemp(f"resume-{request.param}")
    cfg = tiny_config(kind, sample_every=10, init=str(tiny_model_dir))  # --init: no tokenizer training
    if kind == "dit":  # one shape per step, drawn per step: resumes exactly too
        cfg = tiny_config(
            kind, sample_every=10, init=str(tiny_model_dir), batch_shapes="one", shapes="9x32x32:1,5x32x48:1"
        )
    train = TRAINERS[kind]
    straight = train(cfg, tmp / "a", source=Squares())["losses"]
    first = train(cfg, tmp / "b", source=Squares(stop_at=4 * cfg.batch_size))  # stops during step 5
    assert first["step"] == 5
    second = train(resume_config(tmp / "b", kind), tmp / "b", resume=True, source=Squares())
    assert second["step"] == 10
    return kind, tmp / "a", tmp / "b", straight, first["losses"] + second["losses"]


def test_resume_is_bit_identical(resumed):
    kind, a, b, straight, resumed_losses = resumed
    assert resumed_losses == straight  # exact float equality, step by step
    assert_same(state_tensors(a), state_tensors(b))  # raw weights, EMA, optimizer, RNG
    assert_same(model_tensors(a), model_tensors(b))  # the shipped EMA weights
    assert [r["step"] for r in read_metrics(b)] == list(range(1, 11))  # no repeated or missing rows
    assert [r["loss"] for r in read_metrics(b)] == straight
    meta = load_state(b / "state")[1]
    assert meta["step"] == 10 and meta["data_position"] == 20
    assert (a / "samples" / "step0000010.png").exists()  # samples written at their interval
    if kind == "dit" and importlib.util.find_spec("av") is not None:  # the VAE sample here is an image
        assert (a / "samples" / "step0000010.mp4").stat().st_size > 0
    if kind == "vae":
        vae = load_model(a / "model").vae  # latent statistics measured and stored with the weights
        assert not torch.equal(vae.latent_mean, torch.zeros_like(vae.latent_mean))
        assert (vae.latent_std > 0).all() and not torch.equal(vae.latent_std, torch.ones_like(vae.latent_std))


def tb_scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """(step, value) of every scalar under `folder`, as TensorBoard itself reads the event files."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder)).Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_tensorboard_events_are_readable(resumed):
    _, a, b, *_ = resumed
    for run in (a, b):  # straight, and interrupted then resumed (two event files)
        got, rows = tb_scalars(run / "tb"), read_metrics(run)
        assert [step for step, _ in got["loss"]] == list(range(1, 11))  # no step twice, none missing
        assert [v for _, v in got["loss"]] == pytest.approx([r["loss"] for r in rows], rel=1e-6)
        assert [v for _, v in got["steps_per_s"]] == pytest.approx([r["steps_per_s"] for r in rows], rel=1e-6)


def test_run_folder_errors_are_clear(resumed, tmp_path, tiny_model_dir):
    kind, a, *_ = resumed
    other = "vae" if kind == "dit" else "dit"
    with pytest.raises(RunError, match="not found"):
        resume_config(tmp_path / "missing", kind)
    with pytest.raises(RunError, match=f"not a '{other}' training run"):
        resume_config(a, other)
    with pytest.raises(RunError, match="preset 'tiny', not 's'"):
        train_command(kind, resume=a, preset="s")
    with pytest.raises(RunError, match="cannot change"):
        train_command(kind, resume=a, lr=0.5)
    with pytest.raises(RunError, match="already holds a training run"):
        TRAINERS[kind](tiny_config(kind, init=str(tiny_model_dir)), a, source=Squares())
    corrupt = tmp_path / "corrupt"
    shutil.copytree(a, corrupt)
    data = (corrupt / "state" / "state.safetensors").read_bytes()
    (corrupt / "state" / "state.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(RunError, match="unreadable"):
        TRAINERS[kind](resume_config(corrupt, kind), corrupt, resume=True, source=Squares())


def test_packed_and_bucketed_batches_give_the_same_loss_and_gradients():
    config = get_preset("tiny")
    tok = Tokenizer.train(["a red square", "a green square", "a blue square"] * 20, config.text.vocab_size)
    torch.manual_seed(0)
    model = build_model(config, tok)
    with torch.no_grad():  # move the zero-initialised (adaLN-zero) layers off zero
        for p in model.dit.parameters():
            if not p.any():
                p.normal_(0, 0.05)
    cfg = make_config("dit", preset="tiny", tasks="t2v:1,i2v:1,last:1,tail:1")
    src = Squares([(9, 32, 32), (1, 32, 32), (5, 32, 48), (9, 32, 32)])
    batch = make_batch(range(8), src, model, cfg, torch.device("cpu"), None)
    assert any(c is not None for c in batch.cond) and any(c is None for c in batch.cond)
    results = []
    for packed in (True, False):
        model.dit.zero_grad(), model.text.zero_grad()
        loss = DiTStep(model.dit, model.text, packed)(batch)
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in model.dit.parameters()]))
    (lp, gp), (lb, gb) = results
    assert torch.allclose(lp, lb, rtol=1e-5)
    assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-6) for a, b in zip(gp, gb, strict=True))


def test_tasks_hold_only_a_given_prefix_clean():
    assert given_latents(pixel_mask_for("i2v", 9)).tolist() == [True, False, False]
    assert given_latents(pixel_mask_for("extend", 17, 3)).tolist() == [True, True, True, False, False]
    for task in ("last", "tail", "t2v"):  # non-prefix givens reach the DiT only through cond
        assert not given_latents(pixel_mask_for(task, 9, 1)).any()
    m = mask_channels(pixel_mask_for("first_last", 9), 2, 2)  # (4, T_z, h, w)
    assert m[:, :, 0, 0].tolist() == [[1, 0, 0], [1, 0, 0], [1, 0, 0], [1, 0, 1]]
    g = torch.Generator().manual_seed(0)
    assert draw_task({"i2v": 1.0}, 1, g)[0] == "t2v"  # an image has nothing to condition on
    names = [draw_task({"t2v": 3.0, "last": 1.0}, 9, g)[0] for _ in range(400)]
    assert 0.18 < names.count("last") / 400 < 0.32
    with pytest.raises(ValueError, match="unknown conditioning task"):
        draw_task({"sideways": 1.0}, 9, g)


def test_connect_loop_and_random_tasks():
    # connect: a head (a prefix of whole latent frames) and a tail; at least one latent frame is free
    for k in range(1, 5):
        m = pixel_mask_for("connect", 17, k)  # T_z = 5
        head, tail = (k + 1) // 2, k // 2
        assert m[: 1 + 4 * (head - 1)].all() and m[-max(1, 4 * tail) :].all()
        assert int(m.sum()) == 1 + 4 * (head - 1) + max(1, 4 * tail) and not m.all()
        assert given_latents(m).sum() == head
    # loop: the clip the model trains on ends on the frame it starts with, played forth then back
    video = torch.arange(9.0)[None, :, None, None].expand(3, 9, 2, 2)
    looped = for_task("loop", video)
    assert looped[0, :, 0, 0].tolist() == [0, 1, 2, 3, 4, 3, 2, 1, 0]
    assert torch.equal(for_task("i2v", video), video)
    assert pixel_mask_for("loop", 9).tolist() == pixel_mask_for("first_last", 9).tolist()
    # random: some frames, never none or all, drawn from the generator (reproducible)
    g = torch.Generator().manual_seed(1)
    masks = [pixel_mask_for("random", 9, generator=g) for _ in range(200)]
    assert all(0 < int(m.sum()) < 9 for m in masks)
    assert 1.5 < sum(int(m.sum()) for m in masks) / 200 < 3.0  # about 9/4 frames given
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(pixel_mask_for("random", 33, generator=g1), pixel_mask_for("random", 33, generator=g2))


@pytest.mark.parametrize("voxels", [None, 9 * 32 * 32])  # None: the default cap; else one clip a call
def test_batched_encoding_matches_clip_by_clip(voxels, monkeypatch):
    if voxels:
        monkeypatch.setattr("tessera.train.kept.ENCODE_VOXELS", voxels)
    config = get_preset("tiny")
    vae = build_model(config, Tokenizer.train(["x"] * 5, 300)).vae.eval()
    videos = [
        torch.rand(3, 9, 32, 32) * 2 - 1,
        torch.rand(3, 1, 32, 32) * 2 - 1,
        torch.rand(3, 9, 32, 32) * 2 - 1,
        torch.rand(3, 9, 32, 32) * 2 - 1,
    ]
    masks = [
        pixel_mask_for("last", 9),
        torch.zeros(1, dtype=torch.bool),
        pixel_mask_for("connect", 9, 2),
        pixel_mask_for("i2v", 9),
    ]
    x0s, conds = encode_batch(vae, videos, masks)
    for video, mask, x0, cond in zip(videos, masks, x0s, conds, strict=True):
        torch.testing.assert_close(x0, vae.encode_latents(video[None])[0], rtol=1e-4, atol=1e-5)
        if mask.any():
            torch.testing.assert_close(cond, build_cond(vae, video, mask), rtol=1e-4, atol=1e-5)
        else:
            assert cond is None


def test_one_shape_per_step(tiny_model_dir: Path):
    shapes = parse_shapes("1x32x32:1,9x32x32:2,5x32x48:1")
    drawn = [step_shape(shapes, 0, step) for step in range(400)]
    assert drawn == [step_shape(shapes, 0, step) for step in range(400)]  # a pure function of the step
    assert 0.4 < drawn.count((9, 32, 32)) / 400 < 0.6  # follows the weights
    model = load_model(tiny_model_dir)
    cfg = tiny_config("dit", shapes="1x32x32:1,9x32x32:2,5x32x48:1", batch_shapes="one")
    batch = make_batch(range(6), Squares(), model, cfg, torch.device("cpu"), None, (5, 32, 48))
    assert {tuple(x.shape[1:]) for x in batch.x0} == {(2, 4, 6)}  # every clip fitted to the step's shape
    # A finite world of 8 clips gives each shape its share by weight (1x32x32: 2, 9x32x32: 4, 5x32x48:
    # 2) and keeps each clip at one shape: memory stays at 8 clips however the steps draw shapes.
    world = WorldSource(shapes, clips=8)
    a, b = world.samples([0, 1], (1, 32, 32)), world.samples([0, 1], (9, 32, 32))
    assert a[0]["video"].shape == (3, 1, 32, 32) and b[0]["video"].shape == (3, 9, 32, 32)
    assert [s["key"] for s in a + b] == [0, 1, 2, 3]
    assert a[0]["caption"] == world.samples([2], (1, 32, 32))[0]["caption"]  # index 2 repeats clip 0
    for shape, _ in shapes:
        world.samples(list(range(10)), shape)
    assert len(world._kept) == 8


def test_cached_latents_give_the_batch_of_uncached_ones(tiny_model_dir: Path):
    model = load_model(tiny_model_dir)
    cfg = tiny_config("dit", shapes="9x32x32", tasks="loop:1,last:1,t2v:1", world_clips=4)
    world = WorldSource(parse_shapes(cfg.shapes), clips=4)
    cpu = torch.device("cpu")
    plain = make_batch(range(6), world, model, cfg, cpu, None)
    cache = LatentCache()
    make_batch(range(6), world, model, cfg, cpu, cache)  # fills the cache
    cached = make_batch(range(6), world, model, cfg, cpu, cache)
    for x0, y0, c, d in zip(plain.x0, cached.x0, plain.cond, cached.cond, strict=True):
        torch.testing.assert_close(x0, y0, rtol=1e-4, atol=1e-5)  # loop clips: the re-timed clip's latents
        assert (c is None) == (d is None)
        if c is not None:
            torch.testing.assert_close(c, d, rtol=1e-4, atol=1e-5)


def test_cond_is_built_from_the_masked_video():
    config = get_preset("tiny")
    vae = build_model(config, Tokenizer.train(["x"] * 5, 300)).vae.eval()
    video = torch.rand(3, 9, 32, 32) * 2 - 1
    mask = pixel_mask_for("last", 9)
    cond = build_cond(vae, video, mask)
    assert cond.shape == (config.dit.cond_channels, 3, 4, 4)
    other = video.clone()
    other[:, :-1] = torch.rand(3, 8, 32, 32)  # change only frames that are not given
    assert torch.equal(build_cond(vae, other, mask), cond)


def test_config_file_then_flags_and_errors(tmp_path: Path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"lr": 3e-4, "steps": 7, "shapes": "1x32x32"}))
    cfg = make_config("dit", path, steps=9, preset="tiny")
    assert (cfg.lr, cfg.steps, cfg.shapes, cfg.preset) == (3e-4, 9, "1x32x32", "tiny")
    assert read_config_file(path)["steps"] == 7
    with pytest.raises(ConfigError, match="unknown training config keys"):
        make_config("dit", learning_rate=1.0)
    with pytest.raises(ConfigError, match="1 \\+ 4k"):
        make_config("vae", shapes="8x32x32")
    with pytest.raises(ConfigError, match="must be int"):
        make_config("vae", steps="ten")
    with pytest.raises(ValueError, match="unknown conditioning tasks"):
        make_config("dit", tasks="t2v:1,fly:2")
    with pytest.raises(ConfigError, match="checkpoint_mode.*full or selective"):
        make_config("dit", checkpoint_mode="attention")
    with pytest.raises(ConfigError, match="object_weight.*only the world engine gives object masks"):
        make_config("vae", data=str(tmp_path), object_weight=20.0)
    with pytest.raises(ConfigError, match="--out"):
        train_command("dit")


def test_state_helpers_round_trip():
    tensors: dict = {}
    opt = {"state": {0: {"step": torch.tensor(3.0), "m": torch.ones(2)}}, "groups": [{"betas": (0.9, 0.99)}]}
    back = ckpt.unflatten(json.loads(json.dumps(ckpt.flatten(opt, "o", tensors))), tensors)
    assert back["groups"][0]["betas"] == (0.9, 0.99) and torch.equal(back["state"][0]["m"], torch.ones(2))
    rng = st.rng_tensors()
    draws = (torch.rand(3), np.random.rand(3), __import__("random").random())
    st.set_rng(rng)
    again = (torch.rand(3), np.random.rand(3), __import__("random").random())
    assert torch.equal(draws[0], again[0]) and np.array_equal(draws[1], again[1]) and draws[2] == again[2]
    lrs = [ckpt.lr_at(s, 1.0, 2, 10, "cosine", 0.1) for s in range(10)]
    assert lrs[:2] == [0.5, 1.0] and lrs[2] == 1.0
    assert math.isclose(ckpt.lr_at(10, 1.0, 2, 10, "cosine", 0.1), 0.1)
    assert all(a >= b for a, b in zip(lrs[1:], lrs[2:], strict=False))
    assert seeding.seed_for(1, "x") == seeding.seed_for(1, "x") != seeding.seed_for(2, "x")


def test_resumed_logger_hides_the_steps_it_repeats(tmp_path: Path):
    """An interrupted run logged steps 1-4 but checkpointed at 2: the resumed run's steps 3-4 replace
    the old ones in TensorBoard's view as in metrics.jsonl."""
    with Logger(tmp_path, 0, 6, True, "a") as log:
        for step in range(1, 5):
            log.step(step, 1.0, {"loss": float(step)}, write=True)
    with Logger(tmp_path, 2, 6, True, "b") as log:
        for step in range(3, 7):
            log.step(step, 1.0, {"loss": 10.0 * step}, write=True)
    want = [(1, 1.0), (2, 2.0), (3, 30.0), (4, 40.0), (5, 50.0), (6, 60.0)]
    assert tb_scalars(tmp_path / "tb")["loss"] == want
    assert [(r["step"], r["loss"]) for r in read_metrics(tmp_path)] == want
    with Logger(tmp_path / "quiet", 0, 2, False, "c") as log:  # ranks other than 0 write nothing
        log.step(1, 1.0, {"loss": 1.0}, write=True)
    assert not (tmp_path / "quiet").exists()


# ---------------------------------------------------------------------------------------------
# Distributed (2 processes, gloo, loopback) and world data


@pytest.fixture(scope="module")
def clips_dir(tmp_path_factory) -> Path:
    """A small user data folder: GIF clips and PNG images with sidecar captions."""
    folder = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(0)
    for i in range(4):
        frames = [np.full((32, 32, 3), 60, np.uint8) for _ in range(9)]
        for f, a in enumerate(frames):
            a[8:16, 2 * f + 4 * i : 2 * f + 4 * i + 8] = rng.integers(0, 255, 3)
        imgs = [Image.fromarray(a) for a in frames]
        imgs[0].save(folder / f"clip{i}.gif", save_all=True, append_images=imgs[1:], duration=62, loop=0)
        (folder / f"clip{i}.txt").write_text(f"a square moving right, clip {i}")
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(folder / f"img{i}.png")
    return folder


def test_ddp_and_fsdp_match_one_process(clips_dir: Path, tmp_path: Path, tiny_model_dir: Path):
    cfg = make_config(
        "dit", preset="tiny", init=str(tiny_model_dir), data=str(clips_dir), steps=3, batch_size=4,
        shapes="9x32x32,1x32x32", log_every=1, ckpt_every=0, sample_every=0, warmup=1, schedule="constant",
        lr=1e-3,
    )  # fmt: skip
    one = train_dit(cfg, tmp_path / "one")["losses"]
    launch_local(train_dit, 2, dataclasses.replace(cfg, distributed="ddp"), tmp_path / "ddp")
    ddp = [r["loss"] for r in read_metrics(tmp_path / "ddp")]
    assert ddp == pytest.approx(one, rel=1e-5)
    ref = state_tensors(tmp_path / "one")
    for k, v in state_tensors(tmp_path / "ddp").items():
        if k.startswith(("raw.", "ema.")):
            assert torch.allclose(v, ref[k], atol=1e-4), (k, (v - ref[k]).abs().max())  # lr is 1e-3
    # FSDP2: one sharded step and a checkpoint, which one process loads and continues.
    launch_local(train_dit, 2, dataclasses.replace(cfg, distributed="fsdp", steps=1), tmp_path / "fsdp")
    load_model(tmp_path / "fsdp" / "model")  # a complete model folder
    rest = train_dit(
        resume_config(tmp_path / "fsdp", "dit", steps=3, distributed="none"), tmp_path / "fsdp", resume=True
    )["losses"]
    losses = [read_metrics(tmp_path / "fsdp")[0]["loss"], *rest]
    assert losses == pytest.approx(one, rel=1e-5)
    final = state_tensors(tmp_path / "fsdp")
    assert all(torch.allclose(final[k], v, atol=1e-4) for k, v in ref.items() if k.startswith("raw."))


def test_vae_loss_terms_are_fp32_under_bf16_autocast():
    """The H100 run did not learn: under bf16 autocast the SSIM blurs ran in bf16, where its variances
    (E[x^2] - E[x]^2) lose all precision; the SSIM gradient was large noise pointing the wrong way."""
    x = Squares(shapes=[(5, 32, 32)]).sample(0)["video"][None]  # flat regions, as in world frames
    noise = 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    mean, logvar = torch.zeros(1, 4, 2, 4, 4), torch.zeros(1, 4, 2, 4, 4)
    cfg = make_config("vae", preset="tiny")
    results = []
    for bf16 in (False, True):
        recon = (x + noise).requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            parts = clip_losses(x, recon, mean, logvar, cfg)
        (parts["l1"] + parts["ssim"]).sum().backward()
        results.append((parts, recon.grad.flatten()))
    (ref, g_ref), (low, g_low) = results
    for k in ref:
        assert low[k].dtype == torch.float32 and torch.allclose(low[k], ref[k], rtol=1e-5), k
    assert torch.nn.functional.cosine_similarity(g_ref, g_low, dim=0) > 0.999


@pytest.mark.parametrize("data_range", [2.0, 1.0])
def test_vae_ssim_matches_the_definition_in_float64(data_range: float):
    """The separable blur gives SSIM as defined: every valid 11x11 window weighted by the 2D Gaussian,
    in float64, with its gradient, for pixels in [-1, 1] (range 2) and [0, 1] (range 1, the benchmark's);
    images 1 and 2 are identical."""
    from tessera.train.vae import ssim

    gen = torch.Generator().manual_seed(0)
    low = 1 - data_range
    x = torch.rand(3, 3, 20, 17, generator=gen, dtype=torch.float64) * data_range + low
    y = (x + 0.15 * data_range * torch.randn(x.shape, generator=gen, dtype=torch.float64)).clamp(low, 1)
    y[1] = x[1]
    k = torch.exp(-((torch.arange(11, dtype=torch.float64) - 5) ** 2) / (2 * 1.5**2))
    w2 = (k[:, None] * k[None, :]) / k.sum() ** 2  # the 2D window

    def reference(a, b):
        win = lambda t: t.unfold(2, 11, 1).unfold(3, 11, 1)  # (N, C, H', W', 11, 11)
        e = lambda t: (t * w2).sum(dim=(-2, -1))
        ma, mb = e(win(a)), e(win(b))
        va, vb, cab = e(win(a * a)) - ma**2, e(win(b * b)) - mb**2, e(win(a * b)) - ma * mb
        c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
        s = ((2 * ma * mb + c1) * (2 * cab + c2)) / ((ma**2 + mb**2 + c1) * (va + vb + c2))
        return s.mean((1, 2, 3))

    ours = y.clone().float().requires_grad_(True)
    theirs = y.clone().requires_grad_(True)
    got, want = ssim(ours, x.float(), data_range=data_range), reference(theirs, x)
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-6)
    assert float(got[1].detach()) == pytest.approx(1.0, abs=1e-6) and float(got[0].detach()) < 0.9
    got.sum().backward()
    want.sum().backward()
    torch.testing.assert_close(ours.grad.double(), theirs.grad, rtol=1e-3, atol=1e-6)


def test_detail_weight_counts_a_small_object_by_contrast_not_area():
    """A 4x4 object on flat ground: blurring it away costs little plain L1 (it is 1/64 of the frame);
    with `detail_weight` its pixels weigh by their contrast, so losing it costs several times more,
    while an error spread evenly over the ground costs the same either way (mean weight 1)."""
    x = torch.full((1, 3, 1, 32, 32), -0.5)
    x[:, 0, :, 14:18, 14:18] = 0.9  # a red square
    lost = x.clone()
    lost[:, :, :, 14:18, 14:18] = -0.5  # the reconstruction without it
    mean, logvar = torch.zeros(1, 4, 1, 4, 4), torch.zeros(1, 4, 1, 4, 4)
    plain, weighted = (make_config("vae", preset="tiny", detail_weight=w) for w in (0.0, 10.0))
    assert contrast(x[:, :, :, :8, :8]).abs().max() == 0  # flat ground has no contrast
    l1 = {c.detail_weight: clip_losses(x, lost, mean, logvar, c)["l1"] for c in (plain, weighted)}
    assert l1[10.0] > 4 * l1[0.0]
    flat = torch.full_like(x, -0.5)
    shift = flat + 0.1
    flat_l1 = [clip_losses(flat, shift, mean, logvar, c)["l1"] for c in (plain, weighted)]
    torch.testing.assert_close(flat_l1[0], flat_l1[1])


def test_object_weight_counts_a_small_object_by_its_mask():
    """Contrast weighting also rewards the edges of a checkerboard; the world's object masks name the
    object itself. Losing a 4x4 object costs many times more with `object_weight`, its silhouette (the
    mask grown by 2 px) counts too, an even error costs the same (mean weight 1), and without masks
    (user data) the loss is the plain one."""
    x = torch.full((1, 3, 1, 32, 32), -0.5)
    x[:, :, :, ::4] = 0.5  # stripes: high contrast everywhere, like a checkerboard
    x[:, 0, :, 14:18, 14:18] = 0.9
    objects = torch.zeros(1, 1, 32, 32, dtype=torch.bool)
    objects[..., 14:18, 14:18] = True
    grown = object_region(objects)
    assert grown.shape == (1, 1, 1, 32, 32) and grown.sum() == 8 * 8 and grown[..., 12:20, 12:20].all()
    lost = x.clone()
    lost[:, :, :, 14:18, 14:18] = -0.5
    mean, logvar = torch.zeros(1, 4, 1, 4, 4), torch.zeros(1, 4, 1, 4, 4)
    plain, detail, weighted = (
        make_config("vae", preset="tiny", detail_weight=d, object_weight=o)
        for d, o in ((0, 0), (10, 0), (0, 20))
    )
    l1 = [clip_losses(x, lost, mean, logvar, c, objects)["l1"] for c in (plain, detail, weighted)]
    assert l1[2] > 8 * l1[0] and l1[2] > 3 * l1[1]  # the stripes took most of the contrast weight
    even = x + 0.1
    even_l1 = [clip_losses(x, even, mean, logvar, c, objects)["l1"] for c in (plain, weighted)]
    torch.testing.assert_close(even_l1[0], even_l1[1])
    torch.testing.assert_close(clip_losses(x, lost, mean, logvar, weighted)["l1"], l1[0])


def test_world_object_masks_reach_the_vae_batch_and_its_psnr():
    """With `objects`, world samples carry the renderer's object pixels (ids > 0) at the clip's shape;
    `load_batch` groups them with their clips, and `reconstruction_psnr` scores those pixels apart: a
    "VAE" that blurs loses small objects far more than it loses the ground."""
    shapes = parse_shapes("5x64x64,1x32x48")
    world = WorldSource(shapes, seed=3, objects=True)
    plain = WorldSource(shapes, seed=3)
    for i in range(4):
        a, b = world.sample(i), plain.sample(i)
        assert "objects" not in b and torch.equal(a["video"], b["video"])
        assert a["objects"].dtype == torch.bool and a["objects"].shape == a["video"].shape[1:]
    cfg = make_config("vae", preset="tiny", object_weight=20.0, shapes="5x64x64,1x32x48")
    groups, eps, objects = load_batch(range(6), world, cfg, torch.device("cpu"), 4)
    for x, e, m in zip(groups, eps, objects, strict=True):
        assert m is not None and m.shape == (x.shape[0], *x.shape[2:]) and m.any() and len(e) == len(x)
    assert load_batch(range(6), plain, cfg, torch.device("cpu"), 4)[2] == [None] * len(groups)

    class Blur(torch.nn.Module):
        def encode(self, x):
            return (x, None)

        def decode(self, z):
            f = z.transpose(1, 2).flatten(0, 1)
            f = torch.nn.functional.avg_pool2d(f, 7, stride=1, padding=3, count_include_pad=False)
            return f.view(z.shape[0], z.shape[2], *f.shape[1:]).transpose(1, 2)

    got = reconstruction_psnr(
        Blur(), WorldSource(parse_shapes("5x64x64"), objects=True), 4, torch.device("cpu")
    )
    assert got["object_psnr"] < got["psnr"] - 3, got
    assert reconstruction_psnr(Blur(), plain, 2, torch.device("cpu"))["object_psnr"] is None


def test_dit_object_weight_weighs_the_latent_cells_an_object_touches(tiny_model_dir: Path):
    """`object_weight` for the DiT: an object's mask (grown 2 px) marks the latent cells it touches (frame
    0 alone, then 4 frames, by 8x8 pixels); within each frame those cells weigh 1 + w, so an error on the
    object costs more than the same error on the ground, a frame still counts once, and an even error
    costs what it costs unweighted. Cached and uncached batches (a looped clip re-timed) carry the same
    weights, and only world data has masks."""
    objects = torch.zeros(9, 32, 32, dtype=torch.bool)
    objects[0, 0:2, 0:2] = True  # frame 0: its own latent frame
    objects[3, 10:14, 20:22] = True  # frame 3: latent frame 1 (frames 1-4); grown to rows 8-15, cols 18-23
    cells = object_cells(objects)
    assert cells.shape == (3, 4, 4)
    assert cells.nonzero().tolist() == [[0, 0, 0], [1, 1, 2]]

    x0, noise = torch.zeros(1, 4, 3, 4, 4), torch.zeros(1, 4, 3, 4, 4)
    keep = torch.ones(1, 3, dtype=torch.bool)
    weight = (1 + 9 * cells)[None]
    on_object, on_ground = torch.zeros(1, 4, 3, 4, 4), torch.zeros(1, 4, 3, 4, 4)
    on_object[:, :, 1, 1, 2], on_ground[:, :, 1, 3, 3] = 1.0, 1.0
    plain = [flow_loss(e, x0, noise, keep, reduction="sum") for e in (on_object, on_ground)]
    weighted = [flow_loss(e, x0, noise, keep, weight, "sum") for e in (on_object, on_ground)]
    torch.testing.assert_close(plain[0], plain[1])
    torch.testing.assert_close(weighted[0], 10 * weighted[1])  # 1 + 9 against 1, in the same frame
    assert weighted[0] > plain[0] > weighted[1]  # a frame's weights average to 1 per cell, not more
    even = torch.full((1, 4, 3, 4, 4), 0.3)
    torch.testing.assert_close(flow_loss(even, x0, noise, keep, weight), flow_loss(even, x0, noise, keep))

    model = load_model(tiny_model_dir)
    cfg = tiny_config("dit", shapes="9x32x32", tasks="loop:1,t2v:1", world_clips=4, object_weight=9.0)
    world = WorldSource(parse_shapes(cfg.shapes), clips=4, objects=True)
    cpu = torch.device("cpu")
    plain_batch = make_batch(range(6), world, model, cfg, cpu, None)
    cache = LatentCache()
    make_batch(range(6), world, model, cfg, cpu, cache)
    cached = make_batch(range(6), world, model, cfg, cpu, cache)
    assert plain_batch.weight is not None and cached.weight is not None
    for i, (a, b) in enumerate(zip(plain_batch.weight, cached.weight, strict=True)):
        assert a.shape == plain_batch.x0[i].shape[1:] and (a > 1).any()
        assert torch.equal(a, b)
    kinds = []  # each clip's weights are of its mask as played (a loop plays its first half back and forth)
    for i, w in enumerate(plain_batch.weight):
        mask = world.samples([i], (9, 32, 32))[0]["objects"]
        as_is, looped = (1 + 9 * object_cells(m) for m in (mask, for_task("loop", mask[None])[0]))
        kinds.append("t2v" if torch.equal(w, as_is) else "loop" if torch.equal(w, looped) else "neither")
    assert sorted(set(kinds)) == ["loop", "t2v"], kinds
    assert make_batch(range(2), world, model, tiny_config("dit", shapes="9x32x32"), cpu, None).weight is None
    with pytest.raises(ConfigError, match="object_weight.*only the world engine gives object masks"):
        make_config("dit", data="somewhere", object_weight=1.0)


def test_vae_learns_under_bf16_autocast(tmp_path: Path, tiny_model_dir: Path):
    """Mixed precision as on CUDA (bf16 autocast on the CPU here): the loss must fall. The broken loss
    diverged (inf SSIM at the first step) on the CPU and plateaued at L1 0.33 on the H100."""
    cfg = tiny_config(
        "vae", init=str(tiny_model_dir), precision="bf16", steps=30, batch_size=4, lr=3e-3, warmup=2,
        adv_weight=0.0, shapes="1x32x32", stats_clips=1, log_every=100,
    )  # fmt: skip
    losses = train_vae(cfg, tmp_path / "run", source=Squares(shapes=[(1, 32, 32)]))["losses"]
    assert np.mean(losses[-10:]) < 0.3 * np.mean(losses[:2]), losses


def test_vae_with_a_frozen_encoder_keeps_latents_and_trains_the_decoder(tmp_path: Path, tiny_model_dir: Path):
    """`freeze_encoder`: the encoder and the latent statistics come back bit for bit (so the init's DiT
    still fits the latents), the decoder learns, and the DiT and text encoder ride along unchanged."""
    init = load_model(tiny_model_dir)
    with torch.no_grad():  # statistics a fresh measurement would not reproduce
        init.vae.latent_mean.copy_(torch.linspace(-0.3, 0.3, init.vae.cfg.z_channels))
        init.vae.latent_std.copy_(torch.linspace(0.5, 2.0, init.vae.cfg.z_channels))
    save_model(init, tmp_path / "init" / "model")
    cfg = tiny_config(
        "vae", init=str(tmp_path / "init" / "model"), freeze_encoder=True, steps=6, adv_weight=0.0,
        ckpt_every=3,
    )  # fmt: skip
    losses = train_vae(cfg, tmp_path / "run", source=Squares())["losses"]
    assert np.mean(losses[-2:]) < np.mean(losses[:2]), losses
    before, after = model_tensors(tmp_path / "init"), model_tensors(tmp_path / "run")
    kept = {k for k in before if not k.startswith("vae.decoder.")}
    assert_same({k: before[k] for k in kept}, {k: after[k] for k in kept})
    moved = [k for k in before if k.startswith("vae.decoder.") and not torch.equal(before[k], after[k])]
    assert len(moved) > len([k for k in before if k.startswith("vae.decoder.")]) // 2, moved
    with pytest.raises(ConfigError, match="freeze_encoder.*init names a trained model"):
        make_config("vae", freeze_encoder=True)


def test_dit_loss_falls_on_world_data(tmp_path: Path):
    cfg = make_config(
        "dit", preset="tiny", data="world", steps=50, batch_size=4, shapes="9x32x32", world_clips=8,
        cache_latents=True, lr=2e-3, warmup=5, log_every=10, ckpt_every=0, sample_every=0, tasks="t2v:1",
    )  # fmt: skip
    losses = train_dit(cfg, tmp_path / "run")["losses"]
    assert np.mean(losses[-15:]) < 0.8 * np.mean(losses[:5]), losses


def test_make_model_script_goes_from_nothing_to_a_packed_model_and_resumes(tmp_path: Path, capsys):
    """scripts/make_model.py: VAE, DiT (from the VAE's model folder), pack, one process each here; the
    ledger counts each process's minutes; a second call redoes only what is missing; with `--gpus 2`
    the training chunk runs as two processes and counts twice its minutes."""
    import runpy

    make = runpy.run_path(str(Path(__file__).parent.parent / "scripts" / "make_model.py"))["main"]
    common = dict(preset="tiny", shapes="9x32x32", batch_size=2, steps=2, log_every=1, ckpt_every=0,
                  sample_every=0, world_clips=4, warmup=1)  # fmt: skip
    vae, dit = tmp_path / "vae.json", tmp_path / "dit.json"
    vae.write_text(json.dumps(common | {"stats_clips": 2, "kept": True, "crop": 16}))
    dit.write_text(json.dumps(common | {"task_variants": 1, "batching": "bucketed"}))
    runs, out = tmp_path / "runs", tmp_path / "model"
    args = ["--runs", str(runs), "--out", str(out), "--vae-config", str(vae), "--dit-config", str(dit)]
    assert make([*args, "--suite", ""]) == 0
    ledger = json.loads((runs / "make.json").read_text())
    assert [len(ledger[s]) for s in ("vae", "dit", "pack", "eval")] == [1, 1, 1, 0]
    assert all(c["rc"] == 0 and c["minutes"] > 0 for s in ("vae", "dit", "pack") for c in ledger[s])
    assert f"--vae-from {runs / 'vae' / 'model'}" in ledger["dit"][0]["command"]
    model = load_model(out)
    trained_vae = load_model(runs / "vae" / "model").vae.state_dict()
    params = dict(model.vae.named_parameters())  # the DiT trained on the VAE run's weights, kept as they were
    for k, v in model.vae.state_dict().items():  # parameters packed in bf16, statistics kept in fp32
        ref = trained_vae[k].to(torch.bfloat16).float() if k in params else trained_vae[k]
        assert torch.equal(v.float(), ref), k
    assert [r["step"] for r in read_metrics(runs / "dit")] == [1, 2]
    shutil.rmtree(out)  # as if the call had stopped before packing
    assert make([*args, "--suite", ""]) == 0
    again = json.loads((runs / "make.json").read_text())
    assert [len(again[s]) for s in ("vae", "dit", "pack")] == [1, 1, 2] and (out / "config.json").exists()
    with pytest.raises(SystemExit):
        make([*args, "--vae-minutes", "0"])
    # a VAE made before (here the first call's): no VAE stage, the DiT takes it
    runs2 = tmp_path / "runs2"
    args2 = ["--runs", str(runs2), "--out", str(tmp_path / "model2"), "--vae-config", str(vae)]
    assert make([*args2, "--dit-config", str(dit), "--vae", str(out), "--suite", ""]) == 0
    ledger = json.loads((runs2 / "make.json").read_text())
    assert [len(ledger[s]) for s in ("vae", "dit", "pack")] == [0, 1, 1] and not (runs2 / "vae").exists()
    assert f"--vae-from {out}" in ledger["dit"][0]["command"]
    assert torch.equal(
        load_model(tmp_path / "model2").vae.decoder.conv_out.conv.weight,
        model.vae.decoder.conv_out.conv.weight,
    )
    with pytest.raises(SystemExit):
        make([*args2, "--dit-config", str(dit), "--vae", str(tmp_path / "nowhere")])
    # --gpus 2: the DiT chunk as two data-parallel processes (gloo here), counted as twice its minutes
    runs3 = tmp_path / "runs3"
    args3 = ["--runs", str(runs3), "--out", str(tmp_path / "model3"), "--vae-config", str(vae)]
    capsys.readouterr()
    assert make([*args3, "--dit-config", str(dit), "--vae", str(out), "--suite", "", "--gpus", "2"]) == 0
    ledger = json.loads((runs3 / "make.json").read_text())
    chunk = ledger["dit"][0]
    assert chunk["gpus"] == 2 and "torch.distributed.run --standalone --nproc-per-node 2" in chunk["command"]
    assert ledger["pack"][0]["gpus"] == 1
    assert [r["step"] for r in read_metrics(runs3 / "dit")] == [1, 2]
    assert load_model(tmp_path / "model3").config.preset == "tiny"
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| dit |"))
    assert row == f"| dit | 1 | {chunk['minutes']:.1f} | {2 * chunk['minutes']:.1f} |"
    with pytest.raises(SystemExit):
        make([*args3, "--dit-config", str(dit), "--gpus", "0"])


def test_train_command_starts_a_run_on_a_data_folder(clips_dir: Path, tmp_path: Path, tiny_model_dir: Path):
    out = train_command(
        "vae", out=tmp_path / "run", preset="tiny", data=str(clips_dir), steps=2, batch_size=2,
        shapes="9x32x32,1x32x32", init=str(tiny_model_dir), log_every=1, ckpt_every=0, sample_every=0,
        stats_clips=1,
    )  # fmt: skip
    assert out["step"] == 2 and all(math.isfinite(v) for v in out["losses"])
    saved = json.loads((tmp_path / "run" / "train_config.json").read_text())
    assert saved["kind"] == "vae" and saved["data"] == str(clips_dir) and saved["steps"] == 2
    assert load_model(tmp_path / "run" / "model").config.preset == "tiny"


def test_vae_crops_are_aligned_windows_drawn_per_clip():
    from tessera.train.vae import crop_clip

    video = torch.randn(3, 5, 64, 48)
    objects = torch.rand(5, 64, 48) > 0.5
    gen = lambda g: seeding.generator(0, "crop", g)
    v, m = crop_clip(video, objects, 32, gen(7))
    assert v.shape == (3, 5, 32, 32) and m.shape == (5, 32, 32)
    # the window is a slice of the clip, and the mask is the same window of the masks
    hits = [
        (y, x) for y in range(33) for x in range(17) if torch.equal(video[..., y : y + 32, x : x + 32], v)
    ]
    assert len(hits) == 1
    y, x = hits[0]
    assert torch.equal(objects[:, y : y + 32, x : x + 32], m)
    assert torch.equal(crop_clip(video, objects, 32, gen(7))[0], v)  # the same clip index: the same window
    positions = {tuple(crop_clip(video, None, 32, gen(g))[0][0, 0, 0, :3].tolist()) for g in range(20)}
    assert len(positions) > 5  # different clips: different windows
    assert crop_clip(video, objects, 0, gen(0))[0] is video  # 0: whole frames
    with pytest.raises(ConfigError, match="crop"):
        make_config("vae", None, crop=24)


def test_vae_kept_clips_are_the_streaming_clips_cut_on_the_device():
    """`kept`: a step's clips are the streaming path's clips (same clips, same order, same pixels and
    masks), each cut at a window drawn on the device; the same bytes for the same (step, rank)."""
    from tessera.train.vae import KeptClips

    cfg = tiny_config("vae", shapes="9x32x48", world_clips=3, kept=True, crop=16, object_weight=2.0)
    world = WorldSource(parse_shapes(cfg.shapes), clips=3, objects=True)
    cpu, shape = torch.device("cpu"), (9, 32, 48)
    whole = KeptClips(world, dataclasses.replace(cfg, crop=0), cpu, z_channels=4)
    (v,), (e,), (m,) = whole.batch(5, 6, shape, step=2, rank=0)
    ref, _, ref_masks = load_batch(range(5, 11), WorldSource(parse_shapes(cfg.shapes), clips=3, objects=True),
                                   dataclasses.replace(cfg, crop=0), cpu, 4, shape)  # fmt: skip
    assert torch.equal(v, ref[0]) and torch.equal(m, ref_masks[0])  # world pixels are uint8: exact
    assert e.shape == (6, 4, 3, 4, 6)
    assert len(world._kept) == 0  # the source's renders were dropped once kept
    kept = KeptClips(world, cfg, cpu, z_channels=4)
    (c,), (e16,), (mc,) = kept.batch(5, 6, shape, step=2, rank=0)
    assert c.shape == (6, 3, 9, 16, 16) and mc.shape == (6, 9, 16, 16) and e16.shape == (6, 4, 3, 2, 2)
    positions = set()
    for j in range(6):  # each clip's window is a slice of that clip, its mask the same slice of the masks
        hits = [(y, x) for y in range(17) for x in range(33)
                if torch.equal(ref[0][j][..., y : y + 16, x : x + 16], c[j])]  # fmt: skip
        assert hits and any(torch.equal(ref_masks[0][j][:, y : y + 16, x : x + 16], mc[j]) for y, x in hits)
        positions.add(hits[0])
    assert len(positions) > 2  # drawn per clip
    again = KeptClips(world, cfg, cpu, z_channels=4).batch(5, 6, shape, step=2, rank=0)
    assert torch.equal(again[0][0], c) and torch.equal(again[1][0], e16)
    assert not torch.equal(kept.batch(5, 6, shape, step=3, rank=0)[1][0], e16)
    with pytest.raises(ConfigError, match="kept"):
        make_config("vae", kept=True)  # an endless world
    with pytest.raises(ConfigError, match="kept"):
        make_config("vae", kept=True, world_clips=4, shapes="9x32x32,1x32x32")


def test_vae_kept_training_resumes_exactly(tmp_path: Path, tiny_model_dir: Path):
    cfg = tiny_config(
        "vae", init=str(tiny_model_dir), world_clips=4, kept=True, crop=16, batch_shapes="one",
        shapes="9x32x32:1,5x32x48:1", steps=6, object_weight=1.0,
    )  # fmt: skip
    straight = train_vae(cfg, tmp_path / "a")["losses"]
    assert len(straight) == 6 and all(math.isfinite(x) for x in straight)
    first = train_vae(dataclasses.replace(cfg, steps=3), tmp_path / "b")
    second = train_vae(resume_config(tmp_path / "b", "vae", steps=6), tmp_path / "b", resume=True)
    assert first["losses"] + second["losses"] == straight


def test_kept_set_gathers_what_the_streaming_path_encodes(tiny_model_dir: Path):
    """`task_variants`: each clip of a finite world set is encoded once, with its conditioned variants;
    a step's batch holds exactly those tensors (x0 of the clip or of its variant, the variant's cond,
    t = 0 and no loss on the given prefix, the caption as drawn), the same for the same step in any
    process, and text-to-video, captions and variants in the mix's proportions."""
    from tessera.train.kept import KeptSet

    model = load_model(tiny_model_dir)
    cfg = tiny_config(
        "dit", shapes="9x32x32", tasks="t2v:1,extend:1,loop:1,last:1", world_clips=4, task_variants=2,
        object_weight=3.0, caption_dropout=0.25, short_caption_prob=0.5,
    )  # fmt: skip
    world = WorldSource(parse_shapes(cfg.shapes), clips=4, objects=True)
    cpu = torch.device("cpu")
    kept = KeptSet(world, model, cfg, cpu)
    b = kept.batch(0, 64, (9, 32, 32), step=3, rank=0)
    s = kept.sets[(9, 32, 32)]
    clips = world.samples(list(range(4)), (9, 32, 32))
    plain = encode_batch(model.vae, [c["video"] for c in clips], [torch.zeros(9, dtype=torch.bool)] * 4)[0]
    for i in range(4):
        torch.testing.assert_close(s.x0[i], plain[i])
        for k in range(2):  # each variant: the streaming path's encoders on the task's clip and mask
            task, mask = kept._variant(i, k, 9)
            video = for_task(task, clips[i]["video"])
            torch.testing.assert_close(
                s.var_cond[i, k], build_cond(model.vae, video, mask), rtol=1e-4, atol=1e-5
            )
            torch.testing.assert_close(s.var_x0[i, k], encode_batch(model.vae, [video], [mask])[0][0])
            assert torch.equal(s.var_given[i, k], given_latents(mask))
    clip = torch.arange(64) % 4
    conditioned = b.cond.abs().sum(dim=(1, 2, 3, 4)) > 0
    for j in range(64):
        if conditioned[j]:
            k = next(k for k in range(2) if torch.equal(b.cond[j], s.var_cond[clip[j], k]))
            assert torch.equal(b.x0[j], s.var_x0[clip[j], k])
            assert torch.equal(b.t[j] == 0, s.var_given[clip[j], k]) and torch.equal(
                b.loss_mask[j], b.t[j] > 0
            )
        else:  # text-to-video: the clip itself, every frame noised and in the loss
            assert torch.equal(b.x0[j], s.x0[clip[j]]) and b.loss_mask[j].all() and (b.t[j] > 0).all()
        rows = {"detailed": s.ids[clip[j]], "short": s.ids[4 + clip[j]], "empty": s.ids[8]}
        assert any(torch.equal(b.ids[j], r) for r in rows.values())
    assert 0.1 < 1 - conditioned.float().mean() < 0.45  # t2v: a quarter of the mix
    assert b.weight is not None and (b.weight > 1).any() and b.loss_frames == b.loss_mask.sum()
    again = KeptSet(world, model, cfg, cpu).batch(0, 64, (9, 32, 32), step=3, rank=0)
    for name in ("ids", "x0", "noise", "t", "cond", "loss_mask", "weight"):
        assert torch.equal(getattr(b, name), getattr(again, name)), name
    assert not torch.equal(kept.batch(0, 64, (9, 32, 32), step=4, rank=0).noise, b.noise)
    with pytest.raises(ConfigError, match="task_variants"):
        make_config("dit", task_variants=2, shapes="9x32x32:1,5x32x48:1", batch_shapes="mixed")


def test_kept_set_holds_images_as_text_to_image(tmp_path: Path, tiny_model_dir: Path):
    """A one-frame shape (an image) among the clips: every variant of an image is text-to-image (zero
    cond, nothing given, the frame in the loss), and a run over clips and images trains."""
    from tessera.train.kept import KeptSet

    model = load_model(tiny_model_dir)
    cfg = tiny_config(
        "dit", shapes="9x32x32:1,1x48x48:1", batch_shapes="one", batching="bucketed", world_clips=4,
        task_variants=2, tasks="t2v:1,i2v:1,extend:1", steps=4,
    )  # fmt: skip
    world = WorldSource(parse_shapes(cfg.shapes), clips=4, objects=True)
    kept = KeptSet(world, model, cfg, torch.device("cpu"))
    b = kept.batch(0, 16, (1, 48, 48), step=0, rank=0)
    s = kept.sets[(1, 48, 48)]
    assert s.var_cond.shape[2] == model.config.dit.cond_channels and not s.var_cond.any()
    assert not s.var_given.any() and not b.cond.any() and b.loss_mask.all() and (b.t > 0).all()
    losses = train_dit(dataclasses.replace(cfg, init=str(tiny_model_dir)), tmp_path / "run")["losses"]
    assert len(losses) == 4 and all(math.isfinite(x) for x in losses)


def test_kept_set_training_resumes_exactly(tmp_path: Path, tiny_model_dir: Path):
    cfg = tiny_config(
        "dit", init=str(tiny_model_dir), world_clips=4, task_variants=1, batch_shapes="one",
        shapes="9x32x32:1,5x32x48:1", steps=6, batching="bucketed",
    )  # fmt: skip
    straight = train_dit(cfg, tmp_path / "a")["losses"]
    assert len(straight) == 6 and all(math.isfinite(x) for x in straight)
    first = train_dit(dataclasses.replace(cfg, steps=3), tmp_path / "b")
    assert first["step"] == 3
    second = train_dit(resume_config(tmp_path / "b", "dit", steps=6), tmp_path / "b", resume=True)
    assert first["losses"] + second["losses"] == straight


class FillsDisk(Squares):
    """Squares that, on loading sample `fill_at`, fill the disk holding `ballast` but for `room` bytes."""

    def __init__(self, ballast: Path, fill_at: int, room: int = 64_000):
        super().__init__()
        self.ballast, self.fill_at, self.room = ballast, fill_at, room

    def sample(self, i: int, shape=None) -> dict:
        if i == self.fill_at:
            free = shutil.disk_usage(self.ballast.parent).free
            self.ballast.write_bytes(bytes(max(0, free - self.room)))
        return super().sample(i, shape)


def test_a_full_disk_stops_training_with_the_last_checkpoint_intact_and_resumable(small_disk, tiny_model_dir):
    """The disk fills during step 3 (checkpoints every step): the run stops with ENOSPC, state/ still
    holds step 2 with no temp folders beside it, and once there is room it resumes to the losses of a
    run that never stopped."""
    import errno

    cfg = tiny_config("dit", steps=3, ckpt_every=1, init=str(tiny_model_dir))
    disk = small_disk(96 * 2**20)
    straight = train_dit(cfg, disk / "straight", source=Squares())["losses"]
    shutil.rmtree(disk / "straight")
    run, ballast = disk / "run", disk / "ballast"
    with pytest.raises(OSError) as full:
        train_dit(cfg, run, source=FillsDisk(ballast, fill_at=2 * cfg.batch_size))  # loaded in step 3
    assert full.value.errno == errno.ENOSPC
    assert load_state(run / "state")[1]["step"] == 2
    assert not [p.name for p in run.iterdir() if p.name.startswith(".")]
    ballast.unlink()
    resumed = train_dit(resume_config(run, "dit"), run, resume=True, source=Squares())
    assert resumed["step"] == 3 and resumed["losses"] == straight[2:]
    assert [r["step"] for r in read_metrics(run)] == [1, 2, 3]


@pytest.mark.parametrize("path", sorted(Path(__file__).parents[1].glob("scripts/*/*.json")), ids=str)
def test_recipe_configs_are_valid(path: Path) -> None:
    """Every training recipe the scripts and docs name (scripts/<recipe>/vae.json, dit.json) builds a
    config of its kind, with a preset that exists and clip shapes that parse."""
    cfg = make_config(path.stem, path)
    get_preset(cfg.preset)
    assert parse_shapes(cfg.shapes)


def test_dit_run_takes_a_vae_alone_from_a_small_folder(tmp_path: Path, tiny_model_dir: Path):
    """`vae_from`: a folder holding only config.json and the VAE in bf16 (what a packed VAE run carries)
    gives the DiT run that VAE, frozen, with the text encoder and DiT fresh as without init."""
    from tessera.checkpoint import save_model

    donor = tmp_path / "donor"
    model = load_model(tiny_model_dir)
    with torch.no_grad():
        for p in model.vae.parameters():
            p.add_(0.01 * torch.randn_like(p))  # a VAE unlike a fresh one
    save_model(model, donor, dtype=torch.bfloat16)
    for f in donor.iterdir():
        if f.name != "config.json" and not f.name.startswith("vae"):
            f.unlink()
    cfg = tiny_config("dit", vae_from=str(donor), steps=2)
    train_dit(cfg, tmp_path / "run")
    got = model_tensors(tmp_path / "run")
    want = load_tensors(donor, "vae")
    assert_same(
        {k: v.to(torch.bfloat16) for k, v in got.items() if k.startswith("vae.")},
        {f"vae.{k}": v for k, v in want.items()},
    )
    from tessera.train.common import initial_model

    start, plain = (initial_model(c, tmp_path, False) for c in (cfg, tiny_config("dit")))
    assert start.tokenizer._tok.to_str() == plain.tokenizer._tok.to_str()
    for part in ("text", "dit"):  # fresh, seeded as a run without init
        assert_same(getattr(start, part).state_dict(), getattr(plain, part).state_dict())
    other = tmp_path / "other"
    shutil.copytree(donor, other)
    config = json.loads((other / "config.json").read_text())
    config["vae"]["z_channels"] += 4
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(RequestError, match="another VAE than preset 'tiny'"):
        train_dit(tiny_config("dit", vae_from=str(other)), tmp_path / "run2")
    with pytest.raises(RunError, match="cannot take the VAE of"):
        train_dit(tiny_config("dit", vae_from=str(tmp_path / "missing")), tmp_path / "run3")
    with pytest.raises(ConfigError, match="vae_from.*empty when init is given"):
        tiny_config("dit", vae_from=str(donor), init=str(tiny_model_dir))
