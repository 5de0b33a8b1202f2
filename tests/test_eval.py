"""The world benchmark: truth renders score at the ceiling, corrupted ones clearly lower, reports build.

Metrics are checked with the oracle parser (`parse_truth`) so that a metric's behaviour is tested apart
from the learned parser's errors; each corruption changes frames and per-pixel ids together.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tessera.checkpoint import CheckpointError
from tessera.eval import corrupt
from tessera.eval import parser as parser_module
from tessera.eval.alignment import object_permanence, objects_right, text_alignment
from tessera.eval.capability import connect_psnr, edit_monotonic, extend_seam, i2v_psnr, loop_closure
from tessera.eval.fwd import frechet_distance, fwd, random_encoder
from tessera.eval.geometry import consistency_3d, physics
from tessera.eval.parser import ParserConfig, SceneParser, components, load_parser, parse_video, save_parser
from tessera.eval.prompts import PromptSetError, load_prompt_set, prompt_file
from tessera.eval.recon import psnr, ssim
from tessera.eval.temporal import flicker, smoothness
from tessera.eval.tracks import parse_truth

SIZE = (64, 64)
CLIPS = ("train-3", "train-20", "train-26")  # orbit + collide; pan + bounce + fall; occlusion


@pytest.fixture(scope="module")
def truths() -> dict[str, corrupt.Clip]:
    prompts = {p.id: p for p in load_prompt_set("quick")}
    return {pid: corrupt.render_clip(prompts[pid].scene(), SIZE) for pid in CLIPS}


def scores(clip: corrupt.Clip, truth: corrupt.Clip) -> dict[str, float | None]:
    """Every clip metric of `clip` against the prompt `truth.scene`, oracle-parsed."""
    scene = truth.scene
    got, want = parse_truth(clip.scene, clip.ids), parse_truth(scene, truth.ids)
    out = {
        "text_alignment": text_alignment(clip.frames, scene, got, truth.frames, want),
        "objects_right": objects_right(scene, got, want),
        "objects_exact": objects_right(scene, got, want, exact=True),
        "object_permanence": object_permanence(scene, got, want),
        "consistency_3d": consistency_3d(scene, clip.frames, got, truth.frames, want),
        "physics": physics(scene, got, want),
        "flicker": flicker(clip.frames, truth.frames),
        "smoothness": smoothness(clip.frames, truth.frames),
    }
    return {k: v.value for k, v in out.items()}


def test_truth_scores_at_ceiling(truths):
    for pid, clip in truths.items():
        for name, value in scores(clip, clip).items():
            assert value is None or value > 0.99, (pid, name, value)


# (corruption, clip, metrics that must drop below 0.8). Metrics a corruption cannot concern are left out
# on purpose (a still camera does not change whether a bounce is a parabola).
CASES = [
    ("shuffle", "train-3", ["text_alignment", "consistency_3d", "flicker", "smoothness"]),
    ("shuffle", "train-20", ["physics", "flicker", "smoothness"]),
    ("noise", "train-3", ["text_alignment", "object_permanence", "consistency_3d", "flicker", "smoothness"]),
    ("noise", "train-20", ["physics"]),
    ("freeze", "train-20", ["text_alignment", "physics", "flicker", "smoothness"]),
    ("swap", "train-3", ["text_alignment", "objects_right", "objects_exact"]),
    ("swap", "train-20", ["text_alignment", "objects_right", "physics"]),
    ("noise", "train-26", ["objects_right", "objects_exact"]),
    ("duplicate", "train-3", ["objects_exact"]),
    ("duplicate", "train-26", ["objects_exact"]),
    ("delete", "train-26", ["object_permanence"]),
    ("delete", "train-3", ["object_permanence"]),
    ("static", "train-3", ["text_alignment", "consistency_3d", "flicker", "smoothness"]),
]


def _corrupt(kind: str, clip: corrupt.Clip) -> corrupt.Clip:
    return {
        "shuffle": lambda: corrupt.shuffle_frames(clip),
        "noise": lambda: corrupt.noise_frames(clip),
        "freeze": lambda: corrupt.freeze(clip),
        "swap": lambda: corrupt.swap_colours(clip, SIZE),
        "delete": lambda: corrupt.delete_object(clip, SIZE),
        "static": lambda: corrupt.static_camera(clip, SIZE),
        "duplicate": lambda: corrupt.duplicate(clip, SIZE),
    }[kind]()


@pytest.mark.parametrize("kind,pid,metrics", CASES, ids=[f"{k}-{p}" for k, p, _ in CASES])
def test_corruptions_score_clearly_worse(truths, kind, pid, metrics):
    got = scores(_corrupt(kind, truths[pid]), truths[pid])
    for name in metrics:
        assert got[name] is not None and got[name] < 0.8, (kind, pid, name, got[name])


def test_objects_right_forgives_extra_objects_and_objects_exact_does_not(truths):
    """The "fully right" verdict asks for every named object in its shape and colour: a copy beside them
    keeps a clip right, and only the exact verdict (no more objects than the truth shows) fails it."""
    for pid in CLIPS:
        got = scores(corrupt.duplicate(truths[pid], SIZE), truths[pid])
        assert got["objects_right"] == 1.0 and got["objects_exact"] == 0.0, (pid, got)
        assert got["text_alignment"] < 1.0  # its count part


def test_oracle_parse_structure(truths):
    clip = truths["train-26"]  # a small object passes behind a large one
    parse = parse_truth(clip.scene, clip.ids)
    assert {tr.name for tr in parse.significant()} == {f"{o.colour} {o.shape}" for o in clip.scene.objects}
    mover = next(tr for tr in parse.tracks if tr.name == "{0.colour} {0.shape}".format(clip.scene.objects[0]))
    assert not mover.present.all() and mover.present[0] and mover.present[-1]  # hidden mid-clip, then back


def test_fwd_and_frechet(truths):
    rng = np.random.default_rng(0)
    a = rng.normal(size=(50, 4))
    assert abs(frechet_distance(a, a)) < 1e-6
    assert frechet_distance(a, a + 1.0) == pytest.approx(4.0, rel=1e-6)  # mean shift only
    enc = random_encoder()
    videos = [c.frames for c in truths.values()]
    noise = [corrupt.noise_frames(c, seed=i).frames for i, c in enumerate(truths.values())]
    assert fwd(videos, videos, enc) < 1e-6
    assert fwd(noise, videos, enc) > 10 * (fwd(videos[::-1], videos, enc) + 1e-3)


def test_pixel_and_capability_metrics(truths):
    v = truths["train-3"].frames
    noisy = np.clip(v.astype(int) + np.random.default_rng(0).integers(-40, 40, v.shape), 0, 255).astype(
        np.uint8
    )
    assert psnr(v, v) == 100.0 and ssim(v, v) == pytest.approx(1.0, abs=1e-4)
    assert psnr(noisy, v) < 25 and ssim(noisy, v) < 0.8
    assert i2v_psnr(v, v[0]) == 100.0 and i2v_psnr(v, v[-1]) < 30
    joined = np.concatenate([v[:8], truths["train-20"].frames[8:]])
    assert extend_seam(v, 8) < 2.0 < extend_seam(joined, 8)
    # A cut inside the given frames (where extend fades) counts by what it adds to their own steps.
    early = np.concatenate([v[:5], truths["train-20"].frames[5:]])
    tc = float(np.abs(np.diff(v.astype(np.float32) / 255, axis=0)).mean())
    assert extend_seam(early, 8, tc) < 2.0 < extend_seam(early, 8, tc, given=v[:8])
    # The source's own motion does not count: the clip itself, given its first 8 frames, is seamless.
    assert extend_seam(v, 8, tc, given=v[:8]) == max(1.0, extend_seam(v, 8, tc))
    with pytest.raises(ValueError, match="given must hold 1..8"):
        extend_seam(v, 8, given=v[:9])
    assert connect_psnr(v, v[:2], v[-2:]) == 100.0
    assert loop_closure(np.concatenate([v, v[::-1]])) < loop_closure(v)
    # A jump back to the first frame spread over the last frames still counts: their largest step does.
    jump = np.concatenate([v[:8], v[-1:]])  # the truth clip's first 8 frames, then its last one
    w = np.linspace(0, 1, 5)[:, None, None, None]
    faded = np.concatenate([jump[:-4], ((1 - w) * jump[-5:] + w * jump[:1]).round().astype(np.uint8)[1:]])
    assert np.array_equal(faded[-1], faded[0]) and loop_closure(faded) == 0.0  # the last frame is the first
    assert 1.0 < loop_closure(faded, 4) < loop_closure(jump)  # the jump, spread over 4 steps
    with pytest.raises(ValueError, match="faded"):
        loop_closure(v, len(v) - 1)
    edits = [(s, np.clip(v.astype(float) + 100 * s, 0, 255).astype(np.uint8)) for s in (0.0, 0.3, 0.6, 0.9)]
    assert (
        edit_monotonic(v, edits) == 1.0
        and edit_monotonic(v, [(s, e) for (s, _), (_, e) in zip(edits, edits[::-1], strict=False)]) == 0.0
    )
    with pytest.raises(ValueError, match="uint8"):
        flicker(v.astype(np.float32), v)


def test_ssim_is_the_trainers_with_data_range_1() -> None:
    """The benchmark's SSIM of uint8 frames is the VAE trainer's SSIM (checked against its float64
    definition in test_train) on [0, 1] pixels with the standard constants (0.01 and 0.03 of range 1)."""
    from tessera.train.vae import ssim as frame_ssim

    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (2, 24, 30, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-40, 40, a.shape), 0, 255).astype(np.uint8)
    x, y = (torch.from_numpy(v).double().permute(0, 3, 1, 2) / 255 for v in (a, b))
    want = float(frame_ssim(x, y, data_range=1.0).mean())
    assert ssim(a, b) == pytest.approx(want, abs=1e-6)


def test_components_and_parser_roundtrip(tmp_path, monkeypatch):
    labels = torch.full((1, 6, 6), -1)
    labels[0, :2, :2], labels[0, 4:, 4:], labels[0, :2, 2:4] = 3, 3, 5
    comp = components(labels)
    assert comp[0, 0, 0] == comp[0, 1, 1] != comp[0, 5, 5] and comp[0, 0, 2] not in (0, comp[0, 0, 0])
    assert (comp[labels < 0] == 0).all() and len(torch.unique(comp)) == 4
    torch.manual_seed(0)
    net = SceneParser(ParserConfig(size=32, width=8)).eval()
    save_parser(net, tmp_path / "p", {"detection": 0.0})
    back = load_parser(tmp_path / "p")
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert torch.equal(net(x), back(x))
    parse = parse_video(back, np.zeros((3, 48, 48, 3), np.uint8))
    assert parse.frames == 3 and parse.instances.shape == (3, 32, 32)
    config = json.loads((tmp_path / "p" / "config.json").read_text())
    del config["labels_gate"]  # a folder written before the field existed links as it always did
    (tmp_path / "p" / "config.json").write_text(json.dumps(config))
    assert load_parser(tmp_path / "p").cfg.labels_gate
    (tmp_path / "p" / "config.json").write_text(json.dumps(config | {"labels_gate": False}))
    seen = []
    real = parser_module.link_tracks
    monkeypatch.setattr(parser_module, "link_tracks", lambda *a, **k: seen.append(k) or real(*a, **k))
    parse_video(load_parser(tmp_path / "p"), np.zeros((3, 48, 48, 3), np.uint8))
    assert seen == [{"labels_gate": False}]  # the judge links as its folder says
    assert parse.find_share == 0.0  # and finds named objects as its folder says (default: by vote)
    (tmp_path / "p" / "config.json").write_text(json.dumps(config | {"find_share": 0.3}))
    assert parse_video(load_parser(tmp_path / "p"), np.zeros((3, 48, 48, 3), np.uint8)).find_share == 0.3
    (tmp_path / "p" / "config.json").write_text(json.dumps(config | {"find_share": 30}))
    with pytest.raises(CheckpointError, match=r"find_share must be in \[0, 1\]"):
        load_parser(tmp_path / "p")


def test_gaussian_blur_and_degrade_soften_frames_but_keep_objects_colours():
    """The parser's training degradation: the blur's point spread has the asked-for spread and keeps
    mass, one sigma per image when given several; `degrade` leaves a frame alone at probability 0,
    keeps an object's colour in its middle, stays in range, and is reproducible from its generator (so
    a parser run is too)."""
    from tessera.eval.parser_train import degrade, gaussian_blur

    dot = torch.zeros(1, 1, 41, 41)
    dot[0, 0, 20, 20] = 1
    spread = gaussian_blur(dot, 2.0)[0, 0]
    r2 = (torch.arange(41.0) - 20)[:, None] ** 2 + (torch.arange(41.0) - 20)[None] ** 2
    assert spread.sum() == pytest.approx(1, abs=1e-5)
    assert (spread * r2).sum() / 2 == pytest.approx(4, rel=0.05)  # variance per axis: sigma squared
    assert torch.equal(gaussian_blur(dot, 0.0), dot)
    two = gaussian_blur(torch.cat([dot, dot]), torch.tensor([2.0, 0.0]))  # one sigma per image
    assert torch.allclose(two[:1], spread[None, None], atol=1e-6) and torch.allclose(two[1:], dot, atol=1e-6)
    x = torch.full((6, 3, 64, 64), -0.2)
    x[:, :, 24:40, 24:40] = torch.tensor([1.0, -1.0, -1.0])[:, None, None]  # a red square on grey
    gen = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    assert torch.equal(degrade(x, 0.0, gen()), x)
    y = degrade(x, 1.0, gen())
    assert torch.equal(y, degrade(x, 1.0, gen())) and not torch.equal(y, degrade(x, 1.0, torch.Generator()))
    assert y.abs().max() <= 1 and (y - x).abs().mean() > 0.005
    middle = y[:, :, 30:34, 30:34].mean((2, 3))  # (6, 3): still red in the middle of every copy
    assert (middle[:, 0] - middle[:, 1:].max(1).values > 1.5).all()
    assert ((y - x)[:, :, :8, :8].mean((2, 3)).abs() < 0.05).all()  # far from the edge: tint and noise only


def test_train_parser_records_its_degradation_and_blurred_accuracy(tmp_path, capsys):
    from tessera.eval.parser_train import main, train_parser

    acc = train_parser(tmp_path / "p", steps=2, scenes=2, frames=2, size=64, width=8, batch_size=2,
                       device="cpu", eval_scenes=1, degrade_prob=0.5, log_every=10)  # fmt: skip
    saved = json.loads((tmp_path / "p" / "accuracy.json").read_text())
    assert saved["train"]["degrade_prob"] == 0.5 and "sigma 2.0" in saved["blurred"]["note"]
    for a in (saved, saved["blurred"]):
        assert 0 <= a["count"] <= 1 and 0 <= a["detection"] <= 1
    assert acc["train"] == saved["train"] and load_parser(tmp_path / "p") is not None
    with pytest.raises(ValueError, match=r"degrade_prob must be a probability in \[0, 1\], got 1.5"):
        train_parser(tmp_path / "q", degrade_prob=1.5)
    with pytest.raises(ValueError, match="has width 8 and size 64; asked for width 16 and size 64"):
        train_parser(tmp_path / "q", size=64, width=16, init=tmp_path / "p")
    tuned = train_parser(tmp_path / "t", steps=1, scenes=1, frames=2, size=64, width=8, batch_size=2, lr=0.0,
                         device="cpu", eval_scenes=1, init=tmp_path / "p")  # fmt: skip
    assert tuned["train"]["init"] == str(tmp_path / "p")
    before, after = load_parser(tmp_path / "p").state_dict(), load_parser(tmp_path / "t").state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # started from it (at lr 0, stayed there)
    capsys.readouterr()  # the training's log
    main(["--measure", str(tmp_path / "p"), "--eval-scenes", "1", "--frames", "2", "--size", "64"])
    measured = json.loads(capsys.readouterr().out)
    assert measured["count"] == saved["count"] and measured["blurred"]["count"] == saved["blurred"]["count"]
    with pytest.raises(SystemExit):
        main([])
    assert "give --out DIR to train a parser, or --measure DIR" in capsys.readouterr().err
    for bad, says in (
        (["--out", str(tmp_path / "q"), "--init", str(tmp_path / "none")], "none: no trained scene parser"),
        (["--out", str(tmp_path / "q"), "--degrade", "2"], "degrade_prob must be a probability"),
        (["--measure", str(tmp_path / "none")], "none: no trained scene parser"),
    ):
        with pytest.raises(SystemExit):
            main(bad)
        assert says in capsys.readouterr().err


def test_prompt_sets_are_fixed(tmp_path):
    quick = load_prompt_set("quick")
    assert len(quick) == 8 and {p.split for p in quick} == {"train", "heldout"}
    assert any("occlusion" in p.tags for p in quick) and any("camera:orbit" in p.tags for p in quick)
    rows = json.loads(prompt_file("quick").read_text())
    rows["prompts"][0]["caption"] = "something else"
    (tmp_path / "p.json").write_text(json.dumps(rows))
    with pytest.raises(PromptSetError, match="regenerate"):
        load_prompt_set(tmp_path / "p.json")[0].scene()
    with pytest.raises(PromptSetError, match="allowed"):
        load_prompt_set("medium")


def test_image_suite_scores_images_on_what_they_can_show(tmp_path, monkeypatch):
    """The `image` suite: one-frame prompts whose every object is in view, scored on text alignment and
    objects only (a track seen in an image's one frame counts); the truth through the oracle parser is
    at the ceiling; the report has no time columns; --capabilities is refused."""
    from tessera.eval import EvalError, eval_command
    from tessera.eval.prompts import in_view, load_prompt_set

    prompts = load_prompt_set("image")
    assert len(prompts) == 16 and {p.frames for p in prompts} == {1}
    assert all(in_view([p.scene() for p in prompts[:4]]))
    monkeypatch.setattr("tessera.eval.suite.has_parser", lambda: False)
    res = eval_command(None, "image", tmp_path / "img", truth=True, limit=2, size=(64, 64), device="cpu")
    assert set(res["metrics"]) == {"text_alignment", "objects_right", "objects_exact", "fwd"}
    assert res["metrics"]["objects_right"] == 1.0 and res["metrics"]["text_alignment"] == 1.0
    per_prompt = (tmp_path / "img" / "report.md").read_text().split("## Per prompt")[1]
    assert "| prompt | text_alignment | objects_right | objects_exact |" in per_prompt
    assert "flicker" not in per_prompt
    with pytest.raises(EvalError, match="images"):
        eval_command(Path("m"), "image", tmp_path / "x", capabilities=True)


def test_report_builds_from_tiny_run(tmp_path, monkeypatch):
    from tessera.eval import EvalError, eval_command
    from tessera.eval.report import write_report

    # The oracle parser (renderer ids), so the ceiling is exact whatever parser weights ship; the shipped
    # parser is trained at 128x128 and misreads this 32x32 render.
    monkeypatch.setattr("tessera.eval.suite.has_parser", lambda: False)
    res = eval_command(None, "quick", tmp_path / "truth", truth=True, limit=1, size=(32, 32), device="cpu")
    for name in ("results.json", "report.md", "report.html", "plots/metrics.png", "sheets/train-0.png"):
        assert (tmp_path / "truth" / name).exists(), name
    assert (
        res["metrics"]["text_alignment"] == 1.0
        and "data:image/png;base64," in (tmp_path / "truth" / "report.html").read_text()
    )
    cmp = eval_command(compare=(tmp_path / "truth", tmp_path / "truth"), out=tmp_path / "cmp")
    assert (tmp_path / "cmp" / "compare.html").exists() and cmp["metrics"]["flicker"] == [1.0, 1.0]
    assert cmp["paired"]["flicker"] is None  # one prompt: no interval
    # Several runs a side (comma-separated, paired in order): means over runs and every pair's B − A.
    two = f"{tmp_path / 'truth'},{tmp_path / 'truth'}"
    cmp2 = eval_command(compare=(Path(two), Path(two)), out=tmp_path / "cmp2")
    assert cmp2["metrics"]["flicker"] == [1.0, 1.0] and cmp2["per_run"]["flicker"] == [0.0, 0.0]
    assert "B − A per pair" in (tmp_path / "cmp2" / "compare.md").read_text()
    with pytest.raises(EvalError, match="same number of result folders"):
        eval_command(compare=(Path(two), tmp_path / "truth"), out=tmp_path / "cmp3")
    # A --capabilities run's report shows each prompt's capability scores beside its clip metrics.
    res["prompts"][0]["capabilities"] = {"i2v_psnr": 31.25, "loop_closure": 1.5}
    write_report(res, tmp_path / "truth")
    per_prompt = (tmp_path / "truth" / "report.md").read_text().split("## Per prompt")[1]
    assert "| i2v_psnr | loop_closure |" in per_prompt and "| 31.250 | 1.500 |" in per_prompt
    assert "extend_seam" not in per_prompt  # only the capabilities that were scored
    with pytest.raises(EvalError, match="--suite"):
        eval_command(None, "nope", tmp_path / "x", truth=True)
    with pytest.raises(EvalError, match="MODEL"):
        eval_command(None, "quick", tmp_path / "x", truth=False)


def test_paired_difference_pairs_prompts_by_id_and_brackets_the_mean():
    from tessera.eval.report import paired_difference

    rng = np.random.default_rng(1)
    a = [{"id": f"p{i}", "metrics": {"m": float(v), "gone": None}} for i, v in enumerate(rng.random(40))]
    b = [{"id": r["id"], "metrics": {"m": r["metrics"]["m"] + 0.1 + 0.02 * rng.standard_normal()}} for r in a]
    d = paired_difference({"prompts": a}, {"prompts": b[::-1]}, "m")  # order does not matter, ids do
    assert d["prompts"] == 40 and d["mean"] == pytest.approx(0.1, abs=0.01)
    assert d["low"] < d["mean"] < d["high"] and d["high"] - d["low"] < 0.02  # the values' spread cancels
    assert d == paired_difference({"prompts": a}, {"prompts": b}, "m")  # fixed seed: reruns agree
    same = paired_difference({"prompts": a}, {"prompts": a}, "m")
    assert same["mean"] == same["low"] == same["high"] == 0
    assert paired_difference({"prompts": a}, {"prompts": b}, "gone") is None
    # Runs paired in order (seeds): each prompt's difference is its mean over the pairs, and only prompts
    # that every pair scored count.
    c = [{"id": r["id"], "metrics": {"m": r["metrics"]["m"] + 0.3}} for r in a[:30]]
    two = paired_difference([{"prompts": a}, {"prompts": a}], [{"prompts": b}, {"prompts": c}], "m")
    diffs = [(y["metrics"]["m"] - x["metrics"]["m"] + 0.3) / 2 for x, y in zip(a[:30], b[:30], strict=True)]
    assert two["prompts"] == 30 and two["mean"] == pytest.approx(np.mean(diffs))
    # Capability scores (kept beside the clip metrics after --capabilities) are paired the same way.
    ca = [{"id": r["id"], "metrics": {}, "capabilities": {"loop_closure": r["metrics"]["m"]}} for r in a]
    cb = [{"id": r["id"], "metrics": {}, "capabilities": {"loop_closure": r["metrics"]["m"]}} for r in b]
    assert paired_difference({"prompts": ca}, {"prompts": cb}, "loop_closure") == d


def test_eval_seed_guidance_and_sampler_replace_the_suites_sampler_settings(tiny_model_dir, tmp_path):
    from tessera.eval import EvalError, eval_command

    torch.manual_seed(0)  # a tiny random judge: this test reads the settings and the videos, not scores
    judge = save_parser(SceneParser(ParserConfig(size=32, width=8)).eval(), tmp_path / "judge")

    def run(name: str, **kw) -> tuple[dict, bytes]:
        res = eval_command(
            tiny_model_dir, "quick", tmp_path / name, limit=1, size=(32, 32), steps=2, device="cpu",
            parser=judge, **kw,
        )  # fmt: skip
        return res, (tmp_path / name / "sheets" / "train-0.png").read_bytes()

    (default, sheet), (zero, sheet0), (one, sheet1) = run("d"), run("s0", seed=0), run("s1", seed=1)
    assert default["settings"]["seed"] == zero["settings"]["seed"] == 0 and one["settings"]["seed"] == 1
    assert sheet == sheet0 and sheet != sheet1  # the same video for the suite's own seed, another for seed 1
    five, sheet5 = run("g5", guidance=5.0)
    two, sheet2 = run("g2", guidance=2.0)
    assert default["settings"]["guidance"] == five["settings"]["guidance"] == 5.0 and sheet5 == sheet
    assert two["settings"] == {**default["settings"], "guidance": 2.0} and sheet2 != sheet
    heun, sheet_heun = run("heun", sampler="heun")
    assert default["settings"]["sampler"] == "euler" and heun["settings"]["sampler"] == "heun"
    assert sheet_heun != sheet  # a second-order step: another video from the same noise
    whole, sheet_whole = run("gi01", guidance_interval=(0.0, 1.0))
    part, sheet_part = run("gi", guidance_interval=(0.3, 0.7))
    assert default["settings"]["guidance_interval"] is None and part["settings"]["guidance_interval"] == (
        0.3,
        0.7,
    )
    assert sheet_whole == sheet and sheet_part != sheet  # guidance at every time is the default

    def conditional_only(v_c, v_u, x, t, g):  # a guidance rule passed in: the caption's branch alone
        return v_c

    ruled, sheet_ruled = run("rule", guidance_rule=conditional_only)
    assert (
        default["settings"]["guidance_rule"] == "cfg"
        and ruled["settings"]["guidance_rule"] == "conditional_only"
    )
    assert sheet_ruled != sheet
    for bad, message in (
        ({"guidance": -1.0}, "--guidance must be a finite number >= 0"),
        ({"steps": 0}, "--steps must"),
        ({"sampler": "rk4"}, "--sampler must be one of euler, heun; got 'rk4'"),
        ({"guidance_interval": (0.8, 0.2)}, "--guidance-interval must be LO,HI with 0 <= LO < HI <= 1"),
    ):
        with pytest.raises(EvalError, match=message):
            eval_command(tiny_model_dir, "quick", tmp_path / "bad", limit=1, **bad)


def test_guidance_variants_bench_passes_its_rule_to_eval(tiny_model_dir, tmp_path):
    """bench/guidance_variants.py runs `tessera eval` with its flags as given and its rule passed in (no
    patching): apg-e1 is plain guidance up to rounding, apg-e0 guides differently."""
    import importlib.util

    from tessera.eval import eval_command

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location(
        "guidance_variants", root / "bench" / "guidance_variants.py"
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    flags = [str(tiny_model_dir), "--limit", "1", "--size", "32x32", "--steps", "2", "--device", "cpu"]
    for variant in ("apg-e1", "apg-e0"):
        bench.main(["guidance_variants.py", variant, "--", "eval", *flags, "-o", str(tmp_path / variant)])
    plain = eval_command(
        tiny_model_dir, "quick", tmp_path / "plain", limit=1, size=(32, 32), steps=2, device="cpu"
    )
    one, zero = (json.loads((tmp_path / v / "results.json").read_text()) for v in ("apg-e1", "apg-e0"))
    assert one["settings"] == {**plain["settings"], "guidance_rule": "apg-e1"}
    assert zero["settings"]["guidance_rule"] == "apg-e0"
    for name, value in plain["metrics"].items():
        assert one["metrics"][name] == pytest.approx(value, abs=1e-3), name
    assert zero["prompts"][0]["details"] != one["prompts"][0]["details"]
    with pytest.raises(SystemExit, match="--guidance"):
        bench.main(["guidance_variants.py", "apg", "--", "eval", *flags, "--guidance", "nan"])


def test_vae_only_scores_the_vae_round_trip_of_the_truth(tiny_model_dir, tmp_path, monkeypatch):
    """`--vae-only` samples nothing: the left half of each sheet is the model's VAE round trip of the truth
    render (the right half), and the scores are those of that round trip."""
    from tessera.eval import EvalError, eval_command
    from tessera.eval.corrupt import render_clip
    from tessera.eval.prompts import load_prompt_set
    from tessera.eval.recon import vae_roundtrip
    from tessera.eval.score import Score
    from tessera.pipeline import load

    def no_sampling(*a, **k):
        raise AssertionError("--vae-only must not sample")

    monkeypatch.setattr("tessera.eval.suite._generate", no_sampling)
    seen = []
    monkeypatch.setattr("tessera.eval.suite.flicker", lambda video, truth: seen.append(video) or Score(0.5))
    res = eval_command(
        tiny_model_dir, "quick", tmp_path / "v", limit=1, size=(32, 32), device="cpu", vae_only=True
    )
    truth = render_clip(load_prompt_set("quick")[0].scene(), (32, 32), "cpu").frames
    want = vae_roundtrip(load(tiny_model_dir, "cpu").vae, truth)
    assert res["vae_only"] and np.array_equal(seen[0], want) and not np.array_equal(want, truth)
    assert "VAE round trip" in (tmp_path / "v" / "report.md").read_text()
    with pytest.raises(EvalError, match="--vae-only"):
        eval_command(None, "quick", tmp_path / "x", truth=True, vae_only=True)


def test_eval_scores_given_clips_as_it_scored_them_when_kept(tiny_model_dir, tmp_path, monkeypatch):
    """`--keep-videos` writes each scored clip losslessly; `--videos` scores such a folder (or clips made
    elsewhere, named by prompt id) without a model, and gives the same scores: the truth's frames score
    as the truth does, a model's kept clips as the model's run did."""
    from tessera.eval import EvalError, eval_command

    kw = dict(limit=2, size=(32, 32), device="cpu")
    truth = eval_command(None, "quick", tmp_path / "t", truth=True, keep_videos=True, **kw)
    ids = [r["id"] for r in truth["prompts"]]  # train-0, train-3
    assert sorted(f.name for f in (tmp_path / "t" / "videos").iterdir()) == sorted(ids)
    given = eval_command(None, "quick", tmp_path / "tv", videos=tmp_path / "t" / "videos", **kw)
    assert given["videos"] and not given["truth"] and given["model"] is None
    for name, value in truth["metrics"].items():
        if name != "fwd":  # the truth's own fwd is 0 by definition; given clips are measured
            assert given["metrics"][name] == value, name
    assert given["metrics"]["fwd"] == pytest.approx(0.0, abs=1e-6)
    model = eval_command(tiny_model_dir, "quick", tmp_path / "m", steps=2, keep_videos=True, **kw)
    again = eval_command(None, "quick", tmp_path / "mv", videos=tmp_path / "m" / "videos", **kw)
    assert [r["details"] for r in again["prompts"]] == [r["details"] for r in model["prompts"]]
    assert again["metrics"]["fwd"] == pytest.approx(model["metrics"]["fwd"], rel=1e-6)
    assert "the clips in" in (tmp_path / "mv" / "report.md").read_text()

    # Refused in one line before any rendering or scoring: a missing clip, a wrong length or size, and a
    # model given as well.
    def no_work(*a, **k):
        raise AssertionError("refuse before any work")

    monkeypatch.setattr("tessera.eval.suite.render_clip", no_work)
    (tmp_path / "few").mkdir()
    (tmp_path / "t" / "videos" / "train-0").rename(tmp_path / "few" / "train-0")
    with pytest.raises(EvalError, match=f"no single clip named {ids[1]} "):
        eval_command(None, "quick", tmp_path / "x", videos=tmp_path / "few", **kw)
    with pytest.raises(EvalError, match=r"needs 17 frames of 64x64 \(--size"):
        eval_command(
            None, "quick", tmp_path / "x", videos=tmp_path / "m" / "videos", **kw | {"size": (64, 64)}
        )
    short = tmp_path / "short"
    for i in ids:
        (short / i).mkdir(parents=True)
        for f in sorted((tmp_path / "m" / "videos" / i).iterdir())[:5]:
            f.rename(short / i / f.name)
    with pytest.raises(EvalError, match="is 5 frames of 32x32; prompt train-0 needs 17 frames"):
        eval_command(None, "quick", tmp_path / "x", videos=short, **kw)
    with pytest.raises(EvalError, match="give one of"):
        eval_command(tiny_model_dir, "quick", tmp_path / "x", videos=short, **kw)
    with pytest.raises(EvalError, match="--videos must be a folder"):
        eval_command(None, "quick", tmp_path / "x", videos=tmp_path / "nothing", **kw)


def test_long_permanence_counts_objects_kept_after_the_first_segment():
    from tessera.eval.capability import long_permanence

    present = {("cube", "red"): [1] * 8 + [1] * 4 + [0] * 4, ("sphere", "blue"): [0] * 16}
    tracks = {k: type("T", (), {"present": np.array(v, bool)})() for k, v in present.items()}
    parse = type("P", (), {"find": lambda self, shape, colour: tracks.get((shape, colour))})()
    segments = [(0, 8), (8, 12), (12, 16)]
    # the red cube is drawn at first and kept through one of the two later segments; the blue sphere is
    # never drawn (not counted: nothing to keep); a cone has no track at all
    assert long_permanence([("cube", "red"), ("sphere", "blue"), ("cone", "green")], parse, segments) == 0.5
    assert long_permanence([("sphere", "blue")], parse, segments) == 0.0


def test_capability_scores_on_a_truth_clip(tiny_model_dir, tmp_path):
    """Each conditioned capability runs on a world clip and scores in range; image-to-video holds the given
    frame's latent exactly, so its i2v_psnr is the VAE's own reconstruction of that still."""
    from tessera import pipeline
    from tessera.checkpoint import load_model
    from tessera.eval import EvalError, eval_command
    from tessera.eval.capability import CAPABILITY_METRICS, capability_scores, recolour

    model = load_model(tiny_model_dir, "cpu")
    prompt = load_prompt_set("quick")[0]
    truth = corrupt.render_clip(prompt.scene(), (32, 32), "cpu").frames[:9]
    lengths = []

    def parse_fn(video):  # a parse in which the prompt's first object is seen in every frame
        lengths.append(len(video))
        track = type("T", (), {"present": np.ones(len(video), bool)})()
        return type(
            "P", (), {"find": lambda self, shape, colour: track if (shape, colour) == objects[0] else None}
        )()

    objects = [(o.shape, o.colour) for o in prompt.scene().objects]
    scores = capability_scores(model, prompt.caption, truth, {"steps": 2, "seed": 0}, objects, parse_fn)
    assert set(scores) == set(CAPABILITY_METRICS) and all(np.isfinite(v) for v in scores.values())
    assert lengths == [1 + 4 * 8] and scores["long_permanence"] == 1.0  # 4x the 9-frame clip, kept throughout
    assert 0 <= scores["edit_monotonic"] <= 1 and scores["loop_closure"] >= 0
    still = pipeline.decode(model, pipeline.encode(model, torch.as_tensor(truth[:1]))).numpy()
    assert scores["i2v_psnr"] == pytest.approx(psnr(still, truth[:1]), abs=0.05)
    from tessera.world.scene import COLOURS

    words = recolour("A small red cube and a blue sphere.").split(" ")
    assert words[2] in COLOURS and words[2] != "red" and " ".join(words[3:]) == "cube and a blue sphere."
    assert recolour("no colour here") == "no colour here"
    with pytest.raises(EvalError, match="capabilities"):
        eval_command(None, "quick", tmp_path / "x", truth=True, capabilities=True)


def test_linking_without_the_labels_gate_keeps_a_flickering_object_one_track():
    """A still object whose shape label flips every frame, and a second one far away: gated by its
    labels, the linker starts a new track at each flip (one object counted as several); gated by distance
    alone (labels only rank), it stays one track, and the far object stays its own."""
    from tessera.eval.tracks import Detection, link_tracks

    def det(f: int, shape: int, x: float) -> Detection:
        return Detection(f, shape, 0, 1, (x, 0.5), 0.01, (x - 0.05, 0.45, x + 0.05, 0.55))

    frames = 8
    dets = [det(f, f % 2, 0.3 + 0.01 * f) for f in range(frames)] + [det(f, 2, 0.9) for f in range(frames)]
    gated = link_tracks(dets, frames)
    free = link_tracks(dets, frames, labels_gate=False)
    assert len(gated) > 2  # the flips split the near object
    assert len(free) == 2 and sorted(t.frames_present() for t in free) == [frames, frames]
    assert {round(float(np.nanmean(t.centroid[:, 0])), 1) for t in free} == {0.3, 0.9}


def test_finding_a_named_object_by_share_finds_a_flickering_one_the_vote_misses():
    """A track whose shape reads cube in 3 of 5 frames (area 0.02 each) and sphere in 2 (area 0.01):
    its vote says cube, so the vote finds no sphere; its sphere share is 0.02 / 0.08 = 0.25 (area-weighted),
    so `find_share` 0.2 finds it and 0.3 does not; of two tracks the one carrying the labels most wins."""
    from tessera.eval.tracks import COLOUR_NAMES, SHAPES, ClipParse, Detection, link_tracks

    cube, sphere, red = SHAPES.index("cube"), SHAPES.index("sphere"), COLOUR_NAMES.index("red")

    def det(f: int, shape: int, x: float, area: float) -> Detection:
        return Detection(f, shape, red, 1, (x, 0.5), area, (x - 0.05, 0.45, x + 0.05, 0.55))

    dets = [det(f, sphere if f in (1, 3) else cube, 0.3, 0.02 if f not in (1, 3) else 0.01) for f in range(5)]
    tracks = link_tracks(dets, 5, labels_gate=False)
    assert len(tracks) == 1 and tracks[0].name == "red cube"
    assert tracks[0].share(sphere, red) == pytest.approx(0.25) and tracks[0].share(
        cube, red
    ) == pytest.approx(0.75)
    parse = lambda share, tr=tracks: ClipParse(tr, 5, np.zeros((5, 4, 4), np.int16), dets, share)
    assert parse(0.0).find("sphere", "red") is None and parse(0.0).find("cube", "red") is tracks[0]
    assert parse(0.2).find("sphere", "red") is tracks[0] and parse(0.3).find("sphere", "red") is None
    more = [det(f, sphere, 0.8, 0.01) for f in range(5)]  # a second, all-sphere track far away
    both = link_tracks(dets + more, 5, labels_gate=False)
    assert len(both) == 2 and parse(0.2, both).find("sphere", "red").share(sphere, red) == 1.0
