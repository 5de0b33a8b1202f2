"""Drawing scenes from a configurable distribution, with a held-out split of attribute combinations.

The held-out (shape, colour, motion) triples are listed in `WorldConfig.heldout`: the "train" split
never contains an object with one of them, the "heldout" split always contains at least one (its first
object). Everything is a pure function of the seed (Python's `random.Random`, no global state).

Prompt expansion (`tessera.caption.expand`) builds scenes around stated facts from the same pieces:
`WorldSampler.draw_unit` (one object or a pair with start places), `draw_camera` and `paths_clear`.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np

from tessera.world.physics import positions
from tessera.world.scene import (
    CAMERA_MOVES,
    COLOURS,
    DIRECTIONS,
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

SPLITS = ("train", "heldout")
DEFAULT_HELDOUT: tuple[tuple[str, str, str], ...] = (
    ("cube", "red", "bounce"),
    ("sphere", "blue", "slide"),
    ("cone", "yellow", "spin"),
    ("cylinder", "green", "roll"),
    ("pyramid", "purple", "orbit"),
    ("octahedron", "orange", "fall"),
    ("sphere", "white", "collide"),
    ("cube", "pink", "pass_behind"),
)
STATIC_CAMERA_MOTIONS = ("pass_behind", "leave_return")  # need a still camera to stay true


@dataclass(frozen=True)
class WorldConfig:
    """The scene distribution: what may appear, clip length and rate, and the held-out triples."""

    frames: int = 33
    fps: float = 16.0
    min_objects: int = 1
    max_objects: int = 4
    shapes: tuple[str, ...] = SHAPES
    colours: tuple[str, ...] = tuple(COLOURS)
    sizes: tuple[str, ...] = tuple(SIZES)
    materials: tuple[str, ...] = MATERIALS
    motions: tuple[str, ...] = MOTIONS
    camera_moves: tuple[str, ...] = tuple(CAMERA_MOVES)
    grounds: tuple[str, ...] = GROUNDS
    times_of_day: tuple[str, ...] = TIMES_OF_DAY
    heldout: tuple[tuple[str, str, str], ...] = DEFAULT_HELDOUT

    def __post_init__(self) -> None:
        for what, got, allowed in (
            ("shapes", self.shapes, SHAPES), ("colours", self.colours, tuple(COLOURS)),
            ("sizes", self.sizes, tuple(SIZES)), ("materials", self.materials, MATERIALS),
            ("motions", self.motions, MOTIONS), ("camera_moves", self.camera_moves, tuple(CAMERA_MOVES)),
            ("grounds", self.grounds, GROUNDS), ("times_of_day", self.times_of_day, TIMES_OF_DAY),
        ):  # fmt: skip
            bad = [g for g in got if g not in allowed]
            if bad or not got:
                raise ValueError(f"WorldConfig.{what}: unknown or empty {bad}; allowed: {', '.join(allowed)}")
        if not 1 <= self.min_objects <= self.max_objects <= 4:
            raise ValueError(
                f"need 1 <= min_objects <= max_objects <= 4, got {self.min_objects}, {self.max_objects}"
            )
        for triple in self.heldout:
            shape, colour, motion = triple
            if shape not in SHAPES or colour not in COLOURS or motion not in MOTIONS:
                raise ValueError(f"held-out triple {triple} is not (shape, colour, motion)")
        if self.frames < 1 or not self.fps > 0:
            raise ValueError(f"frames must be >= 1 and fps > 0, got {self.frames}, {self.fps}")


class WorldSampler:
    """Draws scenes of one split: `WorldSampler(cfg, "train").sample(seed) -> Scene`."""

    def __init__(self, cfg: WorldConfig | None = None, split: str = "train") -> None:
        if split not in SPLITS:
            raise ValueError(f"unknown split '{split}'; allowed: {', '.join(SPLITS)}")
        self.cfg = cfg or WorldConfig()
        self.split = split
        self.heldout = frozenset(self.cfg.heldout)
        if split == "heldout" and not self.cfg.heldout:
            raise ValueError("the heldout split needs WorldConfig.heldout to list at least one triple")

    def sample(self, seed: int | random.Random) -> Scene:
        """One scene; the same seed always gives the same scene."""
        if isinstance(seed, random.Random):
            seed = seed.getrandbits(62)
        rng = random.Random(seed)
        for _ in range(200):  # rejection: placements whose paths would overlap are redrawn
            scene = self._draw(rng, seed)
            if scene is not None and paths_clear(scene):
                return scene
        raise RuntimeError(f"could not place a scene for seed {seed}; the WorldConfig may be too narrow")

    def _draw(self, rng: random.Random, seed: int) -> Scene | None:
        cfg = self.cfg
        n = rng.randint(cfg.min_objects, cfg.max_objects)
        forced = rng.choice(cfg.heldout) if self.split == "heldout" else None
        if forced is not None and forced[2] in PAIR_MOTIONS:
            n = max(n, 2)
        objects: list[dict] = []
        while len(objects) < n:
            first = forced if not objects else None
            fits = [m for m in cfg.motions if m not in PAIR_MOTIONS or n - len(objects) >= 2]
            if not fits and not first:
                break
            motion = first[2] if first else rng.choice(fits)
            objects += self.draw_unit(rng, motion, len(objects), first)
        if not objects:
            return None
        if any(o["motion"] == "roll" and o["shape"] not in ROLLING_SHAPES for o in objects):
            return None
        names = [(o["colour"], o["shape"]) for o in objects]
        if len(set(names)) != len(names):  # captions refer to objects by colour and shape
            return None
        if self.split == "train" and any(
            (o["shape"], o["colour"], o["motion"]) in self.heldout for o in objects
        ):
            return None
        still = any(o["motion"] in STATIC_CAMERA_MOTIONS for o in objects)
        camera = draw_camera(rng, "static" if still else rng.choice(cfg.camera_moves))
        return Scene(
            objects=tuple(Object(**o) for o in objects), camera=camera, ground=rng.choice(cfg.grounds),
            time_of_day=rng.choice(cfg.times_of_day), frames=cfg.frames, fps=cfg.fps, seed=seed,
        )  # fmt: skip

    def _attrs(self, rng: random.Random, motion: str, forced=None, shapes=None, size=None) -> dict:
        """Shape, colour, size, material of one object (the forced held-out triple if given)."""
        cfg = self.cfg
        pool = [s for s in (shapes or cfg.shapes) if motion != "roll" or s in ROLLING_SHAPES] or list(
            ROLLING_SHAPES
        )
        shape, colour = (forced[0], forced[1]) if forced else (rng.choice(pool), rng.choice(cfg.colours))
        size = size or rng.choice(cfg.sizes)
        material, yaw = rng.choice(cfg.materials), rng.uniform(0, 2 * math.pi)
        return {
            "shape": shape,
            "colour": colour,
            "size": size,
            "material": material,
            "motion": motion,
            "yaw": yaw,
        }

    def draw_unit(
        self, rng: random.Random, motion: str, first_index: int, forced: tuple[str, str, str] | None = None
    ) -> list[dict]:
        """`Object` keyword dicts of one object moving by `motion`, or two for a pair motion (orbit,
        collide, pass_behind: the partner comes along), with start places. `first_index` is the first
        object's index in the scene (partners refer to it); `forced` fixes its (shape, colour, motion)."""
        d = rng.choice(DIRECTIONS)
        sign = -1.0 if d == "left" else 1.0
        a = self._attrs(rng, motion, forced)
        if motion in ("slide", "roll"):
            return [a | {"direction": d, "x": -sign * rng.uniform(-0.5, 2.5), "z": rng.uniform(-2.0, 1.5)}]
        if motion in ("approach", "recede"):
            z = rng.uniform(-2.5, -0.5) if motion == "approach" else rng.uniform(0.0, 1.5)
            return [a | {"x": rng.uniform(-2.5, 2.5), "z": z}]
        if motion == "leave_return":
            return [a | {"direction": d, "x": rng.uniform(-1.5, 1.5), "z": rng.uniform(-1.0, 1.0)}]
        if motion in ("bounce", "fall"):
            h = rng.uniform(1.0, 2.0) if motion == "bounce" else rng.uniform(2.5, 3.5)
            extra = {"height": h, "restitution": rng.uniform(0.55, 0.8)}
            return [a | extra | {"x": rng.uniform(-2.5, 2.5), "z": rng.uniform(-2.0, 1.5)}]
        if motion in ("static", "spin"):
            return [
                a | {"x": rng.uniform(-2.5, 2.5), "z": rng.uniform(-2.0, 1.5), "turns": rng.uniform(0.5, 1.5)}
            ]
        j = first_index + 1
        if motion == "orbit":
            centre = self._attrs(rng, rng.choice(["static", "spin"]))
            cx, cz = rng.uniform(-1.2, 1.2), rng.uniform(-1.2, 0.8)
            radius = math.sqrt(2) * (SIZES[a["size"]] + SIZES[centre["size"]]) + rng.uniform(0.3, 0.9)
            angle = rng.uniform(0, 2 * math.pi)
            x, z = cx + radius * math.cos(angle), cz + radius * math.sin(angle)
            orbiter = a | {"partner": j, "x": x, "z": z, "turns": rng.uniform(0.5, 1.0)}
            return [orbiter, centre | {"x": cx, "z": cz, "partner": -1}]
        if motion == "collide":
            b = self._attrs(rng, "collide")
            gap = SIZES[a["size"]] + SIZES[b["size"]] + rng.uniform(1.5, 2.5)
            xm, zm = rng.uniform(-0.8, 0.8), rng.uniform(-1.5, 1.0)
            return [a | {"partner": j, "x": xm - gap / 2, "z": zm, "yaw": 0.0},
                    b | {"partner": first_index, "x": xm + gap / 2, "z": zm, "yaw": 0.0}]  # fmt: skip
        # pass_behind: a large, tall occluder in front; a small mover crosses behind it.
        a = self._attrs(rng, motion, forced, size="small")
        occ = self._attrs(rng, "static", shapes=["cube", "cylinder"], size="large")
        return [a | {"direction": d, "partner": j, "x": 0.0, "z": 0.0},
                occ | {"x": rng.uniform(-1.0, 1.0), "z": rng.uniform(0.3, 1.2), "yaw": 0.0}]  # fmt: skip


def draw_camera(rng: random.Random, move: str, direction: str | None = None) -> CameraPath:
    """A camera path of `move` in `direction` (drawn when None), at a distance, height and field of
    view drawn from the world's ranges."""
    direction = direction or rng.choice(CAMERA_MOVES[move])
    return CameraPath(move=move, direction=direction, distance=rng.uniform(7.5, 9.0),
                      height=rng.uniform(2.5, 3.5), fov=rng.uniform(40.0, 52.0))  # fmt: skip


def paths_clear(scene: Scene) -> bool:
    """Whether no two objects come closer than their bounding radii allow (colliding pairs meet
    exactly once, by design); scenes that fail are drawn again."""
    pos = positions(scene)  # (T, K, 3)
    radius = np.array([ob.radius for ob in scene.objects])
    for i in range(len(scene.objects)):
        for j in range(i + 1, len(scene.objects)):
            a = scene.objects[i]
            if a.motion == "collide" and a.partner == j:
                continue
            dist = np.linalg.norm(pos[:, i] - pos[:, j], axis=-1)
            if dist.min() < math.sqrt(2) * (radius[i] + radius[j]) + 0.1:
                return False
    return True
