"""Unit tests of the extension on Forge and Forge Neo, against stand-ins built from their source.

What the stand-ins copy (each class names its file):

* **Forge** (``lllyasviel/stable-diffusion-webui-forge`` dfdcbab): ``backend/patcher/clip.py`` ``CLIP`` (clones
  share the text-encoder module), ``backend/patcher/base.py`` ``ModelPatcher`` with the keyword-only
  ``add_patches(*, filename, patches, strength_patch)``, ``backend/patcher/lora.py`` ``LoraLoader`` (one per
  module, patches in place lazily when the CLIP is loaded, originals in ``backup``).
* **Forge Neo** (``Haoming02/sd-webui-forge-classic``, branch ``neo``): ``backend/patcher/base.py``, a port of
  ComfyUI's ``ModelPatcher``: positional ``add_patches(patches, strength_patch=1.0, strength_model=1.0)``,
  ``patch_model`` writes patched weights and keeps originals in ``backup[key] = (weight, inplace_update)``,
  shared by clones.
* Both: the text-processing engine (Forge ``ClassicTextProcessingEngine``, Neo ``ClipEngine``):
  ``encode_with_transformers(tokens)`` on ``text_encoder.transformer`` with the token embedding wrapped in
  ``CLIPEmbeddingForTextualInversion`` (its ``weight`` is the inner embedding's parameter; its forward reads
  the inner one), and ``get_learned_conditioning`` that loads the CLIP (patching it) before encoding.

The fixture ``forge`` runs every test on both hosts.
"""
from __future__ import annotations

import sys
import types
from collections import namedtuple
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from safetext_core import SafeTextError
from safetext_core.errors import SafeTextNotApplied
from safetext_core.fingerprint import fingerprint_state_dict
from safetext_core.models import load_canonical_state
from test_a1111_scripts import (HTTPException, _p, _random_deltas, _same_state, _state, _tokenizer,  # noqa: F401
                                _write_file, webui)
from tiny_models import clip_config, random_clip_state

PROMPT = "a photo of a cat"


def _tokens(prompt=PROMPT):
    return _tokenizer()([prompt], padding="max_length", max_length=77, truncation=True, return_tensors="pt")["input_ids"]


def _set_parameter(model, key, value):
    owner_name, _, attribute = key.rpartition(".")
    setattr(model.get_submodule(owner_name), attribute, nn.Parameter(value, requires_grad=False))


def _diff(value, entries):
    value = value.float()
    for strength, patch, strength_model, _, _ in entries:
        assert patch[0] == "diff"
        value = value * strength_model + strength * patch[1][0].float()
    return value


# ------------------------------------------------------------------------------------------ Forge (dfdcbab)
class ForgeLoraLoader:
    """backend/patcher/lora.py ``LoraLoader`` (``diff`` patches only)."""

    def __init__(self, model):
        self.model, self.backup, self.loaded_hash = model, {}, str([])

    @torch.no_grad()
    def refresh(self, lora_patches):
        hashes = str(list(lora_patches.keys()))
        if hashes == self.loaded_hash:
            return
        for key, weight in self.backup.items():
            _set_parameter(self.model, key, weight)
        self.backup = {}
        merged = {}
        for patches in lora_patches.values():
            for key, entries in patches.items():
                merged.setdefault(key, []).extend(entries)
        for key, entries in merged.items():
            weight = dict(self.model.named_parameters())[key]
            self.backup.setdefault(key, weight.to(device="cpu"))
            _set_parameter(self.model, key, _diff(weight, entries).to(weight.dtype))
        self.loaded_hash = hashes


class ForgeModelPatcher:
    """backend/patcher/base.py ``ModelPatcher``: keyword-only ``add_patches``, patches kept per clone."""

    def __init__(self, model):
        self.model, self.lora_patches = model, {}
        if not hasattr(model, "lora_loader"):
            model.lora_loader = ForgeLoraLoader(model)
        self.lora_loader = model.lora_loader

    def clone(self):
        n = ForgeModelPatcher(self.model)
        n.lora_patches = self.lora_patches.copy()
        return n

    def add_patches(self, *, filename, patches, strength_patch=1.0, strength_model=1.0, online_mode=False):
        keys = {k for k, _ in self.model.named_parameters()}
        this = {}
        for key, patch in patches.items():
            if key in keys:
                this.setdefault(key, []).append([strength_patch, patch, strength_model, None, None])
        self.lora_patches[(filename, strength_patch, strength_model, online_mode)] = this
        return set(this)

    def load(self):  # memory_management.load_model_gpu(clip.patcher)
        self.lora_loader.refresh(self.lora_patches)


# ------------------------------------------------------------------------------------------ Forge Neo
Backup = namedtuple("Dimension", ["weight", "inplace_update"])  # ComfyUI's record, name included


class NeoModelPatcher:
    """Forge Neo backend/patcher/base.py (ComfyUI's ``ModelPatcher``): positional ``add_patches``; loading
    unpatches what the last load patched (from ``backup``) and patches this clone's list; clones share ``backup``."""

    def __init__(self, model, backup=None):
        self.model, self.patches = model, {}
        self.backup = {} if backup is None else backup

    def clone(self):
        n = NeoModelPatcher(self.model, self.backup)
        n.patches = {k: v[:] for k, v in self.patches.items()}
        return n

    def add_patches(self, patches, strength_patch=1.0, strength_model=1.0):
        model_sd = self.model.state_dict()
        p = set()
        for key, patch in patches.items():
            if key in model_sd:
                p.add(key)
                self.patches.setdefault(key, []).append((strength_patch, patch, strength_model, None, None))
        return list(p)

    @torch.no_grad()
    def load(self):  # load_model_gpu -> unpatch_model + patch_model
        for key, record in self.backup.items():
            _set_parameter(self.model, key, record.weight)
        self.backup.clear()
        for key, entries in self.patches.items():
            weight = self.model.state_dict(keep_vars=True)[key]
            self.backup[key] = Backup(weight.detach().clone(), False)
            _set_parameter(self.model, key, _diff(weight, entries).to(weight.dtype))


class CLIP:
    """backend/patcher/clip.py ``CLIP`` (both hosts): clones share ``cond_stage_model``."""

    def __init__(self, cond_stage_model=None, patcher_class=None):
        if cond_stage_model is not None:
            self.cond_stage_model = cond_stage_model
            self.patcher = patcher_class(cond_stage_model)

    def clone(self):
        n = CLIP()
        n.cond_stage_model, n.patcher = self.cond_stage_model, self.patcher.clone()
        return n

    def add_patches(self, *args, **kwargs):
        return self.patcher.add_patches(*args, **kwargs)


# ------------------------------------------------------------------------------------------ both
class CLIPEmbeddingForTextualInversion(nn.Module):
    """Forge classic_engine.py / Neo sd_engine.py: re-exposes the inner embedding's parameter as ``weight``."""

    def __init__(self, wrapped):
        super().__init__()
        self.wrapped = wrapped
        self.weight = self.wrapped.weight

    def forward(self, input_ids):
        return self.wrapped(input_ids)


class TextProcessingEngine:
    """Forge ``ClassicTextProcessingEngine`` / Neo ``ClipEngine``, the parts SafeText touches."""

    def __init__(self, text_encoder, embedding_key):
        self.text_encoder, self.embedding_key = text_encoder, embedding_key
        embeddings = self._text_model().embeddings
        embeddings.token_embedding = CLIPEmbeddingForTextualInversion(embeddings.token_embedding)

    def _text_model(self):  # transformers 4 (the hosts' pins) has ``text_model``; 5 holds its modules directly
        return getattr(self.text_encoder.transformer, "text_model", self.text_encoder.transformer)

    def encode_with_transformers(self, tokens):
        outputs = self.text_encoder.transformer(tokens, output_hidden_states=True)
        return self._text_model().final_layer_norm(outputs.hidden_states[-1])


class ForgeSD15:
    """backend/diffusion_engine/sd15.py: the CLIP, then the engine on its ``clip_l``; ``get_learned_conditioning``
    loads the job's CLIP (patching it), then encodes."""

    def __init__(self, canonical, patcher_class):
        from transformers import CLIPTextModel

        transformer = CLIPTextModel(clip_config())
        load_canonical_state(transformer, canonical)
        clip_l = nn.Module()
        clip_l.transformer = transformer.eval()
        clip = CLIP(nn.ModuleDict({"clip_l": clip_l}), patcher_class)
        self.text_processing_engine = TextProcessingEngine(clip_l, "clip_l")
        self.forge_objects = SimpleNamespace(clip=clip)
        self.forge_objects_original = SimpleNamespace(clip=clip)
        self.sd_checkpoint_info = SimpleNamespace(model_name="tiny-forge", filename="tiny-forge.safetensors")

    def get_learned_conditioning(self, prompts):
        self.forge_objects.clip.patcher.load()
        with torch.no_grad():
            return torch.cat([self.text_processing_engine.encode_with_transformers(_tokens(t)) for t in prompts])


HOSTS = {"forge": ForgeModelPatcher, "neo": NeoModelPatcher}


def _add_lora(clip, host, patches):
    """A LoRA through the host's own ``add_patches`` (the two signatures)."""
    if host == "forge":
        return clip.add_patches(filename="lora", patches=patches, strength_patch=1.0)
    return clip.add_patches(patches, 1.0)


@pytest.fixture(params=sorted(HOSTS))
def forge(request, webui):
    canonical = random_clip_state(seed=5)
    model = ForgeSD15(canonical, HOSTS[request.param])
    webui.shared.sd_model = model
    deltas = _random_deltas(canonical, names=("q_proj.weight", "fc1.weight", "fc1.bias", "final_layer_norm",
                                              "token_embedding"))
    _write_file(webui.folder, "forge.safetensors", "sd1", {"clip_l": deltas}, {"clip_l": fingerprint_state_dict(canonical)})
    other = random_clip_state(seed=6)
    _write_file(webui.folder, "other.safetensors", "sd1", {"clip_l": _random_deltas(other)},
                {"clip_l": fingerprint_state_dict(other)})

    def encoded(strength, file_deltas=None, prompt=PROMPT):  # the encoder with W + strength * delta, built apart
        from transformers import CLIPTextModel

        file_deltas = deltas if file_deltas is None else file_deltas
        reference = CLIPTextModel(clip_config())
        load_canonical_state(reference, {k: v + strength * file_deltas[k] if k in file_deltas else v
                                         for k, v in canonical.items()})
        with torch.no_grad():
            return reference.eval()(input_ids=_tokens(prompt)).last_hidden_state

    assert "text_model.embeddings.token_embedding.weight" in deltas
    return SimpleNamespace(host=request.param, model=model, canonical=canonical, deltas=deltas, encoded=encoded)


def _job(webui, model, *args):
    """One job: process, process_batch, the prompt encoding of ``setup_conds``, postprocess."""
    script = webui.script.SafeTextScript()
    p = _p(model)
    p.clear_prompt_cache = lambda: setattr(p, "cleared", True)
    script.process(p, *args)
    script.process_batch(p, *args)
    try:
        return p, model.get_learned_conditioning([PROMPT])
    finally:
        script.postprocess(p, None)


# ------------------------------------------------------------------------------------------ tests
def test_weight_blend_leaves_the_clip_and_its_weights_alone(webui, forge):
    model = forge.model
    clip, before = model.forge_objects.clip, _state(model.forge_objects.clip.cond_stage_model)
    p, cond = _job(webui, model, True, "forge.safetensors", 0.8, "weight")
    assert p.cleared and model.forge_objects.clip is clip
    assert torch.allclose(cond, forge.encoded(0.8), atol=1e-5)
    assert p.extra_generation_params["SafeText mode"] == "weight"
    assert _same_state(before, _state(clip.cond_stage_model))  # nothing written into the encoder
    _, off = _job(webui, model, False)
    assert torch.allclose(off, forge.encoded(0.0), atol=1e-6)


def test_embedding_blend_runs_and_says_so(webui, forge):
    p, cond = _job(webui, forge.model, True, "forge.safetensors", 0.5, "embedding")
    expected = torch.lerp(forge.encoded(0.0), forge.encoded(1.0), 0.5)
    assert torch.allclose(cond, expected, atol=1e-5)
    assert not torch.allclose(cond, forge.encoded(0.5), atol=1e-4)  # not a weight blend under another name
    assert "SafeText mode" not in p.extra_generation_params  # the default mode, read back as "embedding"
    assert webui.infotext.pasted_values(dict(p.extra_generation_params))["mode"] == "embedding"
    assert p.extra_generation_params["SafeText strength"] == 0.5


def test_token_embedding_change_reaches_the_forward(webui, forge):
    """The engines wrap the token embedding; both hosts' patchers replace the wrapper's ``weight`` while its
    forward reads the inner one. A file that changes only the token embedding must still change the output."""
    only = {k: v for k, v in forge.deltas.items() if "token_embedding" in k}
    _write_file(webui.folder, "embedding-only.safetensors", "sd1", {"clip_l": only},
                {"clip_l": fingerprint_state_dict(forge.canonical)})
    _, cond = _job(webui, forge.model, True, "embedding-only.safetensors", 1.0, "weight")
    assert torch.allclose(cond, forge.encoded(1.0, only), atol=1e-5)
    assert not torch.allclose(cond, forge.encoded(0.0), atol=1e-4)


def test_second_job_in_a_row_still_fits(webui, forge):
    _, first = _job(webui, forge.model, True, "forge.safetensors", 1.0, "weight")
    p, second = _job(webui, forge.model, True, "forge.safetensors", 1.0, "weight")
    assert "SafeText fingerprint" in p.extra_generation_params
    assert torch.allclose(first, forge.encoded(1.0), atol=1e-5) and torch.allclose(second, first, atol=1e-6)


def test_applies_a_file_replaced_under_the_same_name(webui, forge):
    _, first = _job(webui, forge.model, True, "forge.safetensors", 1.0, "weight")
    forge.deltas.update({k: 2 * v for k, v in forge.deltas.items()})  # a retrained file, same name
    _write_file(webui.folder, "forge.safetensors", "sd1", {"clip_l": forge.deltas},
                {"clip_l": fingerprint_state_dict(forge.canonical)})
    __import__("os").utime(webui.folder / "forge.safetensors", ns=(1, 1))
    _, second = _job(webui, forge.model, True, "forge.safetensors", 1.0, "weight")
    assert torch.allclose(second, forge.encoded(1.0), atol=1e-5) and not torch.allclose(second, first, atol=1e-3)


def test_fingerprint_and_blend_with_a_lora_of_the_host(webui, forge):
    """A LoRA applied by the host's own patcher (each host's signature) is written into the text encoder: the
    file still fits, and SafeText's difference goes on top of the LoRA'd weights, as on A1111."""
    model = forge.model
    lora_keys = ("layers.0.mlp.fc1.weight",)
    lora = {k: ("diff", (0.5 * torch.ones_like(v),)) for k, v in model.forge_objects.clip.cond_stage_model.named_parameters()
            if k.endswith(lora_keys)}
    with_lora = model.forge_objects_original.clip.clone()
    assert len(_add_lora(with_lora, forge.host, lora)) == 1
    model.forge_objects.clip = with_lora
    model.get_learned_conditioning([PROMPT])  # the LoRA is now written into the weights
    assert {e["name"]: e["fits"] for e in webui.files.list_files()}["forge.safetensors"] is True
    _, cond = _job(webui, model, True, "forge.safetensors", 1.0, "weight")
    both = dict(forge.deltas)
    for key in both:
        if key.endswith(lora_keys):
            both[key] = both[key] + 0.5
    assert torch.allclose(cond, forge.encoded(1.0, both), atol=1e-5)
    model.forge_objects.clip = model.forge_objects_original.clip
    _, cond = _job(webui, model, True, "forge.safetensors", 1.0, "weight")
    assert torch.allclose(cond, forge.encoded(1.0), atol=1e-5)


def test_files_route_marks_files_that_fit(webui, forge):
    routes = {}
    app = SimpleNamespace(add_api_route=lambda path, fn, methods: routes.__setitem__(path, fn))
    webui.api.add_routes(app)
    fits = {e["name"]: e["fits"] for e in routes["/safetext/v1/files"]()["files"]}
    assert fits == {"forge.safetensors": True, "other.safetensors": False}
    _job(webui, forge.model, True, "forge.safetensors", 1.0, "weight")
    assert {e["name"]: e["fits"] for e in routes["/safetext/v1/files"]()["files"]} == fits
    controls = webui.script.SafeTextScript().ui(False)
    assert controls[1].value == "forge.safetensors" and "fits this checkpoint: forge.safetensors" in controls[1].kwargs["info"]


def test_fails_closed_when_the_engine_reads_its_weights_elsewhere(webui, forge, monkeypatch):
    """A host build whose prompt encoding does not read the parameter slots SafeText swaps (here: a frozen copy
    of the encoder) would generate unprotected under a "SafeText on" infotext: the job must stop instead."""
    import copy

    engine = forge.model.text_processing_engine
    frozen = copy.deepcopy(engine.text_encoder.transformer)
    monkeypatch.setattr(engine, "encode_with_transformers",
                        lambda tokens: frozen(tokens, output_hidden_states=True).last_hidden_state)
    with pytest.raises(SafeTextNotApplied, match="did not reach"):
        _job(webui, forge.model, True, "forge.safetensors", 1.0, "embedding")
    _, off = _job(webui, forge.model, False)  # off still generates
    assert torch.allclose(off, forge.encoded(0.0), atol=1e-6)


def test_training_from_the_tab_writes_a_fitting_file(webui, forge):
    from conftest import SAFE_WORDS, UNSAFE_WORDS

    unsafe = "\n".join(f"{w}, {s}" for w in UNSAFE_WORDS for s in ("photo", "sketch", "4k"))
    safe = "\n".join(f"{w}, {s}" for w in SAFE_WORDS for s in ("photo", "sketch", "4k"))
    clip = forge.model.forge_objects.clip
    before = _state(clip.cond_stage_model)
    result = webui.training.train([], unsafe, safe, True, steps=2, learning_rate=1e-3, batch_size=4, name="trained")
    assert result["file"] == "trained.safetensors" and result["family"] == "sd1"
    assert {e["name"]: e["fits"] for e in webui.files.list_files()}["trained.safetensors"] is True
    assert _same_state(before, _state(clip.cond_stage_model))
    _, cond = _job(webui, forge.model, True, "trained.safetensors", 1.0, "weight")
    assert not torch.allclose(cond, forge.encoded(0.0), atol=1e-7)


def _before_first_job(webui, forge, monkeypatch) -> SimpleNamespace:
    """Forge as it starts: a placeholder model without text encoders, and ``forge_model_reload`` (in
    modules/sd_models.py) that loads the selected checkpoint. Returns ``sd_models.model_data``."""
    placeholder = SimpleNamespace(cond_stage_model=None, chunk_length=75)
    model_data = SimpleNamespace(sd_model=placeholder)

    def forge_model_reload():
        model_data.sd_model = forge.model
        return forge.model, True

    sd_models = types.ModuleType("modules.sd_models")
    sd_models.model_data, sd_models.forge_model_reload = model_data, forge_model_reload
    monkeypatch.setitem(sys.modules, "modules.sd_models", sd_models)
    monkeypatch.setattr(sys.modules["modules"], "sd_models", sd_models, raising=False)
    webui.shared.sd_model = placeholder
    return model_data


def test_before_its_first_job(webui, forge, monkeypatch):
    """Forge holds a placeholder without text encoders (``FakeInitialModel``) until a job loads the checkpoint: a
    SafeText request must not be refused for it, and the file list loads the checkpoint to say what fits."""
    model_data = _before_first_job(webui, forge, monkeypatch)
    assert webui.files.current_fingerprints() is None
    assert webui.api.validate_request_args([True, "forge.safetensors", 1.0, "weight"]).enabled
    routes = {}
    webui.api.add_routes(SimpleNamespace(add_api_route=lambda path, fn, methods: routes.__setitem__(path, fn)))
    fits = {e["name"]: e["fits"] for e in routes["/safetext/v1/files"]()["files"]}
    assert fits == {"forge.safetensors": True, "other.safetensors": False} and model_data.sd_model is forge.model


def test_the_panels_refresh_button_loads_the_checkpoint_first(webui, forge, monkeypatch):
    """Forge before its first job: the refresh button beside the file list loads the selected checkpoint (as the
    files route does), so the list can mark the file that fits."""
    model_data = _before_first_job(webui, forge, monkeypatch)
    made = {}
    ui_common = types.ModuleType("modules.ui_common")
    ui_common.create_refresh_button = lambda component, method, args, elem_id: made.update(method=method, args=args)
    monkeypatch.setitem(sys.modules, "modules.ui_common", ui_common)
    webui.script.SafeTextScript._refresh_button(object(), "txt2img")
    made["method"]()  # what Gradio runs on a click, before it asks for the new choices
    update = made["args"]()
    marked = " ".join(str(c) for c in update["choices"]) + " " + update["info"]  # Gradio 4: in labels; 3: in info
    assert model_data.sd_model is forge.model
    assert "forge.safetensors \u2713" in marked or "fits this checkpoint: forge.safetensors" in marked, update


def test_file_for_another_checkpoint_fails_closed(webui, forge):
    script = webui.script.SafeTextScript()
    script.args_from, script.args_to = 1, 5
    with pytest.raises(HTTPException) as info:  # the API refuses it up front
        webui.host_api.Api().init_script_args(SimpleNamespace(alwayson_scripts={"SafeText": {"args": [True, "other"]}}),
                                              [0, False, "", 1.0, "embedding"], None, None,
                                              SimpleNamespace(alwayson_scripts=[script]))
    assert info.value.status_code == 422 and "another checkpoint" in info.value.detail
    p = _p(forge.model)
    script.process_batch(p, True, "other.safetensors", 1.0, "weight")
    with pytest.raises(SafeTextError, match="another checkpoint"):
        forge.model.get_learned_conditioning([PROMPT])


def test_training_before_its_first_job_loads_the_checkpoint(webui, forge, monkeypatch):
    """The tab used before any generation: Forge still holds its placeholder; training loads the checkpoint (the
    caller already holds the queue lock, so loading must not take it again) instead of refusing the placeholder."""
    from conftest import SAFE_WORDS, UNSAFE_WORDS

    model_data = _before_first_job(webui, forge, monkeypatch)
    unsafe = "\n".join(f"{w}, photo" for w in UNSAFE_WORDS)
    safe = "\n".join(f"{w}, photo" for w in SAFE_WORDS)
    with sys.modules["modules.call_queue"].queue_lock:  # as the tab and the API route call it
        result = webui.training.train([], unsafe, safe, True, steps=1, batch_size=2, name="first")
    assert result["family"] == "sd1" and model_data.sd_model is forge.model


def test_the_fail_closed_check_sees_a_changed_pooled_vector(webui):
    """SDXL's bigG returns hidden states at clip skip 2 with the pooled vector (through the final LayerNorm) on
    them: a file that moves only what reaches the pooled vector still changed the conditioning."""
    base, aligned = torch.zeros(1, 77, 8), torch.zeros(1, 77, 8)
    base.pooled, aligned.pooled = torch.zeros(1, 8), torch.ones(1, 8)
    assert not webui.hijack._same(base, aligned)
    aligned.pooled = torch.zeros(1, 8)
    assert webui.hijack._same(base, aligned)


def test_t5_families_are_refused_by_name(webui, forge):
    """A Forge model with a T5 encoder (Flux: CLIP-L + T5-XXL) is refused for training, naming the encoder; its
    CLIP-L alone would otherwise pass for SD 1.x's."""
    from conftest import SAFE_WORDS, UNSAFE_WORDS
    from transformers import T5Config, T5EncoderModel

    t5 = nn.Module()
    t5.transformer = T5EncoderModel(T5Config(vocab_size=64, d_model=16, d_kv=4, d_ff=32, num_layers=1, num_heads=4,
                                             feed_forward_proj="gated-gelu"))
    forge.model.forge_objects.clip.cond_stage_model["t5xxl"] = t5
    unsafe = "\n".join(f"{w}, photo" for w in UNSAFE_WORDS)
    safe = "\n".join(f"{w}, photo" for w in SAFE_WORDS)
    with sys.modules["modules.call_queue"].queue_lock, pytest.raises(SafeTextError, match="t5xxl"):
        webui.training.train([], unsafe, safe, True, steps=1, batch_size=2, name="flux")
    # Nor is an SD 1.x file applied to its CLIP-L (the fingerprint matches: Flux's CLIP-L is SD 1.x's).
    with pytest.raises(SafeTextError, match="t5xxl"):
        _job(webui, forge.model, True, "forge.safetensors", 1.0, "weight")


class SDXLEngine(TextProcessingEngine):
    """sdxl.py's engines: clip skip 2 without the final LayerNorm; bigG also returns its projected pooled vector."""

    def __init__(self, text_encoder, embedding_key, pooled):
        super().__init__(text_encoder, embedding_key)
        self.pooled = pooled

    def encode_with_transformers(self, tokens):
        outputs = self.text_encoder.transformer(tokens, output_hidden_states=True)
        z = outputs.hidden_states[-2]
        if self.pooled:  # transformers' projection model projects the pooled output itself (text_embeds)
            z.pooled = outputs.text_embeds
        return z


def test_sdxl_both_engines_and_the_pooled_vector(webui):
    """Forge's SDXL (backend/diffusion_engine/sdxl.py): ``text_processing_engine_l`` / ``_g``; the blend reaches
    both encoders and bigG's pooled vector."""
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    states = {"clip_l": random_clip_state(seed=7), "clip_g": random_clip_state(seed=8, projection=True)}
    encoders = {}
    for name, cls in (("clip_l", CLIPTextModel), ("clip_g", CLIPTextModelWithProjection)):
        holder = nn.Module()
        holder.transformer = cls(clip_config(projection=32 if name == "clip_g" else None)).eval()
        load_canonical_state(holder.transformer, states[name])
        encoders[name] = holder
    clip = CLIP(nn.ModuleDict(encoders), ForgeModelPatcher)
    model = SimpleNamespace(forge_objects=SimpleNamespace(clip=clip), forge_objects_original=SimpleNamespace(clip=clip),
                            text_processing_engine_l=SDXLEngine(encoders["clip_l"], "clip_l", False),
                            text_processing_engine_g=SDXLEngine(encoders["clip_g"], "clip_g", True),
                            sd_checkpoint_info=SimpleNamespace(model_name="tiny-xl", filename="tiny-xl.safetensors"))
    webui.shared.sd_model = model
    deltas = {name: _random_deltas(state, seed=i) for i, (name, state) in enumerate(states.items())}
    _write_file(webui.folder, "xl.safetensors", "sdxl", deltas, {n: fingerprint_state_dict(s) for n, s in states.items()})

    def encode():
        with torch.no_grad():
            return {n: getattr(model, f"text_processing_engine_{n[-1]}").encode_with_transformers(_tokens())
                    for n in ("clip_l", "clip_g")}

    off = encode()
    script = webui.script.SafeTextScript()
    p = _p(model)
    script.process_batch(p, True, "xl.safetensors", 0.5, "embedding")
    on = encode()
    script.postprocess(p, None)
    for name in ("clip_l", "clip_g"):
        assert not torch.allclose(on[name], off[name], atol=1e-4), name
    assert not torch.allclose(on["clip_g"].pooled, off["clip_g"].pooled, atol=1e-5)
    again = encode()
    assert all(torch.equal(again[n], off[n]) for n in off) and torch.equal(again["clip_g"].pooled, off["clip_g"].pooled)
