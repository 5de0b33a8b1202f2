"""Tokenizer and text encoder: round trips, the null caption, padding and masking."""

from __future__ import annotations

import random

import pytest
import torch

from tessera.config import TextConfig
from tessera.models.text import TextEncoder, Tokenizer, TokenizerError

CFG = TextConfig(vocab_size=512, max_len=64, dim=32, depth=2, heads=2)


def caption_corpus(n: int = 200, seed: int = 0) -> list[str]:
    """Varied synthetic captions: mixed case, punctuation, numbers, several sentence shapes."""
    rng = random.Random(seed)
    colors = ["red", "Blue", "green", "yellow", "purple", "orange", "white", "BLACK"]
    things = ["ball", "cube", "cylinder", "cone", "torus", "pyramid", "sphere", "box"]
    verbs = ["rolls", "falls", "bounces", "slides", "spins", "rests", "floats"]
    places = ["on a wooden floor", "across the grass", "under a grey sky", "into the water", "near a wall"]
    cams = ["The camera pans left.", "Static camera.", "The camera zooms in slowly.", ""]
    out = []
    for _ in range(n):
        k = rng.randint(1, 3)
        objs = [f"a {rng.choice(colors)} {rng.choice(things)}" for _ in range(k)]
        text = f"{', '.join(objs)} {rng.choice(verbs)} {rng.choice(places)}. {rng.choice(cams)}"
        if rng.random() < 0.3:
            text += f" {rng.randint(2, 9)} seconds, {rng.randint(0, 100)}% bright!"
        out.append(text.strip()[0].upper() + text.strip()[1:])
    return out


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    return caption_corpus()


@pytest.fixture(scope="module")
def tok(corpus) -> Tokenizer:
    return Tokenizer.train(corpus, vocab_size=CFG.vocab_size)


def test_tokenizer_specials_and_vocab(tok, corpus):
    assert tok.pad_id == 0 and tok.bos_id == 1
    assert 256 + 2 < tok.vocab_size <= CFG.vocab_size
    ids, _ = tok.encode(corpus, max_len=CFG.max_len)
    assert ids.max().item() < tok.vocab_size
    # BPE learned merges: corpus captions take far fewer tokens than bytes.
    assert ids.shape[1] < max(len(c.encode()) for c in corpus) / 2
    with pytest.raises(ValueError, match="vocab_size"):
        Tokenizer.train(corpus, vocab_size=100)


def test_round_trip_is_lowercased_text(tok, corpus):
    unseen = ["", "  Two  spaces\nand a newline\t", "Émile's café — 日本 🙂", "zebra 12345 xyz!?"]
    for text in corpus[:50] + unseen:
        ids, mask = tok.encode([text], max_len=1000)
        assert ids[0, 0].item() == tok.bos_id and mask.all()
        assert tok.decode(ids[0].tolist()) == text.lower()
    assert tok.decode(tok.encode(["A Red Ball", ""], max_len=64)[0][1]) == ""  # padding is dropped


def test_empty_caption_is_bos_only(tok):
    ids, mask = tok.encode([""], max_len=CFG.max_len)
    assert ids.tolist() == [[tok.bos_id]] and mask.tolist() == [[True]]


def test_batch_padding_and_mask(tok, corpus):
    texts = ["", corpus[0], corpus[1] + " and then " + corpus[2], "a cone"]
    alone = [tok.encode([t], max_len=CFG.max_len)[0][0] for t in texts]
    ids, mask = tok.encode(texts, max_len=CFG.max_len)
    lengths = [len(a) for a in alone]
    assert ids.dtype == torch.long and mask.dtype == torch.bool
    assert ids.shape == mask.shape == (4, max(lengths))
    assert mask.sum(1).tolist() == lengths
    for i, a in enumerate(alone):
        assert torch.equal(ids[i, : lengths[i]], a)
        assert (ids[i, lengths[i] :] == tok.pad_id).all() and not mask[i, lengths[i] :].any()


def test_truncation_keeps_the_first_max_len_tokens(tok, corpus):
    full, _ = tok.encode([corpus[3]], max_len=1000)
    ids, mask = tok.encode([corpus[3], ""], max_len=5)
    assert ids.shape == (2, 5) and torch.equal(ids[0], full[0, :5]) and mask[0].all()
    with pytest.raises(ValueError, match="list of strings"):
        tok.encode("not a list", max_len=5)
    with pytest.raises(ValueError, match="list of strings"):
        tok.encode([], max_len=5)


def test_save_load_gives_identical_ids(tok, corpus, tmp_path):
    path = tmp_path / "tokenizer.json"
    tok.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["tokenizer.json"]  # no temp file left behind
    for other in (Tokenizer.from_file(path), Tokenizer.from_str(tok.to_str())):
        assert other.to_str() == tok.to_str() and other.vocab_size == tok.vocab_size
        for a, b in zip(tok.encode(corpus, 64), other.encode(corpus, 64), strict=True):
            assert torch.equal(a, b)


def test_from_file_errors_clearly(tmp_path):
    with pytest.raises(TokenizerError, match="not found"):
        Tokenizer.from_file(tmp_path / "missing.json")
    bad = tmp_path / "corrupt.json"
    bad.write_text('{"version": "1.0", "model": ')
    with pytest.raises(ValueError, match="corrupt.json"):
        Tokenizer.from_file(bad)
    bad.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ValueError, match="corrupt.json"):
        Tokenizer.from_file(bad)


def test_from_str_rejects_a_foreign_tokenizer():
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import models

    foreign = HFTokenizer(models.WordLevel({"hello": 0, "[UNK]": 1}, unk_token="[UNK]"))
    with pytest.raises(TokenizerError, match="<pad>"):
        Tokenizer.from_str(foreign.to_str())


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    torch.manual_seed(0)
    return TextEncoder(CFG).eval()


def test_encoder_shapes_and_zeroed_padding(tok, encoder, corpus):
    ids, mask = tok.encode(["", corpus[5], corpus[6]], max_len=CFG.max_len)
    tokens, mask_out = encoder(ids, mask)
    assert tokens.shape == (3, ids.shape[1], CFG.dim) and torch.equal(mask_out, mask)
    assert torch.isfinite(tokens).all()
    assert (tokens[~mask] == 0).all() and (tokens[mask].abs().sum(-1) > 0).all()


def test_encoder_real_positions_ignore_padding(tok, encoder, corpus):
    short, long = corpus[7], corpus[8] + " " + corpus[9]
    with torch.no_grad():
        alone = encoder(*tok.encode([short], max_len=CFG.max_len))[0][0]  # (n, D)
        ids, mask = tok.encode([short, long], max_len=CFG.max_len)
        batched = encoder(ids, mask)[0][0]
        n = alone.shape[0]
        assert ids.shape[1] > n
        torch.testing.assert_close(batched[:n], alone, atol=1e-5, rtol=1e-5)
        # Whatever sits at padding positions changes nothing.
        ids[0, n:] = torch.randint(2, tok.vocab_size, (ids.shape[1] - n,))
        torch.testing.assert_close(encoder(ids, mask)[0][0], batched, atol=1e-6, rtol=0)
        # But the real tokens are used: a different caption gives a different encoding.
        other = encoder(*tok.encode([corpus[10]], max_len=CFG.max_len))[0][0]
        assert not torch.allclose(other[1 : min(n, len(other))], alone[1 : min(n, len(other))])


def test_encoder_rejects_bad_input_and_builds_on_meta(encoder):
    ids = torch.ones(1, CFG.max_len + 1, dtype=torch.long)
    with pytest.raises(ValueError, match="max_len"):
        encoder(ids, torch.ones_like(ids, dtype=torch.bool))
    with pytest.raises(ValueError, match="mask"):
        encoder(ids[:, :4], torch.ones(1, 4))
    with torch.device("meta"):
        meta = TextEncoder(CFG)
    names = sorted(n for n, _ in meta.named_parameters())
    assert names == sorted(n for n, _ in encoder.named_parameters()) and not list(meta.buffers())


def test_encoder_trains(tok, corpus):
    torch.manual_seed(0)
    enc = TextEncoder(CFG)
    ids, mask = tok.encode(corpus[:4], max_len=CFG.max_len)
    tokens, _ = enc(ids, mask)
    tokens.square().sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in enc.parameters())
