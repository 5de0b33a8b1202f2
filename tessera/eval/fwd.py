"""Fréchet World-video Distance: the Fréchet distance (as in FID, Heusel et al. 2017, and FVD,
Unterthiner et al. 2018) between Gaussians fitted to clip features of generated and truth videos.

Clip features come from the scene parser's encoder (trained on the world): per frame the pooled
bottleneck, per clip its mean over time, its spread over time and its mean absolute frame-to-frame
change (so motion counts, not only appearance). Without trained weights a fixed randomly initialised
parser (seed 0) is used and the report says so; random conv features still separate distributions.
"""

from __future__ import annotations

import numpy as np
import torch

from tessera.eval.parser import ParserConfig, SceneParser, prepare


def random_encoder(size: int = 64) -> SceneParser:
    """The fallback feature network: a SceneParser with seed-0 random weights."""
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(0)
    enc = SceneParser(ParserConfig(size=size, width=16)).eval()
    torch.random.set_rng_state(gen_state)
    return enc


@torch.no_grad()
def clip_features(encoder: SceneParser, video: np.ndarray) -> np.ndarray:
    """(3 C,) features of a uint8 clip (T, H, W, 3)."""
    dev = next(encoder.parameters()).device
    f = encoder.features(prepare(video, encoder.cfg.size).to(dev)).float().cpu().numpy()  # (T, C)
    motion = np.abs(np.diff(f, axis=0)).mean(0) if len(f) > 1 else np.zeros(f.shape[1])
    return np.concatenate([f.mean(0), f.std(0), motion])


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """|mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^1/2) for feature rows a (N, D), b (M, D); the
    matrix square root's trace comes from the eigenvalues of S_a^1/2 S_b S_a^1/2 (symmetric, PSD)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    mu = a.mean(0) - b.mean(0)
    sa = np.cov(a, rowvar=False) if len(a) > 1 else np.zeros((a.shape[1],) * 2)
    sb = np.cov(b, rowvar=False) if len(b) > 1 else np.zeros((b.shape[1],) * 2)
    w, v = np.linalg.eigh(sa)
    root_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ sb @ root_a), 0, None)).sum()
    return float(mu @ mu + np.trace(sa) + np.trace(sb) - 2 * cross)


def fwd(videos: list[np.ndarray], truth_videos: list[np.ndarray], encoder: SceneParser) -> float:
    """FWD between two sets of clips (lower is better; 0 for identical sets)."""
    fa = np.stack([clip_features(encoder, v) for v in videos])
    fb = np.stack([clip_features(encoder, v) for v in truth_videos])
    return max(0.0, frechet_distance(fa, fb))
