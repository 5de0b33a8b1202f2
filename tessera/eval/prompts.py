"""The fixed prompt sets of the benchmark: world scenes named by (split, seed), written once into the repo.

Each prompt is a `Scene` drawn by `WorldSampler(WorldConfig(frames, fps), split).sample(seed)`, so its
truth is known exactly; the text given to the model is the scene's detailed caption. The JSON files in
`tessera/eval/prompts/` hold the seeds, splits and captions; loading re-draws every scene and checks that
its caption still matches, so a change in the world that would silently change the benchmark is an error.
Regenerate the files (a deliberate, reviewed change) with `python -m tessera.eval.prompts`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from tessera.errors import FileError as PromptSetError
from tessera.world import Scene, WorldConfig, WorldSampler, captions, render
from tessera.world.truth import visibility

PROMPT_DIR = Path(__file__).parent / "prompts"
# (frames, train prompts, held-out prompts) per suite; `image` is text-to-image (one frame).
SUITE_SHAPES: dict[str, tuple[int, int, int]] = {
    "quick": (17, 6, 2), "full": (33, 32, 16), "image": (1, 12, 4)
}  # fmt: skip
IMAGE_VISIBLE = 0.5  # an image prompt's every object shows at least this fraction of itself in the frame
# Every suite covers these tags first (greedy set cover over seeds), then fills up in seed order.
WANTED_TAGS = (
    "camera:orbit",
    "camera:pan",
    "camera:dolly",
    "occlusion",
    "leave_return",
    "motion:bounce",
    "motion:fall",
    "motion:collide",
    "motion:slide",
    "motion:approach",
    "camera:static",
)
CANDIDATES = 300  # seeds searched per split


@dataclass(frozen=True)
class EvalPrompt:
    """One benchmark prompt: the scene's identity, its captions and tags saying what it tests."""

    id: str
    split: str
    seed: int
    frames: int
    fps: float
    caption: str  # detailed caption: the text the model is given
    short: str
    tags: tuple[str, ...]

    def scene(self) -> Scene:
        """Re-draw the scene; raises PromptSetError if the world now draws a different one."""
        scene = WorldSampler(WorldConfig(frames=self.frames, fps=self.fps), self.split).sample(self.seed)
        if captions(scene)[0] != self.caption:
            raise PromptSetError(
                f"prompt {self.id}: the world engine now draws a different scene for {self.split} seed "
                f"{self.seed}; regenerate the prompt sets with `python -m tessera.eval.prompts` on purpose"
            )
        return scene


def scene_tags(scene: Scene, split: str) -> tuple[str, ...]:
    """What a scene exercises: camera move, object motions, occlusion / leave-and-return, held-out."""
    tags = {f"camera:{scene.camera.move}"} | {f"motion:{o.motion}" for o in scene.objects}
    if any(o.motion == "pass_behind" for o in scene.objects):
        tags.add("occlusion")
    if any(o.motion == "leave_return" for o in scene.objects):
        tags.add("leave_return")
    if split == "heldout":
        tags.add("heldout")
    return tuple(sorted(tags))


def build_prompt_set(
    suite: str,
    frames: int | None = None,
    n_train: int | None = None,
    n_heldout: int | None = None,
    fps: float = 16.0,
) -> list[EvalPrompt]:
    """Choose the prompts of a suite: per split, a greedy cover of WANTED_TAGS over the first
    CANDIDATES seeds (then the lowest seeds left), sorted by seed. One-frame prompts (images) are drawn
    only from scenes whose every object is in view (`in_view`): an image cannot show a hidden object."""
    base = SUITE_SHAPES.get(suite, (17, 4, 2))
    frames = frames or base[0]
    counts = {
        "train": base[1] if n_train is None else n_train,
        "heldout": base[2] if n_heldout is None else n_heldout,
    }
    out: list[EvalPrompt] = []
    for split, count in counts.items():
        sampler = WorldSampler(WorldConfig(frames=frames, fps=fps), split)
        pool = [(seed, sampler.sample(seed)) for seed in range(CANDIDATES)]
        if frames == 1:
            pool = [c for c, ok in zip(pool, in_view([s for _, s in pool]), strict=True) if ok]
        covered: set[str] = set()
        chosen: list[tuple[int, Scene]] = []
        for _ in range(count):  # each pick covers the most wanted tags not yet covered (lowest seed on ties)
            gain = [len(set(scene_tags(s, split)) & set(WANTED_TAGS) - covered) for _, s in pool]
            best = int(np.argmax(gain))
            chosen.append(pool.pop(best))
            covered |= set(scene_tags(chosen[-1][1], split))
        chosen.sort(key=lambda c: c[0])
        for seed, scene in chosen:
            detailed, short = captions(scene)
            tags = scene_tags(scene, split)
            out.append(EvalPrompt(f"{split}-{seed}", split, seed, frames, fps, detailed, short, tags))
    return out


def in_view(scenes: list[Scene], size: int = 128) -> list[bool]:
    """Per scene: whether every object shows at least IMAGE_VISIBLE of itself in every frame (rendered on
    the CPU at size x size)."""
    ok = []
    for i in range(0, len(scenes), 32):
        out = render(scenes[i : i + 32], (size, size), "cpu")
        for b, scene in enumerate(scenes[i : i + 32]):
            n = len(scene.objects)
            _, fraction = visibility(out.ids[b], out.coverage[b, :, :n])
            ok.append(bool((fraction >= IMAGE_VISIBLE).all()))
    return ok


def prompt_file(suite: str) -> Path:
    """Where a suite's prompt set lives in the repo."""
    return PROMPT_DIR / f"{suite}.json"


def save_prompt_set(prompts: list[EvalPrompt], path: Path) -> Path:
    """Write prompts as JSON (one object per prompt)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [asdict(p) | {"tags": list(p.tags)} for p in prompts]
    path.write_text(json.dumps({"version": 1, "prompts": rows}, indent=1) + "\n")
    return path


def load_prompt_set(suite_or_path: str | Path) -> list[EvalPrompt]:
    """A suite name ('quick', 'full', 'image') or a JSON path -> its prompts."""
    path = Path(suite_or_path)
    if not path.suffix:
        if str(suite_or_path) not in SUITE_SHAPES:
            raise PromptSetError(
                f"unknown suite '{suite_or_path}'; allowed: {', '.join(SUITE_SHAPES)} or a .json path"
            )
        path = prompt_file(str(suite_or_path))
    if not path.exists():
        raise PromptSetError(f"{path}: prompt set not found")
    try:
        rows = json.loads(path.read_text())["prompts"]
        return [EvalPrompt(**(r | {"tags": tuple(r["tags"])})) for r in rows]
    except (KeyError, TypeError, json.JSONDecodeError) as e:
        raise PromptSetError(f"{path}: not a prompt set ({e})") from e


if __name__ == "__main__":
    for name in SUITE_SHAPES:
        print(save_prompt_set(build_prompt_set(name), prompt_file(name)))
