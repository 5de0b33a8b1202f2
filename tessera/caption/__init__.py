"""Captions: the captioner (video -> detailed caption), parsing captions back to facts, scoring them
against the world's truth, and prompt expansion (short prompt -> detailed caption).

    expand("red ball bouncing", seed=0).caption      # expand.py
    load_captioner().caption / caption_clips(...)      # weights.py, model.py
    train_captioner(CaptionerTrainConfig(), "runs/c")  # train.py
"""

from tessera.caption.expand import Expansion, expand, expand_for_generate, expand_with_lm
from tessera.caption.parse import Facts, ObjectFacts, ParseError, parse, scene_facts

__all__ = [
    "Expansion", "Facts", "ObjectFacts", "ParseError", "expand", "expand_for_generate", "expand_with_lm",
    "parse", "scene_facts",
]  # fmt: skip
