"""Drive a real ComfyUI over HTTP for the integration tests (standard library only).

``ComfyServer`` makes a throw-away ``--base-directory`` (custom_nodes/ with this repository linked in,
models/checkpoints, models/loras, models/safetext, input/, output/, temp/, user/), starts
``main.py --cpu`` from ``COMFYUI_PATH`` on 127.0.0.1 on a free port with an in-memory database, so the
checkout itself is never written to, waits until it answers, and stops it by PID. ``submit`` posts an
API-format workflow to ``/prompt``, ``wait`` polls ``/history/<id>``, ``image`` fetches ``/view``,
``interrupt`` posts ``/interrupt``; ``Events`` listens on ``/ws`` for the server's websocket messages.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

REPO = Path(__file__).resolve().parents[2]
NODE_FOLDER = "ComfyUI-SafeText"


def comfy_python(comfy_path: str | os.PathLike) -> str:
    """``COMFYUI_PYTHON``, else ``$COMFYUI_PATH/../venv/bin/python`` when it exists, else this Python."""
    if os.environ.get("COMFYUI_PYTHON"):
        return os.environ["COMFYUI_PYTHON"]
    candidate = Path(comfy_path).resolve().parent / "venv" / "bin" / "python"
    return str(candidate) if candidate.exists() else sys.executable


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pack_import_line(log: str, folder: str = NODE_FOLDER) -> str | None:
    """This pack's line in ComfyUI's "Import times for custom nodes" list (``   0.6 seconds: .../custom_nodes/<folder>``,
    with ``(IMPORT FAILED)`` when it failed), or None when the pack is not listed. Other packs' lines and
    ComfyUI's own "IMPORT FAILED: nodes_audio.py" warnings (missing optional dependencies) are not ours."""
    ending = os.sep + "custom_nodes" + os.sep + folder
    for line in log.splitlines():
        if " seconds" in line and line.rstrip().rstrip(os.sep).endswith(ending):
            return line.strip()
    return None


def pack_import_errors(log: str, folder: str = NODE_FOLDER) -> list[str]:
    """ComfyUI's "Cannot import <path> module for custom nodes" warnings about this pack."""
    ending = os.sep + "custom_nodes" + os.sep + folder + " "
    return [line.strip() for line in log.splitlines() if "Cannot import" in line and ending in line]


def comfy_commit(comfy_path: str | os.PathLike) -> str:
    """The ComfyUI checkout's commit: ``git rev-parse HEAD``, else a ``.host_commit`` file (plain copies)."""
    try:
        commit = subprocess.run(["git", "-C", str(comfy_path), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    if not commit:
        try:
            commit = (Path(comfy_path) / ".host_commit").read_text().split()[0]
        except (OSError, IndexError):
            commit = ""
    return commit or "unknown"


class ComfyError(RuntimeError):
    pass


class ComfyServer:
    def __init__(self, comfy_path: str | os.PathLike, python: str | None = None, base: str | os.PathLike | None = None,
                 port: int | None = None, extra_args: tuple[str, ...] = ()):
        self.comfy_path = Path(comfy_path).resolve()
        if not (self.comfy_path / "main.py").is_file():
            raise ComfyError(f"{self.comfy_path} is not a ComfyUI checkout (no main.py)")
        self.python = python or comfy_python(self.comfy_path)
        self._own_base = base is None
        self.base = Path(base) if base else Path(tempfile.mkdtemp(prefix="safetext-comfy-"))
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.extra_args = tuple(extra_args)
        self.process: subprocess.Popen | None = None
        self.log_path = self.base / "comfyui.log"
        self.client_id = uuid.uuid4().hex

    # ------------------------------------------------------------------ folders
    @property
    def models(self) -> Path:
        return self.base / "models"

    def prepare(self) -> None:
        for sub in ("custom_nodes", "models/checkpoints", "models/loras", "models/safetext", "input", "output",
                    "temp", "user"):
            (self.base / sub).mkdir(parents=True, exist_ok=True)
        link = self.base / "custom_nodes" / NODE_FOLDER
        if not link.exists():
            link.symlink_to(REPO, target_is_directory=True)

    def add_model(self, kind: str, source: str | os.PathLike, name: str | None = None) -> str:
        """Link (or copy) ``source`` into models/<kind>/; returns the name ComfyUI lists it under."""
        target = self.models / kind / (name or Path(source).name)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists() or target.is_symlink():
            target.unlink()
        try:
            os.link(source, target)
        except OSError:
            target.symlink_to(Path(source).resolve())
        return target.name

    # ------------------------------------------------------------------ process
    def start(self, timeout: float = 300) -> "ComfyServer":
        self.prepare()
        env = dict(os.environ)
        env["PYTHONDONTWRITEBYTECODE"] = "1"  # leave the checkout as it is
        env["SAFETEXT_CACHE"] = str(self.base / "safetext-cache")  # nothing shared with other runs
        env.pop("PYTHONPATH", None)
        cmd = [self.python, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
               "--disable-auto-launch", "--base-directory", str(self.base),
               "--database-url", "sqlite:///:memory:", *self.extra_args]
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(cmd, cwd=str(self.comfy_path), stdout=self._log, stderr=subprocess.STDOUT,
                                        env=env, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ComfyError(f"ComfyUI exited with {self.process.returncode} while starting:\n{self.log_tail()}")
            try:
                self.get("/system_stats", timeout=5)
                return self
            except (OSError, ComfyError):
                time.sleep(1)
        self.stop()
        raise ComfyError(f"ComfyUI did not answer within {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self, timeout: float = 30) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGINT)  # ComfyUI's own clean shutdown
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.terminate()
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(10)
        if getattr(self, "_log", None):
            self._log.close()
            self._log = None

    def cleanup(self) -> None:
        self.stop()
        if self._own_base and os.environ.get("SAFETEXT_KEEP_COMFY_BASE") != "1":
            shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> "ComfyServer":
        try:
            return self.start()
        except BaseException:
            self.cleanup()
            raise

    def __exit__(self, *exc: Any) -> None:
        self.cleanup()

    def pack_import_line(self) -> str | None:
        return pack_import_line(self.log_text())

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, chars: int = 6000) -> str:
        return self.log_text()[-chars:]

    def wait_for_log(self, text: str, timeout: float = 300, since: int = 0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log_text()[since:]:
                return True
            if self.process is not None and self.process.poll() is not None:
                return False
            time.sleep(0.2)
        return False

    # ------------------------------------------------------------------ HTTP
    def _request(self, method: str, path: str, body: Any = None, timeout: float = 60) -> bytes:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"} if data else {})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.read()
        except urllib.error.HTTPError as error:
            raise ComfyError(f"{method} {path}: HTTP {error.code}: {error.read().decode(errors='replace')[:4000]}") from None

    def get(self, path: str, timeout: float = 60) -> Any:
        return json.loads(self._request("GET", path, timeout=timeout) or b"null")

    def post(self, path: str, body: Any = None, timeout: float = 60) -> Any:
        raw = self._request("POST", path, body if body is not None else {}, timeout=timeout)
        return json.loads(raw) if raw.strip() else None

    def object_info(self) -> dict:
        return self.get("/object_info", timeout=120)

    def submit(self, workflow: dict) -> str:
        answer = self.post("/prompt", {"prompt": workflow, "client_id": self.client_id})
        if answer.get("node_errors"):
            raise ComfyError(f"ComfyUI refused the workflow: {json.dumps(answer['node_errors'])[:4000]}")
        return answer["prompt_id"]

    def wait(self, prompt_id: str, timeout: float = 600) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                history = self.get(f"/history/{prompt_id}", timeout=30)
            except (OSError, TimeoutError):  # a busy CPU can keep the server from answering for a while
                if self.process is not None and self.process.poll() is not None:
                    raise ComfyError(f"ComfyUI died while running {prompt_id}:\n{self.log_tail()}") from None
                time.sleep(2)
                continue
            if prompt_id in (history or {}):
                entry = history[prompt_id]
                if entry.get("status", {}).get("completed") or entry.get("status", {}).get("status_str") == "error":
                    return entry
            if self.process is not None and self.process.poll() is not None:
                raise ComfyError(f"ComfyUI died while running {prompt_id}:\n{self.log_tail()}")
            time.sleep(0.5)
        raise ComfyError(f"prompt {prompt_id} did not finish within {timeout:.0f} s:\n{self.log_tail()}")

    def run(self, workflow: dict, timeout: float = 600, expect_success: bool = True) -> dict:
        entry = self.wait(self.submit(workflow), timeout)
        if expect_success and entry.get("status", {}).get("status_str") != "success":
            raise ComfyError("workflow failed: " + error_message(entry) + "\n" + self.log_tail(3000))
        return entry

    def interrupt(self) -> None:
        self.post("/interrupt", {})

    def free(self) -> None:
        """Ask ComfyUI to unload its models and free memory (``POST /free``)."""
        self.post("/free", {"unload_models": True, "free_memory": True})

    def image(self, ref: dict) -> bytes:
        query = urllib.parse.urlencode({"filename": ref["filename"], "subfolder": ref.get("subfolder", ""),
                                        "type": ref.get("type", "output")})
        return self._request("GET", f"/view?{query}")

    def images(self, entry: dict, node_id: str) -> list[bytes]:
        return [self.image(ref) for ref in entry.get("outputs", {}).get(str(node_id), {}).get("images", [])]


@contextmanager
def running(server: ComfyServer, setup: Callable[[ComfyServer], None] | None = None) -> Iterator[ComfyServer]:
    """Prepare ``server``'s folders, ``setup(server)`` (add models), start it, and stop it and remove its
    throw-away folder afterwards: also when setting up or starting fails."""
    try:
        server.prepare()
        if setup is not None:
            setup(server)
        server.start()
        yield server
    finally:
        server.cleanup()


def error_message(entry: dict) -> str:
    """The exception message of a failed prompt, from its history entry."""
    for event, data in entry.get("status", {}).get("messages", []):
        if event == "execution_error":
            return f"{data.get('node_type')}: {data.get('exception_type')}: {data.get('exception_message')}"
        if event == "execution_interrupted":
            return f"interrupted in {data.get('node_type')}"
    return json.dumps(entry.get("status", {}))[:2000]


def status_events(entry: dict) -> list[str]:
    return [event for event, _ in entry.get("status", {}).get("messages", [])]


class Events:
    """A minimal websocket client for ComfyUI's ``/ws``: collects JSON messages in a background thread."""

    def __init__(self, server: ComfyServer):
        self.messages: list[dict] = []
        self._sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        key = base64.b64encode(os.urandom(16)).decode()
        self._sock.sendall((f"GET /ws?clientId={server.client_id} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
                            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        header = b""
        while b"\r\n\r\n" not in header:
            chunk = self._sock.recv(1)
            if not chunk:
                raise ComfyError("websocket handshake failed")
            header += chunk
        if b" 101 " not in header.split(b"\r\n", 1)[0]:
            raise ComfyError(f"websocket handshake refused: {header[:200]!r}")
        self._sock.settimeout(None)
        self._closed = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _recv(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self._sock.recv(n - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data

    def _read(self) -> None:
        try:
            while not self._closed:
                b1, b2 = self._recv(2)
                opcode, length = b1 & 0x0F, b2 & 0x7F
                if length == 126:
                    length = struct.unpack(">H", self._recv(2))[0]
                elif length == 127:
                    length = struct.unpack(">Q", self._recv(8))[0]
                payload = self._recv(length)
                if opcode == 1:
                    try:
                        self.messages.append(json.loads(payload.decode()))
                    except ValueError:
                        pass
                elif opcode == 8:
                    break
        except (OSError, EOFError):
            pass

    def of_type(self, kind: str) -> list[dict]:
        return [m.get("data", {}) for m in list(self.messages) if m.get("type") == kind]

    def wait_for(self, kind: str, predicate=lambda data: True, timeout: float = 300) -> dict | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for data in self.of_type(kind):
                if predicate(data):
                    return data
            time.sleep(0.1)
        return None

    def close(self) -> None:
        self._closed = True
        try:
            self._sock.close()
        except OSError:
            pass
