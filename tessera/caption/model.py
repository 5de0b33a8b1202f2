"""The captioner: a video encoder over frame tubelets and an autoregressive transformer text decoder
with cross-attention, plus greedy and beam decoding.

Input: a clip resampled to `frames` frames spread evenly over it and resized to `size` x `size`
(`prepare`), float (B, 3, F, S, S) in [-1, 1]. The encoder's stem turns each tubelet of
(tubelet, patch, patch) pixels into one token: `stem="patch"` with one strided Conv3d (one linear map
per tubelet), `stem="conv"` with a stack of 3x3 stride-2 convolutions per frame before the tubelet's
frames are merged (`ConvStem`, the "early convolutions" of Xiao et al. 2021, so that a token sees a
small object's outline and highlights, not only a linear map of its pixels), `stem="conv+patch"` with
the sum of the two (the convolutions' features plus the linear map of the raw pixels, which the
convolutions' per-pixel norms do not see). Then it adds learned time
and space positions and runs `enc_depth` bidirectional blocks. The decoder reads caption tokens (`<s>`
first, BPE ids of the project's `Tokenizer`) with causal self-attention and cross-attention to the
video tokens; the caption ends with `<pad>` (id 0), which doubles as the end token.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tessera.models.layers import MLP, RMSNorm, attention
from tessera.models.text import Block

END = 0  # `<pad>` ends a caption
# Decoding never lets a span of up to this many tokens that starts a word follow a copy of itself
# ("four four", "the cube the cube"): a stuck decoder loops so on clips unlike its training data, and no
# world caption has such a repeat (checked on 6,000 with the shipped tokenizer; a span that starts inside
# a word, as the "f f" of a small vocabulary's "o f f", is allowed), so the guard leaves them alone.
REPEAT_SPAN = 12
# How video becomes tokens: one strided Conv3d, `ConvStem`, or the sum of the two.
STEMS = ("patch", "conv", "conv+patch")


@dataclass(frozen=True)
class CaptionerConfig:
    """Sizes of the captioner; `frames` and `size` fix the input it sees."""

    frames: int = 16
    size: int = 64
    tubelet: int = 2  # frames per video token
    patch: int = 8  # pixels per side of a video token
    stem: str = "patch"  # one of STEMS
    vocab_size: int = 1024
    max_len: int = 160  # caption tokens, `<s>` included
    dim: int = 256
    enc_depth: int = 4
    dec_depth: int = 4
    heads: int = 4

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> CaptionerConfig:
        """Inverse of `to_dict`; unknown or missing keys are an error."""
        names = set(cls.__dataclass_fields__)
        if set(d) != names:
            raise ValueError(
                f"captioner config: unknown {sorted(set(d) - names)}, missing {sorted(names - set(d))}"
            )
        return cls(**d)


CAPTIONER_PRESETS: dict[str, CaptionerConfig] = {
    "tiny": CaptionerConfig(
        frames=4, size=32, patch=8, vocab_size=512, max_len=128, dim=64, enc_depth=1, dec_depth=2, heads=2
    ),  # fmt: skip
    # 128x128 frames in 16x16-pixel tokens: the token count (and cost) of 64x64 in 8x8 patches, with
    # 4x the pixels per token, so a small object's shape is more than a few pixels wide.
    "s": CaptionerConfig(size=128, patch=16),
    # "s" with the convolutional stem: the same tokens, each from four 3x3 stride-2 convolutions.
    "s-conv": CaptionerConfig(size=128, patch=16, stem="conv"),
    # "s-conv" plus the patch stem's linear map of each tubelet's pixels, added to its tokens.
    "s-hybrid": CaptionerConfig(size=128, patch=16, stem="conv+patch"),
    # "s-hybrid" on 160x160 frames: 1.56x the pixels (and tokens) per object.
    "s-hybrid-160": CaptionerConfig(size=160, patch=16, stem="conv+patch"),
}


class ConvStem(nn.Module):
    """Video (B, 3, T, S, S) -> tokens (B, D, T / tubelet, S / patch, S / patch), like the patch stem.

    Per frame, log2(patch) 3x3 stride-2 convolutions, each followed by a norm and GELU, double the
    channels up to `dim` (dim/8, dim/4, dim/2, dim for patch 16) and halve the side; a 1x1 convolution
    mixes the last one. A (tubelet, 1, 1) Conv3d then merges each tubelet's frames into one token.
    """

    def __init__(self, dim: int, patch: int, tubelet: int) -> None:
        super().__init__()
        n = patch.bit_length() - 1  # stride-2 layers: patch = 2**n
        widths = [3] + [max(dim >> (n - 1 - i), 1) for i in range(n)]  # 3, ..., dim/2, dim
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 3, 2, 1) for a, b in pairwise(widths))
        # LayerNorm over channels at each pixel (as in ConvNeXt), not over the frame (GroupNorm) or the
        # batch (BatchNorm, as in the paper): a frame's overall brightness (time of day) survives, and
        # train = eval. (LayerNorm, not RMSNorm, for its fused backward: half the stem's time on the CPU.)
        self.norms = nn.ModuleList(nn.LayerNorm(c) for c in widths[1:])
        self.proj = nn.Conv2d(dim, dim, 1)
        self.merge = nn.Conv3d(dim, dim, (tubelet, 1, 1), (tubelet, 1, 1))

    def forward(self, video: Tensor) -> Tensor:
        B, C, T, S, _ = video.shape
        x = video.transpose(1, 2).reshape(B * T, C, S, S)  # (B*T, 3, S, S): frames one by one
        # Channels last in memory, so that the per-pixel norm's (B*T, s, s, c) view needs no copy.
        x = x.contiguous(memory_format=torch.channels_last)
        for conv, norm in zip(self.convs, self.norms, strict=True):
            x = norm(conv(x).permute(0, 2, 3, 1))  # (B*T, s/2, s/2, c), normed over c at each pixel
            x = F.gelu(x).permute(0, 3, 1, 2)  # (B*T, c, s/2, s/2)
        x = self.proj(x)  # (B*T, D, h, w), h = w = S / patch
        _, D, h, w = x.shape
        x = x.reshape(B, T, D, h, w).transpose(1, 2)  # (B, D, T, h, w)
        return self.merge(x)  # (B, D, T / tubelet, h, w)


class DecoderBlock(nn.Module):
    """Pre-norm: causal self-attention, cross-attention to the video tokens, MLP."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2, self.norm3 = RMSNorm(dim), RMSNorm(dim), RMSNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.cross_proj = nn.Linear(dim, dim)
        self.mlp = MLP(dim, 4 * dim)

    def _split(self, x: Tensor) -> Tensor:
        B, L, D = x.shape
        return x.view(B, L, self.heads, D // self.heads).transpose(1, 2)  # (B, heads, L, Dh)

    def forward(self, x: Tensor, memory: Tensor, causal: Tensor) -> Tensor:
        """x (B, L, D) text, memory (B, N, D) video tokens, causal (L, L) bool -> (B, L, D)."""
        B, L, D = x.shape
        q, k, v = self.qkv(self.norm1(x)).chunk(3, dim=-1)
        a = attention(self._split(q), self._split(k), self._split(v), causal)
        x = x + self.proj(a.transpose(1, 2).reshape(B, L, D))
        k, v = self.kv(memory).chunk(2, dim=-1)
        a = attention(self._split(self.q(self.norm2(x))), self._split(k), self._split(v))
        x = x + self.cross_proj(a.transpose(1, 2).reshape(B, L, D))
        return x + self.mlp(self.norm3(x))


class Captioner(nn.Module):
    """Video (B, 3, F, S, S) -> next-token logits over the caption vocabulary."""

    def __init__(self, cfg: CaptionerConfig) -> None:
        super().__init__()
        if cfg.frames % cfg.tubelet or cfg.size % cfg.patch or cfg.dim % cfg.heads:
            raise ValueError(
                f"captioner config: frames % tubelet, size % patch and dim % heads must be 0: {cfg}"
            )
        if cfg.stem not in STEMS:
            raise ValueError(f"captioner config: stem must be one of {', '.join(STEMS)}; got '{cfg.stem}'")
        if cfg.stem != "patch" and (cfg.patch < 4 or cfg.patch & (cfg.patch - 1)):
            raise ValueError(
                f"captioner config: stem='{cfg.stem}' needs patch a power of two >= 4 (4, 8, 16, 32, ...: "
                f"one stride-2 convolution per halving); got patch={cfg.patch}"
            )
        self.cfg = cfg
        t, s = cfg.frames // cfg.tubelet, cfg.size // cfg.patch
        tubelet = (cfg.tubelet, cfg.patch, cfg.patch)
        if cfg.stem == "patch":
            self.stem = nn.Conv3d(3, cfg.dim, tubelet, tubelet)
        else:
            self.stem = ConvStem(cfg.dim, cfg.patch, cfg.tubelet)
        # "conv+patch": the patch stem's linear map beside the convolutions (a plain patch stem keeps the
        # name `stem`, so its checkpoints load).
        self.linear_stem = nn.Conv3d(3, cfg.dim, tubelet, tubelet) if cfg.stem == "conv+patch" else None
        self.time_pos = nn.Parameter(torch.randn(t, 1, cfg.dim) * 0.02)
        self.space_pos = nn.Parameter(torch.randn(1, s * s, cfg.dim) * 0.02)
        self.encoder = nn.ModuleList(Block(cfg.dim, cfg.heads) for _ in range(cfg.enc_depth))
        self.enc_norm = RMSNorm(cfg.dim)
        self.embed = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.pos = nn.Parameter(torch.randn(cfg.max_len, cfg.dim) * 0.02)
        self.decoder = nn.ModuleList(DecoderBlock(cfg.dim, cfg.heads) for _ in range(cfg.dec_depth))
        self.norm = RMSNorm(cfg.dim)
        self.head = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        nn.init.normal_(self.embed.weight, std=0.02)

    def encode(self, video: Tensor) -> Tensor:
        """video (B, 3, F, S, S) -> memory (B, N, D), N = (F / tubelet) * (S / patch)^2."""
        cfg = self.cfg
        if video.shape[1:] != (3, cfg.frames, cfg.size, cfg.size):
            raise ValueError(
                f"captioner expects video (B, 3, {cfg.frames}, {cfg.size}, {cfg.size}); "
                f"got {tuple(video.shape)} "
                "(use tessera.caption.model.prepare)"
            )
        x = self.stem(video)  # (B, D, F/tubelet, S/patch, S/patch)
        if self.linear_stem is not None:
            x = x + self.linear_stem(video)
        B, D, t, h, w = x.shape
        x = x.flatten(3).permute(0, 2, 3, 1) + self.time_pos + self.space_pos  # (B, t, h*w, D)
        x = x.reshape(B, t * h * w, D)
        for block in self.encoder:
            x = block(x, None)
        return self.enc_norm(x)

    def logits(self, memory: Tensor, ids: Tensor) -> Tensor:
        """memory (B, N, D), ids (B, L) -> logits (B, L, vocab) for the token after each position."""
        L = ids.shape[1]
        if L > self.cfg.max_len:
            raise ValueError(f"{L} caption tokens exceed max_len={self.cfg.max_len}")
        x = self.embed(ids) + self.pos[:L]
        causal = torch.ones(L, L, dtype=torch.bool, device=ids.device).tril()
        for block in self.decoder:
            x = block(x, memory, causal)
        return self.head(self.norm(x))

    def forward(self, video: Tensor, ids: Tensor) -> Tensor:
        """Teacher forcing: video (B, 3, F, S, S), ids (B, L) -> logits (B, L, vocab)."""
        return self.logits(self.encode(video), ids)


def caption_loss(model: Captioner, video: Tensor, ids: Tensor, mask: Tensor) -> Tensor:
    """Cross-entropy of each next token; targets are ids shifted left with the end token after the last
    real token. ids/mask (B, L) from `Tokenizer.encode` (`<s>` first)."""
    inputs = ids
    targets = torch.cat([ids[:, 1:], torch.full_like(ids[:, :1], END)], dim=1)
    # Positions past the end token carry no loss: keep the real tokens and the one end token after them.
    keep = torch.cat([mask[:, :1], mask[:, :-1]], dim=1) & (
        torch.arange(ids.shape[1], device=ids.device) < mask.sum(1, keepdim=True)
    )
    logits = model(video, inputs)
    return F.cross_entropy(logits[keep], targets[keep])


def repeat_bans(seq: list[int], span: int = REPEAT_SPAN, word_start: list[bool] | None = None) -> list[int]:
    """Tokens that, appended to `seq`, would end a span of at most `span` tokens that repeats the span
    just before it: for a span of k, the token k back, when the k - 1 tokens after it are the last ones.
    With `word_start` (per token id, True where the token begins a word), only spans that begin a word."""
    n = len(seq)
    ks = range(1, min(span, (n + 1) // 2) + 1)
    return [seq[n - k] for k in ks if seq[n - k + 1 :] == seq[n - 2 * k + 1 : n - k]
            and (word_start is None or word_start[seq[n - 2 * k + 1]])]  # fmt: skip


def _ban_repeats(logits: Tensor, ids: Tensor, span: int, word_start: list[bool] | None) -> Tensor:
    """logits (R, V) for the token after each row of ids (R, L), `<s>` first; repeats set to -inf."""
    if span > 0:
        for row, seq in enumerate(ids[:, 1:].tolist()):
            banned = repeat_bans(seq, span, word_start)
            if banned:
                logits[row, banned] = -float("inf")
    return logits


@torch.no_grad()
def greedy(
    model: Captioner,
    video: Tensor,
    bos: int,
    repeat_span: int = REPEAT_SPAN,
    word_start: list[bool] | None = None,
) -> list[list[int]]:
    """Greedy decoding: video (B, 3, F, S, S) -> token ids per clip (without `<s>` and the end); no span
    of up to `repeat_span` tokens (0 = no guard) that begins a word follows itself (`repeat_bans`)."""
    memory = model.encode(video)
    B = video.shape[0]
    ids = torch.full((B, 1), bos, dtype=torch.long, device=video.device)
    done = torch.zeros(B, dtype=torch.bool, device=video.device)
    for _ in range(model.cfg.max_len - 1):
        nxt = _ban_repeats(model.logits(memory, ids)[:, -1], ids, repeat_span, word_start).argmax(-1)
        nxt = torch.where(done, END, nxt)
        ids = torch.cat([ids, nxt[:, None]], dim=1)
        done |= nxt == END
        if done.all():
            break
    return [_strip(row) for row in ids[:, 1:].tolist()]


@torch.no_grad()
def beam_search(
    model: Captioner,
    video: Tensor,
    bos: int,
    beams: int = 4,
    alpha: float = 0.6,
    repeat_span: int = REPEAT_SPAN,
    word_start: list[bool] | None = None,
) -> list[list[int]]:
    """Beam search per clip; hypotheses are ranked by log-probability / length**alpha; repeats banned as
    in `greedy`."""
    out = []
    for b in range(video.shape[0]):
        memory = model.encode(video[b : b + 1]).expand(beams, -1, -1)
        ids = torch.full((1, 1), bos, dtype=torch.long, device=video.device)
        scores = torch.zeros(1, device=video.device)
        finished: list[tuple[float, list[int]]] = []
        for step in range(model.cfg.max_len - 1):
            logp = model.logits(memory[: len(ids)], ids)[:, -1].log_softmax(-1)  # (k, V)
            logp = _ban_repeats(logp, ids, repeat_span, word_start)
            total = (scores[:, None] + logp).flatten()
            top = total.topk(min(beams * 2, total.numel()))
            keep_ids, keep_scores = [], []
            for score, flat in zip(top.values.tolist(), top.indices.tolist(), strict=True):
                row, tok = divmod(flat, logp.shape[1])
                if tok == END:
                    finished.append((score / (step + 1) ** alpha, ids[row, 1:].tolist()))
                elif len(keep_ids) < beams:
                    keep_ids.append(torch.cat([ids[row], ids.new_tensor([tok])]))
                    keep_scores.append(score)
            best_open = max(keep_scores, default=-float("inf")) / (step + 1) ** alpha
            if len(finished) >= beams and max(f[0] for f in finished) >= best_open or not keep_ids:
                break
            ids, scores = torch.stack(keep_ids), torch.tensor(keep_scores, device=video.device)
        if not finished:
            finished = [(0.0, ids[0, 1:].tolist())]
        out.append(max(finished, key=lambda f: f[0])[1])
    return out


def _strip(row: list[int]) -> list[int]:
    return row[: row.index(END)] if END in row else row


def prepare(frames: Tensor, cfg: CaptionerConfig) -> Tensor:
    """uint8 (T, H, W, 3) clip -> float (3, F, S, S) in [-1, 1]: `cfg.frames` frames spread evenly
    over the clip (nearest), the whole frame resized to a square (no crop, so nothing leaves view)."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != torch.uint8:
        raise ValueError(f"expected uint8 frames (T, H, W, 3), got {frames.dtype} {tuple(frames.shape)}")
    T = frames.shape[0]
    idx = torch.linspace(0, T - 1, cfg.frames).round().long()
    x = frames[idx].permute(0, 3, 1, 2).float() / 127.5 - 1.0  # (F, 3, H, W)
    if x.shape[-2:] != (cfg.size, cfg.size):
        x = F.interpolate(x, size=(cfg.size, cfg.size), mode="bilinear", antialias=True, align_corners=False)
    return x.transpose(0, 1).clamp(-1, 1).contiguous()
