"""SafeText for ComfyUI: nodes that apply, train and evaluate SafeText files (text-encoder safety alignment).

ComfyUI imports this folder as a package under its folder name. The engine is imported as the top-level
package ``safetext_core`` (registered once by ``safetext_core/bootstrap.py``, loaded here by path, so no second
copy of the core exists under this folder's name and nothing is added to ``sys.path``); the nodes live in
``nodes/``, the front-end extension in ``javascript/comfyui/``.
"""
import importlib.util as _util
from pathlib import Path as _Path

_spec = _util.spec_from_file_location("safetext_bootstrap", _Path(__file__).resolve().parent / "safetext_core" / "bootstrap.py")
_bootstrap = _util.module_from_spec(_spec)
_spec.loader.exec_module(_bootstrap)
_bootstrap.register("safetext_core")

if __package__:
    from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS  # noqa: E402
else:
    # Loaded as a lone file, not as a package: pytest does so with this folder's __init__.py when the checkout's
    # folder name is not a Python name ("SafeText-main" from a ZIP download). Relative imports cannot work
    # there, and there is no ComfyUI to register nodes with. ComfyUI always imports the folder as a package.
    NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS = {}, {}

WEB_DIRECTORY = "./javascript/comfyui"

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
