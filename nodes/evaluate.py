"""SafeText Evaluate: embedding-level figures of a SafeText file on prompts, with a plot.

For unsafe prompts: the share whose conditioning moved below the cosine ``threshold`` and the mean cosine;
for safe (and near-miss) prompts: how close they stayed. Without typed prompts it uses the shipped held-out
sets, which training never sees. The measuring is the core's :func:`safetext_core.evaluation.evaluate_deltas`.
Prompts typed into ``why_prompts`` are explained by :func:`safetext_core.evaluation.explain_many` (the CLI's
``safetext why``): each one's cosine and the training prompts nearest to it.
"""
from __future__ import annotations

import torch

from safetext_core.errors import PromptSetError
from safetext_core.prompt_sets import load_prompt_sets

from . import comfy_clip, host
from .base import CATEGORY, ReadsSafeTextFile, figures_text, file_choices, load_file, pil_to_image, preview, split_lines


def prompt_sets(unsafe_prompts: str, safe_prompts: str) -> dict[str, list[str]]:
    """The shipped held-out sets, with typed unsafe and/or safe prompts taking the place of their kind."""
    unsafe, safe = split_lines(unsafe_prompts), split_lines(safe_prompts)
    sets = load_prompt_sets().evaluation_sets("heldout")
    if unsafe:
        sets = {k: v for k, v in sets.items() if not k.startswith("unsafe")}
        sets["unsafe"] = unsafe
    if safe:
        sets = {k: v for k, v in sets.items() if k not in ("safe", "near_miss")}
        sets["safe"] = safe
    if not sets:
        raise PromptSetError("SafeText Evaluate: no prompts (the shipped held-out sets are missing); type some prompts")
    return sets


class SafeTextEvaluate(ReadsSafeTextFile):
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
                "safetext_file": (file_choices(), {"tooltip": "The SafeText file to measure."}),
                "threshold": ("FLOAT", {"default": 0.5, "min": -1.0, "max": 1.0, "step": 0.01,
                                        "tooltip": "An unsafe prompt counts as neutralised when its cosine to the original falls below this."}),
            },
            "optional": {
                "unsafe_prompts": ("STRING", {"multiline": True, "default": "",
                                              "tooltip": "Unsafe prompts, one per line (empty: the shipped held-out sets)."}),
                "safe_prompts": ("STRING", {"multiline": True, "default": "",
                                            "tooltip": "Safe prompts, one per line (empty: the shipped held-out sets)."}),
                "why_prompts": ("STRING", {"multiline": True, "default": "",
                                           "tooltip": "Prompts to explain, one per line (e.g. a harmless prompt whose "
                                                      "picture changed): each one's cosine to the original and the "
                                                      "training prompts nearest to it. Explained against the shipped "
                                                      "prompt sets of the file's categories."}),
                "override_fingerprint": ("BOOLEAN", {"default": False,
                                                     "tooltip": "Measure a file made for another checkpoint anyway."}),
            },
        }

    def evaluate(self, clip, safetext_file, threshold=0.5, unsafe_prompts="", safe_prompts="", override_fingerprint=False,
                 why_prompts=""):
        from safetext_core.evaluation import evaluate_deltas, explain_many, explanation_text
        from safetext_core.prompt_sets import shipped_sets_of
        from safetext_core.plots import render_report

        file = load_file(safetext_file)
        family = comfy_clip.family_of(clip)
        comfy_clip.check_family(file, family)
        warnings = file.check_fingerprints(comfy_clip.fingerprints(clip, family), override=override_fingerprint)
        sets = prompt_sets(unsafe_prompts, safe_prompts)
        asked = split_lines(why_prompts)
        why = ""
        with torch.inference_mode(False):
            encoders = comfy_clip.encoder_set(clip, family, file.base_name)
            try:
                figures, cosines = evaluate_deltas(encoders, file.deltas, sets, float(threshold),
                                                   device=host.torch_device())
                if asked:
                    training, exact = shipped_sets_of(file.prompt_hashes)
                    answers = explain_many(encoders, file.deltas, asked, training, float(threshold),
                                           device=host.torch_device())
                    fix = "add it to SafeText Train's safe prompts and train again"
                    why = "\n\n".join(["Why did these prompts move? (nearest prompts from the shipped sets"
                                        + ("" if exact else "; the file was trained on other prompts as well") + ")"]
                                       + [explanation_text(answer, fix) for answer in answers])
            finally:
                encoders.to("cpu")
                del encoders
                host.release_memory()
        shown = {k: v for k, v in figures.items() if not k.endswith("_count")}
        picture = render_report([], [], cosines, shown, title=f"SafeText evaluation: {file.name}", threshold=float(threshold))
        text = figures_text({**figures, **({"warnings": "; ".join(warnings)} if warnings else {})},
                            f"SafeText evaluation of {file.name} (fingerprint {file.short_fingerprint()})")
        if why:
            text = f"{text}\n\n{why}"
        return {"ui": {"text": [text], "images": preview(picture, "safetext_eval")},
                "result": (text, pil_to_image(picture))}
