"""Ingestion of real video folders and re-captioning (CPU, tiny synthetic clips)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from tessera.caption.model import CAPTIONER_PRESETS, Captioner
from tessera.caption.weights import CaptionerBundle, save_captioner
from tessera.data.folder import DataError, FolderDataset
from tessera.data.ingest import (
    IngestConfig,
    detect_cuts,
    frame_features,
    ingest,
    plan_clips,
    stream_frames,
    summary_table,
    working_size,
)
from tessera.data.recaption import recaption
from tessera.models.text import Tokenizer
from tessera.video import read_video, write_video
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
    assert detect_cuts(frame_features(torch.cat([shots[0], shots[1]])), CFG) == [24]
    assert detect_cuts(frame_features(shots[0]), CFG) == []


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


def test_stream_frames_resample_like_read_video(tmp_path, shots):
    path = tmp_path / "c25.mp4"
    write_video(path, shots[0], fps=25)  # a 25 fps source read at 16 fps: frames are picked, not blended
    streamed = np.stack(list(stream_frames(path, 16.0, (32, 32))))
    assert np.array_equal(streamed, read_video(path, fps=16.0).numpy())
    small = list(stream_frames(path, 16.0, (16, 24)))
    assert len(small) == len(streamed) and small[0].shape == (16, 24, 3)


def test_plan_clips_fills_a_shot_with_the_longest_buckets():
    cfg = IngestConfig()
    assert plan_clips(85, 224, 399, cfg) == [(0, (33, 128, 224)), (33, (33, 128, 224)), (66, (17, 128, 224))]
    assert plan_clips(16, 224, 399, cfg) == []
    assert len(plan_clips(1000, 128, 128, cfg)) == cfg.max_clips_per_shot
    h, w = working_size(720, 1280, cfg.buckets)
    assert (h, w) == (224, 399)  # 16:9 at the height of the tallest bucket
    assert all(max(bh / h, bw / w) <= 1 for _, bh, bw in cfg.buckets)  # covers each: only downscaling
    assert working_size(144, 176, cfg.buckets) == (144, 176)  # never above the source


def test_ingest_redoes_a_changed_file_and_drops_its_old_clips(folder, tmp_path, shots):
    out = tmp_path / "dataset"
    ingest(folder, out, CFG, progress=False)
    old = {p.name for p in (out / "clips").glob("good-*.mp4")}
    write_video(folder / "good.mp4", shots[1].flip(0).contiguous(), fps=16)  # new content, same name
    os.utime(folder / "good.mp4", ns=(1, 1))  # and another modification time for sure
    summary = ingest(folder, out, CFG, progress=False)
    new = {p.name for p in (out / "clips").glob("good-*.mp4")}
    assert summary["clips"] == 3 and len(new) == 1 and not old & new
    assert len(list((out / "records").glob("*.json"))) == 4


def test_ingest_refuses_other_settings_and_reads_manifests(folder, tmp_path):
    out = tmp_path / "dataset"
    ingest([folder / "good.mp4"], out, CFG, progress=False)
    with pytest.raises(DataError, match=r"config.fps: 16.0 -> 8.0"):
        ingest(folder, out, IngestConfig(buckets=CFG.buckets, fps=8.0), progress=False)
    listing = folder / "list.jsonl"
    listing.write_text('{"file": "two_shot.mp4"}\n{"file": "gone.mp4"}\n')
    summary = ingest(listing, tmp_path / "m", CFG, progress=False)
    assert summary["files_skipped"] == {"unreadable": 1} and summary["clips"] == 2
    table = summary_table(summary)
    assert "| two_shot.mp4 | 3.00 s | 16.00 | 32×32 | h264 | 1.5 | 2 | 2 | – |" in table
    assert "| gone.mp4 | skipped: unreadable" in table
    with pytest.raises(DataError, match="list.jsonl:1"):
        listing.write_text("two_shot.mp4\n")
        ingest(listing, tmp_path / "m2", CFG, progress=False)


@pytest.fixture
def captioner_dir(tmp_path):
    """A tiny random captioner folder (its captions are noise, but real strings)."""
    cfg = CAPTIONER_PRESETS["tiny"]
    tok = Tokenizer.train(["a red cube slides to the left."] * 4, 300)
    torch.manual_seed(0)
    model = Captioner(cfg.__class__(**{**cfg.to_dict(), "vocab_size": tok.vocab_size, "max_len": 8}))
    return save_captioner(CaptionerBundle(model.eval(), tok), tmp_path / "cap")


def test_ingest_captions_and_caches_latents(folder, tmp_path, captioner_dir, tiny_model_dir):
    out = tmp_path / "dataset"
    summary = ingest(folder / "two_shot.mp4", out, CFG, captioner_dir, tiny_model_dir, progress=False)
    assert summary["clips"] == summary["captioned"] == summary["latents"] == 2
    lines = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    assert all(isinstance(x["caption"], str) and x["caption"] for x in lines)
    z = load_file(out / lines[0]["latents"])["z"]
    assert z.shape[1:] == (5, 4, 4)  # (C_z, 1 + 16 / 4, 32 / 8, 32 / 8)


def test_recaption_writes_a_resumable_manifest(folder, tmp_path, captioner_dir):
    (folder / "broken.mp4").unlink()
    out = tmp_path / "m" / "manifest.jsonl"
    first = recaption(folder, out, captioner_dir, batch_size=1, progress=False)
    assert first["captioned"] == 2 and first["failed"] == []
    again = recaption(folder, out, captioner_dir, batch_size=1, progress=False)
    assert again["captioned"] == 0 and again["skipped_done"] == 2
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(lines) == 2 and all(isinstance(x["caption"], str) for x in lines)
    assert len(FolderDataset(out)) == 2


def test_recaption_short_skips_unreadable_captions_and_refuses_mixed_settings(
    folder, tmp_path, captioner_dir, monkeypatch
):
    (folder / "broken.mp4").unlink()
    texts = iter(["five red cubes slide to the left.", "a red cube slides to the left."])
    monkeypatch.setattr(  # the captioner's words, fixed: a garbled caption first
        "tessera.data.recaption.caption_clips", lambda bundle, clips, beams=1: [next(texts) for _ in clips]
    )
    out = tmp_path / "m" / "manifest.jsonl"
    got = recaption(folder, out, captioner_dir, batch_size=1, detailed=False, progress=False)
    assert got["captioned"] == 1 and len(got["failed"]) == 1 and "no short form" in got["failed"][0]["error"]
    (line,) = [json.loads(x) for x in out.read_text().splitlines()]
    assert line["file"].endswith("two_shot.mp4") and "red cube" in line["caption"]
    with pytest.raises(DataError, match="detailed: False -> True"):
        recaption(folder, out, captioner_dir, batch_size=1, detailed=True, progress=False)


def test_a_failure_in_the_second_pass_skips_the_file_and_its_clips(folder, tmp_path, monkeypatch):
    import tessera.data.ingest as ingest_module

    real = ingest_module.collect

    def breaks_after_one(path, *args):
        for n, item in enumerate(real(path, *args)):
            if n == 1 and path.name == "two_shot.mp4":
                raise OSError("the disk went away")
            yield item

    monkeypatch.setattr(ingest_module, "collect", breaks_after_one)
    out = tmp_path / "dataset"
    summary = ingest(folder, out, CFG, progress=False)
    assert summary["files_skipped"] == {"corrupt": 2, "not_video": 1} and summary["clips"] == 1
    assert "OSError: the disk went away" in {s["error"] for s in summary["skipped"]}
    assert [p.name.split("-")[0] for p in (out / "clips").iterdir()] == ["good"]
