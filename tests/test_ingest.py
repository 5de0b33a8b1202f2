"""Ingestion of real video folders and re-captioning (CPU, tiny synthetic clips)."""

from __future__ import annotations

import json

import pytest
import torch

from tessera.caption.model import CAPTIONER_PRESETS, Captioner
from tessera.caption.weights import CaptionerBundle, save_captioner
from tessera.data.folder import FolderDataset
from tessera.data.ingest import IngestConfig, detect_cuts, ingest
from tessera.data.recaption import recaption
from tessera.models.text import Tokenizer
from tessera.video import write_video
from tessera.world import WorldConfig, WorldSampler, render

CFG = IngestConfig(buckets=((17, 32, 32),))


@pytest.fixture(scope="module")
def shots():
    """Two different 24-frame world renders (uint8 (T, H, W, 3)) with objects that move."""
    sampler = WorldSampler(WorldConfig(frames=24, fps=16.0, motions=("slide", "approach")))
    return render([sampler.sample(1), sampler.sample(2)], (32, 32)).frames


@pytest.fixture
def folder(tmp_path, shots):
    d = tmp_path / "videos"
    d.mkdir()
    write_video(d / "good.mp4", shots[0], fps=16)
    write_video(d / "two_shot.mp4", torch.cat([shots[0], shots[1]]), fps=16)
    (d / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(300))
    (d / "notes.txt").write_text("not a video")
    return d


def test_cut_detector_finds_the_cut_and_only_it(shots):
    assert detect_cuts(torch.cat([shots[0], shots[1]]), CFG) == [24]
    assert detect_cuts(shots[0], CFG) == []


def test_ingest_skips_bad_files_and_splits_at_the_cut(folder, tmp_path):
    out = tmp_path / "dataset"
    summary = ingest(folder, out, CFG, progress=False)
    assert summary["files"] == 4 and summary["files_ingested"] == 2
    assert summary["files_skipped"] == {"corrupt": 1, "not_video": 1}
    assert {s["source"].rsplit("/", 1)[1] for s in summary["skipped"]} == {"broken.mp4", "notes.txt"}
    two = next(s for s in summary["sources"] if s["source"].endswith("two_shot.mp4"))
    assert two["cuts_s"] == [1.5] and two["clips"] == 2  # 24 frames at 16 fps
    lines = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    assert len(lines) == 3 and all(x["frames"] == 17 for x in lines)
    assert sorted(x["start"] for x in lines if "two_shot" in x["source"]) == [0.0, 1.5]
    ds = FolderDataset(out / "manifest.jsonl")  # the trainer reads it
    assert len(ds) == 3 and ds.size(0) == (17, 32, 32)
    assert json.loads((out / "summary.json").read_text())["clips"] == 3


def test_ingest_resumes_without_redoing_finished_files(folder, tmp_path, shots):
    out = tmp_path / "dataset"
    ingest(folder, out, CFG, progress=False)
    clip = next((out / "clips").glob("good-*.mp4"))
    before = clip.stat().st_mtime_ns
    write_video(folder / "later.mp4", shots[1], fps=16)  # a file added after an interrupted run
    summary = ingest(folder, out, CFG, progress=False)
    assert clip.stat().st_mtime_ns == before and summary["clips"] == 4 and summary["files"] == 5


def test_ingest_counts_filter_reasons(tmp_path, shots):
    d = tmp_path / "v"
    d.mkdir()
    write_video(d / "dark.mp4", (shots[0] // 16).contiguous(), fps=16)
    write_video(d / "still.mp4", shots[0][:1].expand(24, -1, -1, -1).contiguous(), fps=16)
    write_video(d / "short.mp4", shots[0][:8], fps=16)
    summary = ingest(d, tmp_path / "o", CFG, progress=False)
    assert summary["shots_filtered"] == {"too_dark": 1, "static": 1, "too_short": 1} and summary["clips"] == 0


def test_recaption_writes_a_resumable_manifest(folder, tmp_path):
    cfg = CAPTIONER_PRESETS["tiny"]
    tok = Tokenizer.train(["a red cube slides to the left."] * 4, 300)
    torch.manual_seed(0)
    model = Captioner(cfg.__class__(**{**cfg.to_dict(), "vocab_size": tok.vocab_size, "max_len": 8}))
    save_captioner(CaptionerBundle(model.eval(), tok), tmp_path / "cap")
    (folder / "broken.mp4").unlink()
    out = tmp_path / "m" / "manifest.jsonl"
    first = recaption(folder, out, tmp_path / "cap", batch_size=1, progress=False)
    assert first["captioned"] == 2 and first["failed"] == []
    again = recaption(folder, out, tmp_path / "cap", batch_size=1, progress=False)
    assert again["captioned"] == 0 and again["skipped_done"] == 2
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(lines) == 2 and all(isinstance(x["caption"], str) for x in lines)
    assert len(FolderDataset(out)) == 2
