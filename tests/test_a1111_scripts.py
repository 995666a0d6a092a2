"""Unit tests of the AUTOMATIC1111 / Forge extension (``scripts/safetext.py`` + ``safetext_webui``) against stand-ins.

The stand-ins copy what the extension relies on from A1111 v1.10.1: ``scripts.Script``/``AlwaysVisible``,
``shared.opts`` (with ``restrict_api``)/``state``/``sd_model``, ``script_callbacks.on_*``, the hijacked
text-encoder wrappers (``FrozenCLIPEmbedderWithCustomWords.encode_with_transformers`` with clip skip,
``EmbeddingsWithFixes`` around the token embedding, open_clip's fused attention for SD 2.x/SDXL), the Lora
extension's weight backups and ``Api.init_script_args``. Forge and Forge Neo have their own stand-ins in
``tests/test_forge_adapter.py`` (which reuses the fixtures here). No network, no webui needed.

The file is long on purpose: the stand-ins above are shared by every test of the adapter, and splitting the
tests by concern would duplicate them or hide them in a conftest far from what they model.
"""
from __future__ import annotations

import copy
import importlib.util
import subprocess
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from safetext_core import SafeTextError, SafeTextFile
from safetext_core.fingerprint import fingerprint_state_dict
from safetext_core.models import load_canonical_state
from tiny_models import clip_config, random_clip_state, to_openclip

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "safetext.py"


# ------------------------------------------------------------------------------------------ stand-ins
class _Component:
    def __init__(self, *args, value=None, label=None, choices=None, **kwargs):
        self.value, self.label, self.choices, self.kwargs = value, label, choices, kwargs

    def click(self, **kwargs):
        self.clicked = kwargs


class _Context:
    def __init__(self, *args, **kwargs):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


# ``update`` signatures copied from Gradio 3.41.2 (A1111 v1.10.1): the Settings page passes an option's
# component arguments to ``update``, and one it does not take breaks the whole page.
_UPDATE_ARGS_341 = {
    "Dropdown": ("value", "choices", "label", "info", "show_label", "container", "scale", "min_width",
                 "interactive", "placeholder", "visible"),
    "Radio": ("value", "choices", "label", "info", "show_label", "container", "scale", "min_width", "interactive",
              "visible"),
    "Slider": ("value", "minimum", "maximum", "step", "label", "info", "show_label", "container", "scale",
               "min_width", "interactive", "visible"),
    "Checkbox": ("value", "label", "info", "show_label", "container", "scale", "min_width", "interactive", "visible"),
    "Textbox": ("value", "lines", "max_lines", "placeholder", "label", "info", "show_label", "container", "scale",
                "min_width", "visible", "interactive", "type", "text_align", "rtl", "show_copy_button", "autofocus"),
}


def _update_for(name):
    allowed = _UPDATE_ARGS_341.get(name)

    def update(**kwargs):
        unknown = sorted(set(kwargs) - set(allowed or kwargs))
        if unknown:
            raise TypeError(f"{name}.update() got an unexpected keyword argument {unknown[0]!r}")
        return dict(kwargs, __type__="update")

    return staticmethod(update)


class _Dropdown341(_Component):
    """Gradio 3.41's Dropdown keeps ``[str(choice) for choice in choices]``: a (label, value) pair shows as text."""

    def __init__(self, *args, choices=None, **kwargs):
        super().__init__(*args, choices=[str(c) for c in choices] if choices else [], **kwargs)


def _fake_gradio(version="3.41.2"):
    gr = types.ModuleType("gradio")
    gr.__version__ = version
    for name in ("Checkbox", "Dropdown", "Slider", "Radio", "HTML", "Button", "Image", "Number", "Textbox",
                 "CheckboxGroup"):
        base = _Dropdown341 if name == "Dropdown" and version.startswith("3.") else _Component
        setattr(gr, name, type(name, (base,), {"update": _update_for(name)}))
    for name in ("Accordion", "Row", "Column", "Blocks", "Group"):
        setattr(gr, name, type(name, (_Context,), {}))
    gr.update = lambda **kwargs: dict(kwargs, __type__="generic_update")
    return gr


class _Script:
    filename = None
    infotext_fields = None
    paste_field_names = None


class HTTPException(Exception):
    def __init__(self, status_code, detail=None):
        super().__init__(detail)
        self.status_code, self.detail = status_code, detail


class _Api:
    """``init_script_args`` as modules/api/api.py (v1.10.1) fills always-on script args."""

    def init_script_args(self, request, default_script_args, selectable_scripts, selectable_idx, script_runner, *,
                         input_script_args=None):
        script_args = list(default_script_args)
        for name, entry in (request.alwayson_scripts or {}).items():
            script = next((s for s in script_runner.alwayson_scripts if s.title().lower() == name.lower()), None)
            if script is None:
                raise HTTPException(422, f"always on script {name} not found")
            given = entry["args"]
            for idx in range(0, min(script.args_to - script.args_from, len(given))):
                script_args[script.args_from + idx] = given[idx]
        return script_args

    def set_config(self, req: dict):
        """``POST /sdapi/v1/options`` as Forge (dfdcbab) has it: ``modules.sysinfo.set_config(req)`` sets every
        option with ``is_api=False``, so ``restrict_api`` is not honoured (A1111 passes ``is_api=True``)."""
        for key, value in req.items():
            sys.modules["modules.shared"].opts.set(key, value, is_api=False)


class _State:
    def __init__(self):
        self.interrupted = False
        self.job = ""
        self.job_count = 0
        self.sampling_step = 0
        self.sampling_steps = 0
        self.textinfo = None

    def interrupt(self):
        self.interrupted = True

    def begin(self, job=""):
        self.interrupted = False

    def end(self):
        pass


class _OptionInfo:
    def __init__(self, default=None, label="", component=None, component_args=None, section=None, restrict_api=False,
                 **kwargs):
        self.default, self.label, self.section, self.restrict_api = default, label, section, restrict_api
        self.component, self.component_args = component, component_args


class _Options(SimpleNamespace):
    """``shared.opts`` as modules/options.py (v1.10.1): ``set(..., is_api=True)`` (``/sdapi/v1/options`` and
    ``override_settings``) leaves ``restrict_api`` options alone."""

    def add_option(self, key, info):
        self.data_labels[key] = info
        if not hasattr(self, key):
            setattr(self, key, info.default)

    def set(self, key, value, is_api=False, run_callbacks=True):
        if getattr(self, key, None) == value or (is_api and self.data_labels[key].restrict_api):
            return False
        setattr(self, key, value)
        return True


def _purge_package():
    for name in [n for n in sys.modules if n == "safetext_webui" or n.startswith("safetext_webui.")]:
        del sys.modules[name]


@pytest.fixture()
def webui(tmp_path, monkeypatch, request):
    """Load scripts/safetext.py with stand-in webui modules (a fresh ``safetext_webui`` each time); yield its modules.

    Gradio 3.41 (A1111 v1.10.1) by default; ``@pytest.mark.parametrize("webui", ["4.40.0"], indirect=True)``
    gives Gradio 4 (Forge).
    """
    gradio = _fake_gradio(getattr(request, "param", "3.41.2"))
    callbacks: dict[str, list] = {}
    modules = types.ModuleType("modules")
    scripts_mod = types.ModuleType("modules.scripts")
    scripts_mod.Script = _Script
    scripts_mod.AlwaysVisible = object()
    shared = types.ModuleType("modules.shared")
    shared.opts = _Options(CLIP_stop_at_last_layers=1, data_labels={})
    shared.state = _State()
    shared.sd_model = None
    shared.models_path = str(tmp_path / "models")
    shared.OptionInfo = _OptionInfo
    cb = types.ModuleType("modules.script_callbacks")
    for name in ("on_ui_settings", "on_ui_tabs", "on_app_started", "on_infotext_pasted", "on_model_loaded"):
        setattr(cb, name, lambda fn, _n=name: callbacks.setdefault(_n, []).append(fn))
    api_pkg = types.ModuleType("modules.api")
    api_mod = types.ModuleType("modules.api.api")
    api_mod.Api = type("Api", (_Api,), {})
    api_pkg.api = api_mod
    call_queue = types.ModuleType("modules.call_queue")
    call_queue.wrap_gradio_gpu_call = lambda fn, extra_outputs=None: fn
    call_queue.queue_lock = __import__("threading").Lock()
    devices = types.ModuleType("modules.devices")
    devices.device = torch.device("cpu")
    for mod in (scripts_mod, shared, cb, api_pkg, call_queue, devices):
        setattr(modules, mod.__name__.split(".")[-1], mod)
    fastapi = types.ModuleType("fastapi")
    fastapi_exc = types.ModuleType("fastapi.exceptions")
    fastapi_exc.HTTPException = HTTPException
    fastapi.exceptions = fastapi_exc
    fastapi.Body = lambda **kwargs: None
    # A1111 has the extension folder on sys.path only while scripts load; the extension must not rely on it (or add it).
    monkeypatch.setattr(sys, "path", [p for p in sys.path if Path(p).resolve() != ROOT])
    paths_before = list(sys.path)
    stand_ins = {"gradio": gradio, "modules": modules, "modules.scripts": scripts_mod,
                 "modules.shared": shared, "modules.script_callbacks": cb, "modules.api": api_pkg,
                 "modules.api.api": api_mod, "modules.call_queue": call_queue, "modules.devices": devices,
                 "fastapi": fastapi, "fastapi.exceptions": fastapi_exc}
    for name, mod in stand_ins.items():
        monkeypatch.setitem(sys.modules, name, mod)
    _purge_package()
    spec = importlib.util.spec_from_file_location("safetext_a1111_under_test", SCRIPT)
    entry = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(entry)
    for fn in callbacks.get("on_ui_settings", []):
        fn()
    package = {name: sys.modules[f"safetext_webui.{name}"] for name in
               ("args", "settings", "files", "hijack", "forge", "infotext", "script", "api", "training")}
    try:
        yield SimpleNamespace(entry=entry, shared=shared, callbacks=callbacks, host_api=api_mod, paths_before=paths_before,
                              folder=Path(shared.models_path) / "safetext", **package)
    finally:
        package["script"].reset()
        _purge_package()


# ------------------------------------------------------------------------------------------ fake models
class EmbeddingsWithFixes(nn.Module):  # A1111's textual-inversion hijack of the token embedding
    def __init__(self, wrapped):
        super().__init__()
        self.wrapped = wrapped

    def forward(self, input_ids):
        return self.wrapped(input_ids)


class FrozenCLIPEmbedder(nn.Module):
    def __init__(self, transformer, tokenizer):
        super().__init__()
        self.transformer = transformer
        self.tokenizer = tokenizer


class CLIPEmbedderWithCustomWords(nn.Module):
    """``encode_with_transformers`` exactly as modules/sd_hijack_clip.py (A1111 v1.10.1) has it."""

    def __init__(self, wrapped, shared):
        super().__init__()
        self.wrapped = wrapped
        self._opts = lambda: shared.opts

    def encode_with_transformers(self, tokens):
        stop = self._opts().CLIP_stop_at_last_layers
        outputs = self.wrapped.transformer(input_ids=tokens, output_hidden_states=-stop)
        if stop > 1:
            z = outputs.hidden_states[-stop]
            z = getattr(self.wrapped.transformer, "text_model", self.wrapped.transformer).final_layer_norm(z)
        else:
            z = outputs.last_hidden_state
        return z


class FakeSDModel:  # weak-referenceable, like an nn.Module
    pass


@__import__("functools").lru_cache(maxsize=1)
def _tokenizer():
    from safetext_core.tokenizer import load_clip_tokenizer

    return load_clip_tokenizer()


def _sd1_model(shared, seed=0):
    from transformers import CLIPTextModel

    canonical = random_clip_state(seed=seed)
    transformer = CLIPTextModel(clip_config())
    load_canonical_state(transformer, canonical)
    transformer.eval()
    inner = getattr(transformer, "text_model", transformer)
    inner.embeddings.token_embedding = EmbeddingsWithFixes(inner.embeddings.token_embedding)
    cond = CLIPEmbedderWithCustomWords(FrozenCLIPEmbedder(transformer, _tokenizer()), shared)
    model = FakeSDModel()
    model.cond_stage_model = cond
    model.sd_checkpoint_info = SimpleNamespace(model_name="tiny-sd1", title="tiny-sd1.safetensors")
    model.get_learned_conditioning = None
    del model.get_learned_conditioning
    return model, canonical


def _random_deltas(canonical, seed=1, scale=0.05, names=("q_proj.weight", "fc1.weight", "fc1.bias", "final_layer_norm")):
    gen = torch.Generator().manual_seed(seed)
    return {k: scale * torch.randn(v.shape, generator=gen) for k, v in canonical.items()
            if any(n in k for n in names)}


def _write_file(folder, name, family, deltas, fingerprints):
    folder.mkdir(parents=True, exist_ok=True)
    return SafeTextFile(family=family, deltas=deltas, fingerprints=fingerprints, base_name="tiny").save(folder / name)


def _tokens(cond, prompt="a photo of a cat"):
    ids = cond.wrapped.tokenizer([prompt], padding="max_length", max_length=77, truncation=True,
                                 return_tensors="pt")["input_ids"]
    return ids


def _state(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _same_state(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture()
def sd1(webui):
    model, canonical = _sd1_model(webui.shared)
    webui.shared.sd_model = model
    deltas = _random_deltas(canonical)
    _write_file(webui.folder, "tiny.safetensors", "sd1", {"clip_l": deltas},
                {"clip_l": fingerprint_state_dict(canonical)})
    expected = copy.deepcopy(model.cond_stage_model)
    params = dict(expected.named_parameters())
    for key, delta in deltas.items():
        host = webui.hijack.host_name_map(webui.hijack.HostEncoder("clip_l", expected, "hf"))[key]
        with torch.no_grad():
            params[host].add_(delta)
    return SimpleNamespace(model=model, cond=model.cond_stage_model, canonical=canonical, deltas=deltas, aligned=expected)


def _p(model):
    return SimpleNamespace(sd_model=model, cached_c=["class", "cache"], cached_uc=["class", "cache"],
                           cached_hr_c=["class"], cached_hr_uc=["class"], extra_generation_params={})


def _run(webui, model, args, prompt="a photo of a cat"):
    script = webui.script.SafeTextScript()
    p = _p(model)
    script.process(p, *args)
    script.process_batch(p, *args)
    with torch.no_grad():
        out = model.cond_stage_model.encode_with_transformers(_tokens(model.cond_stage_model, prompt))
    return p, out, script


# ------------------------------------------------------------------------------------------ tests
def test_script_is_always_visible_with_four_api_args(webui, sd1):
    script = webui.script.SafeTextScript()
    assert script.title() == "SafeText"
    assert script.show(False) is webui.shared.__dict__.get("AlwaysVisible", sys.modules["modules.scripts"].AlwaysVisible)
    controls = script.ui(False)
    assert [c.label for c in controls] == ["Enable SafeText", "SafeText file", "SafeText strength", "Blend mode"]
    assert controls[0].value is False and controls[2].value == 1.0 and controls[3].value == "embedding"
    assert controls[1].value == "tiny.safetensors"
    # Gradio 3.41 (A1111): plain names (a (label, value) pair would show as raw text), fit marks in ``info``
    assert controls[1].choices == ["tiny.safetensors"]
    assert controls[1].kwargs["info"] == "fits this checkpoint: tiny.safetensors"
    assert {"on_ui_settings", "on_ui_tabs", "on_app_started", "on_infotext_pasted"} <= set(webui.callbacks)


@pytest.mark.parametrize("webui", ["4.40.0"], indirect=True)
def test_panel_file_choices_are_labelled_on_gradio_4(webui, sd1):
    controls = webui.script.SafeTextScript().ui(False)
    assert controls[1].choices == [("tiny.safetensors" + webui.files.FITS_MARK, "tiny.safetensors")]


def test_settings_registered_and_lock_options_restricted_from_api(webui):
    opts = webui.shared.opts
    assert opts.safetext_default_enabled is False and opts.safetext_lock is False
    assert opts.safetext_default_strength == 1.0
    restricted = {key for key, info in opts.data_labels.items() if info.restrict_api}
    assert restricted == {"safetext_models_dir", "safetext_allow_mismatch", "safetext_lock", "safetext_lock_file",
                          "safetext_lock_strength", "safetext_lock_training"}


def test_settings_page_builds_and_refreshes_every_option_on_gradio_341(webui, sd1):
    """What A1111 v1.10.1's Settings page does with each option (modules/ui_settings.py): build the component
    with the option's component arguments, then ``get_value_for_setting`` sends ``gr.update(value=..., **args)``,
    which Gradio turns into ``<Component>.update(**args)``. One argument ``update`` does not take raised
    ``TypeError`` for every setting on the page (the bug this guards against)."""
    gr = sys.modules["gradio"]
    opts = webui.shared.opts
    keys = [key for key in opts.data_labels if key.startswith("safetext_")]
    assert "safetext_lock_file" in keys
    for key in keys:
        info = opts.data_labels[key]
        args = info.component_args() if callable(info.component_args) else info.component_args or {}
        component = info.component or gr.Textbox
        built = component(label=info.label, value=getattr(opts, key), elem_id=f"setting_{key}", **args)
        generic = gr.update(value=getattr(opts, key), **{k: v for k, v in args.items() if k != "precision"})
        specific = component.update(**{k: v for k, v in generic.items() if k != "__type__"})
        assert specific["value"] == getattr(opts, key)
        if key == "safetext_lock_file":
            assert built.choices == ["", "tiny.safetensors"] and specific["choices"] == ["", "tiny.safetensors"]


def test_disabled_is_bit_for_bit_and_enabled_matches_aligned_encoder(webui, sd1):
    tokens = _tokens(sd1.cond)
    with torch.no_grad():
        original = sd1.cond.encode_with_transformers(tokens)
    before = _state(sd1.cond)
    _, off, _ = _run(webui, sd1.model, [False, "tiny.safetensors", 1.0, "embedding"])
    assert torch.equal(off, original)
    p, on, script = _run(webui, sd1.model, [True, "tiny.safetensors", 1.0, "embedding"])
    with torch.no_grad():
        want = sd1.aligned.encode_with_transformers(tokens)
    assert torch.allclose(on, want, atol=1e-5) and not torch.allclose(on, original, atol=1e-3)
    assert _same_state(before, _state(sd1.cond))
    script.postprocess(p, None)
    with torch.no_grad():
        assert torch.equal(sd1.cond.encode_with_transformers(tokens), original)


def test_strength_and_blend_modes(webui, sd1):
    tokens = _tokens(sd1.cond)
    with torch.no_grad():
        original = sd1.cond.encode_with_transformers(tokens)
        aligned = sd1.aligned.encode_with_transformers(tokens)
    _, half, _ = _run(webui, sd1.model, [True, "tiny.safetensors", 0.5, "embedding"])
    assert torch.allclose(half, torch.lerp(original, aligned, 0.5), atol=1e-5)
    _, zero, _ = _run(webui, sd1.model, [True, "tiny.safetensors", 0.0, "embedding"])
    assert torch.equal(zero, original)
    _, weight1, _ = _run(webui, sd1.model, [True, "tiny.safetensors", 1.0, "weight"])
    assert torch.allclose(weight1, aligned, atol=1e-5)
    _, weight_half, _ = _run(webui, sd1.model, [True, "tiny.safetensors", 0.5, "weight"])
    assert not torch.allclose(weight_half, half, atol=1e-7)  # the two modes differ between the end points


def test_clip_skip_goes_through_the_same_path(webui, sd1):
    webui.shared.opts.CLIP_stop_at_last_layers = 2
    tokens = _tokens(sd1.cond)
    with torch.no_grad():
        want = sd1.aligned.encode_with_transformers(tokens)
    _, on, _ = _run(webui, sd1.model, [True, "tiny.safetensors", 1.0, "embedding"])
    assert torch.allclose(on, want, atol=1e-5)


def test_cond_cache_cleared_and_infotext_written(webui, sd1):
    p, _, _ = _run(webui, sd1.model, [True, "tiny", 0.75, "weight"])
    assert p.cached_c == [None, None] and p.cached_uc == [None, None] and p.cached_hr_c == [None, None]
    params = p.extra_generation_params
    assert params["SafeText"] == "tiny" and params["SafeText strength"] == 0.75 and params["SafeText mode"] == "weight"
    assert len(params["SafeText fingerprint"]) == 12
    off, _, _ = _run(webui, sd1.model, [False, "tiny", 0.75, "weight"])
    assert off.cached_c == ["class", "cache"] and "SafeText" not in off.extra_generation_params


def test_infotext_paste_reads_values_back(webui):
    params = {"SafeText": "tiny", "SafeText fingerprint": "abc", "SafeText strength": "0.5", "Steps": 2}
    webui.infotext.on_infotext_pasted("", params)
    assert params["SafeText enabled"] is True and params["SafeText file"] == "tiny.safetensors"
    assert params["SafeText strength"] == 0.5 and params["SafeText mode"] == "embedding"
    script = webui.script.SafeTextScript()
    script.ui(False)
    readers = [reader for _, reader in script.infotext_fields]
    assert [r({"SafeText": "tiny", "SafeText strength": 0.25}) for r in readers] == [True, "tiny.safetensors", 0.25, "embedding"]
    assert readers[0]({"Steps": 2}) is False


def test_operator_lock_overrides_a_request_to_disable(webui, sd1):
    opts = webui.shared.opts
    opts.safetext_lock, opts.safetext_lock_file, opts.safetext_lock_strength = True, "tiny.safetensors", 1.0
    tokens = _tokens(sd1.cond)
    with torch.no_grad():
        want = sd1.aligned.encode_with_transformers(tokens)
    p, out, _ = _run(webui, sd1.model, [False, "", 0.0, "weight"])
    assert torch.allclose(out, want, atol=1e-5)
    assert p.extra_generation_params["SafeText lock"] is True and p.extra_generation_params["SafeText strength"] == 1.0
    assert webui.api.validate_request_args([False]) is None  # API: the lock decides, no error


@pytest.mark.parametrize("bad", ["../escape", "/etc/passwd", "sub/dir.safetensors", "..", ".hidden", "C:evil", "a\\b"])
def test_names_never_escape_the_folder(webui, bad):
    with pytest.raises(SafeTextError):
        webui.files.load_file(bad)


def test_bad_api_values_are_clear_422_errors(webui, sd1):
    api = webui.host_api.Api()
    script = webui.script.SafeTextScript()
    defaults = [0, "other script"] + [c.value for c in script.ui(False)]
    script.args_from, script.args_to = 2, 6
    runner = SimpleNamespace(alwayson_scripts=[script])

    def call(args):
        request = SimpleNamespace(alwayson_scripts={"safetext": {"args": args}}, override_settings=None)
        return api.init_script_args(request, defaults, None, None, runner)

    assert call([True, "tiny.safetensors", 0.5, "weight"]) == [0, "other script", True, "tiny.safetensors", 0.5, "weight"]
    assert call([True]) == [0, "other script", True, "tiny.safetensors", 1.0, "embedding"]  # the panel's defaults
    assert call({"enabled": True, "strength": 0.25})[2:] == [True, "tiny.safetensors", 0.25, "embedding"]
    cases = {
        "strength": [True, "tiny.safetensors", 1.5],
        "mode": [True, "tiny.safetensors", 1.0, "sideways"],
        "not found": [True, "missing.safetensors"],
        "must not contain a path": [True, "../x.safetensors"],
        "true or false": ["maybe", "tiny.safetensors"],
        "at most": [True, "tiny.safetensors", 1.0, "embedding", "extra"],
        "no SafeText file": [True, ""],
    }
    for needle, args in cases.items():
        with pytest.raises(HTTPException) as info:
            call(args)
        assert info.value.status_code == 422 and needle in info.value.detail and info.value.detail.startswith("SafeText:")


def test_file_for_another_checkpoint_is_refused_and_generation_fails_closed(webui, sd1):
    other = random_clip_state(seed=7)
    _write_file(webui.folder, "other.safetensors", "sd1", {"clip_l": _random_deltas(other)},
                {"clip_l": fingerprint_state_dict(other)})
    entries = {e["name"]: e for e in webui.files.list_files()}
    assert entries["other.safetensors"]["fits"] is False and entries["tiny.safetensors"]["fits"] is True
    api = webui.host_api.Api()
    with pytest.raises(HTTPException) as info:
        api.init_script_args(SimpleNamespace(alwayson_scripts={"SafeText": {"args": [True, "other"]}}), [], None, None,
                             SimpleNamespace(alwayson_scripts=[]))
    assert "another checkpoint" in info.value.detail or "not found" in info.value.detail
    script = webui.script.SafeTextScript()
    script.args_from, script.args_to = 1, 5
    with pytest.raises(HTTPException) as info:
        api.init_script_args(SimpleNamespace(alwayson_scripts={"SafeText": {"args": [True, "other"]}}),
                             [0, False, "", 1.0, "embedding"], None, None, SimpleNamespace(alwayson_scripts=[script]))
    assert "another checkpoint" in info.value.detail
    p, out, script = _run(webui, sd1.model, [True, "other.safetensors", 1.0, "embedding"])
    with pytest.raises(SafeTextError, match="another checkpoint"):
        sd1.model.get_learned_conditioning(["a cat"])
    script.process(_p(sd1.model))  # the next job heals the model
    assert "get_learned_conditioning" not in sd1.model.__dict__


def test_error_in_aligned_pass_leaves_weights_exactly_as_they_were(webui, sd1):
    before = _state(sd1.cond)
    identities = {k: id(v) for k, v in sd1.cond.named_parameters()}
    layer = dict(sd1.cond.named_modules())["wrapped.transformer." + ("text_model." if hasattr(sd1.cond.wrapped.transformer, "text_model") else "") + "encoder.layers.1.mlp.fc1"]
    calls = {"n": 0}

    def explode(module, inputs, output):
        calls["n"] += 1
        if calls["n"] == 2:  # the second pass is the aligned one
            raise RuntimeError("another extension failed")

    handle = layer.register_forward_hook(explode)
    try:
        with pytest.raises(RuntimeError, match="another extension"):
            _run(webui, sd1.model, [True, "tiny.safetensors", 1.0, "embedding"])
    finally:
        handle.remove()
    assert _same_state(before, _state(sd1.cond))
    assert {k: id(v) for k, v in sd1.cond.named_parameters()} == identities
    assert all(isinstance(v, nn.Parameter) for _, v in sd1.cond.named_parameters())


def test_lora_in_place_weights_keep_the_fingerprint_and_stack(webui, sd1):
    """The Lora extension edits weights in place and keeps a backup: fingerprint from the backup; LoRA stays."""
    name = "wrapped.transformer." + ("text_model." if hasattr(sd1.cond.wrapped.transformer, "text_model") else "") + "encoder.layers.0.mlp.fc2"
    linear = dict(sd1.cond.named_modules())[name]
    linear.network_weights_backup = linear.weight.detach().clone()
    with torch.no_grad():
        linear.weight.add_(0.1)  # "LoRA applied"
    lora_state = _state(sd1.cond)
    _, out, _ = _run(webui, sd1.model, [True, "tiny.safetensors", 1.0, "embedding"])
    assert _same_state(lora_state, _state(sd1.cond))
    expected = copy.deepcopy(sd1.aligned)
    with torch.no_grad():
        dict(expected.named_modules())[name].weight.add_(0.1)
        want = expected.encode_with_transformers(_tokens(sd1.cond))
    assert torch.allclose(out, want, atol=1e-5)


class _OpenClipBlock(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, max(1, width // 16))
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential()
        self.mlp.add_module("c_fc", nn.Linear(width, width * 2))
        self.mlp.add_module("gelu", nn.GELU())
        self.mlp.add_module("c_proj", nn.Linear(width * 2, width))

    def forward(self, x):
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class _OpenClipText(nn.Module):
    def __init__(self, width=64, layers=3):
        super().__init__()
        self.token_embedding = EmbeddingsWithFixes(nn.Embedding(49408, width))
        self.positional_embedding = nn.Parameter(torch.zeros(77, width))
        self.transformer = nn.Module()
        self.transformer.resblocks = nn.ModuleList([_OpenClipBlock(width) for _ in range(layers)])
        self.ln_final = nn.LayerNorm(width)
        self.text_projection = nn.Parameter(torch.zeros(width, width))
        self.logit_scale = nn.Parameter(torch.tensor(4.6))

    def forward(self, tokens):
        x = self.token_embedding(tokens) + self.positional_embedding
        x = x.permute(1, 0, 2)
        for block in self.transformer.resblocks:
            x = block(x)
        x = self.ln_final(x.permute(1, 0, 2))
        pooled = x[torch.arange(x.shape[0]), tokens.argmax(dim=-1)] @ self.text_projection
        return x, pooled


class FrozenOpenCLIPEmbedder2(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model


class OpenCLIPEmbedder2WithCustomWords(nn.Module):
    def __init__(self, wrapped):
        super().__init__()
        self.wrapped = wrapped

    def encode_with_transformers(self, tokens):
        z, pooled = self.wrapped.model(tokens)
        z = z.clone()
        z.pooled = pooled
        return z


def _openclip_module(canonical):
    text = _OpenClipText()
    state = to_openclip(canonical)
    state["token_embedding.wrapped.weight"] = state.pop("token_embedding.weight")
    text.load_state_dict(state, strict=True)
    return text.eval()


def test_sdxl_open_clip_names_fused_attention_and_pooled(webui):
    clip_l_model, clip_l = _sd1_model(webui.shared, seed=3)
    clip_g = random_clip_state(hidden=64, layers=3, act="gelu", projection=True, seed=4)
    bigg = OpenCLIPEmbedder2WithCustomWords(FrozenOpenCLIPEmbedder2(_openclip_module(clip_g)))
    model = FakeSDModel()
    model.conditioner = SimpleNamespace(embedders=[clip_l_model.cond_stage_model, bigg])
    webui.shared.sd_model = model
    family, encs = webui.hijack.host_encoders(model)
    assert family == "sdxl" and [e.name for e in encs] == ["clip_l", "clip_g"]
    assert webui.hijack.original_state(encs[1]).keys() == clip_g.keys()
    assert webui.hijack.encoder_fingerprint(encs[1]) == fingerprint_state_dict(clip_g)
    only_q = {"text_model.encoder.layers.1.self_attn.q_proj.weight": 0.1 * torch.randn(64, 64),
              "text_model.encoder.layers.2.mlp.fc1.bias": 0.1 * torch.randn(128)}
    mapped = webui.hijack.host_deltas(encs[1], only_q)
    fused = mapped["wrapped.model.transformer.resblocks.1.attn.in_proj_weight"]
    assert torch.equal(fused[:64], only_q["text_model.encoder.layers.1.self_attn.q_proj.weight"])
    assert not fused[64:].any()
    _write_file(webui.folder, "xl.safetensors", "sdxl",
                {"clip_l": _random_deltas(clip_l), "clip_g": only_q},
                {"clip_l": fingerprint_state_dict(clip_l), "clip_g": fingerprint_state_dict(clip_g)})
    tokens = _tokens(clip_l_model.cond_stage_model)
    with torch.no_grad():
        original = bigg.encode_with_transformers(tokens)
    script = webui.script.SafeTextScript()
    p = _p(model)
    script.process_batch(p, True, "xl.safetensors", 0.5, "embedding")
    with torch.no_grad():
        blended = bigg.encode_with_transformers(tokens)
    assert blended.shape == original.shape and not torch.allclose(blended, original)
    assert hasattr(blended, "pooled") and not torch.allclose(blended.pooled, original.pooled)
    script.postprocess(p, None)
    with torch.no_grad():
        again = bigg.encode_with_transformers(tokens)
    assert torch.equal(again, original) and torch.equal(again.pooled, original.pooled)


def test_api_cannot_change_restricted_options_even_where_the_host_lets_it(webui):
    webui.host_api.Api().set_config({"safetext_lock": True, "safetext_allow_mismatch": True,
                                     "safetext_models_dir": "/", "safetext_default_strength": 0.5})
    opts = webui.shared.opts
    assert opts.safetext_lock is False and opts.safetext_allow_mismatch is False and opts.safetext_models_dir == ""
    assert opts.safetext_default_strength == 0.5  # an ordinary option still changes


def test_training_writes_a_fitting_file_and_interrupt_writes_none(webui, sd1):
    from conftest import SAFE_WORDS, UNSAFE_WORDS

    unsafe = "\n".join(f"{w}, {s}" for w in UNSAFE_WORDS for s in ("photo", "sketch", "4k"))
    safe = "\n".join(f"{w}, {s}" for w in SAFE_WORDS for s in ("photo", "sketch", "4k"))
    before = _state(sd1.cond)
    result = webui.training.train([], unsafe, safe, True, steps=2, learning_rate=1e-3, batch_size=4, name="trained")
    assert result["file"] == "trained.safetensors" and result["steps_run"] >= 1
    entries = {e["name"]: e for e in webui.files.list_files()}
    assert entries["trained.safetensors"]["fits"] is True
    assert webui.training.STATUS["phase"] == "done"
    assert _same_state(before, _state(sd1.cond))
    webui.shared.state.interrupted = True
    import safetext_core

    with pytest.raises(safetext_core.AlignmentCancelled):
        webui.training.train([], unsafe, safe, True, steps=3, batch_size=4, name="stopped")
    assert not (webui.folder / "stopped.safetensors").exists()
    assert not [p for p in webui.folder.iterdir() if "stopped" in p.name]
    with pytest.raises(SafeTextError, match="already exists"):
        webui.training.train([], unsafe, safe, True, steps=1, name="trained")


def test_training_settings_left_out_keep_the_core_defaults(webui):
    """The API's body may leave settings out: they take AlignConfig's defaults, not a second copy of them."""
    from safetext_core import AlignConfig

    defaults = AlignConfig()
    config = webui.training._config(None, None, None, None, None)
    assert config == defaults
    config = webui.training._config(12, "", 2.5, 8, 3, rank=4, lora_alpha=None, lora_learning_rate="")
    assert (config.steps, config.learning_rate, config.lam, config.batch_size, config.seed, config.rank) == \
        (12, defaults.learning_rate, 2.5, 8, 3, 4)
    with pytest.raises(SafeTextError, match="bad training settings"):
        webui.training._config("many", None, None, None, None)
    assert webui.training._config(None, None, None, None, None, lr_schedule="constant").lr_schedule == "constant"
    with pytest.raises(SafeTextError, match="lr_schedule"):
        webui.training._config(None, None, None, None, None, lr_schedule="linear")
    assert webui.training._config(None, None, None, None, None, rank=8, lowrank_method="adapters").lowrank_method == \
        "adapters"
    assert "lowrank_method" in webui.training.FIELDS  # the API's body may carry it
    with pytest.raises(SafeTextError, match="lowrank_method"):
        webui.training._config(None, None, None, None, None, rank=8, lowrank_method="pca")


def test_install_py_detects_host_and_never_installs_torch(monkeypatch, tmp_path):
    calls = []
    launch = types.ModuleType("launch")
    launch.is_installed = lambda name: name not in ("safetensors",)
    launch.run_pip = lambda command, desc=None: calls.append(command)
    monkeypatch.setitem(sys.modules, "launch", launch)
    spec = importlib.util.spec_from_file_location("safetext_install_under_test", ROOT / "install.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.detect_host() == "a1111"
    module.main()
    assert calls and all("torch" not in c for c in calls)
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        assert not line.strip().lower().startswith(("torch", "torchvision"))


@pytest.mark.skipif(not __import__("shutil").which("node"), reason="node is not installed")
def test_javascript_parses_and_runs_without_a_page():
    for path in sorted((ROOT / "javascript").glob("*.js")):
        subprocess.run(["node", "--check", str(path)], check=True)
        subprocess.run(["node", str(path)], check=True, timeout=20)


def test_entry_file_is_thin_and_leaves_sys_path_alone(webui):
    assert sys.path == webui.paths_before  # nothing appended: no `nodes`, `tools` or `tests` importable webui-wide
    found = [v for v in vars(webui.entry).values() if isinstance(v, type) and issubclass(v, _Script)]
    assert found == [webui.script.SafeTextScript]  # what A1111's loader registers from the file's namespace
    assert set(webui.callbacks) == {"on_ui_settings", "on_ui_tabs", "on_app_started", "on_infotext_pasted",
                                    "on_model_loaded"}
    import safetext_core

    assert webui.hijack.SafeTextFileError is safetext_core.SafeTextFileError  # one import path for the core
    assert getattr(webui.host_api.Api.init_script_args, "safetext_wrapper", False)
    assert len(SCRIPT.read_text().splitlines()) < 30


def test_entry_file_registers_the_packages_itself_in_a_fresh_interpreter(tmp_path):
    """As A1111 runs it: a fresh interpreter where neither package can be imported from sys.path; the entry file
    registers both by path (safetext_core/bootstrap.py) and leaves sys.path as it was."""
    script = f"""
import importlib.abc, importlib.util, sys, types
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name in ("safetext_core", "safetext_webui"):
            raise ImportError(name + " is not importable from sys.path here")
sys.meta_path.insert(0, Block())
def module(name, **attrs):
    mod = types.ModuleType(name); mod.__dict__.update(attrs); sys.modules[name] = mod; return mod
component = type("Component", (), {{"__init__": lambda self, *a, **k: None}})
module("gradio", __version__="3.41.2", Slider=component, Dropdown=component)
module("fastapi", Body=lambda **k: None); module("fastapi.exceptions", HTTPException=Exception)
registered = []
opts = types.SimpleNamespace(add_option=lambda key, info: registered.append(key))
module("modules", scripts=module("modules.scripts", Script=type("Script", (), {{}}), AlwaysVisible=object()),
       shared=module("modules.shared", opts=opts, OptionInfo=lambda *a, **k: None),
       script_callbacks=module("modules.script_callbacks", **{{n: lambda fn: None for n in (
           "on_ui_settings", "on_ui_tabs", "on_app_started", "on_infotext_pasted", "on_model_loaded")}}))
before = list(sys.path)
spec = importlib.util.spec_from_file_location("safetext.py", {str(SCRIPT)!r})
entry = importlib.util.module_from_spec(spec)
spec.loader.exec_module(entry)
assert sys.path == before
assert sys.modules["safetext_core"].__file__ == {str(ROOT / "safetext_core" / "__init__.py")!r}
assert entry.SafeTextScript.__module__ == "safetext_webui.script"
assert "safetext_lock" in registered
print("ok")
"""
    env = {k: v for k, v in __import__("os").environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]


def test_checkpoint_loaded_into_the_same_modules_gets_its_own_fingerprint(webui, sd1):
    """A1111 loads a checkpoint of the same architecture into the loaded model's modules: a fingerprint remembered
    for the modules would let the old checkpoint's files through (and refuse the new one's)."""
    _run(webui, sd1.model, [True, "tiny.safetensors", 1.0, "embedding"])  # fingerprint of checkpoint A remembered
    other, canonical_b = _sd1_model(webui.shared, seed=9)
    sd1.cond.load_state_dict(other.cond_stage_model.state_dict())
    sd1.model.sd_checkpoint_info = SimpleNamespace(model_name="b", title="b.safetensors", filename="b.safetensors")
    for callback in webui.callbacks["on_model_loaded"]:
        callback(sd1.model)
    _write_file(webui.folder, "b.safetensors", "sd1", {"clip_l": _random_deltas(canonical_b)},
                {"clip_l": fingerprint_state_dict(canonical_b)})
    fits = {e["name"]: e["fits"] for e in webui.files.list_files()}
    assert fits == {"tiny.safetensors": False, "b.safetensors": True}
    _run(webui, sd1.model, [True, "tiny.safetensors", 1.0, "embedding"])
    with pytest.raises(SafeTextError, match="another checkpoint"):
        sd1.model.get_learned_conditioning(["a cat"])


def test_checkpoint_loaded_during_a_job_fails_closed(webui, sd1):
    script = webui.script.SafeTextScript()
    p = _p(sd1.model)
    script.process_batch(p, True, "tiny.safetensors", 1.0, "embedding")
    for callback in webui.callbacks["on_model_loaded"]:  # e.g. another extension swaps checkpoints mid-job
        callback(sd1.model)
    with pytest.raises(SafeTextError, match="checkpoint changed"):
        sd1.model.get_learned_conditioning(["a cat"])
    script.process(_p(sd1.model))
    assert "get_learned_conditioning" not in sd1.model.__dict__


def test_hires_fix_with_another_checkpoint_fails_closed(webui, sd1):
    script = webui.script.SafeTextScript()
    p = _p(sd1.model)
    p.enable_hr, p.hr_checkpoint_info = True, SimpleNamespace(filename="other.safetensors")
    script.process_batch(p, True, "tiny.safetensors", 1.0, "embedding")
    with pytest.raises(SafeTextError, match="hires"):
        sd1.model.get_learned_conditioning(["a cat"])
    p.hr_checkpoint_info = SimpleNamespace(filename=None)  # the loaded checkpoint again: fine
    script.process_batch(p, True, "tiny.safetensors", 1.0, "embedding")
    assert "get_learned_conditioning" not in sd1.model.__dict__ and p.extra_generation_params["SafeText"] == "tiny"


def test_refiner_fails_closed(webui, sd1):
    script = webui.script.SafeTextScript()
    p = _p(sd1.model)
    p.refiner_checkpoint = "refiner.safetensors"
    script.process_batch(p, True, "tiny.safetensors", 1.0, "embedding")
    with pytest.raises(SafeTextError, match="refiner"):
        sd1.model.get_learned_conditioning(["a cat"])
    p.refiner_checkpoint = None
    script.process_batch(p, False)
    assert "get_learned_conditioning" not in sd1.model.__dict__


def test_panel_built_before_the_checkpoint_loads_does_not_deny_a_fitting_file(webui, sd1):
    """A1111 builds its pages before it loads the checkpoint: the panel's info line must not say that no file fits
    (it said so on every page load although the file fits); the refresh button then gives the real marks."""
    webui.shared.sd_model = None  # what loaded_model() sees while the page is built
    info = webui.script.SafeTextScript().ui(False)[1].kwargs["info"]
    assert "no file here was trained" not in info and info == webui.files.NOT_KNOWN_YET
    webui.shared.sd_model = sd1.model
    assert webui.files.file_dropdown_update()["info"] == "fits this checkpoint: tiny.safetensors"
