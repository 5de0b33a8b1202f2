"""Wan 2.1 in tessera: each part and a whole sampling run against diffusers / transformers, on tiny random
models built here (no network), and both checkpoint layouts loading from a folder."""

import copy
import dataclasses
import itertools
import json
import re
import shutil
from functools import partial
from pathlib import Path

import pytest
import torch

diffusers = pytest.importorskip("diffusers")
transformers = pytest.importorskip("transformers")

from tessera import pipeline, wan  # noqa: E402
from tessera.checkpoint import CheckpointError  # noqa: E402
from tessera.config import WanVAEConfig  # noqa: E402
from tessera.models.dit import DiT  # noqa: E402
from tessera.models.wan_text import WanTextEncoder, WanTokenizer  # noqa: E402
from tessera.models.wan_vae import WanVAE  # noqa: E402
from tessera.models.wan_vae import from_diffusers as vae_from_diffusers  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

WORDS = "a red cube blue ball rolls on the floor slowly fast green tree blurry low quality".split()
TEXT_LEN = 16  # tokens per caption on both sides (Wan's own is 512)


def _nudge(module: torch.nn.Module, seed: int, std: float = 0.1) -> torch.nn.Module:
    """Random offsets on every parameter (diffusers zero- or one-initialises some, hiding mistakes)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(std * torch.randn(p.shape, generator=g))
    return module.eval()


def tiny_transformer(seed: int = 0, channels: int = 4):
    torch.manual_seed(seed)
    ref = diffusers.WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=channels,
        out_channels=channels,
        text_dim=16, freq_dim=16, ffn_dim=32, num_layers=2, rope_max_seq_len=64,
    )  # fmt: skip
    return _nudge(ref, seed)


def tiny_vae(seed: int = 0, wan_latents: bool = False):
    """Wan's VAE at 4 levels and 2 residual blocks (the layout the original release uses), base width 4;
    with `wan_latents` 16 latent channels and Wan 2.1's latent statistics, else 4 channels and others."""
    torch.manual_seed(seed)
    stats = {} if wan_latents else dict(latents_mean=[0.1, -0.2, 0.3, 0.0], latents_std=[1.5, 0.5, 2.0, 1.0])
    ref = diffusers.AutoencoderKLWan(
        base_dim=4, z_dim=16 if wan_latents else 4, dim_mult=[1, 2, 4, 4], num_res_blocks=2,
        temperal_downsample=[False, True, True], **stats,
    )  # fmt: skip
    return _nudge(ref, seed, std=0.05)


def tiny_vae22(seed: int = 0):
    """Wan 2.2's VAE as in TI2V-5B (residual down/up blocks, 2x2 pixel patches: 4x16x16, 48 latent
    channels, a decoder of its own width) at base width 4, decoder width 6, with random statistics."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed + 1)
    stats = dict(latents_mean=(0.3 * torch.randn(48, generator=g)).tolist())
    stats["latents_std"] = (0.5 + torch.rand(48, generator=g)).tolist()
    ref = diffusers.AutoencoderKLWan(
        base_dim=4, decoder_base_dim=6, z_dim=48, dim_mult=[1, 2, 4, 4], num_res_blocks=2,
        temperal_downsample=[False, True, True], is_residual=True, patch_size=2, in_channels=12,
        out_channels=12, scale_factor_spatial=16, **stats,
    )  # fmt: skip
    return _nudge(ref, seed, std=0.05)


def tiny_text(seed: int = 0):
    torch.manual_seed(seed)
    config = transformers.UMT5Config(
        vocab_size=len(WORDS) + 3, d_model=16, d_kv=4, d_ff=24, num_layers=2, num_heads=4,
        relative_attention_num_buckets=8, feed_forward_proj="gated-gelu",
    )  # fmt: skip
    return transformers.UMT5EncoderModel(config).eval()


def tiny_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2} | {w: i + 3 for i, w in enumerate(WORDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )


def tiny_pipeline(kind: type, transformer, vae=None, shift: float = 3.0, **config):
    """A tiny random pipeline of class `kind` around `transformer`: the tiny umT5 and tokenizer, `vae`
    (default Wan 2.1's with its latent statistics) and an Euler scheduler (kept in memory: loading it back
    would need `accelerate`)."""
    return kind(
        tokenizer=tiny_tokenizer(),
        text_encoder=tiny_text(),
        vae=tiny_vae(wan_latents=True) if vae is None else vae,
        scheduler=diffusers.FlowMatchEulerDiscreteScheduler(shift=shift),
        transformer=transformer,
        **config,
    )


def saved(pipe, tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    """`pipe` saved in the diffusers layout."""
    path = tmp_path_factory.mktemp(name) / "diffusers"
    pipe.save_pretrained(path, safe_serialization=True)
    return path


@pytest.fixture(scope="module")
def wan_pipe() -> "diffusers.WanPipeline":
    """A tiny random Wan 2.1 pipeline."""
    return tiny_pipeline(diffusers.WanPipeline, tiny_transformer(channels=16))


@pytest.fixture(scope="module")
def wan_folder(wan_pipe, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return saved(wan_pipe, tmp_path_factory, "wan")


# --- parts ---------------------------------------------------------------------------------------------


def test_dit_with_wan_options_matches_diffusers() -> None:
    """tessera's DiT with qk_norm="all" and no condition channels, loaded through the key conversion
    (stacked q/k/v, flattened Conv3d patch kernel, reordered output rows), equals WanTransformer3DModel."""
    ref = tiny_transformer()
    cfg = wan.dit_config_from_diffusers(dict(ref.config))
    assert (cfg.qk_norm, cfg.cond_channels, cfg.dim, cfg.heads) == ("all", 0, 24, 2)
    dit = DiT(cfg).eval()
    dit.load_state_dict(wan.dit_from_diffusers(ref.state_dict(), cfg))
    g = torch.Generator().manual_seed(1)
    x, text = torch.randn(2, 4, 3, 4, 6, generator=g), torch.randn(2, 7, 16, generator=g)
    t = torch.tensor([0.3, 0.8])
    with torch.no_grad():
        want = ref(x, t * 1000, text, return_dict=False)[0]
        got = dit(x, t[:, None].expand(2, 3), text, torch.ones(2, 7, dtype=torch.bool))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="no condition channels"):
        dit(x, t[:, None].expand(2, 3), text, torch.ones(2, 7, dtype=torch.bool), cond=x)


def test_original_dit_names_are_the_ones_diffusers_converts() -> None:
    """The original release's DiT names (as diffusers' own single-file converter reads them) map through
    `dit_original_to_diffusers` to the diffusers model's state dict, tensor for tensor."""
    from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers

    state = tiny_transformer().state_dict()
    original = {_dit_original_name(k): v for k, v in state.items()}
    assert convert_wan_transformer_to_diffusers(dict(original)).keys() == state.keys()
    mine = wan.dit_original_to_diffusers(original)
    assert mine.keys() == state.keys() and all(mine[k] is state[k] for k in state)


def _dit_original_name(k: str) -> str:
    for a, b in [
        ("condition_embedder.time_embedder.linear_1", "time_embedding.0"),
        ("condition_embedder.time_embedder.linear_2", "time_embedding.2"),
        ("condition_embedder.text_embedder.linear_1", "text_embedding.0"),
        ("condition_embedder.text_embedder.linear_2", "text_embedding.2"),
        ("condition_embedder.time_proj", "time_projection.1"),
        ("proj_out", "head.head"),
        ("attn1", "self_attn"), ("attn2", "cross_attn"), (".to_out.0.", ".o."), (".to_q.", ".q."),
        (".to_k.", ".k."), (".to_v.", ".v."), ("ffn.net.0.proj", "ffn.0"), ("ffn.net.2", "ffn.2"),
        (".norm2.", ".norm3."),
    ]:  # fmt: skip
        k = k.replace(a, b)
    if k == "scale_shift_table":
        return "head.modulation"
    return k.replace("scale_shift_table", "modulation")


def converted_vae(ref) -> tuple[WanVAEConfig, WanVAE]:
    """diffusers' AutoencoderKLWan `ref` as tessera's WanVAE: its config, weights and latent statistics."""
    cfg = wan.vae_config_from_diffusers(dict(ref.config))
    vae = WanVAE(cfg).eval()
    state = vae_from_diffusers(vae, ref.state_dict())
    state |= wan._latent_stats(ref.config.latents_mean, ref.config.latents_std, cfg.z_channels)
    vae.load_state_dict(state)
    return cfg, vae


def test_vae_encode_and_decode_match_diffusers_in_chunks_and_whole() -> None:
    """WanVAE equals AutoencoderKLWan: encode (posterior mean and log-variance) and decode, whether run
    in Wan's chunks, in longer chunks, or as a whole clip; the latent statistics normalise as Wan's
    pipelines do."""
    ref = tiny_vae()
    cfg, vae = converted_vae(ref)
    g = torch.Generator().manual_seed(2)
    x = torch.rand(1, 3, 9, 16, 24, generator=g) * 2 - 1
    z = torch.randn(1, 4, 3, 2, 3, generator=g)
    with torch.no_grad():
        post = ref.encode(x).latent_dist
        want_x = ref.decode(z).sample
        for chunk in (4, 8):
            vae.cfg = WanVAEConfig(**{**cfg.__dict__, "chunk_frames": chunk})
            mean, logvar = vae.encode(x)
            torch.testing.assert_close(mean, post.mean, rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(logvar, post.logvar, rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(vae.decode(z).clamp(-1, 1), want_x, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(vae.encode(x, chunked=False)[0], post.mean, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(vae.decode(z, chunked=False).clamp(-1, 1), want_x, rtol=1e-4, atol=1e-5)
        mu, sd = torch.tensor(ref.config.latents_mean), torch.tensor(ref.config.latents_std)
        normalised = (post.mean - mu.view(1, -1, 1, 1, 1)) / sd.view(1, -1, 1, 1, 1)
        torch.testing.assert_close(vae.encode_latents(x), normalised, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(vae.decode_latents(normalised).clamp(-1, 1), ref.decode(post.mean).sample)


def test_vae_norm_in_bf16_stays_within_bf16_rounding_of_float64() -> None:
    """Wan's RMS norm (x / ||x||_C * sqrt(C) * gamma) computed from bf16 activations without a float32 copy:
    against float64 on the same bf16 inputs, each value within three bf16 roundings (3 * 2^-8 relative)."""
    from tessera.models.wan_vae import WanNorm

    torch.manual_seed(0)
    norm = WanNorm(64)
    with torch.no_grad():
        norm.gamma.uniform_(0.5, 1.5)
    x = (torch.randn(2, 64, 3, 8, 8) * 3).bfloat16()
    unit = x.double() / x.double().norm(dim=1, keepdim=True) * 64**0.5
    want = unit * norm.gamma.bfloat16().double()  # the bf16 module multiplies by gamma in bf16
    got = norm(x)
    assert got.dtype == torch.bfloat16
    rel = ((got.double() - want).abs() / want.abs().clamp_min(1e-3)).max().item()
    assert rel <= 3 * 2**-8
    assert torch.allclose(norm(x.float()).double(), unit * norm.gamma.double(), rtol=1e-5, atol=1e-6)


def test_wan22_vae_encode_and_decode_match_diffusers_in_chunks_and_whole() -> None:
    """WanVAE with Wan 2.2's options equals AutoencoderKLWan(is_residual=True, patch_size=2): posterior
    mean and log-variance, and decoded pixels, in Wan's chunks, longer chunks and whole; 16x spatial
    compression and its own 48-channel statistics."""
    ref = tiny_vae22()
    cfg, vae = converted_vae(ref)
    assert (cfg.residual, cfg.patch, cfg.in_channels, cfg.decoder_base_channels, cfg.space_factor) == (
        True, 2, 3, 6, 16
    )  # fmt: skip
    g = torch.Generator().manual_seed(2)
    x = torch.rand(1, 3, 9, 32, 48, generator=g) * 2 - 1
    z = torch.randn(1, 48, 3, 2, 3, generator=g)
    close = partial(torch.testing.assert_close, rtol=1e-4, atol=1e-5)
    with torch.no_grad():
        post = ref.encode(x).latent_dist
        want_x = ref.decode(z).sample
        assert post.mean.shape == (1, 48, 3, 2, 3) and want_x.shape == x.shape
        for chunk in (4, 8):
            vae.cfg = dataclasses.replace(cfg, chunk_frames=chunk)
            mean, logvar = vae.encode(x)
            close(mean, post.mean)
            close(logvar, post.logvar)
            close(vae.decode(z).clamp(-1, 1), want_x)
        close(vae.encode(x, chunked=False)[0], post.mean)
        close(vae.decode(z, chunked=False).clamp(-1, 1), want_x)
        mu, sd = torch.tensor(ref.config.latents_mean), torch.tensor(ref.config.latents_std)
        normalised = (post.mean - mu.view(1, -1, 1, 1, 1)) / sd.view(1, -1, 1, 1, 1)
        close(vae.encode_latents(x), normalised)
        close(vae.decode_latents(normalised).clamp(-1, 1), ref.decode(post.mean).sample)
    with pytest.raises(CheckpointError, match="decoder_base_dim unlike base_dim needs is_residual"):
        wan.vae_config_from_diffusers({**ref.config, "is_residual": False})


def test_original_vae_names_are_the_ones_diffusers_converts() -> None:
    """Wan2.1_VAE.pth's names (checked with diffusers' converter) map onto diffusers' names."""
    from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers

    from tessera.models.wan_vae import original_to_diffusers

    state = tiny_vae().state_dict()
    original = {_vae_original_name(k): v for k, v in state.items()}
    assert convert_wan_vae_to_diffusers(dict(original)).keys() == state.keys()
    mine = original_to_diffusers(original)
    assert mine.keys() == state.keys() and all(mine[k] is state[k] for k in state)


def _vae_original_name(k: str) -> str:
    k = re.sub(r"^quant_conv\.", "conv1.", k)
    k = re.sub(r"^post_quant_conv\.", "conv2.", k)
    k = re.sub(r"\.conv_in\.", ".conv1.", k)
    k = k.replace(".norm_out.", ".head.0.").replace(".conv_out.", ".head.2.")
    k = k.replace("mid_block.attentions.0.", "middle.1.")
    k = re.sub(r"mid_block\.resnets\.(\d)\.", lambda m: f"middle.{2 * int(m.group(1))}.", k)
    k = k.replace("encoder.down_blocks.", "encoder.downsamples.")
    k = re.sub(
        r"up_blocks\.(\d)\.resnets\.(\d)\.",
        lambda m: f"upsamples.{4 * int(m.group(1)) + int(m.group(2))}.",
        k,
    )
    k = re.sub(r"up_blocks\.(\d)\.upsamplers\.0\.", lambda m: f"upsamples.{4 * int(m.group(1)) + 3}.", k)
    for a, b in [
        ("norm1.gamma", "residual.0.gamma"),
        ("conv1.", "residual.2."),
        ("norm2.gamma", "residual.3.gamma"),
    ]:
        k = re.sub(rf"(\d\.){re.escape(a)}", rf"\g<1>{b}", k)
    k = re.sub(r"(\d\.)conv2\.", r"\g<1>residual.6.", k)
    return k.replace("conv_shortcut", "shortcut")


def test_text_encoder_matches_transformers_and_pads_like_wan() -> None:
    """The umT5 wrapper gives transformers' hidden states on the caption's tokens and zeros after
    them, over all max_len positions, which the DiT attends to (Wan's and diffusers' convention)."""
    enc, tok = tiny_text(), WanTokenizer(tiny_tokenizer())
    ids, mask = tok.encode(["a red cube rolls", "blue  ball &amp; tree"], TEXT_LEN)
    assert ids.shape == (2, TEXT_LEN) and mask.sum(1).tolist() == [5, 5]  # words + </s> ('&' is unknown)
    with torch.no_grad():
        tokens, attend = WanTextEncoder(enc)(ids, mask)
        want = enc(input_ids=ids, attention_mask=mask.long()).last_hidden_state
    assert attend.all()
    torch.testing.assert_close(tokens[mask], want[mask])
    assert tokens[~mask].abs().max() == 0


def test_original_umt5_names_load_into_transformers() -> None:
    from tessera.models.wan_text import umt5_config_from_original, umt5_from_original

    enc = tiny_text()
    state = enc.state_dict()
    original = _umt5_original(state)
    cfg = umt5_config_from_original(original)
    assert (cfg.d_model, cfg.num_heads, cfg.d_kv, cfg.d_ff, cfg.num_layers) == (16, 4, 4, 24, 2)
    converted = umt5_from_original(original)
    assert converted.keys() == state.keys()


_UMT5_ORIGINAL = {
    "layer.0.layer_norm": "norm1", "layer.0.SelfAttention.q": "attn.q", "layer.0.SelfAttention.k": "attn.k",
    "layer.0.SelfAttention.v": "attn.v", "layer.0.SelfAttention.o": "attn.o",
    "layer.0.SelfAttention.relative_attention_bias": "pos_embedding.embedding",
    "layer.1.layer_norm": "norm2", "layer.1.DenseReluDense.wi_0": "ffn.gate.0",
    "layer.1.DenseReluDense.wi_1": "ffn.fc1", "layer.1.DenseReluDense.wo": "ffn.fc2",
}  # fmt: skip


def _umt5_original(state: dict) -> dict:
    """transformers' UMT5EncoderModel state dict under the names of Wan's own T5 module."""
    out = {
        "token_embedding.weight": state["shared.weight"],
        "norm.weight": state["encoder.final_layer_norm.weight"],
    }
    for k, v in state.items():
        m = re.match(r"encoder\.block\.(\d+)\.(.*)\.weight$", k)
        if m:
            out[f"blocks.{m.group(1)}.{_UMT5_ORIGINAL[m.group(2)]}.weight"] = v
    return out


# --- whole model: folders, sampling ----------------------------------------------------------------


def _flow_scheduler(pipe, steps: int):
    """Give diffusers' Euler scheduler tessera's grid (uniform in unshifted time, ending at 0); the
    scheduler applies the shift itself."""
    sched = pipe.scheduler
    original = sched.set_timesteps

    def set_timesteps(num_inference_steps=None, device=None, **kw):
        return original(sigmas=torch.linspace(1, 0, steps + 1)[:-1].tolist(), device=device)

    sched.set_timesteps = set_timesteps


def test_sampling_matches_wan_pipeline_with_guidance_and_negative_prompt(wan_pipe, wan_folder: Path) -> None:
    """Same noise, the same shifted schedule, 4 Euler steps, guidance 4 with a negative prompt: tessera
    loading the diffusers folder reaches the latents diffusers' WanPipeline reaches."""
    from tessera.flow.schedules import timesteps

    pipe = wan_pipe
    model = wan.load(wan_folder, "cpu", text_len=TEXT_LEN)
    assert model.config.flow_shift == 3.0
    steps, prompt, negative = 4, "a red cube rolls on the floor", "blurry low quality"
    _flow_scheduler(pipe, steps)
    pipe.scheduler.set_timesteps(steps)
    torch.testing.assert_close(pipe.scheduler.sigmas.double(), timesteps(steps, 3.0), atol=1e-6, rtol=0)

    shape = (3, 4, 6)  # 9 frames at 32x48
    z = pipeline.sample_latents(
        model, prompt, shape, steps=steps, guidance=4.0, seed=7, negative_prompt=negative
    )
    noise = torch.randn(1, 16, *shape, generator=torch.Generator("cpu").manual_seed(7))
    want = pipe(
        prompt=prompt, negative_prompt=negative, height=32, width=48, num_frames=9, num_inference_steps=steps,
        guidance_scale=4.0, latents=noise.clone(), output_type="latent", max_sequence_length=TEXT_LEN,
    ).frames  # fmt: skip
    torch.testing.assert_close(z, want, rtol=1e-4, atol=1e-4)
    other = pipeline.sample_latents(model, prompt, shape, steps=steps, guidance=4.0, seed=7)
    assert (other - z).abs().max() > 1e-3  # the negative prompt matters
    with pytest.raises(pipeline.RequestError, match="--shift must be positive"):
        pipeline.sample_latents(model, prompt, shape, steps=steps, shift=0.0)


def test_capabilities_run_on_a_model_without_condition_channels(wan_folder: Path) -> None:
    """Every capability on Wan weights (no condition channels): t2v, t2i, SDEdit, and the conditioned
    ones through held latents; a given prefix comes back exactly."""
    model = wan.load(wan_folder, "cpu", text_len=TEXT_LEN)
    s = dict(steps=2, guidance=2.0, seed=0)
    video = pipeline.generate(model, "a red cube", frames=5, height=32, width=32, **s)
    assert video.shape == (5, 32, 32, 3) and video.dtype == torch.uint8
    assert pipeline.image(model, "a ball", width=32, height=16, **s).shape == (16, 32, 3)
    src = pipeline.encode(model, video)
    _, z0 = pipeline.edit(model, video, "a blue ball", strength=0.0, return_latents=True, **s)
    torch.testing.assert_close(z0, src)  # strength 0 keeps the source
    joined, z = pipeline.extend(
        model, video, "rolls on", frames=9, overlap=5, blend=False, return_latents=True, **s
    )
    assert joined.shape[0] == 5 + 9 - 5
    torch.testing.assert_close(z[:, :, :2], pipeline.encode(model, video)[:, :, :2])  # the held prefix
    _, z = pipeline.animate(model, video[0], "rolls", frames=5, return_latents=True, **s)
    torch.testing.assert_close(z[:, :, :1], src[:, :, :1])  # the image's latent, held
    bridge = pipeline.connect(model, video, video.flip(0), "rolls back", frames=17, blend=False, **s)
    assert bridge.shape[0] == 5 + 17 - 5 - 4 + 5 and torch.equal(bridge[:1], video[:1])
    looped = pipeline.loop(model, "spins", frames=9, video=video, height=32, width=32, **s)
    assert torch.equal(looped[-1], looped[0])
    assert (
        pipeline.long(model, "rolls", frames=13, window=9, overlap=5, height=32, width=32, **s).shape[0] == 13
    )


def test_both_layouts_load_the_same_model(wan_pipe, wan_folder: Path, tmp_path: Path) -> None:
    """The original release's file set (DiT safetensors + config.json, the VAE and umT5 as .pth read with
    weights_only, the tokenizer folder) loads into the same networks as the diffusers folder."""
    from safetensors.torch import save_file

    a = wan.load(wan_folder, "cpu")
    orig = tmp_path / "original"
    (orig / "google").mkdir(parents=True)
    dit_state = wan_pipe.transformer.state_dict()
    save_file(
        {_dit_original_name(k): v.contiguous() for k, v in dit_state.items()},
        orig / "diffusion_pytorch_model.safetensors",
    )
    (orig / "config.json").write_text(json.dumps({"model_type": "t2v", "num_heads": 2, "dim": 24}))
    vae_state = wan_pipe.vae.state_dict()
    torch.save({_vae_original_name(k): v for k, v in vae_state.items()}, orig / "Wan2.1_VAE.pth")
    torch.save(_umt5_original(a.text.encoder.state_dict()), orig / "models_t5_umt5-xxl-enc-bf16.pth")
    shutil.copytree(wan_folder / "tokenizer", orig / "google" / "umt5-xxl")
    assert (wan.layout(wan_folder), wan.layout(orig)) == ("diffusers", "original")
    b = wan.load(orig, "cpu")
    for name in ("dit", "vae", "text"):
        sa, sb = getattr(a, name).state_dict(), getattr(b, name).state_dict()
        assert sa.keys() == sb.keys()
        for k in sa:
            torch.testing.assert_close(sa[k], sb[k], rtol=0, atol=0, msg=f"{name}.{k}")


def test_missing_or_truncated_components_are_named(wan_folder: Path, tmp_path: Path) -> None:
    for part, damage, pattern in [
        ("vae", "remove", r"Wan VAE: missing .*/vae/config.json"),
        ("transformer", "truncate", r"Wan transformer \(DiT\): .*diffusion_pytorch_model.*truncated"),
        ("text_encoder", "truncate", r"Wan text encoder \(umT5\): .*model.safetensors.*truncated"),
        ("tokenizer", "remove", r"Wan tokenizer: missing .*/tokenizer"),
    ]:
        broken = tmp_path / part
        shutil.copytree(wan_folder, broken)
        if damage == "remove":
            shutil.rmtree(broken / part)
        else:
            f = next((broken / part).glob("*.safetensors"))
            f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
        with pytest.raises(CheckpointError, match=pattern) as e:
            wan.load(broken, "cpu")
        assert "\n" not in str(e.value)
        if damage == "remove":
            assert "MISSING" in wan.describe(broken)
    other = tmp_path / "i2v"
    shutil.copytree(wan_folder, other)
    index = json.loads((other / "model_index.json").read_text())
    (other / "model_index.json").write_text(json.dumps({**index, "_class_name": "WanImageToVideoPipeline"}))
    with pytest.raises(
        CheckpointError, match="a WanImageToVideoPipeline; tessera runs Wan 2.1 text-to-video"
    ):
        wan.load(other, "cpu")


def test_cli_info_and_generate_recognise_a_wan_folder(wan_folder: Path, tmp_path: Path) -> None:
    """`tessera info` describes the folder; `tessera generate --model` samples from it, the same bytes
    twice, and a broken folder is one line naming the part (in process: the CLI's own tests run it as
    a real process)."""
    from typer.testing import CliRunner

    from tessera.cli import app
    from tessera.video import read_video

    r = CliRunner().invoke(app, ["info", str(wan_folder)])
    assert r.exit_code == 0, r.output
    assert "diffusers layout" in r.output and "2 blocks, width 24, 2 heads" in r.output
    assert "flow shift 3.0" in r.output
    flags = ["--model", str(wan_folder), "--frames", "5", "--height", "32", "--width", "32", "--steps", "2"]
    flags += ["--device", "cpu", "--negative-prompt", "blurry", "--shift", "5"]
    for name in ("a.mp4", "b.mp4"):
        r = CliRunner().invoke(app, ["generate", "a red cube rolls", "-o", str(tmp_path / name), *flags])
        assert r.exit_code == 0, r.output
        assert "expanded prompt" not in r.output  # Wan takes prompts as written
    a, b = read_video(tmp_path / "a.mp4"), read_video(tmp_path / "b.mp4")
    assert a.shape == (5, 32, 32, 3) and torch.equal(a, b)
    broken = tmp_path / "broken"
    shutil.copytree(wan_folder, broken)
    shutil.rmtree(broken / "text_encoder")
    r = CliRunner().invoke(
        app, ["generate", "x", "-o", str(tmp_path / "c.mp4"), "--model", str(broken), *flags[2:]]
    )
    assert isinstance(r.exception, ValueError) and "Wan text encoder (umT5): missing" in str(r.exception)
    assert "\n" not in str(r.exception)


# --- what the options change, and what they leave alone --------------------------------------------------


def test_configs_without_the_new_keys_load_as_before_and_unknown_keys_are_refused() -> None:
    """A config.json written before `qk_norm`, `conditioned` and `flow_shift` existed (the shipped
    model's) loads with the defaults that reproduce it; a misspelt key is still an error."""
    from tessera.config import ModelConfig

    shipped = json.loads((Path(pipeline.__file__).parent / "assets/model/config.json").read_text())
    assert "qk_norm" not in shipped["dit"] and "flow_shift" not in shipped
    config = ModelConfig.from_dict(shipped)
    assert (config.dit.qk_norm, config.dit.conditioned, config.flow_shift) == ("head", True, None)
    assert config.dit.cond_channels == config.dit.in_channels + 4
    assert ModelConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match="unknown keys \\['qk_nrom'\\]"):
        ModelConfig.from_dict({**shipped, "dit": {**shipped["dit"], "qk_nrom": "all"}})
    with pytest.raises(ValueError, match="missing keys \\['dim'\\]"):
        ModelConfig.from_dict({**shipped, "dit": {k: v for k, v in shipped["dit"].items() if k != "dim"}})
    with pytest.raises(ValueError, match="qk_norm must be one of head, all"):
        ModelConfig.from_dict({**shipped, "dit": {**shipped["dit"], "qk_norm": "both"}})


def test_held_frames_sit_at_the_step_noise_level_for_a_one_time_network() -> None:
    """With `given_noise` the given frames enter each call noised to the call's t with that noise, every
    frame at the same t, and come back clean at the end."""
    from tessera.flow.samplers import holding, impose, sample_euler
    from tessera.flow.schedules import timesteps

    g = torch.Generator().manual_seed(0)
    noise, x0 = torch.randn(1, 2, 3, 2, 2, generator=g), torch.randn(1, 2, 3, 2, 2, generator=g)
    given = torch.tensor([[True, False, False]])
    seen = []

    def model_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        seen.append((x[:, :, 0].clone(), t.clone()))
        return -x

    out = impose(sample_euler(holding(model_fn, x0, given, noise), noise, timesteps(3, 2.0)), x0, given)
    for x_first, t in seen:
        assert (t == t[0, 0]).all()
        torch.testing.assert_close(x_first, (1 - t[0, 0]) * x0[:, :, 0] + t[0, 0] * noise[:, :, 0])
    assert torch.equal(out[:, :, 0], x0[:, :, 0])


def test_model_import_writes_a_tessera_folder_that_samples_the_same(wan_folder: Path, tmp_path: Path) -> None:
    """`tessera model import` turns the diffusers folder into a tessera model folder: the DiT stored in
    tessera's own layout, the same latents from the same seed, described by `tessera info`."""
    from typer.testing import CliRunner

    from tessera.cli import app

    out = tmp_path / "imported"
    r = CliRunner().invoke(app, ["model", "import", str(wan_folder), "--out", str(out), "--dtype", "fp32"])
    assert r.exit_code == 0, r.output
    assert wan.layout(out) == "tessera" and (out / "dit.safetensors").exists()
    a, b = wan.load(wan_folder, "cpu", text_len=TEXT_LEN), wan.load(out, "cpu", text_len=TEXT_LEN)
    assert a.config == b.config
    s = dict(steps=2, guidance=3.0, seed=1, negative_prompt="blurry")
    za = pipeline.sample_latents(a, "a red cube", (2, 4, 4), **s)
    assert torch.equal(za, pipeline.sample_latents(b, "a red cube", (2, 4, 4), **s))
    text = pipeline.describe(out)
    assert "imported" in text and "2 blocks, width 24" in text and "flow shift 3.0" in text
    r = CliRunner().invoke(app, ["model", "import", str(out), "--out", str(tmp_path / "again")])
    assert isinstance(r.exception, ValueError) and "not a Wan checkpoint folder" in str(r.exception)


def test_bf16_weights_sample_close_to_float32(wan_folder: Path) -> None:
    """The GPU default (bf16 weights): inputs are cast to the weights' type, the flow integrates in
    float32, the latent statistics stay float32, and the result stays near the float32 model's."""
    a = wan.load(wan_folder, "cpu", torch.float32, text_len=TEXT_LEN)
    b = wan.load(wan_folder, "cpu", torch.bfloat16, text_len=TEXT_LEN)
    assert next(b.dit.parameters()).dtype == torch.bfloat16 and b.vae.latent_std.dtype == torch.float32
    s = dict(steps=2, guidance=3.0, seed=4, negative_prompt="blurry")
    za, zb = (pipeline.sample_latents(m, "a red cube", (2, 4, 4), **s) for m in (a, b))
    assert zb.dtype == torch.float32
    assert (za - zb).abs().max() < 0.05 * za.abs().max()
    frames = pipeline.generate(b, "a red cube", frames=5, height=32, width=32, **s)
    assert frames.shape == (5, 32, 32, 3) and frames.dtype == torch.uint8
    src = pipeline.encode(b, frames)
    assert src.dtype == torch.float32


def test_vae_decode_activations_are_bounded_by_the_chunk_not_the_clip() -> None:
    """Flat decode memory: the largest tensor a chunked decode allocates (the output clip aside) is the
    same for a clip three times longer; a whole-clip decode's grows with the clip."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten

    class LargestAllocation(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.numel = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if func is not torch.ops.aten.new_empty.default:  # the preallocated output clip
                for t in tree_flatten(out)[0]:
                    if isinstance(t, torch.Tensor) and t._base is None:  # fresh storage, not a view
                        self.numel = max(self.numel, t.numel())
            return out

    ref = tiny_vae()
    vae = WanVAE(wan.vae_config_from_diffusers(dict(ref.config))).eval()
    vae.load_state_dict(vae_from_diffusers(vae, ref.state_dict()), strict=False)
    largest = {}
    for t_z, chunked in ((3, True), (9, True), (3, False), (9, False)):
        with torch.no_grad(), LargestAllocation() as probe:
            vae.decode(torch.randn(1, 4, t_z, 2, 2), chunked=chunked)
        largest[t_z, chunked] = probe.numel
    assert largest[3, True] == largest[9, True]
    assert largest[9, False] > 2 * largest[3, False] > 2 * largest[9, True]


# --- SkyReels-V2 diffusion forcing --------------------------------------------------------------------


def tiny_skyreels(seed: int = 0, channels: int = 4, fps: bool = True, block: int = 1):
    """A tiny random `SkyReelsV2Transformer3DModel`: with `fps` its frame-rate embedding, with `block` > 1
    block-causal attention over that many latent frames."""
    torch.manual_seed(seed)
    ref = diffusers.SkyReelsV2Transformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=channels,
        out_channels=channels, text_dim=16, freq_dim=16, ffn_dim=32, num_layers=2, rope_max_seq_len=64,
        inject_sample_info=fps, num_frame_per_block=block,
    )  # fmt: skip
    return _nudge(ref, seed)


@pytest.fixture(scope="module")
def sky_pipe() -> "diffusers.SkyReelsV2DiffusionForcingPipeline":
    """A tiny random SkyReels-V2 diffusion-forcing pipeline with the fps embedding."""
    return tiny_pipeline(diffusers.SkyReelsV2DiffusionForcingPipeline, tiny_skyreels(channels=16))


@pytest.fixture(scope="module")
def sky_folder(sky_pipe, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return saved(sky_pipe, tmp_path_factory, "skyreels")


@pytest.mark.parametrize(("fps", "block"), [(False, 1), (True, 1), (True, 2)])
def test_skyreels_dit_matches_diffusers_with_a_time_per_frame(fps: bool, block: int) -> None:
    """tessera's DiT with the SkyReels options equals SkyReelsV2Transformer3DModel on its diffusion-forcing
    path (`enable_diffusion_forcing`: a time per latent frame), with times that differ frame to frame and
    given frames at t = 0; with the fps embedding told 24 fps (its second row) or 16 (its first), and
    with block-causal attention. Each option changes the output (it is not silently ignored)."""
    ref = tiny_skyreels(fps=fps, block=block)
    cfg = wan.dit_config_from_diffusers(dict(ref.config), diffusion_forcing=True)
    assert (cfg.fps_embed, cfg.causal_block, cfg.diffusion_forcing) == (24 if fps else None, block, True)
    g = torch.Generator().manual_seed(1)
    x, text = torch.randn(2, 4, 4, 4, 6, generator=g), torch.randn(2, 7, 16, generator=g)
    t = torch.tensor([[0.0, 0.0, 0.6, 0.9], [0.0, 0.3, 0.3, 1.0]])
    mask = torch.ones(2, 7, dtype=torch.bool)
    for rate, row in ((24, 1), (16, 0)) if fps else ((None, None),):
        dit = DiT(dataclasses.replace(cfg, fps_embed=rate)).eval()
        dit.load_state_dict(wan.dit_from_diffusers(ref.state_dict(), dit.cfg))
        with torch.no_grad():
            got = dit(x, t, text, mask)
            for b in range(2):  # one sample a call: diffusers' fps injection takes no batch of clips
                args = (x[b : b + 1], t[b : b + 1] * 1000, text[b : b + 1])
                want = ref(*args, enable_diffusion_forcing=True, fps=[row], return_dict=False)[0]
                torch.testing.assert_close(got[b : b + 1], want, rtol=1e-5, atol=1e-5)
    if fps or block > 1:  # without the option the same weights give another output
        plain = DiT(dataclasses.replace(cfg, fps_embed=None, causal_block=1)).eval()
        plain.load_state_dict(wan.dit_from_diffusers(ref.state_dict(), cfg), strict=False)
        with torch.no_grad():
            assert (plain(x, t, text, mask) - got).abs().max() > 1e-3


def _grid_euler(steps: int, shift: float) -> "diffusers.FlowMatchEulerDiscreteScheduler":
    """diffusers' Euler scheduler on tessera's time grid (uniform in unshifted time, ending at 0; the
    scheduler applies the shift), accepting the whole-number times SkyReels' DF pipelines step with (they
    cast each step's time to an integer on the 0-1000 scale)."""

    class GridEuler(diffusers.FlowMatchEulerDiscreteScheduler):
        def set_timesteps(self, num_inference_steps=None, device=None, **kw):
            return super().set_timesteps(sigmas=torch.linspace(1, 0, steps + 1)[:-1].tolist(), device=device)

        def step(self, model_output, timestep, sample, **kw):
            return super().step(model_output, torch.as_tensor(timestep).float(), sample, **kw)

    return GridEuler(shift=shift)


def test_skyreels_df_folder_samples_like_its_pipelines(sky_pipe, sky_folder: Path, monkeypatch) -> None:
    """The DF folder loads with its options, and sampling reaches the latents of SkyReels' DF pipelines
    (4 Euler steps, guidance 4 with a negative prompt, fps embedding at 24): text-to-video against
    `SkyReelsV2DiffusionForcingPipeline`, and `extend` against its video-to-video pipeline (the source's
    last 5 frames encoded as their own clip, held clean at t = 0, the rest sampled)."""
    from diffusers.pipelines.skyreels_v2 import pipeline_skyreels_v2_diffusion_forcing as df
    from diffusers.pipelines.skyreels_v2 import pipeline_skyreels_v2_diffusion_forcing_v2v as v2v
    from PIL import Image

    from tessera.flow.schedules import timesteps

    no_ftfy = type("NoFtfy", (), {"fix_text": staticmethod(str)})
    for module in (df, v2v):  # they call ftfy whether or not it is installed; tessera does not use it
        monkeypatch.setattr(module, "ftfy", no_ftfy, raising=False)
    model = wan.load(sky_folder, "cpu", text_len=TEXT_LEN)
    d = model.config.dit
    assert (d.diffusion_forcing, d.per_frame_time, d.fps_embed, d.causal_block) == (True, True, 24, 1)
    steps, prompt, negative = 4, "a red cube rolls on the floor", "blurry low quality"
    parts = {**sky_pipe.components, "scheduler": _grid_euler(steps, 3.0)}
    t2v = diffusers.SkyReelsV2DiffusionForcingPipeline(**parts)
    t2v.scheduler.set_timesteps(steps)
    ts = t2v.scheduler.timesteps
    assert torch.equal(ts, ts.round()) and torch.allclose(ts.double(), 1000 * timesteps(steps, 3.0)[:-1])
    s = dict(guidance_scale=4.0, num_inference_steps=steps, output_type="latent", height=32, width=48)
    s |= dict(prompt=prompt, negative_prompt=negative, max_sequence_length=TEXT_LEN)
    mine = dict(steps=steps, guidance=4.0, seed=7, negative_prompt=negative)

    z = pipeline.sample_latents(model, prompt, (3, 4, 6), **mine)
    want = t2v(num_frames=9, generator=torch.Generator("cpu").manual_seed(7), **s).frames
    torch.testing.assert_close(z, want, rtol=1e-4, atol=1e-4)

    video = pipeline.decode(model, z)
    _, z = pipeline.extend(model, video, prompt, 13, overlap=5, blend=False, return_latents=True, **mine)
    want = diffusers.SkyReelsV2DiffusionForcingVideoToVideoPipeline(**parts)(
        video=[Image.fromarray(f.numpy()) for f in video], num_frames=13, base_num_frames=13,
        overlap_history=5, generator=torch.Generator("cpu").manual_seed(7), **s,
    ).frames  # fmt: skip
    torch.testing.assert_close(z, want, rtol=1e-4, atol=1e-4)


def test_skyreels_async_schedule_is_diffusers_timestep_matrix() -> None:
    """`forcing_times` is diffusers' `generate_timestep_matrix` in tessera's time, for steps, blocks, block
    sizes, ar_step (including 0 and more than the steps) and given leading blocks: row i is what the DiT
    sees at iteration i + 1, and a frame moves where diffusers' update mask says. diffusers shows frames not
    yet started at 999 on its 0-1000 scale, tessera at t = 1 (1000)."""
    from tessera.flow.schedules import forcing_times

    matrix = diffusers.SkyReelsV2DiffusionForcingPipeline.generate_timestep_matrix
    grid = torch.tensor([1000, 900, 750, 500, 300, 100])
    for steps, blocks, block, ar_step, given in itertools.product(
        (1, 4, 6), (1, 2, 3, 5), (1, 2, 3), (0, 1, 2, 5, 7), (0, 1, 2)
    ):
        if given >= blocks:
            continue
        frames, template = blocks * block, grid[:steps]
        want, _, moves, _ = matrix(None, frames, template, frames, ar_step, given * block, block)
        ts = torch.cat([template.double() / 1000, torch.zeros(1, dtype=torch.float64)])
        held = torch.arange(frames) < given * block
        got = forcing_times(ts, frames, ar_step, block, held if given else None)
        assert torch.equal(got[:-1] * 1000, want.double().masked_fill(want == 999, 1000))
        assert torch.equal(got[1:] != got[:-1], moves)
        if not given:
            assert len(want) == steps + (blocks - 1) * min(ar_step, steps)


def test_skyreels_async_sampling_matches_diffusion_forcing_pipeline(
    sky_pipe, sky_folder: Path, monkeypatch
) -> None:
    """SkyReels' asynchronous mode: 4 Euler steps, ar_step 2 over causal blocks of 2 latent frames (3 blocks,
    8 iterations, at most three times at once), guidance 4 with a negative prompt, the same noise: tessera
    reaches `SkyReelsV2DiffusionForcingPipeline`'s latents. Both make attention block-causal over those
    blocks for the run (diffusers on its transformer's config, tessera for the call only)."""
    from diffusers.pipelines.skyreels_v2 import pipeline_skyreels_v2_diffusion_forcing as df

    monkeypatch.setattr(df, "ftfy", type("NoFtfy", (), {"fix_text": staticmethod(str)}), raising=False)
    model = wan.load(sky_folder, "cpu", text_len=TEXT_LEN)
    steps, ar_step, block, prompt, negative = 4, 2, 2, "a red cube rolls on the floor", "blurry low quality"
    parts = {**sky_pipe.components, "scheduler": _grid_euler(steps, 3.0)}
    parts["transformer"] = copy.deepcopy(sky_pipe.transformer)  # diffusers keeps the causal block it is given
    want = diffusers.SkyReelsV2DiffusionForcingPipeline(**parts)(
        prompt=prompt, negative_prompt=negative, num_frames=21, height=32, width=48, guidance_scale=4.0,
        num_inference_steps=steps, ar_step=ar_step, causal_block_size=block, output_type="latent",
        max_sequence_length=TEXT_LEN, generator=torch.Generator("cpu").manual_seed(7),
    ).frames  # fmt: skip
    seen = _record_times(model)
    mine = dict(steps=steps, guidance=4.0, seed=7, negative_prompt=negative)
    z = pipeline.sample_latents(model, prompt, (6, 4, 6), ar_step=ar_step, causal_block=block, **mine)
    print(f"max |tessera - diffusers| = {(z - want).abs().max():.2e}")
    torch.testing.assert_close(z, want, rtol=1e-4, atol=1e-4)
    assert len(seen) == steps + 2 * ar_step and max(len(set(t[0, ::block].tolist())) for t in seen) == 3
    assert model.dit.cfg.causal_block == 1  # the call's causal block is not kept
    for other in (dict(), dict(causal_block=block), dict(ar_step=ar_step)):  # each part of the mode matters
        assert (pipeline.sample_latents(model, prompt, (6, 4, 6), **other, **mine) - z).abs().max() > 1e-3


def test_skyreels_condition_noise_is_addnoise_condition(
    sky_pipe, sky_folder: Path, wan_folder: Path, monkeypatch
) -> None:
    """`condition_noise` c shows the given frames to the DiT at time c, noised afresh at every step:
    `extend` with c = 0.02 reaches the latents of SkyReels' DF video-to-video pipeline with
    `addnoise_condition=20` (whose fresh noise is drawn, for the test, from the generator tessera draws
    it from: the seed's, after the initial noise). The given frames still end exact, the same seed gives
    the same bytes and c changes the result; a model not trained for diffusion forcing refuses it, and a
    time outside [0, 1) is refused, each in one line before any work."""
    from diffusers.pipelines.skyreels_v2 import pipeline_skyreels_v2_diffusion_forcing_v2v as v2v
    from PIL import Image

    monkeypatch.setattr(v2v, "ftfy", type("NoFtfy", (), {"fix_text": staticmethod(str)}), raising=False)
    model = wan.load(sky_folder, "cpu", text_len=TEXT_LEN)
    steps, prompt, negative = 4, "a red cube rolls on the floor", "blurry low quality"
    mine = dict(steps=steps, guidance=4.0, seed=7, negative_prompt=negative)
    video = pipeline.generate(model, prompt, frames=9, height=32, width=48, **mine)
    runs = [
        pipeline.extend(model, video, prompt, 13, overlap=5, blend=False, return_latents=True, **mine, **o)[1]
        for o in ({"condition_noise": 0.02}, {"condition_noise": 0.02}, {})
    ]
    assert torch.equal(runs[0], runs[1])  # the noise comes from the seed
    assert torch.equal(runs[0][:, :, :2], runs[2][:, :, :2])  # the given latent frames end exact
    assert (runs[0] - runs[2]).abs().max() > 1e-3

    drawn = torch.Generator().manual_seed(7)
    torch.randn(1, 16, 4, 4, 6, generator=drawn)  # tessera's initial noise comes first
    parts = {**sky_pipe.components, "scheduler": _grid_euler(steps, 3.0)}
    s = dict(guidance_scale=4.0, num_inference_steps=steps, output_type="latent", height=32, width=48)
    s |= dict(prompt=prompt, negative_prompt=negative, max_sequence_length=TEXT_LEN)
    with monkeypatch.context() as m:
        m.setattr(torch, "randn_like", lambda x, **kw: torch.randn(x.shape, generator=drawn).to(x))
        want = diffusers.SkyReelsV2DiffusionForcingVideoToVideoPipeline(**parts)(
            video=[Image.fromarray(f.numpy()) for f in video], num_frames=13, base_num_frames=13,
            overlap_history=5, addnoise_condition=20, generator=torch.Generator("cpu").manual_seed(7), **s,
        ).frames  # fmt: skip
    torch.testing.assert_close(runs[0], want, rtol=1e-4, atol=1e-4)

    wan_model = wan.load(wan_folder, "cpu", text_len=TEXT_LEN)
    seen = _record_times(wan_model)
    with pytest.raises(pipeline.RequestError, match="^--condition-noise 0.02 needs a SkyReels-V2") as e:
        pipeline.extend(wan_model, video, prompt, 13, overlap=5, condition_noise=0.02, **mine)
    assert "Wan 2.1 text-to-video" in str(e.value) and "\n" not in str(e.value) and not seen
    for bad in (1.0, -0.1):
        with pytest.raises(pipeline.RequestError, match=r"^--condition-noise must be a time in \[0, 1\)"):
            pipeline.check_sampling(condition_noise=bad)


def test_skyreels_ar_step_0_is_the_synchronous_path_and_other_models_refuse_it(
    sky_folder: Path, wan_folder: Path, tmp_path: Path
) -> None:
    """ar_step 0 samples the same bytes as leaving it out, by Euler and by Heun, with and without given
    frames, and its time matrix (one time a row) steps the DiT to the same bytes as the one-time grid;
    ar_step or a causal block on a model not trained for diffusion forcing (Wan 2.1, Wan 2.2 TI2V-5B,
    tessera's own) is refused in one line before any work, from Python and from the command line."""
    from typer.testing import CliRunner

    from tessera.cli import app
    from tessera.config import PRESETS, DiTConfig, ModelConfig
    from tessera.flow.samplers import SAMPLERS, guided
    from tessera.flow.schedules import forcing_times, timesteps
    from tessera.sampling import dit_function, encode_text

    model = wan.load(sky_folder, "cpu", text_len=TEXT_LEN)
    s = dict(steps=3, guidance=2.0, seed=3)
    text, mask = encode_text(model, ["a red cube", ""], torch.device("cpu"))
    v_fn = guided(dit_function(model, text, mask, None), 2.0)
    noise, ts = torch.randn(1, 16, 3, 4, 4, generator=torch.Generator().manual_seed(3)), timesteps(3, 3.0)
    for sampler in ("euler", "heun"):
        a, b = (pipeline.sample_latents(model, "a red cube", (3, 4, 4), sampler=sampler, **s, **o)
                for o in ({}, {"ar_step": 0}))  # fmt: skip
        assert torch.equal(a, b), sampler
        a, b = (SAMPLERS[sampler](v_fn, noise, grid) for grid in (ts, forcing_times(ts, 3, 0, 2)))
        assert torch.equal(a, b), sampler
    video = pipeline.generate(model, "a red cube", frames=9, height=32, width=32, **s)
    a, b = (pipeline.extend(model, video, "on", 13, overlap=5, blend=False, **s, **o)
            for o in ({}, {"ar_step": 0}))  # fmt: skip
    assert torch.equal(a, b)

    wan_model = wan.load(wan_folder, "cpu", text_len=TEXT_LEN)
    seen = _record_times(wan_model)
    for kw, flag in ((dict(ar_step=2), "--ar-step 2"), (dict(causal_block=2), "--causal-block 2")):
        with pytest.raises(pipeline.RequestError, match=f"^{flag} needs a SkyReels-V2") as e:
            pipeline.sample_latents(wan_model, "a red cube", (3, 4, 4), **s, **kw)
        assert "Wan 2.1 text-to-video" in str(e.value) and "\n" not in str(e.value)
        with pytest.raises(pipeline.RequestError, match=flag):
            pipeline.animate(wan_model, video[0], "rolls", 9, **s, **kw)
    assert not seen  # refused before the DiT ran
    ti2v = ModelConfig(vae=WanVAEConfig(residual=True, patch=2), dit=DiTConfig(diffusion_forcing=True))
    for config, what in ((ti2v, "Wan 2.2 TI2V-5B"), (PRESETS["tiny"], "one of tessera's own models")):
        with pytest.raises(pipeline.RequestError, match=what):
            pipeline.check_forcing(config, ar_step=1)
    pipeline.check_forcing(model.config, ar_step=5, causal_block=5)
    out = tmp_path / "o.mp4"
    flags = ["--model", str(wan_folder), "--size", "32x32", "--device", "cpu", "-o", str(out)]
    for value, words in (
        ("2", "--ar-step 2 needs a SkyReels-V2"),
        ("-1", "--ar-step must be a whole number >= 0"),
    ):
        r = CliRunner().invoke(app, ["generate", "x", "--ar-step", value, *flags])
        assert isinstance(r.exception, pipeline.RequestError) and words in str(r.exception), r.output
    assert not out.exists()


def _record_times(model) -> list[torch.Tensor]:
    """Every time tensor (B, T_z) the model's DiT is called with, from now on."""
    seen, forward = [], model.dit.forward

    def spy(x, t, *args, **kwargs):
        seen.append(t.clone())
        return forward(x, t, *args, **kwargs)

    model.dit.forward = spy
    return seen


def test_df_capabilities_hold_given_frames_clean_at_t0(sky_folder: Path, wan_folder: Path) -> None:
    """On a DF model every conditioned capability calls the DiT with t = 0 on the held latent frames and
    the step's t elsewhere, and those frames come back exactly; a Wan text-to-video model gets one t for
    every frame of a call (its given frames held at that noise level instead)."""
    model = wan.load(sky_folder, "cpu", text_len=TEXT_LEN)
    s = dict(steps=2, guidance=2.0, seed=0)
    video = pipeline.generate(model, "a red cube", frames=9, height=32, width=32, **s)
    first, last5 = pipeline.encode(model, video)[:, :, :1], pipeline.encode(model, video[-5:])[:, :, :2]
    runs = {  # each run, the latent frames it holds, and what they must come back as
        "animate": (partial(pipeline.animate, model, video[0], "rolls", 9), [0], first),
        "extend": (partial(pipeline.extend, model, video, "on", 9, overlap=5, blend=False), [0, 1], last5),
        "connect": (partial(pipeline.connect, model, video, video.flip(0), "back", 17), [0, 1, 4], last5),
        "loop": (partial(pipeline.loop, model, "spins", 9, video, 32, 32), [0], first),
    }
    for name, (run, held, given) in runs.items():
        seen = _record_times(model)
        _, z = run(return_latents=True, **s)
        for t in seen:
            free = [j for j in range(t.shape[1]) if j not in held]
            assert (t[:, held] == 0).all() and (t[:, free] > 0).all(), (name, t)
        torch.testing.assert_close(z[:, :, : given.shape[2]], given, msg=name)
    seen = _record_times(model)
    pipeline.long(model, "rolls", frames=13, window=9, overlap=5, height=32, width=32, **s)
    assert any((t[:, :2] == 0).all() and (t[:, 2:] > 0).all() for t in seen)
    wan_model = wan.load(wan_folder, "cpu", text_len=TEXT_LEN)
    seen = _record_times(wan_model)
    pipeline.animate(wan_model, video[0], "rolls", frames=9, **s)
    assert seen and all((t == t[0, 0]).all() and t[0, 0] > 0 for t in seen)


def test_skyreels_folders_in_info_import_and_refusals(sky_folder: Path, tmp_path: Path) -> None:
    """`tessera info` names a SkyReels-V2 DF folder and its options; `tessera model import` keeps them
    (the same latents); a tessera folder written without the newer options loads with them off; a
    SkyReels-V2 text-to-video folder loads with one time per clip; a SkyReels image-to-video pipeline,
    an unknown transformer and a bad num_frame_per_block are refused in one line each."""
    from typer.testing import CliRunner

    from tessera.cli import app

    r = CliRunner().invoke(app, ["info", str(sky_folder)])
    assert r.exit_code == 0, r.output
    for words in ("SkyReels-V2 checkpoint (diffusers layout)", "Diffusion forcing", "told 24 fps"):
        assert words in r.output
    out = tmp_path / "imported"
    r = CliRunner().invoke(app, ["model", "import", str(sky_folder), "--out", str(out), "--dtype", "fp32"])
    assert r.exit_code == 0, r.output
    a, b = wan.load(sky_folder, "cpu", text_len=TEXT_LEN), wan.load(out, "cpu", text_len=TEXT_LEN)
    assert a.config == b.config and "SkyReels-V2 diffusion forcing" in pipeline.describe(out)
    s = dict(steps=2, guidance=3.0, seed=1)
    assert torch.equal(*(pipeline.sample_latents(m, "a red cube", (2, 4, 4), **s) for m in (a, b)))
    config = json.loads((out / "config.json").read_text())
    for key in ("diffusion_forcing", "causal_block"):  # as written before these options existed
        del config["dit"][key]
    (out / "config.json").write_text(json.dumps(config))
    d = wan.load(out, "cpu").config.dit
    assert (d.diffusion_forcing, d.fps_embed, d.causal_block) == (False, 24, 1)
    plain = tmp_path / "t2v"  # SkyReels-V2's text-to-video pipeline: one time per clip, as Wan's
    shutil.copytree(sky_folder, plain)
    index = json.loads((plain / "model_index.json").read_text())
    (plain / "model_index.json").write_text(json.dumps({**index, "_class_name": "SkyReelsV2Pipeline"}))
    d = wan.load(plain, "cpu").config.dit
    assert (d.diffusion_forcing, d.per_frame_time, d.fps_embed) == (False, False, 24)

    for file, key, value, pattern in [
        ("model_index.json", "_class_name", "SkyReelsV2ImageToVideoPipeline", "a SkyReelsV2ImageToVideo"),
        ("transformer/config.json", "_class_name", "CogVideoXTransformer3DModel", "must be one of Wan"),
        ("transformer/config.json", "num_frame_per_block", 0, "num_frame_per_block must be a whole number"),
    ]:
        broken = tmp_path / f"{key}-{value}"
        shutil.copytree(sky_folder, broken)
        raw = json.loads((broken / file).read_text())
        (broken / file).write_text(json.dumps({**raw, key: value}))
        with pytest.raises(CheckpointError, match=pattern) as e:
            wan.load(broken, "cpu")
        assert "\n" not in str(e.value)


# --- Wan 2.2 TI2V-5B ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ti2v_pipe() -> "diffusers.WanPipeline":
    """A tiny random Wan 2.2 TI2V pipeline: Wan's DiT at 48 latent channels on Wan 2.2's VAE, per-token
    times (`expand_timesteps`), as `Wan-AI/Wan2.2-TI2V-5B-Diffusers` is laid out."""
    dit = tiny_transformer(channels=48)
    return tiny_pipeline(diffusers.WanPipeline, dit, tiny_vae22(), shift=5.0, expand_timesteps=True)


@pytest.fixture(scope="module")
def ti2v_folder(ti2v_pipe, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return saved(ti2v_pipe, tmp_path_factory, "ti2v")


def test_ti2v_samples_like_wan_pipeline_text_and_image_to_video(
    ti2v_pipe, ti2v_folder: Path, monkeypatch
) -> None:
    """The TI2V folder loads (Wan 2.2's VAE, a time per latent frame), and with the same noise, 4 Euler
    steps and guidance 4 with a negative prompt: text-to-video reaches the latents of diffusers'
    `WanPipeline(expand_timesteps=True)`, and `animate` those of `WanImageToVideoPipeline(expand_timesteps=
    True)`, which encodes the image alone, holds its latent clean at t = 0 for every token of the first
    latent frame and puts it back at the end."""
    from diffusers.pipelines.wan import pipeline_wan_i2v
    from PIL import Image

    no_ftfy = type("NoFtfy", (), {"fix_text": staticmethod(str)})  # called whether or not it is installed
    monkeypatch.setattr(pipeline_wan_i2v, "ftfy", no_ftfy, raising=False)
    model = wan.load(ti2v_folder, "cpu", text_len=TEXT_LEN)
    c = model.config
    assert (c.preset, c.flow_shift, c.vae.space_factor, c.dit.in_channels, c.dit.per_frame_time) == (
        "wan2.2-ti2v", 5.0, 16, 48, True
    )  # fmt: skip
    steps, prompt, negative = 4, "a red cube rolls on the floor", "blurry low quality"
    _flow_scheduler(ti2v_pipe, steps)
    s = dict(guidance_scale=4.0, num_inference_steps=steps, output_type="latent", height=64, width=96)
    s |= dict(prompt=prompt, negative_prompt=negative, max_sequence_length=TEXT_LEN, num_frames=9)
    mine = dict(steps=steps, guidance=4.0, seed=7, negative_prompt=negative)
    noise = torch.randn(1, 48, 3, 4, 6, generator=torch.Generator("cpu").manual_seed(7))

    z = pipeline.sample_latents(model, prompt, (3, 4, 6), **mine)  # 9 frames at 64x96
    t2v = ti2v_pipe(latents=noise.clone(), **s).frames
    torch.testing.assert_close(z, t2v, rtol=1e-4, atol=1e-4)

    image = torch.randint(0, 256, (64, 96, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    seen = _record_times(model)
    _, z = pipeline.animate(model, image, prompt, frames=9, return_latents=True, **mine)
    assert all((t[:, 0] == 0).all() and (t[:, 1:] > 0).all() for t in seen)
    i2v = diffusers.WanImageToVideoPipeline(
        **{
            k: getattr(ti2v_pipe, k) for k in ("tokenizer", "text_encoder", "vae", "scheduler", "transformer")
        },
        expand_timesteps=True,
    )
    want = i2v(image=Image.fromarray(image.numpy()), latents=noise.clone(), **s).frames
    torch.testing.assert_close(z, want, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(z[:, :, :1], pipeline.encode(model, image[None]), rtol=0, atol=0)
    assert (want - t2v)[:, :, 1:].abs().max() > 0.1  # the image steers the frames after it


def test_ti2v_folder_in_info_sizes_import_and_refusals(ti2v_folder: Path, tmp_path: Path) -> None:
    """`tessera info` names a TI2V folder and its size rule; sizes that are not multiples of 32 are
    refused in one line naming what is allowed; `tessera model import` keeps Wan 2.2's VAE options (the
    same latents); Wan 2.2's original release files are refused by name."""
    from typer.testing import CliRunner

    from tessera.cli import app

    r = CliRunner().invoke(app, ["info", str(ti2v_folder)])
    assert r.exit_code == 0, r.output
    for words in ("Wan 2.2 TI2V-5B checkpoint (diffusers layout)", "multiples of 32", "held clean at t = 0"):
        assert words in r.output
    model = wan.load(ti2v_folder, "cpu", text_len=TEXT_LEN)
    s = dict(steps=1, guidance=1.0, seed=0)
    for call, pattern in [
        (lambda: pipeline.generate(model, "x", frames=5, height=48, width=64, **s), "--height must be a"),
        (lambda: pipeline.image(model, "x", height=64, width=80, **s), "--width must be a"),
        (
            lambda: pipeline.animate(model, torch.zeros(48, 64, 3, dtype=torch.uint8), "x", 5, **s),
            "the image",
        ),
    ]:
        with pytest.raises(pipeline.RequestError, match=pattern) as e:
            call()
        assert (
            "multiple" in str(e.value) and "of 32" in str(e.value) and "16x VAE x 2x2 patches" in str(e.value)
        )
        assert "\n" not in str(e.value)
    assert pipeline.generate(model, "x", frames=5, height=32, width=64, **s).shape == (5, 32, 64, 3)

    out = tmp_path / "imported"
    r = CliRunner().invoke(app, ["model", "import", str(ti2v_folder), "--out", str(out), "--dtype", "fp32"])
    assert r.exit_code == 0, r.output
    b = wan.load(out, "cpu", text_len=TEXT_LEN)
    assert b.config == model.config and "Wan 2.2 TI2V-5B" in pipeline.describe(out)
    z = pipeline.sample_latents(model, "a red cube", (2, 2, 2), steps=2, guidance=3.0, seed=1)
    assert torch.equal(z, pipeline.sample_latents(b, "a red cube", (2, 2, 2), steps=2, guidance=3.0, seed=1))

    original = tmp_path / "original"
    original.mkdir()
    for name in ("Wan2.2_VAE.pth", "models_t5_umt5-xxl-enc-bf16.pth"):
        (original / name).write_bytes(b"")
    with pytest.raises(CheckpointError, match="Wan 2.2's original release files .* are not supported"):
        wan.load(original, "cpu")


def test_ti2v_5b_config_maps_with_the_real_parameter_count() -> None:
    """Wan2.2-TI2V-5B's transformer and VAE configs (its diffusers folder's: a 30-block DiT of width 3072
    at 48 channels; the VAE at base width 160, decoder 256) map onto tessera's DiT and WanVAE with exactly
    diffusers' parameter counts (meta tensors: no weights): 5.00B and 0.70B."""
    dit_cfg = {
        "_class_name": "WanTransformer3DModel", "added_kv_proj_dim": None, "attention_head_dim": 128,
        "cross_attn_norm": True, "eps": 1e-06, "ffn_dim": 14336, "freq_dim": 256, "image_dim": None,
        "in_channels": 48, "num_attention_heads": 24, "num_layers": 30, "out_channels": 48,
        "patch_size": [1, 2, 2], "pos_embed_seq_len": None, "qk_norm": "rms_norm_across_heads",
        "rope_max_seq_len": 1024, "text_dim": 4096,
    }  # fmt: skip
    vae_cfg = {
        "_class_name": "AutoencoderKLWan", "attn_scales": [], "base_dim": 160, "decoder_base_dim": 256,
        "dim_mult": [1, 2, 4, 4], "dropout": 0.0, "in_channels": 12, "is_residual": True,
        "num_res_blocks": 2, "out_channels": 12, "patch_size": 2, "scale_factor_spatial": 16,
        "scale_factor_temporal": 4, "temperal_downsample": [False, True, True], "z_dim": 48,
    }  # fmt: skip
    d = wan.dit_config_from_diffusers(dit_cfg)
    v = wan.vae_config_from_diffusers(vae_cfg)
    assert (d.dim, d.depth, d.heads, d.in_channels, v.z_channels, v.space_factor) == (
        3072,
        30,
        24,
        48,
        48,
        16,
    )

    def count(kind, *args, **kw) -> int:
        with torch.device("meta"):
            return sum(p.numel() for p in kind(*args, **kw).parameters())

    mine = count(DiT, d)
    assert mine == count(diffusers.WanTransformer3DModel, **{k: x for k, x in dit_cfg.items() if k[0] != "_"})
    assert round(mine / 1e7) == 500, mine
    vae = count(WanVAE, v)
    assert vae == count(diffusers.AutoencoderKLWan, **{k: x for k, x in vae_cfg.items() if k[0] != "_"})
    assert round(vae / 1e7) == 70, vae
