"""The T5 and LLM families (Flux.1, SD 3, Chroma, Lumina 2, Z-Image, Flux.2 Klein, Anima, Qwen-Image) on tiny
models of the real architectures.

transformers ``T5EncoderModel`` / ``Gemma2Model`` / ``Qwen3Model`` / ``Qwen2_5_VLTextModel`` and ``CLIPTextModel`` with
random weights; tokenizers trained in memory (tests/tiny_encoders.py says how). Loading from ComfyUI's files and diffusers folders, what the host feeds
the diffusion model, training, the file in ComfyUI's key layout, loading it back and both blend modes.
"""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import tiny_encoders
import tiny_models
from safetext_core import AlignConfig, CheckpointError, SafeTextFile, apply_deltas, load_encoders, run_alignment
from safetext_core.weights import shifted_view
from safetext_core.encoding import consumed_outputs, tokenize
from safetext_core.errors import TokenizerUnavailable
from safetext_core.families import LUMINA2_SYSTEM_PROMPT, get_family
from safetext_core.fingerprint import fingerprints_match
from safetext_core.losses import content_mask
from safetext_core.weights import blend_outputs


@pytest.fixture(scope="module")
def t5_tok():
    return tiny_encoders.t5_tokenizer()


@pytest.fixture(scope="module")
def gemma_tok():
    return tiny_encoders.gemma_tokenizer()


@pytest.fixture(scope="module")
def t5_tok_dir(tmp_path_factory, t5_tok):
    return tiny_encoders.save_tokenizer(t5_tok, tmp_path_factory.mktemp("t5tok"))


@pytest.fixture(scope="module")
def gemma_tok_dir(tmp_path_factory, gemma_tok):
    return tiny_encoders.save_tokenizer(gemma_tok, tmp_path_factory.mktemp("gemmatok"))


@pytest.fixture(scope="module")
def qwen_tok():
    return tiny_encoders.qwen_tokenizer()


@pytest.fixture(scope="module")
def qwen_tok_dir(tmp_path_factory, qwen_tok):
    return tiny_encoders.save_tokenizer(qwen_tok, tmp_path_factory.mktemp("qwentok"))


def _write(path: Path, tensors: dict[str, torch.Tensor]) -> Path:
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
    return path


def _same(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> bool:
    own = model.state_dict()
    return all(torch.equal(own[k], v.float()) for k, v in state.items() if k in own)


# ----------------------------------------------------------------------------------- loading

def test_flux_and_sd3_single_files_read_only_their_text_encoders(tmp_path, t5_tok_dir, recording):
    clip_l, clip_g = tiny_models.random_clip_state(), tiny_models.random_clip_state(64, 3, "gelu", True, seed=1)
    t5 = tiny_encoders.t5_state()
    unet = {"model.diffusion_model.double_blocks.0.img_attn.qkv.weight": torch.randn(96, 32),
            "vae.decoder.conv_in.weight": torch.randn(8, 4, 3, 3)}
    flux = {**unet, **{f"text_encoders.clip_l.transformer.{k}": v for k, v in clip_l.items()},
            **{f"text_encoders.t5xxl.transformer.{k}": v for k, v in t5.items()}}
    encoders = load_encoders(_write(tmp_path / "flux1.safetensors", flux), tokenizer_dir=t5_tok_dir)
    assert encoders.family == "flux" and set(encoders.models) == {"clip_l", "t5xxl"}
    assert _same(encoders.models["t5xxl"], t5) and _same(encoders.models["clip_l"], clip_l)
    assert recording and all(k.startswith("text_encoders.") for k in recording)  # the rest is never read

    sd3 = {"model.diffusion_model.joint_blocks.0.x_block.attn.qkv.weight": torch.randn(96, 32),
           **{f"text_encoders.clip_l.transformer.{k}": v for k, v in clip_l.items()},
           **{f"text_encoders.clip_g.transformer.{k}": v for k, v in clip_g.items()},
           **{f"text_encoders.t5xxl.transformer.{k}": v.half() for k, v in t5.items()}}
    encoders = load_encoders(_write(tmp_path / "sd35.safetensors", sd3), tokenizer_dir=t5_tok_dir)
    assert encoders.family == "sd3" and set(encoders.models) == {"clip_l", "clip_g", "t5xxl"}
    assert _same(encoders.models["t5xxl"], {k: v.half() for k, v in t5.items()})  # fp16 file, fp32 copy
    # SD 3's CLIP-L pooled vector is the bare EOS state: its projection is not needed, bigG's is kept.
    assert not hasattr(encoders.models["clip_l"], "text_projection") and hasattr(encoders.models["clip_g"],
                                                                                "text_projection")


def test_comfyui_separate_text_encoder_files(tmp_path, t5_tok_dir, gemma_tok_dir):
    clip_l = tiny_models.random_clip_state()
    t5 = _write(tmp_path / "t5xxl_fp16.safetensors", {k: v.half() for k, v in tiny_encoders.t5_state().items()})
    clip = _write(tmp_path / "clip_l.safetensors", clip_l)
    gemma_state = tiny_encoders.gemma2_state()
    gemma = _write(tmp_path / "gemma_2_2b.safetensors",
                   {**gemma_state, "spiece_model": torch.zeros(16, dtype=torch.uint8)})  # ComfyUI keeps it there

    assert load_encoders([clip, t5], tokenizer_dir=t5_tok_dir).family == "flux"  # DualCLIPLoader type flux
    assert load_encoders(t5, tokenizer_dir=t5_tok_dir).family == "chroma"
    lumina = load_encoders(gemma, tokenizer_dir=gemma_tok_dir)
    assert lumina.family == "lumina2" and _same(lumina.models["gemma2_2b"], gemma_state)
    assert next(iter(dict(lumina.models["gemma2_2b"].named_parameters()))).startswith("model.")  # ComfyUI's names
    with pytest.raises(TokenizerUnavailable, match="t5xxl"):
        load_encoders(t5)  # a T5 file carries no tokenizer: say what is needed
    with pytest.raises(CheckpointError, match="two of the files"):
        load_encoders([t5, t5], tokenizer_dir=t5_tok_dir)
    incomplete = _write(tmp_path / "broken_t5.safetensors",
                        {k: v for k, v in tiny_encoders.t5_state().items() if "block.1." not in k or "wo" not in k})
    with pytest.raises(CheckpointError, match="incomplete"):
        load_encoders(incomplete, tokenizer_dir=t5_tok_dir)
    scaled = _write(tmp_path / "t5_scaled.safetensors", {**tiny_encoders.t5_state(), "scaled_fp8": torch.zeros(0)})
    with pytest.raises(CheckpointError, match="scaled fp8"):
        load_encoders(scaled, tokenizer_dir=t5_tok_dir)


def _diffusers_folder(root: Path, cls: str, parts: dict[str, tuple[dict[str, torch.Tensor], object]]) -> Path:
    root.mkdir()
    (root / "model_index.json").write_text(json.dumps({"_class_name": cls}))
    for sub, (state, tokenizer) in parts.items():
        (root / sub).mkdir()
        _write(root / sub / "model.safetensors", state)
        tok_sub = sub.replace("text_encoder", "tokenizer")
        (root / tok_sub).mkdir()
        if tokenizer is not None:
            tokenizer.save_pretrained(str(root / tok_sub))
    return root


def test_diffusers_folders_of_the_new_families(tmp_path, t5_tok, gemma_tok):
    t5, clip_l = tiny_encoders.t5_state(), tiny_models.random_clip_state()
    flux = _diffusers_folder(tmp_path / "flux", "FluxPipeline",
                             {"text_encoder": (clip_l, None), "text_encoder_2": (t5, t5_tok)})
    encoders = load_encoders(flux)
    assert encoders.family == "flux" and _same(encoders.models["t5xxl"], t5)
    assert encoders.tokenizers["t5xxl"]("a cat")["input_ids"] == t5_tok("a cat")["input_ids"]
    gemma = {k[len("model."):]: v for k, v in tiny_encoders.gemma2_state().items()}  # Gemma2Model.save_pretrained
    lumina = load_encoders(_diffusers_folder(tmp_path / "lumina", "Lumina2Pipeline",
                                             {"text_encoder": (gemma, gemma_tok)}))
    assert lumina.family == "lumina2"
    assert _same(lumina.models["gemma2_2b"], {"model." + k: v for k, v in gemma.items()})
    chroma = load_encoders(_diffusers_folder(tmp_path / "chroma", "ChromaPipeline", {"text_encoder": (t5, t5_tok)}))
    assert chroma.family == "chroma"


def _wide_qwen3(width: int, layers: int = 1) -> dict[str, torch.Tensor]:
    """A Qwen3 of a real model's width (what ComfyUI's detect_te_model reads), narrow inside and shallow."""
    return tiny_encoders.qwen3_state(hidden=width, layers=layers, heads=2, kv_heads=1, head_dim=16, intermediate=16)


def test_qwen_separate_files_and_single_files(tmp_path, qwen_tok_dir, recording):
    """ComfyUI's qwen_3_06b / qwen_3_4b / qwen_3_8b / qwen_2.5_vl_7b files, recognised by the tensors comfy/sd.py's
    detect_te_model reads (a q_norm and the width; a 512-wide k_proj bias); Qwen-Image's vision tower and the output
    head are never read; a qwen3_4b is Z-Image's or Klein 4B's, so the family must be named or told by the file."""
    anima_state = _wide_qwen3(1024)
    anima = load_encoders(_write(tmp_path / "qwen_3_06b.safetensors", anima_state), tokenizer_dir=qwen_tok_dir)
    assert anima.family == "anima" and _same(anima.models["qwen3_06b"], anima_state)
    assert next(iter(dict(anima.models["qwen3_06b"].named_parameters()))).startswith("model.")  # ComfyUI's names

    four = _write(tmp_path / "qwen_3_4b.safetensors", {k: v.to(torch.bfloat16) for k, v in _wide_qwen3(2560).items()})
    with pytest.raises(CheckpointError, match="z_image.*flux2_klein_4b"):
        load_encoders(four, tokenizer_dir=qwen_tok_dir)  # ComfyUI decides by the CLIP type: SafeText asks
    assert load_encoders(four, family="z_image", tokenizer_dir=qwen_tok_dir).spec("qwen3_4b").arch == "qwen3"
    with pytest.raises(CheckpointError, match="1 layers.*hidden state 27"):
        load_encoders(four, family="flux2_klein_4b", tokenizer_dir=qwen_tok_dir)  # Klein reads hidden states 9..27
    eight = _write(tmp_path / "qwen_3_8b.safetensors", _wide_qwen3(4096))
    with pytest.raises(CheckpointError, match="hidden state 27"):
        load_encoders(eight, tokenizer_dir=qwen_tok_dir)  # detected as Klein 9B's qwen3_8b
    with pytest.raises(CheckpointError, match="Z-Image has no qwen3_8b"):
        load_encoders(eight, family="z_image", tokenizer_dir=qwen_tok_dir)
    narrow = _write(tmp_path / "qwen3_small.safetensors", tiny_encoders.qwen3_state())
    with pytest.raises(CheckpointError, match="none of the sizes"):
        load_encoders(narrow, tokenizer_dir=qwen_tok_dir)
    with pytest.raises(TokenizerUnavailable, match="qwen3_4b"):
        load_encoders(narrow, family="z_image")  # a Qwen file carries no tokenizer: say what is needed

    vl = tiny_encoders.qwen25vl_state(hidden=512, heads=4, kv_heads=4, layers=1, intermediate=16)  # k_proj bias: 512
    recording.clear()
    qwen_image = load_encoders(_write(tmp_path / "qwen_2.5_vl_7b.safetensors", vl), tokenizer_dir=qwen_tok_dir)
    assert qwen_image.family == "qwen_image" and _same(qwen_image.models["qwen25_7b"], vl)
    assert recording and not [k for k in recording if k.startswith("visual.") or "lm_head" in k]

    # ComfyUI-layout single files: the encoder under text_encoders.<name>.transformer, the diffusion model beside it.
    small = tiny_encoders.qwen3_state()
    te = {f"text_encoders.qwen3_4b.transformer.{k}": v for k, v in small.items()}
    z_image = {**te, "model.diffusion_model.noise_refiner.0.attention.qkv.weight": torch.randn(8, 8)}
    recording.clear()
    assert load_encoders(_write(tmp_path / "z_image_aio.safetensors", z_image), tokenizer_dir=qwen_tok_dir).family \
        == "z_image"
    assert recording and all(k.startswith("text_encoders.") for k in recording)
    with pytest.raises(CheckpointError, match="name the family"):
        load_encoders(_write(tmp_path / "which.safetensors", te), tokenizer_dir=qwen_tok_dir)
    image = {f"text_encoders.qwen25_7b.transformer.{k}": v for k, v in tiny_encoders.qwen25vl_state().items()}
    recording.clear()
    loaded = load_encoders(_write(tmp_path / "qwen_image_aio.safetensors",
                                  {**image, "model.diffusion_model.img_in.weight": torch.randn(8, 8)}),
                           tokenizer_dir=qwen_tok_dir)
    assert loaded.family == "qwen_image"
    assert recording and all(k.startswith("text_encoders.") and ".visual." not in k for k in recording)


def test_diffusers_folders_of_the_qwen_families(tmp_path, qwen_tok):
    """ZImagePipeline (a bare Qwen3Model's names), Flux2KleinPipeline (Qwen3ForCausalLM; 4B or 9B by the width in
    its config) and QwenImagePipeline (transformers 5's Qwen2_5_VLForConditionalGeneration names: model.language_model,
    model.visual, lm_head)."""
    small = tiny_encoders.qwen3_state()
    bare = {k[len("model."):]: v for k, v in small.items()}
    z_image = load_encoders(_diffusers_folder(tmp_path / "z", "ZImagePipeline", {"text_encoder": (bare, qwen_tok)}))
    assert z_image.family == "z_image" and _same(z_image.models["qwen3_4b"], small)

    klein_state = _wide_qwen3(2560, layers=28)
    root = _diffusers_folder(tmp_path / "klein", "Flux2KleinPipeline",
                             {"text_encoder": ({**klein_state, "lm_head.weight": torch.zeros(4, 2560)}, qwen_tok)})
    (root / "text_encoder" / "config.json").write_text(json.dumps({"hidden_size": 2560}))
    klein = load_encoders(root)
    assert klein.family == "flux2_klein_4b" and _same(klein.models["qwen3_4b"], klein_state)

    vl = tiny_encoders.qwen25vl_state(vision=False)
    saved = {k.replace("model.", "model.language_model.", 1): v for k, v in vl.items()}
    saved.update({"model.visual.blocks.0.attn.qkv.weight": torch.randn(48, 16), "lm_head.weight": torch.randn(4, 32)})
    qwen_image = load_encoders(_diffusers_folder(tmp_path / "qi", "QwenImagePipeline", {"text_encoder": (saved, qwen_tok)}))
    assert qwen_image.family == "qwen_image" and _same(qwen_image.models["qwen25_7b"], vl)
    with pytest.raises(CheckpointError, match="Flux.2 \\[dev\\]"):
        load_encoders(_diffusers_folder(tmp_path / "dev", "Flux2Pipeline", {}))
    with pytest.raises(CheckpointError, match="input image"):
        load_encoders(_diffusers_folder(tmp_path / "edit", "QwenImageEditPlusPipeline", {}))


# ----------------------------------------------------------------------------------- what the host feeds

def _t5(family: str, t5_tok):
    from safetext_core.models import build_text_model

    return build_text_model(tiny_encoders.t5_state(), family, "t5xxl"), get_family(family).encoder("t5xxl")


def test_flux_t5_consumes_256_positions_padding_included_without_mask(t5_tok):
    model, spec = _t5("flux", t5_tok)
    batch = tokenize(t5_tok, ["a cat", "a naked woman on a beach at night"], spec)
    ids = batch["input_ids"]
    real = t5_tok("a cat")["input_ids"]  # the prompt, then </s>: ComfyUI's T5 tokenizer has no start token
    assert ids.shape == (2, 256) and ids[0, :len(real)].tolist() == real and set(ids[0, len(real):].tolist()) == {0}
    assert batch["mask"].sum().item() == 2 * 256 and content_mask(batch["mask"], spec).sum().item() == 2 * 256
    outs, pooled = consumed_outputs(model, batch, spec)
    with torch.no_grad():
        bare = model(input_ids=ids).last_hidden_state  # no attention mask: the padding is attended
        masked = model(input_ids=ids, attention_mask=(ids != 0).long()).last_hidden_state
    assert torch.equal(outs[0], bare) and pooled is None
    assert not torch.allclose(outs[0][0, :len(real)], masked[0, :len(real)])  # so masking would be another output


def test_chroma_and_lumina_see_exactly_the_prompt_alone(t5_tok, gemma_tok):
    from safetext_core.models import build_text_model

    prompts = ["a cat", "a naked woman on a beach at night, oil painting"]
    cases = [(*_t5("chroma", t5_tok), t5_tok),
             (build_text_model(tiny_encoders.gemma2_state(), "lumina2", "gemma2_2b"),
              get_family("lumina2").encoder("gemma2_2b"), gemma_tok)]
    for model, spec, tok in cases:
        batch = tokenize(tok, prompts, spec)
        outs, _ = consumed_outputs(model, batch, spec)
        for row, prompt in enumerate(prompts):
            alone = tokenize(tok, [prompt], spec)
            assert alone["mask"].all()  # one prompt: no padding, as ComfyUI encodes it
            n = alone["input_ids"].shape[1]
            assert torch.equal(batch["input_ids"][row, :n], alone["input_ids"][0])
            assert batch["mask"][row].sum() == n
            single, _ = consumed_outputs(model, alone, spec)
            assert torch.allclose(outs[0][row, :n], single[0][0], atol=1e-5)


def test_lumina_system_prompt_and_layer(gemma_tok):
    from safetext_core.models import build_text_model

    spec = get_family("lumina2").encoder("gemma2_2b")
    model = build_text_model(tiny_encoders.gemma2_state(), "lumina2", "gemma2_2b")
    batch = tokenize(gemma_tok, ["a cat", "a bloody corpse"], spec)
    text = LUMINA2_SYSTEM_PROMPT + " <Prompt Start> a cat"
    assert batch["input_ids"][0, :batch["mask"][0].sum().long()].tolist() == gemma_tok(text)["input_ids"]
    lead = batch["mask"].lead_tokens
    prefix = gemma_tok(LUMINA2_SYSTEM_PROMPT + " <Prompt Start>")["input_ids"]
    assert lead == len(prefix) and batch["input_ids"][0, 0].item() == 2  # BOS + system prompt
    outs, _ = consumed_outputs(model, batch, spec)
    # Causal: the system prompt's outputs are the same for every prompt, so they are left out of the unsafe terms.
    assert torch.allclose(outs[0][0, :lead], outs[0][1, :lead], atol=1e-5)
    assert not torch.allclose(outs[0][0, lead:lead + 2], outs[0][1, lead:lead + 2])
    assert content_mask(batch["mask"], spec)[:, :lead].sum() == 0
    # Layer -2 is the second-to-last block's output, no final norm (ComfyUI: intermediate_output=-2).
    inner = model.model
    with torch.no_grad():
        full = inner(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True)
        inner.norm.weight.add_(1.0)  # the final norm must not touch layer -2
        again, _ = consumed_outputs(model, batch, spec)
        inner.norm.weight.sub_(1.0)
    assert torch.equal(outs[0], full.hidden_states[-2]) and torch.equal(again[0], outs[0])


def _qwen(family: str):
    from safetext_core.models import build_text_model

    spec = get_family(family).encoders[0]
    return build_text_model(QWEN_STATES[family](0), family, spec.name), spec


def _alone_equals_batched(model, spec, tok, prompts, outs, batch) -> None:
    for row, prompt in enumerate(prompts):
        alone = tokenize(tok, [prompt], spec)
        n = int(alone["attention_mask"].sum())
        assert torch.equal(batch["input_ids"][row, :n], alone["input_ids"][0, :n])
        single, _ = consumed_outputs(model, alone, spec)
        for a, b in zip(outs, single):
            width = b.shape[1] if spec.pad_to else n  # Klein: every one of the 512 positions, alone or batched
            assert torch.allclose(a[row, :width], b[0, :width], atol=1e-5)


@pytest.mark.parametrize("checkpointing", [False, True])
def test_klein_training_copy_never_runs_the_layers_above_hidden_state_27(qwen_tok, checkpointing):
    """Klein's host reads hidden states 9, 18 and 27: the training copy drops the layers above (one of the tiny
    model's 28; nine of Qwen3's 36), gives exactly the original's outputs, trains, and leaves the original whole.
    Z-Image (layer -2, counted from the end) keeps every layer."""
    from safetext_core import loop

    prompts = ["a cat", "a naked woman on a beach at night, oil painting"]
    model, spec = _qwen("flux2_klein_4b")
    trainee, params = loop.trainable_copy(model, AlignConfig(rank=4), "flux2_klein_4b", spec.adapter_targets,
                                          checkpointing=checkpointing, spec=spec)
    assert len(trainee.model.layers) == 27 and len(model.model.layers) == 28 and model.read_up_to is None
    assert params and not any(".layers.27." in name for name, _ in params)
    batch = tokenize(qwen_tok, prompts, spec)
    with torch.no_grad():
        full, _ = consumed_outputs(model, batch, spec)
        trimmed, _ = consumed_outputs(trainee, batch, spec)
    assert all(torch.equal(a, b) for a, b in zip(full, trimmed))
    outs, _ = consumed_outputs(trainee, batch, spec)
    sum(o.square().mean() for o in outs).backward()
    assert all(p.grad is not None for _, p in params) and any(float(p.grad.abs().sum()) > 0 for _, p in params)
    assert not any(h for layer in trainee.model.layers for h in layer._forward_hooks.values())  # hooks removed

    z_model, z_spec = _qwen("z_image")
    z_trainee, _ = loop.trainable_copy(z_model, AlignConfig(rank=4), "z_image", z_spec.adapter_targets, spec=z_spec)
    assert len(z_trainee.model.layers) == len(z_model.model.layers) and z_trainee.read_up_to is None


def test_z_image_and_anima_layers_and_template(qwen_tok):
    """Z-Image: hidden layer -2 without the final norm over the chat template's real tokens; "<|im_start|>user\\n" is the
    same for every prompt and out of the unsafe terms. Anima: the last hidden state after the final norm over the bare
    prompt; its empty prompt is one pad token, consumed, as ComfyUI's min_length=1 gives it."""
    prompts = ["a cat", "a naked woman on a beach at night, oil painting"]
    model, spec = _qwen("z_image")
    batch = tokenize(qwen_tok, prompts, spec)
    outs, _ = consumed_outputs(model, batch, spec)
    prefix = qwen_tok("<|im_start|>user\n")["input_ids"]
    lead = batch["mask"].lead_tokens
    assert lead == len(prefix) and batch["input_ids"][:, :lead].tolist() == [prefix, prefix]
    assert batch["input_ids"][0, :int(batch["mask"][0].sum())].tolist() == qwen_tok(
        "<|im_start|>user\na cat<|im_end|>\n<|im_start|>assistant\n")["input_ids"]
    assert torch.equal(outs[0][0, :lead], outs[0][1, :lead])  # causal: the template's lead says nothing of the prompt
    assert content_mask(batch["mask"], spec)[:, :lead].sum() == 0 and batch["mask"][:, :lead].all()
    _alone_equals_batched(model, spec, qwen_tok, prompts, outs, batch)
    with torch.no_grad():
        full = model.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True)
        model.model.norm.weight.add_(1.0)  # the final norm must not touch layer -2
        again, _ = consumed_outputs(model, batch, spec)
        model.model.norm.weight.sub_(1.0)
    assert torch.equal(outs[0], full.hidden_states[-2]) and torch.equal(again[0], outs[0])

    model, spec = _qwen("anima")
    batch = tokenize(qwen_tok, prompts + [""], spec)
    assert batch["input_ids"][0, :int(batch["mask"][0].sum())].tolist() == qwen_tok("a cat")["input_ids"]
    assert batch["mask"].lead_tokens == 0 and batch["mask"][2].sum() == 1  # the empty prompt: one consumed pad
    outs, _ = consumed_outputs(model, batch, spec)
    with torch.no_grad():
        last = model.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    assert torch.equal(outs[0], last)  # after the final norm
    _alone_equals_batched(model, spec, qwen_tok, prompts + [""], outs, batch)


def test_flux2_klein_layers_9_18_27_and_512_consumed_positions(qwen_tok):
    """Klein: hidden states 9, 18 and 27 (no norm), joined along features, at all 512 positions; the encoder masks
    its padding, and the padding's outputs (pad queries attend to the prompt) are consumed and differ per prompt."""
    from safetext_core.encoding import primary_output

    prompts = ["a cat", "a naked woman on a beach at night, oil painting"]
    model, spec = _qwen("flux2_klein_4b")
    batch = tokenize(qwen_tok, prompts, spec)
    ids = batch["input_ids"]
    real = qwen_tok(spec.template.replace("{}", "a cat"))["input_ids"]
    assert ids.shape == (2, 512) and ids[0, :len(real)].tolist() == real
    assert set(ids[0, len(real):].tolist()) == {qwen_tok.pad_token_id} and batch["attention_mask"][0].sum() == len(real)
    assert batch["mask"].sum() == 2 * 512 and content_mask(batch["mask"], spec)[:, batch["mask"].lead_tokens:].all()
    outs, _ = consumed_outputs(model, batch, spec)
    with torch.no_grad():
        full = model.model(input_ids=ids, attention_mask=batch["attention_mask"], output_hidden_states=True)
        bare = model.model(input_ids=ids, output_hidden_states=True)  # padding attended: another output
    assert [o.shape for o in outs] == [(2, 512, 16)] * 3
    assert all(torch.equal(o, full.hidden_states[i]) for o, i in zip(outs, (9, 18, 27)))
    assert not torch.allclose(outs[2][0, len(real):], bare.hidden_states[27][0, len(real):], atol=1e-4)
    assert not torch.allclose(outs[2][0, -1], outs[2][1, -1], atol=1e-4)  # the last pad depends on the prompt
    joined = primary_output(outs, spec)
    assert joined.shape == (2, 512, 48) and torch.equal(joined[..., 16:32], outs[1])
    _alone_equals_batched(model, spec, qwen_tok, prompts, outs, batch)


def test_qwen_image_drops_the_template_lead(qwen_tok, tmp_path, qwen_tok_dir):
    """Qwen-Image: the last hidden state after the final norm; the system turn and "<|im_start|>user\\n" are cut off
    (in no term; the conditioning starts at the prompt's first token), the tail "<|im_end|>\\n<|im_start|>assistant\\n"
    stays. What diffusers' QwenImagePipeline does with its drop_idx (34 real tokens), on the tiny tokenizer."""
    from safetext_core.encoding import conditioning
    from safetext_core.families import QWEN_IMAGE_TEMPLATE

    prompts = ["a cat", "a naked woman on a beach at night, oil painting"]
    model, spec = _qwen("qwen_image")
    batch = tokenize(qwen_tok, prompts, spec)
    outs, _ = consumed_outputs(model, batch, spec)
    prefix = qwen_tok(QWEN_IMAGE_TEMPLATE.partition("{}")[0])["input_ids"]
    lead = batch["mask"].lead_tokens
    assert lead == len(prefix) and batch["mask"][:, :lead].sum() == 0  # in no term, the safe one included
    tail = qwen_tok("<|im_end|>\n<|im_start|>assistant\n")["input_ids"]
    for row, prompt in enumerate(prompts):
        kept = batch["input_ids"][row][batch["mask"][row].bool()].tolist()
        assert kept == qwen_tok(prompt)["input_ids"] + tail
    with torch.no_grad():
        last = model.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    assert torch.equal(outs[0], last)
    _alone_equals_batched(model, spec, qwen_tok, prompts, outs, batch)

    path = _write(tmp_path / "qwen_2.5_vl.safetensors", QWEN_STATES["qwen_image"](0))
    encoders = load_encoders(path, family="qwen_image", tokenizer_dir=qwen_tok_dir)
    cond, pooled, mask = conditioning(encoders, prompts)
    n = len(qwen_tok("a cat")["input_ids"]) + len(tail)
    assert pooled is None and mask[0].sum() == n and mask[0, :n].all()
    assert torch.allclose(cond[0, :n], last[0][batch["attention_mask"][0].bool()][lead:], atol=1e-5)  # diffusers' cut


def test_fingerprints_ignore_the_order_a_host_lists_tensors_in():
    from safetext_core.fingerprint import fingerprint_state_dict, fingerprints_match

    for state in (tiny_encoders.t5_state(), tiny_encoders.gemma2_state(), tiny_encoders.qwen3_state(),
                  tiny_encoders.qwen25vl_state(vision=False)):
        reverse = dict(reversed(list(state.items())))  # ComfyUI's T5 registers the encoder before `shared`
        assert fingerprint_state_dict(state) == fingerprint_state_dict(reverse)
        assert fingerprints_match(fingerprint_state_dict(state), fingerprint_state_dict({k: v.half() for k, v in state.items()}))
        other = {k: (v + 0.01 if "layers.0.self_attn.q_proj" in k or "block.0.layer.0.SelfAttention.q" in k else v)
                 for k, v in state.items()}
        assert not fingerprints_match(fingerprint_state_dict(state), fingerprint_state_dict(other))


def test_family_conditioning_layout(tmp_path, t5_tok_dir):
    """As ComfyUI hands it on: Flux = T5's sequence + CLIP-L's pooled; SD 3 = [CLIP-L | bigG] padded to T5's width,
    then T5's tokens, pooled L + G."""
    from safetext_core.encoding import conditioning

    flux = _encoders("flux", tmp_path, t5_tok_dir, None)
    cond, pooled, mask = conditioning(flux, ["a cat", "a red car"])
    assert cond.shape == (2, 256, 32) and pooled.shape == (2, 32) and mask.shape == (2, 256)
    (tmp_path / "sd3").mkdir()
    sd3 = _encoders("sd3", tmp_path / "sd3", t5_tok_dir, None)
    cond, pooled, mask = conditioning(sd3, ["a cat"])
    assert cond.shape == (1, 77 + 77, 32 + 64) and pooled.shape == (1, 32 + 64)
    t5_out = consumed_outputs(sd3.models["t5xxl"], tokenize(sd3.tokenizers["t5xxl"], ["a cat"],
                                                              sd3.spec("t5xxl")), sd3.spec("t5xxl"))[0][0]
    assert torch.equal(cond[:, 77:, :32], t5_out) and torch.equal(cond[:, 77:, 32:], torch.zeros(1, 77, 64))


# ----------------------------------------------------------------------------------- train, file, apply

# The plumbing of each family on tiny random encoders, not the precision defaults chosen on the real MiniLM: the safe
# cosine hinge, at its default, held a 3-layer Qwen2.5's low-rank run at 0 of its handful of held-out prompts moved.
FAST = AlignConfig(steps=40, batch_size=8, learning_rate=5e-3, anchor_weight=0.1, eval_every=0, preserve_pool=200,
                   mine_every=0, safe_cos_weight=0.0)


# The Qwen families' tiny encoders: Klein reads hidden state 27, so its Qwen3 has 28 layers (narrow: 16 wide).
QWEN_STATES = {"z_image": lambda seed: tiny_encoders.qwen3_state(seed=seed),
               "anima": lambda seed: tiny_encoders.qwen3_state(seed=seed),
               "flux2_klein_4b": lambda seed: tiny_encoders.qwen3_state(hidden=16, heads=1, head_dim=16, intermediate=32,
                                                                        layers=28, seed=seed),
               "qwen_image": lambda seed: tiny_encoders.qwen25vl_state(seed=seed)}


def _encoders(family: str, tmp_path: Path, t5_tok_dir: Path, gemma_tok_dir: Path, qwen_tok_dir: Path | None = None):
    if family in QWEN_STATES:  # a separate text-encoder file as ComfyUI's models/text_encoders hold them
        path = _write(tmp_path / f"{family}_te.safetensors", QWEN_STATES[family](3))
        return load_encoders(path, family=family, tokenizer_dir=qwen_tok_dir)
    if family == "lumina2":
        path = _write(tmp_path / "gemma.safetensors", tiny_encoders.gemma2_state(seed=3))
        return load_encoders(path, tokenizer_dir=gemma_tok_dir)
    tensors = {f"text_encoders.t5xxl.transformer.{k}": v for k, v in tiny_encoders.t5_state(seed=3).items()}
    if family in ("flux", "sd3"):
        tensors.update({f"text_encoders.clip_l.transformer.{k}": v
                        for k, v in tiny_models.random_clip_state(seed=4).items()})
    if family == "sd3":
        tensors.update({f"text_encoders.clip_g.transformer.{k}": v
                        for k, v in tiny_models.random_clip_state(64, 3, "gelu", True, seed=5).items()})
    return load_encoders(_write(tmp_path / f"{family}.safetensors", tensors), family=family, tokenizer_dir=t5_tok_dir)


def _outputs(encoders, models, prompts):
    out = {}
    for spec in encoders.profile.encoders:
        batch = tokenize(encoders.tokenizers[spec.name], prompts, spec)
        with torch.no_grad():
            out[spec.name] = consumed_outputs(models[spec.name], batch, spec)
    return out


@pytest.mark.parametrize("family", ["flux", "sd3", "chroma", "lumina2", "z_image", "flux2_klein_4b", "anima",
                                    "qwen_image"])
def test_train_save_load_apply(family, tmp_path, t5_tok_dir, gemma_tok_dir, qwen_tok_dir, prompt_sets):
    encoders = _encoders(family, tmp_path, t5_tok_dir, gemma_tok_dir, qwen_tok_dir)
    before = {n: {k: v.clone() for k, v in m.state_dict().items()} for n, m in encoders.models.items()}
    # Klein's 512 consumed positions through 28 layers cost 20 times a prompt of the others (a 40-step run takes
    # 96 s here and meets the figures below): a short run that checks the plumbing, not how far prompts move.
    klein = family == "flux2_klein_4b"
    config = replace(FAST, steps=6, batch_size=4, preserve_pool=8) if klein else FAST
    outcome = run_alignment(encoders, prompt_sets, config, output=tmp_path / "out.safetext.safetensors", draw=False,
                            independent=False)
    for name, model in encoders.models.items():  # the originals are never modified
        assert all(torch.equal(v, before[name][k]) for k, v in model.state_dict().items())
    figures = outcome.heldout
    if not klein:
        assert figures["unsafe_share_moved"] > 0.5 and figures["safe_cos_mean"] > figures["unsafe_cos_mean"] + 0.3

    path = outcome.path
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        keys = list(f.keys())
    main = encoders.profile.encoders[-1].name  # the T5 / LLM encoder
    expected = (f"text_encoders.{main}.transformer.model.layers.0.self_attn.q_proj.diff" if main != "t5xxl" else
                "text_encoders.t5xxl.transformer.encoder.block.0.layer.0.SelfAttention.q.diff")
    assert expected in keys and all(k.startswith("text_encoders.") for k in keys)
    loaded = SafeTextFile.load(path)
    assert loaded.family == family and main in loaded.deltas
    loaded.check_fingerprints(encoders.fingerprints())
    loaded.validate_against({n: m.state_dict() for n, m in encoders.models.items()})

    prompts = ["a naked woman on a beach, photo", "a red car, photo", "a bowl of fruit"]
    original = _outputs(encoders, encoders.models, prompts)
    aligned_models = {n: apply_deltas(m, loaded.deltas.get(n, {}), 1.0) for n, m in encoders.models.items()}
    aligned = _outputs(encoders, aligned_models, prompts)
    half_weights = _outputs(encoders, {n: apply_deltas(m, loaded.deltas.get(n, {}), 0.5)
                                       for n, m in encoders.models.items()}, prompts)
    off = _outputs(encoders, {n: apply_deltas(m, loaded.deltas.get(n, {}), 0.0) for n, m in encoders.models.items()},
                   prompts)
    for name in original:
        (o, op), (a, ap), (w, _), (z, zp) = original[name], aligned[name], half_weights[name], off[name]
        assert all(torch.equal(x, y) for x, y in zip(o, z))  # off: bit for bit the original
        blended = blend_outputs(o, a, 0.5)  # the embedding blend, as hosts compute it
        assert all(torch.equal(b, torch.lerp(x, y, 0.5)) for b, x, y in zip(blended, o, a))
        assert all(torch.equal(x, y) for x, y in zip(blend_outputs(o, a, 0.0), o))
        assert all(torch.equal(x, y) for x, y in zip(blend_outputs(o, a, 1.0), a))
        if loaded.deltas.get(name):  # the weight blend at 0.5 is another (inexact) point between them
            assert not all(torch.equal(x, y) for x, y in zip(w, o))
    moved = aligned[main][0][0][0] - original[main][0][0][0]
    assert moved.abs().max() > 1e-3  # the unsafe prompt's conditioning changed
    # What the evaluation measures with: the view that shifts one module at a time gives the shifted copy's outputs
    for strength, copied in ((1.0, aligned), (0.5, half_weights)):
        viewed = _outputs(encoders, {n: shifted_view(m, loaded.deltas.get(n, {}), strength)
                                     for n, m in encoders.models.items()}, prompts)
        for name, (outs, pooled) in viewed.items():
            assert all(torch.equal(x, y) for x, y in zip(outs, copied[name][0], strict=True)), (name, strength)
            assert (pooled is None) == (copied[name][1] is None)
            assert pooled is None or torch.equal(pooled, copied[name][1])


@pytest.mark.parametrize("family", ["chroma", "lumina2", "z_image", "anima", "qwen_image"])
def test_low_rank_on_the_family_adapter_targets(family, tmp_path, t5_tok_dir, gemma_tok_dir, qwen_tok_dir,
                                                prompt_sets):
    """Low-rank training (issue 12's path) takes the family's adapter_targets: T5's block projections and
    feed-forward, Gemma's, Qwen3's and Qwen2.5's (biased) attention and MLP projections; the file stores factors under
    ComfyUI's keys."""
    from dataclasses import replace

    from safetensors import safe_open

    if family == "qwen_image":  # rank 4 on the 2-layer model moves 3 of 10 held-out prompts; 3 layers as Gemma's
        path = _write(tmp_path / "qwen_2.5_vl.safetensors", tiny_encoders.qwen25vl_state(layers=3, seed=3))
        encoders = load_encoders(path, family=family, tokenizer_dir=qwen_tok_dir)
    else:
        encoders = _encoders(family, tmp_path, t5_tok_dir, gemma_tok_dir, qwen_tok_dir)
    config = replace(FAST, rank=4, steps=40, lora_learning_rate=3e-2)
    outcome = run_alignment(encoders, prompt_sets, config, output=tmp_path / "low.safetext.safetensors", draw=False,
                            independent=False)
    # The held-out split of these tiny sets is a handful of prompts, and the share moved lands on 0.5 or above
    # depending on thread count; untrained factors would move none.
    assert outcome.heldout["unsafe_share_moved"] >= 0.5
    with safe_open(str(outcome.path), framework="pt") as f:
        keys = set(f.keys())
    layers = (("encoder.block.1.layer.0.SelfAttention.o", "encoder.block.0.layer.1.DenseReluDense.wi_1")
              if family == "chroma" else ("model.layers.1.self_attn.v_proj", "model.layers.0.mlp.down_proj"))
    encoder = encoders.profile.encoders[0].name
    for layer in layers:
        assert f"text_encoders.{encoder}.transformer.{layer}.lora_up.weight" in keys
    assert not any("norm" in k or "embed" in k or "shared" in k for k in keys)  # only the targeted linears
    if family in ("lumina2", "z_image"):  # the last of 3 blocks does not feed layer -2: its factors never move, none saved
        assert not any(".layers.2." in k for k in keys)
    loaded = SafeTextFile.load(outcome.path)
    loaded.validate_against({n: m.state_dict() for n, m in encoders.models.items()})


# ----------------------------------------------------------------------------------- against ComfyUI itself

def _comfy_python() -> tuple[Path, str] | None:
    import os

    path = os.environ.get("COMFYUI_PATH")
    if not path:
        return None
    python = os.environ.get("COMFYUI_PYTHON") or str(Path(path).parent / "venv" / "bin" / "python")
    return Path(path), python if Path(python).is_file() else "python"


@pytest.mark.skipif(_comfy_python() is None, reason="COMFYUI_PATH is not set: no ComfyUI to compare with")
def test_consumed_outputs_equal_comfyui_encoders(tmp_path, t5_tok, gemma_tok, t5_tok_dir, gemma_tok_dir):
    """ComfyUI's own T5XXLModel (Flux's and Chroma's tokenizer arguments) and Gemma2_2BModel, on the same weights
    and token ids, give what ``consumed_outputs`` gives: the layer, the padding, the mask, the template."""
    import subprocess

    from safetensors.torch import load_file

    from safetext_core.encoding import format_prompt
    from safetext_core.models import build_text_model

    comfy_path, python = _comfy_python()
    prompts = ["a cat", "a naked woman on a beach at night, oil painting, close up"]
    t5 = tiny_encoders.t5_state()
    gemma = tiny_encoders.gemma2_state(head_dim=256)  # ComfyUI's Gemma-2 config fixes the head size at 256
    _write(tmp_path / "t5.safetensors", t5)
    _write(tmp_path / "gemma.safetensors", gemma)
    t5_config = {"d_model": 32, "d_ff": 64, "d_kv": 8, "num_heads": 4, "num_layers": 2, "vocab_size": tiny_encoders.VOCAB}
    gemma_config = {"vocab_size": tiny_encoders.VOCAB, "hidden_size": 64, "intermediate_size": 128,
                    "num_hidden_layers": 3, "num_attention_heads": 2, "num_key_value_heads": 1}
    lumina_spec = get_family("lumina2").encoder("gemma2_2b")
    cases = [
        {"name": "flux", "kind": "t5", "weights": str(tmp_path / "t5.safetensors"), "tokenizer": str(t5_tok_dir),
         "width": 32, "min_length": 256, "config": t5_config, "prompts": prompts},
        {"name": "chroma", "kind": "t5", "weights": str(tmp_path / "t5.safetensors"), "tokenizer": str(t5_tok_dir),
         "width": 32, "min_length": 1, "config": t5_config, "prompts": prompts},
        {"name": "lumina2", "kind": "gemma2", "weights": str(tmp_path / "gemma.safetensors"),
         "tokenizer": str(gemma_tok_dir), "width": 64, "config": gemma_config,
         "prompts": [format_prompt(p, lumina_spec) for p in prompts]},  # what CLIPTextEncodeLumina2 encodes
    ]
    (tmp_path / "job.json").write_text(json.dumps({"cases": cases}))
    run = subprocess.run([python, str(Path(__file__).with_name("comfy_reference.py")), str(comfy_path), str(tmp_path)],
                         capture_output=True, text=True, timeout=600, cwd=str(tmp_path))
    assert run.returncode == 0, run.stderr[-3000:]
    for case, family, encoder, state, tok in (("flux", "flux", "t5xxl", t5, t5_tok), ("chroma", "chroma", "t5xxl", t5, t5_tok),
                                              ("lumina2", "lumina2", "gemma2_2b", gemma, gemma_tok)):
        reference = load_file(str(tmp_path / f"{case}.safetensors"))
        spec = get_family(family).encoder(encoder)
        model = build_text_model(state, family, encoder)
        for index, prompt in enumerate(prompts):
            batch = tokenize(tok, [prompt], spec)
            assert batch["input_ids"][0].tolist() == reference[f"ids.{index}"].tolist(), (case, prompt)
            ours = consumed_outputs(model, batch, spec)[0][0]
            theirs = reference[f"cond.{index}"]
            assert ours.shape == theirs.shape, (case, ours.shape, theirs.shape)
            assert torch.allclose(ours, theirs, atol=2e-4, rtol=1e-4), (case, (ours - theirs).abs().max())
        # And batched with other prompts, the real tokens are what ComfyUI gives each prompt alone.
        batch = tokenize(tok, prompts, spec)
        together = consumed_outputs(model, batch, spec)[0][0]
        for index in range(len(prompts)):
            theirs = reference[f"cond.{index}"][0]
            assert torch.allclose(together[index, :theirs.shape[0]], theirs, atol=2e-4, rtol=1e-4), case


@pytest.mark.skipif(_comfy_python() is None, reason="COMFYUI_PATH is not set: no ComfyUI to compare with")
def test_qwen_image_equals_comfyui_encoder(tmp_path):
    """Qwen-Image is in ComfyUI 0.3.64 (its text-only path is the current source's): ComfyUI's own QwenImageTokenizer
    (the real Qwen vocabulary, from ComfyUI's folder) and QwenImageTEModel on the same tiny weights give the token ids
    and the cut conditioning SafeText computes; SafeText's cut (the template's shared lead) is ComfyUI's
    template_end, 34 with the real vocabulary, alone and batched."""
    import subprocess

    from safetensors.torch import load_file

    from safetext_core.loaders import load_hf_tokenizer
    from safetext_core.models import build_text_model

    comfy_path, python = _comfy_python()
    folder = comfy_path / "comfy" / "text_encoders" / "qwen25_tokenizer"
    tok = load_hf_tokenizer(folder, "qwen25_7b")
    # ComfyUI fixes the head at 128: one head, 128 wide; the real vocabulary's ids need its 151936 rows.
    state = tiny_encoders.qwen25vl_state(hidden=128, heads=1, kv_heads=1, layers=2, intermediate=64, vocab=151936,
                                         vision=False)
    _write(tmp_path / "qwen.safetensors", state)
    prompts = ["a cat", "a naked woman on a beach at night, oil painting, close up", " leading space, photo"]
    config = {"vocab_size": 151936, "hidden_size": 128, "intermediate_size": 64, "num_hidden_layers": 2,
              "num_attention_heads": 1, "num_key_value_heads": 1}
    case = {"name": "qwen_image", "kind": "qwen_image", "weights": str(tmp_path / "qwen.safetensors"), "config": config,
            "prompts": prompts}
    (tmp_path / "job.json").write_text(json.dumps({"cases": [case]}))
    run = subprocess.run([python, str(Path(__file__).with_name("comfy_reference.py")), str(comfy_path), str(tmp_path)],
                         capture_output=True, text=True, timeout=600, cwd=str(tmp_path))
    assert run.returncode == 0, run.stderr[-3000:]
    reference = load_file(str(tmp_path / "qwen_image.safetensors"))
    spec = get_family("qwen_image").encoder("qwen25_7b")
    model = build_text_model(state, "qwen_image", "qwen25_7b")
    together = tokenize(tok, prompts, spec)
    outs = consumed_outputs(model, together, spec)[0][0]
    for index, prompt in enumerate(prompts):
        batch = tokenize(tok, [prompt], spec)
        ids, theirs = reference[f"ids.{index}"], reference[f"cond.{index}"][0]
        assert batch["input_ids"][0].tolist() == ids.tolist(), prompt
        lead = batch["mask"].lead_tokens
        assert lead == len(ids) - theirs.shape[0] == 34, (prompt, lead)  # ComfyUI's template_end, diffusers' drop_idx
        ours = consumed_outputs(model, batch, spec)[0][0][0, lead:]
        assert torch.allclose(ours, theirs, atol=2e-4, rtol=1e-4), (prompt, (ours - theirs).abs().max())
        n = len(ids)
        assert torch.allclose(outs[index, lead:n], theirs, atol=2e-4, rtol=1e-4)  # batched: the same


@pytest.mark.skipif(_comfy_python() is None, reason="COMFYUI_PATH is not set: no ComfyUI to compare with")
def test_qwen3_outputs_equal_comfyui_llama(tmp_path, qwen_tok):
    """The Qwen3 of Z-Image, Klein and Anima against ComfyUI's own Llama2_ (0.3.64's, which has no Qwen3 class but
    computes one from the current source's Qwen3 config values): on the same weights, ids and masks, SafeText's
    layer -2 (Z-Image), hidden states 9 / 18 / 27 (Klein, 512 positions, padding masked in the encoder) and
    final-normed last state (Anima) are ComfyUI's. Checks the numerics (q/k norms, RoPE, masks), not ComfyUI's
    Qwen3 classes, which only its newer versions have."""
    import subprocess

    from safetensors.torch import load_file

    comfy_path, python = _comfy_python()
    prompts = ["a cat", "a naked woman on a beach at night, oil painting"]
    cases, expected = [], {}
    for family in ("z_image", "flux2_klein_4b", "anima"):
        model, spec = _qwen(family)
        state = QWEN_STATES[family](0)
        _write(tmp_path / f"{family}.safetensors", state)
        batch = tokenize(qwen_tok, prompts, spec)
        c = model.config
        cases.append({"name": family, "kind": "qwen3", "weights": str(tmp_path / f"{family}.safetensors"),
                      "ids": batch["input_ids"].tolist(), "mask": batch["attention_mask"].tolist(),
                      "config": {"vocab_size": c.vocab_size, "hidden_size": c.hidden_size,
                                 "intermediate_size": c.intermediate_size, "num_hidden_layers": c.num_hidden_layers,
                                 "num_attention_heads": c.num_attention_heads,
                                 "num_key_value_heads": c.num_key_value_heads, "head_dim": c.head_dim}})
        expected[family] = (consumed_outputs(model, batch, spec)[0], batch["mask"])
    (tmp_path / "job.json").write_text(json.dumps({"cases": cases}))
    run = subprocess.run([python, str(Path(__file__).with_name("comfy_reference.py")), str(comfy_path), str(tmp_path)],
                         capture_output=True, text=True, timeout=600, cwd=str(tmp_path))
    assert run.returncode == 0, run.stderr[-3000:]
    for family, (ours, mask) in expected.items():
        theirs = load_file(str(tmp_path / f"{family}.safetensors"))
        wanted = ([theirs["all"][:, i] for i in (9, 18, 27)] if family == "flux2_klein_4b" else
                  [theirs["minus2"]] if family == "z_image" else [theirs["last"]])
        for a, b in zip(ours, wanted):
            m = mask.unsqueeze(-1)  # the consumed positions (Klein: all 512)
            assert torch.allclose(a * m, b * m, atol=2e-4, rtol=1e-4), (family, (a * m - b * m).abs().max())


@pytest.mark.skipif(_comfy_python() is None, reason="COMFYUI_PATH is not set: no ComfyUI to run the adapter in")
def test_comfyui_adapter_on_real_clip_objects(tmp_path):
    """Chroma (T5), Lumina 2 (Gemma-2), Flux.1 (CLIP-L + T5), SD 3 (CLIP-L + bigG + T5) and Qwen-Image (Qwen2.5-VL,
    low-rank) CLIPs built by ComfyUI: the adapter trains a file on them; stock
    LoraLoader loads it without "lora key not loaded"; off (strength 0) is bit for bit the original; on changes
    the conditioning, both blend modes agree at strength 1, the embedding blend is the exact lerp at 0.5."""
    import subprocess

    from conftest import SAFE_WORDS, UNSAFE_WORDS
    from safetensors.torch import load_file

    comfy_path, python = _comfy_python()
    _write(tmp_path / "t5.safetensors", tiny_encoders.t5_state(vocab=32128))  # ComfyUI's own T5 vocabulary
    _write(tmp_path / "gemma.safetensors", tiny_encoders.gemma2_state(head_dim=256, vocab=400))
    probe = ["a naked woman on a beach, photo", "a red car, photo"]
    cases = [
        {"name": "chroma", "clip_type": "CHROMA", "encoder": "t5xxl", "weights": [str(tmp_path / "t5.safetensors")],
         "probe_weight": "encoder.block.0.layer.0.SelfAttention.q.weight", "template": "{}", "config": {"d_model": 32, "d_ff": 64, "d_kv": 8, "num_heads": 4, "num_layers": 2,
                                      "vocab_size": 32128}},
        {"name": "lumina2", "clip_type": "LUMINA2", "encoder": "gemma2_2b", "weights": [str(tmp_path / "gemma.safetensors")],
         "probe_weight": "model.layers.0.self_attn.q_proj.weight", "template": get_family("lumina2").encoder("gemma2_2b").template, "train_spiece": True,
         "config": {"vocab_size": 400, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 3,
                    "num_attention_heads": 2, "num_key_value_heads": 1}},
        {"name": "chroma_lowrank", "clip_type": "CHROMA", "encoder": "t5xxl", "rank": 4,  # factors, not differences
         "weights": [str(tmp_path / "t5.safetensors")], "probe_weight": "encoder.block.0.layer.0.SelfAttention.q.weight",
         "template": "{}", "config": {"d_model": 32, "d_ff": 64, "d_kv": 8, "num_heads": 4, "num_layers": 2,
                                      "vocab_size": 32128}},
        {"name": "flux", "clip_type": "FLUX", "encoder": "t5xxl",  # DualCLIPLoader type flux: clip_l + t5xxl
         "weights": [str(tmp_path / "clip_l.safetensors"), str(tmp_path / "t5.safetensors")],
         "probe_weight": "encoder.block.0.layer.0.SelfAttention.q.weight", "template": "{}",
         "config": {"d_model": 32, "d_ff": 64, "d_kv": 8, "num_heads": 4, "num_layers": 2, "vocab_size": 32128},
         "more_config": {"clip_l_model_config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                                                 "num_attention_heads": 2, "projection_dim": 32}}},
        {"name": "sd3", "clip_type": "SD3", "encoder": "t5xxl",  # TripleCLIPLoader: clip_l + clip_g + t5xxl
         "weights": [str(tmp_path / "clip_l3.safetensors"), str(tmp_path / "clip_g.safetensors"),
                     str(tmp_path / "t5_4096.safetensors")], "weight_encoders": ["clip_l", "clip_g", "t5xxl"],
         "probe_weight": "encoder.block.0.layer.0.SelfAttention.q.weight", "template": "{}", "rank": 4,
         # ComfyUI's SD3ClipModel pads CLIP-L|bigG to 4096 and joins T5 to it: T5 must be 4096 wide (narrow inside)
         "config": {"d_model": 4096, "d_ff": 64, "d_kv": 16, "num_heads": 1, "num_layers": 1, "vocab_size": 32128},
         "more_config": {"clip_l_model_config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 3,
                                                 "num_attention_heads": 2, "projection_dim": 32},
                         "clip_g_model_config": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 3,
                                                 "num_attention_heads": 4, "projection_dim": 64, "hidden_act": "gelu"}}},
    ]
    # Qwen-Image (in 0.3.64): comfy.sd.load_text_encoder_state_dicts itself (CLIP type qwen_image), which tells a
    # qwen25_7b by its 512-wide k_proj bias: 4 heads of ComfyUI's fixed 128, the real vocabulary's 151936 rows.
    _write(tmp_path / "qwen25.safetensors", tiny_encoders.qwen25vl_state(hidden=512, heads=4, kv_heads=4, layers=2,
                                                                           intermediate=64, vocab=151936, vision=False))
    cases.append({"name": "qwen_image", "clip_type": "QWEN_IMAGE", "encoder": "qwen25_7b", "rank": 4,
                  "weights": [str(tmp_path / "qwen25.safetensors")], "probe_weight": "model.layers.0.self_attn.q_proj.weight",
                  "template": "{}",  # QwenImageTokenizer puts its template around the prompt itself
                  "config": {"vocab_size": 151936, "hidden_size": 512, "intermediate_size": 64, "num_hidden_layers": 2,
                             "num_attention_heads": 4, "num_key_value_heads": 4}})
    _write(tmp_path / "clip_l.safetensors", tiny_models.random_clip_state(seed=4))
    _write(tmp_path / "clip_l3.safetensors", tiny_models.random_clip_state(layers=3, seed=7))  # layer -2 needs 3
    _write(tmp_path / "clip_g.safetensors", tiny_models.random_clip_state(64, 3, "gelu", True, seed=8))
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(9)
    wide = T5EncoderModel(T5Config(vocab_size=32128, d_model=4096, d_kv=16, d_ff=64, num_layers=1, num_heads=1,
                                   relative_attention_num_buckets=32, feed_forward_proj="gated-gelu", dropout_rate=0.0))
    _write(tmp_path / "t5_4096.safetensors", {k: (1.0 + 0.1 * torch.randn_like(v) if "norm" in k else 0.2 * torch.randn_like(v))
                                             for k, v in wide.state_dict().items() if k != "encoder.embed_tokens.weight"})
    del wide
    unsafe = [f"{w}, {s}" for w in UNSAFE_WORDS for s in ("photo", "oil painting", "close up", "sketch")]
    safe = [f"{w}, {s}" for w in SAFE_WORDS for s in ("photo", "oil painting", "close up", "sketch")]
    (tmp_path / "job.json").write_text(json.dumps({"cases": cases, "probe": probe, "unsafe": unsafe, "safe": safe}))
    root = Path(__file__).resolve().parents[1]
    run = subprocess.run([python, str(Path(__file__).with_name("comfy_apply_check.py")), str(comfy_path), str(root),
                          str(tmp_path)], capture_output=True, text=True, timeout=900, cwd=str(tmp_path))
    assert run.returncode == 0, run.stderr[-4000:]
    for case in cases:
        result = json.loads((tmp_path / f"{case['name']}.json").read_text())
        out = load_file(str(tmp_path / f"{case['name']}.safetensors"))
        assert result["family"] == case["name"].replace("_lowrank", "")  # (sd3 is trained low-rank too)
        per_layer = 3 if case.get("rank") else 1  # lora_up, lora_down, alpha
        assert result["lora_log"] == [] and result["lora_patched"] * per_layer == result["file_tensors"] > 0
        for index in range(len(probe)):
            original = out[f"original.{index}"]
            assert torch.equal(out[f"after.{index}"], original)
            for mode in ("embedding", "weight"):
                assert torch.equal(out[f"{mode}.0.0.{index}"], original), (case["name"], mode)  # off
            on = out[f"embedding.1.0.{index}"]
            assert not torch.allclose(on, original, atol=1e-4)
            # Equal up to the host's weight precision: ComfyUI keeps text encoders in fp16 on a CPU; the weight blend
            # stores W + delta in fp16, the embedding blend adds delta to the weight already cast for compute (fp32).
            tolerance = 1e-4 if result["weight_dtype"] == "torch.float32" else 1e-2
            assert torch.allclose(out[f"weight.1.0.{index}"], on, atol=tolerance, rtol=tolerance), \
                (case["name"], result["weight_dtype"], (out[f"weight.1.0.{index}"] - on).abs().max())
            assert torch.allclose(out[f"lora.{index}"], out[f"weight.1.0.{index}"], atol=1e-5)
            assert torch.allclose(out[f"embedding.0.5.{index}"], torch.lerp(original, on, 0.5), atol=1e-6)
        unsafe_cos = torch.nn.functional.cosine_similarity(out["embedding.1.0.0"].flatten(), out["original.0"].flatten(), 0)
        safe_cos = torch.nn.functional.cosine_similarity(out["embedding.1.0.1"].flatten(), out["original.1"].flatten(), 0)
        assert safe_cos > unsafe_cos, (case["name"], float(safe_cos), float(unsafe_cos))


def test_low_rank_recomputes_originals_instead_of_storing_them(tmp_path, t5_tok_dir, prompt_sets, monkeypatch):
    """T5 / Gemma trained low-rank keep no stored originals (memory that grows with the prompts): ``gather`` runs
    the encoder with its adapters off, which gives the stored originals whatever the adapters hold."""
    from dataclasses import replace

    from safetext_core import loop

    encoders = _encoders("chroma", tmp_path, t5_tok_dir, None)
    spec, tok = encoders.spec("t5xxl"), encoders.tokenizers["t5xxl"]
    config = replace(FAST, rank=4, steps=15, lora_learning_rate=3e-2)
    trainee, factors = loop.trainable_copy(encoders.models["t5xxl"], config, "chroma", spec.adapter_targets)
    prompts = prompt_sets.safe[:24]
    recomputed = loop.OriginalOutputs(trainee, tok, prompts, spec, torch.device("cpu"), torch.device("cpu"))
    monkeypatch.setattr(loop, "_RECOMPUTED_ARCHS", ())
    stored = loop.OriginalOutputs(trainee, tok, prompts, spec, torch.device("cpu"), torch.device("cpu"))
    assert recomputed.recompute and recomputed.outputs == [] and not stored.recompute
    with torch.no_grad():
        for _, factor in factors:  # as after some training: the adapters now change the output
            factor.add_(torch.randn_like(factor))
    indices = [5, 17, 2, 11]
    batch = tokenize(tok, [prompts[i] for i in indices], spec)
    width, mask = batch["input_ids"].shape[1], batch["mask"].unsqueeze(-1)
    (again,), _ = recomputed.gather(indices, width, torch.device("cpu"))
    (kept,), _ = stored.gather(indices, width, torch.device("cpu"))
    with torch.no_grad():
        (adapted,), _ = consumed_outputs(trainee, batch, spec)
    assert torch.allclose(again * mask, kept * mask, atol=1e-5)  # the original, not the adapted encoder
    assert not torch.allclose(adapted * mask, kept * mask, atol=1e-2)
    assert all(factor.grad is None for _, factor in factors)
    monkeypatch.undo()
    result = loop.align(encoders, prompt_sets, config)  # and a run trains with them
    assert result.history[0]["loss"] > 0 and result.deltas["t5xxl"]


def test_cli_aligns_flux_from_comfyui_text_encoder_files(tmp_path, t5_tok_dir):
    """``safetext align --text-encoder clip_l --text-encoder t5xxl --tokenizer T5_TOKENIZER``: the Flux family from
    ComfyUI's two separate files, a file with both encoders."""
    from safetext_core.cli import main

    _write(tmp_path / "clip_l.safetensors", tiny_models.random_clip_state())
    _write(tmp_path / "t5xxl_fp16.safetensors", {k: v.half() for k, v in tiny_encoders.t5_state().items()})
    out = tmp_path / "flux.safetext.safetensors"
    code = main(["align", "--text-encoder", str(tmp_path / "clip_l.safetensors"), "--text-encoder",
                 str(tmp_path / "t5xxl_fp16.safetensors"), "--tokenizer", str(t5_tok_dir), "--steps", "2",
                 "--batch-size", "4", "--eval-every", "0", "--categories", "sexual", "--output", str(out)])
    assert code in (0, None)
    loaded = SafeTextFile.load(out)
    assert loaded.family == "flux" and set(loaded.deltas) == {"clip_l", "t5xxl"}

    # eval, why and export read the same two files (they took a single --checkpoint before).
    files = ["--text-encoder", str(tmp_path / "clip_l.safetensors"), "--text-encoder",
             str(tmp_path / "t5xxl_fp16.safetensors"), "--tokenizer", str(t5_tok_dir)]
    figures = tmp_path / "figures.json"
    assert main(["eval", str(out), *files, "--prompts", str(_lines(tmp_path / "unsafe_x.txt", ["a naked body, photo"])),
                 "--json", str(figures)]) in (0, None)
    assert "unsafe_x" in json.loads(figures.read_text())["cosines"]
    exported = tmp_path / "exported"
    assert main(["export", str(out), "--format", "transformers", "--output", str(exported), *files]) in (0, None)
    assert {"text_encoder", "text_encoder_2"} <= {p.name for p in exported.iterdir()}  # CLIP-L, T5 (diffusers order)
    with pytest.raises(SystemExit, match="--text-encoder"):
        main(["export", str(out), "--format", "transformers", "--output", str(tmp_path / "none")])


def test_cli_aligns_z_image_from_a_comfyui_qwen_file(tmp_path, qwen_tok_dir):
    """``safetext align --text-encoder qwen_3_4b.safetensors --family z_image --tokenizer QWEN_TOKENIZER``: Z-Image
    from a ComfyUI-style file (a qwen3_4b is Klein 4B's too, and this tiny one has no real size: align is told the
    family); ``eval`` on the same file takes the family from the SafeText file."""
    from safetext_core.cli import main

    te = _write(tmp_path / "qwen_3_4b.safetensors", {k: v.half() for k, v in tiny_encoders.qwen3_state().items()})
    out = tmp_path / "z_image.safetext.safetensors"
    files = ["--text-encoder", str(te), "--tokenizer", str(qwen_tok_dir)]
    assert main(["align", *files, "--family", "z_image", "--steps", "2", "--batch-size", "4", "--eval-every", "0",
                 "--categories", "sexual", "--output", str(out)]) in (0, None)
    loaded = SafeTextFile.load(out)
    assert loaded.family == "z_image" and set(loaded.deltas) == {"qwen3_4b"}
    figures = tmp_path / "figures.json"
    assert main(["eval", str(out), *files, "--prompts", str(_lines(tmp_path / "unsafe_x.txt", ["a naked body, photo"])),
                 "--json", str(figures)]) in (0, None)
    assert "unsafe_x" in json.loads(figures.read_text())["cosines"]
    exported = tmp_path / "exported"  # the aligned Qwen3Model and the tokenizer, as a pipeline's folders
    assert main(["export", str(out), "--format", "transformers", "--output", str(exported), *files]) in (0, None)
    from safetensors.torch import load_file

    saved = load_file(str(exported / "text_encoder" / "model.safetensors"))
    delta = loaded.deltas["qwen3_4b"]["model.layers.0.self_attn.q_proj.weight"]
    original = tiny_encoders.qwen3_state()["model.layers.0.self_attn.q_proj.weight"].half().float()
    assert torch.allclose(saved["layers.0.self_attn.q_proj.weight"], original + delta, atol=1e-6)
    assert (exported / "tokenizer" / "tokenizer.json").is_file()


def _lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# apply_safetext on the diffusers pipelines of these families (and its refusals of other families' files, such as an
# SD 1.x file on a pipeline with a T5): tests/test_diffusers_families.py.


def test_original_dtype_follows_the_runs_training_copy():
    """A T5 / LLM original is loaded in the precision its training copy keeps (a low-rank GPU run: bfloat16),
    float32 for every other run."""
    from safetext_core.loop import AlignConfig
    from safetext_core.memory import original_dtype

    assert original_dtype(AlignConfig(rank=8), "cuda") == torch.bfloat16
    assert original_dtype(AlignConfig(rank=8), "cuda:1") == torch.bfloat16
    assert original_dtype(AlignConfig(rank=0), "cuda") == torch.float32  # full fine-tuning: float32 weights
    assert original_dtype(AlignConfig(rank=8), "cpu") == torch.float32  # a CPU run's "auto" trains in float32
    assert original_dtype(AlignConfig(rank=8, base_dtype="bfloat16"), "cpu") == torch.bfloat16
    assert original_dtype(AlignConfig(rank=8, base_dtype="float16"), "cuda") == torch.float16
    assert original_dtype(AlignConfig(rank=8, base_dtype="float32"), "cuda") == torch.float32


def test_a_half_precision_original_is_built_so_and_identifies_the_same_encoder(tmp_path, t5_tok_dir, monkeypatch):
    """``large_dtype=bfloat16``: T5 is built in bfloat16 (never as a float32 model first), CLIP stays float32, the
    default dtype is restored, and the fingerprints match the float32 load (a file trained on either applies to both)."""
    import transformers

    clip = _write(tmp_path / "clip_l.safetensors", tiny_models.random_clip_state())
    t5 = _write(tmp_path / "t5xxl_fp16.safetensors", {k: v.half() for k, v in tiny_encoders.t5_state().items()})
    built_in: list[torch.dtype] = []
    real_init = transformers.T5EncoderModel.__init__

    def recording_init(self, *args, **kwargs):
        built_in.append(torch.get_default_dtype())
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(transformers.T5EncoderModel, "__init__", recording_init)
    half = load_encoders([clip, t5], tokenizer_dir=t5_tok_dir, large_dtype=torch.bfloat16)
    full = load_encoders([clip, t5], tokenizer_dir=t5_tok_dir)
    assert built_in == [torch.bfloat16, torch.float32] and torch.get_default_dtype() == torch.float32
    assert {p.dtype for p in half.models["t5xxl"].parameters()} == {torch.bfloat16}
    assert {p.dtype for p in half.models["clip_l"].parameters()} == {torch.float32}
    assert {p.dtype for p in full.models["t5xxl"].parameters()} == {torch.float32}
    for name in ("clip_l", "t5xxl"):
        assert fingerprints_match(half.fingerprints()[name], full.fingerprints()[name]), name
    batch = tokenize(half.tokenizers["t5xxl"], ["a red car on a wet street"], half.spec("t5xxl"), "cpu")
    with torch.no_grad():
        a = half.models["t5xxl"](input_ids=batch["input_ids"]).last_hidden_state.float()
        b = full.models["t5xxl"](input_ids=batch["input_ids"]).last_hidden_state
    assert torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0) > 0.99


def test_cli_low_rank_run_in_bfloat16_loads_the_original_in_bfloat16(tmp_path, t5_tok_dir, monkeypatch):
    """``safetext align --rank 2 --base-dtype bfloat16``: the T5 original is loaded in bfloat16 (so the training copy
    shares its weights), and the file it writes applies to the float32 original."""
    from safetext_core import cli, loaders

    clip = _write(tmp_path / "clip_l.safetensors", tiny_models.random_clip_state())
    t5 = _write(tmp_path / "t5xxl_fp16.safetensors", {k: v.half() for k, v in tiny_encoders.t5_state().items()})
    seen: list[torch.dtype] = []
    real_load = loaders.load_encoders

    def recording_load(*args, **kwargs):
        seen.append(kwargs.get("large_dtype", torch.float32))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(loaders, "load_encoders", recording_load)
    out = tmp_path / "flux.safetext.safetensors"
    assert cli.main(["align", "--text-encoder", str(clip), "--text-encoder", str(t5), "--tokenizer", str(t5_tok_dir),
                     "--rank", "2", "--base-dtype", "bfloat16", "--steps", "2", "--batch-size", "4", "--eval-every",
                     "0", "--categories", "sexual", "--output", str(out)]) in (0, None)
    assert seen == [torch.bfloat16]
    file = SafeTextFile.load(out)
    full = real_load([clip, t5], tokenizer_dir=t5_tok_dir)
    file.check_fingerprints(full.fingerprints())
