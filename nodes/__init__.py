"""SafeText's ComfyUI nodes, one module each (``apply``, ``train``, ``evaluate``) over a shared ``base``.

``comfy_clip`` turns ComfyUI CLIP objects into core calls and back; ``host`` holds every other touch of
ComfyUI (model folder, devices, cancel, progress). Importing this package registers ``models/safetext``.
"""
from __future__ import annotations

import logging

from .apply import SafeTextApply
from .evaluate import SafeTextEvaluate
from .train import SafeTextTrain

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

try:
    from .host import register_folder

    register_folder()
except ImportError:  # imported outside ComfyUI (unit tests, tools): nothing to register with
    pass
except Exception as error:  # pragma: no cover - never keep ComfyUI from starting
    logging.getLogger("safetext").warning("SafeText: could not register models/safetext: %s", error)

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
