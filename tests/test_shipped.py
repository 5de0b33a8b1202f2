"""The shipped model (tessera/assets/model): it loads by default and its output follows the prompt.

It is a weak first model (its card says how weak): objects are rarely right, but the scene is. So the
checks here are on what it does learn, the ground and the light, read from pixels with no parser.
"""

from __future__ import annotations

import pytest
import torch

from tessera.checkpoint import load_model
from tessera.pipeline import default_model_path, generate

SCENE = "One object on {ground}, {light}. A large red cube stays where it is."


@pytest.fixture(scope="module")
def shipped():
    path = default_model_path()
    assert path is not None, "tessera/assets/model is missing: the package must carry the shipped model"
    return load_model(path, "cpu")


def still(model, ground: str, light: str, seed: int = 0) -> torch.Tensor:
    """One 128x128 frame (H, W, 3) float 0..255 for the scene prompt."""
    prompt = SCENE.format(ground=ground, light=light)
    return generate(model, prompt, frames=1, height=128, width=128, steps=10, seed=seed)[0].float()


def test_shipped_model_is_the_default_and_complete(shipped):
    assert shipped.config.preset == "s-deeper"
    assert "text_alignment" in (default_model_path() / "README.md").read_text()  # the card has scores
    for name, module in shipped.modules().items():
        assert all(torch.isfinite(p).all() for p in module.parameters()), name


def test_sky_follows_the_time_of_day(shipped):
    """Top rows are sky: bright blue at noon, dark at night, red-orange at sunset, for two seeds each."""
    for seed in (0, 1):
        night = still(shipped, "a lawn", "at night under the moon", seed)[:24].mean(dim=(0, 1))
        noon = still(shipped, "a lawn", "at noon under a bright sun", seed)[:24].mean(dim=(0, 1))
        sunset = still(shipped, "a lawn", "at sunset under a glowing sky", seed)[:24].mean(dim=(0, 1))
        assert noon.mean() > 2.5 * night.mean()  # RGB means: about 190 against 35
        assert noon[2] > noon[0]  # a blue sky at noon
        assert sunset[0] > 1.3 * sunset[2]  # a red-orange one at sunset


def test_ground_follows_the_prompt(shipped):
    """Bottom rows are ground: green on a lawn, warm (red over green over blue) on sand."""
    lawn = still(shipped, "a lawn", "at noon under a bright sun")[-40:].mean(dim=(0, 1))
    sand = still(shipped, "sand", "at noon under a bright sun")[-40:].mean(dim=(0, 1))
    assert lawn[1] > 1.3 * lawn[0] and lawn[1] > 1.3 * lawn[2]
    assert sand[0] > sand[1] > sand[2]
