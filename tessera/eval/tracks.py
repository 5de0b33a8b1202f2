"""What a parser returns for a clip: per-frame detections linked into object tracks.

Both parsers give the same structure: the learned `SceneParser` (parser.py) reads pixels; `parse_truth`
is the oracle that reads the renderer's per-pixel object ids and the scene, which is what a perfect
parser would output. Every metric takes a `ClipParse`, so either plugs in.

Coordinates are fractions of the frame (x / W, y / H), areas fractions of its pixels, so metrics do not
depend on the resolution a parser runs at.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tessera.world.scene import COLOURS, SHAPES, SIZES, Scene

COLOUR_NAMES: tuple[str, ...] = tuple(COLOURS)
SIZE_NAMES: tuple[str, ...] = tuple(SIZES)
MIN_AREA = 0.0008  # detections below this fraction of the frame (about 3 px at 64x64) are ignored


@dataclass
class Detection:
    """One object seen in one frame: attribute labels (indices into SHAPES / COLOUR_NAMES / SIZE_NAMES),
    the pixel mask's centroid (x, y), area and box (x0, y0, x1, y1), all as fractions of the frame."""

    frame: int
    shape: int
    colour: int
    size: int
    centroid: tuple[float, float]
    area: float
    box: tuple[float, float, float, float]
    label: int = 0  # instance value in the parser's component map
    track: int = -1  # index of the track it was linked into


@dataclass
class Track:
    """One object over time. `present` (T,) bool; `centroid` (T, 2), `area` (T,), `box` (T, 4) are NaN
    where absent; per-frame labels (T,) are -1 where absent. The attributes are area-weighted votes."""

    present: np.ndarray
    centroid: np.ndarray
    area: np.ndarray
    box: np.ndarray
    shapes: np.ndarray
    colours: np.ndarray
    sizes: np.ndarray
    shape: str = ""
    colour: str = ""
    size: str = ""

    @property
    def name(self) -> str:
        """'red cube', as the captions name objects."""
        return f"{self.colour} {self.shape}"

    def frames_present(self) -> int:
        """Number of frames the track is seen in."""
        return int(self.present.sum())

    def share(self, shape: int, colour: int) -> float:
        """Area-weighted fraction of the track's detections labelled with this shape and colour."""
        w = self.area[self.present]
        same = (self.shapes[self.present] == shape) & (self.colours[self.present] == colour)
        return float((w * same).sum() / w.sum()) if w.size else 0.0

    def vote(self, frames: np.ndarray | None = None) -> tuple[str, str, str]:
        """(shape, colour, size) by area-weighted vote over `frames` (bool (T,), default all present)."""
        sel = self.present if frames is None else self.present & frames
        if not sel.any():
            return "", "", ""
        w = self.area[sel]
        out = []
        for labels, names in ((self.shapes, SHAPES), (self.colours, COLOUR_NAMES), (self.sizes, SIZE_NAMES)):
            out.append(names[int(np.bincount(labels[sel], weights=w, minlength=len(names)).argmax())])
        return out[0], out[1], out[2]


@dataclass
class ClipParse:
    """The parse of a clip: tracks plus an instance map (T, H, W) int16 (0 background, i + 1 = track i).
    `find_share` 0: a named object is a track whose voted shape and colour are its own; above 0: the track
    with the largest area-weighted share of detections labelled with its shape and colour, if that share
    is at least `find_share` (a soft object whose label flips is still found; `bench/linking.py`)."""

    tracks: list[Track]
    frames: int
    instances: np.ndarray
    detections: list[Detection] = field(default_factory=list)
    find_share: float = 0.0

    def significant(self, min_fraction: float = 0.15) -> list[Track]:
        """Tracks seen in at least max(2, min_fraction * T) frames (shorter ones are parser noise), or in
        every frame of a shorter clip (an image's one frame)."""
        need = min(self.frames, max(2, int(np.ceil(min_fraction * self.frames))))
        return [tr for tr in self.tracks if tr.frames_present() >= need]

    def find(self, shape: str, colour: str) -> Track | None:
        """The significant track showing this shape and colour, or None: the most-present one whose vote
        names them, or with `find_share`, the one whose detections carry them most (ties: most present)."""
        tracks = self.significant()
        if self.find_share <= 0:
            hits = [tr for tr in tracks if tr.shape == shape and tr.colour == colour]
            return max(hits, key=Track.frames_present) if hits else None
        s, c = SHAPES.index(shape), COLOUR_NAMES.index(colour)
        shares = [(tr.share(s, c), tr.frames_present(), i) for i, tr in enumerate(tracks)]
        best = max(shares, default=(0.0, 0, -1))
        return tracks[best[2]] if best[0] >= self.find_share else None

    def count(self) -> np.ndarray:
        """(T,) number of significant tracks visible in each frame."""
        tracks = self.significant()
        if not tracks:
            return np.zeros(self.frames, dtype=np.int64)
        return np.stack([tr.present for tr in tracks]).sum(0)


def mask_stats(mask: np.ndarray) -> tuple[tuple[float, float], float, tuple[float, float, float, float]]:
    """Centroid, area and box of a boolean mask (H, W), as fractions of the frame."""
    h, w = mask.shape
    ys, xs = np.nonzero(mask)
    centroid = ((xs.mean() + 0.5) / w, (ys.mean() + 0.5) / h)
    box = (xs.min() / w, ys.min() / h, (xs.max() + 1) / w, (ys.max() + 1) / h)
    return (float(centroid[0]), float(centroid[1])), float(len(xs) / (h * w)), tuple(float(b) for b in box)


def empty_track(frames: int) -> Track:
    """A track with no frames yet."""
    nan = np.full(frames, np.nan)
    minus = np.full(frames, -1, dtype=np.int64)
    return Track(
        np.zeros(frames, bool),
        np.full((frames, 2), np.nan),
        nan.copy(),
        np.full((frames, 4), np.nan),
        minus.copy(),
        minus.copy(),
        minus.copy(),
    )


def add(track: Track, d: Detection) -> None:
    """Put detection `d` into `track` at its frame."""
    f = d.frame
    track.present[f] = True
    track.centroid[f], track.area[f], track.box[f] = d.centroid, d.area, d.box
    track.shapes[f], track.colours[f], track.sizes[f] = d.shape, d.colour, d.size


def finish(tracks: list[Track]) -> list[Track]:
    """Fill in each track's voted attributes."""
    for tr in tracks:
        tr.shape, tr.colour, tr.size = tr.vote()
    return tracks


def link_tracks(
    detections: list[Detection], frames: int, max_jump: float = 0.25, labels_gate: bool = True
) -> list[Track]:
    """Greedy online linking (in the spirit of SORT, Bewley et al. 2016, with attributes instead of a
    motion model): each detection joins the live track with the lowest cost (centroid distance in frame
    widths + 0.3 per differing colour or shape label); if none is within `max_jump`, it re-joins a track
    last seen earlier with the same colour and shape (re-identification after occlusion or leaving the
    frame); otherwise it starts a track. `labels_gate` False: the distance alone must be within
    `max_jump` and the labels only rank the candidates, so a soft object whose label flips stays one
    track (`bench/linking.py` measures both; the benchmark uses the default)."""
    tracks: list[Track] = []
    last: list[int] = []  # frame each track was last seen
    for f in range(frames):
        dets = sorted((d for d in detections if d.frame == f), key=lambda d: -d.area)
        taken: set[int] = set()
        for d in dets:
            best, best_cost = -1, max_jump if labels_gate else float("inf")
            for i, tr in enumerate(tracks):
                if i in taken or last[i] != f - 1:
                    continue
                j = last[i]
                dist = float(np.hypot(*(np.asarray(d.centroid) - tr.centroid[j])))
                cost = dist + 0.3 * (d.colour != tr.colours[j]) + 0.3 * (d.shape != tr.shapes[j])
                if cost < best_cost and (labels_gate or dist < max_jump):
                    best, best_cost = i, cost
            if best < 0:
                same = [
                    i
                    for i, tr in enumerate(tracks)
                    if i not in taken
                    and last[i] < f
                    and _label(tr, "colours") == d.colour
                    and _label(tr, "shapes") == d.shape
                ]
                best = max(same, key=lambda i: last[i]) if same else -1
            if best < 0:
                tracks.append(empty_track(frames))
                last.append(f)
                best = len(tracks) - 1
            add(tracks[best], d)
            d.track = best
            last[best] = f
            taken.add(best)
    return finish(tracks)


def _label(track: Track, which: str) -> int:
    """Most common label of a track so far (-1 if empty)."""
    labels = getattr(track, which)[track.present]
    return int(np.bincount(labels).argmax()) if labels.size else -1


def parse_truth(scene: Scene, ids: np.ndarray, min_area: float = MIN_AREA) -> ClipParse:
    """The oracle parse: object k is seen where the renderer's id map `ids` (T, H, W) equals k + 1,
    in frames where it covers at least `min_area` of the frame; attributes come from the scene."""
    ids = np.asarray(ids)
    t_len, h, w = ids.shape
    tracks, detections = [], []
    instances = np.zeros(ids.shape, dtype=np.int16)
    for k, ob in enumerate(scene.objects):
        tr = empty_track(t_len)
        labels = (SHAPES.index(ob.shape), COLOUR_NAMES.index(ob.colour), SIZE_NAMES.index(ob.size))
        for f in range(t_len):
            mask = ids[f] == k + 1
            if mask.sum() < max(1.0, min_area * h * w):
                continue
            instances[f][mask] = k + 1
            centroid, area, box = mask_stats(mask)
            d = Detection(f, *labels, centroid, area, box, label=k + 1, track=k)
            add(tr, d)
            detections.append(d)
        tracks.append(tr)
    return ClipParse(finish(tracks), t_len, instances, detections)
