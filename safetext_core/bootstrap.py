"""One import name for SafeText's packages in every host, without putting the repository on ``sys.path``.

ComfyUI imports the repository as a package under its folder name, AUTOMATIC1111 runs ``scripts/*.py`` as
loose files; neither gives the core a stable name, and appending the repository root to ``sys.path`` would
also make its ``nodes``, ``tools`` and ``tests`` folders importable across the whole host (ComfyUI has a
``nodes`` module of its own). :func:`register` imports a package folder of this repository under its own
top-level name (``safetext_core``, ``safetext_webui``) once, so every host, the command line and the tests
see the same classes under the same name.

This file is loaded by path (``importlib``) before the core package exists, so it imports nothing of
SafeText's own.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

REPOSITORY = Path(__file__).resolve().parents[1]


def register(name: str, folder: str | os.PathLike | None = None) -> ModuleType:
    """Import the package ``folder`` (default: ``<repository>/<name>``) as top-level ``name``, once.

    If ``name`` is already imported from the same folder, that module is returned. If it was imported from
    somewhere else (another copy of SafeText installed with pip, say), it is returned only when it is the same
    version; otherwise :class:`ImportError` says which two copies clash.
    """
    folder = Path(folder or REPOSITORY / name).resolve()
    existing = sys.modules.get(name)
    if existing is not None:
        where = Path(getattr(existing, "__file__", "") or ".").resolve().parent
        if where == folder:
            return existing
        ours = _version_of(folder)
        theirs = getattr(existing, "__version__", None)
        if ours is not None and ours == theirs:
            return existing
        raise ImportError(f"SafeText: another {name} ({theirs}, {where}) is already imported; this extension "
                          f"needs its own ({ours}, {folder}). Uninstall one of them.")
    spec = importlib.util.spec_from_file_location(name, folder / "__init__.py", submodule_search_locations=[str(folder)])
    if spec is None or spec.loader is None:
        raise ImportError(f"SafeText: {folder} is not a Python package")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _version_of(folder: Path) -> str | None:
    for line in (folder / "__init__.py").read_text(encoding="utf-8").splitlines():
        if line.startswith("__version__"):
            return line.split("=", 1)[1].strip().strip("\"'")
    return None
