"""Text -> facts: read a caption or a short prompt back into the world's vocabulary.

One parser serves three jobs: prompt expansion reads what the user stated, the captioner's attribute F1
reads what the captioner said, and both compare against a `Scene`'s truth (`scene_facts`).

The text is lowercased, synonyms are mapped onto the world's words ("ball" -> sphere, "grey" -> gray,
"bouncing" -> bounce), and it is cut into clauses at punctuation, "and" and "then". An object is a
*mention*: optional count, size, material and colour words followed by a shape noun ("two small red
cubes"). The first mention of a clause is its subject; a motion phrase in the clause belongs to the
subject (or, in a clause with no mention, to the previous clause's subject), and a mention after a
pair-motion phrase ("orbits the blue cone") is the partner. A mention with colour and shape that
repeats an earlier one ("the red cube" in an event sentence) refers to the same object; the first
motion stated for an object wins, so event sentences never override it. A clause whose subject is the
camera sets the camera move.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from tessera.errors import RequestError as ParseError
from tessera.world.captions import (
    CAMERA_PHRASES,
    EVENT_PHRASES,
    GROUND_PHRASES,
    MOTION_GERUNDS,
    MOTION_PHRASES,
    SHORT_GROUND,
    SHORT_TIME,
    TIME_PHRASES,
)
from tessera.world.scene import (
    CAMERA_MOVES,
    COLOURS,
    GROUNDS,
    MATERIALS,
    MOTIONS,
    SHAPES,
    SIZES,
    TIMES_OF_DAY,
)

NUMBERS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "1": 1, "2": 2,
           "3": 3, "4": 4, "5": 5, "6": 6}  # fmt: skip
SHAPE_WORDS = {s: s for s in SHAPES} | {
    "ball": "sphere", "box": "cube", "block": "cube", "dice": "cube", "die": "cube", "cubes": "cube",
    "spheres": "sphere", "balls": "sphere", "boxes": "cube", "blocks": "cube", "cylinders": "cylinder",
    "cones": "cone", "pyramids": "pyramid", "octahedra": "octahedron", "octahedrons": "octahedron",
    "orb": "sphere", "orbs": "sphere", "tube": "cylinder", "tubes": "cylinder", "can": "cylinder",
}  # fmt: skip
PLURALS = {"cubes", "spheres", "balls", "boxes", "blocks", "cylinders", "cones", "pyramids", "octahedra",
           "octahedrons", "orbs", "tubes", "dice"}  # fmt: skip
COLOUR_WORDS = {c: c for c in COLOURS} | {"grey": "gray", "violet": "purple", "turquoise": "cyan",
                                          "teal": "cyan", "magenta": "pink", "golden": "yellow"}  # fmt: skip
SIZE_WORDS = {s: s for s in SIZES} | {"big": "large", "huge": "large", "tiny": "small", "little": "small",
                                      "mid": "medium", "midsize": "medium"}  # fmt: skip
MATERIAL_WORDS = {m: m for m in MATERIALS} | {"metallic": "shiny", "glossy": "shiny", "reflective": "shiny",
                                              "matt": "matte", "dull": "matte", "rough": "matte"}  # fmt: skip
GROUND_WORDS = {"checker": "checker", "checkerboard": "checker", "checkered": "checker",
                "chessboard": "checker",
                "grass": "grass", "grassy": "grass", "lawn": "grass", "field": "grass", "sand": "sand",
                "sandy": "sand", "beach": "sand", "desert": "sand", "tiles": "tiles", "tiled": "tiles",
                "tile": "tiles", "terracotta": "tiles", "wood": "wood", "wooden": "wood",
                "planks": "wood"}  # fmt: skip
TIME_WORDS = {"morning": "morning", "dawn": "morning", "sunrise": "morning", "noon": "noon",
              "midday": "noon", "daytime": "noon", "sunset": "sunset", "dusk": "sunset", "evening": "sunset",
              "night": "night", "moonlit": "night", "nighttime": "night", "moon": "night"}  # fmt: skip

# Object motions: (motion, pattern), tried in this order; the first that matches a clause wins.
MOTION_PATTERNS: tuple[tuple[str, str], ...] = (
    ("pass_behind", r"\b(pass(es|ing)? behind|go(es|ing)? behind|behind the|disappears? behind)\b"),
    (
        "leave_return",
        r"\b(leav(es|ing|e) the frame|out of (the frame|view)|exits? the frame|"
        r"exiting the frame)\b",
    ),
    ("orbit", r"\b(orbit(s|ing)?|circl(es|ing|e) (around )?(a|an|the)\b|in a circle around)"),
    ("collide", r"\b(collid(es|ing|e)|crash(es|ing)? into|hits? the (?!ground))"),
    ("approach", r"\b(towards? the camera|comes? closer|coming closer|approach(es|ing)?)\b"),
    ("recede", r"\b(away from the camera|mov(es|ing|e) away|reced(es|ing|e))\b"),
    ("roll", r"\b(roll(s|ing)?)\b"),
    ("bounce", r"\b(bounc(es|ing|e) (?!off)|bounc(es|ing|e)$|jump(s|ing)?|hits? the ground)"),
    ("fall", r"\b(fall(s|ing)?|drops? from above|dropping from above|lands?|landing)\b"),
    ("spin", r"\b(spin(s|ning)?|rotat(es|ing|e)|turn(s|ing)? in place|twirl(s|ing)?)\b"),
    ("slide", r"\b(slid(es|ing|e)|glid(es|ing|e)|mov(es|ing|e) (to the )?(left|right))\b"),
    (
        "static",
        r"\b(stands? still|standing still|rests?|resting|stays? where|static|still|motionless|"
        r"not moving|stationary)\b",
    ),
)
CAMERA_PATTERNS: tuple[tuple[str, str], ...] = (
    ("static", r"\b(static|does not move|doesn't move|fixed|still|stationary|locked)\b"),
    ("pan", r"\b(pan(s|ning|ned)?)\b"),
    ("tilt", r"\b(tilt(s|ing|ed)?)\b"),
    ("orbit", r"\b(orbit(s|ing)?|circl(es|ing|e) around)\b"),
    ("dolly", r"\b(dolly|dollies|dollying|zoom(s|ing)?|push(es|ing)? in|pull(s|ing)? out)\b"),
    ("truck", r"\b(truck(s|ing)?|sideways)\b"),
)
_OBJECT_CAMERA = re.compile(r"\b(towards? the camera|away from the camera|closer to the camera|"
                            r"from the camera)\b")  # fmt: skip
_PLACE = re.compile(r"\b(on the (left|right)|in the middle|in the front|at the back)\b")
_STOP = set(
    "a an the and with of in on at to into from is are it its their there this that then while as by "
    "up down out over under scene clip video shot frame view first finally what happens order events "
    "during one point objects object each other some very slowly quickly fast slow around toward towards "
    "again back side along above below near next both being be has have while against".split()
)


@dataclass
class ObjectFacts:
    """What the text says about one object; None where it says nothing."""

    shape: str | None = None
    colour: str | None = None
    size: str | None = None
    material: str | None = None
    motion: str | None = None
    direction: str | None = None
    partner: int | None = None  # index into Facts.objects
    place: str | None = None  # "on the left", "in the middle", ... (start position)

    def attributes(self) -> dict[str, str]:
        """The stated appearance attributes (shape, colour, size, material)."""
        items = {"shape": self.shape, "colour": self.colour, "size": self.size, "material": self.material}
        return {k: v for k, v in items.items() if v is not None}


@dataclass
class Facts:
    """What a text states about a scene."""

    objects: list[ObjectFacts] = field(default_factory=list)
    camera: str | None = None
    camera_direction: str | None = None
    ground: str | None = None
    time_of_day: str | None = None
    count: int | None = None  # "with three objects"
    unknown_words: list[str] = field(default_factory=list)


def known_words() -> set[str]:
    """Every word the world's captions use, the synonyms above and common function words."""
    words = set(_STOP) | set(NUMBERS) | set(SHAPE_WORDS) | set(COLOUR_WORDS) | set(SIZE_WORDS)
    words |= set(MATERIAL_WORDS) | set(GROUND_WORDS) | set(TIME_WORDS) | set(MOTIONS) | set(CAMERA_MOVES)
    tables = (MOTION_PHRASES, MOTION_GERUNDS, CAMERA_PHRASES, TIME_PHRASES, GROUND_PHRASES, SHORT_TIME,
              SHORT_GROUND, EVENT_PHRASES)  # fmt: skip
    for table in tables:
        for value in table.values():
            for phrase in (value,) if isinstance(value, str) else value:
                words |= set(re.findall(r"[a-z']+", phrase.lower()))
    for _, pattern in MOTION_PATTERNS + CAMERA_PATTERNS:
        words |= set(re.findall(r"[a-z]{3,}", pattern)) - {"es", "ing"}
    extra = "camera left right middle front back moving moves move bouncing spinning rolling sliding "
    extra += "falling orbiting colliding rotating jumping jumps lying lies static still ground floor sky sun "
    extra += "light bright long shadows glowing soft early sideways fall falls fixed left right in out "
    extra += "stand stands"
    return words | set(extra.split())


_KNOWN: set[str] | None = None


def parse(text: str) -> Facts:
    """Read `text` (a detailed caption or a short prompt) into `Facts`."""
    global _KNOWN
    if _KNOWN is None:
        _KNOWN = known_words()
    norm = _normalise(text)
    facts = Facts()
    facts.unknown_words = sorted({w for w in re.findall(r"[a-z']+", norm) if w not in _KNOWN})
    for word in re.findall(r"[a-z]+", norm):
        facts.ground = facts.ground or GROUND_WORDS.get(word)
        facts.time_of_day = facts.time_of_day or TIME_WORDS.get(word)
    m = re.search(r"\b(one|two|three|four|five|six|[1-6]) objects?\b", norm)
    facts.count = NUMBERS[m.group(1)] if m else None
    introduced: set[int] = set()  # objects named with "a"/"an" (see _resolve)
    for sentence in re.split(r"[.;:!?]", norm):
        state: dict = {"introduced": introduced}
        for clause in _clauses(sentence):
            _read_clause(clause, facts, state)
    return facts


def _normalise(text: str) -> str:
    t = " " + text.lower().replace("-", " ").replace("\u2019", "'") + " "
    t = re.sub(r"\bframe on the\b", "frame to the", t)  # "exits the frame on the left" is a direction
    return re.sub(r"\s+", " ", t)


def _clauses(text: str) -> list[str]:
    return [c.strip() for c in re.split(r",| and | then | while ", f" {text} ") if c.strip()]


def _mentions(words: list[str]) -> list[tuple[int, int, int, dict[str, str]]]:
    """(first word, last word, count, attributes) of every object mention in `words`."""
    out = []
    for j, w in enumerate(words):
        if w not in SHAPE_WORDS or (w == "can" and (j == 0 or words[j - 1] not in COLOUR_WORDS)):
            continue
        attrs, count, i = {"shape": SHAPE_WORDS[w]}, 1, j
        while i > 0 and words[i - 1] in (COLOUR_WORDS.keys() | SIZE_WORDS.keys() | MATERIAL_WORDS.keys()):
            i -= 1
            for key, table in (("colour", COLOUR_WORDS), ("size", SIZE_WORDS), ("material", MATERIAL_WORDS)):
                if words[i] in table:
                    attrs.setdefault(key, table[words[i]])
        if i > 0 and words[i - 1] in NUMBERS:
            count = NUMBERS[words[i - 1]]
        elif w in PLURALS:
            count = 2
        out.append((i, j, count, attrs))
    return out


def _resolve(
    facts: Facts, attrs: dict[str, str], count: int, definite: bool, introduced: set[int]
) -> list[int]:
    """Object indices for one mention. "the red cube" refers to an earlier red cube (or, without a
    colour, an earlier cube); "a red cube" introduces one: it may be an object already referred to
    with "the" and not yet introduced ("orbits the red cube. A red cube rests"), else it is new, so
    "a red cube ... a red cube" are two objects."""
    colour = attrs.get("colour")
    for k, ob in enumerate(facts.objects):
        same = ob.shape == attrs["shape"] and (ob.colour == colour if colour else definite)
        if same and count == 1 and (definite or (colour and k not in introduced)):
            for key, v in attrs.items():
                setattr(ob, key, getattr(ob, key) or v)
            if not definite:
                introduced.add(k)
            return [k]
    if len(facts.objects) + count > 4:
        raise ParseError(f"the world holds at most 4 objects; the text asks for {len(facts.objects) + count}")
    facts.objects += [ObjectFacts(**attrs) for _ in range(count)]
    new = list(range(len(facts.objects) - count, len(facts.objects)))
    if not definite:
        introduced.update(new)
    return new


def _read_clause(clause: str, facts: Facts, state: dict) -> None:
    """Update `facts` from one clause. `state` carries the subject and the other objects mentioned so
    far in the sentence ("moves toward the cone and collides with it")."""
    camera = re.search(r"\b(camera|shot)\b", clause) and not _OBJECT_CAMERA.search(clause)
    if camera:  # the camera's clause: its verb is the camera's, objects in it only get named
        _read_camera(clause, facts)
    place = _PLACE.search(clause)
    rest = _PLACE.sub(" ", clause)
    words = rest.split()
    refs = []  # (first word, last word, object indices)
    for i, j, count, attrs in _mentions(words):
        definite = i > 0 and words[i - 1] == "the"
        refs.append((i, j, _resolve(facts, attrs, count, definite, state["introduced"])))
    if refs:
        state["subject"], state["subject_end"] = refs[0][2], refs[0][1]
        if place:
            for k in refs[0][2]:
                facts.objects[k].place = facts.objects[k].place or place.group(1)
    else:
        state["subject_end"] = -1
    if state.get("subject") is None:
        return
    motion, at = (None, 0) if camera else _motion(rest)
    word_at = rest[:at].count(" ")
    later = [r[2][0] for r in refs if r[0] >= word_at and r[2][0] not in state["subject"]]
    state["others"] = later or [r[2][0] for r in refs[1:]] or state.get("others", [])
    if motion is None:
        return
    tail = " ".join(words[state["subject_end"] + 1 :])
    for k in state["subject"]:
        ob = facts.objects[k]
        if ob.motion is None:
            ob.motion = motion
            ob.direction = (
                _direction(tail) if motion in ("slide", "roll", "leave_return", "pass_behind") else None
            )
        if motion in ("orbit", "collide", "pass_behind") and ob.partner is None:
            partners = [o for o in state["others"] if o != k]
            ob.partner = partners[0] if partners else None


def _motion(clause: str) -> tuple[str | None, int]:
    for motion, pattern in MOTION_PATTERNS:
        m = re.search(pattern, clause)
        if m:
            return motion, m.start()
    return None, 0


def _direction(text: str) -> str | None:
    m = re.search(r"\b(left|right)\b", text)
    return m.group(1) if m else None


def _read_camera(clause: str, facts: Facts) -> None:
    for move, pattern in CAMERA_PATTERNS:
        m = re.search(pattern, clause)
        if m and facts.camera is None:
            facts.camera = move
            allowed = [d for d in CAMERA_MOVES[move] if d]
            tail = clause[m.start() :]
            if "zoom" in m.group(0) or "push" in m.group(0):
                tail = tail.replace("zoom", "in").replace("push", "in")
            found = [(tail.find(f" {d}"), d) for d in allowed if re.search(rf"\b{d}\b", tail)]
            facts.camera_direction = min(found)[1] if found else None
            return


def scene_facts(scene) -> Facts:
    """The exact facts of a world `Scene` (the truth the parsed text is scored against)."""
    objects = [
        ObjectFacts(
            ob.shape,
            ob.colour,
            ob.size,
            ob.material,
            ob.motion,
            ob.direction or None,
            ob.partner if ob.partner >= 0 else None,
        )  # fmt: skip
        for ob in scene.objects
    ]
    return Facts(objects=objects, camera=scene.camera.move, camera_direction=scene.camera.direction or None,
                 ground=scene.ground, time_of_day=scene.time_of_day, count=len(scene.objects))  # fmt: skip


__all__ = [
    "Facts",
    "ObjectFacts",
    "ParseError",
    "known_words",
    "parse",
    "scene_facts",
    "GROUNDS",
    "TIMES_OF_DAY",
]
