"""Integration tests against a real AUTOMATIC1111 (or Forge) webui, driven over its HTTP API.

Run with ``A1111_PATH=/path/to/stable-diffusion-webui`` (and ``A1111_PYTHON`` if its venv is not at
``$A1111_PATH/../venv`` or ``$A1111_PATH/venv``); for Forge, point them at Forge and add
``A1111_EXTRA_ARGS=--always-cpu`` on a machine without a GPU. The tests build a random full-size SD 1.5 checkpoint
(~2 GB, cached in ``$SAFETEXT_A1111_CACHE`` or the system temp dir), start the webui three times on
127.0.0.1 on the CPU with a temporary ``--data-dir`` (without SafeText, with SafeText, with SafeText's
operator lock), generate 64x64 images in 2 steps and stop the webui by its PID. Skipped without A1111_PATH.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from a1111_checkpoints import build_hf_home, build_sd15_checkpoint, default_cache_dir  # noqa: E402
from a1111_server import ApiError, WebUI, decode_image, webui_commit, webui_path, webui_python  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
ROOT_PATH = webui_path()
pytestmark = pytest.mark.skipif(ROOT_PATH is None, reason="A1111_PATH is not set: no AUTOMATIC1111/Forge checkout to test against")
IS_FORGE = ROOT_PATH is not None and (ROOT_PATH / "modules_forge").is_dir()

PROMPT = "a photo of a cat sitting on a red sofa"
# A1111 restores `override_settings` after a job only for options present in config.json: without this
# entry, the clip skip of one request would stay in force for every later request.
BASE_CONFIG = {"CLIP_stop_at_last_layers": 1}
SAFETEXT_FILE = "test-file.safetensors"
SEEN: dict = {}  # images kept between tests (the webui with SafeText is stopped before the locked one starts)
LORA = "test-lora"
EXPORT = "test-file-export"
FORGE_PART = "test-file-forge-part.safetensors"  # the test file less what Forge's LoRA loader cannot express
LOWRANK = "test-lowrank"  # a low-rank SafeText file, used as it is by both SafeText and the Lora extension
# Hires fix, clip skip 2, prompt weighting, BREAK, a prompt over 75 tokens and a LoRA from the built-in extension.
HARD_PROMPT = ("a (photo:1.3) of a [cat] sitting on a red sofa BREAK " + ", ".join(["a cozy living room"] * 20)
               + f" <lora:{LORA}:0.8>")
HARD = {"enable_hr": True, "hr_scale": 1.5, "hr_upscaler": "Latent", "hr_second_pass_steps": 1,
        "denoising_strength": 0.5, "override_settings": {"CLIP_stop_at_last_layers": 2}}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    python = webui_python(ROOT_PATH)
    torch_version = subprocess.run([python, "-c", "import torch; print(torch.__version__)"], capture_output=True,
                                   text=True, timeout=300).stdout.strip()
    print(f"\nwebui: {ROOT_PATH} at {webui_commit(ROOT_PATH)}; python {python}; torch {torch_version}")
    cache = default_cache_dir()
    checkpoint = build_sd15_checkpoint(ROOT_PATH, python, cache)
    hf_home = build_hf_home(cache / "hf_home")
    return {"python": python, "checkpoint": checkpoint, "hf_home": hf_home, "tmp": tmp_path_factory.mktemp("a1111")}


def _make_safetext_file(checkpoint: Path, folder: Path) -> dict:
    """A SafeText file for the test checkpoint: its CLIP-L fingerprint and strong random differences."""
    from safetext_core import SafeTextFile
    from safetext_core.fingerprint import fingerprint_state_dict
    from safetext_core.models import read_single_file_text_encoders

    family, states = read_single_file_text_encoders(checkpoint)
    assert family == "sd1"
    state = states["clip_l"]
    gen = torch.Generator().manual_seed(123)
    deltas = {}
    for name, value in state.items():
        if name.startswith("text_model.final_layer_norm."):
            deltas[name] = 0.5 * torch.randn(value.shape, generator=gen)
        elif ".mlp.fc2." in name or "self_attn.v_proj" in name:
            deltas[name] = 0.02 * torch.randn(value.shape, generator=gen)
    folder.mkdir(parents=True, exist_ok=True)
    file = SafeTextFile(family="sd1", deltas={"clip_l": deltas}, fingerprints={"clip_l": fingerprint_state_dict(state)},
                        base_name=checkpoint.stem)
    file.save(folder / SAFETEXT_FILE)
    return {"fingerprint": file.short_fingerprint(), "file": file}


def _make_lowrank_file(checkpoint: Path, folders: list[Path]) -> None:
    """A low-rank SafeText file for the test checkpoint (random rank-4 factors on every block projection, kohya
    ``lora_te_`` names), written unchanged into each of ``folders`` (SafeText's and the Lora extension's)."""
    from safetext_core import SafeTextFile
    from safetext_core.fingerprint import fingerprint_state_dict
    from safetext_core.lowrank import expand
    from safetext_core.models import read_single_file_text_encoders

    _, states = read_single_file_text_encoders(checkpoint)
    state = states["clip_l"]
    gen = torch.Generator().manual_seed(456)
    factors = {}
    for name, value in state.items():
        if name.endswith(".weight") and ((".self_attn." in name and "_proj." in name) or ".mlp.fc" in name):
            out_features, in_features = value.shape
            factors[name] = (0.05 * torch.randn(out_features, 4, generator=gen),
                             0.2 * torch.randn(4, in_features, generator=gen), 4.0)
    file = SafeTextFile(family="sd1", deltas={"clip_l": {k: expand(*f) for k, f in factors.items()}},
                        fingerprints={"clip_l": fingerprint_state_dict(state)}, config={"rank": 4},
                        base_name=checkpoint.stem, factors={"clip_l": factors})
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
        file.save(folder / f"{LOWRANK}.safetensors")


def _make_lora(checkpoint: Path, folder: Path) -> None:
    """A LoRA for the test checkpoint in A1111's own key names (a SafeText export of other random differences)."""
    from safetext_core import SafeTextFile
    from safetext_core.exports import to_a1111
    from safetext_core.fingerprint import fingerprint_state_dict
    from safetext_core.models import read_single_file_text_encoders

    _, states = read_single_file_text_encoders(checkpoint)
    state = states["clip_l"]
    gen = torch.Generator().manual_seed(321)
    deltas = {k: 0.05 * torch.randn(v.shape, generator=gen) for k, v in state.items() if ".mlp.fc1." in k}
    file = SafeTextFile(family="sd1", deltas={"clip_l": deltas}, fingerprints={"clip_l": fingerprint_state_dict(state)})
    folder.mkdir(parents=True, exist_ok=True)
    to_a1111(file, folder / f"{LORA}.safetensors")


@pytest.fixture(scope="module")
def baseline(env):
    """Images from the webui without SafeText installed."""
    data = env["tmp"] / "plain"
    _make_lora(env["checkpoint"], data / "models" / "Lora")
    with WebUI(ROOT_PATH, env["python"], data, env["hf_home"], checkpoint=env["checkpoint"], config=BASE_CONFIG) as ui:
        scripts = ui.get("/sdapi/v1/scripts")
        first = ui.txt2img(PROMPT, seed=11)
        second = ui.txt2img(PROMPT, seed=11)
        hard = None if IS_FORGE else ui.txt2img(HARD_PROMPT, seed=12, **HARD)
        after = ui.txt2img(PROMPT, seed=11)
    return {"scripts": scripts, "image": decode_image(first["images"][0]), "repeat": decode_image(second["images"][0]),
            "hard": hard and decode_image(hard["images"][0]), "hard_info": hard and hard["info"],
            "after": decode_image(after["images"][0])}


@pytest.fixture(scope="module")
def webui(env):
    data = env["tmp"] / "safetext"
    made = _make_safetext_file(env["checkpoint"], data / "models" / "safetext")
    _make_lora(env["checkpoint"], data / "models" / "Lora")
    from safetext_core.exports import to_a1111

    to_a1111(made["file"], data / "models" / "Lora" / f"{EXPORT}.safetensors")  # `safetext export --format a1111`
    # What Forge's LoRA loader can express of the same file (the layers' projections): the export's reference there.
    from safetext_core import SafeTextFile
    from safetext_core.exports import forge_left_out

    gone = set(forge_left_out(made["file"])["tensors"])
    kept = {e: {n: d for n, d in params.items() if f"{e}.{n}" not in gone} for e, params in made["file"].deltas.items()}
    SafeTextFile(family="sd1", deltas=kept, fingerprints=made["file"].fingerprints,
                 base_name=made["file"].base_name).save(data / "models" / "safetext" / FORGE_PART)
    _make_lowrank_file(env["checkpoint"], [data / "models" / "safetext", data / "models" / "Lora"])
    ui = WebUI(ROOT_PATH, env["python"], data, env["hf_home"], extensions={"safetext": ROOT}, checkpoint=env["checkpoint"],
               config=BASE_CONFIG)
    ui.start()
    ui.made = made
    try:
        yield ui
    finally:
        ui.stop()
        if "Error loading script: safetext.py" in ui.log_tail(200000):
            print(ui.log_tail())


@pytest.fixture(scope="module")
def locked(env, webui):
    webui.stop()  # one full-size webui at a time: two do not fit beside other work in 24 GiB
    data = env["tmp"] / "locked"
    _make_safetext_file(env["checkpoint"], data / "models" / "safetext")
    config = {**BASE_CONFIG, "safetext_lock": True, "safetext_lock_file": SAFETEXT_FILE, "safetext_lock_strength": 1.0}
    with WebUI(ROOT_PATH, env["python"], data, env["hf_home"], extensions={"safetext": ROOT},
               checkpoint=env["checkpoint"], config=config) as ui:
        yield ui


def test_baseline_is_deterministic(baseline):
    assert (baseline["image"] == baseline["repeat"]).all()
    assert baseline["image"].shape == (64, 64, 3)
    assert (baseline["after"] == baseline["image"]).all()  # the webui's LoRA leaves no trace
    if not IS_FORGE:
        assert baseline["hard"].shape == (96, 96, 3)
        assert "Lora hashes" in baseline["hard_info"]["infotexts"][0]
        assert "Clip skip: 2" in baseline["hard_info"]["infotexts"][0]


@pytest.mark.skipif(IS_FORGE, reason="Forge dfdcbab answers this hires-fix request with HTTP 500 (TypeError) even "
                                     "without SafeText installed")
def test_hires_lora_break_long_prompt_clip_skip(webui, baseline):
    off = webui.txt2img(HARD_PROMPT, seed=12, safetext=[False], **HARD)
    assert (decode_image(off["images"][0]) == baseline["hard"]).all()
    on = webui.txt2img(HARD_PROMPT, seed=12, safetext=[True, SAFETEXT_FILE, 1.0, "embedding"], **HARD)
    on_image = decode_image(on["images"][0])
    assert on_image.shape == (96, 96, 3) and not (on_image == baseline["hard"]).all()
    assert "SafeText: test-file" in on["info"]["infotexts"][0] and "Lora hashes" in on["info"]["infotexts"][0]
    # After all that, with SafeText off and no LoRA the checkpoint gives its original image: nothing was left modified.
    plain = decode_image(webui.txt2img(PROMPT, seed=11, safetext=[False])["images"][0])
    assert (plain == baseline["image"]).all()


def test_script_is_listed(webui):
    scripts = webui.get("/sdapi/v1/scripts")
    assert "safetext" in scripts["txt2img"] and "safetext" in scripts["img2img"], webui.log_tail()
    info = [s for s in webui.get("/sdapi/v1/script-info") if s["name"] == "safetext"]
    assert info and info[0]["is_alwayson"] and [a["label"] for a in info[0]["args"]] == \
        ["Enable SafeText", "SafeText file", "SafeText strength", "Blend mode"]


def test_files_route_shows_the_file_fits(webui):
    """Also after a job with a LoRA, which both webuis write into the text encoder's weights (keeping backups)."""
    webui.txt2img(f"{PROMPT} <lora:{LORA}:0.8>", seed=11, safetext=[False])
    files = {f["name"]: f for f in webui.get("/safetext/v1/files")["files"]}
    assert files[SAFETEXT_FILE]["fits"] is True and files[SAFETEXT_FILE]["fingerprint"] == webui.made["fingerprint"]


def test_disabled_equals_the_webui_without_the_extension(webui, baseline):
    off = decode_image(webui.txt2img(PROMPT, seed=11, safetext=[False, SAFETEXT_FILE, 1.0, "embedding"])["images"][0])
    untouched = decode_image(webui.txt2img(PROMPT, seed=11)["images"][0])
    assert (off == baseline["image"]).all()
    assert (untouched == baseline["image"]).all()


def test_enabled_differs_and_writes_infotext(webui, baseline):
    result = webui.txt2img(PROMPT, seed=11, safetext=[True, SAFETEXT_FILE, 1.0, "embedding"])
    on = decode_image(result["images"][0])
    SEEN["enabled"] = on
    assert not (on == baseline["image"]).all(), webui.log_tail()
    # A second SafeText job in a row (Forge keeps the first job's patched weights until the next job loads them).
    again = decode_image(webui.txt2img(PROMPT, seed=11, safetext=[True, SAFETEXT_FILE, 1.0, "embedding"])["images"][0])
    assert (again == on).all()
    infotext = result["info"]["infotexts"][0]
    assert "SafeText: test-file" in infotext
    assert f"SafeText fingerprint: {webui.made['fingerprint']}" in infotext
    assert "SafeText strength: 1.0" in infotext
    # The moderation signal (docs/operators.md): per image, its prompt's cosine to the original conditioning.
    assert "SafeText cosine: " in infotext and "SafeText moved: " in infotext, infotext
    cosines = result["info"]["extra_generation_params"]["SafeText cosine"]
    assert len(cosines) == 1 and 0.0 <= cosines[0] <= 1.0 and f"SafeText cosine: {cosines[0]}" in infotext
    # Reading the parameters back (the webui's paste parser runs SafeText's infotext_pasted callback).
    parsed = webui.post("/sdapi/v1/png-info", {"image": "data:image/png;base64," + result["images"][0]})
    params = parsed["parameters"]
    assert params["SafeText"] == "test-file" and params["SafeText enabled"] is True
    assert params["SafeText file"] == SAFETEXT_FILE and float(params["SafeText strength"]) == 1.0
    # The conditioning cache must not serve the SafeText conds to a later request with SafeText off.
    off = decode_image(webui.txt2img(PROMPT, seed=11, safetext=[False])["images"][0])
    assert (off == baseline["image"]).all()
    # Half strength lies between the two.
    half = decode_image(webui.txt2img(PROMPT, seed=11, safetext=[True, SAFETEXT_FILE, 0.5])["images"][0])
    assert not (half == on).all() and not (half == baseline["image"]).all()
    # Both blend modes run as asked (Forge once blended weights whatever was asked), and the infotext says which.
    weight = webui.txt2img(PROMPT, seed=11, safetext=[True, SAFETEXT_FILE, 0.5, "weight"])
    assert not (decode_image(weight["images"][0]) == half).all()
    assert "SafeText mode: weight" in weight["info"]["infotexts"][0]
    assert "SafeText mode" not in result["info"]["infotexts"][0]  # the default, embedding


def test_a1111_export_equals_the_weight_blend_at_strength_1(webui):
    """`<lora:EXPORT:1>` with SafeText off against SafeText's weight blend at strength 1, same seed: the test file
    changes CLIP-L's final LayerNorm (which A1111 names only by its module name) and MLP/attention weights.
    Tolerance: the two add the same differences to the same float32 weights in another order, so at most a few
    uint8 levels on a handful of pixels; a left-out tensor moves the whole image (mean 30.9 was measured).
    Forge's LoRA loader maps only the layers' projections: there the reference is the weight blend of the file less
    what the export's ``safetext.forge_left_out`` names (the final LayerNorm), and the whole file differs."""
    exported = decode_image(webui.txt2img(f"{PROMPT} <lora:{EXPORT}:1>", seed=11, safetext=[False])["images"][0])
    reference = FORGE_PART if IS_FORGE else SAFETEXT_FILE
    blended = decode_image(webui.txt2img(PROMPT, seed=11, safetext=[True, reference, 1.0, "weight"])["images"][0])
    difference = np.abs(exported.astype(np.int16) - blended.astype(np.int16))
    print(f"\n<lora:{EXPORT}:1> vs weight blend of {reference} at 1: mean |diff| {difference.mean():.3f}, "
          f"max {difference.max()} (of 255)")
    assert difference.mean() <= 0.5 and difference.max() <= 8
    if IS_FORGE:  # what is left out in Forge is stated and matters: the whole file's blend is another picture
        whole = decode_image(webui.txt2img(PROMPT, seed=11, safetext=[True, SAFETEXT_FILE, 1.0, "weight"])["images"][0])
        left = np.abs(exported.astype(np.int16) - whole.astype(np.int16)).mean()
        print(f"Forge leaves out the final LayerNorm: <lora:{EXPORT}:1> vs the whole file's weight blend {left:.1f}")
        assert left > 1.0


def test_low_rank_file_as_a_lora_equals_the_weight_blend_at_strength_1(webui):
    """A low-rank SafeText file dropped as it is into models/Lora: `<lora:NAME:1>` (SafeText off) against
    SafeText's weight blend of the same file at strength 1, same seed and tolerance as the export above
    (docs/lowrank.md)."""
    as_lora = decode_image(webui.txt2img(f"{PROMPT} <lora:{LOWRANK}:1>", seed=11, safetext=[False])["images"][0])
    blended = decode_image(webui.txt2img(PROMPT, seed=11, safetext=[True, f"{LOWRANK}.safetensors", 1.0,
                                                                     "weight"])["images"][0])
    plain = decode_image(webui.txt2img(PROMPT, seed=11, safetext=[False])["images"][0])
    difference = np.abs(as_lora.astype(np.int16) - blended.astype(np.int16))
    print(f"\n<lora:{LOWRANK}:1> vs weight blend at 1: mean |diff| {difference.mean():.3f}, max {difference.max()}")
    assert np.abs(as_lora.astype(np.int16) - plain.astype(np.int16)).mean() > 1.0  # the LoRA was applied
    assert difference.mean() <= 0.5 and difference.max() <= 8


@pytest.mark.parametrize("args, needle", [
    ([True, SAFETEXT_FILE, 2.0], "strength"),
    ([True, "../../config.json"], "must not contain a path"),
    ([True, "missing.safetensors"], "not found"),
    ([True, SAFETEXT_FILE, 1.0, "sideways"], "mode"),
])
def test_bad_values_are_clear_api_errors(webui, args, needle):
    with pytest.raises(ApiError) as info:
        webui.txt2img(PROMPT, seed=11, safetext=args)
    assert info.value.status == 422
    assert needle in info.value.body["detail"] and info.value.body["detail"].startswith("SafeText:")


def test_api_cannot_switch_the_operator_lock_on_or_off(webui, baseline):
    webui.post("/sdapi/v1/options", {"safetext_lock": True})
    # Forge's options model lists only options registered before its API starts, so not SafeText's.
    assert webui.get("/sdapi/v1/options").get("safetext_lock", False) is False
    off = decode_image(webui.txt2img(PROMPT, seed=11, safetext=[False])["images"][0])
    assert (off == baseline["image"]).all()  # no lock in force


def test_training_writes_a_file_that_fits(webui):
    unsafe = [f"{w}, {s}" for w in ("naked woman", "bloody corpse", "man injecting heroin", "decapitated body")
              for s in ("photo", "sketch", "4k")]
    safe = [f"{w}, {s}" for w in ("a red car", "a bowl of fruit", "a lighthouse in fog", "a plate of pasta")
            for s in ("photo", "sketch", "4k")]
    result = webui.post("/safetext/v1/train", {"replace": True, "unsafe_prompts": unsafe, "safe_prompts": safe,
                                                "steps": 2, "batch_size": 4, "learning_rate": 1e-3, "name": "trained"})
    assert result["file"] == "trained.safetensors" and result["family"] == "sd1"
    files = {f["name"]: f for f in webui.get("/safetext/v1/files")["files"]}
    assert files["trained.safetensors"]["fits"] is True
    status = webui.get("/safetext/v1/training")
    assert status["phase"] == "done" and status["running"] is False
    # Generation still works, with the new file too.
    webui.txt2img(PROMPT, seed=11, safetext=[True, "trained.safetensors", 1.0])


@pytest.mark.parametrize("method", ["compress", "adapters"])
def test_training_a_low_rank_file_through_the_api_and_using_it_as_a_lora(webui, method):
    """POST /safetext/v1/train with a rank writes a LoRA-sized file (made by either method) that the webui's own Lora
    extension applies as it is: `<lora:NAME:1>` equals SafeText's weight blend of the file at strength 1."""
    import shutil

    from safetext_core import SafeTextFile

    unsafe = [f"{w}, {s}" for w in ("naked woman", "bloody corpse", "man injecting heroin") for s in ("photo", "4k")]
    safe = [f"{w}, {s}" for w in ("a red car", "a bowl of fruit", "a lighthouse in fog") for s in ("photo", "4k")]
    name = f"trained_r4_{method}"
    webui.post("/safetext/v1/train", {"replace": True, "unsafe_prompts": unsafe, "safe_prompts": safe, "steps": 2,
                                      "batch_size": 4, "learning_rate": 2e-2, "lora_learning_rate": 5e-2, "rank": 4,
                                      "lowrank_method": method, "name": name})
    trained = webui.data_dir / "models" / "safetext" / f"{name}.safetensors"
    file = SafeTextFile.load(trained)
    assert file.config["lowrank_method"] == method and file.factors["clip_l"]
    assert all(up.shape[1] == 4 for up, _, _ in file.factors["clip_l"].values())
    shutil.copyfile(trained, webui.data_dir / "models" / "Lora" / f"{name}.safetensors")
    webui.post("/sdapi/v1/refresh-loras", {})
    as_lora = decode_image(webui.txt2img(f"{PROMPT} <lora:{name}:1>", seed=11, safetext=[False])["images"][0])
    blended = decode_image(webui.txt2img(PROMPT, seed=11, safetext=[True, f"{name}.safetensors", 1.0,
                                                                     "weight"])["images"][0])
    plain = decode_image(webui.txt2img(PROMPT, seed=11, safetext=[False])["images"][0])
    difference = np.abs(as_lora.astype(np.int16) - blended.astype(np.int16))
    print(f"\n{method}: <lora:{name}:1> vs weight blend at 1: mean |diff| {difference.mean():.3f}, "
          f"max {difference.max()}; against no LoRA {np.abs(as_lora.astype(np.int16) - plain.astype(np.int16)).mean():.3f}")
    assert np.abs(as_lora.astype(np.int16) - plain.astype(np.int16)).mean() > 1.0  # the LoRA was applied
    assert difference.mean() <= 0.5 and difference.max() <= 8


def test_operator_lock_overrides_a_request_to_disable(locked, baseline):
    """Runs last: its fixture stops the unlocked webui first."""
    result = locked.txt2img(PROMPT, seed=11, safetext=[False, "", 0.0, "weight"])
    image = decode_image(result["images"][0])
    assert not (image == baseline["image"]).all()
    if "enabled" in SEEN:
        assert (image == SEEN["enabled"]).all()  # the lock's file at strength 1, as asked for explicitly before
    infotext = result["info"]["infotexts"][0]
    assert "SafeText lock: True" in infotext and "SafeText: test-file" in infotext
    plain = decode_image(locked.txt2img(PROMPT, seed=11)["images"][0])
    assert (plain == image).all()
    with pytest.raises(ApiError) as info:  # training is off under the lock
        locked.post("/safetext/v1/train", {"steps": 1})
    assert info.value.status == 403
