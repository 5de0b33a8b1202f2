"""The floors of the house (docs/design.md): every module on a floor, importing only from its own floor or
below; no import cycles between tessera's modules; generation importing nothing from training or
evaluation; and every import inside a function saying why."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "tessera"
DESIGN = ROOT.parent / "docs" / "design.md"
GENERATION = ("api", "capabilities", "sampling", "folders", "requests", "frames", "conditioning", "seeding")


def _modules() -> dict[str, Path]:
    names = {}
    for f in sorted(ROOT.rglob("*.py")):
        parts = ("tessera", *f.relative_to(ROOT).with_suffix("").parts)
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return names


def _imports(mods: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the tessera modules it imports anywhere (at the top or in a function)."""
    edges: dict[str, set[str]] = {}
    for name, f in mods.items():
        found = set()
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tessera"):
                subs = [f"{node.module}.{a.name}" for a in node.names]
                found |= {s for s in subs if s in mods} or {node.module}
        edges[name] = {m for m in found if m in mods and m != name}
    return edges


def _reach(edges: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for m in edges[todo.pop()] - seen:
            seen.add(m)
            todo.append(m)
    return seen


def _floors() -> dict[str, int]:
    """Module or package name -> its floor, the first on which docs/design.md's "Floors" list names it
    (`video.py`, `flow/`); the package itself (`tessera`, whose names load the Python API) sits on top."""
    section = DESIGN.read_text().split("## Floors", 1)[1].split("\n## ", 1)[0]
    floors = {"tessera": 99}
    for number, text in re.findall(r"^(\d+)\. (.*?)(?=^\d+\. |^\S|\Z)", section, re.M | re.S):
        for name in re.findall(r"`([\w/]+?)(?:\.py|/)`", text):
            floors.setdefault("tessera." + name.replace("/", "."), int(number))  # where first named
    return floors


def _floor(module: str, floors: dict[str, int]) -> int | None:
    """The floor of `module`: its own, or that of the package that holds it."""
    parts = module.split(".")
    return next((floors[p] for i in range(len(parts), 0, -1) if (p := ".".join(parts[:i])) in floors), None)


def _upward(edges: dict[str, set[str]], floors: dict[str, int]) -> list[str]:
    return sorted(
        f"{a} (floor {_floor(a, floors)}) imports {b} (floor {_floor(b, floors)})"
        for a, imported in edges.items()
        for b in imported
        if _floor(b, floors) > _floor(a, floors)
    )


def test_every_module_imports_only_from_its_floor_or_below():
    floors = _floors()
    assert floors["tessera.config"] == 1 and floors["tessera.cli"] == 6 and floors["tessera.train"] == 4
    edges = _imports(_modules())
    homeless = sorted(m for m in edges if _floor(m, floors) is None)
    assert homeless == [], f"modules on no floor of docs/design.md: {homeless}"
    assert _upward(edges, floors) == [], "imports from a higher floor"


def test_an_upward_import_is_caught(tmp_path):
    """The captioner's trainer importing the trainers' state, at the top or in a function, is refused."""
    source = (ROOT / "caption" / "train.py").read_text()
    for extra in ("from tessera.train.state import EMA\n", "def f():\n    from tessera.train import state\n"):
        (tmp_path / "train.py").write_text(source + extra)
        edges = _imports({**_modules(), "tessera.caption.train": tmp_path / "train.py"})
        assert _upward(edges, _floors()) == [
            "tessera.caption.train (floor 3) imports tessera.train.state (floor 4)"
        ]


def test_no_import_cycles():
    edges = _imports(_modules())
    cycles = sorted(m for m in edges if m in _reach(edges, m))
    assert cycles == [], f"modules that import themselves through others: {cycles}"


def test_generation_imports_no_training_or_evaluation():
    edges = _imports(_modules())
    for name in GENERATION:
        upstairs = sorted(
            m for m in _reach(edges, f"tessera.{name}") if m.startswith(("tessera.train", "tessera.eval"))
        )
        assert upstairs == [], f"tessera.{name} reaches {upstairs}"


def test_imports_inside_functions_say_why():
    missing = []
    for f in sorted(ROOT.rglob("*.py")):
        lines = f.read_text().splitlines()
        for fn in ast.walk(ast.parse("\n".join(lines))):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    first, last = node.lineno - 1, node.end_lineno - 1
                    while first > 0 and lines[first - 1].lstrip().startswith(("import ", "from ")):
                        first -= 1
                    while last + 1 < len(lines) and lines[last + 1].lstrip().startswith(("import ", "from ")):
                        last += 1
                    block = lines[first - 1 : last + 1]  # the line above the block, and the block
                    if not any("#" in line for line in block):
                        missing.append(f"{f.relative_to(ROOT.parent)}:{node.lineno}")
    assert missing == [], f"imports inside functions without a reason: {missing}"


def test_two_error_types_and_the_old_names_are_them():
    """Only tessera/errors.py defines exception classes; the names modules raise are its two."""
    defined = sorted(
        f"{f.relative_to(ROOT.parent)}: {node.name}"
        for f in ROOT.rglob("*.py")
        for node in ast.walk(ast.parse(f.read_text()))
        if isinstance(node, ast.ClassDef)
        and any(isinstance(b, ast.Name) and b.id.endswith(("Error", "Exception")) for b in node.bases)
    )
    assert defined == ["tessera/errors.py: FileError", "tessera/errors.py: RequestError"]

    from tessera.caption.parse import ParseError
    from tessera.checkpoint import CheckpointError
    from tessera.data.buckets import BucketError
    from tessera.data.folder import DataError
    from tessera.errors import FileError, RequestError
    from tessera.eval import EvalError
    from tessera.eval.prompts import PromptSetError
    from tessera.models.text import TokenizerError
    from tessera.parallel import SequenceParallelError
    from tessera.serve import ServeError
    from tessera.train.config import ConfigError
    from tessera.train.run import RunError
    from tessera.video import VideoError

    requests = (ConfigError, BucketError, EvalError, ParseError, SequenceParallelError, ServeError)
    files = (CheckpointError, DataError, PromptSetError, TokenizerError, RunError, VideoError)
    assert all(e is RequestError for e in requests) and all(e is FileError for e in files)
    e = VideoError("clip.mp4", "file is empty (0 bytes)")
    assert str(e) == "clip.mp4: file is empty (0 bytes)" and e.problem == "file is empty (0 bytes)"
    assert FileError("model folder not found").problem == "model folder not found"
