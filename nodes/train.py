"""SafeText Train: align the text encoder(s) of the CLIP in the graph and write models/safetext/<name>.safetensors.

Training runs in the core (:func:`safetext_core.pipeline.run_alignment`) on float32 copies of the checkpoint's
own encoder weights; this node only gathers settings and prompts, reports progress to ComfyUI and the front
end, honours ComfyUI's cancel button, and reuses a file it already made with the same training
(:func:`safetext_core.hosting.same_training`).
"""
from __future__ import annotations

import logging
import os
import re
import time
from typing import Any

import torch

from safetext_core.errors import AlignmentCancelled, ConfigError, SafeTextFileError
from safetext_core.hosting import same_training
from safetext_core.loop import AlignConfig
from safetext_core.memory import device_bytes, original_dtype
from safetext_core.prompt_sets import CATEGORIES, load_prompt_sets
from safetext_core.safetext_file import SafeTextFile

from . import comfy_clip, enforce, host
from .base import CATEGORY, FILES, figures_text, pil_to_image, preview, state

log = logging.getLogger("safetext")

SOURCE_INPUTS = ("ckpt_name", "clip_name", "clip_name1", "unet_name")  # loader widgets that name a checkpoint


def source_name(prompt: Any, node_id: Any, input_name: str = "clip", depth: int = 0) -> str:
    """Best-effort name of the checkpoint (or text-encoder file) a node's CLIP comes from, read off the graph."""
    try:
        link = prompt[str(node_id)]["inputs"][input_name]
        if not isinstance(link, list) or depth > 32:
            return ""
        inputs = prompt[str(link[0])].get("inputs", {})
        for key in SOURCE_INPUTS:
            if isinstance(inputs.get(key), str):
                return inputs[key]
        if isinstance(inputs.get("clip"), list):
            return source_name(prompt, link[0], "clip", depth + 1)
    except (KeyError, TypeError, IndexError):
        pass
    return ""


def config_from(lambda_, steps, learning_rate, training_seed, batch_size, train_parameters, rank=0, lora_alpha=0.0,
                lora_learning_rate=None, lora_targets="", lr_schedule=None, lowrank_method=None) -> AlignConfig:
    patterns = {}
    for field, text in (("train_parameters", train_parameters), ("lora_targets", lora_targets)):
        pattern = (text or "").strip()
        if pattern:
            try:
                re.compile(pattern)
            except re.error as error:
                raise ConfigError(f"SafeText Train: {field} is not a valid regular expression ({error})") from None
        patterns[field] = (pattern,) if pattern else ()
    # Inputs a workflow may leave out (saved before they existed): the core's defaults then.
    given = {"lora_learning_rate": float(lora_learning_rate)} if lora_learning_rate is not None else {}
    if lr_schedule:
        given["lr_schedule"] = str(lr_schedule)
    if lowrank_method:
        given["lowrank_method"] = str(lowrank_method)
    return AlignConfig(steps=int(steps), learning_rate=float(learning_rate), lam=float(lambda_), seed=int(training_seed),
                       batch_size=int(batch_size), train=patterns["train_parameters"], rank=int(rank),
                       lora_alpha=float(lora_alpha), lora_targets=patterns["lora_targets"], **given)


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
                # Low-rank (LoRA) training; new inputs go last so saved workflows keep their widget values.
                "rank": ("INT", {"default": defaults.rank, "min": 0, "max": 1024,
                                 "tooltip": "0: fine-tune the full weights. > 0: the file is a LoRA of this rank, a few MB, "
                                            "that stock LoRA loaders apply too. SD 1.x / 2.x / SDXL: the full weights "
                                            "are fine-tuned, then each layer's change is cut to the rank (full "
                                            "fine-tuning's memory); T5 / LLM encoders: LoRA factors are trained "
                                            "directly (docs/lowrank.md)."}),
                "lora_alpha": ("FLOAT", {"default": defaults.lora_alpha, "min": 0.0, "max": 4096.0, "step": 1.0,
                                         "tooltip": "LoRA alpha of factors trained directly: their product is scaled by alpha / "
                                                    "rank (0: alpha = rank)."}),
                "lora_learning_rate": ("FLOAT", {"default": defaults.lora_learning_rate, "min": 1e-7, "max": 1.0,
                                                 "step": 1e-5, "round": 1e-8,
                                                 "tooltip": "AdamW learning rate of LoRA factors trained directly (rank > 0 on T5 / "
                                                            "LLM encoders)."}),
                "lora_targets": ("STRING", {"default": "",
                                            "tooltip": "Advanced, rank > 0: regular expression of the linear layers that get "
                                                       "factors (empty: every layer inside the transformer blocks)."}),
                "lr_schedule": (["cosine", "constant"], {"default": defaults.lr_schedule,
                                                         "tooltip": "cosine: the learning rate falls to a tenth by the "
                                                                    "last step (the default, for full-length runs). "
                                                                    "constant: better for short runs of a few dozen "
                                                                    "steps, whose late small steps cannot repair "
                                                                    "what the early ones moved."}),
                "lowrank_method": (["auto", "compress", "adapters"],
                                   {"default": defaults.lowrank_method,
                                    "tooltip": "rank > 0: compress fine-tunes the full weights, then cuts each layer's "
                                               "change to the rank (keeps harmless prompts best; full fine-tuning's "
                                               "memory); adapters trains LoRA factors directly (less memory). auto: "
                                               "compress for SD 1.x / 2.x / SDXL, adapters for T5 / LLM encoders."}),
            },
            "hidden": {"unique_id": "UNIQUE_ID", "prompt": "PROMPT"},
        }

    def train(self, clip, file_name, steps, learning_rate, training_seed, overwrite=False,
              unsafe_prompts="", safe_prompts="", only_my_prompts=False, batch_size=16, train_parameters="",
              rank=0, lora_alpha=0.0, lora_learning_rate=None, lora_targets="", lr_schedule=None,
              lowrank_method=None, unique_id=None, prompt=None, **flags):
        enforce.check_training()  # an operator's enforced mode picks files by fingerprint: no new ones
        # "lambda" is a Python keyword, so it (and the category switches) arrive in **flags.
        config = config_from(flags.get("lambda", AlignConfig().lam), steps, learning_rate, training_seed, batch_size,
                             train_parameters, rank, lora_alpha, lora_learning_rate, lora_targets, lr_schedule,
                             lowrank_method)
        path = host.output_path(file_name)
        family = comfy_clip.family_of(clip)
        # Text boxes: one prompt per line (blank lines and # comments skipped); a bad prompt is a PromptError naming it.
        prompts = load_prompt_sets(categories=[] if only_my_prompts else [c for c in CATEGORIES if flags.get(f"unsafe_{c}")],
                                   unsafe_prompts=unsafe_prompts, safe_prompts=safe_prompts,
                                   replace=bool(only_my_prompts))
        prompts.validate()  # PromptSetError / PromptError: SafeTextErrors that name the problem
        fingerprints = comfy_clip.fingerprints(clip, family)

        if os.path.isfile(path):
            try:
                existing = FILES.load(path)
            except SafeTextFileError:
                existing = None
            if existing is not None and same_training(existing, config, prompts.hashes(), fingerprints, family):
                log.info("SafeText: %s was already trained with these settings; reusing it", path)
                return self._finish(clip, existing, None, unique_id)
            if not overwrite:
                raise SafeTextFileError(f"models/safetext/{os.path.basename(path)} already exists and was made with "
                                        "other settings or for another checkpoint; choose another file name or turn on "
                                        "overwrite")

        source = source_name(prompt, unique_id) if prompt else ""
        outcome = self._run(clip, family, prompts, config, path, source, unique_id, overwrite=bool(overwrite))
        FILES.forget(path)
        return self._finish(clip, outcome.file, outcome, unique_id)

    def _run(self, clip, family, prompts, config, path, source, unique_id, overwrite=False):
        from safetext_core.pipeline import run_alignment

        device = host.torch_device()
        progress = host.Progress(config.steps, unique_id)
        started = time.monotonic()
        name = os.path.basename(path)

        def on_progress(event):
            # The loop's "done" is the end of training; held-out figures and saving follow, so the node says so
            # and keeps "done" for when the file is written.
            phase = "finishing" if event.phase == "done" else event.phase
            progress.update(event.step, event.total, force=phase != "train", phase=phase, loss=event.loss,
                            figures=event.figures or {}, elapsed=round(time.monotonic() - started, 1), file=name)

        host.send_event({"node": unique_id, "step": 0, "total": config.steps, "phase": "start", "file": name})
        with torch.inference_mode(False), torch.enable_grad():
            # a low-rank GPU run keeps a T5 / LLM encoder in bfloat16: so is SafeText's copy of the original
            encoders = comfy_clip.encoder_set(clip, family, source, large_dtype=original_dtype(config, device))
            # a low-rank run of a 2.6B encoder needs a tenth of full fine-tuning's room: other models can stay loaded
            host.free_device_memory(device_bytes(encoders, config, device), device)
            try:
                outcome = run_alignment(encoders, prompts, config, output=path, progress=on_progress,
                                        should_cancel=host.interrupted, device=device, base_name=source,
                                        overwrite=overwrite)
            except AlignmentCancelled:
                host.send_event({"node": unique_id, "phase": "cancelled", "file": name})
                host.raise_interrupted()
            except BaseException as error:  # current ComfyUI's InterruptProcessingException is a BaseException
                # ComfyUI's progress-bar hook raises its interrupt exception itself when cancel is pressed.
                if host.is_interrupt(error):
                    host.send_event({"node": unique_id, "phase": "cancelled", "file": name})
                raise
            finally:
                encoders.to("cpu")
                del encoders
                host.release_memory()
        host.send_event({"node": unique_id, "step": outcome.result.steps_run, "total": config.steps, "phase": "done",
                         "figures": outcome.heldout, "file": name})
        log.info("SafeText: wrote %s (%d steps, %.0f s)", path, outcome.result.steps_run, outcome.result.seconds)
        return outcome

    def _finish(self, clip, file: SafeTextFile, outcome, unique_id):
        from safetext_core.plots import render_report

        reused = outcome is None
        aligned, _ = comfy_clip.apply_file(clip, file, 1.0, "embedding")
        figures = dict(file.figures)
        title = f"SafeText: {file.name}" + (" (trained earlier, reused)" if reused else "")
        if outcome is not None and outcome.report is not None:
            picture = outcome.report
        else:
            heldout = {k: v for k, v in figures.get("heldout", {}).items() if not k.endswith("_count")}
            validation = [figures["validation"]] if figures.get("validation") else []
            picture = render_report([], validation, {}, heldout, title=title)
        text = figures_text(figures, title)
        name = os.path.basename(str(file.path or file.name))
        report = state(comfy_clip.active_safetext(aligned), True, name, 1.0, "embedding", reused=reused)
        ui = {"safetext": [report], "text": [text], "images": preview(picture, "safetext_report")}
        return {"ui": ui, "result": (aligned, pil_to_image(picture), text)}
