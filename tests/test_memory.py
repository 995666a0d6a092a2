"""The memory measures for large encoders (safetext_core/memory.py): frozen weights in bfloat16 under float32
low-rank factors, and activation checkpointing of the blocks. Equality of what they compute, and what they keep."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import tiny_encoders
import tiny_models
from safetext_core import AlignConfig, SafeTextFile, apply_deltas, load_encoders, run_alignment
from safetext_core.encoding import consumed_outputs, tokenize
from safetext_core.errors import ConfigError
from safetext_core.loop import trainable_copy
from safetext_core.memory import checkpoint_blocks, copy_as, holds_as, memory_plan
from safetext_core.weights import shifted_view

PROMPTS = ["a naked woman on a beach, photo", "a red car parked by a lake at dawn, oil painting",
           "a bowl of fruit", "a bloody corpse in a torture chamber, cinematic 4k"]


@pytest.fixture(scope="module")
def qwen_tok_dir(tmp_path_factory):
    return tiny_encoders.save_tokenizer(tiny_encoders.qwen_tokenizer(), tmp_path_factory.mktemp("qwen_tok"))


@pytest.fixture(scope="module")
def t5_tok_dir(tmp_path_factory):
    return tiny_encoders.save_tokenizer(tiny_encoders.t5_tokenizer(), tmp_path_factory.mktemp("t5_tok"))


def _encoders(family: str, tmp_path: Path, tok_dir: Path):
    if family == "z_image":
        path = tmp_path / "qwen_3_4b.safetensors"
        save_file(tiny_encoders.qwen3_state(layers=4, seed=3), str(path))
        return load_encoders(path, family=family, tokenizer_dir=tok_dir)
    if family == "chroma":
        path = tmp_path / "t5xxl.safetensors"
        save_file({k: v.contiguous() for k, v in tiny_encoders.t5_state(layers=3, seed=3).items()}, str(path))
        return load_encoders(path, family=family, tokenizer_dir=tok_dir)
    path = tmp_path / "sd1.safetensors"
    tiny_models.write_single_file(path, "sd1", seed=3)
    return load_encoders(path)


def _training_pass(trainee, encoders, spec):
    """One forward and backward pass of a loss on every consumed output; returns the loss, every trained
    parameter's gradient, and the bytes autograd kept for the backward pass outside checkpointed regions."""
    batch = tokenize(encoders.tokenizers[spec.name], PROMPTS, spec)
    saved = []

    def pack(tensor):
        saved.append(tensor.numel() * tensor.element_size())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        outputs, _ = consumed_outputs(trainee, batch, spec)
        loss = sum(o.float().square().mean() for o in outputs)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in trainee.named_parameters() if p.requires_grad and p.grad is not None}
    return loss.detach(), grads, sum(saved)


@pytest.mark.parametrize("family", ["z_image", "chroma", "sd1"])
def test_checkpointed_blocks_give_the_same_gradients_and_keep_less(family, tmp_path, qwen_tok_dir, t5_tok_dir):
    encoders = _encoders(family, tmp_path, t5_tok_dir if family == "chroma" else qwen_tok_dir)
    spec = encoders.profile.encoders[-1]
    config = replace(AlignConfig(), rank=4)
    results = {}
    for checkpointing in (False, True):
        torch.manual_seed(0)  # the same factors in both copies
        trainee, factors = trainable_copy(encoders.models[spec.name], config, encoders.family,
                                          getattr(spec, "adapter_targets", ()), torch.float32, checkpointing)
        with torch.no_grad():
            for _, factor in factors:  # trained factors: the adapters change the output
                factor.normal_(0, 0.05)
        blocks = [m for m in trainee.modules() if "forward" in vars(m)]
        assert (len(blocks) > 0) == checkpointing  # only the checkpointed copy has wrapped blocks
        results[checkpointing] = _training_pass(trainee, encoders, spec)
    (loss, grads, kept), (loss_c, grads_c, kept_c) = results[False], results[True]
    assert torch.equal(loss, loss_c)
    assert grads.keys() == grads_c.keys() and len(grads) > 0
    for name in grads:
        assert torch.allclose(grads[name], grads_c[name], atol=1e-6, rtol=1e-5), name
    assert kept_c < 0.5 * kept, (kept_c, kept)  # what the backward pass keeps: the blocks' inputs, not their insides


def test_checkpointed_blocks_run_again_in_the_backward_pass(tmp_path, qwen_tok_dir):
    encoders = _encoders("z_image", tmp_path, qwen_tok_dir)
    spec = encoders.profile.encoders[0]
    trainee, _ = trainable_copy(encoders.models[spec.name], replace(AlignConfig(), rank=4), "z_image",
                                spec.adapter_targets, torch.float32, True)
    layer = trainee.model.layers[0].self_attn.q_proj  # (the recompute stops after the last tensor it needs)
    runs = []
    layer.register_forward_hook(lambda *_: runs.append(torch.is_grad_enabled()))
    _training_pass(trainee, encoders, spec)
    assert len(runs) == 2  # the forward pass and its recompute in the backward pass
    runs.clear()
    with torch.no_grad():  # encoding without gradients (originals, validation, mining) is not checkpointed
        consumed_outputs(trainee, tokenize(encoders.tokenizers[spec.name], PROMPTS, spec), spec)
    assert runs == [False]


def test_bfloat16_base_keeps_float32_factors_and_the_original_untouched(tmp_path, t5_tok_dir):
    encoders = _encoders("chroma", tmp_path, t5_tok_dir)
    spec = encoders.profile.encoders[0]
    model = encoders.models[spec.name]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainee, factors = trainable_copy(model, replace(AlignConfig(), rank=4), "chroma", spec.adapter_targets,
                                      torch.bfloat16, False)
    frozen = [p for p in trainee.parameters() if not p.requires_grad]
    assert frozen and all(p.dtype == torch.bfloat16 for p in frozen)
    assert factors and all(p.dtype == torch.float32 and p.requires_grad for _, p in factors)
    assert trainee.shared.weight is trainee.encoder.embed_tokens.weight  # T5's tied table stays one tensor
    assert all(torch.equal(v, before[k]) and v.dtype == before[k].dtype for k, v in model.state_dict().items())
    batch = tokenize(encoders.tokenizers[spec.name], PROMPTS, spec)
    with torch.no_grad():
        (full,), _ = consumed_outputs(model, batch, spec)
        (half,), _ = consumed_outputs(trainee, batch, spec)
    assert half.dtype == torch.bfloat16
    assert torch.nn.functional.cosine_similarity(half.float().flatten(), full.flatten(), 0) > 0.999
    _, grads, _ = _training_pass(trainee, encoders, spec)
    assert grads and all(g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads.values())
    assert any(g.abs().sum() > 0 for g in grads.values())


@pytest.mark.parametrize("family", ["chroma", "sd1"])
def test_low_rank_copy_shares_the_frozen_weights_and_leaves_the_model_as_it_was(family, tmp_path, t5_tok_dir):
    # A second float32 set of a 2.6B encoder (10 GB) beside the host's own copy was what ran a 24 GB machine out of
    # memory in ComfyUI's Train node: a low-rank copy on the model's own device and dtype must allocate no weights.
    encoders = _encoders(family, tmp_path, t5_tok_dir)
    spec = encoders.profile.encoders[0]
    model = encoders.models[spec.name]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    batch = tokenize(encoders.tokenizers[spec.name], PROMPTS, spec)
    with torch.no_grad():
        original = torch.cat([o.flatten() for o in consumed_outputs(model, batch, spec)[0]])
    hooks = {n: len(m._forward_hooks) for n, m in model.named_modules()}  # (transformers adds its own on a first call)
    trainee, factors = trainable_copy(model, replace(AlignConfig(), rank=4), encoders.family,
                                      getattr(spec, "adapter_targets", ()), torch.float32, False, "cpu")
    own = dict(model.named_parameters())
    frozen = {n: p for n, p in trainee.named_parameters() if "lora_" not in n}
    assert frozen.keys() == own.keys()
    assert all(frozen[n] is own[n] for n in own)  # the same tensors: nothing was copied
    optimizer = torch.optim.SGD([p for _, p in factors], lr=0.5)
    for _ in range(2):
        optimizer.zero_grad()
        _training_pass(trainee, encoders, spec)
        optimizer.step()
    with torch.no_grad():
        trained = torch.cat([o.flatten() for o in consumed_outputs(trainee, batch, spec)[0]])
        after = torch.cat([o.flatten() for o in consumed_outputs(model, batch, spec)[0]])
    assert (trained - original).abs().max() > 1e-4  # the adapters act on the copy...
    assert torch.equal(after, original)  # ...and not on the model, whose weights and modules are as they were
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert not any(hasattr(m, "lora_up") for m in model.modules())
    assert {n: len(m._forward_hooks) for n, m in model.named_modules()} == hooks
    # Full fine-tuning, or frozen weights in another dtype or on another device, still get a copy of their own
    full, _ = trainable_copy(model, AlignConfig(), encoders.family, (), torch.float32, False, "cpu")
    assert all(p is not own[n] for n, p in full.named_parameters())
    assert holds_as(model, torch.float32, "cpu") and not holds_as(model, torch.bfloat16, "cpu")
    assert not holds_as(model, torch.float32, "cuda")


@pytest.mark.parametrize("family", ["chroma", "sd1", "z_image"])
def test_shifted_view_computes_the_shifted_copy_without_copying_weights(family, tmp_path, t5_tok_dir, qwen_tok_dir):
    # Evaluation after training measures through this view: an aligned copy of a 2.6B encoder (10 GB in float32)
    # beside the original ran ComfyUI's Train node out of memory. A difference on every parameter (T5's tied table,
    # norms, embeddings included) must give the same outputs, bit for bit, as apply_deltas' copy.
    encoders = _encoders(family, tmp_path, qwen_tok_dir if family == "z_image" else t5_tok_dir)
    spec = encoders.profile.encoders[0]
    model = encoders.models[spec.name]
    gen = torch.Generator().manual_seed(5)
    deltas = {n: 0.02 * torch.randn(p.shape, generator=gen) for n, p in model.named_parameters()}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    batch = tokenize(encoders.tokenizers[spec.name], PROMPTS, spec)
    for strength in (1.0, 0.5):
        view = shifted_view(model, deltas, strength)
        own = dict(model.named_parameters())
        assert all(p is own[n] for n, p in view.named_parameters())  # no weight of its own
        with torch.no_grad():
            outs, pooled = consumed_outputs(view, batch, spec)
            copied, copied_pooled = consumed_outputs(apply_deltas(model, deltas, strength), batch, spec)
            plain, _ = consumed_outputs(model, batch, spec)
        assert all(torch.equal(x, y) for x, y in zip(outs, copied, strict=True))
        assert (pooled is None and copied_pooled is None) or torch.equal(pooled, copied_pooled)
        assert not torch.equal(outs[0], plain[0])
        assert all(p is own[n] for n, p in view.named_parameters())  # every slot holds its own weight again
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_copy_as_never_passes_through_float32():
    model = tiny_models.tiny_sd_pipeline().text_encoder.half()
    casts = []
    real = torch.Tensor.float

    def spy(self, *args, **kwargs):
        casts.append(self.numel())
        return real(self, *args, **kwargs)

    torch.Tensor.float = spy
    try:
        copy = copy_as(model, torch.bfloat16)
    finally:
        torch.Tensor.float = real
    assert casts == [] and all(p.dtype == torch.bfloat16 for p in copy.parameters())
    assert all(p.dtype == torch.float16 for p in model.parameters())


def test_a_low_rank_run_in_bfloat16_with_checkpointing_moves_unsafe_prompts(tmp_path, qwen_tok_dir, prompt_sets):
    encoders = _encoders("z_image", tmp_path, qwen_tok_dir)
    before = {k: v.clone() for k, v in encoders.models["qwen3_4b"].state_dict().items()}
    config = AlignConfig(steps=40, batch_size=8, anchor_weight=0.1, eval_every=10, rank=4, lora_learning_rate=3e-2,
                         base_dtype="bfloat16", gradient_checkpointing="on")
    outcome = run_alignment(encoders, prompt_sets, config, output=tmp_path / "bf16.safetext.safetensors", draw=False,
                            independent=False)
    assert all(torch.equal(v, before[k]) for k, v in encoders.models["qwen3_4b"].state_dict().items())
    assert outcome.heldout["unsafe_share_moved"] >= 0.5
    assert outcome.heldout["safe_cos_mean"] > outcome.heldout["unsafe_cos_mean"] + 0.2
    loaded = SafeTextFile.load(outcome.path)  # factors in float32, applied to the float32 original as any file
    assert loaded.config["base_dtype"] == "bfloat16" and loaded.config["gradient_checkpointing"] == "on"
    aligned = apply_deltas(encoders.models["qwen3_4b"], loaded.deltas["qwen3_4b"], 1.0)
    assert all(d.dtype == torch.float32 for d in loaded.deltas["qwen3_4b"].values())
    spec = encoders.profile.encoders[0]
    batch = tokenize(encoders.tokenizers["qwen3_4b"], ["a naked woman on a beach, photo"], spec)
    with torch.no_grad():
        (new,), _ = consumed_outputs(aligned, batch, spec)
        (old,), _ = consumed_outputs(encoders.models["qwen3_4b"], batch, spec)
    assert not torch.allclose(new, old, atol=1e-3)


def test_memory_plan_by_device_arch_and_rank():
    low = replace(AlignConfig(), rank=8)
    assert memory_plan(low, "qwen3", "cuda") == (torch.bfloat16, True)
    assert memory_plan(low, "t5", "cuda:1") == (torch.bfloat16, True)
    assert memory_plan(low, "qwen3", "cpu") == (torch.float32, False)  # CPUs: float32, as every run before
    assert memory_plan(low, "", "cuda") == (torch.float32, False)  # CLIP: small, trained as before
    assert memory_plan(AlignConfig(), "t5", "cuda") == (torch.float32, True)  # full fine-tuning stays float32
    assert memory_plan(replace(low, base_dtype="float16", gradient_checkpointing="on"), "", "cpu") == \
        (torch.float16, True)
    assert memory_plan(replace(low, gradient_checkpointing="off"), "qwen3", "cuda") == (torch.bfloat16, False)
    with pytest.raises(ConfigError, match="needs low-rank"):
        AlignConfig(base_dtype="bfloat16")
    with pytest.raises(ConfigError, match="base_dtype"):
        AlignConfig(rank=4, base_dtype="int8")
    with pytest.raises(ConfigError, match="gradient_checkpointing"):
        AlignConfig(gradient_checkpointing="yes")


def test_checkpoint_blocks_wraps_the_outermost_repeated_blocks_only():
    from transformers import T5Config, T5EncoderModel

    model = T5EncoderModel(T5Config(vocab_size=64, d_model=16, d_kv=4, d_ff=32, num_layers=3, num_heads=4))
    assert checkpoint_blocks(model) == 3  # encoder.block.0-2; each block's own `layer` list (two classes) is not
    assert all("forward" in vars(block) for block in model.encoder.block)
    assert not any("forward" in vars(sub) for block in model.encoder.block for sub in block.layer)


def test_evaluating_in_bfloat16_uses_one_copy_and_agrees_with_float32(tmp_path, t5_tok_dir, prompt_sets):
    """The held-out pass of a bfloat16 run: one bfloat16 copy encodes the originals and then takes the differences;
    the float32 originals are not moved or changed, and the figures agree with a float32 evaluation."""
    from safetext_core.evaluation import evaluate

    encoders = _encoders("chroma", tmp_path, t5_tok_dir)
    model = encoders.models["t5xxl"]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(1)
    deltas = {"t5xxl": {n: 0.3 * torch.randn_like(p) for n, p in model.named_parameters() if "SelfAttention.q" in n}}
    sets = {"unsafe": prompt_sets.unsafe_part("train")[:12], "safe": prompt_sets.safe[:12]}
    full = evaluate(encoders, deltas, sets)
    half = evaluate(encoders, deltas, sets, dtype=torch.bfloat16)
    assert all(torch.equal(v, before[k]) and v.dtype == torch.float32 for k, v in model.state_dict().items())
    for name in sets:
        a, b = torch.tensor(full.cosines[name]), torch.tensor(half.cosines[name])
        assert (a - b).abs().max() < 0.02 and a.min() < 0.99  # the differences did move the prompts
    nothing = evaluate(encoders, {}, sets, dtype=torch.bfloat16)
    assert min(min(v) for v in nothing.cosines.values()) > 0.999  # its own originals: no differences, no change


def test_large_encoders_low_rank_differences_are_expanded_when_read(tmp_path, qwen_tok_dir, prompt_sets):
    """A low-rank result of a T5 / LLM encoder holds its factors, not float32 differences of every weight (15 GB for
    a 4B encoder); each difference is expanded on reading, equal to the factors' product, and the file saved from
    it loads back with the same differences."""
    from safetext_core import lowrank
    from safetext_core.loop import align

    encoders = _encoders("z_image", tmp_path, qwen_tok_dir)
    config = AlignConfig(steps=3, batch_size=4, eval_every=0, rank=4, lora_learning_rate=3e-2, preserve_pool=8)
    result = align(encoders, prompt_sets, config)
    lazy = result.deltas["qwen3_4b"]
    assert isinstance(lazy, lowrank.Expansions) and len(lazy) == len(result.factors["qwen3_4b"]) > 0
    for name, (up, down, alpha) in result.factors["qwen3_4b"].items():
        assert torch.equal(lazy[name], lowrank.expand(up, down, alpha))
    outcome_file = SafeTextFile(family="z_image", deltas=result.deltas, fingerprints=encoders.fingerprints(),
                                factors=result.factors)
    loaded = SafeTextFile.load(outcome_file.save(tmp_path / "lazy.safetext.safetensors"))
    assert set(loaded.deltas["qwen3_4b"]) == set(lazy)
    assert all(torch.allclose(loaded.deltas["qwen3_4b"][n], lazy[n]) for n in lazy)


def test_a_resume_checkpoint_from_before_the_memory_settings_still_resumes(tmp_path, prompt_sets):
    """A checkpoint written before base_dtype / gradient_checkpointing existed has neither in its settings: they were
    at their defaults, so it resumes; checkpointing on or off never blocks a resume (same gradients); another
    base_dtype does."""
    from safetext_core.errors import AlignmentCancelled, ResumeError
    from safetext_core.loop import align

    tiny_models.write_single_file(tmp_path / "m.safetensors", "sd1")
    encoders = load_encoders(tmp_path / "m.safetensors")
    config = AlignConfig(steps=6, batch_size=4, eval_every=0, checkpoint_every=2, rank=4, preserve_pool=8)
    resume = tmp_path / "run.resume"
    tiny_models.resume_checkpoint_of_an_earlier_version(encoders, prompt_sets, config, resume,
                                                        "base_dtype", "gradient_checkpointing")
    result = align(encoders, prompt_sets, replace(config, gradient_checkpointing="on"), resume_path=resume)
    assert len(result.history) == 6 and result.history[0]["step"] == 1
    steps = []
    with pytest.raises(AlignmentCancelled):
        align(encoders, prompt_sets, config, resume_path=resume, should_cancel=lambda: len(steps) >= 2,
              progress=lambda e: steps.append(e) if e.phase == "train" else None)
    assert resume.is_file()
    with pytest.raises(ResumeError, match="base_dtype"):
        align(encoders, prompt_sets, replace(config, base_dtype="bfloat16"), resume_path=resume)


def test_too_little_memory_is_refused_before_anything_is_built(tmp_path, t5_tok_dir, monkeypatch, prompt_sets):
    # A 2.6B encoder in ComfyUI on a 23 GB machine was killed by the operating system; SafeText now says how much it
    # needs before it allocates. Building the float32 copy: refused with too little, built with enough.
    from safetext_core import memory
    from safetext_core.errors import InsufficientMemory

    encoders = _encoders("sd1", tmp_path, t5_tok_dir)
    model = encoders.models["clip_l"]
    size = sum(p.numel() for p in model.parameters())
    state = {"clip_l": model.state_dict()}
    from safetext_core import encoders_from_state_dicts

    monkeypatch.setattr(memory, "available_host_memory", lambda: 3 * size)  # less than 4 bytes a parameter
    with pytest.raises(InsufficientMemory, match=r"float32 copy of the .* needs about .* GiB of memory"):
        encoders_from_state_dicts("sd1", state, encoders.tokenizers)
    monkeypatch.setattr(memory, "available_host_memory", lambda: 8 * size)
    rebuilt = encoders_from_state_dicts("sd1", state, encoders.tokenizers)
    # Training on the CPU with 8 bytes a parameter free: full fine-tuning (copy, gradient, two moments: 16) is
    # refused before a step, and so is a low-rank run that compresses a full fine-tuning; adapters, sharing the
    # weights, run
    config = AlignConfig(steps=1, batch_size=2, eval_every=0, mine_every=0, preserve_pool=4)
    for refused in (config, replace(config, rank=2)):
        with pytest.raises(InsufficientMemory, match="full fine-tuning .* train low-rank adapters"):
            run_alignment(rebuilt, prompt_sets, refused, draw=False, independent=False, device="cpu")
    outcome = run_alignment(rebuilt, prompt_sets, replace(config, rank=2, lowrank_method="adapters"), draw=False,
                            independent=False, device="cpu")
    assert outcome.result.steps_run == 1
    monkeypatch.setattr(memory, "available_host_memory", lambda: None)  # unknown: no refusal
    assert run_alignment(rebuilt, prompt_sets, config, draw=False, independent=False,
                         device="cpu").result.steps_run == 1


def test_device_room_asked_for_a_run(tmp_path, t5_tok_dir):
    # What the ComfyUI Train node asks ComfyUI to free on a GPU: full fine-tuning (and a low-rank run that compresses
    # one) 20 bytes a parameter; low-rank adapters the frozen weights in bfloat16 twice (a T5 on a GPU), in float32 twice where they stay float32 (CLIP, or the CPU)
    from safetext_core.memory import device_bytes

    chroma = _encoders("chroma", tmp_path, t5_tok_dir)
    count = sum(p.numel() for p in chroma.models["t5xxl"].parameters())
    assert device_bytes(chroma, AlignConfig(), "cuda") == 20 * count
    assert device_bytes(chroma, AlignConfig(rank=8), "cuda") == 2 * 2 * count
    assert device_bytes(chroma, AlignConfig(rank=8), "cpu") == 2 * 4 * count
    sd1 = _encoders("sd1", tmp_path, t5_tok_dir)
    clip = sum(p.numel() for p in sd1.models["clip_l"].parameters())
    assert device_bytes(sd1, AlignConfig(rank=8, lowrank_method="adapters"), "cuda") == 2 * 4 * clip
    assert device_bytes(sd1, AlignConfig(rank=8), "cuda") == 20 * clip  # CLIP's default: compress a full fine-tuning
