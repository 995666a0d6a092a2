"""Low-rank alignment on tiny SD 1.x / 2.x / SDXL models: train, save, load back, apply, and the hosts' key names.

The host key tests use *oracles*: re-implementations, written for these tests, of the key-mapping rules read in
the hosts' source (ComfyUI 0.3.64 ``comfy/lora.py`` ``model_lora_keys_clip`` and ``load_lora``; AUTOMATIC1111
``extensions-builtin/Lora/networks.py`` ``convert_diffusers_name_to_compvis``, ``load_network`` and
``network_apply_weights``, the rules unchanged through v1.10.1). They are not the hosts' code: the integration
suites (tests/integration, docs/lowrank.md) are what runs the real hosts.
"""
from __future__ import annotations

import copy
import re
from dataclasses import replace

import pytest
import torch
from safetensors import safe_open

import tiny_models
from safetext_core import AlignConfig, SafeTextFile, apply_deltas, load_encoders, run_alignment
from safetext_core.encoding import consumed_outputs, tokenize
from safetext_core.errors import ConfigError
from safetext_core.lowrank import attach_adapters, expand, half_exact, in_half_precision, method_for, truncated_svd
from safetext_core.models import openclip_to_hf
from safetext_core.weights import ShiftPlan, blend_outputs

LOW = AlignConfig(steps=12, batch_size=8, rank=4, lora_learning_rate=2e-2, anchor_weight=0.1, eval_every=6,
                  early_stop=False, lowrank_method="adapters")
# The other way to a low-rank file (the default for CLIP): full fine-tuning, each projection's change cut to rank 4.
COMPRESSED = replace(LOW, lowrank_method="compress", learning_rate=2e-3)
BLOCK_PROJECTION = r"layers\.\d+\.(self_attn\.(q|k|v|out)_proj|mlp\.fc[12])\.weight$"
PROMPT = "a naked woman on a bed, photo"


@pytest.fixture(scope="module", params=["sd1", "sd2", "sdxl", "sd1-compress", "sdxl-compress"])
def trained(request, tmp_path_factory):
    from conftest import small_prompt_sets

    family, _, method = request.param.partition("-")
    folder = tmp_path_factory.mktemp(request.param)
    states = tiny_models.write_single_file(folder / "model.safetensors", family)
    encoders = load_encoders(folder / "model.safetensors")
    path = folder / "low.safetext.safetensors"
    outcome = run_alignment(encoders, small_prompt_sets(), COMPRESSED if method else LOW, output=path, draw=False)
    return family, encoders, outcome, states, path


def _keys(path) -> list[str]:
    with safe_open(str(path), "pt") as f:
        return list(f.keys())


def _outputs(model, encoders, spec, prompt=PROMPT):
    batch = tokenize(encoders.tokenizers[spec.name], [prompt], spec, torch.device("cpu"))
    with torch.no_grad():
        return consumed_outputs(model, batch, spec)


def _adapted(model, factors):
    """The encoder as training saw it: the frozen weights plus forward hooks running the saved factors."""
    adapted = copy.deepcopy(model).float().eval()
    names = sorted(p[: -len(".weight")] for p in factors)
    attach_adapters(adapted, 1, 1.0, [re.escape(n) + "$" for n in names])
    modules = dict(adapted.named_modules())
    for param, (up, down, alpha) in factors.items():
        module = modules[param[: -len(".weight")]]
        module.lora_up = torch.nn.Parameter(up.clone())
        module.lora_down = torch.nn.Parameter(down.clone())
        module.lora_scale = alpha / up.shape[1]
    return adapted


# ------------------------------------------------------------------------------------------ train, save, load
def test_low_rank_file_is_small_and_loads_back_exactly(trained):
    family, encoders, outcome, _, path = trained
    loaded = SafeTextFile.load(path)
    assert loaded.config["rank"] == 4
    assert set(loaded.factors) == set(outcome.result.factors) == {s.name for s in encoders.profile.encoders}
    for encoder, params in outcome.result.factors.items():
        model_params = dict(encoders.models[encoder].named_parameters())
        assert set(params) == set(loaded.factors[encoder]) == set(loaded.deltas[encoder])
        for param, (up, down, alpha) in params.items():
            assert up.shape[1] == down.shape[0] == 4 and alpha == 4.0
            got_up, got_down, got_alpha = loaded.factors[encoder][param]
            assert torch.equal(got_up, up) and torch.equal(got_down, down) and got_alpha == alpha
            # What was evaluated is what every loader expands, bit for bit.
            assert torch.equal(loaded.deltas[encoder][param], outcome.file.deltas[encoder][param])
            assert loaded.deltas[encoder][param].shape == model_params[param].shape
        # Only the block projections were trained: embeddings, layer norms and biases are untouched.
        assert all(re.search(BLOCK_PROJECTION, p) for p in params)
    keys = _keys(path)
    assert not [k for k in keys if k.endswith((".diff", ".diff_b"))]
    with safe_open(str(path), "pt") as f:  # two bytes a factor, as shared LoRAs are; what was evaluated, exactly
        assert {f.get_tensor(k).dtype for k in keys if ".lora_" in k} == {torch.float16}
    stored = sum(t[0].numel() + t[1].numel() for ps in loaded.factors.values() for t in ps.values())
    assert stored < 0.5 * loaded.parameter_count()  # rank 4 of 32-64 wide layers
    assert "rank=4" in loaded.describe()


def test_strength_one_equals_the_adapted_encoder_and_modes_blend(trained):
    family, encoders, outcome, _, path = trained
    loaded = SafeTextFile.load(path)
    for spec in encoders.profile.encoders:
        model = encoders.models[spec.name]
        adapted = _adapted(model, loaded.factors[spec.name])
        merged = apply_deltas(model, loaded.deltas[spec.name])
        original, _ = _outputs(model, encoders, spec)
        hooked, _ = _outputs(adapted, encoders, spec)
        at_one, _ = _outputs(merged, encoders, spec)
        assert not torch.allclose(hooked[0], original[0], atol=1e-4)  # training moved it
        assert torch.allclose(at_one[0], hooked[0], atol=1e-5, rtol=1e-4)
        # Weight blend through the hosts' shared plan: strength 0 is the original bit for bit, 1 the merged encoder.
        for strength, expected in ((0.0, original), (1.0, at_one)):
            plan = ShiftPlan(model, loaded.deltas[spec.name], strength)
            with plan.swapped():
                got, _ = _outputs(model, encoders, spec)
            assert torch.equal(got[0], expected[0])
        # Embedding blend: exact lerp at every strength, the ends bit for bit.
        for strength in (0.0, 0.3, 1.0):
            blended = blend_outputs(original[0], at_one[0], strength)
            assert torch.equal(blended, torch.lerp(original[0], at_one[0], strength))
        assert torch.equal(blend_outputs(original[0], at_one[0], 0.0), original[0])
        assert torch.equal(blend_outputs(original[0], at_one[0], 1.0), at_one[0])
        assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                        encoders.models[spec.name].state_dict().values()))


def test_diffusers_apply_uses_low_rank_files(trained):
    from safetext_core import apply_safetext

    family, encoders, outcome, states, path = trained
    pipe = (tiny_models.tiny_sd_pipeline(states["clip_l"]) if family == "sd1"
            else tiny_models.tiny_sd_pipeline(states["clip_h"], family="sd2") if family == "sd2"
            else tiny_models.tiny_sdxl_pipeline(states["clip_l"], states["clip_g"]))
    ids = pipe.tokenizer(PROMPT, padding="max_length", max_length=77, return_tensors="pt").input_ids

    def text():
        with torch.no_grad():
            return pipe.text_encoder(ids, output_hidden_states=True).hidden_states[-2]

    baseline = text()
    handle = apply_safetext(pipe, path, strength=1.0, mode="embedding")
    handle.enabled = False
    assert torch.equal(text(), baseline)
    handle.enabled = True
    at_one = text()
    assert not torch.allclose(at_one, baseline, atol=1e-4)
    handle.strength = 0.5
    assert torch.allclose(text(), torch.lerp(baseline, at_one, 0.5), atol=1e-6)
    handle.mode = "weight"
    handle.strength = 1.0
    assert torch.allclose(text(), at_one, atol=1e-5)
    handle.remove()
    assert torch.equal(text(), baseline)


def test_low_rank_config_errors_and_targets(tmp_path, prompt_sets):
    with pytest.raises(ConfigError, match="lora_targets"):
        AlignConfig(rank=4, train=("mlp",))
    with pytest.raises(ConfigError):
        AlignConfig(rank=-1)
    tiny_models.write_single_file(tmp_path / "sd2.safetensors", "sd2")
    encoders = load_encoders(tmp_path / "sd2.safetensors")
    with pytest.raises(ConfigError, match="all four"):  # A1111 applies OpenCLIP q/k/v/out only together
        run_alignment(encoders, prompt_sets, AlignConfig(steps=1, rank=2, lora_targets=(r"q_proj",)), draw=False)
    with pytest.raises(ConfigError, match="no linear layer"):
        run_alignment(encoders, prompt_sets, AlignConfig(steps=1, rank=2, lora_targets=("nothing_here",)), draw=False)
    config = AlignConfig(steps=3, batch_size=4, rank=2, lora_targets=(r"mlp\.fc1",), eval_every=0)
    outcome = run_alignment(encoders, prompt_sets, config, draw=False)
    assert {p.split(".")[-2] for p in outcome.file.deltas["clip_h"]} == {"fc1"}


def test_compress_cuts_the_full_runs_change_to_the_rank(tmp_path, prompt_sets):
    """A compressing run trains exactly as full fine-tuning does; its file holds each block projection's change cut
    to the rank by SVD (in float16 factors) and leaves out what no host's LoRA loader takes (embeddings, norms)."""
    from safetext_core.loop import align

    tiny_models.write_single_file(tmp_path / "m.safetensors", "sd1")
    encoders = load_encoders(tmp_path / "m.safetensors")
    full_config = AlignConfig(steps=4, batch_size=4, learning_rate=2e-3, eval_every=0, preserve_pool=8)
    full = align(encoders, prompt_sets, full_config).deltas["clip_l"]
    low = align(encoders, prompt_sets, replace(full_config, rank=3))  # "auto": compress, for CLIP
    projections = {name for name in full if re.search(BLOCK_PROJECTION, name)}
    assert projections and set(full) - projections  # the full run also changed embeddings and norms
    assert set(low.factors["clip_l"]) == set(low.deltas["clip_l"]) == projections
    for name in projections:
        up, down, alpha = low.factors["clip_l"][name]
        assert up.shape[1] == down.shape[0] == 3 and alpha == 3.0
        cut = expand(*in_half_precision(*truncated_svd(full[name], 3)))
        assert torch.equal(expand(up, down, alpha), cut) and torch.equal(low.deltas["clip_l"][name], cut)
        assert torch.linalg.matrix_rank(cut) == 3 < torch.linalg.matrix_rank(full[name])
    adapters = align(encoders, prompt_sets, replace(full_config, rank=3, lowrank_method="adapters"))
    name = sorted(projections)[0]
    assert not torch.allclose(adapters.deltas["clip_l"][name], low.deltas["clip_l"][name], atol=1e-6)


def test_which_low_rank_method_runs():
    assert method_for(AlignConfig(), ["clip"]) == ""
    assert method_for(AlignConfig(rank=8), ["clip", "clip"]) == "compress"
    assert method_for(AlignConfig(rank=8), ["clip", "t5"]) == "adapters"  # full fine-tuning of T5-XXL would not fit
    assert method_for(AlignConfig(rank=8), ["qwen3"]) == "adapters"
    assert method_for(AlignConfig(rank=8, base_dtype="bfloat16"), ["clip"]) == "adapters"
    assert method_for(AlignConfig(rank=8, lowrank_method="adapters"), ["clip"]) == "adapters"
    assert method_for(AlignConfig(rank=8, lowrank_method="compress"), ["t5"]) == "compress"
    with pytest.raises(ConfigError, match="lowrank_method must be one of"):
        AlignConfig(rank=8, lowrank_method="svd")
    with pytest.raises(ConfigError, match="needs adapters"):
        AlignConfig(rank=8, lowrank_method="compress", base_dtype="bfloat16")


def test_resume_continues_a_low_rank_run(tmp_path, prompt_sets):
    from safetext_core import AlignmentCancelled
    from safetext_core.loop import align

    tiny_models.write_single_file(tmp_path / "m.safetensors", "sd1")
    encoders = load_encoders(tmp_path / "m.safetensors")
    config = AlignConfig(steps=6, batch_size=4, rank=2, eval_every=0, checkpoint_every=1)
    straight = align(encoders, prompt_sets, config)
    calls = {"n": 0}

    def cancel_at_three():
        calls["n"] += 1
        return calls["n"] == 4

    resume = tmp_path / "run.resume"
    with pytest.raises(AlignmentCancelled):
        align(encoders, prompt_sets, config, should_cancel=cancel_at_three, resume_path=resume)
    resumed = align(encoders, prompt_sets, config, resume_path=resume)
    for param, (up, down, _) in straight.factors["clip_l"].items():
        assert torch.allclose(resumed.factors["clip_l"][param][0], up, atol=1e-6)
        assert torch.allclose(resumed.factors["clip_l"][param][1], down, atol=1e-6)


# ------------------------------------------------------------------------------------------ host key oracles
_CLIP_MAP = {"mlp.fc1": "mlp_fc1", "mlp.fc2": "mlp_fc2", "self_attn.k_proj": "self_attn_k_proj",
             "self_attn.q_proj": "self_attn_q_proj", "self_attn.v_proj": "self_attn_v_proj",
             "self_attn.out_proj": "self_attn_out_proj"}


def comfy_key_map(sdk: set[str]) -> dict[str, str]:
    """Oracle of ComfyUI 0.3.64 ``model_lora_keys_clip`` (text-encoder part): LoRA stem -> CLIP state key."""
    key_map = {"text_encoders." + k[: -len(".weight")]: k for k in sdk if k.endswith(".weight")}
    clip_l_present = False
    for b in range(32):
        for c, kohya in _CLIP_MAP.items():
            k = f"clip_h.transformer.text_model.encoder.layers.{b}.{c}.weight"
            if k in sdk:
                key_map[f"lora_te_text_model_encoder_layers_{b}_{kohya}"] = k
                key_map[f"lora_te1_text_model_encoder_layers_{b}_{kohya}"] = k
            k = f"clip_l.transformer.text_model.encoder.layers.{b}.{c}.weight"
            if k in sdk:
                key_map[f"lora_te_text_model_encoder_layers_{b}_{kohya}"] = k
                key_map[f"lora_te1_text_model_encoder_layers_{b}_{kohya}"] = k
                clip_l_present = True
            k = f"clip_g.transformer.text_model.encoder.layers.{b}.{c}.weight"
            if k in sdk:
                key_map[f"lora_te{'2' if clip_l_present else ''}_text_model_encoder_layers_{b}_{kohya}"] = k
    return key_map


def comfy_loaded_keys(keys: list[str], key_map: dict[str, str]) -> tuple[dict[str, str], set[str]]:
    """Oracle of ComfyUI ``load_lora`` for plain LoRA factors: {state key: stem} and the keys it reports as
    'lora key not loaded'."""
    loaded, patched = set(), {}
    for stem, target in key_map.items():
        if f"{stem}.lora_up.weight" in keys and f"{stem}.lora_down.weight" in keys:
            patched[target] = stem
            loaded |= {f"{stem}.lora_up.weight", f"{stem}.lora_down.weight"}
            if f"{stem}.alpha" in keys:
                loaded.add(f"{stem}.alpha")
    return patched, set(keys) - loaded


def a1111_modules(family: str, states: dict[str, dict[str, torch.Tensor]]) -> tuple[dict[str, str], set[str]]:
    """The ``network_layer_mapping`` names A1111 builds for the text encoders (``wrapped.named_modules()``,
    dots to underscores; SDXL embedders prefixed ``0_`` / ``1_``) -> the state key they hold, and the names
    that are ``MultiheadAttention`` modules (OpenCLIP's fused attention)."""
    names: dict[str, str] = {}
    mha: set[str] = set()

    def add(prefix: str, keys):
        for key in keys:
            module = key.rsplit(".", 1)[0]
            name = prefix + module.replace(".", "_")
            names.setdefault(name, key)
            if key.endswith("attn.in_proj_weight"):
                mha.add(name)

    encoders = {"sd1": [("", "transformer.", "clip_l", False)], "sd2": [("", "model.", "clip_h", True)],
                "sdxl": [("0_", "transformer.", "clip_l", False), ("1_", "model.", "clip_g", True)]}[family]
    for prefix, inner, encoder, openclip in encoders:
        state = tiny_models.to_openclip(states[encoder]) if openclip else states[encoder]
        add(prefix, [inner + k for k in state])
    return names, mha


def a1111_convert(key: str, is_sd2: bool) -> str:
    """Oracle of A1111's ``convert_diffusers_name_to_compvis`` for text-encoder keys."""
    m = re.match(r"lora_te_text_model_encoder_layers_(\d+)_(.+)", key)
    if m:
        layer, rest = m.groups()
        if is_sd2:
            rest = rest.replace("mlp_fc1", "mlp_c_fc").replace("mlp_fc2", "mlp_c_proj").replace("self_attn", "attn")
            return f"model_transformer_resblocks_{layer}_{rest}"
        return f"transformer_text_model_encoder_layers_{layer}_{rest}"
    m = re.match(r"lora_te2_text_model_encoder_layers_(\d+)_(.+)", key)
    if m:
        layer, rest = m.groups()
        rest = rest.replace("mlp_fc1", "mlp_c_fc").replace("mlp_fc2", "mlp_c_proj").replace("self_attn", "attn")
        return f"1_model_transformer_resblocks_{layer}_{rest}"
    return key


def a1111_load(keys: list[str], mapping: dict[str, str]) -> tuple[dict[str, dict[str, str]], list[str]]:
    """Oracle of A1111 ``load_network``'s matching: {network key: {part: file key}} and the keys failed to match."""
    is_sd2 = any(name.startswith("model_transformer_resblocks") for name in mapping)
    matched: dict[str, dict[str, str]] = {}
    failed = []
    for file_key in keys:
        stem, part = file_key.split(".", 1)
        key = a1111_convert(stem, is_sd2)
        found = key in mapping
        if not found:
            m = re.match(r"(.*)_([qkv]_proj)$", key)
            found = bool(m and m.group(1) in mapping)
        if not found and "lora_te1_text_model" in stem:
            key = stem.replace("lora_te1_text_model", "0_transformer_text_model")
            found = key in mapping
            if not found:
                key = stem.replace("lora_te1_text_model", "transformer_text_model")
                found = key in mapping
        if not found:
            failed.append(file_key)
            continue
        matched.setdefault(key, {})[part] = file_key
    return matched, failed


def _comfy_state_keys(encoders) -> set[str]:
    return {f"{spec.name}.transformer.{k}" for spec in encoders.profile.encoders
            for k in _canonical(encoders.models[spec.name])}


def _canonical(model) -> list[str]:
    from safetext_core.models import canonical_names

    return list(canonical_names(model.state_dict()))


def test_comfyui_stock_lora_loader_takes_every_key(trained):
    family, encoders, outcome, _, path = trained
    keys = _keys(path)
    patched, not_loaded = comfy_loaded_keys(keys, comfy_key_map(_comfy_state_keys(encoders)))
    assert not_loaded == set()  # no "lora key not loaded" line
    loaded = SafeTextFile.load(path)
    expected = {f"{e}.transformer.{p}" for e, params in loaded.factors.items() for p in params}
    assert set(patched) == expected
    with safe_open(str(path), "pt") as f:
        for target, stem in patched.items():
            encoder, param = target.split(".transformer.", 1)
            up, down = f.get_tensor(stem + ".lora_up.weight"), f.get_tensor(stem + ".lora_down.weight")
            alpha = float(f.get_tensor(stem + ".alpha"))
            # ComfyUI's "lora" patch: W + strength * (up @ down) * alpha / rank, the factors cast to the weight's
            # dtype first (model_patcher: float32 for float32 weights)
            assert torch.equal((up.float() @ down.float()) * (alpha / down.shape[0]), loaded.deltas[encoder][param])


def test_a1111_and_forge_lora_extension_takes_every_key(trained):
    family, encoders, outcome, states, path = trained
    keys = _keys(path)
    mapping, mha = a1111_modules(family, states)
    matched, failed = a1111_load(keys, mapping)
    assert failed == []
    loaded = SafeTextFile.load(path)
    for key, parts in matched.items():
        assert set(parts) == {"lora_up.weight", "lora_down.weight", "alpha"}
    # OpenCLIP attention: A1111 applies q/k/v/out of a MultiheadAttention only when all four are there.
    for name in mha:
        present = [f"{name}_{p}" in matched for p in ("q_proj", "k_proj", "v_proj", "out_proj")]
        assert all(present) or not any(present), name
    # What A1111 computes, on its own (fused, for OpenCLIP) weights, equals SafeText's weight blend at strength 1.
    with safe_open(str(path), "pt") as f:
        def updown(key):
            parts = matched[key]
            # network_lora copies the factors into float32 Linear modules (--no-half) before multiplying
            up, down = f.get_tensor(parts["lora_up.weight"]).float(), f.get_tensor(parts["lora_down.weight"]).float()
            return (up @ down) * (float(f.get_tensor(parts["alpha"])) / up.shape[1])

        for spec in encoders.profile.encoders:
            openclip = spec.name in ("clip_h", "clip_g")
            prefix = {"clip_l": "0_" if family == "sdxl" else "", "clip_g": "1_", "clip_h": ""}[spec.name]
            state = {k: v.float().clone() for k, v in states[spec.name].items()}
            if openclip:
                fused = tiny_models.to_openclip(state)
                for name in mha:
                    if not name.startswith(prefix + "model_") or f"{name}_q_proj" not in matched:
                        continue
                    key = mapping[name][len("model."):]
                    fused[key] += torch.vstack([updown(f"{name}_{p}") for p in ("q_proj", "k_proj", "v_proj")])
                    fused[key.replace("in_proj_weight", "out_proj.weight")] += updown(f"{name}_out_proj")
                for key in matched:
                    if key.startswith(prefix + "model_") and "_mlp_" in key:
                        fused[mapping[key][len("model."):]] += updown(key)
                a1111 = openclip_to_hf(fused)
            else:
                for key in matched:
                    if key.startswith(prefix + "transformer_"):
                        param = mapping[key][len("transformer."):]
                        state[param] += updown(key)
                a1111 = state
            ours = {k: v.float() + loaded.deltas[spec.name].get(k, torch.zeros_like(v)).float()
                    for k, v in states[spec.name].items()}
            for param, value in ours.items():
                assert torch.allclose(a1111[param], value, atol=1e-6), (spec.name, param)


def test_exports_keep_low_rank_files_loadable(trained, tmp_path):
    from safetext_core.exports import to_a1111, to_lowrank

    family, encoders, outcome, _, path = trained
    loaded = SafeTextFile.load(path)
    a1111 = to_a1111(loaded, tmp_path / "a.safetensors")
    assert set(_keys(a1111)) == set(_keys(path))  # the factors already carry A1111's names
    again = SafeTextFile.load(a1111)
    for encoder, params in loaded.deltas.items():
        for param, delta in params.items():
            assert torch.equal(again.deltas[encoder][param], delta)
    low, figures = to_lowrank(loaded, tmp_path / "l.safetensors", rank=4)
    # rank-4 factors re-compressed at rank 4: exact up to SVD rounding and the factors' float16 (2**-11 relative)
    assert 1e-6 < figures["relative_error"] < 2e-3
    assert not [k for k in _keys(low) if k.startswith("text_encoders.")]


def test_full_weight_files_keep_loading(tmp_path, prompt_sets):
    tiny_models.write_single_file(tmp_path / "m.safetensors", "sd1")
    encoders = load_encoders(tmp_path / "m.safetensors")
    outcome = run_alignment(encoders, prompt_sets, AlignConfig(steps=2, batch_size=4, eval_every=0),
                            output=tmp_path / "full.safetensors", draw=False)
    loaded = SafeTextFile.load(tmp_path / "full.safetensors")
    assert loaded.factors == {} and outcome.result.factors == {}
    assert "rank=" not in loaded.describe() and "lora_learning_rate" not in loaded.describe()
    assert all(k.endswith((".diff", ".diff_b")) for k in _keys(tmp_path / "full.safetensors"))
    assert set(loaded.deltas["clip_l"]) == set(outcome.file.deltas["clip_l"])


def test_half_precision_factors_keep_the_product_and_refuse_what_float16_cannot_hold():
    generator = torch.Generator().manual_seed(0)
    # Trained factors are lopsided (up starts at zero, down at Kaiming scale): balancing by a power of two keeps
    # up's small values out of float16's subnormals, where rounding alone would lose most of their digits.
    up, down = torch.randn(64, 8, generator=generator) * 1e-5, torch.randn(8, 48, generator=generator) * 0.1
    up16, down16 = in_half_precision(up, down)
    assert half_exact(up16) and half_exact(down16) and up16.dtype == down16.dtype == torch.float32
    assert 0.25 < float(up16.abs().max() / down16.abs().max()) < 4.0
    exact = up.double() @ down.double()
    error = float(((up16 @ down16).double() - exact).norm() / exact.norm())
    naive = float(((up.half().float() @ down.half().float()).double() - exact).norm() / exact.norm())
    assert error < 1e-3 < naive
    # Beyond float16's range once balanced: kept as they are, and stored in float32 (half_exact is False).
    big_up, big_down = in_half_precision(up * 1e12, down * 1e4)
    assert torch.equal(big_up, up * 1e12) and not half_exact(big_up)
    zero_up, same_down = in_half_precision(torch.zeros(4, 2), down[:2])
    assert torch.equal(zero_up, torch.zeros(4, 2)) and torch.equal(same_down, down[:2])


def test_expand_is_the_hosts_formula():
    up, down = torch.randn(6, 3), torch.randn(3, 5)
    assert torch.equal(expand(up, down, 3.0), (up @ down) * (3.0 / 3))
    assert torch.allclose(expand(up, down, 6.0), 2 * (up @ down))


def test_own_adapters_compute_what_peft_lora_computes():
    """SafeText's adapter hook is PEFT's LoRA update: with the same non-zero factors, the same outputs and the
    same gradient for every factor (the benchmark ``lowrank_vs_peft`` times the two side by side)."""
    from benchmarks.bench_peft import _ids, _models

    own, peft_model, pairs = _models(quick=True, seed=0)
    ids = _ids(True, 4, 0)
    outputs = []
    for model in (own, peft_model):
        out = model(input_ids=ids).last_hidden_state
        out.square().mean().backward()
        outputs.append(out.detach())
    assert torch.allclose(outputs[0], outputs[1], atol=1e-6)
    assert all(module.lora_up.abs().sum() > 0 for module, _ in pairs)  # the factors do change the outputs
    for module, layer in pairs:
        assert torch.allclose(module.lora_up.grad, layer.lora_B["default"].weight.grad, atol=1e-6)
        assert torch.allclose(module.lora_down.grad, layer.lora_A["default"].weight.grad, atol=1e-6)
        assert module.lora_down.grad.abs().sum() > 0
