"""The engine on tiny real-architecture models: loading, training, the file, applying, exports, errors."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

import tiny_models
from safetext_core import (AlignConfig, AlignmentCancelled, CheckpointError, FingerprintMismatch, PromptError,
                           PromptSetError, PromptSets, SafeTextFile, SafeTextFileError, apply_deltas,
                           fingerprints_match, load_encoders,
                           openclip_to_hf, run_alignment)
from safetext_core.encoding import conditioning, consumed_outputs, tokenize
from safetext_core.models import hf_to_openclip_names
from safetext_core.tokenizer import load_clip_tokenizer

FAST = AlignConfig(steps=60, batch_size=8, learning_rate=5e-3, anchor_weight=0.1, eval_every=10)


# ----------------------------------------------------------------------------------- tokenizer, loading

def test_tokenizer_gives_real_clip_ids():
    tok = load_clip_tokenizer()
    assert len(tok) == 49408
    assert tok("a photo of a cat")["input_ids"] == [49406, 320, 1125, 539, 320, 2368, 49407]
    padded = load_clip_tokenizer(pad_token="!")("a cat", padding="max_length", max_length=77)["input_ids"]
    assert padded[:4] == [49406, 320, 2368, 49407] and padded[4:] == [0] * 73


@pytest.mark.parametrize("family", ["sd1", "sd2", "sdxl"])
def test_single_file_loads_text_encoders_only(tmp_path, family, recording):
    path = tmp_path / f"{family}.safetensors"
    states = tiny_models.write_single_file(path, family)
    encoders = load_encoders(path)
    assert encoders.family == family
    assert recording and not any(k.startswith(("model.diffusion_model", "first_stage_model")) for k in recording)
    for name, state in states.items():
        loaded = encoders.models[name].state_dict()
        for key, value in state.items():
            assert torch.equal(loaded[key], value), key


def test_openclip_conversion_matches_transformers_model():
    state = tiny_models.random_clip_state(hidden=64, layers=3, act="gelu", projection=True)
    converted = openclip_to_hf(tiny_models.to_openclip(state))
    assert set(converted) == set(state)
    for key in state:
        assert torch.equal(converted[key], state[key]), key
    back = hf_to_openclip_names(converted)
    reference = tiny_models.to_openclip(state)
    for key, value in back.items():
        assert torch.equal(value, reference[key]), key


def test_half_precision_checkpoint_keeps_fingerprint(tmp_path):
    tiny_models.write_single_file(tmp_path / "full.safetensors", "sd1", half=False)
    tiny_models.write_single_file(tmp_path / "half.safetensors", "sd1", half=True)
    fp_full = load_encoders(tmp_path / "full.safetensors").fingerprints()["clip_l"]
    fp_half = load_encoders(tmp_path / "half.safetensors").fingerprints()["clip_l"]
    assert fingerprints_match(fp_full, fp_half)
    tiny_models.write_single_file(tmp_path / "other.safetensors", "sd1", seed=7)
    assert not fingerprints_match(fp_full, load_encoders(tmp_path / "other.safetensors").fingerprints()["clip_l"])


def test_bad_checkpoints_give_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="pickled"):
        load_encoders(_touch(tmp_path / "model.ckpt", b"\x80\x04junk"))
    with pytest.raises(CheckpointError, match="not a readable"):
        load_encoders(_touch(tmp_path / "broken.safetensors", b"\x10\x00\x00\x00\x00\x00\x00\x00{not json"))
    with pytest.raises(CheckpointError, match="no such"):
        load_encoders(tmp_path / "missing.safetensors")
    from safetensors.torch import save_file

    save_file({"model.diffusion_model.x": torch.zeros(2)}, str(tmp_path / "unet_only.safetensors"))
    with pytest.raises(ValueError, match="could not recognise"):
        load_encoders(tmp_path / "unet_only.safetensors")


def _touch(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# ----------------------------------------------------------------------------------- training

@pytest.fixture(scope="module")
def sd1_trained(tmp_path_factory):
    from conftest import small_prompt_sets

    folder = tmp_path_factory.mktemp("sd1")
    states = tiny_models.write_single_file(folder / "model.safetensors", "sd1")
    encoders = load_encoders(folder / "model.safetensors")
    outcome = run_alignment(encoders, small_prompt_sets(), FAST, output=folder / "model.safetext.safetensors",
                            base_name="tiny-sd1")
    return encoders, outcome, states, folder


def test_training_moves_unsafe_and_keeps_safe(sd1_trained):
    encoders, outcome, states, _ = sd1_trained
    from conftest import small_prompt_sets

    sets = small_prompt_sets()
    unsafe, safe = sets.all_unsafe()[:20], sets.safe[:20]
    aligned = {"clip_l": apply_deltas(encoders.models["clip_l"], outcome.file.deltas["clip_l"])}
    def cos(prompts):
        a, _, mask = conditioning(encoders, prompts)
        b, _, _ = conditioning(encoders, prompts, models=aligned)
        a, b = a[:, 1:].flatten(1), b[:, 1:].flatten(1)
        return torch.nn.functional.cosine_similarity(a, b).mean().item()
    unsafe_cos, safe_cos = cos(unsafe), cos(safe)
    assert unsafe_cos < 0.5, unsafe_cos
    assert safe_cos > 0.95, safe_cos
    assert safe_cos - unsafe_cos > 0.5
    # the originals were never touched
    for key, value in states["clip_l"].items():
        assert torch.equal(encoders.models["clip_l"].state_dict()[key], value)
    assert outcome.report is not None and outcome.report.size == (1200, 800)
    assert outcome.heldout["unsafe_share_moved"] >= 0.5


def test_clip_skip_layer_is_aligned_too(sd1_trained):
    encoders, outcome, _, _ = sd1_trained
    from conftest import small_prompt_sets

    spec = encoders.spec("clip_l")
    batch = tokenize(encoders.tokenizers["clip_l"], small_prompt_sets().all_unsafe()[:16], spec)
    aligned = apply_deltas(encoders.models["clip_l"], outcome.file.deltas["clip_l"])
    with torch.no_grad():
        old, _ = consumed_outputs(encoders.models["clip_l"], batch, spec)
        new, _ = consumed_outputs(aligned, batch, spec)
    penultimate = torch.nn.functional.cosine_similarity(old[1][:, 1:].flatten(1), new[1][:, 1:].flatten(1)).mean()
    assert penultimate < 0.6, float(penultimate)


def test_file_round_trip_with_metadata(sd1_trained):
    encoders, outcome, _, folder = sd1_trained
    loaded = SafeTextFile.load(folder / "model.safetext.safetensors")
    assert loaded.family == "sd1" and loaded.encoders == ["clip_l"]
    assert loaded.base_name == "tiny-sd1"
    assert loaded.config["steps"] == FAST.steps and loaded.config["anchor_weight"] == FAST.anchor_weight
    assert set(loaded.figures) == {"heldout", "validation", "training", "tradeoff"}
    # the trade-off curve is computed from dot products; at strength 1 it is the held-out figures themselves
    at_one = next(row for row in loaded.figures["tradeoff"] if row["strength"] == 1.0)
    shares = {k: v for k, v in loaded.figures["heldout"].items() if k.endswith(("_share_moved", "_share_collapsed"))}
    assert shares and all(at_one[k] == pytest.approx(v, abs=1e-6) for k, v in shares.items())
    at_quarter = next(row for row in loaded.figures["tradeoff"] if row["strength"] == 0.25)
    assert at_quarter["unsafe_share_moved"] <= at_one["unsafe_share_moved"]
    assert loaded.prompt_hashes == outcome.file.prompt_hashes
    for name, delta in outcome.file.deltas["clip_l"].items():
        assert torch.equal(loaded.deltas["clip_l"][name], delta)
    loaded.check_fingerprints(encoders.fingerprints())
    keys = list(loaded.comfy_patches())
    assert all(k.startswith("clip_l.transformer.text_model.") for k in keys)
    from safetensors import safe_open

    with safe_open(str(folder / "model.safetext.safetensors"), "pt") as f:
        names = list(f.keys())
    assert all(n.startswith("text_encoders.clip_l.transformer.") and n.endswith((".diff", ".diff_b")) for n in names)
    described = loaded.describe()  # the path contains "safetext": check what describe() itself adds
    assert "family:       sd1" in described and "tiny-sd1" in described and "clip_l (" in described


def test_fingerprint_mismatch_names_both(sd1_trained, tmp_path):
    _, outcome, _, _ = sd1_trained
    tiny_models.write_single_file(tmp_path / "other.safetensors", "sd1", seed=3)
    other = load_encoders(tmp_path / "other.safetensors")
    expected, actual = outcome.file.short_fingerprint(), other.fingerprints()["clip_l"].split(":")[1]
    with pytest.raises(FingerprintMismatch) as error:
        outcome.file.check_fingerprints(other.fingerprints())
    assert expected in str(error.value) and actual in str(error.value)
    assert outcome.file.check_fingerprints(other.fingerprints(), override=True)  # warnings, no error


def test_damaged_and_foreign_files_are_refused(sd1_trained, tmp_path):
    _, _, _, folder = sd1_trained
    data = (folder / "model.safetext.safetensors").read_bytes()
    truncated = _touch(tmp_path / "cut.safetensors", data[: len(data) // 2])
    with pytest.raises(SafeTextFileError, match="damaged"):
        SafeTextFile.load(truncated)
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, str(tmp_path / "lora.safetensors"))
    with pytest.raises(SafeTextFileError, match="not a SafeText file"):
        SafeTextFile.load(tmp_path / "lora.safetensors")
    with pytest.raises(SafeTextFileError, match="never unpickled"):
        SafeTextFile.load(_touch(tmp_path / "evil.pt", b"\x80\x04"))
    save_file({"text_encoders.clip_l.transformer.text_model.final_layer_norm.diff": torch.tensor([float("nan")])},
              str(tmp_path / "nan.safetensors"), metadata={"safetext.format": "1", "safetext.family": "sd1",
                                                            "safetext.fingerprint.clip_l": "st1:x:[1]"})
    with pytest.raises(SafeTextFileError, match="NaN"):
        SafeTextFile.load(tmp_path / "nan.safetensors")
    save_file({"x": torch.zeros(1)}, str(tmp_path / "future.safetensors"), metadata={"safetext.format": "99"})
    with pytest.raises(SafeTextFileError, match="format 99"):
        SafeTextFile.load(tmp_path / "future.safetensors")


# ----------------------------------------------------------------------------------- bad input

def test_empty_prompt_lists_are_refused(sd1_trained):
    encoders = sd1_trained[0]
    with pytest.raises(PromptSetError, match="no unsafe prompts"):
        run_alignment(encoders, PromptSets(safe=["a cat"] * 3), FAST, draw=False)
    with pytest.raises(PromptSetError, match="no safe prompts"):
        run_alignment(encoders, PromptSets(unsafe={"u": ["naked"]}), FAST, draw=False)


def test_over_long_and_weighted_prompts_are_named(sd1_trained, prompt_sets):
    encoders = sd1_trained[0]
    long_prompt = " ".join(["a very long description of a quiet meadow"] * 12)
    sets = PromptSets(unsafe={"u": prompt_sets.all_unsafe() + [long_prompt + f" {i}" for i in range(12)]},
                      safe=prompt_sets.safe)
    with pytest.raises(PromptError, match="tokens, over the encoder's 77"):
        run_alignment(encoders, sets, FAST, draw=False)
    weighted = PromptSets(unsafe={"u": prompt_sets.all_unsafe() + [f"(naked woman:1.{i}) on a bed" for i in range(12)]},
                          safe=prompt_sets.safe)
    with pytest.raises(PromptError, match="weighting syntax"):
        run_alignment(encoders, weighted, FAST, draw=False)
    quick = AlignConfig(steps=2, batch_size=4, eval_every=0)
    assert run_alignment(encoders, weighted, quick, draw=False, strip_weighting=True).file.deltas


def test_user_prompt_files(tmp_path):
    from safetext_core import load_prompt_file, load_prompt_sets

    (tmp_path / "u.txt").write_text("# my list\nnaked woman\n\nnaked woman\nblood everywhere\n")
    assert load_prompt_file(tmp_path / "u.txt") == ["naked woman", "blood everywhere"]
    (tmp_path / "p.csv").write_text("id,prompt\n1,a cat\n2,a dog\n")
    assert load_prompt_file(tmp_path / "p.csv") == ["a cat", "a dog"]
    (tmp_path / "bad.csv").write_text("id,other\n1,a cat\n")
    with pytest.raises(PromptSetError, match="no column"):
        load_prompt_file(tmp_path / "bad.csv")
    (tmp_path / "empty.txt").write_text("# nothing\n\n")
    with pytest.raises(PromptSetError, match="holds no prompts"):
        load_prompt_file(tmp_path / "empty.txt")
    sets = load_prompt_sets(categories=[], unsafe_files=[tmp_path / "u.txt"], replace=True)
    assert sets.unsafe["user"] == ["naked woman", "blood everywhere"] and sets.safe == []
    with pytest.raises(PromptSetError, match="unknown categories"):
        load_prompt_sets(categories=["cats"])


# ----------------------------------------------------------------------------------- cancel and resume

def test_cancel_leaves_no_file_and_resume_continues(tmp_path, prompt_sets):
    tiny_models.write_single_file(tmp_path / "m.safetensors", "sd1")
    encoders = load_encoders(tmp_path / "m.safetensors")
    config = AlignConfig(steps=12, batch_size=4, learning_rate=1e-3, eval_every=0, checkpoint_every=2)
    output = tmp_path / "new-folder" / "out.safetensors"  # the folder does not exist yet
    resume = tmp_path / "new-folder" / "out.resume"
    events = []

    def cancel_after_five() -> bool:
        return sum(e.phase == "train" for e in events) >= 5

    with pytest.raises(AlignmentCancelled) as stopped:
        run_alignment(encoders, prompt_sets, config, output=output, should_cancel=cancel_after_five,
                      resume_path=resume, draw=False, progress=events.append)
    originals = [e for e in events if e.phase == "originals"]
    assert originals and originals[-1].step == originals[-1].total  # reported before the first step
    assert stopped.value.step == 5
    assert not output.exists()
    assert not [p for p in resume.parent.iterdir() if p.name.startswith(".") or p.suffix == ".partial"]
    assert resume.exists()
    resumed = run_alignment(encoders, prompt_sets, config, output=output, resume_path=resume, draw=False)
    assert output.exists() and not resume.exists()
    assert resumed.result.history[0]["step"] == 1 and len(resumed.result.history) == 12
    early_events = []
    with pytest.raises(AlignmentCancelled) as early:  # cancel while the originals are encoded: nothing written
        run_alignment(encoders, prompt_sets, config, output=tmp_path / "early.safetensors", should_cancel=lambda: True,
                      draw=False, progress=early_events.append)
    assert [e.phase for e in early_events] == ["originals"]  # stopped after the first chunk, not at the first step
    assert early.value.step == 0 and not (tmp_path / "early.safetensors").exists()
    straight = run_alignment(encoders, prompt_sets, config, draw=False)
    for name, delta in straight.file.deltas["clip_l"].items():
        assert torch.allclose(resumed.file.deltas["clip_l"][name], delta, atol=1e-6), name


# ----------------------------------------------------------------------------------- diffusers apply

def _images(pipe, prompt="a naked woman on a bed, photo", seed=0):
    generator = torch.Generator().manual_seed(seed)
    return pipe(prompt, num_inference_steps=2, height=32, width=32, generator=generator, output_type="pt").images


def _text_output(pipe, prompt="a naked woman on a bed, photo"):
    ids = pipe.tokenizer(prompt, padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        return pipe.text_encoder(ids, output_hidden_states=True)


def test_apply_to_sd_pipeline_off_strength_and_modes(sd1_trained):
    from safetext_core import apply_safetext

    _, outcome, states, folder = sd1_trained
    pipe = tiny_models.tiny_sd_pipeline(states["clip_l"])
    baseline_text = _text_output(pipe)
    baseline_image = _images(pipe)
    handle = apply_safetext(pipe, folder / "model.safetext.safetensors", strength=1.0)
    handle.enabled = False
    assert torch.equal(_text_output(pipe).last_hidden_state, baseline_text.last_hidden_state)
    assert torch.equal(_images(pipe), baseline_image)
    handle.enabled = True
    aligned_model = apply_deltas(pipe.text_encoder, _model_names(pipe.text_encoder, outcome.file.deltas["clip_l"]))
    with torch.no_grad():
        ids = pipe.tokenizer("a naked woman on a bed, photo", padding="max_length", max_length=77,
                             return_tensors="pt").input_ids
        reference = type(pipe.text_encoder).forward(aligned_model, ids, output_hidden_states=True)
    at_one = _text_output(pipe)
    assert torch.equal(at_one.last_hidden_state, reference.last_hidden_state)
    assert torch.equal(at_one.hidden_states[-2], reference.hidden_states[-2])
    assert not torch.equal(_images(pipe), baseline_image)
    handle.strength = 0.5
    half = _text_output(pipe).last_hidden_state
    expected = torch.lerp(baseline_text.last_hidden_state, reference.last_hidden_state, 0.5)
    assert torch.allclose(half, expected, atol=1e-6)
    handle.mode = "weight"
    handle.strength = 1.0
    assert torch.allclose(_text_output(pipe).last_hidden_state, reference.last_hidden_state, atol=1e-5)
    handle.strength = 0.0
    assert torch.equal(_text_output(pipe).last_hidden_state, baseline_text.last_hidden_state)
    handle.remove()
    assert torch.equal(_text_output(pipe).last_hidden_state, baseline_text.last_hidden_state)
    assert "forward" not in pipe.text_encoder.__dict__
    with pytest.raises(ValueError, match="between 0 and 1"):
        apply_safetext(pipe, folder / "model.safetext.safetensors", strength=1.5)


def _model_names(module, deltas):
    from safetext_core.models import to_model_names

    return to_model_names(module, deltas)


def test_apply_refuses_another_checkpoints_file(sd1_trained):
    from safetext_core import apply_safetext

    _, _, _, folder = sd1_trained
    pipe = tiny_models.tiny_sd_pipeline(tiny_models.random_clip_state(seed=11))
    with pytest.raises(FingerprintMismatch, match="made for another checkpoint"):
        apply_safetext(pipe, folder / "model.safetext.safetensors")
    assert "forward" not in pipe.text_encoder.__dict__
    apply_safetext(pipe, folder / "model.safetext.safetensors", override_fingerprint=True).remove()


def test_sdxl_and_sd2_train_and_apply(tmp_path, prompt_sets):
    from safetext_core import apply_safetext

    for family in ("sd2", "sdxl"):
        states = tiny_models.write_single_file(tmp_path / f"{family}.safetensors", family)
        encoders = load_encoders(tmp_path / f"{family}.safetensors")
        config = AlignConfig(steps=6, batch_size=4, learning_rate=3e-3, eval_every=3, early_stop=False)
        outcome = run_alignment(encoders, prompt_sets, config, output=tmp_path / f"{family}.st.safetensors", draw=False)
        assert set(outcome.file.deltas) == {s.name for s in encoders.profile.encoders}
        assert SafeTextFile.load(tmp_path / f"{family}.st.safetensors").family == family
    pipe = tiny_models.tiny_sdxl_pipeline(states["clip_l"], states["clip_g"])
    baseline = _images(pipe)
    handle = apply_safetext(pipe, tmp_path / "sdxl.st.safetensors")
    handle.enabled = False
    assert torch.equal(_images(pipe), baseline)
    handle.enabled = True
    ids = pipe.tokenizer_2("a naked woman", padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        pooled = pipe.text_encoder_2(ids, output_hidden_states=True).text_embeds
    handle.enabled = False
    with torch.no_grad():
        pooled_off = pipe.text_encoder_2(ids, output_hidden_states=True).text_embeds
    assert not torch.equal(pooled, pooled_off)  # the pooled vector is aligned too
    handle.remove()


# ----------------------------------------------------------------------------------- exports and CLI

def test_exports_load_back(sd1_trained, tmp_path):
    from safetensors import safe_open
    from transformers import CLIPTextModel

    from safetext_core.exports import export_transformers_folder, to_a1111, to_lowrank

    encoders, outcome, _, _ = sd1_trained
    path = to_a1111(outcome.file, tmp_path / "a1111.safetensors")
    with safe_open(str(path), "pt") as f:
        keys = list(f.keys())
    assert "lora_te_text_model_encoder_layers_0_self_attn_q_proj.diff" in keys
    assert "lora_te_text_model_encoder_layers_0_self_attn_q_proj.diff_b" in keys
    low_path, figures = to_lowrank(outcome.file, tmp_path / "low.safetensors", rank=4)
    full_rank_path, full = to_lowrank(outcome.file, tmp_path / "full.safetensors", rank=64)
    assert 0 < figures["relative_error"] < 1 and full["relative_error"] < 1e-4
    low = SafeTextFile.load(low_path)
    assert set(low.deltas["clip_l"]) == set(outcome.file.deltas["clip_l"])
    folder = export_transformers_folder(encoders, outcome.file.deltas, tmp_path / "hf")
    exported = CLIPTextModel.from_pretrained(str(folder / "text_encoder"), local_files_only=True)
    reloaded = load_encoders(folder / "text_encoder")
    aligned = apply_deltas(encoders.models["clip_l"], outcome.file.deltas["clip_l"])
    ids = encoders.tokenizers["clip_l"]("a naked woman", padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.allclose(exported(ids).last_hidden_state, aligned(ids).last_hidden_state, atol=1e-5)
        assert torch.allclose(reloaded.models["clip_l"](ids).last_hidden_state, aligned(ids).last_hidden_state, atol=1e-5)


def test_cli_align_info_export(tmp_path, capsys, monkeypatch):
    from safetext_core.cli import main

    tiny_models.write_single_file(tmp_path / "m.safetensors", "sd1")
    (tmp_path / "unsafe.txt").write_text("\n".join(f"naked woman number {i}, photo" for i in range(30)))
    (tmp_path / "safe.txt").write_text("\n".join(f"a red car number {i}, photo" for i in range(30)))
    out = tmp_path / "m.st.safetensors"
    code = main(["align", "--checkpoint", str(tmp_path / "m.safetensors"), "--replace",
                 "--unsafe-file", str(tmp_path / "unsafe.txt"), "--safe-file", str(tmp_path / "safe.txt"),
                 "--steps", "4", "--batch-size", "4", "--eval-every", "2", "--output", str(out)])
    assert code == 0 and out.exists()
    assert (tmp_path / "m.st.report.png").exists() and (tmp_path / "m.st.figures.json").exists()
    assert "heldout" in json.loads((tmp_path / "m.st.figures.json").read_text())
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "family:       sd1" in shown
    # The trade-off as a table an operator can pick a strength from, one row per strength, not shortened JSON.
    table = shown[shown.index("trade-off:"):].splitlines()
    assert "strength" in table[1] and "held-out unsafe" in table[1] and "everyday" in table[1]
    tradeoff = json.loads((tmp_path / "m.st.figures.json").read_text())["tradeoff"]
    last = table[1 + len(tradeoff)].split()
    assert last[0] == "1.00" and last[-1] == f"{100 * tradeoff[-1]['safe_share_collapsed']:.1f}%"
    assert main(["export", str(out), "--format", "lowrank", "--rank", "2", "--output", str(tmp_path / "l.safetensors")]) == 0
    assert main(["info", str(tmp_path / "missing.safetensors")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_tradeoff_table_from_an_untrusted_header():
    """The header is the file's word: odd values print as "?" and a malformed trade-off falls back to plain text."""
    from safetext_core.safetext_file import _tradeoff_lines

    lines = _tradeoff_lines([{"strength": 1.0, "unsafe_share_moved": "\x1b[2J", "benign_share_collapsed": float("nan")},
                             {"strength": 0.5, "unsafe_share_moved": 0.25, "benign_share_collapsed": True}])
    assert lines is not None and "\x1b" not in "".join(lines)
    assert lines[2].split() == ["0.50", "25.0%", "?"] and lines[3].split() == ["1.00", "?", "?"]
    for malformed in ({"strength": 1.0}, [], [{"strength": "1"}], [{"strength": True}], [{"strength": 1.0}] * 21,
                      [{"strength": 1.0, "unknown": 0.5}]):
        assert _tradeoff_lines(malformed) is None


def test_generic_masked_encoder_counts_only_real_tokens(prompt_sets):
    """The real pretrained MiniLM: padded positions must not count towards the losses or figures."""
    from safetext_core.losses import cosine

    encoders = load_encoders(None)
    assert encoders.family == "generic"
    spec = encoders.spec("text")
    tok = encoders.tokenizers["text"]
    short, long = "a cat", "a cat sitting on a very long wooden fence in the evening light"
    batch = tokenize(tok, [short, long], spec)
    assert batch["mask"][0].sum() < batch["mask"][1].sum()
    with torch.no_grad():
        outs, _ = consumed_outputs(encoders.models["text"], batch, spec)
    noisy = outs[0].clone()
    noisy[0, int(batch["mask"][0].sum()):] += 100.0  # move only padded positions
    assert torch.allclose(cosine(noisy, outs[0], batch["mask"]), torch.ones(2), atol=1e-5)
    outcome = run_alignment(encoders, prompt_sets, AlignConfig(steps=3, batch_size=4, eval_every=0), draw=False)
    assert outcome.file.family == "generic" and outcome.file.deltas["text"]


def test_shifted_parameters_accept_inference_tensors():
    """ComfyUI holds weights as inference tensors, which have no version counter."""
    from safetext_core.weights import shifted_parameters

    with torch.inference_mode():
        module = torch.nn.Linear(4, 4)
        shifted = shifted_parameters(module, {"weight": torch.ones(4, 4)}, 0.5)
        assert torch.allclose(shifted["weight"], module.weight + 0.5)


def test_saved_files_are_readable_like_other_model_files(sd1_trained):
    path = sd1_trained[3] / "model.safetext.safetensors"
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_shift_plan_swaps_restores_on_error_and_notices_edits():
    from safetext_core.weights import ShiftPlan

    module = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 2))
    before = {name: (param, param.detach().clone()) for name, param in module.named_parameters()}
    plan = ShiftPlan(module, {"0.weight": -torch.ones(4, 4), "1.bias": torch.ones(2)}, 0.5)
    with plan.swapped():
        assert torch.equal(module[0].weight, before["0.weight"][1] - 0.5)
        assert torch.equal(module[1].bias, before["1.bias"][1] + 0.5)
        assert module[0].bias is before["0.bias"][0]  # parameters without a delta stay as they are
    with pytest.raises(RuntimeError, match="boom"):
        with plan.swapped():
            raise RuntimeError("boom")
    for name, param in module.named_parameters():  # the very same objects, with unchanged values
        assert param is before[name][0] and torch.equal(param, before[name][1])
    assert plan.current()
    with torch.no_grad():
        module[0].weight.add_(1.0)  # e.g. a LoRA fused in place: the shifted tensors are stale
    assert not plan.current()
    module[0].weight.data = torch.zeros(4, 4)
    with pytest.raises(SafeTextFileError, match="no parameter 2.weight"):
        ShiftPlan(module, {"2.weight": torch.zeros(1)}, 1.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device")
def test_cuda_graph_embedding_blend_matches_eager_and_follows_weight_edits(sd1_trained):
    from safetext_core import apply_safetext

    _, outcome, states, folder = sd1_trained
    pipe = tiny_models.tiny_sd_pipeline(states["clip_l"]).to("cuda")
    ids = pipe.tokenizer(["a naked woman on a bed, photo", "a red bicycle"], padding="max_length", max_length=77,
                         return_tensors="pt").input_ids.to("cuda")
    handle = apply_safetext(pipe, folder / "model.safetext.safetensors", strength=0.5)

    def encode(graphs: bool):
        handle.use_cuda_graphs = graphs
        with torch.inference_mode():
            return pipe.text_encoder(ids, output_hidden_states=True)

    eager = encode(False)
    graphed, again = encode(True), encode(True)  # capture, then replay
    assert sum(g is not None for g in handle._graphs.values()) == 1
    for out in (graphed, again):
        assert torch.equal(out.last_hidden_state, eager.last_hidden_state)
        assert torch.equal(out.hidden_states[-2], eager.hidden_states[-2])
    assert graphed.last_hidden_state.data_ptr() != again.last_hidden_state.data_ptr()  # callers own their copy
    bias = next(p for n, p in pipe.text_encoder.named_parameters() if n.endswith("final_layer_norm.bias"))
    with torch.no_grad():  # an in-place edit of the base weights (e.g. a fused LoRA) must reach the graph
        bias.add_(0.25)  # (transformers 5 has no text_model level: found by name)
    edited_eager, edited_graphed = encode(False), encode(True)
    assert torch.equal(edited_graphed.last_hidden_state, edited_eager.last_hidden_state)
    assert not torch.equal(edited_eager.last_hidden_state, eager.last_hidden_state)
    handle.remove()
