"""The world engine: determinism, geometry against truth, physics, captions, splits, dataset, commands."""

import colorsys
import dataclasses
import json
import math
import re

import numpy as np
import pytest
import torch

from tessera.world import (
    WorldConfig,
    WorldDataset,
    WorldSampler,
    caption_corpus,
    render,
    render_command,
    show_command,
)
from tessera.world.camera import project
from tessera.world.captions import CAMERA_PHRASES, MOTION_PHRASES, captions
from tessera.world.dataset import scene_seed
from tessera.world.physics import bounce_heights, simulate
from tessera.world.scene import COLOURS, SHAPES, CameraPath, Object, Scene
from tessera.world.shapes import INTERSECT
from tessera.world.truth import clip_truth

SMALL = WorldConfig(frames=9, fps=8.0)


def test_same_seed_gives_bit_identical_frames_and_captions():
    sampler = WorldSampler(SMALL)
    a, b = sampler.sample(11), sampler.sample(11)
    assert a == b and captions(a) == captions(b)
    fa, fb = render(a, (48, 40)).frames, render(b, (48, 40)).frames
    assert fa.shape == (1, 9, 40, 48, 3) and fa.dtype == torch.uint8
    assert torch.equal(fa, fb)
    assert captions(sampler.sample(12)) != captions(a)


def test_each_shape_is_hit_where_its_geometry_says():
    # A ray from (0, 0, 5) straight down -z meets each unit shape's surface at z = its half-width at y = 0.
    o, d = torch.tensor([[0.0, 0.0, 5.0]]), torch.tensor([[0.0, 0.0, -1.0]])
    expected = {"cube": 4.0, "sphere": 4.0, "cylinder": 4.0, "cone": 4.5, "pyramid": 4.5, "octahedron": 4.0}
    for name, fn in zip(SHAPES, INTERSECT, strict=True):
        t, n = fn(o, d)
        assert t.item() == pytest.approx(expected[name], abs=1e-5), name
        assert n[0, 2] > 0, name  # faces the ray (the octahedron is hit at a vertex: any face normal)
        assert torch.isinf(fn(o, -d)[0]).all(), name  # pointing away: no hit


def _scenes(count, seed=0, size=(64, 48)):
    sampler = WorldSampler(SMALL)
    scenes = [sampler.sample(seed + i) for i in range(count)]
    return scenes, [render(s, size) for s in scenes]


def test_projected_centres_fall_inside_their_masks():
    scenes, outs = _scenes(4, seed=100)
    checked = 0
    for scene, out in zip(scenes, outs, strict=True):
        truth = clip_truth(scene, out)
        for f, frame in enumerate(truth["frames"]):
            for k, ob in enumerate(frame["objects"]):
                if ob["visible_fraction"] < 1.0 or ob["alone_pixels"] < 20:
                    continue
                uv, z = project(
                    np.array(ob["position"]), out.eye[0, f], out.world_from_camera[0, f], out.k[0]
                )
                x, y = int(uv[0]), int(uv[1])
                assert z > 0 and out.ids[0, f, y, x] == k + 1, (scene.seed, f, k)
                checked += 1
    assert checked > 20


def test_occlusion_flags_agree_with_depth_order():
    occluder = Object("cube", "gray", "large", "matte", x=0.0, z=0.8)
    mover = Object("sphere", "red", "small", "matte", "pass_behind", direction="right", partner=0)
    scene = Scene((occluder, mover), CameraPath(), frames=17, fps=8.0)
    out = render(scene, (64, 64))
    truth = clip_truth(scene, out)
    hidden = [fr["objects"][1]["visible_fraction"] for fr in truth["frames"]]
    assert hidden[0] > 0.9 and hidden[-1] > 0.9 and min(hidden) < 0.05
    kinds = [e["kind"] for e in truth["events"] if e["object"] == 1]
    assert kinds == ["hidden", "reappear"]
    flagged = out.occlusion[0, :, 0, 1]
    assert flagged.any() and not out.occlusion[0, :, 1, 0].any()
    # Wherever the cube hides the sphere, the cube is nearer: depth at the cube's pixels < sphere depth.
    traj = simulate(scene)
    for f in flagged.nonzero().flatten().tolist():
        _, z = project(traj.pos[f], out.eye[0, f], out.world_from_camera[0, f], out.k[0])
        assert z[0] < z[1]
        assert out.depth[0, f][out.ids[0, f] == 1].max() < z[1]


def _hue(rgb):
    return colorsys.rgb_to_hsv(*rgb)


@pytest.mark.parametrize("material", ["matte", "shiny"])
@pytest.mark.parametrize("colour", list(COLOURS))
def test_objects_have_the_hue_of_their_named_colour_under_neutral_light(colour, material):
    # shiny objects mirror the blue sky and the grey checker floor, tinted by their own colour: their
    # brightness changes, their hue and saturation do not
    scene = Scene(
        (Object("sphere", colour, "large", material),), CameraPath(distance=5.0), "checker", "noon", 1
    )
    out = render(scene, (48, 48), antialias=False)
    pixels = out.frames[0, 0][out.ids[0, 0] == 1].float().numpy() / 255.0
    assert len(pixels) > 100
    h, s, _ = _hue(np.median(pixels, axis=0))
    h0, s0, _ = _hue(COLOURS[colour])
    if s0 < 0.2:  # white, black, gray stay unsaturated
        assert s < 0.2
    else:
        assert min(abs(h - h0), 1 - abs(h - h0)) < 0.03 and s > 0.5, (h, h0, s)


def test_bouncing_heights_fit_a_parabola_between_bounces():
    ob = Object("sphere", "red", "medium", "matte", "bounce", height=1.5, restitution=0.7)
    scene = Scene((ob,), frames=65, fps=32.0)
    traj = simulate(scene)
    t = np.arange(65) / 32.0
    y = traj.pos[:, 0, 1] - ob.radius
    _, impacts = bounce_heights(t, 1.5, 0.3 * scene.duration if 0.3 * scene.duration < 0.6 else 0.6, 0.7)
    bounces = [e.time for e in traj.events if e.kind == "bounce"]
    assert len(bounces) >= 2 and np.allclose(bounces, impacts[: len(bounces)])
    edges = [0.0, *bounces, t[-1] + 1]
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        sel = (t > a + 1e-9) & (t < b - 1e-9)
        if sel.sum() >= 4:
            coef = np.polyfit(t[sel], y[sel], 2)
            assert np.abs(np.polyval(coef, t[sel]) - y[sel]).max() < 1e-6
            assert coef[0] < 0  # gravity pulls down
    peaks = [y[(t > a) & (t < b)].max() for a, b in zip(bounces[:-1], bounces[1:], strict=True)]
    assert all(p2 < p1 for p1, p2 in zip(peaks[:-1], peaks[1:], strict=True))  # restitution < 1


def test_rolling_rotation_matches_distance():
    ob = Object("sphere", "blue", "large", "matte", "roll", direction="right")
    traj = simulate(Scene((ob,), frames=17))
    dist = traj.pos[-1, 0, 0] - traj.pos[0, 0, 0]
    rel = traj.rot[-1, 0] @ traj.rot[0, 0].T
    angle = math.atan2(-rel[0, 1], rel[0, 0])  # rotation about z
    assert dist > 0 and math.isclose(
        (-angle) % (2 * math.pi), (dist / ob.radius) % (2 * math.pi), abs_tol=1e-6
    )


WORDS = re.compile(r"[a-z]+")


def test_captions_name_exactly_the_scene():
    sampler = WorldSampler(WorldConfig())
    for seed in range(60):
        scene = sampler.sample(seed)
        detailed, short = captions(scene)
        words = set(WORDS.findall(detailed.lower()))
        assert words & set(COLOURS) == {o.colour for o in scene.objects}, detailed
        assert words & set(SHAPES) == {o.shape for o in scene.objects}, detailed
        for ob in scene.objects:
            partner = scene.objects[ob.partner] if ob.partner >= 0 else None
            other = f"{partner.colour} {partner.shape}" if partner else ""
            options = [p.format(dir=ob.direction, partner=other) for p in MOTION_PHRASES[ob.motion]]
            assert any(p in detailed for p in options), (ob.motion, detailed)
        cam = scene.camera
        assert any(p.format(dir=cam.direction) in detailed for p in CAMERA_PHRASES[cam.move]), detailed
        first = scene.objects[0]
        assert f"{first.colour} {first.shape}" in short


def test_heldout_combinations_never_appear_in_training():
    cfg = WorldConfig()
    held = set(cfg.heldout)
    train, heldout = WorldSampler(cfg, "train"), WorldSampler(cfg, "heldout")
    for seed in range(400):
        assert not {(o.shape, o.colour, o.motion) for o in train.sample(seed).objects} & held
    for seed in range(100):
        assert {(o.shape, o.colour, o.motion) for o in heldout.sample(seed).objects} & held
    with pytest.raises(ValueError, match="split"):
        WorldSampler(cfg, "test")


def test_caption_corpus_is_cheap_and_deterministic():
    texts = caption_corpus(20, seed=3)
    assert len(texts) == 40 and texts == caption_corpus(20, seed=3)


def test_dataset_is_deterministic_by_seed_rank_and_index():
    ds = WorldDataset(SMALL, seed=5, size=(32, 32), length=3, render_batch=2, rank=1)
    items = list(ds)
    assert [it["index"] for it in items] == [0, 1, 2]
    assert [it["seed"] for it in items] == [scene_seed(5, 1, i) for i in range(3)]
    video = items[0]["video"]
    assert video.shape == (3, 9, 32, 32) and video.min() >= -1 and video.max() <= 1
    again = next(iter(WorldDataset(SMALL, seed=5, size=(32, 32), length=1, rank=1)))
    assert torch.equal(again["video"], video) and again["caption"] == items[0]["caption"]
    other = next(iter(WorldDataset(SMALL, seed=5, size=(32, 32), length=1, rank=0)))
    assert other["seed"] != items[0]["seed"]


_RENDER_IN_CHILD = """
import hashlib, sys, torch
torch.set_num_threads(int(sys.argv[1]))
from tessera.world import WorldConfig, WorldSampler, render
sampler = WorldSampler(WorldConfig(frames=9, fps=8.0))
out = render([sampler.sample(s) for s in (7, 8)], (48, 32))
digest = hashlib.sha256()
for x in (out.frames, out.ids, out.depth, out.coverage, out.occlusion):
    digest.update(x.numpy().tobytes())
print(digest.hexdigest())
"""


def test_render_gives_the_same_bytes_in_separate_processes_and_thread_counts():
    """Pixels, ids and depth hash the same in two fresh processes, one on 1 thread, one on 2."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    hashes = [
        subprocess.run(
            [sys.executable, "-c", _RENDER_IN_CHILD, str(n)],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        ).stdout.strip()
        for n in (1, 2)
    ]
    assert len(hashes[0]) == 64 and hashes[0] == hashes[1]


def test_row_times_is_the_matrix_product():
    from tessera.world.render import row_times

    gen = torch.Generator().manual_seed(0)
    v, m = (
        torch.randn(5, 4, 3, generator=gen, dtype=torch.float64),
        torch.randn(5, 4, 3, 3, generator=gen, dtype=torch.float64),
    )
    assert torch.allclose(row_times(v, m), (v[..., None, :] @ m)[..., 0, :], rtol=0, atol=1e-12)


def test_render_command_writes_clips_and_finishes_an_interrupted_run(tmp_path):
    out = tmp_path / "clips"
    render_command(2, out, seed=7, frames=5, size=(32, 24), fps=8)
    lines = [json.loads(x) for x in (out / "captions.jsonl").read_text().splitlines()]
    assert [x["file"] for x in lines] == ["clip_000000.mp4", "clip_000001.mp4"]
    truth = json.loads((out / "clip_000001.json").read_text())
    assert len(truth["frames"]) == 5 and truth["camera"]["K"][0][2] == 16.0
    arrays = np.load(out / "clip_000001.npz")
    assert arrays["ids"].shape == (5, 24, 32) and arrays["depth"].dtype == np.float16
    # Interrupt: clip 1 lost its video. A rerun renders only clip 1 and leaves clip 0 as it was.
    kept = (out / "clip_000000.mp4").stat().st_mtime_ns
    (out / "clip_000001.mp4").unlink()
    render_command(2, out, seed=7, frames=5, size=(32, 24), fps=8)
    assert (out / "clip_000001.mp4").is_file() and (out / "clip_000000.mp4").stat().st_mtime_ns == kept
    assert not list(out.glob(".*tmp*"))


def test_commands_reject_bad_arguments(tmp_path):
    afile = tmp_path / "file.txt"
    afile.write_text("x")
    with pytest.raises(ValueError, match="size"):
        render_command(1, tmp_path / "a", size=(0, 64))
    with pytest.raises(ValueError, match="split"):
        render_command(1, tmp_path / "a", split="validation")
    with pytest.raises(ValueError, match="not a folder"):
        render_command(1, afile)
    with pytest.raises(ValueError, match="frames"):
        show_command(0, tmp_path / "s.png", frames=0)


def test_show_command_draws_a_contact_sheet(tmp_path):
    path = show_command(3, tmp_path / "sheet.png", frames=5, size=(32, 32))
    from PIL import Image

    image = Image.open(path)
    assert image.width > 5 * 32 and image.height > 32


def test_frames_do_not_depend_on_batch_or_chunking():
    # Each frame is traced on its own: rendering a scene alone, in a batch with others (more object
    # slots), or a few rows at a time gives the same bytes.
    scenes = [WorldSampler(SMALL).sample(s) for s in (21, 22, 23)]
    alone = render(scenes[1], (40, 32))
    batch = render(scenes, (40, 32), max_rays=40 * 32 * 4)
    assert torch.equal(batch.frames[1], alone.frames[0]) and torch.equal(batch.ids[1], alone.ids[0])
    assert torch.equal(batch.depth[1], alone.depth[0])
    k = len(scenes[1].objects)
    assert torch.equal(batch.coverage[1, :, :k], alone.coverage[0])
    # A caller's bf16 autocast (the DiT trainer renders inside one) does not reach the renderer.
    assert any(o.material == "shiny" for sc in scenes for o in sc.objects)  # the mirror path runs
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = render(scenes, (40, 32), max_rays=40 * 32 * 4)
    assert torch.equal(mixed.frames, batch.frames) and torch.equal(mixed.depth, batch.depth)


def test_simulate_cache_returns_read_only_paths_and_fresh_events():
    scene = WorldSampler(SMALL).sample(5)
    a, b = simulate(scene), simulate(scene)
    assert a.pos is b.pos and a.events == b.events and a.events is not b.events
    with pytest.raises(ValueError):
        a.pos[0, 0, 0] = 1.0


def test_a_scene_at_more_frames_plays_the_same_motion_stretched():
    # Paths are set relative to the clip's duration (bench/long_ceiling.py relies on it): a scene
    # rendered at 4x its frames shows frame k of the short clip at frame 4k. Falls and bounces are
    # the exception: a fall lasts at most 0.6 s, so they keep their real speed.
    stretched = []
    for seed in range(40):
        scene = WorldSampler(SMALL).sample(seed)
        if any(o.motion in ("fall", "bounce") for o in scene.objects):
            continue
        short = render(scene, (32, 24)).frames[0]
        long = render(dataclasses.replace(scene, frames=1 + 4 * (scene.frames - 1)), (32, 24)).frames[0]
        assert long.shape[0] == 33 and torch.equal(long[::4], short), seed
        stretched.append(seed)
    assert len(stretched) >= 10


def _files(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_a_full_disk_stops_a_render_cleanly_and_a_rerun_with_room_finishes_the_same(small_disk, tmp_path):
    import errno

    ref = render_command(6, tmp_path / "ref", seed=7, frames=9, size=(64, 64), fps=8)
    out = small_disk(40_000) / "clips"  # room for about three clips of about 9 KB
    with pytest.raises(OSError) as full:
        render_command(6, out, seed=7, frames=9, size=(64, 64), fps=8)
    assert full.value.errno == errno.ENOSPC and str(out) in str(full.value.filename)
    got = _files(out)
    assert 0 < len(got) < 18 and not [n for n in got if n.startswith(".")]  # no temp files left
    done = {n[:11] for n in got if n.endswith(".mp4")}
    assert all(f"{c}{ext}" in got for c in done for ext in (".json", ".npz"))  # whole clips only
    assert all(got[n] == (ref / n).read_bytes() for n in got)
    small_disk.resize(1_000_000)
    render_command(6, out, seed=7, frames=9, size=(64, 64), fps=8)
    assert _files(out) == _files(ref)


def test_a_render_killed_with_sigkill_resumes_to_the_same_bytes(tmp_path):
    """SIGKILL (no cleanup runs) in the middle of a render; the rerun removes the temp files left behind
    and writes exactly the files of a render that was never stopped."""
    import os
    import signal
    import subprocess
    import sys
    import time

    args = ["world", "render", "--count", "5", "--seed", "3", "--frames", "9", "--size", "48x48"]
    ref = render_command(5, tmp_path / "ref", seed=3, frames=9, size=(48, 48), fps=16.0)
    out = tmp_path / "killed"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.Popen([sys.executable, "-m", "tessera.cli", *args, "--out", str(out)], env=env)
    deadline = time.time() + 120
    while not (out / "clip_000001.mp4").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "captions.jsonl").exists()  # stopped before the end
    (out / ".clip_000002.mp4.0badc0de.tmp.mp4").write_bytes(b"half a video")  # as a kill mid-write leaves
    r = subprocess.run(
        [sys.executable, "-m", "tessera.cli", *args, "--out", str(out)], env=env, capture_output=True
    )
    assert r.returncode == 0, r.stderr
    assert _files(out) == _files(ref)
