"""Wan's text side: the umT5 encoder and its tokenizer through `transformers` (`pip install -e ".[wan]"`).

Both wrap the `transformers` objects behind the interface tessera's own tokenizer and text encoder have
(`Tokenizer.encode(texts, max_len) -> (ids, mask)`, `TextEncoder(ids, mask) -> (tokens, mask)`), so the
pipeline encodes captions the same way for every model. As in Wan (and diffusers' WanPipeline), each
caption is padded to `max_len` tokens, the encoder's outputs past the caption's end are replaced by zeros,
and the DiT attends to all `max_len` positions: the returned mask is all True.
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn


def clean_prompt(text: str) -> str:
    """HTML entities unescaped and whitespace collapsed, as Wan cleans its prompts."""
    text = html.unescape(html.unescape(text))
    return re.sub(r"\s+", " ", text).strip()


class WanTokenizer:
    """A `transformers` tokenizer (umT5's) with `Tokenizer.encode`'s signature."""

    def __init__(self, tok: Any) -> None:
        self.tok = tok

    @property
    def vocab_size(self) -> int:
        return len(self.tok)

    @classmethod
    def from_folder(cls, path: str | Path) -> WanTokenizer:
        # optional dependency (the wan extra), loaded only when used
        from transformers import AutoTokenizer

        return cls(AutoTokenizer.from_pretrained(str(path), local_files_only=True))

    def encode(self, texts: list[str], max_len: int) -> tuple[Tensor, Tensor]:
        """texts -> ids (B, max_len) long and mask (B, max_len) bool (True on the caption's tokens)."""
        out = self.tok(
            [clean_prompt(t) for t in texts],
            padding="max_length",
            max_length=max_len,
            truncation=True,
            add_special_tokens=True,
            return_attention_mask=True,
            return_tensors="pt",
        )
        return out.input_ids, out.attention_mask.bool()

    def save(self, path: str | Path) -> None:
        self.tok.save_pretrained(str(path))


class WanTextEncoder(nn.Module):
    """umT5's encoder (`transformers.UMT5EncoderModel`) -> caption tokens zero-padded to max_len.

    With `offload`, the encoder lives on the CPU and visits the device of the ids only while it encodes
    (umT5-XXL is 11 GB in bf16: off the GPU while the DiT samples)."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.offload = False

    def forward(self, ids: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """ids (B, L), mask (B, L) bool -> (tokens (B, L, d_model) zero past each caption, all-True mask)."""
        home = next(self.encoder.parameters()).device
        visit = self.offload and home != ids.device
        if visit:  # keep the resident copies: going home is then a pointer swap, not an 11 GB copy back
            resident = {name: p.data for name, p in self.encoder.named_parameters()}
            self.encoder.to(ids.device)
        try:
            h = self.encoder(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        finally:
            if visit:
                try:
                    for name, p in self.encoder.named_parameters():
                        p.data = resident[name]
                except RuntimeError:  # a device pair that cannot swap storage: copied back below
                    pass
                self.encoder.to(home)  # what was not swapped back (buffers, if any)
        h = h * mask[..., None].to(h.dtype)
        return h, torch.ones_like(mask)


def umt5_config_from_original(state: dict[str, Tensor]) -> Any:
    """A `UMT5Config` read off the shapes of the original release's encoder weights."""
    # optional dependency (the wan extra), loaded only when used
    from transformers import UMT5Config

    vocab, dim = state["token_embedding.weight"].shape
    buckets, heads = state["blocks.0.pos_embedding.embedding.weight"].shape
    layers = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
    return UMT5Config(
        vocab_size=vocab,
        d_model=dim,
        d_kv=state["blocks.0.attn.q.weight"].shape[0] // heads,
        d_ff=state["blocks.0.ffn.fc1.weight"].shape[0],
        num_layers=layers,
        num_heads=heads,
        relative_attention_num_buckets=buckets,
        relative_attention_max_distance=128,
        feed_forward_proj="gated-gelu",
        layer_norm_epsilon=1e-6,
    )


def umt5_from_original(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """The original release's umT5 encoder state dict (Wan's own T5 module) -> `UMT5EncoderModel` names.

    Wan's feed-forward is `fc2(fc1(x) * gelu(gate(x)))`: gate is transformers' wi_0, fc1 its wi_1."""
    names = {
        "norm1": "layer.0.layer_norm",
        "attn.q": "layer.0.SelfAttention.q",
        "attn.k": "layer.0.SelfAttention.k",
        "attn.v": "layer.0.SelfAttention.v",
        "attn.o": "layer.0.SelfAttention.o",
        "pos_embedding.embedding": "layer.0.SelfAttention.relative_attention_bias",
        "norm2": "layer.1.layer_norm",
        "ffn.gate.0": "layer.1.DenseReluDense.wi_0",
        "ffn.fc1": "layer.1.DenseReluDense.wi_1",
        "ffn.fc2": "layer.1.DenseReluDense.wo",
    }
    out = {}
    for key, value in state.items():
        if key == "token_embedding.weight":
            out["shared.weight"] = out["encoder.embed_tokens.weight"] = value
        elif key == "norm.weight":
            out["encoder.final_layer_norm.weight"] = value
        else:
            _, i, rest = key.split(".", 2)
            module, param = rest.rsplit(".", 1)
            if module not in names:
                raise KeyError(f"unexpected umT5 weight '{key}'")
            out[f"encoder.block.{i}.{names[module]}.{param}"] = value
    return out
