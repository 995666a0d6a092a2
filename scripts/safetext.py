"""SafeText for AUTOMATIC1111 and Forge: an always-visible panel, infotext, settings, API and a training tab.

The script is a thin adapter; ``safetext_core`` does the work. How it applies a file:

* A1111: each text encoder of the loaded checkpoint (``cond_stage_model`` for SD 1.x/2.x,
  ``conditioner.embedders[0/1]`` for SDXL) gets an instance-level ``encode_with_transformers`` wrapper.
  While SafeText is off the wrapper calls the original directly (bit-for-bit the webui's output). While
  on, it runs the original pass first (so the built-in Lora extension applies its weights under the live
  parameters), then the aligned pass through ``torch.func.functional_call`` with ``W + s * delta``
  substituted for the weights, and blends. Weights are never edited in place: an error, an interrupt or
  another extension can never leave the model modified.
* Forge: the ComfyUI-style CLIP object gets the file's differences as weight patches on a clone, which is
  swapped in for the generation and swapped back afterwards (a weight blend).
* Errors while SafeText is on fail closed: the generation stops with a message instead of running
  without SafeText. Over the API, bad values are refused up front with HTTP 422.
"""


import html
import math
import os
import sys
import threading
import time
import traceback
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT) not in sys.path:  # A1111 puts the extension folder on sys.path only while scripts load
    sys.path.append(str(_ROOT))

import gradio as gr  # noqa: E402

from modules import script_callbacks, scripts, shared  # noqa: E402

import safetext_core as core  # noqa: E402
from safetext_core.weights import ShiftPlan  # noqa: E402
from safetext_core.fingerprint import fingerprint_state_dict, fingerprints_match, short_id  # noqa: E402
from safetext_core.models import hf_to_openclip_names, normalise_hf_clip_keys, openclip_to_hf  # noqa: E402
from safetext_core.safetext_file import SafeTextFile, SafeTextFileError  # noqa: E402

TITLE = "SafeText"
SUFFIX = ".safetensors"
MODES = tuple(core.BLEND_MODES)  # ("embedding", "weight")
MODE_CHOICES = [("Embedding blend (exact at every strength)", "embedding"),
                ("Weight blend (W + s*delta; exact at 0 and 1 only)", "weight")]
ARG_NAMES = ("enabled", "file", "strength", "mode")
INFOTEXT_NAME = "SafeText"
INFOTEXT_FINGERPRINT = "SafeText fingerprint"
INFOTEXT_STRENGTH = "SafeText strength"
INFOTEXT_MODE = "SafeText mode"
INFOTEXT_LOCK = "SafeText lock"
FITS_MARK = " \u2713 fits this checkpoint"


class SafeTextError(RuntimeError):
    """A SafeText problem with a message meant for the user."""


# ---------------------------------------------------------------------------------------------- settings
def opt(name: str, default: Any = None) -> Any:
    try:
        value = getattr(shared.opts, name)
    except (AttributeError, KeyError):
        return default
    return default if value is None else value


def models_dir() -> Path:
    custom = str(opt("safetext_models_dir", "") or "").strip()
    if custom:
        return Path(custom).expanduser()
    base = getattr(shared, "models_path", None) or os.path.join(getattr(shared, "data_path", "."), "models")
    return Path(base) / "safetext"


def check_file_name(name: Any) -> str:
    """A file name chosen in the UI or API, checked so it can never leave the SafeText folder."""
    if not isinstance(name, str) or not name.strip():
        raise SafeTextError("no SafeText file chosen")
    name = name.strip()
    bad = ("/" in name or "\\" in name or ":" in name or "\x00" in name or name.startswith(".")
           or name in (".", "..") or os.path.isabs(name))
    if bad:
        raise SafeTextError(f"invalid SafeText file name {name!r}: give a file name from the SafeText folder, not a path")
    if not name.lower().endswith(SUFFIX):
        name += SUFFIX
    return name


def resolve_file(name: Any) -> Path:
    name = check_file_name(name)
    folder = models_dir()
    path = folder / name
    if path.parent != folder or not path.is_file():
        raise SafeTextError(f"SafeText file {name!r} not found in {folder}")
    return path


_FILE_CACHE: dict[str, tuple[tuple[float, int], SafeTextFile]] = {}
_FILE_LOCK = threading.Lock()


def load_file(name: Any) -> SafeTextFile:
    path = resolve_file(name)
    stat = path.stat()
    key, stamp = str(path), (stat.st_mtime, stat.st_size)
    with _FILE_LOCK:
        hit = _FILE_CACHE.get(key)
        if hit and hit[0] == stamp:
            return hit[1]
    try:
        loaded = SafeTextFile.load(path)
    except SafeTextFileError as error:
        raise SafeTextError(str(error)) from None
    with _FILE_LOCK:
        if len(_FILE_CACHE) > 8:
            _FILE_CACHE.clear()
        _FILE_CACHE[key] = (stamp, loaded)
    return loaded


def file_header(path: Path) -> dict[str, str]:
    """The file's metadata only (no tensors), for listing."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt", device="cpu") as handle:
        return handle.metadata() or {}


def loaded_model() -> Any:
    """The checkpoint in memory, or None; unlike ``shared.sd_model`` this never starts loading one."""
    try:
        from modules import sd_models

        return sd_models.model_data.sd_model
    except Exception:
        return getattr(shared, "sd_model", None)


def list_files() -> list[dict[str, Any]]:
    """Every ``.safetensors`` in the SafeText folder, with whether it fits the loaded checkpoint."""
    folder = models_dir()
    if not folder.is_dir():
        return []
    try:
        model = loaded_model()
        loaded = loaded_fingerprints(model) if model is not None and not is_forge(model) else None
    except Exception:  # a model SafeText does not support
        loaded = None
    out = []
    for path in sorted(folder.iterdir(), key=lambda p: p.name.lower()):
        if not path.is_file() or path.suffix.lower() != SUFFIX or path.name.startswith("."):
            continue
        entry: dict[str, Any] = {"name": path.name, "fits": None, "family": None, "fingerprint": None}
        try:
            meta = file_header(path)
            if "safetext.format" not in meta:
                continue
            prints = {k[len("safetext.fingerprint."):]: v for k, v in meta.items() if k.startswith("safetext.fingerprint.")}
            entry["family"] = meta.get("safetext.family")
            entry["base"] = meta.get("safetext.base", "")
            entry["fingerprint"] = "+".join(short_id(prints[e]) for e in sorted(prints))
            if loaded is not None:
                entry["fits"] = bool(prints) and all(e in loaded and fingerprints_match(fp, loaded[e])
                                                     for e, fp in prints.items())
        except Exception as error:  # a damaged file is listed as such, never fatal
            entry["error"] = str(error)
        out.append(entry)
    return out


def gradio_takes_labelled_choices() -> bool:
    """Gradio 4 (Forge) takes ``(label, value)`` dropdown choices; Gradio 3.41's Dropdown (A1111 v1.10.1) would show
    the tuples as text (its Radio takes them)."""
    try:
        return int(str(getattr(gr, "__version__", "3")).split(".")[0]) >= 4
    except ValueError:
        return False


def file_dropdown_update() -> dict[str, Any]:
    """Keyword arguments for the file dropdown (at build and on refresh).

    Only ``choices`` and ``info``: both ``Dropdown.__init__`` and Gradio 3.41's ``Dropdown.update`` accept them
    (the Settings page passes an option's component arguments to ``update`` too; an argument ``update`` does
    not know breaks the whole page). On Gradio 3 the fit marks go into ``info``, as choices are plain names.
    """
    choices = file_choices()
    if gradio_takes_labelled_choices():
        return {"choices": choices, "info": "\u2713 marks files trained for the loaded checkpoint"}
    fitting = [value for label, value in choices if label.endswith(FITS_MARK)]
    info = (f"fits this checkpoint: {', '.join(fitting)}" if fitting
            else "no file here was trained for the loaded checkpoint")
    return {"choices": [value for _, value in choices], "info": info}


def file_choices() -> list[tuple[str, str]]:
    """``(label, file name)`` for every file in the SafeText folder, the label saying whether it fits."""
    choices = []
    for entry in list_files():
        label = entry["name"]
        if entry.get("error"):
            label += " (unreadable)"
        elif entry["fits"] is True:
            label += FITS_MARK
        elif entry["fits"] is False:
            label += " (for another checkpoint)"
        choices.append((label, entry["name"]))
    return choices


def default_file() -> str:
    entries = list_files()
    fitting = [e["name"] for e in entries if e["fits"]]
    return fitting[0] if fitting else (entries[0]["name"] if entries else "")


# ---------------------------------------------------------------------------------------------- arguments
@dataclass
class Settings:
    enabled: bool = False
    file: str = ""
    strength: float = 1.0
    mode: str = "embedding"
    locked: bool = False


def _as_bool(value: Any, what: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "yes", "no", "on", "off"):
        return value.strip().lower() in ("true", "1", "yes", "on")
    raise SafeTextError(f"{what} must be true or false, not {value!r}")


def parse_args(args: Any) -> Settings:
    """The panel's values (enabled, file, strength, mode), checked; raises :class:`SafeTextError`."""
    if isinstance(args, dict):
        unknown = sorted(set(args) - set(ARG_NAMES))
        if unknown:
            raise SafeTextError(f"unknown SafeText arguments {unknown}; expected {list(ARG_NAMES)}")
        args = [args.get(name) for name in ARG_NAMES]
    if not isinstance(args, (list, tuple)):
        raise SafeTextError(f"SafeText args must be a list [enabled, file, strength, mode], not {type(args).__name__}")
    if len(args) > len(ARG_NAMES):
        raise SafeTextError(f"SafeText takes at most {len(ARG_NAMES)} args {list(ARG_NAMES)}, got {len(args)}")
    values = list(args) + [None] * (len(ARG_NAMES) - len(args))
    enabled, name, strength, mode = values
    settings = Settings()
    settings.enabled = _as_bool(enabled, "enabled") if enabled is not None else bool(opt("safetext_default_enabled", False))
    settings.file = name.strip() if isinstance(name, str) else ""
    if name is not None and not isinstance(name, str):
        raise SafeTextError(f"file must be a file name, not {name!r}")
    if strength is None:
        strength = opt("safetext_default_strength", 1.0)
    if isinstance(strength, bool):
        raise SafeTextError(f"strength must be a number between 0 and 1, not {strength!r}")
    try:
        settings.strength = core.check_strength(strength)
    except ValueError as error:
        raise SafeTextError(str(error)) from None
    mode = "embedding" if mode in (None, "") else mode
    if mode not in MODES:
        raise SafeTextError(f"mode must be one of {list(MODES)}, not {mode!r}")
    settings.mode = mode
    if settings.enabled and settings.file:
        settings.file = check_file_name(settings.file)
    return settings


def lock_settings() -> Settings | None:
    """The operator lock's settings when the lock is on (they override whatever the UI or API asks)."""
    if not bool(opt("safetext_lock", False)):
        return None
    strength = opt("safetext_lock_strength", 1.0)
    try:
        strength = core.check_strength(strength)
    except ValueError:
        strength = 1.0
    return Settings(True, str(opt("safetext_lock_file", "") or ""), strength, "embedding", locked=True)


def effective_settings(args: Any) -> Settings:
    locked = lock_settings()
    if locked is not None:
        return locked
    return parse_args(args)


# ---------------------------------------------------------------------------------------------- the model
@dataclass
class HostEncoder:
    name: str            # clip_l, clip_h, clip_g
    module: torch.nn.Module  # the webui's embedder: has encode_with_transformers
    kind: str            # "hf" (transformers CLIPTextModel) or "openclip"

    @property
    def prefix(self) -> str:
        return "wrapped.transformer." if self.kind == "hf" else "wrapped.model."


def _kind(module: Any) -> str | None:
    wrapped = getattr(module, "wrapped", None)
    if wrapped is None or not hasattr(module, "encode_with_transformers"):
        return None
    if isinstance(getattr(wrapped, "transformer", None), torch.nn.Module) and hasattr(wrapped, "tokenizer"):
        return "hf"
    model = getattr(wrapped, "model", None)
    if isinstance(model, torch.nn.Module) and hasattr(model, "transformer") and hasattr(model, "token_embedding"):
        return "openclip"
    return None


def host_encoders(sd_model: Any) -> tuple[str, list[HostEncoder]]:
    """The loaded checkpoint's family and its text encoders as the webui holds them."""
    if sd_model is None:
        raise SafeTextError("no checkpoint is loaded")
    conditioner = getattr(sd_model, "conditioner", None)
    if conditioner is not None:
        embedders = [e for e in getattr(conditioner, "embedders", []) if _kind(e)]
        kinds = [_kind(e) for e in embedders]
        if kinds == ["hf", "openclip"]:
            return "sdxl", [HostEncoder("clip_l", embedders[0], "hf"), HostEncoder("clip_g", embedders[1], "openclip")]
        raise SafeTextError("SafeText supports SDXL base checkpoints (CLIP-L + OpenCLIP bigG); this one has "
                            f"text encoders {kinds or 'it does not recognise'}")
    cond = getattr(sd_model, "cond_stage_model", None)
    kind = _kind(cond)
    if kind == "hf":
        return "sd1", [HostEncoder("clip_l", cond, "hf")]
    if kind == "openclip":
        return "sd2", [HostEncoder("clip_h", cond, "openclip")]
    raise SafeTextError("SafeText supports SD 1.x, SD 2.x and SDXL checkpoints; the loaded model's text encoder "
                        f"({type(cond).__name__}) is not one it knows")


def _native(name: str) -> str:
    """Host parameter name (after the prefix) without the webui's ``.wrapped`` hijack levels."""
    return ".".join(part for part in name.split(".") if part != "wrapped")


def host_name_map(enc: HostEncoder) -> dict[str, str]:
    """{native name (HF canonical for CLIP-L, open_clip for OpenCLIP): host parameter name}."""
    out = {}
    for name, _ in enc.module.named_parameters():
        if not name.startswith(enc.prefix):
            continue
        native = _native(name[len(enc.prefix):])
        if enc.kind == "hf" and native.startswith(("embeddings.", "encoder.", "final_layer_norm.")):
            native = "text_model." + native
        out[native] = name
    return out


def _backups(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Original weights the built-in Lora extension keeps while its networks are applied in place."""
    out: dict[str, torch.Tensor] = {}
    for mname, mod in module.named_modules():
        prefix = mname + "." if mname else ""
        weights = getattr(mod, "network_weights_backup", None)
        bias = getattr(mod, "network_bias_backup", None)
        is_mha = isinstance(mod, torch.nn.MultiheadAttention)
        if weights is not None:
            if is_mha:
                out[prefix + "in_proj_weight"], out[prefix + "out_proj.weight"] = weights[0], weights[1]
            else:
                out[prefix + "weight"] = weights
        if isinstance(bias, torch.Tensor):
            out[prefix + ("out_proj.bias" if is_mha else "bias")] = bias
    return out


def original_state(enc: HostEncoder) -> dict[str, torch.Tensor]:
    """The encoder's original weights in HF naming (Lora backups in place of patched weights)."""
    params = dict(enc.module.named_parameters())
    backups = _backups(enc.module)
    native = {n: backups.get(h, params[h]).detach() for n, h in host_name_map(enc).items()}
    if enc.kind == "openclip":
        return openclip_to_hf(native)
    return normalise_hf_clip_keys(native)


_FINGERPRINTS: "weakref.WeakKeyDictionary[torch.nn.Module, str]" = weakref.WeakKeyDictionary()


def encoder_fingerprint(enc: HostEncoder) -> str:
    cached = _FINGERPRINTS.get(enc.module)
    if cached is None:
        cached = fingerprint_state_dict(original_state(enc))
        _FINGERPRINTS[enc.module] = cached
    return cached


def loaded_fingerprints(sd_model: Any = None) -> dict[str, str]:
    _, encs = host_encoders(sd_model if sd_model is not None else shared.sd_model)
    return {enc.name: encoder_fingerprint(enc) for enc in encs}


def host_deltas(enc: HostEncoder, deltas: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The file's HF-named differences renamed to the host's parameter names (OpenCLIP: q/k/v fused)."""
    names = host_name_map(enc)
    params = dict(enc.module.named_parameters())
    native = hf_to_openclip_names(dict(deltas)) if enc.kind == "openclip" else dict(deltas)
    out = {}
    for key, value in native.items():
        host = names.get(key)
        if host is None:
            raise SafeTextError(f"the file changes {key}, which the loaded {enc.name} encoder does not have")
        if tuple(params[host].shape) != tuple(value.shape):
            raise SafeTextError(f"the file's {key} has shape {tuple(value.shape)}, the loaded {enc.name} encoder's "
                                f"{tuple(params[host].shape)}: the file is for another model")
        out[host] = value
    return out


# ---------------------------------------------------------------------------------------------- applying
@dataclass
class Active:
    settings: Settings
    file: SafeTextFile
    deltas: dict[str, dict[str, torch.Tensor]]  # encoder -> "target.<host name>" -> difference
    model_ref: Any = None
    plans: dict = field(default_factory=dict)  # (encoder, shift) -> ShiftPlan, rebuilt when a weight changes


class _State:
    def __init__(self) -> None:
        self.active: Active | None = None
        self.forge_restore: tuple[Any, Any] | None = None  # (forge_objects, original clip)
        self.failed_model: Any = None  # model whose get_learned_conditioning was replaced to fail closed


STATE = _State()


class _Call(torch.nn.Module):
    """Lets a ``ShiftPlan`` swap parameters of ``target`` while an arbitrary method runs."""

    def __init__(self, target: torch.nn.Module, function: Any):
        super().__init__()
        self.target = target
        self.function = function

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.function(*args, **kwargs)


def _make_wrapper(module: torch.nn.Module, encoder: str, original: Any) -> Any:
    def encode_with_transformers(tokens: Any, *args: Any, **kwargs: Any) -> Any:
        active = STATE.active
        deltas = active.deltas.get(encoder) if active is not None else None
        if not deltas or active.settings.strength == 0.0:
            return original(tokens, *args, **kwargs)
        settings = active.settings
        # The original pass first, always: the Lora extension applies its in-place weights there, under the
        # live parameters, never under the substituted ones.
        base = original(tokens, *args, **kwargs)
        shift = settings.strength if settings.mode == "weight" else 1.0
        shim = _Call(module, original)
        plan = active.plans.get((encoder, shift))
        if plan is None or not plan.current():  # a LoRA written into the weights makes the plan stale
            plan = active.plans[(encoder, shift)] = ShiftPlan(shim, deltas, shift)
        with plan.swapped():
            aligned = shim(tokens, *args, **kwargs)
        if settings.mode == "weight" or settings.strength == 1.0:
            return aligned
        out = torch.lerp(base, aligned.to(base.dtype), settings.strength)
        pooled, pooled_aligned = getattr(base, "pooled", None), getattr(aligned, "pooled", None)
        if pooled is not None and pooled_aligned is not None:
            out.pooled = torch.lerp(pooled, pooled_aligned.to(pooled.dtype), settings.strength)
        return out

    encode_with_transformers.safetext_wrapper = True
    encode_with_transformers.safetext_original = original
    return encode_with_transformers


def install_wrappers(sd_model: Any) -> tuple[str, list[HostEncoder]]:
    family, encs = host_encoders(sd_model)
    for enc in encs:
        current = enc.module.__dict__.get("encode_with_transformers")
        if current is not None and getattr(current, "safetext_wrapper", False):
            continue
        original = enc.module.encode_with_transformers
        enc.module.encode_with_transformers = _make_wrapper(enc.module, enc.name, original)
    return family, encs


def remove_wrappers(sd_model: Any) -> None:
    try:
        _, encs = host_encoders(sd_model)
    except SafeTextError:
        return
    for enc in encs:
        current = enc.module.__dict__.get("encode_with_transformers")
        if current is not None and getattr(current, "safetext_wrapper", False):
            del enc.module.__dict__["encode_with_transformers"]


def _checked_file(settings: Settings, fingerprints: dict[str, str]) -> SafeTextFile:
    if not settings.file:
        raise SafeTextError("SafeText is on but no SafeText file is chosen" +
                            (" (operator lock: set the lock's file in Settings)" if settings.locked else ""))
    loaded = load_file(settings.file)
    try:
        loaded.check_fingerprints(fingerprints, override=bool(opt("safetext_allow_mismatch", False)))
    except SafeTextFileError as error:
        raise SafeTextError(str(error)) from None
    return loaded


def activate(sd_model: Any, settings: Settings) -> Active:
    """Make ``settings`` the active SafeText state for the next encoder calls (A1111 path)."""
    family, encs = install_wrappers(sd_model)
    fingerprints = {enc.name: encoder_fingerprint(enc) for enc in encs}
    loaded = _checked_file(settings, fingerprints)
    if loaded.family != family:
        raise SafeTextError(f"SafeText file {settings.file!r} is for {loaded.family}, the loaded checkpoint is {family}")
    deltas = {}
    for enc in encs:
        renamed = host_deltas(enc, loaded.deltas.get(enc.name, {}))
        deltas[enc.name] = {"target." + k: v for k, v in renamed.items()}
    previous = STATE.active
    reuse = (previous is not None and previous.file is loaded and previous.settings.strength == settings.strength
             and previous.settings.mode == settings.mode and previous.model_ref is not None
             and previous.model_ref() is sd_model)
    active = Active(settings, loaded, deltas, weakref.ref(sd_model), previous.cache if reuse else {})
    STATE.active = active
    return active


def deactivate() -> None:
    STATE.active = None
    _restore_forge()
    _undo_fail_closed()


def clear_cond_cache(p: Any) -> None:
    """The webui's conditioning caches ignore SafeText's settings: give this job fresh ones."""
    for attr in ("cached_c", "cached_uc", "cached_hr_c", "cached_hr_uc"):
        if hasattr(p, attr):
            setattr(p, attr, [None, None])
    clear = getattr(p, "clear_prompt_cache", None)
    if callable(clear):
        clear()


def _fail_closed(sd_model: Any, message: str) -> None:
    """Make this job's prompt encoding raise ``message`` instead of running without SafeText."""
    if sd_model is None:
        return

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise SafeTextError(message)

    refuse.safetext_refuse = True
    try:
        sd_model.get_learned_conditioning = refuse
        STATE.failed_model = weakref.ref(sd_model)
    except Exception:
        pass


def _undo_fail_closed() -> None:
    ref = STATE.failed_model
    STATE.failed_model = None
    model = ref() if ref is not None else None
    if model is not None:
        current = model.__dict__.get("get_learned_conditioning")
        if current is not None and getattr(current, "safetext_refuse", False):
            del model.__dict__["get_learned_conditioning"]


# ------------------------------------------------------------------------------------------------ Forge
def is_forge(sd_model: Any) -> bool:
    return hasattr(sd_model, "forge_objects")


def _forge_fingerprints(clip: Any) -> dict[str, str]:
    state = clip.cond_stage_model.state_dict()
    out = {}
    for encoder in ("clip_l", "clip_g", "clip_h"):
        prefix = f"{encoder}.transformer."
        sub = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if sub:
            out[encoder] = fingerprint_state_dict(normalise_hf_clip_keys(sub))
    return out


def activate_forge(p: Any, settings: Settings) -> None:
    """Forge: the file's differences as weight patches on a clone of the CLIP object, for this job only."""
    objects = p.sd_model.forge_objects
    clip = objects.clip
    loaded = _checked_file(settings, _forge_fingerprints(clip))
    patched = clip.clone()
    own = set(patched.cond_stage_model.state_dict().keys())
    patches = {}
    for encoder, params in loaded.deltas.items():
        for name, delta in params.items():
            key = f"{encoder}.transformer.{name}"
            if key not in own and key.replace(".text_model.", ".", 1) in own:
                key = key.replace(".text_model.", ".", 1)
            patches[key] = ("diff", (delta,))
    target = getattr(patched, "patcher", patched)
    try:
        target.add_patches(filename=loaded.name, patches=patches, strength_patch=settings.strength)
    except TypeError:  # older Forge: ComfyUI's positional signature
        target.add_patches(patches, settings.strength)
    STATE.forge_restore = (objects, clip)
    objects.clip = patched


def _restore_forge() -> None:
    if STATE.forge_restore is not None:
        objects, clip = STATE.forge_restore
        objects.clip = clip
        STATE.forge_restore = None


# ---------------------------------------------------------------------------------------------- infotext
def infotext_fields(settings: Settings, loaded: SafeTextFile | None) -> dict[str, Any]:
    fields = {INFOTEXT_NAME: Path(check_file_name(settings.file)).stem if settings.file else ""}
    if loaded is not None:
        fields[INFOTEXT_FINGERPRINT] = loaded.short_fingerprint()
    fields[INFOTEXT_STRENGTH] = round(settings.strength, 4)
    if settings.mode != "embedding":
        fields[INFOTEXT_MODE] = settings.mode
    if settings.locked:
        fields[INFOTEXT_LOCK] = True
    return fields


def pasted_values(params: dict[str, Any]) -> dict[str, Any]:
    """The panel's values from pasted generation parameters (empty when they carry no SafeText)."""
    if INFOTEXT_NAME not in params:
        return {}
    name = str(params.get(INFOTEXT_NAME) or "").strip()
    values: dict[str, Any] = {"enabled": bool(name), "file": (name + SUFFIX) if name and not name.endswith(SUFFIX) else name}
    try:
        values["strength"] = core.check_strength(params.get(INFOTEXT_STRENGTH, 1.0))
    except ValueError:
        values["strength"] = 1.0
    mode = params.get(INFOTEXT_MODE, "embedding")
    values["mode"] = mode if mode in MODES else "embedding"
    return values


def on_infotext_pasted(infotext: str, params: dict[str, Any]) -> None:
    values = pasted_values(params)
    if not values:
        return
    params["SafeText enabled"] = values["enabled"]
    params["SafeText file"] = values["file"]
    params[INFOTEXT_STRENGTH] = values["strength"]
    params[INFOTEXT_MODE] = values["mode"]


# ---------------------------------------------------------------------------------------------- the script
class SafeTextScript(scripts.Script):
    sorting_priority = 20

    def title(self) -> str:
        return TITLE

    def show(self, is_img2img: bool) -> Any:
        return scripts.AlwaysVisible

    def ui(self, is_img2img: bool) -> list[Any]:
        tab = "img2img" if is_img2img else "txt2img"
        try:
            dropdown, value = file_dropdown_update(), default_file()
        except Exception:
            dropdown, value = {"choices": []}, ""
        locked = lock_settings() is not None
        with gr.Accordion(TITLE, open=False, elem_id=f"safetext_{tab}"):
            with gr.Row():
                enabled = gr.Checkbox(label="Enable SafeText", value=bool(opt("safetext_default_enabled", False)),
                                      elem_id=f"safetext_enabled_{tab}")
                file = gr.Dropdown(label="SafeText file", value=value, allow_custom_value=True, **dropdown,
                                   elem_id=f"safetext_file_{tab}")
                self._refresh_button(file, tab)
            with gr.Row():
                strength = gr.Slider(minimum=0.0, maximum=1.0, step=0.05, label="SafeText strength",
                                     value=float(opt("safetext_default_strength", 1.0)),
                                     elem_id=f"safetext_strength_{tab}")
                mode = gr.Radio(choices=MODE_CHOICES, value="embedding", label="Blend mode",
                                info="embedding: exact at every strength; weight: W + s*delta, exact at 0 and 1 only",
                                elem_id=f"safetext_mode_{tab}")
            if locked:
                gr.HTML("<p class='safetext-lock'>SafeText is locked on by the server's operator; "
                        "these controls have no effect.</p>")
        self.infotext_fields = [
            (enabled, lambda d: pasted_values(d).get("enabled", False)),
            (file, lambda d: pasted_values(d).get("file", gr.update())),
            (strength, lambda d: pasted_values(d).get("strength", gr.update())),
            (mode, lambda d: pasted_values(d).get("mode", gr.update())),
        ]
        self.paste_field_names = [INFOTEXT_NAME, INFOTEXT_STRENGTH, INFOTEXT_MODE]
        return [enabled, file, strength, mode]

    @staticmethod
    def _refresh_button(file: Any, tab: str) -> None:
        try:
            from modules.ui_common import create_refresh_button

            create_refresh_button(file, lambda: None, file_dropdown_update, f"safetext_refresh_{tab}")
        except Exception:  # older or different webuis: the list still refreshes on restart
            pass

    def process(self, p: Any, *args: Any) -> None:
        deactivate()  # whatever an earlier, failed job left

    def process_batch(self, p: Any, *args: Any, **kwargs: Any) -> None:
        sd_model = getattr(p, "sd_model", None) or shared.sd_model
        STATE.active = None
        _restore_forge()
        _undo_fail_closed()
        try:
            settings = effective_settings(args)
        except SafeTextError as error:
            try:
                wanted = bool(args) and _as_bool(args[0], "enabled")
            except SafeTextError:
                wanted = True
            if wanted:  # asked for, but with values we cannot use: fail closed
                self._fail(p, sd_model, str(error))
            return
        if not settings.enabled:
            return
        refiner = getattr(p, "refiner_checkpoint", None)
        if refiner not in (None, "", "None", "none"):
            self._fail(p, sd_model, "SafeText cannot be applied to a refiner checkpoint yet; generate without the "
                                    "refiner, or turn SafeText off")
            return
        try:
            if is_forge(sd_model):
                activate_forge(p, settings)
                loaded = load_file(settings.file)
            else:
                loaded = activate(sd_model, settings).file
        except Exception as error:  # fail closed: never generate without SafeText when it was asked for
            message = str(error) if isinstance(error, (SafeTextError, SafeTextFileError)) else \
                f"{type(error).__name__}: {error}"
            self._fail(p, sd_model, message)
            return
        clear_cond_cache(p)
        p.extra_generation_params.update(infotext_fields(settings, loaded))

    @staticmethod
    def _fail(p: Any, sd_model: Any, message: str) -> None:
        message = f"SafeText: {message}"
        print(message, file=sys.stderr)
        clear_cond_cache(p)
        _fail_closed(sd_model, message)

    def postprocess(self, p: Any, processed: Any, *args: Any) -> None:
        deactivate()


# ---------------------------------------------------------------------------------------------- API
def validate_request_args(raw: Any) -> Settings | None:
    """Check the values an API request gives the panel; raise :class:`SafeTextError` for bad ones."""
    if lock_settings() is not None:
        return None  # the operator's lock decides; the request's values are ignored
    settings = parse_args(raw)
    if settings.enabled:
        model = loaded_model()
        if model is not None and not is_forge(model):
            _checked_file(settings, loaded_fingerprints(model))
        else:
            load_file(settings.file or "")
    return settings


def _our_entry(alwayson: Any) -> tuple[Any, Any]:
    """(key, entry) of SafeText in a request's ``alwayson_scripts``; (None, None) when absent."""
    if not isinstance(alwayson, dict):
        return None, None
    for key, value in alwayson.items():
        if isinstance(key, str) and key.strip().lower() == TITLE.lower():
            return key, value
    return None, None


def _our_script(script_runner: Any) -> Any:
    for script in getattr(script_runner, "alwayson_scripts", None) or []:
        try:
            if str(script.title()).lower() == TITLE.lower():
                return script
        except Exception:
            continue
    return None


def install_api_validation() -> None:
    """Refuse bad SafeText values in /sdapi/v1/txt2img and img2img with HTTP 422 and a clear message."""
    try:
        from modules.api import api as api_module
        from fastapi.exceptions import HTTPException
    except Exception:
        return
    cls = getattr(api_module, "Api", None)
    original = getattr(cls, "init_script_args", None)
    if original is None or getattr(original, "safetext_wrapper", False):
        return

    def init_script_args(self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        key, entry = _our_entry(getattr(request, "alwayson_scripts", None))
        if key is None:
            return original(self, request, *args, **kwargs)
        raw = entry.get("args", []) if isinstance(entry, dict) else entry
        try:
            parse_args(raw)  # the request's own values: types, ranges, names, count
        except SafeTextError as error:
            raise HTTPException(status_code=422, detail=f"SafeText: {error}") from None
        runner = kwargs.get("script_runner", args[3] if len(args) > 3 else None)
        defaults = kwargs.get("default_script_args", args[0] if args else None)
        script = _our_script(runner)
        if isinstance(raw, dict):  # accept {"enabled": ..., "strength": ...}; the webui itself takes a list
            base = [None] * len(ARG_NAMES)
            if script is not None and isinstance(defaults, (list, tuple)) and script.args_from is not None:
                base = (list(defaults[script.args_from:script.args_to]) + base)[:len(ARG_NAMES)]
            request.alwayson_scripts[key] = {"args": [raw[n] if n in raw else base[i] for i, n in enumerate(ARG_NAMES)]}
        elif not isinstance(entry, dict):
            request.alwayson_scripts[key] = {"args": list(raw)}
        result = original(self, request, *args, **kwargs)
        values = raw
        if script is not None and isinstance(result, (list, tuple)) and script.args_from is not None:
            values = list(result[script.args_from:script.args_to])  # with the panel's defaults filled in
        try:
            validate_request_args(values)
        except SafeTextError as error:
            raise HTTPException(status_code=422, detail=f"SafeText: {error}") from None
        return result

    init_script_args.safetext_wrapper = True
    cls.init_script_args = init_script_args


# ---------------------------------------------------------------------------------------------- training
TRAINING: dict[str, Any] = {"running": False, "step": 0, "total": 0, "phase": "idle", "message": "", "loss": None,
                            "figures": {}, "error": None, "file": None, "finished": None, "started": None}
_TRAINING_LOCK = threading.Lock()


def _lines(text: Any) -> list[str]:
    if isinstance(text, (list, tuple)):
        return [str(t).strip() for t in text if str(t).strip()]
    return [line.strip() for line in str(text or "").splitlines() if line.strip()]


def checkpoint_title(sd_model: Any = None) -> str:
    model = sd_model if sd_model is not None else shared.sd_model
    info = getattr(model, "sd_checkpoint_info", None)
    return str(getattr(info, "model_name", None) or getattr(info, "title", None) or "checkpoint")


def default_output_name(sd_model: Any = None) -> str:
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in checkpoint_title(sd_model))
    return f"{stem}-safetext{SUFFIX}"


def _host_tokenizers(family: str, encs: list[HostEncoder]) -> dict[str, Any]:
    from safetext_core.tokenizer import load_clip_tokenizer

    out = {}
    for enc in encs:
        spec = core.get_family(family).encoder(enc.name)
        tokenizer = getattr(enc.module.wrapped, "tokenizer", None) if enc.kind == "hf" else None
        out[enc.name] = tokenizer if tokenizer is not None and hasattr(tokenizer, "pad_token") else \
            load_clip_tokenizer(pad_token=spec.pad_token)
    return out


def train(categories: Any = None, unsafe_prompts: Any = "", safe_prompts: Any = "", replace: bool = False,
          steps: Any = 300, learning_rate: Any = 1e-4, lam: Any = 1.0, batch_size: Any = 16, name: Any = "",
          seed: Any = 0, overwrite: bool = False) -> dict[str, Any]:
    """Train a SafeText file for the loaded checkpoint. Call with the webui's queue lock held."""
    if is_forge(shared.sd_model):
        raise SafeTextError("training inside Forge is not supported yet; train with `python -m safetext_core` "
                            "on the checkpoint file and put the result in the SafeText folder")
    try:
        config = core.AlignConfig(steps=int(steps), batch_size=int(batch_size), learning_rate=float(learning_rate),
                                  lam=float(lam), seed=int(seed or 0))
    except (TypeError, ValueError) as error:
        raise SafeTextError(f"bad training settings: {error}") from None
    chosen = [c for c in (categories or []) if c]
    unknown = [c for c in chosen if c not in core.CATEGORIES]
    if unknown:
        raise SafeTextError(f"unknown categories {unknown}; choose from {list(core.CATEGORIES)}")
    target_name = check_file_name(name) if str(name or "").strip() else default_output_name()
    target = models_dir() / target_name
    if target.exists() and not overwrite:
        raise SafeTextError(f"{target_name} already exists in {models_dir()}; choose another name")
    sd_model = shared.sd_model
    family, encs = host_encoders(sd_model)
    states = {enc.name: {k: v.detach().to("cpu", torch.float32) for k, v in original_state(enc).items()} for enc in encs}
    try:
        encoders = core.encoders_from_state_dicts(family, states, _host_tokenizers(family, encs),
                                                  source=checkpoint_title(sd_model))
        prompts = core.load_prompt_sets(chosen, unsafe_prompts=_lines(unsafe_prompts),
                                        safe_prompts=_lines(safe_prompts), replace=bool(replace))
        prompts.validate()
    except ValueError as error:
        raise SafeTextError(str(error)) from None
    del states
    state = shared.state
    state.job = "SafeText training"
    state.job_count = 1
    state.sampling_steps = config.steps
    TRAINING.update(running=True, step=0, total=config.steps, phase="train", message="starting", loss=None,
                    figures={}, error=None, file=None, started=time.time(), finished=None)

    def progress(event: Any) -> None:
        TRAINING.update(step=int(event.step), total=int(event.total), phase=event.phase, loss=event.loss,
                        message=event.message or f"{event.phase} step {event.step}/{event.total}")
        if event.figures:
            TRAINING["figures"] = dict(event.figures)
        state.sampling_step = int(event.step)
        state.sampling_steps = int(event.total)
        state.textinfo = TRAINING["message"]

    try:
        from modules import devices

        device = devices.device
    except Exception:
        device = "cpu"
    try:
        with torch.inference_mode(False), torch.enable_grad():
            outcome = core.run_alignment(encoders, prompts, config, output=target, progress=progress,
                                         should_cancel=lambda: bool(state.interrupted), device=device,
                                         base_name=checkpoint_title(sd_model), strip_weighting=True)
    except core.AlignmentCancelled:
        TRAINING.update(running=False, phase="interrupted", message="interrupted: no file written",
                        finished=time.time())
        raise
    except Exception as error:
        TRAINING.update(running=False, phase="error", error=str(error), message=f"error: {error}", finished=time.time())
        raise
    finally:
        encoders.to("cpu")
    figures = {k: float(v) for k, v in (outcome.heldout or {}).items() if isinstance(v, (int, float))}
    TRAINING.update(running=False, phase="done", figures=figures, file=target.name, finished=time.time(),
                    message=f"done: {target.name}")
    return {"file": target.name, "fingerprint": outcome.file.short_fingerprint(), "family": family,
            "figures": figures, "steps_run": outcome.result.steps_run, "report": outcome.report}


def _figures_html(figures: dict[str, float]) -> str:
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{v:.4g}</td></tr>" for k, v in sorted(figures.items())
                   if isinstance(v, (int, float)) and math.isfinite(v))
    return f"<table class='safetext-figures'><tr><th>held-out figure</th><th>value</th></tr>{rows}</table>"


def _ui_train(categories, unsafe, safe, replace, steps, learning_rate, lam, batch_size, name):
    try:
        result = train(categories, unsafe, safe, replace, steps, learning_rate, lam, batch_size, name)
    except core.AlignmentCancelled:
        return None, "", "<p>Interrupted: no file was written.</p>"
    except SafeTextError as error:
        return None, "", f"<p class='error'>SafeText: {html.escape(str(error))}</p>"
    status = (f"<p>Wrote <b>{html.escape(result['file'])}</b> (fingerprint {html.escape(result['fingerprint'])}, "
              f"{result['steps_run']} steps). Refresh the SafeText file list to use it.</p>")
    return result["report"], _figures_html(result["figures"]), status


def on_ui_tabs():
    try:
        from modules.call_queue import wrap_gradio_gpu_call
    except Exception:
        return []
    with gr.Blocks(analytics_enabled=False) as tab:
        with gr.Row():
            with gr.Column():
                gr.HTML("<p>Train a SafeText file for the <b>loaded checkpoint</b>: its text encoder is aligned so "
                        "unsafe prompts lose their meaning while safe prompts keep theirs. Training is queued with "
                        "generation; the webui's Interrupt stops it without writing a file.</p>")
                categories = gr.CheckboxGroup(choices=list(core.CATEGORIES), value=list(core.CATEGORIES),
                                              label="Unsafe categories (shipped prompt sets)",
                                              elem_id="safetext_train_categories")
                unsafe = gr.Textbox(lines=4, label="Extra unsafe prompts (one per line)", elem_id="safetext_train_unsafe")
                safe = gr.Textbox(lines=4, label="Extra safe prompts (one per line)", elem_id="safetext_train_safe")
                replace = gr.Checkbox(label="Use only my prompts (replace the shipped sets)", value=False,
                                      elem_id="safetext_train_replace")
                defaults = core.AlignConfig()
                with gr.Row():
                    steps = gr.Number(value=defaults.steps, precision=0, label="Steps", elem_id="safetext_train_steps")
                    learning_rate = gr.Number(value=defaults.learning_rate, label="Learning rate",
                                              elem_id="safetext_train_lr")
                    lam = gr.Number(value=defaults.lam, label="Lambda (effectiveness weight)", elem_id="safetext_train_lambda")
                    batch_size = gr.Number(value=defaults.batch_size, precision=0, label="Batch size",
                                           elem_id="safetext_train_batch")
                name = gr.Textbox(label="Output file name (empty: <checkpoint>-safetext.safetensors)",
                                  elem_id="safetext_train_name")
                with gr.Row():
                    start = gr.Button("Train", variant="primary", elem_id="safetext_train_button")
                    stop = gr.Button("Interrupt", elem_id="safetext_train_interrupt")
            with gr.Column():
                gr.HTML("<div id='safetext_training_live'></div>")
                report = gr.Image(label="Report", type="pil", interactive=False, elem_id="safetext_train_report")
                figures = gr.HTML(elem_id="safetext_train_figures")
                status = gr.HTML(elem_id="safetext_train_status")
        start.click(fn=wrap_gradio_gpu_call(_ui_train, extra_outputs=[None, ""]),
                    inputs=[categories, unsafe, safe, replace, steps, learning_rate, lam, batch_size, name],
                    outputs=[report, figures, status])
        stop.click(fn=lambda: shared.state.interrupt(), inputs=[], outputs=[])
    return [(tab, TITLE, "safetext")]


def on_app_started(demo: Any, app: Any) -> None:
    install_api_validation()
    try:
        from fastapi import Body
        from fastapi.exceptions import HTTPException
    except Exception:
        return

    def api_files():
        getattr(shared, "sd_model", None)  # the webui loads its checkpoint on first use: "fits" needs it
        return {"folder": str(models_dir()), "files": list_files()}

    def api_training():
        return {k: v for k, v in TRAINING.items()}

    def api_train(body: dict = Body(default_factory=dict)):
        from modules.call_queue import queue_lock

        allowed = {"categories", "unsafe_prompts", "safe_prompts", "replace", "steps", "learning_rate", "lam",
                   "batch_size", "name", "seed"}
        unknown = sorted(set(body) - allowed)
        if unknown:
            raise HTTPException(status_code=422, detail=f"SafeText: unknown training fields {unknown}")
        if lock_settings() is not None and bool(opt("safetext_lock_training", True)):
            raise HTTPException(status_code=403, detail="SafeText: training is disabled while the operator lock is on")
        with queue_lock:
            shared.state.begin(job="safetext_train")
            try:
                result = train(**body)
            except core.AlignmentCancelled:
                raise HTTPException(status_code=409, detail="SafeText: training interrupted; no file was written") from None
            except SafeTextError as error:
                raise HTTPException(status_code=422, detail=f"SafeText: {error}") from None
            finally:
                shared.state.end()
        result.pop("report", None)
        return result

    app.add_api_route("/safetext/v1/files", api_files, methods=["GET"])
    app.add_api_route("/safetext/v1/training", api_training, methods=["GET"])
    app.add_api_route("/safetext/v1/train", api_train, methods=["POST"])


def on_ui_settings() -> None:
    section = ("safetext", TITLE)
    OptionInfo = shared.OptionInfo

    def add(key: str, info: Any) -> None:
        shared.opts.add_option(key, info)

    folder = OptionInfo("", "SafeText folder (empty: <models>/safetext)", section=section, restrict_api=True)
    add("safetext_models_dir", folder)
    add("safetext_default_enabled", OptionInfo(False, "SafeText on by default", section=section))
    add("safetext_default_strength", OptionInfo(1.0, "Default SafeText strength", gr.Slider,
                                                {"minimum": 0.0, "maximum": 1.0, "step": 0.05}, section=section))
    add("safetext_allow_mismatch", OptionInfo(False, "Apply SafeText files made for another checkpoint (not recommended)",
                                              section=section, restrict_api=True))
    add("safetext_lock", OptionInfo(False, "Operator lock: keep SafeText on with the file and strength below, "
                                           "whatever the UI or API asks", section=section, restrict_api=True))
    add("safetext_lock_file", OptionInfo("", "Operator lock: SafeText file", gr.Dropdown,
                                         lambda: {"choices": [""] + [n for _, n in file_choices()]},
                                         section=section, restrict_api=True))
    add("safetext_lock_strength", OptionInfo(1.0, "Operator lock: strength", gr.Slider,
                                             {"minimum": 0.0, "maximum": 1.0, "step": 0.05}, section=section,
                                             restrict_api=True))
    add("safetext_lock_training", OptionInfo(True, "Operator lock: also disable training", section=section,
                                             restrict_api=True))


def on_model_loaded(sd_model: Any) -> None:
    STATE.active = None


script_callbacks.on_ui_settings(on_ui_settings)
try:  # also now: with --nowebui the settings page (and so on_ui_settings) is never built
    on_ui_settings()
except Exception:
    pass
script_callbacks.on_ui_tabs(on_ui_tabs)
script_callbacks.on_app_started(on_app_started)
script_callbacks.on_infotext_pasted(on_infotext_pasted)
if hasattr(script_callbacks, "on_model_loaded"):
    script_callbacks.on_model_loaded(on_model_loaded)
install_api_validation()
