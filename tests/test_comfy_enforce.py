"""ComfyUI enforced mode and the moderation signal, against the stand-ins of ``test_comfy_nodes.py``.

``ComfyCLIP`` adds to those stand-ins the encode path of ComfyUI 0.3.64's ``comfy.sd.CLIP``: ``encode_from_tokens``
calls ``load_model()`` (which loads the patcher: object patches, weight wrappers) and then the encoders, so the
class-level wrappers of :mod:`nodes.enforce` are exercised as ComfyUI runs them. The core's signal itself is
tested in ``test_moderation.py``.
"""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest
import torch

from safetext_core.errors import ConfigError, SafeTextError, SafeTextNotApplied
from safetext_core.moderation import MOVED_BELOW
from test_comfy_nodes import (ROOT, TRAIN_ARGS, FakeCLIP, FakeCondStage, FakeHost, FakePatcher, FakeSDClip,
                              load_clip_tokenizer, load_pack)
from tiny_models import random_clip_state

PACK = "safetext_comfy_enforce_under_test"
PROMPTS = ["bloody corpse, photo", "a red car, photo"]


class ComfyCLIP(FakeCLIP):
    """FakeCLIP with comfy.sd.CLIP's encode path: tokenize -> encode_from_tokens -> load_model -> encoders."""

    def clone(self):
        n = ComfyCLIP(no_init=True)
        n.patcher, n.cond_stage_model = self.patcher.clone(), self.cond_stage_model
        n.tokenizer, n.layer_idx = self.tokenizer, self.layer_idx
        return n

    def tokenize(self, prompts):
        return self.tokenizer(list(prompts), padding="max_length", max_length=77, truncation=True,
                              return_tensors="pt")["input_ids"]

    def load_model(self):
        self.patcher.patch_model()
        return self.patcher

    def encode_from_tokens(self, tokens, return_pooled=False, return_dict=False):
        self.load_model()
        with torch.no_grad():
            return self.cond_stage_model.encode(tokens, self.layer_idx)

    def encode(self, prompts):
        return self.encode_from_tokens(self.tokenize(prompts))


def comfy_sd1(seed=0) -> ComfyCLIP:
    model = FakeCondStage({"clip_l": FakeSDClip(random_clip_state(seed=seed), False, "quick_gelu", 32, 2)})
    return ComfyCLIP(model, load_clip_tokenizer())


def mod(name):
    return sys.modules[f"{PACK}.{name}"]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    fake = FakeHost(tmp_path_factory.mktemp("comfy_enforce"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as patch:
        fake.install(patch)
        patch.delenv("SAFETEXT_ENFORCE", raising=False)
        pack = load_pack(PACK)
        enforce = mod("nodes.enforce")
        # ComfyUI's CLIP class, wrapped as the pack wraps comfy.sd.CLIP (load_model/__init__ only while enforced)
        enforce.CONFIG = enforce.EnforceConfig(enabled=True)
        enforce.install(ComfyCLIP)
        enforce.CONFIG = enforce.EnforceConfig()
        clip = comfy_sd1()
        with torch.inference_mode():
            node = pack.NODE_CLASS_MAPPINGS["SafeTextTrain"]()
            node.train(clip, "tiny", unique_id="7", prompt=None, **dict(TRAIN_ARGS, steps=2))
        yield fake, pack, clip
    torch.set_num_threads(threads)
    for name in [n for n in sys.modules if n == PACK or n.startswith(PACK + ".")]:
        del sys.modules[name]


@pytest.fixture
def enforced(env, monkeypatch):
    """Enforced mode on (strength 0.75 unless a test changes it); off again afterwards."""
    enforce = mod("nodes.enforce")

    def turn_on(**fields):
        monkeypatch.setattr(enforce, "CONFIG", enforce.EnforceConfig(**{"enabled": True, "strength": 0.75, **fields}))
        enforce._PICKS.clear()
        enforce.UNPROTECTED.clear()
        return enforce

    yield turn_on
    monkeypatch.setattr(enforce, "CONFIG", enforce.EnforceConfig())


def apply_node(pack, clip, **kwargs):
    args = dict(safetext_file="tiny.safetensors", enabled=True, strength=1.0)
    args.update(kwargs)
    return pack.NODE_CLASS_MAPPINGS["SafeTextApply"]().apply(clip, **args)


def enforced_hooks(clip):
    return mod("nodes.enforce")._enforced_hooks(clip.patcher)


# ------------------------------------------------------------------------------------------ the config file

def test_config_file_fields_and_refusals(env, tmp_path, monkeypatch):
    enforce = mod("nodes.enforce")
    config = enforce.parse_config({"strength": 0.5, "files": ["a.safetensors"], "log_signal": True})
    assert config.enabled and config.strength == 0.5 and config.files == ("a.safetensors",) and config.log_signal
    assert not config.allow_unprotected and not config.allow_training and not config.log_prompts
    assert enforce.parse_config({"enabled": False}).enabled is False
    for bad, match in (({"strenght": 1}, "unknown"), ({"strength": 2}, "between 0 and 1"),
                       ({"strength": 0}, "enforce nothing"), ({"allow_unprotected": "yes"}, "true or false"),
                       ({"files": "a"}, "list"), ([1], "JSON object")):
        with pytest.raises(ConfigError, match=match):
            enforce.parse_config(bad)
    # named by the variable: read; unreadable or malformed: ON with an error (never off)
    path = tmp_path / "enforce.json"
    path.write_text(json.dumps({"strength": 0.9}))
    monkeypatch.setenv("SAFETEXT_ENFORCE", str(path))
    assert enforce.read_config().strength == 0.9
    path.write_text("{not json")
    broken = enforce.read_config()
    assert broken.enabled and "cannot be used" in broken.error
    monkeypatch.setenv("SAFETEXT_ENFORCE", str(tmp_path / "missing.json"))
    assert enforce.read_config().enabled and enforce.read_config().error
    monkeypatch.delenv("SAFETEXT_ENFORCE")
    assert enforce.read_config().enabled is False  # no variable, no file next to ComfyUI: off


def test_a_broken_config_fails_every_encode(env, enforced):
    enforce = enforced()
    enforce.CONFIG = enforce.EnforceConfig(enabled=True, error="the enforced-mode file x cannot be used (bad)")
    with pytest.raises(SafeTextNotApplied, match="cannot be used"):
        comfy_sd1().encode(PROMPTS)


# ------------------------------------------------------------------------------------------ enforcing

def test_a_graph_without_safetext_gets_it_equal_to_load_and_apply(env, enforced):
    fake, pack, trained_clip = env
    plain = comfy_sd1()  # a fresh loader output, same weights as the trained checkpoint
    original = plain.encode(PROMPTS)[0]
    reference = apply_node(pack, comfy_sd1(), strength=0.75)["result"][0].encode(PROMPTS)[0]  # mode off
    enforced(strength=0.75)
    clip = comfy_sd1()
    got = clip.encode(PROMPTS)[0]
    assert torch.equal(got, reference) and not torch.equal(got, original)
    assert len(enforced_hooks(clip)) == 1  # on the CLIP itself now: later clones keep it
    lora = clip.clone()
    lora.clip_layer(-2)
    assert enforced_hooks(lora) and not torch.equal(lora.encode(PROMPTS)[0], original)


@pytest.mark.parametrize("node_args", [dict(enabled=False), dict(strength=0.0), dict(strength=1.0),
                                       dict(safetext_file="not-there.safetensors")])
def test_load_and_apply_is_overridden_and_never_applies_twice(env, enforced, node_args):
    fake, pack, _ = env
    reference = apply_node(pack, comfy_sd1(), strength=0.75)["result"][0].encode(PROMPTS)[0]
    enforced(strength=0.75)
    node = pack.NODE_CLASS_MAPPINGS["SafeTextApply"]
    assert node.VALIDATE_INPUTS(node_args.get("safetext_file", "tiny.safetensors"), node_args.get("enabled")) is True
    clip = comfy_sd1()
    result = apply_node(pack, clip, **node_args)
    out = result["result"][0]
    assert out is clip and result["ui"]["safetext"][0]["enforced"]["enforced"] is True
    assert torch.equal(out.encode(PROMPTS)[0], reference)
    out.encode(PROMPTS)
    assert len(enforced_hooks(out)) == 1  # encoding again adds nothing


def test_no_fitting_file_fails_closed_unless_the_operator_allows_it(env, enforced):
    fake, pack, _ = env
    other = comfy_sd1(seed=5)  # another checkpoint: no file was trained for it
    original = comfy_sd1(seed=5).encode(PROMPTS)[0]
    enforced()
    with pytest.raises(SafeTextNotApplied, match="no SafeText file in models/safetext fits this checkpoint"):
        other.encode(PROMPTS)
    enforce = enforced(allow_unprotected=True)
    assert torch.equal(other.encode(PROMPTS)[0], original)
    assert enforce.status()["unprotected"] and "fits this checkpoint" in enforce.status()["unprotected"][0]
    assert any(e == "safetext.enforce" for e, _ in fake.events)


def test_files_limit_the_choice(env, enforced):
    enforced(files=["elsewhere.safetensors"])
    with pytest.raises(SafeTextNotApplied, match="elsewhere.safetensors"):
        comfy_sd1().encode(PROMPTS)


def test_an_encoder_run_around_load_model_is_refused(env, enforced):
    enforced()
    clip = comfy_sd1()  # built while enforced: the backstop is on its encoder modules
    ids = clip.tokenize(PROMPTS)
    FakePatcher.loaded and FakePatcher.loaded.unpatch_model()
    FakePatcher.loaded = None
    with pytest.raises(SafeTextNotApplied, match="ran without SafeText"):
        with torch.no_grad():
            clip.cond_stage_model.encode(ids)  # a custom node calling the encoders directly
    clip.encode(PROMPTS)  # through load_model: fine


def test_training_is_refused_while_enforced(env, enforced):
    fake, pack, _ = env
    enforced()
    with pytest.raises(SafeTextError, match="disabled on this server"):
        pack.NODE_CLASS_MAPPINGS["SafeTextTrain"]().train(comfy_sd1(), "again", unique_id="1", prompt=None,
                                                          **TRAIN_ARGS)


# ------------------------------------------------------------------------------------------ the signal

def test_load_and_apply_reports_one_signal_per_encode(env):
    fake, pack, _ = env
    fake.events.clear()
    signals = mod("nodes.signals")
    clip = comfy_sd1()
    original = clip.encode(PROMPTS[:1])[0]
    out = apply_node(pack, clip, strength=0.5)["result"][0]
    got = out.encode(PROMPTS[:1])[0]
    sent = [d for e, d in fake.events if e == "safetext.signal"]
    assert len(sent) == 1 and sent[0] == signals.recent()[-1]
    want = torch.nn.functional.cosine_similarity(original[:, 1:].reshape(1, -1), got[:, 1:].reshape(1, -1))
    assert sent[0]["cosine"] == pytest.approx(float(want), abs=1e-4)
    assert sent[0]["moved"] == (float(want) < MOVED_BELOW) and sent[0]["files"] == ["tiny 0.5 embedding"]
    assert sent[0]["enforced"] is False
    # nothing is reported for a CLIP without SafeText
    fake.events.clear()
    clip.encode(PROMPTS[:1])
    assert not [d for e, d in fake.events if e == "safetext.signal"]


def test_the_empty_prompt_comfyui_adds_for_weights_is_left_out(env):
    signals = mod("nodes.signals")
    end = signals.END_TOKEN
    assert signals._prompt_rows([[49406, 320, end], [49406, end, end]]) == [0]
    assert signals._prompt_rows(torch.tensor([[49406, end, 0]])) is None  # the empty prompt itself: kept
    assert signals._prompt_rows(None) is None


def test_enforced_mode_logs_signals_only_when_asked(env, enforced, caplog):
    enforced(log_signal=False)
    with caplog.at_level(logging.INFO, logger="safetext"):
        comfy_sd1().encode(PROMPTS[:1])
    assert "SafeText signal" not in caplog.text
    enforced(log_signal=True, log_prompts=True)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="safetext"):
        comfy_sd1().encode(PROMPTS[:1])
    line = next(r.getMessage() for r in caplog.records if "SafeText signal" in r.getMessage())
    assert "cos " in line and "bloody corpse" in line
    entry = mod("nodes.signals").recent()[-1]
    assert entry["enforced"] is True


def test_front_end_badge_signal_line_and_enforced_apply_status(tmp_path):
    """The page's rules for the enforced mode's badge, the signal line and Load & Apply under the mode (Node.js)."""
    import shutil
    import subprocess

    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js is not installed")
    (tmp_path / "package.json").write_text('{"type": "module"}')
    shutil.copy(ROOT / "javascript" / "comfyui" / "safetext_state.js", tmp_path / "state.js")
    (tmp_path / "run.js").write_text("""
import { applyStatus, enforceBadge, signalStatus } from "./state.js";
console.log(JSON.stringify({
  off: enforceBadge({ enforced: false }),
  on: enforceBadge({ enforced: true, strength: 0.75, unprotected: [] }),
  bare: enforceBadge({ enforced: true, strength: 1, unprotected: ["no SafeText file fits sd15-other"] }),
  broken: enforceBadge({ enforced: true, strength: 1, error: "bad json" }),
  moved: signalStatus({ cosine: 0.1234, moved: true }),
  kept: signalStatus({ cosine: 0.98, moved: false }),
  none: signalStatus({}),
  apply: applyStatus({ file: "x.safetensors", choices: [], enabled: false, strength: 0, enforced: { enforced: true, strength: 0.75 } }),
  applyOff: applyStatus({ file: "x.safetensors", choices: [], enabled: false, strength: 1, enforced: { enforced: false } }),
}));
""")
    done = subprocess.run([node, "run.js"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["off"] is None
    assert out["on"] == {"text": "SafeText enforced by this server (75%)", "tone": "on",
                         "hint": "Every prompt is encoded with SafeText; no graph or request can turn it off"}
    assert out["bare"]["tone"] == "warn" and "1 checkpoint ran WITHOUT it" in out["bare"]["text"]
    assert out["broken"]["tone"] == "error" and out["broken"]["hint"] == "bad json"
    assert out["moved"]["text"] == "SafeText moved this prompt (cos 0.123)" and out["moved"]["tone"] == "warn"
    assert out["kept"]["text"] == "SafeText kept this prompt (cos 0.980)" and out["kept"]["tone"] == "on"
    assert out["none"] is None
    assert out["apply"]["text"] == "SafeText ENFORCED by the server 75%" and "ignored" in out["apply"]["hint"]
    assert out["applyOff"] == {"text": "SafeText OFF", "tone": "off"}


def test_sdxl_gives_one_signal_for_both_encoders(env, enforced):
    """CLIP-L and bigG of one prompt: one signal, the cosine of their concatenated conditioning; and the enforced
    mode on SDXL equals Load & Apply at its strength."""
    fake, pack, _ = env
    from test_comfy_nodes import sdxl_clip

    def comfy_sdxl():
        clip = sdxl_clip()
        out = ComfyCLIP(no_init=True)
        out.cond_stage_model, out.patcher, out.tokenizer, out.layer_idx = clip.cond_stage_model, clip.patcher, \
            clip.tokenizer, None
        return out

    with torch.inference_mode():
        pack.NODE_CLASS_MAPPINGS["SafeTextTrain"]().train(comfy_sdxl(), "tiny_xl", unique_id="8", prompt=None,
                                                           **dict(TRAIN_ARGS, steps=1))
    clip = comfy_sdxl()
    original = clip.encode(PROMPTS[:1])[0]
    fake.events.clear()
    got = apply_node(pack, clip, safetext_file="tiny_xl.safetensors")["result"][0].encode(PROMPTS[:1])[0]
    sent = [d for e, d in fake.events if e == "safetext.signal"]
    assert original.shape[-1] == 32 + 64 and len(sent) == 1
    want = torch.nn.functional.cosine_similarity(original[:, 1:].reshape(1, -1), got[:, 1:].reshape(1, -1))
    assert sent[0]["cosine"] == pytest.approx(float(want), abs=1e-4) and float(want) < 0.9999
    reference = apply_node(pack, comfy_sdxl(), safetext_file="tiny_xl.safetensors", strength=0.75)["result"][0]
    want_cond = reference.encode(PROMPTS)[0]
    enforced(strength=0.75)
    plain = comfy_sdxl()
    assert torch.equal(plain.encode(PROMPTS)[0], want_cond) and len(enforced_hooks(plain)) == 2
