"""Data: buckets, resizing, folder data sets and manifests, and the index-addressed folder source."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tessera.data.buckets import BucketError, group_by_shape, nearest_bucket, resize_crop
from tessera.data.folder import DataError, FolderDataset
from tessera.data.source import FolderSource

BUCKETS = [(1, 32, 32), (9, 32, 32), (9, 32, 48), (5, 48, 32)]


def write_gif(path: Path, frames: int, height: int, width: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    images = [
        Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)) for _ in range(frames)
    ]
    images[0].save(path, save_all=True, append_images=images[1:], duration=62, loop=0)


def test_nearest_bucket_prefers_frames_then_aspect():
    assert nearest_bucket(1, 100, 100, BUCKETS) == (1, 32, 32)  # an image
    assert nearest_bucket(20, 90, 160, BUCKETS) == (9, 32, 48)  # landscape clip
    assert nearest_bucket(20, 64, 64, BUCKETS) == (9, 32, 32)
    assert nearest_bucket(6, 160, 90, BUCKETS) == (5, 48, 32)  # too short for 9 frames
    with pytest.raises(BucketError, match="one-frame bucket"):
        nearest_bucket(1, 32, 32, [(9, 32, 32)])


def test_resize_crop_covers_and_centres():
    x = torch.linspace(-1, 1, 64).repeat(3, 12, 32, 1)  # (3, 12, 32, 64): a horizontal ramp
    y = resize_crop(x, (9, 32, 32))
    assert y.shape == (3, 9, 32, 32)
    # The centre half of the ramp survives: values stay symmetric around 0 and well inside [-1, 1].
    assert float(y[..., 0].mean()) == pytest.approx(-float(y[..., -1].mean()), abs=1e-4)
    assert 0.4 < float(y[..., -1].mean()) < 0.6
    with pytest.raises(BucketError):
        resize_crop(x, (17, 32, 32))


def test_group_by_shape_keeps_first_appearance_order():
    assert group_by_shape([(1, 2), (3, 4), (1, 2), (5, 6)]) == [[0, 2], [1], [3]]


def test_folder_with_sidecars_and_manifest(tmp_path: Path):
    write_gif(tmp_path / "a.gif", 10, 40, 60, 0)
    (tmp_path / "a.txt").write_text("a noisy clip\n")
    Image.new("RGB", (50, 40), (255, 0, 0)).save(tmp_path / "b.png")
    ds = FolderDataset(tmp_path)
    assert [i.path.name for i in ds.items] == ["a.gif", "b.png"]
    assert [i.caption for i in ds.items] == ["a noisy clip", ""]
    assert ds.size(0) == (10, 40, 60)
    sample = ds.load(1, (1, 32, 32))
    assert sample["video"].shape == (3, 1, 32, 32)
    assert torch.allclose(sample["video"][0], torch.ones(1, 32, 32))  # red stays red after the resize
    lines = [{"file": "b.png", "caption": "red"}, {"file": "a.gif", "caption": "noise"}]
    (tmp_path / "manifest.jsonl").write_text("\n".join(json.dumps(e) for e in lines))
    for path in (tmp_path, tmp_path / "manifest.jsonl"):
        assert [i.caption for i in FolderDataset(path).items] == ["red", "noise"]


def test_folder_errors_name_the_problem(tmp_path: Path):
    with pytest.raises(DataError, match="not found"):
        FolderDataset(tmp_path / "nope")
    with pytest.raises(DataError, match="no videos or images"):
        FolderDataset(tmp_path)
    (tmp_path / "manifest.jsonl").write_text('{"caption": "no file"}\n')
    with pytest.raises(DataError, match=r"manifest.jsonl:1"):
        FolderDataset(tmp_path)
    (tmp_path / "manifest.jsonl").write_text('{"file": "missing.mp4", "caption": "x"}\n')
    with pytest.raises(DataError, match="missing.mp4 not found"):
        FolderDataset(tmp_path)


def test_folder_source_visits_every_item_once_per_epoch(tmp_path: Path):
    for i in range(3):
        write_gif(tmp_path / f"{i}.gif", 9, 32, 48, i)
    Image.new("RGB", (32, 32)).save(tmp_path / "img.png")
    shapes = [(s, 1.0) for s in BUCKETS]
    src = FolderSource(tmp_path, shapes, seed=1)
    epochs = [sorted(src.item(e * 4 + j) for j in range(4)) for e in range(3)]
    assert epochs == [[0, 1, 2, 3]] * 3
    assert [src.item(j) for j in range(8)] != [src.item(j) for j in range(4)] * 2  # reshuffled
    a, b = src.sample(5), FolderSource(tmp_path, shapes, seed=1).sample(5)
    assert torch.equal(a["video"], b["video"]) and a["key"] == b["key"]
    shape = tuple(a["video"].shape[1:])
    assert shape == ((1, 32, 32) if src.dataset.items[a["key"]].path.suffix == ".png" else (9, 32, 48))
