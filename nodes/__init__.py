"""ComfyUI nodes of SafeText (see ``safetext_nodes``); registers ``models/safetext`` when ComfyUI loads them."""
from __future__ import annotations

import logging

from .safetext_nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

try:
    from .host import register_folder

    register_folder()
except ImportError:  # imported outside ComfyUI (unit tests, tools): nothing to register with
    pass
except Exception as error:  # pragma: no cover - never keep ComfyUI from starting
    logging.getLogger("safetext").warning("SafeText: could not register models/safetext: %s", error)

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
