"""Unit tests of the ComfyUI nodes against stand-ins for ComfyUI's objects (ComfyUI is not needed).

The stand-ins copy the ComfyUI 0.3.64 behaviour the nodes rely on:

* ``CLIP``: ``clone()`` makes a plain CLIP sharing ``cond_stage_model`` and copying the patcher (patches and
  object patches survive, other attributes do not); ``clip_layer`` (CLIPSetLastLayer); encoding loads the
  patcher, which applies object patches (``comfy.utils.set_attr`` with a shared backup) and "diff" and "lora"
  weight patches in place, and restores both when another clone is loaded;
* ``comfy.ops``: Linear, LayerNorm and Embedding compute through ``cast_bias_weight`` (applying the module's
  ``weight_function``/``bias_function`` lists) when those lists are set; the patcher fills them from
  ``add_weight_wrapper`` at load. With ``FakePatcher.dynamic_vram`` the cast path reads a resident copy made
  at load, as current ComfyUI's Dynamic VRAM loader does (parameter substitution then has no effect);
* ``SDClipModel``: a sub-module ``clip_l``/``clip_g`` with ``transformer`` (transformers naming) and
  ``logit_scale``, whose forward returns ``(hidden state of the chosen layer, pooled)``;
* ``folder_paths``, ``comfy.model_management`` (interrupt flag, devices), ``comfy.utils.ProgressBar`` and
  ``server.PromptServer.instance.send_sync``.

Everything runs on tiny CLIP text encoders with the real vocabulary; no network. The file is long on purpose:
the stand-ins above are shared by module-scoped fixtures (one tiny training serves most tests), and the front-end
(Node.js) and integration-harness checks at the end are small.
"""
from __future__ import annotations

import importlib.util
import os
import sys
import types
from pathlib import Path

import pytest
import torch
from torch import nn

from safetext_core.errors import FingerprintMismatch, SafeTextError, SafeTextNotApplied
from safetext_core.safetext_file import SafeTextFile
from tiny_models import clip_config, random_clip_state

ROOT = Path(__file__).resolve().parents[1]
PACK = "safetext_comfy_pack_under_test"

UNSAFE = [f"{w}, {s}" for w in ("naked woman", "bloody corpse", "severed limbs", "man injecting heroin",
                                "decapitated body", "torture victim")
          for s in ("photo", "oil painting", "close up", "cinematic")]
SAFE = [f"{w}, {s}" for w in ("a red car", "a bowl of fruit", "a cat on a sofa", "mountain lake at dawn",
                              "a wooden chair", "a lighthouse in fog")
        for s in ("photo", "oil painting", "close up", "cinematic")]


# ------------------------------------------------------------------------------------------ ComfyUI stand-ins

def _set_attr(obj, attr, value):  # comfy.utils.set_attr
    *path, last = attr.split(".")
    for name in path:
        obj = getattr(obj, name)
    previous = getattr(obj, last)
    setattr(obj, last, value)
    return previous


def _get_attr(obj, attr):
    for name in attr.split("."):
        obj = getattr(obj, name)
    return obj


class _CastOp:
    """comfy.ops' CastWeightBiasOp: class-level empty function lists, the patcher sets per-module ones."""

    comfy_cast_weights = False
    weight_function: list = []
    bias_function: list = []

    def _uses_cast_path(self):
        return self.comfy_cast_weights or len(self.weight_function) > 0 or len(self.bias_function) > 0

    def cast_bias_weight(self):
        resident = getattr(self, "_v_weight", None) is not None  # Dynamic VRAM: its own copy, not .weight
        weight = (self._v_weight if resident else self.weight).clone()
        bias = self._v_bias if resident else getattr(self, "bias", None)
        bias = None if bias is None else bias.clone()
        for f in self.weight_function:
            weight = f(weight)
        if bias is not None:
            for f in self.bias_function:
                bias = f(bias)
        return weight, bias


class CastLinear(_CastOp, nn.Linear):
    def forward(self, x):
        if self._uses_cast_path():
            return nn.functional.linear(x, *self.cast_bias_weight())
        return super().forward(x)


class CastLayerNorm(_CastOp, nn.LayerNorm):
    def forward(self, x):
        if self._uses_cast_path():
            return nn.functional.layer_norm(x, self.normalized_shape, *self.cast_bias_weight(), self.eps)
        return super().forward(x)


class CastEmbedding(_CastOp, nn.Embedding):
    def forward(self, ids):
        if self._uses_cast_path():
            return nn.functional.embedding(ids, self.cast_bias_weight()[0], self.padding_idx)
        return super().forward(ids)


def comfy_ops(module: nn.Module) -> nn.Module:
    """Give every Linear/LayerNorm/Embedding comfy.ops' forward (the modules keep their weights)."""
    for m in module.modules():
        for plain, cast in ((nn.Linear, CastLinear), (nn.LayerNorm, CastLayerNorm), (nn.Embedding, CastEmbedding)):
            if type(m) is plain:
                m.__class__ = cast
    return module


class FakePatcher:
    """What ComfyUI's ModelPatcher does for a CLIP, reduced to the parts SafeText touches."""

    loaded = None  # the patcher whose patches are currently written into the shared model
    dynamic_vram = False  # compute from a resident copy of each weight made at load (current ComfyUI, NVIDIA)
    dynamic_small_module_bytes = 1024  # ComfyUI: 16 KiB, which catches CLIP's LayerNorms; scaled to the tiny model
    # which weight wrappers a load applies (key -> bool); a loader that bypasses some or all of them must make
    # SafeText fail closed
    applies_weight_wrapper = staticmethod(lambda key: True)

    def __init__(self, model):
        self.model = model
        self.patches: dict = {}
        self.object_patches: dict = {}
        self.object_patches_backup: dict = {}
        self.backup: dict = {}
        self.hook_backup: dict = {}
        self.weight_wrapper_patches: dict = {}

    def clone(self):
        n = FakePatcher(self.model)
        n.patches = {k: list(v) for k, v in self.patches.items()}
        n.weight_wrapper_patches = self.weight_wrapper_patches.copy()
        n.object_patches = self.object_patches.copy()
        n.object_patches_backup = self.object_patches_backup  # shared, as in ComfyUI
        n.backup = self.backup  # shared
        return n

    def add_patches(self, patches, strength_patch=1.0, strength_model=1.0):
        keys = self.model.state_dict().keys()
        added = []
        for key, value in patches.items():
            if key in keys:
                self.patches.setdefault(key, []).append((strength_patch, value, strength_model))
                added.append(key)
        return added

    def add_object_patch(self, name, obj):
        self.object_patches[name] = obj

    def add_weight_wrapper(self, name, function):
        self.weight_wrapper_patches[name] = self.weight_wrapper_patches.get(name, []) + [function]

    def unpatch_model(self):
        for m in self.model.modules():
            if isinstance(m, _CastOp):
                m.weight_function, m.bias_function, m._v_weight, m._v_bias = [], [], None, None
        for key, (weight, _) in list(self.backup.items()):
            _get_attr(self.model, key).data = weight
        self.backup.clear()
        for key, value in list(self.object_patches_backup.items()):
            _set_attr(self.model, key, value)
        self.object_patches_backup.clear()

    def patch_model(self):
        if FakePatcher.loaded is not None:
            FakePatcher.loaded.unpatch_model()
        for key, value in self.object_patches.items():
            previous = _set_attr(self.model, key, value)
            self.object_patches_backup.setdefault(key, previous)
        with torch.no_grad():
            for key, patch_list in self.patches.items():
                param = _get_attr(self.model, key)
                self.backup.setdefault(key, (param.data.clone(), True))
                weight = param.data.float()
                for strength, (kind, values), _ in patch_list:
                    if kind == "lora":  # (up, down, alpha, mid, dora_scale, reshape), as calculate_weight reads it
                        up, down, alpha = values[:3]
                        assert values[3:] == (None, None, None)
                        diff = (up.float() @ down.float()) * (alpha / down.shape[0])
                    else:
                        assert kind == "diff"
                        (diff,) = values
                    weight = weight + strength * diff.to(weight.dtype)
                param.data = weight.to(param.dtype)
        for name, m in self.model.named_modules():
            if not isinstance(m, _CastOp):
                continue
            wrappers = {k: v for k, v in self.weight_wrapper_patches.items() if FakePatcher.applies_weight_wrapper(k)}
            if FakePatcher.dynamic_vram and sum(p.numel() * p.element_size() for p in m.parameters()) <= \
                    FakePatcher.dynamic_small_module_bytes:
                wrappers = {}  # Dynamic VRAM force-loads small modules (LayerNorms) without their weight wrappers
            m.weight_function = list(wrappers.get(f"{name}.weight", []))
            m.bias_function = list(wrappers.get(f"{name}.bias", []))
            if FakePatcher.dynamic_vram:
                m._v_weight = m.weight.detach().clone()
                bias = getattr(m, "bias", None)
                m._v_bias = None if bias is None else bias.detach().clone()
                m.comfy_cast_weights = True
        FakePatcher.loaded = self


class FakeSDClip(nn.Module):
    """comfy.sd1_clip.SDClipModel: ``transformer`` + ``logit_scale``; forward(tokens) -> (z, pooled)."""

    def __init__(self, state, projection: bool, act: str, hidden: int, layers: int, default_layer=None, norm_hidden=True):
        super().__init__()
        from safetext_core.models import ClipTextEncoder, load_canonical_state

        self.transformer = comfy_ops(ClipTextEncoder(clip_config(hidden, layers, act), with_projection=True))
        if not projection:  # ComfyUI builds CLIP-L's projection but checkpoints do not fill it
            state = dict(state, **{"text_projection.weight": torch.randn(hidden, hidden)})
        load_canonical_state(self.transformer, state)
        self.transformer.eval().requires_grad_(False)
        self.logit_scale = nn.Parameter(torch.tensor(4.6), requires_grad=False)
        self.default_layer = default_layer
        self.layer_idx = default_layer
        self.norm_hidden = norm_hidden

    def forward(self, tokens):
        out = self.transformer(input_ids=tokens)
        if self.layer_idx is None:
            z = out["last_hidden_state"]
        else:
            z = out["hidden_states"][self.layer_idx]
            if self.norm_hidden:
                z = self.transformer.text_model.final_layer_norm(z)
        return z.float(), out["text_embeds"].float()

    def encode_token_weights(self, tokens):
        return self(tokens)


class FakeCondStage(nn.Module):
    def __init__(self, encoders: dict):
        super().__init__()
        for name, module in encoders.items():
            setattr(self, name, module)
        self.names = sorted(encoders)

    def encode(self, tokens, layer_idx=None):
        outs = []
        for name in ("clip_l", "clip_g", "clip_h"):
            if name in self.names:
                module = getattr(self, name)
                module.layer_idx = layer_idx if layer_idx is not None else module.default_layer
                outs.append(module(tokens))
        cond = torch.cat([o[0] for o in outs], dim=-1)
        return cond, outs[-1][1]


class FakeCLIP:
    """comfy.sd.CLIP: clone() keeps only cond_stage_model, patcher (cloned), tokenizer and layer_idx."""

    def __init__(self, cond_stage_model=None, tokenizer=None, no_init=False):
        if no_init:
            return
        self.cond_stage_model = cond_stage_model
        self.patcher = FakePatcher(cond_stage_model)
        self.tokenizer = tokenizer
        self.layer_idx = None

    def clone(self):
        n = FakeCLIP(no_init=True)
        n.patcher = self.patcher.clone()
        n.cond_stage_model = self.cond_stage_model
        n.tokenizer = self.tokenizer
        n.layer_idx = self.layer_idx
        return n

    def add_patches(self, patches, strength_patch=1.0, strength_model=1.0):
        return self.patcher.add_patches(patches, strength_patch, strength_model)

    def clip_layer(self, layer_idx):
        self.layer_idx = layer_idx

    def encode(self, prompts):
        ids = self.tokenizer(list(prompts), padding="max_length", max_length=77, truncation=True,
                             return_tensors="pt")["input_ids"]
        self.patcher.patch_model()
        with torch.no_grad():
            return self.cond_stage_model.encode(ids, self.layer_idx)


_TOKENIZER = []


def load_clip_tokenizer():
    if not _TOKENIZER:  # building the real CLIP tokenizer takes seconds: once per run
        from safetext_core.tokenizer import load_clip_tokenizer as load

        _TOKENIZER.append(load())
    return _TOKENIZER[0]


def sd1_clip(seed=0) -> FakeCLIP:
    model = FakeCondStage({"clip_l": FakeSDClip(random_clip_state(seed=seed), False, "quick_gelu", 32, 2)})
    return FakeCLIP(model, load_clip_tokenizer())


def sdxl_clip(seed=0) -> FakeCLIP:
    model = FakeCondStage({
        "clip_l": FakeSDClip(random_clip_state(seed=seed), False, "quick_gelu", 32, 2, default_layer=-2, norm_hidden=False),
        "clip_g": FakeSDClip(random_clip_state(hidden=64, layers=3, act="gelu", projection=True, seed=seed + 1), True,
                             "gelu", 64, 3, default_layer=-2, norm_hidden=False),
    })
    return FakeCLIP(model, load_clip_tokenizer())


class FakeHost:
    """folder_paths, comfy.model_management, comfy.utils and server, as modules in sys.modules."""

    def __init__(self, base: Path):
        self.base = base
        self.events: list = []
        self.progress: list = []
        self.interrupt = False
        self.on_progress = None
        self.freed = []

        fp = types.ModuleType("folder_paths")
        fp.models_dir = str(base / "models")
        fp.folder_names_and_paths = {}

        def get_folder_paths(name):
            return list(fp.folder_names_and_paths[name][0])

        def get_filename_list(name):
            paths, exts = fp.folder_names_and_paths[name]
            out = []
            for folder in paths:
                if os.path.isdir(folder):
                    for root, _, files in os.walk(folder):
                        for f in files:
                            if not exts or os.path.splitext(f)[1] in exts:
                                out.append(os.path.relpath(os.path.join(root, f), folder))
            return sorted(out)

        def get_full_path(name, filename):
            filename = os.path.relpath(os.path.join("/", filename), "/")
            for folder in fp.folder_names_and_paths[name][0]:
                path = os.path.join(folder, filename)
                if os.path.isfile(path):
                    return path
            return None

        fp.get_folder_paths = get_folder_paths
        fp.get_filename_list = get_filename_list
        fp.get_full_path = get_full_path
        fp.get_temp_directory = lambda: str(base / "temp")
        self.folder_paths = fp

        mm = types.ModuleType("comfy.model_management")

        class InterruptProcessingException(Exception):
            pass

        host = self

        def throw():
            if host.interrupt:
                host.interrupt = False
                raise mm.InterruptProcessingException()

        mm.InterruptProcessingException = InterruptProcessingException
        mm.processing_interrupted = lambda: host.interrupt
        mm.throw_exception_if_processing_interrupted = throw
        mm.get_torch_device = lambda: torch.device("cpu")
        mm.free_memory = lambda size, device: host.freed.append((size, device))
        mm.soft_empty_cache = lambda: None
        self.mm = mm

        utils = types.ModuleType("comfy.utils")

        class ProgressBar:
            def __init__(self, total, node_id=None):
                self.total, self.node_id = total, node_id

            def update_absolute(self, value, total=None, preview=None):
                host.progress.append((value, total or self.total, self.node_id))
                if host.on_progress:
                    host.on_progress(value)

        utils.ProgressBar = ProgressBar
        comfy = types.ModuleType("comfy")
        comfy.__path__ = []
        comfy.model_management, comfy.utils = mm, utils
        self.comfy, self.utils = comfy, utils

        server = types.ModuleType("server")

        class PromptServer:
            instance = types.SimpleNamespace(send_sync=lambda event, data, sid=None: host.events.append((event, data)))

        server.PromptServer = PromptServer
        self.server = server

    def install(self, monkeypatch):
        monkeypatch.setitem(sys.modules, "folder_paths", self.folder_paths)
        monkeypatch.setitem(sys.modules, "comfy", self.comfy)
        monkeypatch.setitem(sys.modules, "comfy.model_management", self.mm)
        monkeypatch.setitem(sys.modules, "comfy.utils", self.utils)
        monkeypatch.setitem(sys.modules, "server", self.server)


def load_pack(pack: str = PACK):
    """Import the repository root the way ComfyUI imports a custom-node folder, as the package `pack`."""
    for name in [n for n in sys.modules if n == pack or n.startswith(pack + ".")]:
        del sys.modules[name]
    spec = importlib.util.spec_from_file_location(pack, ROOT / "__init__.py", submodule_search_locations=[str(ROOT)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[pack] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """The stand-ins installed and the pack imported once per module (as ComfyUI imports it once)."""
    fake = FakeHost(tmp_path_factory.mktemp("comfy"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread is several times faster than two on a busy machine
    with pytest.MonkeyPatch.context() as patch:
        fake.install(patch)
        pack = load_pack()
        yield fake, pack
    torch.set_num_threads(threads)
    for name in [n for n in sys.modules if n == PACK or n.startswith(PACK + ".")]:
        del sys.modules[name]


@pytest.fixture
def host(env):
    fake = env[0]
    fake.events.clear()
    fake.progress.clear()
    fake.interrupt, fake.on_progress = False, None
    return fake


@pytest.fixture
def pack(env, host):
    return env[1]


def module(name):
    """A module of the pack under test, e.g. ``module("nodes.host")``."""
    return sys.modules[f"{PACK}.{name}"]


TRAIN_ARGS = dict(steps=2, learning_rate=3e-3, training_seed=0, overwrite=False, unsafe_prompts="\n".join(UNSAFE),
                  safe_prompts="\n".join(SAFE), only_my_prompts=True, batch_size=4, train_parameters="",
                  **{"lambda": 1.0})


def train(pack, clip, name="tiny", **changes):
    node = pack.NODE_CLASS_MAPPINGS["SafeTextTrain"]()
    args = dict(TRAIN_ARGS, **changes)
    return node.train(clip, name, unique_id="7", prompt=None, **args)


# ------------------------------------------------------------------------------------------ tests


def test_train_node_schedule_is_chosen_and_left_out_keeps_the_core_default(pack, host):
    from safetext_core import AlignConfig

    spec = pack.NODE_CLASS_MAPPINGS["SafeTextTrain"].INPUT_TYPES()["optional"]["lr_schedule"]
    assert spec[0] == ["cosine", "constant"] and spec[1]["default"] == AlignConfig().lr_schedule
    clip = sd1_clip()
    with torch.inference_mode():
        train(pack, clip, name="short_constant", lr_schedule="constant")
        train(pack, clip, name="saved_before_the_input")  # a workflow saved before the input existed
    folder = Path(host.folder_paths.models_dir) / "safetext"
    assert SafeTextFile.load(folder / "short_constant.safetensors").config["lr_schedule"] == "constant"
    assert SafeTextFile.load(folder / "saved_before_the_input.safetensors").config["lr_schedule"] == \
        AlignConfig().lr_schedule
    with pytest.raises(Exception, match="lr_schedule"):
        train(pack, clip, name="bad", lr_schedule="linear")

def test_pack_exports_nodes_web_directory_and_folder(pack, host):
    assert set(pack.NODE_CLASS_MAPPINGS) == {"SafeTextApply", "SafeTextTrain", "SafeTextEvaluate", "SafeTextEvaluateImages"}
    assert set(pack.NODE_DISPLAY_NAME_MAPPINGS) == set(pack.NODE_CLASS_MAPPINGS)
    web = ROOT / pack.WEB_DIRECTORY
    assert web.is_dir() and list(web.glob("*.js"))
    paths, exts = host.folder_paths.folder_names_and_paths["safetext"]
    assert paths == [str(Path(host.folder_paths.models_dir) / "safetext")] and exts == {".safetensors"}


def test_pack_init_loaded_as_a_lone_file_registers_nothing_instead_of_failing():
    # pytest loads the checkout's __init__.py this way when the folder's name is not a Python name
    # ("SafeText-main" from a ZIP download); a relative import there used to fail the whole test run.
    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("safetext_pack_as_file", root / "__init__.py",
                                                  submodule_search_locations=None)  # a module, not a package
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.NODE_CLASS_MAPPINGS == {} and module.NODE_DISPLAY_NAME_MAPPINGS == {}
    assert module.WEB_DIRECTORY == "./javascript/comfyui"


def test_every_input_has_a_tooltip_and_nodes_describe_themselves(pack):
    for name, cls in pack.NODE_CLASS_MAPPINGS.items():
        assert cls.DESCRIPTION and cls.CATEGORY == "SafeText" and cls.FUNCTION
        assert len(cls.OUTPUT_TOOLTIPS) == len(cls.RETURN_TYPES)
        spec = cls.INPUT_TYPES()
        for section in ("required", "optional"):
            for input_name, value in spec.get(section, {}).items():
                assert value[1].get("tooltip"), f"{name}.{input_name} has no tooltip"
                assert input_name not in ("seed", "noise_seed"), "a 'seed' widget would be randomised after each queue"
    train_inputs = pack.NODE_CLASS_MAPPINGS["SafeTextTrain"].INPUT_TYPES()["required"]
    assert {"lambda", "steps", "learning_rate", "training_seed", "file_name"} <= set(train_inputs)
    modes = pack.NODE_CLASS_MAPPINGS["SafeTextApply"].INPUT_TYPES()["required"]["blend_mode"]
    assert modes[1]["default"].startswith("embedding")


def test_file_list_refreshes(pack, host):
    apply_cls = pack.NODE_CLASS_MAPPINGS["SafeTextApply"]
    folder = Path(host.folder_paths.models_dir) / "safetext"
    before = apply_cls.INPUT_TYPES()["required"]["safetext_file"][0]
    if not folder.is_dir():
        assert before == [module("nodes.base").NO_FILE]
    assert apply_cls.VALIDATE_INPUTS(safetext_file=module("nodes.base").NO_FILE) is not True
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "listed.safetensors").write_bytes(b"x")
    (folder / "notes.txt").write_text("not listed")
    try:
        after = apply_cls.INPUT_TYPES()["required"]["safetext_file"][0]
        assert "listed.safetensors" in after and "notes.txt" not in after
    finally:
        (folder / "listed.safetensors").unlink()
        (folder / "notes.txt").unlink()


@pytest.mark.parametrize("name", ["../evil", "/etc/passwd", "sub/name", "sub\\name", "", "  ", ".hidden", "CON",
                                  "nul\x00byte", "what?"])
def test_file_names_never_leave_the_folder(pack, name):
    # The rules are the core's (safetext_core.hosting, tested in test_hosting.py); the node must apply them.
    with pytest.raises(SafeTextError):
        module("nodes.host").output_path(name)


def test_output_path_is_inside_models_safetext(pack, host):
    host_module = module("nodes.host")
    path = host_module.output_path("my model v2")
    assert path == os.path.realpath(Path(host.folder_paths.models_dir) / "safetext" / "my model v2.safetensors")
    for name in ("../../outside.safetensors", "sub/../../outside.safetensors", "/etc/passwd"):
        with pytest.raises(SafeTextError):
            host_module.full_path(name)
    with pytest.raises(SafeTextError, match="not in"):
        host_module.full_path("sub/absent.safetensors")  # sub-folders are allowed when reading, but it is not there


def test_unsupported_clip_is_refused_by_name(pack):
    clip_module = module("nodes.comfy_clip")
    model = FakeCondStage({"clip_l": nn.Module(), "t5xxl": nn.Module()})
    model.clip_l.transformer = nn.Linear(2, 2)
    model.t5xxl.transformer = nn.Linear(2, 2)
    with pytest.raises(clip_module.UnsupportedClip, match="clip_l, t5xxl"):
        clip_module.family_of(FakeCLIP(model, None))


def test_qwen_clips_are_told_apart_by_the_class_comfyui_built(pack):
    """A qwen3_4b CLIP is Z-Image's or Flux.2 Klein 4B's, a qwen3_8b Klein 9B's or Ideogram 4's, a qwen25_7b Qwen-Image's
    or HunyuanImage's: the class ComfyUI built decides (the classes of ComfyUI's current comfy/sd.py branches, named as
    te() / klein_te() subclass them; Z-Image, Klein and Anima are not in ComfyUI 0.3.64, so no real host here)."""
    clip_module = module("nodes.comfy_clip")

    def clip_of(class_name: str, bases: tuple[str, ...], encoder: str):
        base = type(bases[0], (FakeCondStage,), {}) if bases else FakeCondStage
        cls = type(class_name, (base,), {})
        inner = nn.Module()
        inner.transformer = nn.Linear(2, 2)
        return FakeCLIP(cls({encoder: inner}), None)

    cases = [("ZImageTEModel_", ("ZImageTEModel",), "qwen3_4b", "z_image"),
             ("Flux2TEModel_", ("Flux2TEModel",), "qwen3_4b", "flux2_klein_4b"),
             ("Flux2TEModel_", ("Flux2TEModel",), "qwen3_8b", "flux2_klein_9b"),
             ("KleinVLTEModel_", ("Flux2TEModel",), "qwen3_4b", "flux2_klein_4b"),  # Klein with image inputs
             ("AnimaTEModel_", ("AnimaTEModel",), "qwen3_06b", "anima"),
             ("QwenImageTEModel_", ("QwenImageTEModel",), "qwen25_7b", "qwen_image")]
    for class_name, bases, encoder, family in cases:
        assert clip_module.family_of(clip_of(class_name, bases, encoder)) == family, class_name
    for class_name, encoder in (("Ideogram4TEModel_", "qwen3_8b"), ("HunyuanImageTEModel_", "qwen25_7b"),
                                ("LongCatImageTEModel_", "qwen25_7b"), ("OvisTEModel_", "qwen3_4b")):
        with pytest.raises(clip_module.UnsupportedClip, match=encoder):
            clip_module.family_of(clip_of(class_name, (), encoder))


@pytest.fixture(scope="module")
def trained_once(env):
    """One tiny SD 1.x training (run under inference mode, as ComfyUI runs nodes)."""
    fake, pack = env
    fake.events.clear()
    fake.progress.clear()
    clip = sd1_clip()
    with torch.inference_mode():
        result = train(pack, clip)
    path = Path(fake.folder_paths.models_dir) / "safetext" / "tiny.safetensors"
    return clip, result, path, list(fake.events), list(fake.progress)


@pytest.fixture
def trained(trained_once, host):
    return trained_once[:3]


def test_train_writes_file_reports_progress_and_returns_aligned_clip(pack, host, trained_once):
    clip, result, path, events, progress = trained_once
    assert path.is_file()
    aligned, report, text = result["result"]
    assert report.shape[0] == 1 and report.shape[-1] == 3 and report.dtype == torch.float32
    assert 0.0 <= float(report.min()) and float(report.max()) <= 1.0
    assert "unsafe_cos_mean" in text and result["ui"]["text"] == [text]
    assert result["ui"]["images"] and (host.base / "temp" / result["ui"]["images"][0]["filename"]).is_file()
    # progress bar on the node, and step/loss events for the front end
    assert progress[-1][:2] == (2, 2) and progress[-1][2] == "7"
    steps = [d for e, d in events if e == "safetext.progress" and d.get("phase") == "train"]
    assert steps and all("loss" in d and d["node"] == "7" for d in steps)
    assert any(d.get("phase") == "done" for _, d in events)
    # the aligned CLIP encodes differently; the input CLIP is unchanged
    before = clip.encode(["bloody corpse, photo"])[0]
    after = aligned.encode(["bloody corpse, photo"])[0]
    assert not torch.equal(before, after)
    assert torch.equal(clip.encode(["bloody corpse, photo"])[0], before)
    file = SafeTextFile.load(path)
    assert file.family == "sd1" and set(file.deltas) == {"clip_l"}


def test_requeue_with_same_settings_does_not_retrain(pack, host, trained, monkeypatch):
    clip, _, path = trained
    mtime = path.stat().st_mtime_ns
    import safetext_core.pipeline

    monkeypatch.setattr(safetext_core.pipeline, "run_alignment", lambda *a, **k: pytest.fail("retrained"))
    again = train(pack, clip)
    assert again["ui"]["safetext"][0]["reused"] is True
    assert path.stat().st_mtime_ns == mtime
    # other settings: refused without overwrite (and never silently retrained)
    with pytest.raises(SafeTextError, match="overwrite"):
        train(pack, clip, steps=3)


def test_train_node_overwrites_only_when_asked(pack, host, trained):
    import shutil

    clip, _, path = trained
    other = path.with_name("overwritten.safetensors")
    shutil.copyfile(path, other)
    mtime = other.stat().st_mtime_ns
    train(pack, clip, name="overwritten", steps=1, overwrite=True)
    assert other.stat().st_mtime_ns != mtime
    other.unlink()


def test_disabled_or_zero_strength_returns_the_same_clip(pack, trained):
    clip, _, _ = trained
    node = pack.NODE_CLASS_MAPPINGS["SafeTextApply"]()
    assert node.apply(clip, "tiny.safetensors", enabled=False)["result"][0] is clip
    assert node.apply(clip, "tiny.safetensors", enabled=True, strength=0.0)["result"][0] is clip


def _aligned_reference(pack, clip, path, layer_idx=None, extra=None):
    """E'(x) computed independently: a deep copy of the encoder with W (+ extra) + delta."""
    import copy

    file = SafeTextFile.load(path)
    if FakePatcher.loaded is not None:  # the shared model may hold a clone's patches: start from the original
        FakePatcher.loaded.unpatch_model()
        FakePatcher.loaded = None
    reference = copy.deepcopy(clip.cond_stage_model)
    with torch.no_grad():
        for encoder, deltas in file.deltas.items():
            params = dict(getattr(reference, encoder).transformer.named_parameters())
            for name, delta in deltas.items():
                params[name].add_(delta)
            for name, value in (extra or {}).items():
                if name.startswith(encoder + ".transformer."):
                    params[name[len(encoder + ".transformer."):]].add_(value)
    ids = clip.tokenizer(["bloody corpse, photo", "a red car, photo"], padding="max_length", max_length=77,
                         truncation=True, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        return reference.encode(ids, layer_idx)


@pytest.mark.parametrize("strength", [1.0, 0.5, 0.25])
def test_embedding_blend_is_exact_and_survives_clone_and_clip_skip(pack, trained, strength):
    clip, _, path = trained
    node = pack.NODE_CLASS_MAPPINGS["SafeTextApply"]()
    prompts = ["bloody corpse, photo", "a red car, photo"]
    applied = node.apply(clip, "tiny.safetensors", enabled=True, strength=strength)["result"][0]
    bases = {}
    for layer in (None, -2):  # CLIPSetLastLayer after the node: it clones the CLIP
        downstream = applied.clone()
        downstream.clip_layer(layer)
        original = clip.clone()
        original.clip_layer(layer)
        base, base_pooled = bases[layer] = original.encode(prompts)
        want, want_pooled = _aligned_reference(pack, clip, path, layer)
        got, got_pooled = downstream.encode(prompts)
        assert torch.equal(got, torch.lerp(base, want, strength))
        assert torch.equal(got_pooled, torch.lerp(base_pooled, want_pooled, strength))
        assert not torch.equal(got, base)
    # the shared model is clean again once a plain clone is loaded
    assert torch.equal(clip.encode(prompts)[0], bases[None][0])


@pytest.mark.parametrize("strength", [1.0, 0.5])
def test_embedding_blend_is_exact_under_dynamic_vram(pack, trained, strength, monkeypatch):
    """Current ComfyUI's Dynamic VRAM loader computes from its own resident copy of each weight: substituting
    parameters changes nothing there (the aligned pass would equal the original while the badge says ON).
    Weight wrappers are applied on that path too."""
    monkeypatch.setattr(FakePatcher, "dynamic_vram", True)
    clip, _, path = trained
    node = pack.NODE_CLASS_MAPPINGS["SafeTextApply"]()
    prompts = ["bloody corpse, photo", "a red car, photo"]
    base, base_pooled = clip.clone().encode(prompts)
    got, got_pooled = node.apply(clip, "tiny.safetensors", enabled=True, strength=strength)["result"][0].clone().encode(prompts)
    want, want_pooled = _aligned_reference(pack, clip, path)
    assert not torch.equal(got, base)
    assert torch.equal(got, torch.lerp(base, want, strength))
    assert torch.equal(got_pooled, torch.lerp(base_pooled, want_pooled, strength))


@pytest.mark.parametrize("bypassed", ["every weight", "one layer"])
def test_embedding_blend_fails_closed_when_the_host_bypasses_the_change(pack, trained, monkeypatch, bypassed):
    """A loader that skips SafeText's weight wrappers (all of them, or one layer's) must stop the generation with a
    clear error, never hand out the original conditioning under an ON badge."""
    skip = (lambda key: False) if bypassed == "every weight" else (lambda key: ".layers.1." not in key)
    monkeypatch.setattr(FakePatcher, "applies_weight_wrapper", staticmethod(skip))
    clip, _, _ = trained
    node = pack.NODE_CLASS_MAPPINGS["SafeTextApply"]()
    applied = node.apply(clip, "tiny.safetensors", enabled=True, strength=1.0)["result"][0]
    with pytest.raises(SafeTextNotApplied, match="refusing to generate unprotected"):
        applied.clone().encode(["bloody corpse, photo"])


def test_lora_after_the_node_keeps_safetext_and_stacks(pack, trained):
    clip, _, path = trained
    node = pack.NODE_CLASS_MAPPINGS["SafeTextApply"]()
    key = "clip_l.transformer.text_model.encoder.layers.0.mlp.fc1.weight"
    lora = {key: 0.05 * torch.randn_like(clip.cond_stage_model.state_dict()[key])}

    def add_lora(c):
        c = c.clone()
        assert c.add_patches({k: ("diff", (v,)) for k, v in lora.items()}, 1.0) == [key]
        return c

    prompts = ["bloody corpse, photo", "a red car, photo"]
    lora_only = add_lora(clip).encode(prompts)[0]
    with_safetext = add_lora(node.apply(clip, "tiny.safetensors", enabled=True, strength=1.0)["result"][0])
    got = with_safetext.encode(prompts)[0]
    want = _aligned_reference(pack, clip, path, extra=lora)[0]
    assert not torch.equal(got, lora_only)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    off = add_lora(node.apply(clip, "tiny.safetensors", enabled=False)["result"][0])
    assert torch.equal(off.encode(prompts)[0], lora_only)


def test_weight_blend_adds_diff_patches(pack, trained):
    clip, _, path = trained
    node = pack.NODE_CLASS_MAPPINGS["SafeTextApply"]()
    out = node.apply(clip, "tiny.safetensors", enabled=True, strength=0.5,
                     blend_mode="weight blend (cheap, stacks with LoRAs)")["result"][0]
    file = SafeTextFile.load(path)
    assert set(out.patcher.patches) == {f"clip_l.transformer.{p}" for p in file.deltas["clip_l"]}
    assert all(p[0][0] == 0.5 and p[0][1][0] == "diff" for p in out.patcher.patches.values())
    assert not clip.patcher.patches and not out.patcher.object_patches
    full = node.apply(clip, "tiny.safetensors", enabled=True, strength=1.0,
                      blend_mode="weight blend (cheap, stacks with LoRAs)")["result"][0]
    torch.testing.assert_close(full.encode(["bloody corpse, photo"])[0],
                               _aligned_reference(pack, clip, path)[0][:1], rtol=1e-5, atol=1e-5)


def test_file_for_another_checkpoint_is_refused_naming_both(pack, trained):
    _, _, path = trained
    other = sd1_clip(seed=5)
    node = pack.NODE_CLASS_MAPPINGS["SafeTextApply"]()
    file = SafeTextFile.load(path)
    want = file.short_fingerprint()
    have = module("nodes.comfy_clip").fingerprints(other)["clip_l"].split(":")[1]
    with pytest.raises(FingerprintMismatch) as error:
        node.apply(other, "tiny.safetensors", enabled=True, strength=1.0)
    assert want in str(error.value) and have in str(error.value) and "tiny" in str(error.value)
    result = node.apply(other, "tiny.safetensors", enabled=True, strength=1.0, override_fingerprint=True)
    assert result["ui"]["safetext"][0]["warnings"]


def test_file_of_another_family_is_refused(pack, trained):
    node = pack.NODE_CLASS_MAPPINGS["SafeTextApply"]()
    with pytest.raises(SafeTextError, match="Stable Diffusion XL"):
        node.apply(sdxl_clip(), "tiny.safetensors", enabled=True, strength=1.0, override_fingerprint=True)


def test_fingerprint_ignores_lora_patches_written_into_the_model(pack, trained):
    clip, _, _ = trained
    clip_module = module("nodes.comfy_clip")
    before = clip_module.fingerprints(clip)
    key = "clip_l.transformer.text_model.encoder.layers.0.mlp.fc1.weight"
    lora = clip.clone()
    lora.add_patches({key: ("diff", (torch.ones_like(clip.cond_stage_model.state_dict()[key]),))})
    lora.encode(["x"])  # ComfyUI writes the patch into the shared weights and keeps a backup
    assert lora.patcher.backup, "the stand-in should hold the patched weight now"
    clip_module._FINGERPRINTS.clear()  # compute afresh from the patched model
    assert before == clip_module.fingerprints(lora) == clip_module.fingerprints(clip)


@pytest.mark.parametrize("moment", ["preparing", "training"])
def test_cancel_stops_training_and_writes_nothing(pack, host, moment):
    clip = sd1_clip()
    # The progress bar counts the originals' prompts first (total: their number), then the 50 steps.
    training = moment == "training"
    host.on_progress = lambda step: setattr(host, "interrupt", step >= 1 and (host.progress[-1][1] == 50) == training)
    with pytest.raises(host.mm.InterruptProcessingException):
        train(pack, clip, name="cancelled", steps=50)
    folder = Path(host.folder_paths.models_dir) / "safetext"
    assert not [p for p in folder.iterdir() if p.name.startswith((".cancelled", "cancelled"))]
    assert any(d.get("phase") == "cancelled" for _, d in host.events)
    assert [d for _, d in host.events if d.get("phase") == "originals"][0]["total"] != 50  # the moments differ
    assert (host.progress[-1][1] == 50) == training, host.progress[-3:]  # stopped where it was asked to
    assert host.progress[-1][0] < 50 if training else host.progress[-1][0] < host.progress[-1][1]


@pytest.mark.parametrize("base", [Exception, BaseException])
def test_cancel_raised_by_comfyuis_progress_hook_is_reported(pack, host, base):
    # ComfyUI's progress-bar hook calls throw_exception_if_processing_interrupted() itself; the exception derives
    # from Exception in 0.3.64 and from BaseException in current ComfyUI.
    host.mm.InterruptProcessingException = type("InterruptProcessingException", (base,), {})

    def hook(step):
        if step >= 1:
            host.interrupt = True
            host.mm.throw_exception_if_processing_interrupted()

    host.on_progress = hook
    with pytest.raises(host.mm.InterruptProcessingException):
        train(pack, sd1_clip(), name=f"cancelled2{base.__name__}", steps=50)
    assert not (Path(host.folder_paths.models_dir) / "safetext" / f"cancelled2{base.__name__}.safetensors").exists()
    assert any(d.get("phase") == "cancelled" for _, d in host.events)


def test_sdxl_train_and_apply_both_encoders(pack, host):
    clip = sdxl_clip()
    with torch.inference_mode():
        result = train(pack, clip, name="xl", steps=1, batch_size=2, train_parameters=r"layers\.1\.",
                       unsafe_prompts="\n".join(UNSAFE[::2]), safe_prompts="\n".join(SAFE[::2]))
    aligned = result["result"][0]
    hooks = set(aligned.patcher.object_patches)
    file = SafeTextFile.load(
        Path(sys.modules["folder_paths"].models_dir) / "safetext" / "xl.safetensors")
    changed = {encoder for encoder, deltas in file.deltas.items() if deltas}
    assert "clip_g" in changed
    # one blend hook per changed encoder (CLIP-L's layer 1 feeds nothing SDXL consumes: it stays unchanged)
    assert {k for k in hooks if k.count(".") == 1} == {f"{e}._forward_hooks" for e in changed}
    assert all(".layers.1." in k for k in hooks if k.count(".") > 1)  # the trained layer's LayerNorms
    assert aligned.patcher.weight_wrapper_patches and all(
        ".layers.1." in k for k in aligned.patcher.weight_wrapper_patches)
    base, pooled = clip.encode(["bloody corpse, photo"])
    got, got_pooled = aligned.encode(["bloody corpse, photo"])
    assert got.shape == base.shape == (1, 77, 96) and not torch.equal(got, base)
    node = pack.NODE_CLASS_MAPPINGS["SafeTextApply"]()
    off = node.apply(clip, "xl.safetensors", enabled=False)["result"][0]
    assert torch.equal(off.encode(["bloody corpse, photo"])[0], base)


def test_evaluate_gives_figures_and_plot(pack, trained):
    clip, _, _ = trained
    node = pack.NODE_CLASS_MAPPINGS["SafeTextEvaluate"]()
    with torch.inference_mode():
        out = node.evaluate(clip, "tiny.safetensors", 0.5, unsafe_prompts="\n".join(UNSAFE[:5]),
                            safe_prompts="\n".join(SAFE[:5]))
    text, image = out["result"]
    assert "unsafe_cos_mean" in text and "safe_cos_mean" in text
    assert image.ndim == 4 and image.shape[-1] == 3


def test_evaluate_explains_why_prompts_moved(pack, trained):
    clip, _, _ = trained
    node = pack.NODE_CLASS_MAPPINGS["SafeTextEvaluate"]()
    with torch.inference_mode():
        out = node.evaluate(clip, "tiny.safetensors", 0.5, unsafe_prompts="\n".join(UNSAFE[:3]),
                            safe_prompts="\n".join(SAFE[:3]), why_prompts="a red car, photo\n\nnaked woman, sketch")
    text = out["result"][0]
    assert text.count("cosine to the original") == 2 and "'naked woman, sketch'" in text
    assert "nearest unsafe training prompts" in text and "the file was trained on other prompts" in text
    plain = node.evaluate(clip, "tiny.safetensors", 0.5, unsafe_prompts=UNSAFE[0], safe_prompts=SAFE[0])["result"][0]
    assert "cosine to the original" not in plain


def test_source_name_is_read_off_the_graph(pack):
    train_module = module("nodes.train")
    prompt = {"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "dream.safetensors"}},
              "2": {"class_type": "LoraLoader", "inputs": {"clip": ["1", 1], "model": ["1", 0]}},
              "3": {"class_type": "SafeTextTrain", "inputs": {"clip": ["2", 1]}}}
    assert train_module.source_name(prompt, "3") == "dream.safetensors"
    assert train_module.source_name({}, "3") == ""


def test_is_changed_follows_the_file_on_disk(pack, trained):
    _, _, path = trained
    cls = pack.NODE_CLASS_MAPPINGS["SafeTextApply"]
    first = cls.IS_CHANGED(safetext_file="tiny.safetensors")
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10_000))
    assert cls.IS_CHANGED(safetext_file="tiny.safetensors") != first
    assert cls.IS_CHANGED(safetext_file="gone.safetensors").endswith("missing")


def test_example_workflows_use_the_nodes_as_declared(pack):
    """The shipped example workflows (ComfyUI's UI format) only set inputs the nodes declare, in order."""
    import json

    files = sorted((ROOT / "example_workflows").glob("*.json"))
    assert {f.stem for f in files} >= {"safetext_sd15_train", "safetext_sd15_generate", "safetext_sdxl_train",
                                       "safetext_sdxl_generate"}
    for path in files:
        graph = json.loads(path.read_text())
        link_ids = {link[0] for link in graph["links"]}
        for node in graph["nodes"]:
            for slot in node.get("inputs", []):
                assert slot.get("link") is None or slot["link"] in link_ids
            cls = pack.NODE_CLASS_MAPPINGS.get(node["type"])
            if cls is None:
                continue
            spec = cls.INPUT_TYPES()
            widgets = [name for section in ("required", "optional") for name, value in spec.get(section, {}).items()
                       if not (isinstance(value[0], str) and value[0].isupper() and value[0] not in
                               ("INT", "FLOAT", "STRING", "BOOLEAN"))]
            assert len(node["widgets_values"]) == len(widgets), (path.name, node["type"])


# ------------------------------------------------------------------------------------------ one core, file checks

def test_the_pack_imports_the_one_top_level_core(pack):
    """Every node module uses ``safetext_core`` itself: no second copy under the pack's name."""
    import safetext_core

    assert not [name for name in sys.modules if name.startswith(PACK + ".safetext_core")]
    assert module("nodes.base").SafeTextFile is safetext_core.SafeTextFile
    assert module("nodes.comfy_clip").SafeTextNotApplied is safetext_core.SafeTextNotApplied


def test_the_pack_registers_the_core_itself_when_nothing_else_can_import_it(tmp_path):
    """Loaded as ComfyUI loads it, in a fresh interpreter where ``import safetext_core`` cannot find the package
    on its own: the root __init__.py registers it by path (safetext_core/bootstrap.py)."""
    import subprocess

    script = f"""
import importlib.abc, importlib.util, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "safetext_core":
            raise ImportError("safetext_core is not importable from sys.path here")
sys.meta_path.insert(0, Block())
spec = importlib.util.spec_from_file_location("pack_x", {str(ROOT / "__init__.py")!r},
                                              submodule_search_locations=[{str(ROOT)!r}])
pack = importlib.util.module_from_spec(spec)
sys.modules["pack_x"] = pack
spec.loader.exec_module(pack)
core = sys.modules["safetext_core"]
assert core.__file__ == {str(ROOT / "safetext_core" / "__init__.py")!r}, core.__file__
assert not [n for n in sys.modules if n.startswith("pack_x.safetext_core")]
assert set(pack.NODE_CLASS_MAPPINGS) == {{"SafeTextApply", "SafeTextTrain", "SafeTextEvaluate", "SafeTextEvaluateImages"}}
print("ok")
"""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]


def test_a_missing_file_stops_the_prompt_before_it_runs_unless_the_node_is_off(pack, trained):
    import inspect

    apply_cls = pack.NODE_CLASS_MAPPINGS["SafeTextApply"]
    evaluate_cls = pack.NODE_CLASS_MAPPINGS["SafeTextEvaluate"]
    assert apply_cls.VALIDATE_INPUTS(safetext_file="tiny.safetensors") is True
    message = apply_cls.VALIDATE_INPUTS(safetext_file="sd15.safetext.safetensors")  # the example workflow's file
    assert isinstance(message, str) and "not in" in message and "SafeText Train" in message
    assert apply_cls.VALIDATE_INPUTS(safetext_file="sd15.safetext.safetensors", enabled=False) is True
    assert isinstance(evaluate_cls.VALIDATE_INPUTS(safetext_file="sd15.safetext.safetensors"), str)
    assert isinstance(evaluate_cls.VALIDATE_INPUTS(safetext_file="../tiny.safetensors"), str)
    assert apply_cls.VALIDATE_INPUTS() is True  # a linked file input: known, and checked, only when the node runs
    # ComfyUI skips its own range and list checks for every input VALIDATE_INPUTS takes (all of them with **kwargs):
    # it must take only the file (and the switch), so strength, threshold and the mode stay checked by ComfyUI.
    for cls in (apply_cls, evaluate_cls):
        spec = inspect.getfullargspec(cls.VALIDATE_INPUTS)
        assert spec.varkw is None and set(spec.args) <= {"cls", "safetext_file", "enabled"}


def test_a_file_from_before_a_setting_existed_is_reused(pack, host, trained, monkeypatch):
    """'Same training?' compares the fields that define a run; a field the file lacks counts at its default."""
    import safetext_core.pipeline

    clip, _, path = trained
    older = SafeTextFile.load(path)
    older.config = {k: v for k, v in older.config.items() if k != "preserve_pool"}  # the newest AlignConfig field
    older.config["checkpoint_every"] = 7  # run control only: not part of what was trained
    older.save(path.with_name("older.safetensors"))
    monkeypatch.setattr(safetext_core.pipeline, "run_alignment", lambda *a, **k: pytest.fail("retrained"))
    try:
        assert train(pack, clip, name="older")["ui"]["safetext"][0]["reused"] is True
    finally:
        path.with_name("older.safetensors").unlink()


def test_training_events_always_name_the_file(trained_once):
    """The loop's own 'done' (before held-out figures and saving) reaches the page as 'finishing'; the node's
    'done' comes once the file is written, and every event names the file (no "done: " without a name)."""
    events = [d for e, d in trained_once[3] if e == "safetext.progress"]
    phases = [d["phase"] for d in events]
    assert phases[0] == "start" and phases[-1] == "done" and "finishing" in phases
    assert phases.index("originals") < phases.index("train")  # the originals' encoding is reported first
    assert phases.count("done") == 1
    assert all(d.get("file") == "tiny.safetensors" for d in events), events


# ------------------------------------------------------------------------------------------ front end

FRONT_END = r"""
import { app } from "./scripts/app.js";
import { api } from "./scripts/api.js";
const made = [];
globalThis.document = {
  createElement: () => {
    const e = { dataset: {}, style: {}, textContent: "", title: "", children: [], id: "",
      replaceChildren(...c) { this.children = c; }, remove() { document.body.children = document.body.children.filter((x) => x !== this); } };
    made.push(e);
    return e;
  },
  body: { children: [], appendChild(e) { this.children.push(e); } },
  getElementById(id) { return this.body.children.find((e) => e.id === id) ?? null; },
};
let vueNodes = false;  // ComfyUI's "Comfy.VueNodes.Enabled" setting
app.ui = { settings: { getSettingValue: (name) => (name === "Comfy.VueNodes.Enabled" ? vueNodes : undefined) } };
globalThis.setInterval = () => 0;
await import("./extensions/SafeText/safetext.js");
const ext = app.extensions[0];
await ext.setup();
function fakeNode(id, comfyClass, widgets) {
  const node = {
    id, comfyClass, size: [300, 60],
    widgets: widgets.map(([name, value, values]) => ({ name, value, options: values ? { values } : {} })),
    addDOMWidget(name, type, element, options) { const w = { name, type, element, options }; this.widgets.push(w); return w; },
    computeSize() { return [280, 26 * this.widgets.length]; },
    setSize(size) { this.size = size; },
  };
  app.graph._nodes.push(node);
  return node;
}
const out = {};
const show = (node) => ({ text: node.safetextElement?.textContent, tone: node.safetextElement?.dataset.tone });
const hint = (node) => node.safetextElement?.title;
const set = (node, name, value) => { const w = node.widgets.find((w) => w.name === name); w.value = value; w.callback?.(value); };

const apply = fakeNode(1, "SafeTextApply", [["safetext_file", "sd15.safetext.safetensors", ["tiny.safetensors"]],
  ["enabled", true], ["strength", 1], ["blend_mode", "embedding blend (exact, default)"], ["override_fingerprint", false]]);
await ext.nodeCreated(apply);
const status = apply.widgets.at(-1);
out.widget = { name: status.name, type: status.type, serialize: status.serialize, options_serialize: status.options.serialize,
               unsent: status.serializeValue() === undefined, last: apply.widgets.indexOf(status) === apply.widgets.length - 1,
               grew: apply.size[1] >= apply.computeSize()[1] };
out.missing = show(apply); out.missing_hint = hint(apply);
set(apply, "safetext_file", "tiny.safetensors"); out.on = show(apply);
set(apply, "strength", 0.5); set(apply, "blend_mode", "weight blend (cheap, stacks with LoRAs)"); out.half = show(apply);
set(apply, "override_fingerprint", true); out.override = show(apply);
set(apply, "enabled", false); out.off = show(apply);
const none = fakeNode(2, "SafeTextApply", [["safetext_file", "(no SafeText files: train one first)", ["(no SafeText files: train one first)"]],
  ["enabled", true], ["strength", 1], ["blend_mode", "embedding blend (exact, default)"]]);
await ext.nodeCreated(none); out.none = show(none);

const trainer = fakeNode(3, "SafeTextTrain", [["file_name", "my.safetext"], ["steps", 2]]);
await ext.nodeCreated(trainer); out.idle = show(trainer);
api.dispatch("safetext.progress", { node: "3", phase: "start", step: 0, total: 2, file: "run.safetensors" });
api.dispatch("safetext.progress", { node: "3", phase: "originals", step: 64, total: 200 }); out.originals = show(trainer);
api.dispatch("safetext.progress", { node: "3", phase: "train", step: 1, total: 2, loss: 0.25, elapsed: 3 });
out.training = show(trainer);
api.dispatch("safetext.progress", { node: "3", phase: "finishing", step: 2, total: 2 }); out.finishing = show(trainer);
api.dispatch("safetext.progress", { node: "3", phase: "done", step: 2, total: 2 }); out.done = show(trainer);
api.dispatch("executed", { node: "3", output: { safetext: [{ file: "again.safetensors", reused: true }] } }); out.reused = show(trainer);
api.dispatch("execution_error", { node_id: "3", exception_message: "SafeTextFileError: it exists\nTraceback" }); out.failed = show(trainer);
api.dispatch("safetext.progress", { node: "3", phase: "cancelled" }); out.cancelled = show(trainer);

const evaluator = fakeNode(4, "SafeTextEvaluate", [["safetext_file", "gone.safetensors", ["tiny.safetensors"]], ["threshold", 0.5]]);
await ext.nodeCreated(evaluator); out.evaluate = show(evaluator);
await ext.nodeCreated(fakeNode(5, "KSampler", [["seed", 1]])); out.other = app.graph._nodes[4].widgets.length;

// The Vue renderer of front end 1.27 leaves DOM widgets off the node: the corner panel carries the lines then.
const panelTexts = () => (document.getElementById("safetext-status-panel")?.children ?? []).map((row) => row.children.map((c) => c.textContent));
out.panel_classic = panelTexts();
vueNodes = true;
set(apply, "enabled", true);
out.panel_vue = panelTexts();
apply.safetextElement.isConnected = true; apply.safetextElement.offsetParent = {};  // a renderer that shows it
apply.safetextElement.getBoundingClientRect = () => ({ width: 200, height: 20 });
set(apply, "strength", 1);
out.panel_shown_on_node = panelTexts().map((row) => row[0]);
console.log(JSON.stringify(out));
"""

APP_STUB = """export const app = { extensions: [], registerExtension(e) { this.extensions.push(e); },
  graph: { _nodes: [], getNodeById(id) { return this._nodes.find((n) => n.id === id) ?? null; } } };"""
API_STUB = """export const api = { listeners: {}, addEventListener(name, fn) { (this.listeners[name] ??= []).push(fn); },
  dispatch(name, detail) { for (const fn of this.listeners[name] ?? []) fn({ detail }); } };"""


def test_front_end_status_line_in_every_state(tmp_path):
    """safetext.js and safetext_state.js run in Node.js against stand-ins for ComfyUI's app and api modules: the
    status line is a DOM widget that is never saved, and it says what each node's state is, from widget values
    and server events only (no canvas drawing, no onExecuted: the Vue node renderer calls neither)."""
    import json
    import shutil
    import subprocess

    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js is not installed")
    (tmp_path / "package.json").write_text('{"type": "module"}')
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "app.js").write_text(APP_STUB)
    (tmp_path / "scripts" / "api.js").write_text(API_STUB)
    shutil.copytree(ROOT / "javascript" / "comfyui", tmp_path / "extensions" / "SafeText")
    (tmp_path / "run.js").write_text(FRONT_END)
    done = subprocess.run([node, "run.js"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["widget"] == {"name": "safetext_status", "type": "safetext_status", "serialize": False,
                             "options_serialize": False, "unsent": True, "last": True, "grew": True}
    assert out["missing"] == {"text": "SafeText: file missing: sd15.safetext.safetensors", "tone": "error"}
    assert "not in models/safetext" in out["missing_hint"] and "SafeText Train" in out["missing_hint"]
    assert out["on"] == {"text": "SafeText ON 100%", "tone": "on"}
    assert out["half"] == {"text": "SafeText ON 50% (weight blend)", "tone": "on"}
    assert out["override"]["tone"] == "warn" and "fingerprint check off" in out["override"]["text"]
    assert out["off"] == {"text": "SafeText OFF", "tone": "off"}
    assert out["none"]["tone"] == "warn" and "no file chosen" in out["none"]["text"]
    assert out["idle"]["text"] == "writes models/safetext/my.safetext.safetensors"
    assert out["originals"] == {"text": "preparing: original outputs of 64/200 prompts", "tone": "busy"}
    assert out["training"]["tone"] == "busy" and out["training"]["text"].startswith("training 1/2  |  loss 0.2500")
    assert "run.safetensors" in out["finishing"]["text"] and out["finishing"]["tone"] == "busy"
    assert out["done"] == {"text": "done: run.safetensors written", "tone": "on"}
    assert out["reused"]["text"].startswith("reused again.safetensors")
    assert out["failed"] == {"text": "failed: SafeTextFileError: it exists", "tone": "error"}
    assert out["cancelled"]["text"].startswith("cancelled")
    assert out["evaluate"]["tone"] == "error" and "gone.safetensors" in out["evaluate"]["text"]
    assert out["other"] == 1  # other nodes are left alone
    assert out["panel_classic"] == []  # the classic canvas shows the lines on the nodes: no panel
    assert ["#1 SafeTextApply:", "SafeText ON 50% (weight blend), fingerprint check off"] in out["panel_vue"]
    assert {row[0] for row in out["panel_vue"]} == {"#1 SafeTextApply:", "#2 SafeTextApply:", "#3 SafeTextTrain:",
                                                    "#4 SafeTextEvaluate:"}
    assert "#1 SafeTextApply:" not in out["panel_shown_on_node"] and out["panel_shown_on_node"]


# ------------------------------------------------------------------------------------------ integration harness

def _harness():
    sys.path.insert(0, str(ROOT / "tests" / "integration"))
    try:
        import comfy_server
    finally:
        sys.path.pop(0)
    return comfy_server


def test_import_check_reads_only_safetexts_own_line():
    """ComfyUI's optional nodes may fail to import (audio nodes without torchaudio); only our line counts."""
    harness = _harness()
    sep = os.sep
    ours = f"/tmp/base{sep}custom_nodes{sep}{harness.NODE_FOLDER}"
    log = "\n".join(["WARNING: some comfy_extras/ nodes did not import correctly.", "IMPORT FAILED: nodes_audio.py",
                     "Import times for custom nodes:", f"   0.0 seconds (IMPORT FAILED): /tmp/base{sep}custom_nodes{sep}other",
                     f"   0.6 seconds: {ours}", ""])
    assert harness.pack_import_line(log) == f"0.6 seconds: {ours}"
    assert not harness.pack_import_errors(log)
    failed = log.replace(f"   0.6 seconds: {ours}", f"   0.1 seconds (IMPORT FAILED): {ours}") + \
        f"\nCannot import {ours} module for custom nodes: boom"
    assert "IMPORT FAILED" in harness.pack_import_line(failed)
    assert harness.pack_import_errors(failed) == [f"Cannot import {ours} module for custom nodes: boom"]
    assert harness.pack_import_line("IMPORT FAILED: nodes_audio.py") is None  # not listed at all: not imported


def test_the_comfyui_harness_removes_its_folder_when_comfyui_fails_to_start(tmp_path):
    harness = _harness()
    fake = tmp_path / "ComfyUI"
    fake.mkdir()
    (fake / "main.py").write_text("import sys\nprint('ComfyUI refuses to start')\nsys.exit(3)\n")
    server = harness.ComfyServer(fake, python=sys.executable)
    added = []
    with pytest.raises(harness.ComfyError, match="exited with 3"):
        with harness.running(server, lambda s: added.append(s.models.is_dir())):
            pytest.fail("started")
    assert added == [True] and not server.base.exists()
    server = harness.ComfyServer(fake, python=sys.executable)
    with pytest.raises(RuntimeError, match="no checkpoint"):
        with harness.running(server, lambda s: (_ for _ in ()).throw(RuntimeError("no checkpoint"))):
            pass
    assert not server.base.exists()
