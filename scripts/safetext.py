"""SafeText for AUTOMATIC1111 and Forge: the webui runs this file; the extension lives in ``safetext_webui``.

``safetext_core/bootstrap.py`` is loaded by path and imports the core and the adapter under their own names
(nothing is added to ``sys.path``). The webui registers the Script subclass it finds in this namespace.
"""
import importlib.util
from pathlib import Path

from modules import script_callbacks

_spec = importlib.util.spec_from_file_location(
    "safetext_bootstrap", Path(__file__).resolve().parents[1] / "safetext_core" / "bootstrap.py")
_bootstrap = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_bootstrap)
_bootstrap.register("safetext_core")
_bootstrap.register("safetext_webui")

from safetext_webui import script as _script  # noqa: E402
from safetext_webui.script import SafeTextScript  # noqa: E402,F401

for _hook, _callback in _script.CALLBACKS:
    getattr(script_callbacks, _hook)(_callback)
_script.start()
