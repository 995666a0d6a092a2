"""SafeText's ComfyUI nodes, one module each (``apply``, ``train``, ``evaluate``) over a shared ``base``.

``comfy_clip`` turns ComfyUI CLIP objects into core calls and back; ``host`` holds every other touch of
ComfyUI (model folder, devices, cancel, progress); ``enforce`` is the operator's enforced mode and ``signals``
the moderation signal. Importing this package registers ``models/safetext`` and starts ``enforce``.
"""
from __future__ import annotations

import logging

from .apply import SafeTextApply
from .evaluate import SafeTextEvaluate
from .evaluate_images import SafeTextEvaluateImages
from .train import SafeTextTrain

NODE_CLASS_MAPPINGS = {
    "SafeTextApply": SafeTextApply,
    "SafeTextTrain": SafeTextTrain,
    "SafeTextEvaluate": SafeTextEvaluate,
    "SafeTextEvaluateImages": SafeTextEvaluateImages,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "SafeTextApply": "SafeText Load & Apply",
    "SafeTextTrain": "SafeText Train",
    "SafeTextEvaluate": "SafeText Evaluate",
    "SafeTextEvaluateImages": "SafeText Evaluate Images",
}

try:
    from .host import register_folder

    register_folder()
except ImportError:  # imported outside ComfyUI (unit tests, tools): nothing to register with
    pass
except Exception as error:  # pragma: no cover - never keep ComfyUI from starting
    logging.getLogger("safetext").warning("SafeText: could not register models/safetext: %s", error)

# The operator's enforced mode (read once, here) and the moderation signal's encode scopes and routes. Not
# guarded: an operator who asked for the mode must see ComfyUI report the pack as failed, not run without it.
from .enforce import start as _start_enforce  # noqa: E402

_start_enforce()

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
