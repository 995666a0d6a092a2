"""Prompt inputs are validated the same way in every split and every entry point, and host file names are
checked before any training (issue 11; docs/reliability.md "Prompts and names").

Entry points: ``load_prompt_sets`` / ``PromptSets`` (Python API), prompt files (command line), the ComfyUI
Train node and the A1111 training tab (their stand-in hosts come from test_comfy_nodes / test_a1111_scripts).
Splits: a weighted or over-long prompt is refused (or, with ``strip_weighting``, stripped) whether its hash puts
it in the training, validation or held-out split.
"""
from __future__ import annotations

import os

import pytest

import tiny_models
from conftest import SAFE_WORDS, UNSAFE_WORDS, small_prompt_sets
from safetext_core import AlignConfig, PromptSets, load_encoders, load_prompt_sets, run_alignment
from safetext_core.errors import PromptError, PromptSetError, SafeTextError
from safetext_core.hosting import FileNameError, new_file_path
from safetext_core.prompt_sets import clean_prompt, load_pair_file, load_prompt_file, prompt_list, split_of

FAST = AlignConfig(steps=2, batch_size=4, learning_rate=1e-3, eval_every=1, checkpoint_every=0)


# ------------------------------------------------------------------------------------------ one rule

def test_text_where_a_list_is_expected_is_one_prompt_per_line():
    sets = load_prompt_sets(categories=[], unsafe_prompts="naked woman, photo", safe_prompts="a cat\n\n# note\n a dog ",
                            replace=True)
    assert sets.unsafe["user"] == ["naked woman, photo"]  # not 18 one-character prompts
    assert sets.safe == ["a cat", "a dog"]
    assert prompt_list(None) == [] and prompt_list(("a", "a", "b")) == ["a", "b"]
    assert clean_prompt("a\x00cat\tin\nfog") == "a cat in fog"


@pytest.mark.parametrize("value, named", [
    ([None], "#1: None is NoneType"),
    (["ok", b"naked"], "#2: b'naked' is bytes"),
    (["ok", 3.5], "#2: 3.5 is float"),
    (["\x00\x00\x00"], "#1: '\\x00\\x00\\x00' is empty"),
    (["ok", "   "], "#2: '   ' is empty"),
    ("fine\n\x00\nalso fine", "line 2: '\\x00' is empty"),
    (b"naked woman", "bytes, not text"),
    (42, "not int"),
    ({"a": "b"}, "not dict"),
])
def test_bad_prompts_are_prompt_errors_naming_the_prompt(value, named):
    with pytest.raises(PromptError) as raised:
        load_prompt_sets(categories=[], unsafe_prompts=value, replace=True)
    assert "unsafe_prompts" in str(raised.value) and named in str(raised.value)


def test_prompt_files_and_pair_files_follow_the_same_rule(tmp_path):
    (tmp_path / "u.txt").write_text("a naked woman\n\x00\x00\n", encoding="utf-8")
    with pytest.raises(PromptError, match=r"u\.txt:2: '\\x00\\x00' is empty"):
        load_prompt_file(tmp_path / "u.txt")
    (tmp_path / "p.tsv").write_text("a naked woman\t \n", encoding="utf-8")
    with pytest.raises(PromptSetError, match="both sides filled"):
        load_pair_file(tmp_path / "p.tsv")
    (tmp_path / "p.tsv").write_text("a naked woman\t\x00\x01\n", encoding="utf-8")
    with pytest.raises(PromptError, match=r"p\.tsv:1: '\\x00\\x01' is empty"):
        load_pair_file(tmp_path / "p.tsv")
    (tmp_path / "u.csv").write_text("prompt\na cat\n\x00\n", encoding="utf-8")
    with pytest.raises(PromptError, match=r"u\.csv, row 3"):
        load_prompt_file(tmp_path / "u.csv")


@pytest.mark.parametrize("sets, named", [
    (PromptSets(unsafe={"u": "naked woman, photo"}, safe=["a cat"]), "unsafe['u'] is str"),
    (PromptSets(unsafe={"u": ["naked", None]}, safe=["a cat"]), "unsafe['u'] #2: None"),
    (PromptSets(unsafe={"u": ["naked"]}, safe=["a cat", b"a dog"]), "safe #2: b'a dog' is bytes"),
    (PromptSets(unsafe={"u": ["naked"]}, near_miss=["\x00"]), "near_miss #1"),
    (PromptSets(unsafe={"u": ["naked"]}, safe=["a cat"], pairs=[("nude", None)]), "pairs #1 (harmless side)"),
])
def test_prompt_sets_built_directly_are_checked_before_training(sets, named):
    with pytest.raises(PromptError, match=named.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        sets.validate()


# ------------------------------------------------------------------------------------------ every split

def _in_split(part: str, candidates: list[str]) -> str:
    return next(p for p in candidates if split_of(p) == part)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("prompts") / "m.safetensors"
    tiny_models.write_single_file(path, "sd1")
    return path


@pytest.fixture(scope="module")
def encoders(model_path):
    return load_encoders(model_path)


@pytest.mark.parametrize("part", ["train", "validation", "heldout"])
@pytest.mark.parametrize("kind", ["weighted", "over-long"])
def test_weighted_and_over_long_prompts_are_refused_in_every_split(encoders, part, kind):
    if kind == "weighted":
        candidates = [f"(a naked person:1.{i}) on a beach, photo" for i in range(1, 99)]
    else:
        candidates = [" ".join(["a naked person on a beach"] * 20) + f" {i}" for i in range(99)]
    bad = _in_split(part, candidates)
    base = small_prompt_sets()
    sets = PromptSets(unsafe={"u": base.all_unsafe() + [bad]}, safe=base.safe, near_miss=base.near_miss)
    steps = []
    with pytest.raises(PromptError) as raised:
        run_alignment(encoders, sets, FAST, progress=lambda e: steps.append(e), draw=False)
    assert bad[:40] in str(raised.value) and steps == [], "refused before any training step"
    if part != "train":
        assert f"({part} split)" in str(raised.value)


def test_strip_weighting_applies_to_validation_and_heldout_prompts_too(encoders, monkeypatch):
    candidates = [f"(a naked person:1.{i}) on a beach, photo" for i in range(1, 99)]
    weighted = [_in_split("validation", candidates), _in_split("heldout", candidates)]
    base = small_prompt_sets()
    sets = PromptSets(unsafe={"u": base.all_unsafe() + weighted}, safe=base.safe, near_miss=base.near_miss)
    seen: list[str] = []
    import safetext_core.evaluation as evaluation
    import safetext_core.loop as loop
    import safetext_core.pipeline as pipeline

    real_validator, real_evaluate = loop.Validator, pipeline.evaluate

    def validator(encoders_, sets_, *args, **kwargs):
        seen.extend(p for prompts in sets_.values() for p in prompts)
        return real_validator(encoders_, sets_, *args, **kwargs)

    def evaluate(encoders_, deltas, sets_, *args, **kwargs):
        seen.extend(p for prompts in sets_.values() for p in prompts)
        return real_evaluate(encoders_, deltas, sets_, *args, **kwargs)

    monkeypatch.setattr(loop, "Validator", validator)
    monkeypatch.setattr(pipeline, "evaluate", evaluate)
    assert evaluation  # the real module stays untouched
    run_alignment(encoders, sets, FAST, draw=False, strip_weighting=True, independent=False)
    assert "a naked person on a beach, photo" in seen
    assert not [p for p in seen if ":1." in p or "(" in p], "a weighted prompt reached validation or held-out"


def test_eval_prompt_files_follow_the_training_rules(encoders, model_path, tmp_path, capsys):
    from safetext_core.cli import main

    sets = small_prompt_sets()
    run_alignment(encoders, sets, AlignConfig(steps=1, batch_size=4, eval_every=0), output=tmp_path / "f.safetensors",
                  draw=False, independent=False)
    checkpoint = model_path
    (tmp_path / "safe_long.txt").write_text("a cat\n" + " ".join(["a cat on a sofa"] * 20) + "\n")
    (tmp_path / "safe_weighted.txt").write_text("a cat\n(a red car:1.3)\n")
    for name, shown in (("safe_long.txt", "tokens, over the encoder's 77"), ("safe_weighted.txt", "(a red car:1.3)")):
        code = main(["eval", str(tmp_path / "f.safetensors"), "--checkpoint", str(checkpoint), "--prompts",
                     str(tmp_path / name)])
        err = capsys.readouterr().err
        assert code == 2 and shown in err and "Traceback" not in err, err
    (tmp_path / "safe_ok.txt").write_text("a cat\na red car\n")  # and a good file is measured, its report written
    report = tmp_path / "r" / "eval.png"
    assert main(["eval", str(tmp_path / "f.safetensors"), "--checkpoint", str(checkpoint), "--prompts",
                 str(tmp_path / "safe_ok.txt"), "--report", str(report)]) == 0
    umask = os.umask(0)
    os.umask(umask)
    assert report.stat().st_mode & 0o777 == 0o666 & ~umask and os.listdir(report.parent) == ["eval.png"]


# ------------------------------------------------------------------------------------------ host names

@pytest.mark.parametrize("name", ["x" * 300, "é" * 80, "y" * 140, "CON", "nul.safetensors", "Com1", "LPT9.txt",
                                  "aux .safetensors", "COM\u00b9", "CONIN$"])
def test_new_file_names_too_long_or_reserved_on_windows_are_refused(tmp_path, name):
    with pytest.raises(FileNameError):
        new_file_path(tmp_path, name)
    assert new_file_path(tmp_path, "z" * 130).name == "z" * 130 + ".safetensors"  # long, but room for partials


# ComfyUI's Train node and A1111's training tab, on their stand-in hosts.
from test_comfy_nodes import TRAIN_ARGS, env, host, pack, sd1_clip  # noqa: E402,F401  (fixtures)
from test_comfy_nodes import train as comfy_train  # noqa: E402
from test_a1111_scripts import sd1, webui  # noqa: E402,F401  (fixtures)


def _no_training(monkeypatch):
    import safetext_core.pipeline as pipeline

    def refuse(*args, **kwargs):
        raise AssertionError("training started")
    import safetext_core

    monkeypatch.setattr(pipeline, "run_alignment", refuse)
    monkeypatch.setattr(safetext_core, "run_alignment", refuse)


@pytest.mark.parametrize("name", ["n" * 300, "n" * 200, "CON", "nul", "com3.safetensors"])
def test_comfyui_train_node_refuses_bad_names_before_training(pack, host, monkeypatch, name):
    _no_training(monkeypatch)
    with pytest.raises(FileNameError):
        comfy_train(pack, sd1_clip(), name=name)


def test_comfyui_train_node_checks_prompts_like_the_core(pack, host, monkeypatch):
    _no_training(monkeypatch)
    with pytest.raises(PromptError, match=r"unsafe_prompts, line 2: '\\x00\\x00'"):
        comfy_train(pack, sd1_clip(), unsafe_prompts="a naked woman\n\x00\x00\nnude man")
    from test_comfy_nodes import module

    assert module("nodes.base").split_lines("a cat\n\n# note\n a dog ") == ["a cat", "a dog"]  # the Evaluate node's
    with pytest.raises(PromptError, match="line 2"):
        module("nodes.base").split_lines("a cat\n\x00")


@pytest.mark.parametrize("name", ["n" * 300, "n" * 200, "CON", "prn.safetensors"])
def test_a1111_training_refuses_bad_names_before_training(webui, sd1, monkeypatch, name):
    _no_training(monkeypatch)
    with pytest.raises(FileNameError):
        webui.training.train([], "\n".join(UNSAFE_WORDS), "\n".join(SAFE_WORDS), True, steps=1, name=name)


@pytest.mark.parametrize("unsafe, named", [(["a naked woman", None], "#2: None"),
                                           ("a naked woman\n\x00", "line 2"),
                                           (["a naked woman", b"nude"], "#2: b'nude' is bytes")])
def test_a1111_training_checks_prompts_like_the_core(webui, sd1, monkeypatch, unsafe, named):
    _no_training(monkeypatch)
    with pytest.raises(PromptError, match=named):
        webui.training.train([], unsafe, "\n".join(SAFE_WORDS), True, steps=1, name="ok")
    assert issubclass(PromptError, SafeTextError)
