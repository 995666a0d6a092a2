"""SafeText for ComfyUI: nodes that apply, train and evaluate SafeText files (text-encoder safety alignment).

ComfyUI imports this folder as a package (custom_nodes/<folder>/__init__.py). The nodes live in ``nodes/``,
the host-agnostic engine in ``safetext_core/`` (imported relatively, so no name on sys.path is taken), and
the front-end extension in ``javascript/comfyui/``.
"""
from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

WEB_DIRECTORY = "./javascript/comfyui"

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
