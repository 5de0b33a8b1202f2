"""The floors of the house (docs/design.md): no import cycles between tessera's modules, generation
importing nothing from training or evaluation, and every import inside a function saying why."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "tessera"
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
