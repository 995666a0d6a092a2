"""Start, drive and stop a real AUTOMATIC1111 / Forge webui for the integration tests.

The webui runs from ``A1111_PATH`` with the Python in ``A1111_PYTHON`` (default: ``$A1111_PATH/../venv``
or ``$A1111_PATH/venv``), API only, on 127.0.0.1 and a free port, on the CPU, with a temporary
``--data-dir`` (models, extensions, config and outputs all live there, so the checkout is untouched).
Extra launch flags can be added with ``A1111_EXTRA_ARGS``.
"""
from __future__ import annotations

import base64
import io
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from a1111_checkpoints import offline_env

LAUNCH_FLAGS = ["--skip-torch-cuda-test", "--skip-prepare-environment", "--skip-install", "--skip-version-check",
                "--no-download-sd-model", "--no-half", "--use-cpu", "all", "--api", "--nowebui",
                "--server-name", "127.0.0.1"]


def webui_path() -> Path | None:
    value = os.environ.get("A1111_PATH")
    return Path(value).expanduser().resolve() if value else None


def webui_python(root: Path) -> str:
    if os.environ.get("A1111_PYTHON"):
        return os.environ["A1111_PYTHON"]
    for candidate in (root.parent / "venv" / "bin" / "python", root / "venv" / "bin" / "python",
                      root / "venv" / "Scripts" / "python.exe"):
        if candidate.is_file():
            return str(candidate)
    return sys.executable


def webui_commit(root: Path) -> str:
    try:
        return subprocess.run(["git", "-C", str(root), "describe", "--tags", "--always"], capture_output=True,
                              text=True, timeout=10).stdout.strip() + " " + subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10).stdout.strip()
    except Exception:
        return "unknown"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ApiError(Exception):
    def __init__(self, status: int, body: object):
        super().__init__(f"HTTP {status}: {body}")
        self.status, self.body = status, body


class WebUI:
    """One webui process. ``with WebUI(...) as ui:`` starts it and always stops it (by its PID)."""

    def __init__(self, root: Path, python: str, data_dir: Path, hf_home: Path, extensions: dict[str, Path] | None = None,
                 config: dict | None = None, checkpoint: Path | None = None, ui: bool = False,
                 extra_args: tuple[str, ...] = (), extra_env: dict[str, str] | None = None):
        """``ui=True`` starts the webui with its pages (without ``--nowebui``; the API stays on through ``--api``);
        ``extra_args`` are added to the launch flags, ``extra_env`` to the environment."""
        self.root, self.python, self.data_dir, self.hf_home = root, python, data_dir, hf_home
        self.ui, self.extra_args, self.extra_env = ui, tuple(extra_args), dict(extra_env or {})
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.log_path = data_dir / "webui.log"
        data_dir.mkdir(parents=True, exist_ok=True)
        (data_dir / "models" / "Stable-diffusion").mkdir(parents=True, exist_ok=True)
        if checkpoint is not None:
            link = data_dir / "models" / "Stable-diffusion" / checkpoint.name
            if not link.exists():
                link.symlink_to(checkpoint)
        (data_dir / "extensions").mkdir(exist_ok=True)
        for name, path in (extensions or {}).items():
            link = data_dir / "extensions" / name
            if not link.exists():
                link.symlink_to(path, target_is_directory=True)
        if config:
            (data_dir / "config.json").write_text(json.dumps(config), encoding="utf-8")

    # ------------------------------------------------------------------ lifecycle
    def start(self, timeout: float = 600) -> "WebUI":
        flags = [flag for flag in LAUNCH_FLAGS if not (self.ui and flag == "--nowebui")]
        args = [self.python, "launch.py", *flags, "--port", str(self.port), "--data-dir", str(self.data_dir)]
        args += [*self.extra_args, *shlex.split(os.environ.get("A1111_EXTRA_ARGS", ""))]
        env = offline_env(self.hf_home)
        env.update(self.extra_env)
        env["COMMANDLINE_ARGS"] = ""
        env.pop("PYTHONPATH", None)
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(args, cwd=str(self.root), env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the webui exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                self.get("/sdapi/v1/options", timeout=5)
                return self
            except (OSError, ApiError):
                time.sleep(2)
        self.stop()
        raise TimeoutError(f"the webui did not answer within {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=30)
        if getattr(self, "_log", None):
            self._log.close()

    def __enter__(self) -> "WebUI":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def log_tail(self, chars: int = 6000) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-chars:]
        except OSError:
            return ""

    # ------------------------------------------------------------------ HTTP
    def request(self, method: str, path: str, body: object = None, timeout: float = 900) -> object:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"} if data else {})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            raw = error.read()
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = raw.decode(errors="replace")
            raise ApiError(error.code, parsed) from None

    def get(self, path: str, timeout: float = 60) -> object:
        return self.request("GET", path, timeout=timeout)

    def post(self, path: str, body: object, timeout: float = 900) -> object:
        return self.request("POST", path, body, timeout=timeout)

    def txt2img(self, prompt: str, seed: int = 1, safetext: list | None = None, **extra) -> dict:
        body = {"prompt": prompt, "negative_prompt": "", "seed": seed, "steps": 2, "width": 64, "height": 64,
                "sampler_name": "Euler", "cfg_scale": 7, "batch_size": 1, "n_iter": 1, "save_images": False}
        body.update(extra)
        if safetext is not None:
            body.setdefault("alwayson_scripts", {})["SafeText"] = {"args": safetext}
        result = self.post("/sdapi/v1/txt2img", body)
        result["info"] = json.loads(result["info"]) if isinstance(result.get("info"), str) else result.get("info")
        return result


def decode_image(b64: str):
    import numpy as np
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64.split(",", 1)[-1]))).convert("RGB"))
