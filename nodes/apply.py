"""SafeText Load & Apply: a SafeText file applied to a CLIP, with a toggle, a strength and two blend modes.

The output is an ordinary CLIP (a clone carrying ComfyUI patches, see :mod:`.comfy_clip`), so every
text-encode node downstream, LoRA loaders and CLIP Set Last Layer work unchanged. Off (or strength 0) returns
the very CLIP it got.
"""
from __future__ import annotations

import logging

from safetext_core import weights

from . import comfy_clip, enforce
from .base import CATEGORY, ReadsSafeTextFile, file_choices, load_file, state

log = logging.getLogger("safetext")

MODES = {
    "embedding blend (exact, default)": "embedding",
    "weight blend (cheap, stacks with LoRAs)": "weight",
}


class SafeTextApply(ReadsSafeTextFile):
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
                "safetext_file": (file_choices(), {"tooltip": "A SafeText file from models/safetext, trained for this checkpoint."}),
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

    @classmethod
    def VALIDATE_INPUTS(cls, safetext_file=None, enabled=True):
        # Off needs no file: the graph then runs as if the node were not there; nor does the enforced mode, which
        # ignores the node's file.
        if enabled is False or enforce.active():
            return True
        return super().VALIDATE_INPUTS(safetext_file)

    def apply(self, clip, safetext_file, enabled=True, strength=1.0, blend_mode=None, override_fingerprint=False):
        mode = weights.check_mode(MODES.get(blend_mode, blend_mode or "embedding"))
        strength = weights.check_strength(strength)
        if enforce.active():
            # The server applies its own file at its own strength to every CLIP when it encodes (enforce.py);
            # this node's settings are overridden and it adds nothing, so nothing is applied twice.
            report = state([], True, safetext_file, enforce.CONFIG.strength, "embedding", enforced=enforce.status())
            return {"ui": {"safetext": [report]}, "result": (clip,)}
        if not enabled or strength == 0.0:
            # Same object, untouched: downstream nodes see exactly the graph without this node.
            report = state(comfy_clip.active_safetext(clip), False, safetext_file, strength, mode)
            return {"ui": {"safetext": [report]}, "result": (clip,)}
        out, warnings = comfy_clip.apply_file(clip, load_file(safetext_file), strength, mode, override_fingerprint)
        for warning in warnings:
            log.warning("SafeText: %s (applied anyway: override is on)", warning)
        report = state(comfy_clip.active_safetext(out), True, safetext_file, strength, mode, warnings=warnings)
        return {"ui": {"safetext": [report]}, "result": (out,)}
