"""Shared fixtures: a tiny random model folder, built once per test session (no network, seconds)."""

from pathlib import Path

import pytest
import torch

import tessera  # noqa: F401  (before any matrix product: it chooses MKL's reproducible mode)

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A `tessera model init --preset tiny` folder, its DiT output layer nudged off zero.

    A freshly initialised DiT outputs exactly zero (adaLN-zero); tests of sampling and loading need a
    network whose output depends on its inputs, so the zero-initialised layers get small random weights.
    """
    from tessera import pipeline
    from tessera.checkpoint import load_model, save_model

    path = pipeline.init_model_folder("tiny", tmp_path_factory.mktemp("models") / "tiny", seed=0)
    model = load_model(path)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.dit.parameters():
            if not p.any():
                p.copy_(0.02 * torch.randn(p.shape, generator=gen))
    return save_model(model, path)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run fastest on one thread (and two threads thrash on a busy 2-core machine); a test
    module opts in with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def small_disk(tmp_path: Path):
    """A tmpfs of `size` bytes mounted on a fresh folder: `small_disk(size) -> Path`, and
    `small_disk.resize(size)` grows it (tmpfs remounts keep the files). Skips, saying why, where this
    process may not mount (not root, no CAP_SYS_ADMIN): a full disk cannot be faked honestly."""
    import subprocess

    mounted: list[Path] = []

    def mount(size: int) -> Path:
        where = tmp_path / f"disk{len(mounted)}"
        where.mkdir()
        r = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True
        )
        if r.returncode != 0:
            pytest.skip(f"cannot mount a small tmpfs here ({r.stderr.decode().strip() or r.returncode})")
        mounted.append(where)
        return where

    def resize(size: int) -> None:
        subprocess.run(["mount", "-o", f"remount,size={size}", str(mounted[-1])], check=True)

    mount.resize = resize
    yield mount
    for where in mounted:
        subprocess.run(["umount", str(where)], check=False)
