"""Model folders: bit-identical round trips, sharding, and clear refusals of bad files."""

import json
import os
import shutil
import stat

import pytest
import torch

from tessera.checkpoint import (
    CheckpointError,
    load_model,
    load_state,
    load_tensors,
    save_model,
    save_state,
    save_tensors,
)
from tessera.pipeline import encode_text


def _outputs(model):
    """Deterministic outputs of every component on fixed inputs."""
    gen = torch.Generator().manual_seed(1)
    cz = model.config.vae.z_channels
    x = torch.rand(1, 3, 5, 16, 16, generator=gen) * 2 - 1
    z = torch.randn(1, cz, 2, 4, 4, generator=gen)
    text, mask = encode_text(model, ["a red cube", ""], torch.device("cpu"))
    t = torch.rand(2, 2, generator=gen)
    v = model.dit(z.expand(2, -1, -1, -1, -1), t, text, mask)
    return [model.vae.encode(x)[0], model.vae.decode(z), text, v]


def test_save_load_is_bit_identical(tiny_model_dir, tmp_path):
    a = load_model(tiny_model_dir)
    b = load_model(save_model(a, tmp_path / "copy"))
    for x, y in zip(_outputs(a), _outputs(b), strict=True):
        assert torch.equal(x, y)
    for name, m in a.modules().items():
        for (k, p), q in zip(m.state_dict().items(), b.modules()[name].state_dict().values(), strict=True):
            assert torch.equal(p, q), k
    assert b.tokenizer.to_str() == a.tokenizer.to_str()
    assert "UNTRAINED" in b.card


def test_saved_folders_get_the_umask_permissions_not_the_temp_files_private_ones(tiny_model_dir, tmp_path):
    old = os.umask(0o022)
    try:
        out = save_model(load_model(tiny_model_dir), tmp_path / "copy")
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o755
    files = list(out.iterdir())
    assert {p.suffix for p in files} >= {".json", ".safetensors", ".md"}
    assert {stat.S_IMODE(p.stat().st_mode) for p in files} == {0o644}


def test_bf16_storage_halves_the_bytes_and_loads_as_fp32(tiny_model_dir, tmp_path):
    a = load_model(tiny_model_dir)
    b = load_model(save_model(a, tmp_path / "bf16", dtype=torch.bfloat16))
    size = lambda d: sum(f.stat().st_size for f in d.glob("*.safetensors"))  # noqa: E731
    assert size(tmp_path / "bf16") < 0.6 * size(tiny_model_dir)
    for name, m in a.modules().items():
        params = dict(m.named_parameters())
        for k, p in m.state_dict().items():
            q = b.modules()[name].state_dict()[k]
            assert q.dtype == p.dtype, k  # computes in the built dtype
            want = p.to(torch.bfloat16).to(p.dtype) if k in params else p  # buffers keep full precision
            assert torch.equal(q, want), k


def test_large_tensors_are_sharded_at_16_mib(tmp_path):
    tensors = {f"w{i}": torch.randn(1024, 1024) for i in range(9)}  # 9 x 4 MiB
    save_tensors(tmp_path, "dit", tensors)
    shards = sorted(tmp_path.glob("dit-*.safetensors"))
    assert len(shards) == 3 and all(p.stat().st_size <= 16 * 2**20 + 4096 for p in shards)
    index = json.loads((tmp_path / "dit.safetensors.index.json").read_text())
    assert set(index["weight_map"]) == set(tensors)
    loaded = load_tensors(tmp_path, "dit")
    assert all(torch.equal(loaded[k], v) for k, v in tensors.items())


def test_truncated_weights_are_refused(tiny_model_dir, tmp_path):
    bad = shutil.copytree(tiny_model_dir, tmp_path / "bad")
    f = bad / "dit.safetensors"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=r"dit\.safetensors.*truncated or corrupt"):
        load_model(bad)


def test_pickle_weights_are_refused(tiny_model_dir, tmp_path):
    bad = shutil.copytree(tiny_model_dir, tmp_path / "bad")
    (bad / "vae.safetensors").unlink()
    torch.save({"w": torch.zeros(1)}, bad / "vae.pt")
    with pytest.raises(CheckpointError, match="never pickle"):
        load_model(bad)


def test_missing_and_mismatched_files_are_named(tiny_model_dir, tmp_path):
    with pytest.raises(CheckpointError, match="model folder not found"):
        load_model(tmp_path / "nowhere")
    bad = shutil.copytree(tiny_model_dir, tmp_path / "bad")
    (bad / "tokenizer.json").unlink()
    with pytest.raises(CheckpointError, match="tokenizer.json"):
        load_model(bad)
    bad2 = shutil.copytree(tiny_model_dir, tmp_path / "bad2")
    cfg = json.loads((bad2 / "config.json").read_text())
    cfg["dit"]["dim"] *= 2
    (bad2 / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="do not match the config"):
        load_model(bad2)
    cfg["dit"]["dimm"] = 1
    (bad2 / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="unknown keys.*dimm"):
        load_model(bad2)


def test_training_state_round_trip_and_atomic_overwrite(tmp_path):
    tensors = {"opt.exp_avg.0": torch.randn(3, 4), "rng": torch.randint(0, 255, (16,), dtype=torch.uint8)}
    save_state(tmp_path / "state", tensors, {"step": 5})
    save_state(tmp_path / "state", {k: v + 1 for k, v in tensors.items()}, {"step": 6})
    loaded, meta = load_state(tmp_path / "state")
    assert meta == {"step": 6} and torch.equal(loaded["opt.exp_avg.0"], tensors["opt.exp_avg.0"] + 1)
    assert [p.name for p in tmp_path.iterdir()] == ["state"]  # no temp folders left behind


def test_model_init_around_a_trained_vae(tiny_model_dir, tmp_path):
    from tessera.pipeline import RequestError, init_model_folder

    vae_only = tmp_path / "vae-only"  # what a run ships back: the VAE, its config and tokenizer
    vae_only.mkdir()
    for name in ("vae.safetensors", "config.json", "tokenizer.json"):
        shutil.copy(tiny_model_dir / name, vae_only / name)
    model = load_model(init_model_folder("tiny", tmp_path / "m", seed=3, vae=vae_only))
    source = load_model(tiny_model_dir)
    for k, v in source.vae.state_dict().items():
        assert torch.equal(model.vae.state_dict()[k], v), k
    assert model.tokenizer.to_str() == source.tokenizer.to_str()
    with pytest.raises(RequestError, match="another VAE than preset 's'"):
        init_model_folder("s", tmp_path / "m2", vae=vae_only)
    (vae_only / "tokenizer.json").unlink()  # a packed VAE alone: the tokenizer is trained, as without vae
    bare = load_model(init_model_folder("tiny", tmp_path / "m3", seed=3, vae=vae_only))
    for part in ("vae", "dit"):  # the donor's VAE; the same seed's random DiT
        mine, theirs = getattr(bare, part).state_dict(), getattr(model, part).state_dict()
        assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine), part
    fresh = load_model(init_model_folder("tiny", tmp_path / "m4", seed=3))
    assert bare.tokenizer.to_str() == fresh.tokenizer.to_str()


def test_model_grow_samples_as_its_source_and_refuses_other_shapes(tiny_model_dir, tmp_path):
    from tessera.pipeline import RequestError, grow_model_folder, init_model_folder

    src = init_model_folder("s", tmp_path / "s", seed=4)
    grown = load_model(grow_model_folder(src, "s-deep", tmp_path / "deep"))
    source = load_model(src)
    assert grown.config.preset == "s-deep" and len(grown.dit.blocks) == 12 and len(source.dit.blocks) == 8
    with torch.no_grad():
        for a, b in zip(_outputs(source), _outputs(grown), strict=True):
            assert torch.equal(a, b)
    assert "grown from" in grown.card and grown.tokenizer.to_str() == source.tokenizer.to_str()
    with pytest.raises(RequestError, match="differs from preset 's-deep' in more than the DiT's depth and"):
        grow_model_folder(tiny_model_dir, "s-deep", tmp_path / "x")
    with pytest.raises(RequestError, match="preset 's' has 8 DiT blocks of MLP width 1024 .* growing needs"):
        grow_model_folder(tmp_path / "deep", "s", tmp_path / "y")
    with pytest.raises(RequestError, match="growing needs more of one and no fewer of either"):
        grow_model_folder(tmp_path / "deep", "s-deep", tmp_path / "y")
    wide = load_model(grow_model_folder(tmp_path / "deep", "s-wide", tmp_path / "wide"))  # deeper and wider
    assert len(wide.dit.blocks) == 16 and wide.dit.blocks[0].mlp.fc1.weight.shape[0] == 2048
    with torch.no_grad():
        for a, b in zip(_outputs(source), _outputs(wide), strict=True):
            assert torch.allclose(a, b, atol=1e-5, rtol=0)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def _two_equal_shards(folder, monkeypatch):
    """Two shards of the same shape (a and b), as in a model whose layers repeat."""
    import tessera.checkpoint as ckpt

    monkeypatch.setattr(ckpt, "SHARD_BYTES", 1024)
    tensors = {"a": torch.arange(256.0), "b": -torch.arange(256.0)}
    save_tensors(folder, "dit", tensors)
    return [folder / f"dit-0000{i}-of-00002.safetensors" for i in (1, 2)]


def test_swapped_or_corrupted_shards_are_named(tmp_path, monkeypatch):
    first, second = _two_equal_shards(tmp_path, monkeypatch)
    index = json.loads((tmp_path / "dit.safetensors.index.json").read_text())
    assert set(index["sha256"]) == {first.name, second.name}
    assert torch.equal(load_tensors(tmp_path, "dit")["b"], -torch.arange(256.0))
    a, b = first.read_bytes(), second.read_bytes()
    first.write_bytes(b), second.write_bytes(a)  # same size, same header shape: loads without checksums
    with pytest.raises(CheckpointError, match=f"{first.name}: checksum differs .* swapped"):
        load_tensors(tmp_path, "dit")
    first.write_bytes(a), second.write_bytes(a[:-4] + b"\x00\x00\x80\x7f")  # one value made inf
    with pytest.raises(CheckpointError, match=second.name):
        load_tensors(tmp_path, "dit")


def test_an_index_without_checksums_loads_with_one_notice(tmp_path, monkeypatch, capsys):
    _two_equal_shards(tmp_path, monkeypatch)
    path = tmp_path / "dit.safetensors.index.json"
    index = json.loads(path.read_text())
    del index["sha256"]
    path.write_text(json.dumps(index))
    assert torch.equal(load_tensors(tmp_path, "dit")["a"], torch.arange(256.0))
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("notice:") and "no shard checksums" in err[0]


def test_shipped_folders_carry_shard_checksums(capsys):
    from tessera.caption.weights import default_dir
    from tessera.pipeline import default_model_path

    for folder, name in ((default_model_path(), "dit"), (default_dir(), "captioner")):
        load_tensors(folder, name)
    assert "notice" not in capsys.readouterr().err


def test_non_finite_weights_are_refused_by_name(tiny_model_dir, tmp_path):
    model = load_model(tiny_model_dir)
    name, weight = list(model.dit.named_parameters())[3]
    with torch.no_grad():
        weight.view(-1)[0] = float("nan")
    bad = save_model(model, tmp_path / "nan")
    with pytest.raises(CheckpointError, match=rf"non-finite weights \(NaN or inf\) in {name}$"):
        load_model(bad)


def test_meta_builds_skip_initialisers_and_put_them_back(tiny_model_dir, monkeypatch):
    """Networks built on the meta device (for weights about to be loaded) skip torch's initialisers, whose
    first use there costs seconds; the initialisers come back afterwards, also when building fails, and a
    CPU build still initialises."""
    from torch import nn

    from tessera import checkpoint

    model = load_model(tiny_model_dir)
    calls = []
    real = nn.init.normal_
    monkeypatch.setattr(nn.init, "normal_", lambda *a, **k: calls.append(a) or real(*a, **k))
    before = {name: getattr(nn.init, name) for name in checkpoint.INITIALISERS}
    checkpoint.build_model(model.config, model.tokenizer, "meta")
    assert calls == [] and {n: getattr(nn.init, n) for n in checkpoint.INITIALISERS} == before
    checkpoint.build_model(model.config, model.tokenizer, "cpu")
    assert calls  # on the CPU the text encoder's and the DiT's normal_ ran

    def broken(cfg):
        raise RuntimeError("a network that fails to build")

    monkeypatch.setattr(checkpoint, "DiT", broken)
    with pytest.raises(RuntimeError, match="fails to build"):
        checkpoint.build_model(model.config, model.tokenizer, "meta")
    assert {n: getattr(nn.init, n) for n in checkpoint.INITIALISERS} == before
