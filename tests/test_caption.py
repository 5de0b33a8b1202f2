"""Captioner, caption parsing, attribute scores and prompt expansion (CPU, tiny)."""

from __future__ import annotations

import dataclasses
import importlib.util

import pytest
import torch

from tessera.caption.expand import expand, expand_for_generate, expand_with_lm
from tessera.caption.metrics import score, summarise
from tessera.caption.model import CAPTIONER_PRESETS, Captioner, beam_search, caption_loss, greedy, prepare
from tessera.caption.parse import ParseError, parse, scene_facts
from tessera.caption.train import CaptionerTrainConfig, train_captioner, world_clips
from tessera.caption.weights import CaptionerBundle, caption_clips, load_captioner, save_captioner
from tessera.models.text import Tokenizer
from tessera.world import WorldSampler, detailed_caption

FACT_KEYS = ("shape", "colour", "size", "material", "motion")


def _objects(facts, keys=FACT_KEYS):
    return [tuple(getattr(o, k) for k in keys) for o in facts.objects]


def test_parse_reads_world_captions_exactly():
    sampler = WorldSampler()
    for seed in range(150):
        scene = sampler.sample(seed)
        facts, truth = parse(detailed_caption(scene)), scene_facts(scene)
        assert _objects(facts) == _objects(truth), detailed_caption(scene)
        assert [o.partner for o in facts.objects] == [o.partner for o in truth.objects]
        assert (facts.camera, facts.ground, facts.time_of_day) == (
            truth.camera,
            truth.ground,
            truth.time_of_day,
        )
        assert facts.unknown_words == []


def test_parse_synonyms_numbers_and_unknown_words():
    f = parse("two big grey boxes and a tiny metallic ball bouncing, camera pans left at dusk on the beach")
    assert _objects(f) == [("cube", "gray", "large", None, None)] * 2 + [
        ("sphere", None, "small", "shiny", "bounce")
    ]
    assert (f.camera, f.camera_direction, f.time_of_day, f.ground) == ("pan", "left", "sunset", "sand")
    assert parse("a dog chasing a red ball").unknown_words == ["chasing", "dog"]
    with pytest.raises(ParseError, match="at most 4"):
        parse("five red cubes")


def test_scores_are_one_on_truth_and_drop_on_a_wrong_colour():
    scene = WorldSampler().sample(3)
    text = detailed_caption(scene)
    s = summarise(score(text, scene))
    assert s["attribute_f1"] == 1.0 and s["motion_accuracy"] == 1.0 and s["camera_accuracy"] == 1.0
    ob = scene.objects[0]
    other = "pink" if ob.colour != "pink" else "cyan"
    wrong = text.replace(f"{ob.colour} {ob.shape}", f"{other} {ob.shape}")
    n = len(scene.objects)
    assert summarise(score(wrong, scene))["colour_f1"] == pytest.approx((n - 1) / n)


PROMPTS = [
    "red ball bouncing",
    "a grey box sliding to the left on grass at night",
    "two red cubes",
    "a big shiny blue ball rolling to the right and a small green cone spinning",
    "a red cube orbiting a blue sphere",
    "a white sphere colliding with a pink cone at sunset",
    "a purple pyramid passing behind a large gray cube",
    "a cyan cone moving toward the camera, camera static",
    "orange octahedron falling on a wooden floor in the morning",
    "a yellow cylinder leaving the frame to the right and coming back",
    "camera tilts up over a black matte cube",
]


@pytest.mark.parametrize("prompt", PROMPTS)
def test_expansion_keeps_every_stated_fact_and_is_deterministic(prompt):
    stated = parse(prompt)
    e = expand(prompt, seed=5)
    got = parse(e.caption)
    assert len(got.objects) >= len(stated.objects)
    for want, have in zip(stated.objects, got.objects, strict=False):
        for key in (*FACT_KEYS, "direction", "partner"):
            if getattr(want, key) is not None:
                assert getattr(have, key) == getattr(want, key), (key, e.caption)
    for key in ("camera", "camera_direction", "ground", "time_of_day"):
        if getattr(stated, key) is not None:
            assert getattr(got, key) == getattr(stated, key), (key, e.caption)
    assert expand(prompt, seed=5).caption == e.caption
    assert len({expand(prompt, seed=s).caption for s in range(4)}) > 1  # unstated facts vary by seed


def test_expansion_warns_about_unknown_words():
    caption, warnings = expand_for_generate("a dog chasing a red ball", seed=0)
    assert "red sphere" in caption
    assert len(warnings) == 1 and "'chasing', 'dog'" in warnings[0] and "octahedron" in warnings[0]
    assert expand_for_generate("a red ball", seed=0)[1] == []


def test_expand_with_lm_needs_transformers_or_a_folder(tmp_path):
    if importlib.util.find_spec("transformers") is None:
        with pytest.raises(ImportError, match="transformers"):
            expand_with_lm("a red ball", tmp_path)
    else:
        with pytest.raises(ValueError, match="not found"):
            expand_with_lm("a red ball", tmp_path / "missing")


@pytest.fixture(scope="module")
def clips():
    cfg = CAPTIONER_PRESETS["tiny"]
    frames, scenes = world_clips(cfg, "train", [11, 12, 13], torch.device("cpu"))
    return cfg, frames, [detailed_caption(s) for s in scenes]


def test_tiny_captioner_overfits_a_few_clips_to_exact_captions(clips, tmp_path):
    cfg, frames, texts = clips
    tok = Tokenizer.train(texts * 4, 512)
    cfg = dataclasses.replace(cfg, vocab_size=tok.vocab_size)
    torch.manual_seed(0)
    model = Captioner(cfg)
    video = frames.permute(0, 4, 1, 2, 3).float() / 127.5 - 1.0
    ids, mask = tok.encode(texts, cfg.max_len)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(250):
        loss = caption_loss(model, video, ids, mask)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    want = [t.lower() for t in texts]
    assert [tok.decode(r) for r in greedy(model, video, tok.bos_id)] == want
    assert [tok.decode(r) for r in beam_search(model, video, tok.bos_id, beams=3)] == want
    bundle = CaptionerBundle(model, tok)
    save_captioner(bundle, tmp_path / "cap")
    loaded = load_captioner(tmp_path / "cap")
    assert all(
        torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), loaded.model.state_dict().values(), strict=True)
    )
    assert caption_clips(loaded, list(frames)) == want  # prepare() is the identity at the input size
    assert prepare(frames[0], cfg).shape == (3, cfg.frames, cfg.size, cfg.size)


def test_trainer_smoke_and_resume(tmp_path):
    cfg = CaptionerTrainConfig(
        preset="tiny", steps=2, batch_size=2, pool=2, tokenizer_corpus=20, eval_clips=1, beam_clips=1,
        device="cpu", ckpt_every=1, log_every=1,
    )  # fmt: skip
    out = train_captioner(cfg, str(tmp_path / "run"))
    assert out["step"] == 2 and (tmp_path / "run" / "model" / "metrics.json").exists()
    with pytest.raises(ValueError, match="already holds"):
        train_captioner(cfg, str(tmp_path / "run"))
    more = train_captioner(dataclasses.replace(cfg, steps=3), str(tmp_path / "run"), resume=True)
    assert more["step"] == 3
    assert 0.0 <= more["metrics"]["heldout_greedy"]["attribute_f1"] <= 1.0
