"""Prompt expansion: a short prompt -> a detailed caption in the training distribution.

`expand("red ball bouncing", seed=0)` reads the stated facts (`parse.parse`), builds a world `Scene`
that keeps every one of them and draws everything else from the world's own distribution (the
sampler's per-object placement, sizes, materials, camera and light), then writes the scene's detailed
caption with the world's caption function, so the text is exactly what the DiT was trained on. The
fills are a pure function of (prompt, seed). Words outside the world's vocabulary are reported with a
message of what the model knows.

`expand_with_lm(prompt, model_dir, seed)` is the optional path through a local causal language model
(`transformers`, imported only there, local files only): a fixed instruction with worked examples, seeded
sampling, and a check (`missing_facts`, through the same parser) that every stated fact survives; when one
does not, the rule-based caption is used with a warning.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from itertools import permutations
from pathlib import Path

import torch

from tessera.caption.parse import Facts, ObjectFacts, ParseError, parse
from tessera.caption.weights import caption_clips, load_captioner
from tessera.world.captions import detailed_caption, place, short_caption
from tessera.world.sampler import STATIC_CAMERA_MOTIONS, WorldConfig, WorldSampler, draw_camera, paths_clear
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


def expand_for_generate(prompt: str, seed: int = 0, lm: str | Path | None = None) -> tuple[str, list[str]]:
    """What `tessera generate` calls: (expanded caption, warnings to print); through the local language
    model folder `lm` when one is given (`expand_with_lm`)."""
    if lm is not None:
        e = expand_with_lm(prompt, lm, seed)
        return e.caption, e.warnings
    e = expand(prompt, seed)
    return e.caption, e.warnings


def expand_grounded(prompt: str, reading: str, seed: int = 0) -> Expansion:
    """Expand `prompt` for a command that is given frames (animate, extend, connect, loop --video,
    edit): `reading` is the captioner's caption of those frames, and every fact the prompt leaves
    open comes from it (ground, time of day, camera, the objects and their looks), so the caption
    describes the scene the frames show; the prompt's own words override only what they name. Where
    what the frames show cannot stand beside what the prompt says in one scene (a seen object's place
    against a stated collision with it), the reading gives way: first its places and directions, then
    its objects (its setting stays)."""
    if not isinstance(prompt, str):
        raise ValueError(f"prompt must be a string, got {type(prompt).__name__}")
    user = parse(prompt)
    try:
        seen = parse(reading)
    except ParseError:  # a reading the world cannot hold (e.g. frames from elsewhere): the prompt alone
        seen = Facts()
    key = f"expand:{seed}:{prompt.strip().lower()}:{reading}"

    def grounded(held: Facts) -> Expansion:
        facts = merge_facts(held, user)
        scene = build_scene(facts, random.Random(key), seed)
        return Expansion(detailed_caption(scene), facts, user.unknown_words, scene)

    unplaced = replace(seen, objects=[replace(ob, place=None, direction=None) for ob in seen.objects])
    for held in (seen, unplaced):
        try:
            return grounded(held)
        except ParseError:
            pass
    return grounded(replace(seen, objects=[]))  # the reading's setting alone; refused if even that fails


def grounded_caption(prompt: str, frames, seed: int = 0, captioner=None) -> tuple[str, str, list[str]]:
    """(expanded caption, the captioner's reading of `frames` (T, H, W, 3) uint8, warnings): what the
    conditioned commands expand to, as the CLI and the capability benchmark both run it. `captioner`:
    a loaded `CaptionerBundle` (default: the shipped one, on the CPU)."""
    reading = caption_clips(captioner or load_captioner(), [frames])[0]
    e = expand_grounded(prompt, reading, seed)
    return e.caption, reading, e.warnings


def merge_facts(seen: Facts, said: Facts) -> Facts:
    """`seen` (read from frames) with what `said` (the prompt) states put over it. A stated object
    takes the place of the seen object of its shape that agrees with it most (colour, size, material)
    and keeps that object's other attributes, so "a blue cube" recolours the cube the frames show;
    seen objects the prompt does not mention stay (at most 4)."""
    keys = ("shape", "colour", "size", "material")
    left = list(range(len(seen.objects)))
    new_of_seen: dict[int, int] = {}
    merged: list[ObjectFacts] = []
    for i, ob in enumerate(said.objects):
        stated = {k: getattr(ob, k) for k in keys if getattr(ob, k) is not None}

        def score(j: int, stated=stated) -> int:
            other = seen.objects[j]
            if other.shape not in (None, stated.get("shape", other.shape)):
                return -1  # another shape: another object (colour, size, material are looks to change)
            return sum((2 if k == "shape" else 1) * (getattr(other, k) == v) for k, v in stated.items())

        best = max(left, key=score, default=None)
        if best is None or score(best) < (1 if stated else 0):
            merged.append(replace(ob))
            continue
        left.remove(best)
        new_of_seen[best] = i
        base = seen.objects[best]
        kept = (*keys, "motion", "direction", "place")
        fill = {k: getattr(base, k) for k in kept if getattr(ob, k) is None}
        if ob.motion is not None:  # a new motion: the seen direction and partner belonged to the old one
            fill.pop("direction", None)
        merged.append(replace(ob, **fill))
    for j in left[: max(0, 4 - len(merged))]:
        new_of_seen[j] = len(merged)
        merged.append(replace(seen.objects[j], partner=None))
    for j, i in new_of_seen.items():  # a seen pair motion keeps its partner, at its new place
        partner = seen.objects[j].partner
        took_motion = i >= len(said.objects) or said.objects[i].motion is None
        if merged[i].partner is None and took_motion and partner in new_of_seen:
            merged[i] = replace(merged[i], partner=new_of_seen[partner])
    for i, ob in enumerate(merged):  # a pair motion without its partner is left to the world
        if ob.motion in PAIR_MOTIONS and ob.partner is None and not any(o.partner == i for o in merged):
            merged[i] = replace(ob, motion=None)
    return Facts(
        objects=merged,
        camera=said.camera or seen.camera,
        camera_direction=said.camera_direction if said.camera else seen.camera_direction,
        ground=said.ground or seen.ground,
        time_of_day=said.time_of_day or seen.time_of_day,
        count=said.count if said.count and said.count >= len(merged) else None,
        unknown_words=said.unknown_words,
    )


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
        if attempt == ATTEMPTS - 1 or paths_clear(scene):
            return scene
    stated = "; ".join(" ".join(filter(None, (ob.colour, ob.shape, ob.motion, ob.place))) for ob in stated)
    raise ParseError(
        f"no scene of the world holds every stated fact ({stated}); state fewer places, directions or "
        "objects that move together"
    )


def _scene(objects: list[Object], facts: Facts, rng: random.Random, seed: int) -> Scene:
    still = any(o.motion in STATIC_CAMERA_MOTIONS for o in objects)
    move = facts.camera or ("static" if still else rng.choice(tuple(CAMERA_MOVES)))
    camera = draw_camera(rng, move, facts.camera_direction)
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
        unit = sampler.draw_unit(rng, motion, len(out), (shape, colour, motion))
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


# ----------------------------------------------------------------------------------------------------
# The optional path through a local language model

LM_EXAMPLES = ("red ball bouncing", "a grey box sliding to the left at night", "two cones, camera pans right")
LM_INSTRUCTION = (
    "You write captions for a video generator that knows only a small synthetic world. Rewrite the short "
    "prompt as one detailed caption in exactly the style of the examples. Keep every fact the prompt "
    "states (objects and their colour, size, material and motion, the camera, the ground, the time of "
    "day) and fill in everything else the way the examples do. Write one line and use only words the "
    "examples use. {vocabulary}\n\n"
)


@dataclass
class LMExpansion:
    """A caption written by the language model (`used_lm`), or the rule-based one it fell back to."""

    caption: str
    used_lm: bool
    warnings: list[str]


def lm_prompt(prompt: str, seed: int = 0) -> str:
    """The fixed instruction, three worked examples (the rule-based expansion of fixed prompts at this
    seed, so the fills the model imitates vary with the seed), then the user's prompt."""
    examples = "".join(f"Short: {p}\nDetailed: {expand(p, seed).caption}\n\n" for p in LM_EXAMPLES)
    return (
        LM_INSTRUCTION.format(vocabulary=vocabulary_message())
        + examples
        + f"Short: {prompt.strip()}\nDetailed:"
    )


def expand_with_lm(
    prompt: str, model_dir: str | Path, seed: int = 0, max_new_tokens: int = 160, device: str = "cpu"
) -> LMExpansion:
    """Expand with a local causal language model (a `transformers` folder, never downloaded): it gets
    `lm_prompt` and samples with a seeded generator, so the caption is a pure function of (prompt, seed,
    model). The caption is parsed back; if it drops a stated fact (or cannot be read), the rule-based
    expansion is used instead, with a warning saying what was lost. Needs `transformers` (not a
    dependency of tessera)."""
    stated = parse(prompt)  # a bad prompt fails here, as in expand()
    rules = expand(prompt, seed)
    tok, lm = load_lm(model_dir, device)
    text = generate_text(tok, lm, lm_prompt(prompt, seed), seed, max_new_tokens)
    caption = _first_line(text)
    try:
        lost = missing_facts(stated, parse(caption)) if caption else ["everything (it wrote nothing)"]
    except ParseError as e:
        lost = [f"the scene ({e})"]
    if lost:
        note = (f"the language model's caption loses {', '.join(lost)}; using the rule-based expansion "
                f"instead (the model wrote: {caption[:200]!r})")  # fmt: skip
        return LMExpansion(rules.caption, False, rules.warnings + [note])
    added = sorted(set(parse(caption).unknown_words) - set(stated.unknown_words))
    extra = (
        [f"the language model used words the video model has never seen: {', '.join(added)}"] if added else []
    )
    return LMExpansion(caption, True, rules.warnings + extra)


def load_lm(model_dir: str | Path, device: str = "cpu"):
    """(tokenizer, model) from a local `transformers` folder; local files only, no remote code."""
    try:
        # optional dependency (the wan extra), loaded only when used
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as e:
        raise ImportError(
            "expand_with_lm needs the 'transformers' package (pip install transformers); the built-in "
            "expand() needs nothing extra"
        ) from e
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise ValueError(
            f"{model_dir}: language model folder not found (give a local transformers model folder with "
            "config.json, tokenizer files and weights)"
        )
    tok = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    lm = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True)
    return tok, lm.to(device).eval()


def generate_text(tok, lm, text: str, seed: int, max_new_tokens: int) -> str:
    """The model's continuation of `text`, sampled (temperature 0.7, top-p 0.9) under `seed` without
    touching the global random state. A chat model gets `text` as one user message."""
    if getattr(tok, "chat_template", None):
        text = tok.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                       add_generation_prompt=True)  # fmt: skip
    enc = tok(text, return_tensors="pt").to(lm.device)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    devices = [lm.device.index or 0] if lm.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        torch.manual_seed(seed)
        out = lm.generate(**enc, max_new_tokens=max_new_tokens, do_sample=True, temperature=0.7, top_p=0.9,
                          pad_token_id=pad if pad is not None else 0)  # fmt: skip
    return tok.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)


def _first_line(text: str) -> str:
    """The caption in a model's reply: its first non-empty line, without a 'Detailed:' label or quotes."""
    line = next((x.strip() for x in text.splitlines() if x.strip()), "")
    if line.lower().startswith("detailed:"):
        line = line[len("detailed:") :].strip()
    return line.strip("\"'")


def missing_facts(stated: Facts, got: Facts) -> list[str]:
    """The stated facts that `got` does not keep, in words ([] when every one survives). Objects may come
    in any order: each stated object needs its own object in `got` with all its stated attributes,
    motion, direction and start place, and a stated partner must be the matching object's partner."""
    settings = ("camera", "camera_direction", "ground", "time_of_day")
    lost = [f"the {k.replace('_', ' ')} ({getattr(stated, k)})" for k in settings
            if getattr(stated, k) is not None and getattr(got, k) != getattr(stated, k)]  # fmt: skip
    if stated.count is not None and len(got.objects) != stated.count:
        lost.append(f"the object count ({stated.count})")
    if len(got.objects) < len(stated.objects):
        return lost + [f"{len(stated.objects) - len(got.objects)} of the stated objects"]
    best: list[str] | None = None
    for order in permutations(range(len(got.objects)), len(stated.objects)):
        miss = _object_misses(stated.objects, [got.objects[j] for j in order], order)
        if best is None or len(miss) < len(best):
            best = miss
        if not best:
            break
    return lost + (best or [])


def _object_misses(stated: list[ObjectFacts], got: list[ObjectFacts], order: tuple[int, ...]) -> list[str]:
    """Facts of each stated object that its assigned object lacks."""
    miss = []
    for want, have in zip(stated, got, strict=True):
        name = " ".join(v for v in (want.colour, want.shape or "object") if v)
        for key in ("shape", "colour", "size", "material", "motion", "direction"):
            if getattr(want, key) is not None and getattr(have, key) != getattr(want, key):
                miss.append(f"the {key} of the {name} ({getattr(want, key)})")
        if want.place and not (have.place or "").startswith(want.place):
            miss.append(f"the place of the {name} ({want.place})")
        if want.partner is not None and have.partner != order[want.partner]:
            miss.append(f"the partner of the {name} (object {want.partner + 1})")
    return miss


def short_from_detailed(caption: str, seed: int = 0) -> str:
    """A short caption (what a person would type) from a detailed one: the facts it states, written by
    the world's short-caption function."""
    return short_caption(build_scene(parse(caption), random.Random(seed), seed))
