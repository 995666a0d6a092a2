"""Installer hook for SafeText, run by AUTOMATIC1111/Forge on launch and by ComfyUI-Manager after install.

It detects the host (A1111's ``launch`` module, ComfyUI-Manager, or neither), installs only what
``requirements.txt`` lists and is missing, and never installs, upgrades or pins torch.
"""
from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "requirements.txt"
NEVER = ("torch", "torchvision", "torchaudio", "xformers", "triton")


def requirement_name(line: str) -> str:
    return re.split(r"[<>=!~\[;@ ]", line.strip(), maxsplit=1)[0].strip()


def requirements() -> list[str]:
    out = []
    if not REQUIREMENTS.is_file():
        return out
    for line in REQUIREMENTS.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        if requirement_name(line).lower() in NEVER:
            continue  # the host owns torch; never touch it
        out.append(line)
    return out


def detect_host() -> str:
    """``a1111`` (A1111 or Forge: their ``launch`` module is importable), ``comfyui``, or ``none``."""
    launch = sys.modules.get("launch")
    if launch is None:
        try:
            import launch  # noqa: F401  (A1111/Forge run install.py with the webui root on sys.path)
        except Exception:
            launch = None
    if launch is not None and hasattr(launch, "run_pip") and hasattr(launch, "is_installed"):
        return "a1111"
    if HERE.parent.name == "custom_nodes" or os.environ.get("COMFYUI_PATH") or "comfy" in sys.modules:
        return "comfyui"
    return "none"


def _installed(name: str) -> bool:
    try:
        importlib.metadata.version(name)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


def main() -> int:
    host = detect_host()
    wanted = requirements()
    if host == "a1111":
        import launch

        for line in wanted:
            name = requirement_name(line)
            if not launch.is_installed(name):
                launch.run_pip(f"install \"{line}\"", f"SafeText requirement: {line}")
        return 0
    missing = [line for line in wanted if not _installed(requirement_name(line))]
    if host == "comfyui":
        # ComfyUI-Manager has already pip-installed requirements.txt line by line; finish what it missed.
        for line in missing:
            subprocess.run([sys.executable, "-m", "pip", "install", line], check=False)
        return 0
    if missing:
        print("SafeText: missing packages: " + ", ".join(missing) + f". Install them with: {sys.executable} -m pip install "
              + " ".join(f'"{m}"' for m in missing))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
