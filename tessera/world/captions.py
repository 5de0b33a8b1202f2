"""Captions from the scene description: a detailed one (every object, the camera, light, ground and the
events in order) and a short one (what a person would type).

Phrasing varies (synonyms, sentence shapes, order of clauses) and is a pure function of `scene.seed`,
so the same scene always gets the same words. Colour and shape names are always the canonical ones of
scene.py, and no colour word is used for anything but an object (the sky and the ground are described
without colour names), so a caption names exactly the colours in the scene.
"""

from __future__ import annotations

import random

from tessera.world.physics import Event, simulate
from tessera.world.scene import Object, Scene

MOTION_PHRASES: dict[str, tuple[str, ...]] = {
    "static": ("stands still", "rests in place", "stays where it is"),
    "slide": ("slides to the {dir}", "glides to the {dir}", "slides along the ground to the {dir}"),
    "approach": ("moves toward the camera", "slides toward the camera", "comes closer to the camera"),
    "recede": ("moves away from the camera", "slides away from the camera", "recedes from the camera"),
    "bounce": ("bounces up and down", "drops and bounces on the ground", "bounces several times"),
    "roll": ("rolls to the {dir}", "rolls along the ground to the {dir}"),
    "spin": ("spins in place", "spins around", "rotates in place"),
    "fall": ("falls and lands on the ground", "drops from above and lands", "falls down and lands"),
    "orbit": ("orbits the {partner}", "circles around the {partner}",
              "moves in a circle around the {partner}"),
    "collide": ("collides with the {partner}", "moves toward the {partner} and collides with it",
                "crashes into the {partner} and bounces off"),
    "pass_behind": ("passes behind the {partner} and reappears",
                    "moves to the {dir} behind the {partner}, disappears and reappears"),
    "leave_return": ("leaves the frame to the {dir} and comes back",
                     "moves out of the frame to the {dir} and returns",
                     "exits the frame on the {dir} and comes back"),
}  # fmt: skip
MOTION_GERUNDS: dict[str, tuple[str, ...]] = {
    "static": ("standing still", "resting"),
    "slide": ("sliding {dir}", "sliding to the {dir}"),
    "approach": ("moving toward the camera", "coming closer"),
    "recede": ("moving away", "moving away from the camera"),
    "bounce": ("bouncing", "bouncing up and down"),
    "roll": ("rolling {dir}", "rolling to the {dir}"),
    "spin": ("spinning", "spinning in place"),
    "fall": ("falling and landing", "falling down"),
    "orbit": ("orbiting a {partner}", "circling a {partner}"),
    "collide": ("colliding with a {partner}", "crashing into a {partner}"),
    "pass_behind": ("passing behind a {partner}", "going behind a {partner}"),
    "leave_return": ("leaving the frame and coming back", "going out of view and back"),
}
CAMERA_PHRASES: dict[str, tuple[str, ...]] = {
    "static": (
        "The camera is static.",
        "The camera does not move.",
        "The shot is taken from a fixed camera.",
    ),
    "pan": ("The camera pans {dir}.", "The camera slowly pans to the {dir}."),
    "tilt": ("The camera tilts {dir}.", "The camera slowly tilts {dir}."),
    "orbit": (
        "The camera orbits the scene to the {dir}.",
        "The camera circles around the scene to the {dir}.",
    ),
    "dolly": ("The camera dollies {dir}.", "The camera slowly dollies {dir}."),
    "truck": ("The camera trucks to the {dir}.", "The camera moves sideways to the {dir}."),
}
TIME_PHRASES: dict[str, tuple[str, ...]] = {
    "morning": ("in soft morning light", "early in the morning"),
    "noon": ("at noon under a bright sun", "in bright midday sun"),
    "sunset": ("at sunset under a glowing sky", "at sunset with long shadows"),
    "night": ("at night under the moon", "on a moonlit night"),
}
GROUND_PHRASES: dict[str, tuple[str, ...]] = {
    "checker": ("a checkerboard floor", "a checkered ground"),
    "grass": ("a grassy field", "a lawn"),
    "sand": ("sand", "a sandy ground"),
    "tiles": ("a tiled floor", "terracotta tiles"),
    "wood": ("a wooden floor", "wooden planks"),
}
EVENT_PHRASES: dict[str, str] = {
    "bounce": "the {a} hits the ground",
    "land": "the {a} lands",
    "collide": "the {a} collides with the {b}",
    "hidden": "the {a} disappears behind the {b}",
    "reappear": "the {a} reappears",
    "leave": "the {a} leaves the frame",
    "return": "the {a} comes back into view",
}
SHORT_TIME = {"morning": "in the morning", "noon": "at noon", "sunset": "at sunset", "night": "at night"}
SHORT_GROUND = {
    "checker": "a checkerboard",
    "grass": "grass",
    "sand": "sand",
    "tiles": "tiles",
    "wood": "wood",
}


def _rng(scene: Scene, salt: int) -> random.Random:
    return random.Random(scene.seed * 1_000_003 + salt)


def name(ob: Object) -> str:
    """Colour and shape: 'red cube'. Unique within a scene (the sampler ensures it)."""
    return f"{ob.colour} {ob.shape}"


def describe_object(ob: Object, rng: random.Random) -> str:
    """'a large shiny red cube' (attribute order varies)."""
    first = rng.choice([f"{ob.size} {ob.material}", f"{ob.material} {ob.size}"])
    return article(f"{first} {ob.colour} {ob.shape}")


def article(text: str) -> str:
    """'a red cube', 'an orange cube'."""
    return ("an " if text[0] in "aeiou" else "a ") + text


def place(ob: Object) -> str:
    """Where the object starts, as seen from the camera's starting point."""
    side = "on the left" if ob.x < -1.0 else "on the right" if ob.x > 1.0 else "in the middle"
    depth = " in the front" if ob.z > 0.8 else " at the back" if ob.z < -0.8 else ""
    return side + depth


def motion_phrase(scene: Scene, i: int, rng: random.Random, table=MOTION_PHRASES) -> str:
    """The motion of object i in words (a phrase of `table[motion]` with direction and partner)."""
    ob = scene.objects[i]
    partner = name(scene.objects[ob.partner]) if ob.partner >= 0 else ""
    text = rng.choice(table[ob.motion]).format(dir=ob.direction, partner=partner)
    return text.replace(" a o", " an o")  # "a orange cube" -> "an orange cube"


def _object_sentence(scene: Scene, i: int, rng: random.Random) -> str:
    ob = scene.objects[i]
    what, where, how = describe_object(ob, rng), place(ob), motion_phrase(scene, i, rng)
    if ob.motion == "roll" and ob.shape == "cylinder":
        how = "lies on its side and " + how
    if rng.random() < 0.5:
        return f"{where[0].upper()}{where[1:]}, {what} {how}."
    return f"{what[0].upper()}{what[1:]} {where} {how}."


def _events_sentence(scene: Scene, events: list[Event], rng: random.Random) -> str:
    """The events in time order; repeated bounces of one object are mentioned once."""
    seen, parts = set(), []
    for e in events:
        key = (e.kind, e.subject)
        if e.kind == "bounce" and key in seen:
            continue
        seen.add(key)
        b = name(scene.objects[e.other]) if e.other >= 0 else ""
        parts.append(EVENT_PHRASES[e.kind].format(a=name(scene.objects[e.subject]), b=b))
    if not parts:
        return ""
    if len(parts) == 1:
        return rng.choice(["Then ", "During the clip, ", "At one point "]) + parts[0] + "."
    body = ", then ".join(parts[:-1]) + ", and finally " + parts[-1]
    return rng.choice(["In order: first ", "What happens: first ", "Events in order: first "]) + body + "."


def detailed_caption(scene: Scene) -> str:
    """Every object's size, material, colour, shape, place and motion; the camera move; light and
    ground; the events in order."""
    rng = _rng(scene, 1)
    n = len(scene.objects)
    count = ["one object", "two objects", "three objects", "four objects"][n - 1]
    ground, time = rng.choice(GROUND_PHRASES[scene.ground]), rng.choice(TIME_PHRASES[scene.time_of_day])
    intro = rng.choice([
        f"A scene on {ground} {time} with {count}.",
        f"{time[0].upper()}{time[1:]}, {count} {'stands' if n == 1 else 'stand'} on {ground}.",
        f"{count[0].upper()}{count[1:]} on {ground}, {time}.",
    ])  # fmt: skip
    objects = [_object_sentence(scene, i, rng) for i in range(n)]
    cam = scene.camera
    camera = rng.choice(CAMERA_PHRASES[cam.move]).format(dir=cam.direction)
    events = _events_sentence(scene, simulate(scene).events, rng)
    parts = [intro, *objects, camera] if rng.random() < 0.7 else [intro, camera, *objects]
    return " ".join(parts + ([events] if events else []))


def short_caption(scene: Scene) -> str:
    """A prompt as a person would type it: the first object (and maybe the second) and its motion,
    sometimes with the setting."""
    rng = _rng(scene, 2)
    clauses = []
    for i in range(min(len(scene.objects), rng.choice([1, 2]))):
        ob = scene.objects[i]
        if i == 1 and scene.objects[0].partner == 1:
            break  # already named as the first object's partner
        gerund = motion_phrase(scene, i, rng, MOTION_GERUNDS)
        clauses.append(article(f"{ob.size + ' ' if rng.random() < 0.3 else ''}{name(ob)} {gerund}"))
    text = " and ".join(clauses)
    setting = rng.choice(
        ["", f" on {SHORT_GROUND[scene.ground]}", f" {SHORT_TIME[scene.time_of_day]}",
         f" on {SHORT_GROUND[scene.ground]} {SHORT_TIME[scene.time_of_day]}"]
    )  # fmt: skip
    return text + setting


def captions(scene: Scene) -> tuple[str, str]:
    """(detailed, short) captions of `scene`."""
    return detailed_caption(scene), short_caption(scene)
