"""Scene descriptions: the vocabulary of the world and the dataclasses a clip is rendered from.

Coordinates: y is up, the ground is the plane y = 0, the camera starts on the +z side looking towards
the origin, so "left" is -x and "toward the camera" is +z. Every shape is defined in a unit box
[-1, 1]^3 and scaled uniformly by its size (a half-extent in metres); a resting object's centre is at
height = size.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Named colours, RGB in [0, 1]. Saturated and spread in hue so that each stays recognisable under the
# warm sunset light and the blue moonlight (the renderer keeps light tints moderate for that reason).
COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.86, 0.08, 0.08),
    "orange": (0.96, 0.45, 0.04),
    "yellow": (0.95, 0.85, 0.08),
    "green": (0.12, 0.68, 0.16),
    "cyan": (0.06, 0.78, 0.84),
    "blue": (0.08, 0.22, 0.92),
    "purple": (0.50, 0.14, 0.82),
    "pink": (0.96, 0.40, 0.70),
    "white": (0.93, 0.93, 0.93),
    "black": (0.07, 0.07, 0.07),
    "brown": (0.42, 0.23, 0.09),
    "gray": (0.50, 0.50, 0.50),
}
SHAPES: tuple[str, ...] = ("cube", "sphere", "cylinder", "cone", "pyramid", "octahedron")
SIZES: dict[str, float] = {"small": 0.3, "medium": 0.45, "large": 0.65}  # half-extent in metres
MATERIALS: tuple[str, ...] = ("matte", "shiny")
GROUNDS: tuple[str, ...] = ("checker", "grass", "sand", "tiles", "wood")
TIMES_OF_DAY: tuple[str, ...] = ("morning", "noon", "sunset", "night")

# Motions. Those in PAIR_MOTIONS involve a partner object (given by `Object.partner`).
MOTIONS: tuple[str, ...] = (
    "static",
    "slide",  # direction left/right, constant speed
    "approach",  # toward the camera
    "recede",  # away from the camera
    "bounce",  # dropped, bounces under gravity with restitution
    "roll",  # sphere or cylinder on its side, rotation matches distance
    "spin",  # turns about the vertical axis in place
    "fall",  # falls from above and lands without bouncing
    "orbit",  # circles around its partner
    "collide",  # moves toward its partner; both respond (elastic)
    "pass_behind",  # crosses behind its partner (occluded), reappears
    "leave_return",  # leaves the frame sideways and comes back
)
PAIR_MOTIONS: tuple[str, ...] = ("orbit", "collide", "pass_behind")
DIRECTED_MOTIONS: tuple[str, ...] = ("slide", "roll", "leave_return", "pass_behind")
DIRECTIONS: tuple[str, ...] = ("left", "right")
ROLLING_SHAPES: tuple[str, ...] = ("sphere", "cylinder")

# Camera moves and the directions each one allows.
CAMERA_MOVES: dict[str, tuple[str, ...]] = {
    "static": ("",),
    "pan": ("left", "right"),
    "tilt": ("up", "down"),
    "orbit": ("left", "right"),
    "dolly": ("in", "out"),
    "truck": ("left", "right"),
}


@dataclass(frozen=True)
class Object:
    """One object: what it is, where it starts (x, z on the ground) and how it moves."""

    shape: str
    colour: str
    size: str
    material: str
    motion: str = "static"
    x: float = 0.0
    z: float = 0.0
    direction: str = ""  # left/right for DIRECTED_MOTIONS
    partner: int = -1  # index of the other object for PAIR_MOTIONS
    yaw: float = 0.0  # initial rotation about the vertical axis, radians
    height: float = 1.5  # drop height (bottom above ground) for bounce and fall, metres
    restitution: float = 0.7  # bounce: speed kept at each impact
    turns: float = 1.0  # spin / orbit: turns over the clip

    def __post_init__(self) -> None:
        _check_choice("shape", self.shape, SHAPES)
        _check_choice("colour", self.colour, tuple(COLOURS))
        _check_choice("size", self.size, tuple(SIZES))
        _check_choice("material", self.material, MATERIALS)
        _check_choice("motion", self.motion, MOTIONS)
        if self.motion in DIRECTED_MOTIONS:
            _check_choice(f"direction of '{self.motion}'", self.direction, DIRECTIONS)
        if self.motion == "roll":
            _check_choice("shape of a rolling object", self.shape, ROLLING_SHAPES)
        if not 0.0 <= self.restitution < 1.0:
            raise ValueError(f"restitution must be in [0, 1), got {self.restitution}")

    @property
    def radius(self) -> float:
        """Half-extent in metres."""
        return SIZES[self.size]


@dataclass(frozen=True)
class CameraPath:
    """A smooth camera move; it starts on the +z axis at `distance` and `height`, looking at the origin."""

    move: str = "static"
    direction: str = ""
    distance: float = 9.0
    height: float = 3.0
    fov: float = 45.0  # vertical field of view, degrees

    def __post_init__(self) -> None:
        _check_choice("camera move", self.move, tuple(CAMERA_MOVES))
        _check_choice(f"direction of camera move '{self.move}'", self.direction, CAMERA_MOVES[self.move])


@dataclass(frozen=True)
class Scene:
    """Everything a clip is rendered from; its caption and ground truth follow from it exactly."""

    objects: tuple[Object, ...]
    camera: CameraPath = field(default_factory=CameraPath)
    ground: str = "checker"
    time_of_day: str = "noon"
    frames: int = 33
    fps: float = 16.0
    seed: int = 0  # drives caption phrasing and texture noise

    def __post_init__(self) -> None:
        if not 1 <= len(self.objects) <= 4:
            raise ValueError(f"a scene has 1 to 4 objects, got {len(self.objects)}")
        _check_choice("ground", self.ground, GROUNDS)
        _check_choice("time of day", self.time_of_day, TIMES_OF_DAY)
        if self.frames < 1:
            raise ValueError(f"frames must be >= 1, got {self.frames}")
        if not self.fps > 0:
            raise ValueError(f"fps must be > 0, got {self.fps}")
        for i, ob in enumerate(self.objects):
            if ob.motion in PAIR_MOTIONS and not (0 <= ob.partner < len(self.objects) and ob.partner != i):
                raise ValueError(f"object {i} ({ob.motion}) needs a partner index other than itself")

    @property
    def duration(self) -> float:
        """Seconds from the first frame to the last (at least one frame interval)."""
        return max(self.frames - 1, 1) / self.fps


def _check_choice(what: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"unknown {what} '{value}'; allowed: {', '.join(repr(a) for a in allowed)}")
