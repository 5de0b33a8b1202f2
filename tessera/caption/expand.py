"""Prompt expansion: a short prompt -> a detailed caption in the training distribution.

`expand("red ball bouncing", seed=0)` reads the stated facts (`parse.parse`), builds a world `Scene`
that keeps every one of them and draws everything else from the world's own distribution (the
sampler's per-object placement, sizes, materials, camera and light), then writes the scene's detailed
caption with the world's caption function, so the text is exactly what the DiT was trained on. The
fills are a pure function of (prompt, seed). Words outside the world's vocabulary are reported with a
message of what the model knows.

`expand_with_lm(prompt, model_dir)` is the optional path through a local causal language model
(`transformers`, imported only there).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from pathlib import Path

from tessera.caption.parse import Facts, ObjectFacts, parse
from tessera.world.captions import detailed_caption, place
from tessera.world.sampler import STATIC_CAMERA_MOTIONS, WorldConfig, WorldSampler, _paths_clear
from tessera.world.scene import (
    CAMERA_MOVES,
    COLOURS,
    GROUNDS,
    MATERIALS,
    MOTIONS,
    PAIR_MOTIONS,
    ROLLING_SHAPES,
    SHAPES,
    SIZES,
    TIMES_OF_DAY,
    CameraPath,
    Object,
    Scene,
)

ATTEMPTS = 400  # scene draws tried before dropping the path-clearance check


@dataclass
class Expansion:
    """The detailed caption, the facts read from the prompt, words the model does not know, and the
    world scene the caption describes."""

    caption: str
    facts: Facts
    unknown_words: list[str]
    scene: Scene

    @property
    def warnings(self) -> list[str]:
        """One line naming the unknown words and what the model knows, or nothing."""
        if not self.unknown_words:
            return []
        return [f"the model has never seen the words {', '.join(repr(w) for w in self.unknown_words)}; "
                f"it ignores them. {vocabulary_message()}"]  # fmt: skip


def vocabulary_message() -> str:
    """What the world (and so the model) knows, in one paragraph."""
    motions = ", ".join(m.replace("_", " ") for m in MOTIONS)
    return (
        f"It knows shapes ({', '.join(SHAPES)}), colours ({', '.join(COLOURS)}), sizes ({', '.join(SIZES)}), "
        f"materials ({', '.join(MATERIALS)}), motions ({motions}), camera moves ({', '.join(CAMERA_MOVES)}), "
        f"grounds ({', '.join(GROUNDS)}) and times of day ({', '.join(TIMES_OF_DAY)}); up to 4 objects."
    )


def expand(prompt: str, seed: int = 0) -> Expansion:
    """Expand a short prompt into a detailed caption; deterministic per (prompt, seed)."""
    if not isinstance(prompt, str):
        raise ValueError(f"prompt must be a string, got {type(prompt).__name__}")
    facts = parse(prompt)
    rng = random.Random(f"expand:{seed}:{prompt.strip().lower()}")
    scene = build_scene(facts, rng, seed)
    return Expansion(detailed_caption(scene), facts, facts.unknown_words, scene)


def expand_for_generate(prompt: str, seed: int = 0) -> tuple[str, list[str]]:
    """What `tessera generate` calls: (expanded caption, warnings to print)."""
    e = expand(prompt, seed)
    return e.caption, e.warnings


def build_scene(facts: Facts, rng: random.Random, seed: int) -> Scene:
    """A scene holding every stated fact; the rest drawn like the world sampler draws it."""
    sampler = WorldSampler(WorldConfig(heldout=()), "train")
    stated = [replace(ob) for ob in facts.objects]
    if not stated:  # nothing stated: a whole world scene, with any stated setting
        stated = [ObjectFacts() for _ in range(facts.count or rng.randint(1, 2))]
    scene = None
    for attempt in range(ATTEMPTS):
        objects = _draw_objects(sampler, stated, rng)
        if objects is None:
            continue
        scene = _scene(objects, facts, rng, seed)
        if attempt == ATTEMPTS - 1 or _paths_clear(scene):
            return scene
    raise RuntimeError(f"could not build a scene for the stated facts {facts}")


def _scene(objects: list[Object], facts: Facts, rng: random.Random, seed: int) -> Scene:
    still = any(o.motion in STATIC_CAMERA_MOTIONS for o in objects)
    move = facts.camera or ("static" if still else rng.choice(tuple(CAMERA_MOVES)))
    direction = facts.camera_direction or rng.choice(CAMERA_MOVES[move])
    camera = CameraPath(move=move, direction=direction, distance=rng.uniform(7.5, 9.0),
                        height=rng.uniform(2.5, 3.5), fov=rng.uniform(40.0, 52.0))  # fmt: skip
    return Scene(
        objects=tuple(objects), camera=camera, ground=facts.ground or rng.choice(GROUNDS),
        time_of_day=facts.time_of_day or rng.choice(TIMES_OF_DAY), seed=rng.getrandbits(31) ^ seed,
    )  # fmt: skip


def _draw_objects(
    sampler: WorldSampler, stated: list[ObjectFacts], rng: random.Random
) -> list[Object] | None:
    """One draw of all objects: each stated object through the sampler's placement for its motion
    (a pair motion brings its partner along), attributes overwritten by the stated ones; None when a
    stated direction or place did not come out (the caller draws again)."""
    out: list[dict] = []
    slot = {}  # stated index -> object index
    for i, ob in enumerate(stated):
        if i in slot:
            continue
        motion = ob.motion or _motion_for(ob, stated, i, rng)
        shape = ob.shape or rng.choice([s for s in SHAPES if motion != "roll" or s in ROLLING_SHAPES])
        if motion == "roll" and shape not in ROLLING_SHAPES:
            motion = "slide"  # a cube cannot roll; the world slides it (the motion was not stated)
        colour = ob.colour or rng.choice(tuple(COLOURS))
        unit = sampler._unit(rng, motion, len(out), (shape, colour, motion))
        slot[i] = len(out)
        unit[0] |= _stated_attrs(ob)
        if motion in PAIR_MOTIONS:
            partner = ob.partner if ob.partner is not None and ob.partner not in slot else None
            if partner is not None:
                slot[partner] = len(out) + 1
                unit[1] |= _stated_attrs(stated[partner]) | _partner_motion(stated[partner], motion)
        out += unit
    objects = []
    for attrs in out:
        if attrs["motion"] == "roll" and attrs["shape"] not in ROLLING_SHAPES:
            return None
        objects.append(Object(**attrs))
    for i, ob in enumerate(stated):
        got = objects[slot[i]]
        if (ob.direction and got.direction != ob.direction) or (
            ob.place and not place(got).startswith(ob.place)
        ):
            return None
    return objects


def _motion_for(ob: ObjectFacts, stated: list[ObjectFacts], i: int, rng: random.Random) -> str:
    """A motion for an object whose motion was not stated: a pair motion only when a partner is free."""
    partnered = any(o.partner == i for o in stated)
    choices = [
        m for m in MOTIONS if m not in PAIR_MOTIONS and (m != "roll" or ob.shape in (None, *ROLLING_SHAPES))
    ]
    return "static" if partnered else rng.choice(choices)


def _stated_attrs(ob: ObjectFacts) -> dict:
    keys = ("shape", "colour", "size", "material")
    return {k: getattr(ob, k) for k in keys if getattr(ob, k) is not None}


def _partner_motion(ob: ObjectFacts, pair_motion: str) -> dict:
    """A stated partner keeps a stated motion that fits its role (the orbit centre may spin)."""
    if ob.motion in ("static", "spin") and pair_motion == "orbit":
        return {"motion": ob.motion}
    return {}


def expand_with_lm(prompt: str, model_dir: str | Path, seed: int = 0, max_new_tokens: int = 160) -> str:
    """Expand with a local causal language model (a `transformers` folder): it is shown the world's
    rule-based expansion as an example and asked for a detailed caption of `prompt`; sampling is seeded.
    Needs `transformers` installed (it is not a dependency of tessera)."""
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as e:
        raise ImportError(
            "expand_with_lm needs the 'transformers' package (pip install transformers); the built-in "
            "expand() needs nothing extra"
        ) from e
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ValueError(f"{model_dir}: language model folder not found (give a transformers model folder)")
    tok = AutoTokenizer.from_pretrained(model_dir)
    lm = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    example = expand("a red sphere bouncing", seed=seed).caption
    text = (f"Short: a red sphere bouncing\nDetailed: {example}\n"
            f"Short: {prompt.strip()}\nDetailed:")  # fmt: skip
    ids = tok(text, return_tensors="pt").input_ids
    torch.manual_seed(seed)
    with torch.no_grad():
        out = lm.generate(ids, max_new_tokens=max_new_tokens, do_sample=True, top_p=0.9,
                          pad_token_id=tok.eos_token_id if tok.eos_token_id is not None else 0)  # fmt: skip
    return tok.decode(out[0, ids.shape[1] :], skip_special_tokens=True).split("\n")[0].strip()
