"""Text: a byte-level BPE tokenizer (HF `tokenizers`) and a small bidirectional transformer encoder.

Every caption is encoded as `<s>` followed by its BPE tokens, so the empty caption "" is the single
token `[<s>]` with mask `[True]`: a real, learnable null condition for classifier-free guidance, and
never an all-padding row that would leave attention nothing to look at. `<pad>` is id 0.

Truncation is explicit: a caption longer than `max_len` tokens (the `<s>` included) keeps its first
`max_len` tokens. Byte-level BPE has no unknown tokens: any text encodes, and decodes back to itself
after lowercasing.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import torch
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, normalizers, pre_tokenizers, processors, trainers
from torch import Tensor, nn

from tessera.config import TextConfig
from tessera.errors import FileError as TokenizerError
from tessera.files import atomic_write_text
from tessera.models.layers import MLP, RMSNorm, attention

PAD, BOS = "<pad>", "<s>"
_MIN_VOCAB = 256 + 2  # the byte alphabet plus the two special tokens


class Tokenizer:
    """Thin wrapper over `tokenizers.Tokenizer`: lowercased byte-level BPE, `<pad>` = 0, `<s>` first."""

    def __init__(self, tok: HFTokenizer) -> None:
        self._tok = tok
        self.pad_id = tok.token_to_id(PAD)
        self.bos_id = tok.token_to_id(BOS)
        if self.pad_id != 0 or self.bos_id is None:
            raise TokenizerError(
                f"tokenizer must define {PAD} as id 0 and {BOS}; got ids {self.pad_id}, {self.bos_id}"
            )
        if tok.encode("").ids != [self.bos_id]:
            raise TokenizerError(
                f"tokenizer must start every caption with {BOS} (its post-processor is wrong)"
            )

    @property
    def vocab_size(self) -> int:
        """Number of token ids, special tokens included (the encoder's `vocab_size` must be at least this)."""
        return self._tok.get_vocab_size()

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int) -> Tokenizer:
        """Train byte-level BPE on `texts`; at most `vocab_size` tokens (fewer for a small corpus)."""
        if vocab_size < _MIN_VOCAB:
            raise ValueError(
                f"vocab_size must be at least {_MIN_VOCAB} (256 bytes + {PAD}, {BOS}); got {vocab_size}"
            )
        tok = HFTokenizer(models.BPE())
        tok.normalizer = normalizers.Lowercase()
        # No prefix space, so decode(encode(x)) gives back exactly lower(x), leading spaces included.
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=[PAD, BOS],  # ids 0 and 1, in this order
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tok.train_from_iterator(texts, trainer)
        bos_id = tok.token_to_id(BOS)
        tok.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", special_tokens=[(BOS, bos_id)])
        return cls(tok)

    @classmethod
    def from_str(cls, json_str: str) -> Tokenizer:
        """Rebuild from `to_str()` output (the `tokenizer.json` format)."""
        try:
            tok = HFTokenizer.from_str(json_str)
        except Exception as e:  # tokenizers raises a bare Exception for bad JSON
            raise TokenizerError(f"not a valid tokenizer.json: {e}") from e
        return cls(tok)

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> Tokenizer:
        """Load a `tokenizer.json`; a missing or corrupt file raises `TokenizerError` naming the path."""
        path = Path(path)
        if not path.is_file():
            raise TokenizerError(f"{path}: tokenizer file not found")
        try:
            return cls.from_str(path.read_text(encoding="utf-8"))
        except (TokenizerError, UnicodeDecodeError) as e:
            raise TokenizerError(f"{path}: {e}") from e

    def to_str(self) -> str:
        """The tokenizer as `tokenizer.json` text."""
        return self._tok.to_str()

    def save(self, path: str | os.PathLike) -> None:
        """Write `tokenizer.json` atomically: a temp file in the same folder, then one rename."""
        atomic_write_text(Path(path), self.to_str())

    def encode(self, texts: list[str], max_len: int) -> tuple[Tensor, Tensor]:
        """Captions -> ids (B, L) long and mask (B, L) bool (True = real token).

        L is the longest caption in the batch, at most `max_len`; longer captions are truncated to their
        first `max_len` tokens. Shorter ones are padded with `pad_id` on the right.
        """
        if isinstance(texts, str) or not texts or not all(isinstance(s, str) for s in texts):
            raise ValueError(f"texts must be a non-empty list of strings, got {texts!r:.80}")
        if max_len < 1:
            raise ValueError(f"max_len must be at least 1 (room for {BOS}), got {max_len}")
        rows = [e.ids[:max_len] for e in self._tok.encode_batch(list(texts))]
        L = max(len(r) for r in rows)
        ids = torch.full((len(rows), L), self.pad_id, dtype=torch.long)
        mask = torch.zeros(len(rows), L, dtype=torch.bool)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
            mask[i, : len(r)] = True
        return ids, mask

    def decode(self, ids: list[int] | Tensor) -> str:
        """Ids -> text, dropping `<s>` and padding."""
        if isinstance(ids, Tensor):
            ids = ids.tolist()
        return self._tok.decode(list(ids), skip_special_tokens=True)

    def word_starts(self) -> list[bool]:
        """Per token id: whether the token begins a word (its text starts with a space)."""
        return [self.decode([i]).startswith(" ") for i in range(self.vocab_size)]


class Block(nn.Module):
    """Pre-norm transformer block: bidirectional self-attention over real tokens, then an MLP."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = RMSNorm(dim), RMSNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.mlp = MLP(dim, 4 * dim)

    def forward(self, x: Tensor, key_mask: Tensor) -> Tensor:
        """x (B, L, D), key_mask (B, 1, 1, L) bool -> (B, L, D)."""
        B, L, D = x.shape
        qkv = self.qkv(self.norm1(x)).view(B, L, 3, self.heads, D // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, heads, L, Dh)
        a = attention(q, k, v, key_mask)  # padding keys are ignored by every query
        x = x + self.proj(a.transpose(1, 2).reshape(B, L, D))
        return x + self.mlp(self.norm2(x))


class TextEncoder(nn.Module):
    """Token embedding + learned positions, `depth` pre-norm blocks, a final RMSNorm.

    Returns `(tokens (B, L, dim), mask (B, L))`; tokens at padding positions are zeroed, so nothing
    downstream can depend on them even without looking at the mask.
    """

    def __init__(self, cfg: TextConfig) -> None:
        super().__init__()
        if cfg.dim % cfg.heads:
            raise ValueError(f"text dim ({cfg.dim}) must be divisible by heads ({cfg.heads})")
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.dim)
        # Learned positions (not RoPE): a plain parameter, so building on the meta device and loading
        # strictly restores everything; max_len is small.
        self.pos = nn.Parameter(torch.zeros(cfg.max_len, cfg.dim))
        self.blocks = nn.ModuleList(Block(cfg.dim, cfg.heads) for _ in range(cfg.depth))
        self.norm = RMSNorm(cfg.dim)
        nn.init.normal_(self.embed.weight, std=0.02)
        nn.init.normal_(self.pos, std=0.02)

    def forward(self, ids: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """ids (B, L) long, mask (B, L) bool -> (tokens (B, L, dim), mask (B, L))."""
        if ids.ndim != 2 or ids.shape != mask.shape or mask.dtype != torch.bool:
            raise ValueError(
                f"ids and mask must both be (B, L), mask bool; "
                f"got {tuple(ids.shape)}, {tuple(mask.shape)} {mask.dtype}"
            )
        if ids.shape[1] > self.cfg.max_len:
            raise ValueError(f"{ids.shape[1]} tokens exceed max_len={self.cfg.max_len}; encode with max_len")
        x = self.embed(ids) + self.pos[: ids.shape[1]]  # (B, L, D)
        key_mask = mask[:, None, None, :]  # (B, 1, 1, L): broadcast over heads and queries
        for block in self.blocks:
            x = block(x, key_mask)
        return self.norm(x) * mask[..., None].to(x.dtype), mask
