"""SafeText in the hosts' real pages: headless Chromium (Debian's) driven by playwright-core from Node.

API tests cannot see a broken page (an API-only suite once passed 13/13 while the extension broke
AUTOMATIC1111's Settings page), so these tests start each host with its UI, run one Node script per host
(``tests/integration/browser/*.cjs``: it drives the page, saves screenshots and prints one JSON result
line) and assert on what the page showed.

* ComfyUI (``COMFYUI_PATH``): every example workflow loads in the real front end with every SafeText node
  and widget; a generation queued from the page runs, and the Apply node shows ON / OFF; the Train node
  trains from the page and shows its status; no console or page error comes from SafeText's scripts.
* AUTOMATIC1111 (``A1111_PATH``) and Forge (``FORGE_PATH``), started without ``--nowebui``: the Settings page
  has no "Error" badge, the SafeText section is there, the checkpoint selector lists the test checkpoint;
  the txt2img panel's file dropdown shows plain names; Generate with SafeText off and on gives two
  different images; the training tab trains (2 steps) and shows its figures.

Needs ``node``, ``playwright-core`` (found through ``SAFETEXT_NODE_PATH`` or ``NODE_PATH``) and Chromium
(``SAFETEXT_CHROMIUM``, default ``/usr/bin/chromium``); each missing piece skips the tests, saying which.
Screenshots and each run's JSON go to ``SAFETEXT_BROWSER_OUT`` (default: a pytest temporary folder).
See docs/testing.md.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
REPO = HERE.parents[1]
SCRIPTS = HERE / "browser"
# The SafeText tree installed in the hosts: this checkout, or SAFETEXT_UNDER_TEST (e.g. a `git archive` of a
# commit, to test a fixed revision while the checkout changes, or an old one to see a test catch its bug).
UNDER_TEST = Path(os.environ.get("SAFETEXT_UNDER_TEST") or REPO).expanduser().resolve()
RESULT_PREFIX = "SAFETEXT_RESULT "


# ------------------------------------------------------------------------------------------ the browser tools
def _find_browser_tools() -> tuple[dict | None, str]:
    node = os.environ.get("SAFETEXT_NODE") or shutil.which("node")
    if not node:
        return None, "node is not installed (or set SAFETEXT_NODE to its path)"
    node_path = os.environ.get("SAFETEXT_NODE_PATH") or os.environ.get("NODE_PATH")
    if not node_path:
        return None, ("playwright-core not found: set SAFETEXT_NODE_PATH (or NODE_PATH) to a node_modules folder "
                      "that holds the npm package playwright-core")
    env = dict(os.environ, NODE_PATH=node_path)
    try:
        probe = subprocess.run([node, "-e", "console.log(require.resolve('playwright-core'))"], capture_output=True,
                               text=True, timeout=60, env=env, cwd=str(SCRIPTS))
    except (OSError, subprocess.SubprocessError) as error:
        return None, f"node could not be run: {error}"
    if probe.returncode != 0:
        return None, f"playwright-core is not in NODE_PATH={node_path}"
    candidates = [os.environ.get("SAFETEXT_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                  shutil.which("chromium-browser")]
    chromium = next((c for c in candidates if c and os.path.isfile(c) and os.access(c, os.X_OK)), None)
    if not chromium:
        return None, "Chromium not found (install Debian's chromium or set SAFETEXT_CHROMIUM to a Chromium binary)"
    return {"node": node, "node_path": node_path, "chromium": chromium}, ""


TOOLS, NO_TOOLS = _find_browser_tools()


def needs(host_variable: str, host_path: str | None):
    """Skip, naming every missing piece: the host checkout and the browser tools."""
    missing = [] if host_path else [f"{host_variable} is not set: no checkout of that host to test against"]
    if TOOLS is None:
        missing.append(NO_TOOLS)
    return pytest.mark.skipif(bool(missing), reason="; ".join(missing) or "-")


def output_dir(tmp_path_factory, name: str) -> Path:
    root = os.environ.get("SAFETEXT_BROWSER_OUT")
    folder = Path(root) / name if root else tmp_path_factory.mktemp(f"browser-{name}")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def run_browser(script: str, url: str, out: Path, config: dict, timeout: float = 1800) -> dict:
    """Run ``browser/<script>`` against ``url``; return its JSON result (also saved as ``out/result.json``)."""
    env = dict(os.environ, NODE_PATH=TOOLS["node_path"], SAFETEXT_CHROMIUM=TOOLS["chromium"])
    started = time.monotonic()
    process = subprocess.Popen([TOOLS["node"], str(SCRIPTS / script), url, str(out), json.dumps(config)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                               cwd=str(SCRIPTS), start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # node and the Chromium it started: a group of our own
        stdout, stderr = process.communicate()
        raise AssertionError(f"{script} did not finish within {timeout:.0f} s:\n{stderr[-6000:]}") from None
    (out / "node-stderr.log").write_text(stderr, encoding="utf-8")
    lines = [line for line in stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if not lines:
        raise AssertionError(f"{script} printed no result (exit {process.returncode}):\n{stdout[-3000:]}\n{stderr[-6000:]}")
    result = json.loads(lines[-1][len(RESULT_PREFIX):])
    result["wall_seconds"] = round(time.monotonic() - started, 1)
    (out / "result.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    print(f"\n{script}: {result['wall_seconds']} s in the browser; output in {out}")
    return result


def step_of(result: dict, name: str) -> dict:
    step = result.get("steps", {}).get(name)
    assert step is not None, f"the browser script did not reach step {name!r}: {result.get('error')}"
    assert step.get("ok"), f"step {name!r} failed in the page:\n{step.get('error')}"
    return step


def host_commit(path: str | Path) -> str:
    """A host checkout's commit: its ``.host_commit`` file (plain trees) or git."""
    marker = Path(path) / ".host_commit"
    if marker.is_file():
        return marker.read_text().strip()
    try:
        return subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=30).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def tree_revision(tree: Path = UNDER_TEST) -> str:
    """The commit of the SafeText tree under test (``.commit`` in an exported tree), marked when it has edits."""
    if (tree / ".commit").is_file():
        return (tree / ".commit").read_text().strip() + " (exported tree)"
    try:
        head = subprocess.run(["git", "-C", str(tree), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=30).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(tree), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=30).stdout.strip()
        return head + (" with uncommitted changes" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def make_safetext_file(checkpoint: Path, target: Path, seed: int = 123) -> str:
    """A SafeText file for an SD 1.x ``checkpoint`` (its CLIP-L fingerprint, strong random differences); returns
    its short fingerprint."""
    import torch
    from safetext_core import SafeTextFile
    from safetext_core.fingerprint import fingerprint_state_dict
    from safetext_core.models import read_single_file_text_encoders

    family, states = read_single_file_text_encoders(checkpoint)
    assert family == "sd1", family
    state = states["clip_l"]
    generator = torch.Generator().manual_seed(seed)
    deltas = {}
    for name, value in state.items():
        if name.startswith("text_model.final_layer_norm."):
            deltas[name] = 0.5 * torch.randn(value.shape, generator=generator)
        elif ".mlp.fc2." in name or "self_attn.v_proj" in name:
            deltas[name] = 0.02 * torch.randn(value.shape, generator=generator)
    target.parent.mkdir(parents=True, exist_ok=True)
    file = SafeTextFile(family="sd1", deltas={"clip_l": deltas}, fingerprints={"clip_l": fingerprint_state_dict(state)},
                        base_name=checkpoint.stem)
    file.save(target)
    return file.short_fingerprint()


def visible_texts(shown: dict) -> list[str]:
    """Texts a node showed on the page: drawn on the canvas or in the DOM (not just what its hook would draw)."""
    return list(shown.get("canvas") or []) + list(shown.get("dom") or [])


# ================================================================================================== ComfyUI
COMFYUI_PATH = os.environ.get("COMFYUI_PATH")
COMFY_CKPT = "safetext-test-sd15.safetensors"
COMFY_FILE = "browser-test.safetensors"
COMFY_TRAINED = "browser_trained"
EXAMPLES = sorted(p.name for p in (UNDER_TEST / "example_workflows").glob("*.json"))
needs_comfy = needs("COMFYUI_PATH", COMFYUI_PATH)


@pytest.fixture(scope="module")
def comfy_page(tmp_path_factory):
    from comfy_checkpoints import build_checkpoint, default_cache_dir
    from comfy_server import NODE_FOLDER, ComfyServer
    import comfy_workflows as wf

    out = output_dir(tmp_path_factory, "comfyui")
    server = ComfyServer(COMFYUI_PATH)
    (server.base / "custom_nodes").mkdir(parents=True, exist_ok=True)
    (server.base / "custom_nodes" / NODE_FOLDER).symlink_to(UNDER_TEST, target_is_directory=True)
    server.prepare()
    server.add_model("checkpoints", build_checkpoint("sd15", default_cache_dir(), seed=0), COMFY_CKPT)
    make_safetext_file(server.models / "checkpoints" / COMFY_CKPT, server.models / "safetext" / COMFY_FILE)
    # A first-run page shows a template dialog over the canvas; the classic (canvas) node renderer is the default.
    settings = server.base / "user" / "default" / "comfy.settings.json"
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text(json.dumps({"Comfy.TutorialCompleted": True, "Comfy.Minimap.Visible": False}), encoding="utf-8")
    unsafe, safe = wf.small_sets(6, 1, 2)
    config = {
        "workflows_dir": str(UNDER_TEST / "example_workflows"),
        "checkpoint": COMFY_CKPT, "safetext_file": COMFY_FILE, "size": 64, "sampler_steps": 2, "vue_nodes": True,
        "train": {"file_name": COMFY_TRAINED, "steps": 2, "batch_size": 2, "learning_rate": 2e-3, "unsafe": unsafe,
                  "safe": safe, "train_parameters": r"layers\.1[01]\."},
    }
    started = time.monotonic()
    server.start()
    startup = time.monotonic() - started
    try:
        version = server.get("/system_stats")["system"].get("comfyui_version")
        print(f"\nComfyUI {version} at commit {host_commit(COMFYUI_PATH)}, started in {startup:.0f} s on port {server.port}; "
              f"SafeText {UNDER_TEST} at {tree_revision()}")
        result = run_browser("comfyui.cjs", server.url, out, config)
        result["server_log"] = server.log_text()
        result["safetext_files"] = sorted(p.name for p in (server.models / "safetext").iterdir())
    finally:
        server.cleanup()
    result["total_seconds"] = round(time.monotonic() - started, 1)
    print(f"ComfyUI browser run: {result['total_seconds']} s in all (server start {startup:.0f} s)")
    return result


@needs_comfy
def test_comfyui_page_loads_the_safetext_extension(comfy_page):
    page = step_of(comfy_page, "page")
    assert "SafeText.Nodes" in page["extensions"], page
    assert page["safetext_scripts"], "ComfyUI serves no SafeText script"
    assert {"SafeTextApply", "SafeTextTrain", "SafeTextEvaluate"} <= set(page["registered"])


def _same(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return abs(float(a) - float(b)) <= 1e-9 * max(1.0, abs(float(b)))
    return a == b


@needs_comfy
@pytest.mark.parametrize("workflow", EXAMPLES)
def test_comfyui_example_workflow_loads_with_every_node_and_widget(comfy_page, workflow):
    name = workflow[:-len(".json")]
    step_of(comfy_page, f"load:{name}")
    seen = comfy_page["workflows"][name]
    assert not seen["dialogs"], f"the page showed a dialog on loading {workflow}: {seen['dialogs']}"
    assert seen["links"] == seen["expected_links"]
    loaded = {n["id"]: n for n in seen["loaded"]}
    for node in seen["expected"]:
        got = loaded.get(node["id"])
        assert got is not None, f"node {node['id']} ({node['type']}) is missing"
        assert got["type"] == node["type"] and got["registered"] and not got["has_errors"], got
        if not node["type"].startswith("SafeText"):
            continue
        inputs = comfy_page["object_info"][node["type"]]["widgets"]
        # Every input's widget, in order (the pack may add widgets of its own, e.g. a status line, that are not saved).
        widgets = [w for w in got["widgets"] if w["name"] in inputs]
        assert [w["name"] for w in widgets] == inputs, (node["type"], [w["name"] for w in got["widgets"]])
        values = [w["value"] for w in widgets]
        assert len(values) == len(node["widgets_values"]) and all(map(_same, values, node["widgets_values"])), \
            (node["type"], values, node["widgets_values"])


@needs_comfy
@pytest.mark.parametrize("workflow", [name for name in EXAMPLES if "generate" in name])
def test_comfyui_example_workflow_with_a_file_not_in_models_safetext_says_so(comfy_page, workflow):
    """The example workflows name a file a fresh install does not have: the Apply node must not claim to be on."""
    seen = comfy_page["workflows"][workflow[:-len(".json")]]
    apply_nodes = [n["id"] for n in seen["loaded"] if n["type"] == "SafeTextApply"]
    assert apply_nodes
    for node_id in apply_nodes:
        texts = visible_texts(seen["badges"][str(node_id)])
        assert texts, f"the Apply node shows no SafeText status at all: {seen['badges'][str(node_id)]}"
        assert not any(t.startswith("SafeText ON") for t in texts), texts
        assert any("missing" in t or "no file" in t for t in texts), texts


@needs_comfy
def test_comfyui_generation_queued_from_the_page_runs_and_the_badge_shows_on_and_off(comfy_page):
    on, off = step_of(comfy_page, "generate:on"), step_of(comfy_page, "generate:off")
    assert on["outcome"] == "execution_success", on["errors"]
    assert off["outcome"] == "execution_success", off["errors"]
    assert on["images"] and off["images"] and on["images"][0]["width"] == 64
    assert "SafeText ON 100%" in visible_texts(on["badge_after"]), on["badge_after"]
    assert "SafeText OFF" in visible_texts(off["badge_after"]), off["badge_after"]
    assert on["images"][0]["digest"] != off["images"][0]["digest"]
    print(f"ComfyUI page: on vs off mean pixel difference {comfy_page['generate_difference']:.2f}; "
          f"queue to done {on['run_seconds']:.0f} s (on), {off['run_seconds']:.0f} s (off)")


@needs_comfy
def test_comfyui_training_queued_from_the_page_shows_its_status(comfy_page):
    train = step_of(comfy_page, "train")
    assert train["outcome"] == "execution_success", train["errors"]
    assert f"{COMFY_TRAINED}.safetensors" in comfy_page["safetext_files"]
    phases = {p.get("phase") for p in train["progress"]}
    assert "train" in phases, train["progress"]
    texts = visible_texts(train["shown"])
    assert any(t.startswith("done: ") and COMFY_TRAINED in t for t in texts), train["shown"]
    assert train["preview"]["imgs"] >= 1, "the Train node shows no report preview"
    print(f"ComfyUI page: 2-step training plus a 64x64 image, queue to done {train['run_seconds']:.0f} s")


@needs_comfy
def test_comfyui_status_shows_with_the_vue_node_renderer(comfy_page):
    """ComfyUI's Vue node renderer ("Nodes 2.0") never calls onDrawForeground: the status must still be readable."""
    vue = step_of(comfy_page, "vue:generate")
    assert vue["vue_nodes_setting"] is True and vue["vue_node_elements"] > 0, vue
    assert vue["outcome"] == "execution_success", vue["errors"]
    assert "SafeText ON 100%" in visible_texts(vue["badge_before"]), vue["badge_before"]
    assert "SafeText ON 100%" in visible_texts(vue["badge_after"]), vue["badge_after"]


@needs_comfy
def test_comfyui_no_console_or_page_error_from_safetext(comfy_page):
    assert not comfy_page["safetext_errors"], comfy_page["safetext_errors"]
    assert not comfy_page["safetext_failed_requests"], comfy_page["safetext_failed_requests"]
    assert comfy_page.get("ok"), comfy_page.get("error")
    others = comfy_page["console_errors"] + comfy_page["page_errors"]
    if others:
        print("errors in the page not from SafeText:", json.dumps(others)[:3000])


# ================================================================================================ A1111, Forge
A1111_PATH = os.environ.get("A1111_PATH")
FORGE_PATH = os.environ.get("FORGE_PATH")
WEBUI_FILE = "browser-test.safetensors"
WEBUI_TRAINED = "browser-trained"
WEBUI_TRAINED_LORA = "browser-trained-lora"
# A1111 restores `override_settings` only for options already in config.json (see test_a1111.py).
WEBUI_CONFIG = {"CLIP_stop_at_last_layers": 1}
SETTINGS_LABELS = ("SafeText folder", "SafeText on by default", "Default SafeText strength",
                   "Apply SafeText files made for another checkpoint", "Operator lock: SafeText file",
                   "Operator lock: strength", "Operator lock: also disable training")
HOSTS = {
    # name: (path, launch flags beyond the harness's, environment)
    "a1111": (A1111_PATH, (), {}),
    # Forge's Gradio 4 serves only files under --gradio-allowed-path (default: the data dir); with a data dir of its
    # own the page would get 403 for Forge's own script.js and javascript/*.js and nothing would work.
    "forge": (FORGE_PATH, ("--always-cpu", "--gradio-allowed-path", str(Path(FORGE_PATH).resolve()) if FORGE_PATH else "."),
              {"GRADIO_ANALYTICS_ENABLED": "False"}),
}


def _train_prompts() -> tuple[list[str], list[str]]:
    unsafe = [f"{w}, {s}" for w in ("naked woman", "bloody corpse", "man injecting heroin", "decapitated body")
              for s in ("photo", "sketch", "4k")]
    safe = [f"{w}, {s}" for w in ("a red car", "a bowl of fruit", "a lighthouse in fog", "a plate of pasta")
            for s in ("photo", "sketch", "4k")]
    return unsafe, safe


@pytest.fixture(scope="module", params=[pytest.param("a1111", marks=needs("A1111_PATH", A1111_PATH)),
                                        pytest.param("forge", marks=needs("FORGE_PATH", FORGE_PATH))])
def webui_page(request, tmp_path_factory):
    """Start the webui with its UI and SafeText, run browser/webui.cjs against it once, stop it; the result."""
    from a1111_checkpoints import build_hf_home, build_sd15_checkpoint, default_cache_dir
    from a1111_server import WebUI, webui_python

    host = request.param
    path, extra_args, extra_env = HOSTS[host]
    root = Path(path).expanduser().resolve()
    if host == "forge":  # A1111_PYTHON names A1111's Python: Forge has FORGE_PYTHON, else its own venv
        candidates = [os.environ.get("FORGE_PYTHON"), root.parent / "venv" / "bin" / "python", root / "venv" / "bin" / "python"]
        python = next((str(c) for c in candidates if c and Path(c).is_file()), sys.executable)
    else:
        python = webui_python(root)
    cache = default_cache_dir()
    # The checkpoint is built by instantiating A1111's LDM model; Forge has no LDM configs, so it uses A1111's
    # checkout for that (the file is cached and does not depend on the host).
    builder = Path(A1111_PATH).expanduser().resolve() if host == "forge" and A1111_PATH else root
    try:
        checkpoint = build_sd15_checkpoint(builder, webui_python(builder), cache)
    except subprocess.CalledProcessError:
        if builder == root and host == "forge":
            pytest.skip("the test checkpoint is built with AUTOMATIC1111's LDM configs, which Forge lacks: set A1111_PATH "
                        "too (once: the file is cached)")
        raise
    hf_home = build_hf_home(cache / "hf_home")
    out = output_dir(tmp_path_factory, host)
    data = tmp_path_factory.mktemp(f"{host}-data")
    fingerprint = make_safetext_file(checkpoint, data / "models" / "safetext" / WEBUI_FILE)
    unsafe, safe = _train_prompts()
    config = {"host": host, "checkpoint": checkpoint.stem, "safetext_file": WEBUI_FILE, "seed": 11, "steps": 2,
              "size": 64, "train": {"name": WEBUI_TRAINED, "steps": 2, "batch_size": 4, "learning_rate": 1e-3,
                                    "unsafe": unsafe, "safe": safe},
              "train_lowrank": {"name": WEBUI_TRAINED_LORA, "rank": 2}}
    ui = WebUI(root, python, data, hf_home, extensions={"safetext": UNDER_TEST}, checkpoint=checkpoint, config=WEBUI_CONFIG,
               ui=True, extra_args=extra_args, extra_env=extra_env)
    started = time.monotonic()
    ui.start()
    # A1111 loads the checkpoint in a thread after the server answers, and its quicksetting takes its value from
    # the options when the page loads: wait for the load as a person would before opening the page.
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not ui.get("/sdapi/v1/options", timeout=30).get("sd_model_checkpoint"):
        time.sleep(2)
    startup = time.monotonic() - started
    print(f"\n{host}: {root} at {host_commit(root)}"
          f", started with its UI in {startup:.0f} s on port {ui.port}; SafeText {UNDER_TEST} at {tree_revision()}")
    try:
        result = run_browser("webui.cjs", ui.base, out, config)
    finally:
        ui.stop()
    result["server_log"] = ui.log_tail(2_000_000)
    result["safetext_files"] = sorted(p.name for p in (data / "models" / "safetext").iterdir())
    lora = data / "models" / "safetext" / f"{WEBUI_TRAINED_LORA}.safetensors"
    if lora.is_file():
        from safetensors import safe_open

        with safe_open(str(lora), "pt") as f:
            result["lowrank_keys"] = list(f.keys())
    result["host"], result["fingerprint"] = host, fingerprint
    result["total_seconds"] = round(time.monotonic() - started, 1)
    print(f"{host} browser run: {result['total_seconds']} s in all (server start {startup:.0f} s)")
    return result


def test_webui_settings_page_has_no_error_badge(webui_page):
    settings = step_of(webui_page, "settings")
    assert settings["error_badges"]["total"] == 0, settings["error_badges"]
    assert settings["settings_error_badges"]["total"] == 0, settings["settings_error_badges"]
    log = webui_page["server_log"]
    assert "got an unexpected keyword argument" not in log, log[-6000:]
    assert "ui_settings.py" not in log, log[-6000:]


def test_webui_settings_have_the_safetext_section(webui_page):
    settings = step_of(webui_page, "settings")
    assert settings["has_section"] and settings["section_visible"], settings
    missing = [label for label in SETTINGS_LABELS if not any(label in text for text in settings["labels"])]
    assert not missing, (missing, settings["labels"])
    assert settings["section_error_badges"]["total"] == 0
    lock = settings["lock_file"]
    assert lock is not None and WEBUI_FILE in lock["options"], lock
    assert not [o for o in lock["options"] if o.startswith("('")], lock


def test_webui_checkpoint_selector_lists_the_test_checkpoint(webui_page):
    selector = step_of(webui_page, "checkpoint")
    assert selector["lists_test_checkpoint"], selector
    assert selector["value_is_test_checkpoint"], selector


def test_webui_panel_file_dropdown_shows_plain_names(webui_page):
    panel = step_of(webui_page, "panel")
    assert panel["lists_file"], panel
    assert not panel["tuples"] and not panel["value_is_tuple"], panel
    assert {"Enable SafeText", "SafeText file", "SafeText strength", "Blend mode"} <= set(panel["labels"]), panel["labels"]
    refreshed = panel["refreshed"]
    assert refreshed is not None, "the panel has no refresh button"
    assert any(WEBUI_FILE in option for option in refreshed["options"]), refreshed


def _fit_marks(panel: dict) -> str:
    """Where the panel says which files fit: the info line (Gradio 3) or the option labels (Gradio 4)."""
    return " ".join([panel.get("block_text") or ""] + list(panel.get("options") or []))


def test_webui_panel_marks_the_fitting_file_after_a_refresh(webui_page):
    step_of(webui_page, "generate:off")  # by then the webui has loaded its checkpoint
    refreshed = step_of(webui_page, "panel")["refreshed"]
    # Forge holds no checkpoint before its first job: the refresh button loads the selected one first.
    assert f"fits this checkpoint: {WEBUI_FILE}" in _fit_marks(refreshed) or \
        f"{WEBUI_FILE} \u2713 fits this checkpoint" in _fit_marks(refreshed), refreshed


def test_webui_panel_info_at_page_load_does_not_deny_a_fitting_file(webui_page, request):
    panel = step_of(webui_page, "panel")
    refreshed = panel["refreshed"] or {}
    if f"fits this checkpoint: {WEBUI_FILE}" not in (refreshed.get("block_text") or ""):
        pytest.skip("the refreshed info line does not say the file fits (no Gradio 3 info line, or no checkpoint loaded)")
    # A1111 builds the page before it loads the checkpoint: the line at page load must not deny the file.
    assert "no file here was trained" not in (panel["block_text"] or ""), panel["block_text"]


def test_webui_generate_with_safetext_off_and_on(webui_page):
    off, on = step_of(webui_page, "generate:off"), step_of(webui_page, "generate:on")
    assert off["image"]["width"] == on["image"]["width"] == 64
    assert "SafeText" not in off["infotext"], off["infotext"]
    assert f"SafeText: {WEBUI_FILE.rsplit('.', 1)[0]}" in on["infotext"], on["infotext"]
    assert f"SafeText fingerprint: {webui_page['fingerprint']}" in on["infotext"], on["infotext"]
    assert on["image"]["digest"] != off["image"]["digest"]
    print(f"{webui_page['host']} page: on vs off mean pixel difference {webui_page['generate_difference']:.2f}; "
          f"Generate to image {off['run_seconds']:.0f} s (off), {on['run_seconds']:.0f} s (on)")


def _check_training(webui_page: dict, train: dict, name: str) -> None:
    assert train["wrote"] and "Wrote" in train["status"] and name in train["status"], train["status"]
    assert f"{name}.safetensors" in webui_page["safetext_files"]
    assert len(train["figures"]) >= 3, train["figures"]  # a header and held-out figures
    assert train["report"] and train["report"]["width"] > 100, train["report"]


def test_webui_training_tab_trains_and_shows_its_figures(webui_page, request):
    """Opened before any generation, as a user may: train 2 steps from the tab, see the report and the figures."""
    tab = step_of(webui_page, "training_tab")
    assert tab["present"], tab["tabs"]
    train = step_of(webui_page, "train")  # on Forge too: its placeholder model is replaced by the checkpoint first
    _check_training(webui_page, train, WEBUI_TRAINED)
    print(f"{webui_page['host']} page: 2-step training from the tab took {train['run_seconds']:.0f} s")


def test_webui_training_tab_trains_a_lora_sized_file_and_says_how_to_use_it(webui_page):
    """The tab's "LoRA rank" row set to 2: the file holds only the kohya factor keys the webui's own Lora loads,
    and the status says its size and the <lora:...:1> tag to use."""
    train = step_of(webui_page, "train_lowrank")
    _check_training(webui_page, train, WEBUI_TRAINED_LORA)
    assert "rank-2 LoRA" in train["status"] and f"<lora:{WEBUI_TRAINED_LORA}:1>" in train["status"], train["status"]
    keys = webui_page.get("lowrank_keys") or []
    assert keys and all(k.startswith("lora_te_text_model_encoder_layers_") and
                        k.endswith((".lora_up.weight", ".lora_down.weight", ".alpha")) for k in keys), keys[:10]
    print(f"{webui_page['host']} page: rank-2 training from the tab took {train['run_seconds']:.0f} s, {len(keys)} keys")


def test_webui_training_tab_trains_after_a_generation(webui_page):
    """Only run when training before the first generation wrote nothing: does the tab work at all?"""
    if "train_after_generate" not in webui_page["steps"]:
        pytest.skip("training already worked before the first generation")
    train = step_of(webui_page, "train_after_generate")
    _check_training(webui_page, train, WEBUI_TRAINED + "-2")


def test_webui_no_console_or_page_error_from_safetext(webui_page):
    assert not webui_page["safetext_errors"], webui_page["safetext_errors"]
    assert not webui_page["safetext_failed_requests"], webui_page["safetext_failed_requests"]
    assert webui_page.get("ok"), webui_page.get("error")
    assert "Error loading script: safetext.py" not in webui_page["server_log"]
    others = webui_page["console_errors"] + webui_page["page_errors"]
    if others:
        print("errors in the page not from SafeText:", json.dumps(others)[:3000])
