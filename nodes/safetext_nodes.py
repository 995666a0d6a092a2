"""The SafeText nodes: apply a SafeText file to a CLIP, train one, evaluate one.

The nodes are thin: they turn ComfyUI objects into core calls (``safetext_core``) and back. ComfyUI
modules are reached through :mod:`.host` only, so the classes import (and are unit-tested) without ComfyUI.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
import time
from collections import OrderedDict
from typing import Any

import torch

from ..safetext_core import weights as core_weights
from ..safetext_core.errors import AlignmentCancelled
from ..safetext_core.loop import AlignConfig
from ..safetext_core.families import get_family
from ..safetext_core.fingerprint import fingerprints_match, short_id
from ..safetext_core.prompt_sets import CATEGORIES, PromptSetError, load_prompt_sets
from ..safetext_core.safetext_file import FingerprintMismatch, SafeTextFile, SafeTextFileError
from . import comfy_clip, host

log = logging.getLogger("safetext")

CATEGORY = "SafeText"
MODES = {
    "embedding blend (exact, default)": "embedding",
    "weight blend (cheap, stacks with LoRAs)": "weight",
}
NO_FILE = "(no SafeText files: train one first)"


# --------------------------------------------------------------------------------------------- shared helpers

class _FileCache:
    """The last few SafeText files read, shared by all nodes (a file is read once per change)."""

    def __init__(self, size: int = 3):
        self.size = size
        self._items: "OrderedDict[tuple, SafeTextFile]" = OrderedDict()
        self._lock = threading.Lock()

    def load(self, path: str) -> SafeTextFile:
        stat = os.stat(path)
        key = (os.path.realpath(path), stat.st_mtime_ns, stat.st_size)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        file = SafeTextFile.load(path)
        with self._lock:
            for old in [k for k in self._items if k[0] == key[0]]:
                del self._items[old]
            self._items[key] = file
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return file

    def forget(self, path: str) -> None:
        real = os.path.realpath(path)
        with self._lock:
            for old in [k for k in self._items if k[0] == real]:
                del self._items[old]


FILES = _FileCache()


def _file_signature(name: str) -> str:
    """Changes whenever the chosen file changes on disk (used by IS_CHANGED)."""
    try:
        path = host.full_path(name)
        stat = os.stat(path)
        return f"{name}:{stat.st_mtime_ns}:{stat.st_size}"
    except (OSError, ValueError):
        return f"{name}:missing"


def _file_choices() -> list[str]:
    try:
        files = host.list_files()
    except Exception:  # folder_paths not ready: never break /object_info
        files = []
    return files or [NO_FILE]


def _source_name(prompt: Any, node_id: Any, input_name: str = "clip", depth: int = 0) -> str:
    """Best-effort name of the checkpoint (or text-encoder file) a node's CLIP comes from, read off the graph."""
    try:
        node = prompt[str(node_id)]
        link = node["inputs"][input_name]
        if not isinstance(link, list) or depth > 32:
            return ""
        upstream = prompt[str(link[0])]
        inputs = upstream.get("inputs", {})
        for key in ("ckpt_name", "clip_name", "clip_name1", "unet_name"):
            if isinstance(inputs.get(key), str):
                return inputs[key]
        if isinstance(inputs.get("clip"), list):
            return _source_name(prompt, link[0], "clip", depth + 1)
    except (KeyError, TypeError, IndexError):
        pass
    return ""


def _pil_to_image(picture: Any) -> torch.Tensor:
    """PIL image -> ComfyUI IMAGE ([1, H, W, 3] float in 0..1)."""
    import numpy as np

    array = np.asarray(picture.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(array.copy()).unsqueeze(0)


def _preview(picture: Any, prefix: str) -> list[dict]:
    """Save a picture in ComfyUI's temp folder and return the ``ui.images`` entry that shows it on the node."""
    try:
        folder = host.temp_image_dir()
        os.makedirs(folder, exist_ok=True)
        name = f"{prefix}_{int(time.time() * 1000)}_{os.getpid()}.png"
        picture.save(os.path.join(folder, name))
        return [{"filename": name, "subfolder": "", "type": "temp"}]
    except Exception as error:  # a preview is a nicety
        log.debug("SafeText: no preview (%s)", error)
        return []


def _figures_text(figures: dict, title: str = "") -> str:
    lines = [title] if title else []
    for key, value in figures.items():
        if isinstance(value, dict):
            lines.append(f"{key}:")
            lines += [f"  {k}: {v:.4f}" if isinstance(v, float) else f"  {k}: {v}" for k, v in value.items()]
        else:
            lines.append(f"{key}: {value:.4f}" if isinstance(value, float) else f"{key}: {value}")
    return "\n".join(lines)


def _split_lines(text: str) -> list[str]:
    return [line.strip() for line in (text or "").splitlines() if line.strip() and not line.strip().startswith("#")]


def _state(clip: Any, active: bool, file: str = "", strength: float = 0.0, mode: str = "") -> dict:
    return {"active": bool(active), "file": file, "strength": float(strength), "mode": mode,
            "stack": comfy_clip.active_safetext(clip) if clip is not None else []}


# --------------------------------------------------------------------------------------------- apply

class _ReadsSafeTextFile:
    """ComfyUI hooks shared by the nodes that take a ``safetext_file`` from models/safetext."""

    @classmethod
    def IS_CHANGED(cls, safetext_file, **_):
        return _file_signature(safetext_file)

    @classmethod
    def VALIDATE_INPUTS(cls, safetext_file=None, **_):
        if safetext_file == NO_FILE:
            return "no SafeText file in models/safetext: train one with the SafeText Train node first"
        return True


class SafeTextApply(_ReadsSafeTextFile):
    """Load a SafeText file and apply it to a CLIP; every text-encode node downstream uses the result."""

    DESCRIPTION = ("Applies a SafeText file to the CLIP (text encoder) of a checkpoint, so unsafe prompts lose their "
                   "meaning while other prompts keep theirs. Put it between the checkpoint loader and the text-encode "
                   "nodes; LoRA loaders and CLIP Set Last Layer may come before or after it. Off: exactly the "
                   "original conditioning.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("CLIP",)
    RETURN_NAMES = ("clip",)
    OUTPUT_TOOLTIPS = ("The CLIP with SafeText applied (unchanged when disabled).",)
    FUNCTION = "apply"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "clip": ("CLIP", {"tooltip": "The CLIP from your checkpoint loader (or after a LoRA loader)."}),
                "safetext_file": (_file_choices(), {"tooltip": "A SafeText file from models/safetext, trained for this checkpoint."}),
                "enabled": ("BOOLEAN", {"default": True, "label_on": "on", "label_off": "off",
                                        "tooltip": "Off passes the CLIP through untouched: bit-for-bit the original conditioning."}),
                "strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.05,
                                       "tooltip": "0 = original encoder, 1 = fully aligned. In between the two are blended."}),
                "blend_mode": (list(MODES), {"default": next(iter(MODES)),
                                             "tooltip": "Embedding blend: (1-s)*E(x) + s*E'(x), exact at every strength, one more "
                                                        "encoder pass per prompt. Weight blend: W + s*delta, no extra cost, stacks "
                                                        "with LoRAs, equal to the embedding blend only at strength 0 and 1."}),
            },
            "optional": {
                "override_fingerprint": ("BOOLEAN", {"default": False,
                                                     "tooltip": "Apply a file made for another checkpoint anyway. Its effect is then "
                                                                "unpredictable; keep this off."}),
            },
        }

    def apply(self, clip, safetext_file, enabled=True, strength=1.0, blend_mode=None, override_fingerprint=False):
        mode = MODES.get(blend_mode, blend_mode or "embedding")
        strength = core_weights.check_strength(strength)
        core_weights.check_mode(mode)
        if not enabled or strength == 0.0:
            # Same object, untouched: downstream nodes see exactly the graph without this node.
            return {"ui": {"safetext": [_state(clip, False, safetext_file, strength, mode)]}, "result": (clip,)}
        file = FILES.load(host.full_path(safetext_file))
        out, warnings = comfy_clip.apply_file(clip, file, strength, mode, override_fingerprint)
        for warning in warnings:
            log.warning("SafeText: %s (applied anyway: override is on)", warning)
        state = _state(out, True, safetext_file, strength, mode)
        state["warnings"] = warnings
        return {"ui": {"safetext": [state]}, "result": (out,)}


# --------------------------------------------------------------------------------------------- train

class SafeTextTrain:
    """Align the text encoder(s) of the CLIP in the graph and write a SafeText file."""

    DESCRIPTION = ("Trains a SafeText file for the checkpoint this CLIP comes from (SD 1.x, SD 2.x or SDXL): the text "
                   "encoder learns to give unsafe prompts a harmless meaning and to keep every other prompt as it was. "
                   "Writes models/safetext/<file_name>.safetensors and returns the aligned CLIP and a report. Uses the "
                   "GPU when ComfyUI has one; ComfyUI's cancel button stops it within a step and writes nothing. "
                   "Queueing the same settings again does not retrain.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("CLIP", "IMAGE", "STRING")
    RETURN_NAMES = ("aligned_clip", "report", "figures")
    OUTPUT_TOOLTIPS = ("The CLIP with the new SafeText file applied at strength 1.",
                       "Training curves and held-out figures.",
                       "The held-out figures as text.")
    FUNCTION = "train"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        defaults = AlignConfig()
        required = {
            "clip": ("CLIP", {"tooltip": "The CLIP of the checkpoint to make safe (from its loader, before any LoRA)."}),
            "file_name": ("STRING", {"default": "my_checkpoint.safetext",
                                     "tooltip": "Name of the file written in models/safetext (a plain name; no folders)."}),
        }
        for category in CATEGORIES:
            required[f"unsafe_{category}"] = ("BOOLEAN", {"default": True,
                                                          "tooltip": f"Use the shipped '{category.replace('_', ' ')}' prompts."})
        required.update({
            "lambda": ("FLOAT", {"default": defaults.lam, "min": 0.0, "max": 100.0, "step": 0.05,
                                  "tooltip": "Weight of moving unsafe prompts away (higher: safer, more drift on safe prompts)."}),
            "steps": ("INT", {"default": defaults.steps, "min": 1, "max": 100000,
                              "tooltip": "Training steps (at most: training stops early once the targets are met)."}),
            "learning_rate": ("FLOAT", {"default": defaults.learning_rate, "min": 1e-7, "max": 1e-1, "step": 1e-6,
                                        "round": 1e-8, "tooltip": "AdamW learning rate."}),
            "training_seed": ("INT", {"default": defaults.seed, "min": 0, "max": 2 ** 31 - 1,
                                      "tooltip": "Seed of the prompt batches: the same seed and settings give the same file."}),
            "overwrite": ("BOOLEAN", {"default": False,
                                      "tooltip": "Replace an existing file of this name that was made with other settings."}),
        })
        return {
            "required": required,
            "optional": {
                "unsafe_prompts": ("STRING", {"multiline": True, "default": "",
                                              "tooltip": "More unsafe prompts, one per line (added to the chosen categories)."}),
                "safe_prompts": ("STRING", {"multiline": True, "default": "",
                                            "tooltip": "More safe prompts to keep unchanged, one per line."}),
                "only_my_prompts": ("BOOLEAN", {"default": False,
                                                "tooltip": "Ignore the shipped prompt sets and train on the prompts typed here only."}),
                "batch_size": ("INT", {"default": defaults.batch_size, "min": 1, "max": 512,
                                       "tooltip": "Unsafe (and as many safe) prompts per step."}),
                "train_parameters": ("STRING", {"default": "",
                                                "tooltip": "Advanced: regular expression of the encoder parameters to train "
                                                           "(empty: all). E.g. 'layers\\.(9|10)\\.' trains two layers."}),
            },
            "hidden": {"unique_id": "UNIQUE_ID", "prompt": "PROMPT"},
        }

    # -------------------------------------------------------------------- settings
    @staticmethod
    def _config(lambda_, steps, learning_rate, training_seed, batch_size, train_parameters) -> AlignConfig:
        pattern = (train_parameters or "").strip()
        if pattern:
            try:
                re.compile(pattern)
            except re.error as error:
                raise ValueError(f"SafeText Train: train_parameters is not a valid regular expression ({error})") from None
        train = (pattern,) if pattern else ()
        return AlignConfig(steps=int(steps), learning_rate=float(learning_rate), lam=float(lambda_),
                           seed=int(training_seed), batch_size=int(batch_size), train=train)

    @staticmethod
    def _prompts(categories, unsafe_prompts, safe_prompts, only_my_prompts):
        return load_prompt_sets(categories=[] if only_my_prompts else categories,
                                unsafe_prompts=_split_lines(unsafe_prompts), safe_prompts=_split_lines(safe_prompts),
                                replace=bool(only_my_prompts))

    @staticmethod
    def _same_training(file: SafeTextFile, config: AlignConfig, hashes: dict, fps: dict, family: str) -> bool:
        return (file.family == family
                and file.config == json.loads(config.to_json())
                and file.prompt_hashes == hashes
                and set(file.fingerprints) >= set(fps)
                and all(fingerprints_match(file.fingerprints[e], fps[e]) for e in fps))

    # -------------------------------------------------------------------- run
    def train(self, clip, file_name, steps, learning_rate, training_seed, overwrite=False,
              unsafe_prompts="", safe_prompts="", only_my_prompts=False, batch_size=16, train_parameters="",
              unique_id=None, prompt=None, **flags):
        # "lambda" is a Python keyword, so it (and the category switches) arrive in **flags.
        lambda_ = float(flags.get("lambda", AlignConfig().lam))
        categories = [c for c in CATEGORIES if flags.get(f"unsafe_{c}", False)]
        path = host.output_path(file_name)
        family = comfy_clip.family_of(clip)
        config = self._config(lambda_, steps, learning_rate, training_seed, batch_size, train_parameters)
        try:
            prompts = self._prompts(categories, unsafe_prompts, safe_prompts, only_my_prompts)
            prompts.validate()
        except PromptSetError as error:
            raise ValueError(f"SafeText Train: {error}") from None
        hashes = prompts.hashes()
        fps = comfy_clip.fingerprints(clip, family)
        source = _source_name(prompt, unique_id) if prompt else ""

        if os.path.isfile(path):
            try:
                existing = FILES.load(path)
            except SafeTextFileError:
                existing = None
            if existing is not None and self._same_training(existing, config, hashes, fps, family):
                log.info("SafeText: %s was already trained with these settings; reusing it", path)
                return self._finish(clip, existing, None, unique_id, reused=True)
            if not overwrite:
                raise FileExistsError(f"models/safetext/{os.path.basename(path)} already exists and was made with other "
                                      "settings or for another checkpoint; choose another file name or turn on overwrite")

        outcome = self._run(clip, family, prompts, config, path, source, unique_id)
        FILES.forget(path)
        return self._finish(clip, outcome.file, outcome, unique_id, reused=False)

    def _run(self, clip, family, prompts, config, path, source, unique_id):
        from ..safetext_core.pipeline import run_alignment

        device = host.torch_device()
        progress = host.Progress(config.steps, unique_id)
        started = time.monotonic()

        def on_progress(event):
            info = {"phase": event.phase, "loss": event.loss, "figures": event.figures or {},
                    "elapsed": round(time.monotonic() - started, 1)}
            progress.update(event.step, event.total, force=event.phase != "train", **info)

        host.send_event({"node": unique_id, "step": 0, "total": config.steps, "phase": "start"})
        with torch.inference_mode(False), torch.enable_grad():
            encoders = comfy_clip.encoder_set(clip, family, source)
            size = sum(p.numel() * 4 for m in encoders.models.values() for p in m.parameters())
            host.free_device_memory(size * 5, device)
            try:
                outcome = run_alignment(encoders, prompts, config, output=path, progress=on_progress,
                                        should_cancel=host.interrupted, device=device, base_name=source)
            except AlignmentCancelled:
                host.send_event({"node": unique_id, "phase": "cancelled"})
                host.raise_interrupted()
            except BaseException as error:  # current ComfyUI's InterruptProcessingException is a BaseException
                # ComfyUI's progress-bar hook raises its interrupt exception itself when cancel is pressed.
                if host.is_interrupt(error):
                    host.send_event({"node": unique_id, "phase": "cancelled"})
                raise
            finally:
                encoders.to("cpu")
                del encoders
                host.release_memory()
        host.send_event({"node": unique_id, "step": outcome.result.steps_run, "total": config.steps, "phase": "done",
                         "figures": outcome.heldout, "file": os.path.basename(path)})
        log.info("SafeText: wrote %s (%d steps, %.0f s)", path, outcome.result.steps_run, outcome.result.seconds)
        return outcome

    def _finish(self, clip, file, outcome, unique_id, reused: bool):
        from ..safetext_core.plots import render_report

        aligned, _ = comfy_clip.apply_file(clip, file, 1.0, "embedding")
        figures = dict(file.figures)
        title = f"SafeText: {file.name}" + (" (trained earlier, reused)" if reused else "")
        if outcome is not None and outcome.report is not None:
            picture = outcome.report
        else:
            heldout = {k: v for k, v in figures.get("heldout", {}).items() if not k.endswith("_count")}
            validation = [figures["validation"]] if figures.get("validation") else []
            picture = render_report([], validation, {}, heldout, title=title)
        text = _figures_text(figures, title)
        ui = {"safetext": [_state(aligned, True, os.path.basename(str(file.path or file.name)), 1.0, "embedding")],
              "text": [text], "images": _preview(picture, "safetext_report")}
        ui["safetext"][0]["reused"] = reused
        return {"ui": ui, "result": (aligned, _pil_to_image(picture), text)}


# --------------------------------------------------------------------------------------------- evaluate

class SafeTextEvaluate(_ReadsSafeTextFile):
    """Embedding-level figures of a SafeText file on prompts: how far unsafe prompts moved, how little safe ones did."""

    DESCRIPTION = ("Measures a SafeText file on this CLIP: for unsafe prompts the share whose embedding moved below the "
                   "threshold (cosine to the original), for safe prompts how close they stayed. Without prompts it uses "
                   "the shipped held-out sets, which training never sees.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("STRING", "IMAGE")
    RETURN_NAMES = ("figures", "plot")
    OUTPUT_TOOLTIPS = ("The figures as text.", "Histograms of the cosines per prompt set and the figures.")
    FUNCTION = "evaluate"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "clip": ("CLIP", {"tooltip": "The CLIP of the checkpoint the file was trained for (without SafeText applied)."}),
                "safetext_file": (_file_choices(), {"tooltip": "The SafeText file to measure."}),
                "threshold": ("FLOAT", {"default": 0.5, "min": -1.0, "max": 1.0, "step": 0.01,
                                        "tooltip": "An unsafe prompt counts as neutralised when its cosine to the original falls below this."}),
            },
            "optional": {
                "unsafe_prompts": ("STRING", {"multiline": True, "default": "",
                                              "tooltip": "Unsafe prompts, one per line (empty: the shipped held-out sets)."}),
                "safe_prompts": ("STRING", {"multiline": True, "default": "",
                                            "tooltip": "Safe prompts, one per line (empty: the shipped held-out sets)."}),
                "override_fingerprint": ("BOOLEAN", {"default": False,
                                                     "tooltip": "Measure a file made for another checkpoint anyway."}),
            },
        }

    def evaluate(self, clip, safetext_file, threshold=0.5, unsafe_prompts="", safe_prompts="", override_fingerprint=False):
        from ..safetext_core.plots import render_report
        from ..safetext_core.evaluation import evaluate_deltas

        file = FILES.load(host.full_path(safetext_file))
        family = comfy_clip.family_of(clip)
        comfy_clip.check_family(file, family)
        warnings = file.check_fingerprints(comfy_clip.fingerprints(clip, family), override=override_fingerprint)
        unsafe, safe = _split_lines(unsafe_prompts), _split_lines(safe_prompts)
        sets = load_prompt_sets().evaluation_sets("heldout")
        if unsafe:
            sets = {k: v for k, v in sets.items() if not k.startswith("unsafe")}
            sets["unsafe"] = unsafe
        if safe:
            sets = {k: v for k, v in sets.items() if k not in ("safe", "near_miss")}
            sets["safe"] = safe
        if not sets:
            raise ValueError("SafeText Evaluate: no prompts (the shipped held-out sets are missing); type some prompts")
        device = host.torch_device()
        with torch.inference_mode(False):
            encoders = comfy_clip.encoder_set(clip, family, file.base_name)
            try:
                figures, cosines = evaluate_deltas(encoders, file.deltas, sets, float(threshold), device=device)
            finally:
                encoders.to("cpu")
                del encoders
                host.release_memory()
        shown = {k: v for k, v in figures.items() if not k.endswith("_count")}
        picture = render_report([], [], cosines, shown, title=f"SafeText evaluation: {file.name}", threshold=float(threshold))
        text = _figures_text({**figures, **({"warnings": "; ".join(warnings)} if warnings else {})},
                             f"SafeText evaluation of {file.name} (fingerprint {file.short_fingerprint()})")
        return {"ui": {"text": [text], "images": _preview(picture, "safetext_eval")},
                "result": (text, _pil_to_image(picture))}


NODE_CLASS_MAPPINGS = {
    "SafeTextApply": SafeTextApply,
    "SafeTextTrain": SafeTextTrain,
    "SafeTextEvaluate": SafeTextEvaluate,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "SafeTextApply": "SafeText Load & Apply",
    "SafeTextTrain": "SafeText Train",
    "SafeTextEvaluate": "SafeText Evaluate",
}
