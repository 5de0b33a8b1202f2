"""The Python API: `tessera.load` without training or evaluation code, methods that return what the
capabilities do, and the README's example as written."""

import inspect
import re
import subprocess
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import tessera
from tessera import api, capabilities, folders, sampling
from tessera.requests import RequestError
from tessera.video import write_video

pytestmark = pytest.mark.usefixtures("one_thread")
FAST = {"steps": 2, "guidance": 2.0, "seed": 3}
README = Path(__file__).resolve().parent.parent / "README.md"


def clip(frames: int, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (frames, 32, 32, 3), generator=gen, dtype=torch.uint8)


def test_load_and_generate_import_no_training_or_evaluation(tiny_model_dir):
    """A user who only generates never loads tessera.train or tessera.eval (checked in a fresh process)."""
    code = (
        "import sys, tessera\n"
        f"pipe = tessera.load({str(tiny_model_dir)!r}, 'cpu')\n"
        "pipe.generate('a red cube', frames=5, height=32, width=32, steps=1)\n"
        "print(sorted(m for m in sys.modules if m.startswith(('tessera.train', 'tessera.eval'))))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "[]"


def test_methods_return_what_the_capabilities_do(tiny_model_dir, tmp_path):
    pipe = tessera.load(tiny_model_dir, "cpu")
    m, source, other = pipe.model, clip(9), clip(5, seed=2)
    steps = []
    video = pipe.generate("a red cube", 5, 32, 32, progress=lambda i, n: steps.append((i, n)), **FAST)
    assert steps == [(1, 2), (2, 2)] and video.dtype == torch.uint8 and video.shape == (5, 32, 32, 3)
    assert torch.equal(video, sampling.generate(m, "a red cube", 5, 32, 32, **FAST))
    assert torch.equal(pipe.image("x", 32, 48, **FAST), capabilities.image(m, "x", 32, 48, **FAST)[None])
    assert torch.equal(
        pipe.animate(source[0], "x", 5, **FAST), capabilities.animate(m, source[0], "x", 5, **FAST)
    )
    assert torch.equal(
        pipe.extend(source, "x", 9, "backward", **FAST),
        capabilities.extend(m, source, "x", 9, "backward", **FAST),
    )
    assert torch.equal(
        pipe.connect(source, other, "x", 5, **FAST), capabilities.connect(m, source, other, "x", 5, **FAST)
    )
    assert torch.equal(
        pipe.loop("x", 5, source, 32, 32, **FAST), capabilities.loop(m, "x", 5, source, 32, 32, **FAST)
    )
    assert torch.equal(pipe.edit(source, "x", 0.5, **FAST), capabilities.edit(m, source, "x", 0.5, **FAST))
    assert torch.equal(
        pipe.long("x", 13, 9, height=32, width=32, **FAST),
        capabilities.long(m, "x", 13, 9, None, 32, 32, **FAST),
    )
    # A given video may be a file; an array works as a tensor does.
    path = write_video(tmp_path / "source.png", source[:1])
    assert torch.equal(pipe.animate(path, "x", 5, **FAST), pipe.animate(source[0].numpy(), "x", 5, **FAST))
    with pytest.raises(RequestError, match="--frames must be 1 \\+ 4k"):
        pipe.generate("x", 6, 32, 32)


def test_methods_take_their_capabilitys_own_parameters(tmp_path):
    """No method restates a capability's parameters: each has the capability's own (names, order, kinds,
    defaults), less the model and `return_latents`; one added to a capability appears on its method."""
    skip = ("model", "return_latents")
    for name in ("generate", "image", "animate", "extend", "connect", "loop", "edit", "long"):
        capability = sampling.generate if name == "generate" else getattr(capabilities, name)
        own = [p for p in inspect.signature(capability).parameters.values() if p.name not in skip]
        method = list(inspect.signature(getattr(tessera.Pipeline, name)).parameters.values())
        assert method[0].name == "self"
        assert [(p.name, p.kind, p.default) for p in method[1:]] == [(p.name, p.kind, p.default) for p in own]
        assert getattr(tessera.Pipeline, name).__doc__ == capability.__doc__

    def grown(model, video: torch.Tensor, prompt: str, new: int = 3, return_latents=False, **sampling):
        return model, video, prompt, new, sampling

    method = api._method(grown)
    assert list(inspect.signature(method).parameters) == ["self", "video", "prompt", "new", "sampling"]
    path = write_video(tmp_path / "v.png", clip(1))
    model, video, prompt, new, options = method(SimpleNamespace(model="M"), path, "x", new=5, steps=2)
    assert (model, prompt, new, options) == ("M", "x", 5, {"steps": 2}) and torch.equal(video, clip(1))
    with pytest.raises(TypeError, match="return_latents"):
        method(SimpleNamespace(model="M"), path, "x", return_latents=True)


def test_expand_is_the_caption_the_command_samples(tiny_model_dir):
    from tessera.caption.expand import expand_for_generate

    pipe = tessera.load(tiny_model_dir, "cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert pipe.expand("a red cube", seed=2) == expand_for_generate("a red cube", 2)[0]


def test_the_readme_example_runs(tiny_model_dir, tmp_path, monkeypatch):
    """The README's Python block as written, with the tiny model standing in for the shipped one."""
    text = README.read_text()
    section = text[text.index("## Python API") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.setattr(folders, "default_model_path", lambda: tiny_model_dir)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    written = list(tmp_path.iterdir())
    assert len(written) == 1 and written[0].stat().st_size > 0
