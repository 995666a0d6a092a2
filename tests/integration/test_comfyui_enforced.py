"""The enforced mode and the moderation signal against a real ComfyUI, over its HTTP API.

Run with ``COMFYUI_PATH`` (and ``COMFYUI_PYTHON``) as for ``test_comfyui.py``::

    COMFYUI_PATH=/path/to/ComfyUI python -m pytest tests/integration/test_comfyui_enforced.py -v

One throw-away base folder, two ComfyUI starts. First with the mode off: a SafeText file is trained for a tiny
SD 1.5 checkpoint, and two reference images are made, the plain graph (no SafeText node) and the same graph with
SafeText Load & Apply at strength 0.75. Then ComfyUI is started again with ``SAFETEXT_ENFORCE`` naming an
enforced-mode file (strength 0.75, signal log on): the plain graph must now give the Load & Apply image (and not
the plain one), a graph with Load & Apply ``enabled = false`` the same, a checkpoint with no fitting file must stop
with the enforced-mode error, SafeText Train must be refused, ``/safetext/v1/enforce`` must say the mode is on, and
the signal of each encoded prompt must come back from ``/safetext/v1/signals`` and appear in the server log.
When the browser tools of ``test_browser.py`` are there (node, playwright-core, Chromium), the page of the
enforced server is checked too (``browser/comfyui_enforced.cjs``): the badge, Load & Apply's line, the signal on
the text-encode nodes after a generation queued from the page.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from comfy_checkpoints import build_checkpoint, default_cache_dir
from comfy_server import ComfyError, ComfyServer, comfy_python, error_message
import comfy_workflows as wf
from test_browser import TOOLS, run_browser

COMFYUI_PATH = os.environ.get("COMFYUI_PATH")
pytestmark = pytest.mark.skipif(not COMFYUI_PATH, reason="COMFYUI_PATH is not set: no ComfyUI checkout to test against "
                                "(set it to a ComfyUI folder, and COMFYUI_PYTHON to its Python if needed)")

SD15 = "safetext-test-sd15.safetensors"
SD15_OTHER = "safetext-test-sd15-other.safetensors"
PROMPT = "graphic murder photo"
STRENGTH = 0.75
SD15_LAYERS = r"layers\.1[01]\."


def test_enforced_mode_on_comfyuis_own_clip_classes_in_process(tmp_path):
    """The quick check (no server): comfy_enforce_inproc.py run by ComfyUI's Python in its checkout."""
    import subprocess
    import sys

    env = dict(os.environ, PYTHONPATH=str(Path(COMFYUI_PATH).resolve()), OMP_NUM_THREADS="1")
    env.pop("SAFETEXT_ENFORCE", None)
    done = subprocess.run([comfy_python(COMFYUI_PATH), str(Path(__file__).with_name("comfy_enforce_inproc.py")),
                           str(Path(__file__).resolve().parents[2]), str(tmp_path)], cwd=COMFYUI_PATH, env=env,
                          capture_output=True, text=True, timeout=600)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, done.stdout[-3000:] + done.stderr[-3000:]
    out = json.loads(lines[-1][len("RESULT "):])
    assert out["equal_reference"] and out["differs_from_original"] and out["hooks"] == 1 and out["skip_differs"], out
    assert len(out["signals"]) == 2 and all(s["enforced"] and 0.0 < s["cosine"] < 1.0 for s in out["signals"]), out
    assert "SafeText signal" in done.stderr and "graphic murder photo" in done.stderr  # log_signal + log_prompts
    assert out["other"].startswith("SafeTextNotApplied: SafeText enforced mode: no SafeText file"), out["other"]
    assert out["backstop"].startswith("SafeTextNotApplied: SafeText enforced mode: a text encoder ran without"), out


def _image(server: ComfyServer, graph: dict) -> tuple[bytes, str]:
    prompt_id = server.submit(graph)
    entry = server.wait(prompt_id, timeout=900)
    images = server.images(entry, "save")
    assert len(images) == 1, error_message(entry)
    return images[0], prompt_id


def _failure(server: ComfyServer, graph: dict) -> str:
    try:
        entry = server.run(graph, timeout=900, expect_success=False)
    except ComfyError as error:  # refused before it ran
        return str(error)
    return error_message(entry)


@pytest.fixture(scope="module")
def runs():
    """Both server runs; returns what the tests check (images, ids, answers, the enforced server's log)."""
    cache = default_cache_dir()
    base = Path(tempfile.mkdtemp(prefix="safetext-comfy-enforced-"))
    out: dict = {}
    try:
        # ---- mode off: train a file, make the reference images
        server = ComfyServer(COMFYUI_PATH, base=base)
        server.prepare()
        server.add_model("checkpoints", build_checkpoint("sd15", cache, seed=0), SD15)
        server.add_model("checkpoints", build_checkpoint("sd15", cache, seed=1), SD15_OTHER)
        with server:
            unsafe, safe = wf.small_sets(6, 1, 2)
            server.run(wf.train_graph(SD15, "sd15_safe", steps=2, learning_rate=2e-3, unsafe=unsafe, safe=safe,
                                      batch_size=2, train_parameters=SD15_LAYERS), timeout=900)
            out["plain_off"], _ = _image(server, wf.txt2img(SD15, PROMPT))
            out["apply_off"], _ = _image(server, wf.txt2img(SD15, PROMPT, safetext={
                "file": "sd15_safe.safetensors", "strength": STRENGTH}))
            out["signals_off"] = server.get("/safetext/v1/signals")["signals"]
            out["enforce_off"] = server.get("/safetext/v1/enforce")
        # ---- mode on
        config = base / "safetext_enforce.json"
        config.write_text(json.dumps({"strength": STRENGTH, "log_signal": True, "log_prompts": True}))
        os.environ["SAFETEXT_ENFORCE"] = str(config)
        try:
            server = ComfyServer(COMFYUI_PATH, base=base)
            server.log_path = base / "comfyui-enforced.log"
            with server:
                out["enforce_on"] = server.get("/safetext/v1/enforce")
                out["plain_on"], out["plain_on_id"] = _image(server, wf.txt2img(SD15, PROMPT))
                out["disabled_on"], _ = _image(server, wf.txt2img(SD15, PROMPT, safetext={
                    "file": "sd15_safe.safetensors", "enabled": False}))
                out["other_error"] = _failure(server, wf.txt2img(SD15_OTHER, PROMPT))
                out["train_error"] = _failure(server, wf.train_graph(SD15, "another", steps=1, batch_size=2,
                                                                     train_parameters=SD15_LAYERS))
                out["signals_on"] = server.get(f"/safetext/v1/signals?prompt_id={out['plain_on_id']}")["signals"]
                if TOOLS is not None:
                    folder = Path(os.environ.get("SAFETEXT_BROWSER_OUT") or base) / "browser-enforced"
                    folder.mkdir(parents=True, exist_ok=True)
                    out["page"] = run_browser("comfyui_enforced.cjs", server.url, folder,
                                              {"checkpoint": SD15, "safetext_file": "sd15_safe.safetensors"},
                                              timeout=900)
                out["log_on"] = server.log_text()
        finally:
            os.environ.pop("SAFETEXT_ENFORCE", None)
        yield out
    finally:
        if os.environ.get("SAFETEXT_KEEP_COMFY_BASE") != "1":
            shutil.rmtree(base, ignore_errors=True)


def test_mode_off_by_default_and_load_and_apply_reports_a_signal(runs):
    assert runs["enforce_off"]["enforced"] is False
    assert runs["plain_off"] != runs["apply_off"]  # the file changes this prompt's image
    signals = runs["signals_off"]
    assert len(signals) == 1 and signals[0]["enforced"] is False  # Load & Apply's encode only
    assert 0.0 < signals[0]["cosine"] < 1.0 and isinstance(signals[0]["moved"], bool)


def test_a_graph_without_safetext_gets_it_when_enforced(runs):
    assert runs["enforce_on"]["enforced"] is True and runs["enforce_on"]["strength"] == STRENGTH
    assert runs["enforce_on"]["error"] is None
    assert wf.pixels(runs["plain_on"]) == wf.pixels(runs["apply_off"])  # = Load & Apply at the enforced strength
    assert wf.pixels(runs["plain_on"]) != wf.pixels(runs["plain_off"])


def test_load_and_apply_disabled_is_overridden(runs):
    assert wf.pixels(runs["disabled_on"]) == wf.pixels(runs["apply_off"])


def test_a_checkpoint_without_a_fitting_file_fails_closed(runs):
    assert "enforced mode" in runs["other_error"] and "fits this checkpoint" in runs["other_error"], runs["other_error"]


def test_training_is_refused_while_enforced(runs):
    assert "disabled on this server" in runs["train_error"], runs["train_error"]


def test_the_signal_is_served_and_logged(runs):
    signals = runs["signals_on"]
    assert len(signals) == 1 and signals[0]["enforced"] is True and signals[0]["node"] == "pos"
    assert signals[0]["cosine"] == pytest.approx(runs["signals_off"][0]["cosine"], abs=1e-3)  # same prompt, same s
    lines = [line for line in runs["log_on"].splitlines() if "SafeText signal" in line]
    assert lines and runs["plain_on_id"] in lines[0] and "graphic murder photo" in lines[0], lines


def test_the_page_shows_the_mode_and_the_signal(runs):
    if TOOLS is None:
        pytest.skip("no browser tools (node, playwright-core, Chromium): see test_browser.py")
    page = runs["page"]
    assert page["steps"]["badge"]["ok"], page["steps"]["badge"].get("error")
    assert page["badge"]["visible"] and page["badge"]["text"] == "SafeText enforced by this server (75%)", page["badge"]
    generate = page["steps"]["generate"]
    assert generate["ok"] and generate["outcome"] == "execution_success", generate
    assert [line["text"] for line in generate["apply"]] == ["SafeText ENFORCED by the server 75%"], generate["apply"]
    signals = [line["text"] for line in generate["signals"]]
    assert len(signals) == 2 and all(t.startswith("SafeText ") and "this prompt (cos " in t for t in signals), signals
    assert all(line["visible"] for line in generate["signals"] + generate["apply"]), generate
