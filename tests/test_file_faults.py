"""Fault suite for SafeText files: a generated corpus of malformed files through every door.

Each file of the corpus goes through ``SafeTextFile.load``, ``safetext info``, ``safetext eval`` and
``apply_safetext`` on a tiny real diffusers pipeline (with the fingerprint override on, so only the file's own
checks stand between it and the encoder). Files with a bad header or metadata must be refused by all four;
files whose tensor values are bad (NaN, 3e38...) by all but ``info``, which reads the header only; files that
are well formed on their own but do not fit the encoder ("apply" stage: wrong shapes, missing layers,
implausible magnitudes) must load and show in ``info`` but be refused by ``eval`` and ``apply_safetext``.
Every refusal must be a ``SafeTextFileError`` (exit code 2 on the command line) that names the file, and the
pipeline's weights must be bit-identical after every attempt.

``python tests/test_file_faults.py`` prints the figures docs/reliability.md quotes.
"""
from __future__ import annotations

import io
import json
import math
import struct
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Callable

import pytest
import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import tiny_models  # noqa: E402
from safetext_core import SafeTextFile, SafeTextFileError  # noqa: E402
from safetext_core.errors import FingerprintMismatch  # noqa: E402
from safetext_core.fingerprint import fingerprint_state_dict  # noqa: E402

P = "text_encoders.clip_l.transformer.text_model."
FC1 = P + "encoder.layers.0.mlp.fc1"          # weight (64, 32), bias (64,)
NORM = P + "final_layer_norm"                 # weight (32,), bias (32,)


# ------------------------------------------------------------------------------------------- writing files
def _tensor_bytes(tensor: torch.Tensor) -> bytes:
    return tensor.contiguous().view(torch.uint8).numpy().tobytes() if tensor.numel() else b""


_DTYPE_NAMES = {torch.float32: "F32", torch.float16: "F16", torch.float64: "F64", torch.int32: "I32"}


def craft(path: Path, tensors: list[tuple[str, torch.Tensor]], metadata: list[tuple[str, str]] | None,
          extra: bytes = b"", entry: Callable[[str, dict], dict] | None = None) -> Path:
    """A safetensors file written by hand: duplicate keys allowed, entries editable by ``entry``."""
    parts, data = [], b""
    if metadata is not None:
        parts.append('"__metadata__": {' + ", ".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in metadata) + "}")
    for key, tensor in tensors:
        raw = _tensor_bytes(tensor)
        described = {"dtype": _DTYPE_NAMES[tensor.dtype], "shape": list(tensor.shape),
                     "data_offsets": [len(data), len(data) + len(raw)]}
        if entry is not None:
            described = entry(key, described)
        parts.append(f"{json.dumps(key)}: {json.dumps(described)}")
        data += raw
    header = ("{" + ", ".join(parts) + "}").encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + data + extra)
    return path


class Corpus:
    """A valid SafeText file for a tiny SD 1.x encoder, and the means to break it in every way."""

    def __init__(self, folder: Path, state: dict[str, torch.Tensor]):
        self.folder = folder
        self.state = state
        torch.manual_seed(1)
        names = [n for n in state if ".layers.0." in n or "final_layer_norm" in n]
        self.deltas = {n: 0.01 * torch.randn_like(state[n]) for n in names}
        self.fingerprint = fingerprint_state_dict(state)
        self.good = SafeTextFile(family="sd1", deltas={"clip_l": self.deltas}, fingerprints={"clip_l": self.fingerprint},
                                 config={"steps": 10, "learning_rate": 1e-4}, prompt_hashes={"safe": "abc"},
                                 figures={"heldout": {"unsafe_share_moved": 0.99}, "tradeoff": [{"strength": 1.0}]},
                                 base_name="tiny", created="2025-01-01T00:00:00Z")

    def meta(self, **changes: str | None) -> dict[str, str]:
        meta = self.good.metadata()
        for key, value in changes.items():
            key = "safetext." + key.replace("__", ".")
            if value is None:
                meta.pop(key, None)
            else:
                meta[key] = value
        return meta

    def tensors(self) -> dict[str, torch.Tensor]:
        from safetext_core.safetext_file import param_to_key

        return {param_to_key("clip_l", n): t.contiguous() for n, t in self.deltas.items()}

    def save(self, name: str, tensors: dict[str, torch.Tensor] | None = None, meta: dict[str, str] | None = None) -> Path:
        path = self.folder / f"{name}.safetensors"
        save_file(dict(self.tensors() if tensors is None else tensors), str(path),
                  metadata=self.meta() if meta is None else meta)
        return path

    def with_tensor(self, name: str, key: str, tensor: torch.Tensor, drop: tuple[str, ...] = ()) -> Path:
        tensors = {k: v for k, v in self.tensors().items() if k not in drop}
        tensors[key] = tensor
        return self.save(name, tensors)

    def raw(self, name: str, data: bytes) -> Path:
        path = self.folder / f"{name}.safetensors"
        path.write_bytes(data)
        return path

    def header(self, name: str, header: str | bytes, data: bytes = b"", length: int | None = None) -> Path:
        header = header.encode() if isinstance(header, str) else header
        return self.raw(name, struct.pack("<Q", len(header) if length is None else length) + header + data)

    def crafted(self, name: str, **kwargs) -> Path:
        tensors = kwargs.pop("tensors", list(self.tensors().items()))
        metadata = kwargs.pop("metadata", list(self.meta().items()))
        return craft(self.folder / f"{name}.safetensors", tensors, metadata, **kwargs)


def build_corpus(c: Corpus) -> list[tuple[str, str, Path]]:
    """``(case, stage, path)``. Stages: "load", refused by every door; "values", a well-formed header whose
    tensor values are refused once read (``info`` reads the header only, so it shows these); "apply", a
    well-formed file refused once the encoder it is applied to is known (``load`` and ``info`` read it)."""
    good = c.tensors()
    fc1_w = c.state["text_model.encoder.layers.0.mlp.fc1.weight"]
    cases: list[tuple[str, str, Path]] = []

    def add(case: str, path: Path, stage: str = "load") -> None:
        cases.append((case, stage, path))

    # --- the container: not a safetensors file, or a damaged one
    add("empty file", c.raw("empty", b""))
    add("five bytes", c.raw("five", b"\x01\x02\x03\x04\x05"))
    add("header longer than the file", c.header("longer", "{}", length=10_000))
    add("header length 2^63", c.header("huge_length", "{}", length=1 << 63))
    add("header over the size limit", c.header("over_limit", "{}", length=200_000_000))
    add("header not UTF-8", c.header("not_utf8", b"{\"\xff\xfe\": 1}"))
    add("header not JSON", c.header("not_json", "{not json"))
    add("header a JSON list", c.header("json_list", "[]"))
    add("header a JSON string", c.header("json_string", '"hello"'))
    add("header nested 100,000 deep", c.header("deep_header", "[" * 100_000 + "]" * 100_000))
    add("pickle bytes named .safetensors", c.raw("pickle", b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00}\x94."))
    add("truncated file", c.raw("truncated", c.save("whole").read_bytes()[:-100]))
    add("trailing bytes after the data", c.crafted("trailing", extra=b"\x00" * 16))
    add("duplicate tensor key", c.crafted("dup_tensor", tensors=list(good.items()) + [(FC1 + ".diff", good[FC1 + ".diff"])]))
    add("duplicate metadata key (format 1 then 99)",
        c.crafted("dup_meta", metadata=list(c.meta().items()) + [("safetext.format", "99")]))
    add("duplicate family key", c.crafted("dup_family", metadata=list(c.meta().items()) + [("safetext.family", "sdxl")]))
    norm = _tensor_bytes(good[NORM + ".diff"])
    add("duplicate field inside an entry", c.header(
        "dup_field", '{"__metadata__": ' + json.dumps(c.meta()) + ', "' + NORM + '.diff": {"dtype": "F16", "dtype": "F32", '
        '"shape": [32], "data_offsets": [0, 128]}}', norm))
    add("metadata not an object", c.header("meta_list", '{"__metadata__": [1, 2]}'))
    add("metadata value a number", c.header("meta_number", '{"__metadata__": {"safetext.format": 1}}'))
    add("entry without data_offsets", c.crafted("no_offsets", entry=lambda k, e: {"dtype": e["dtype"], "shape": e["shape"]}))
    add("unknown dtype", c.crafted("bad_dtype", entry=lambda k, e: e | {"dtype": "F33"}))
    add("negative shape", c.crafted("neg_shape", entry=lambda k, e: e | {"shape": [-1] + e["shape"][1:]}))
    add("shape not a list", c.crafted("shape_str", entry=lambda k, e: e | {"shape": "64x32"}))
    add("offsets not matching the shape", c.crafted("offsets_short", entry=lambda k, e: e | {"shape": [e["shape"][0]] + [1] * (len(e["shape"]) - 1)} if k == FC1 + ".diff" else e))
    add("overlapping tensors", c.crafted("overlap", entry=lambda k, e: e | {"data_offsets": [0, e["data_offsets"][1] - e["data_offsets"][0]]}))
    folder = c.folder / "folder.safetensors"
    folder.mkdir(exist_ok=True)
    add("a folder named .safetensors", folder)
    add("a file that does not exist", c.folder / "missing.safetensors")
    pt = c.folder / "weights.pt"
    pt.write_bytes(b"\x80\x04K\x01.")
    add("pickle .pt file", pt)
    save_file({"lora_unet_x.lora_up.weight": torch.zeros(2, 2)}, str(c.folder / "plain_lora.safetensors"))
    add("a LoRA, not a SafeText file", c.folder / "plain_lora.safetensors")
    add("no tensors at all", c.header("no_tensors", '{"__metadata__": ' + json.dumps(c.meta()) + "}"))

    # --- metadata
    for case, value in (("format 0", "0"), ("format -7", "-7"), ("format 99", "99"), ("format 1.0", "1.0"),
                        ("format empty", ""), ("format ' 1'", " 1"), ("format 01", "01")):
        add(case, c.save("format_" + str(len(cases)), meta=c.meta(format=value)))
    add("unknown family", c.save("family_sd9", meta=c.meta(family="sd9")))
    add("family without the file's encoder (generic)", c.save("family_generic", meta=c.meta(family="generic")))
    add("config a JSON list", c.save("config_list", meta=c.meta(config="[1, 2]")))
    add("config a number", c.save("config_number", meta=c.meta(config="42")))
    add("config not JSON", c.save("config_bad", meta=c.meta(config="{steps: 10")))
    add("figures a JSON list", c.save("figures_list", meta=c.meta(figures="[]")))
    add("figures a string", c.save("figures_string", meta=c.meta(figures='"all good"')))
    add("figures nested 100,000 deep", c.save("figures_deep", meta=c.meta(figures='{"a": ' + "[" * 100_000 + "]" * 100_000 + "}")))
    add("figures nested 20 deep", c.save("figures_20", meta=c.meta(figures='{"a": ' + "[" * 20 + "]" * 20 + "}")))
    add("figures with a duplicate key", c.save("figures_dup", meta=c.meta(figures='{"a": 1, "a": 2}')))
    add("prompt_sets with a number", c.save("prompts_number", meta=c.meta(prompt_sets='{"safe": 3}')))
    add("encoders a string", c.save("encoders_string", meta=c.meta(encoders='"clip_l"')))
    add("encoders listing another encoder", c.save("encoders_other", meta=c.meta(encoders='["clip_g"]')))
    add("no fingerprint", c.save("no_fingerprint", meta=c.meta(fingerprint__clip_l=None)))
    add("fingerprint deeply nested stats", c.save("fingerprint_deep", meta=c.meta(fingerprint__clip_l="st1:x:" + "[" * 50_000)))
    add("fingerprint of text", c.save("fingerprint_text", meta=c.meta(fingerprint__clip_l="st1:x:[\"a\"]")))
    add("fingerprint with an escape code", c.save("fingerprint_esc", meta=c.meta(fingerprint__clip_l="st1:\x1b[2J:[1]")))
    add("fingerprint for an encoder sd1 lacks", c.save("fingerprint_other", meta=c.meta(fingerprint__clip_g=c.fingerprint)))

    # --- tensor values and layout
    add("NaN difference", c.with_tensor("nan", FC1 + ".diff", torch.full_like(fc1_w, float("nan"))), "values")
    add("infinite difference", c.with_tensor("inf", FC1 + ".diff", torch.full_like(fc1_w, float("inf"))), "values")
    add("finite 3e38 difference", c.with_tensor("big_3e38", FC1 + ".diff", torch.full_like(fc1_w, 3e38)), "values")
    add("1e5 difference", c.with_tensor("big_1e5", FC1 + ".diff", torch.full_like(fc1_w, 1e5)), "values")
    add("int32 difference", c.with_tensor("int32", FC1 + ".diff", torch.zeros(64, 32, dtype=torch.int32)))
    add("float64 difference", c.with_tensor("float64", FC1 + ".diff", torch.zeros(64, 32, dtype=torch.float64)))
    add("empty (0, 32) difference", c.with_tensor("empty_0_32", FC1 + ".diff", torch.zeros(0, 32)))
    add("empty (64, 0) difference", c.with_tensor("empty_64_0", FC1 + ".diff", torch.zeros(64, 0)))
    add("3-D difference", c.with_tensor("three_d", FC1 + ".diff", torch.zeros(64, 32, 1)))
    add("0-D difference", c.with_tensor("zero_d", FC1 + ".diff", torch.tensor(0.5)))
    add("key outside the layout", c.with_tensor("stray_key", "model.diffusion_model.x", torch.zeros(4)))
    add("key for another family's encoder", c.with_tensor("clip_g_key", "text_encoders.clip_g.transformer.text_model.final_layer_norm.diff", torch.zeros(64)))
    add("key with an escape code", c.with_tensor("esc_key", P + "encoder.\x1b[2Jx.diff", torch.zeros(4)))

    # --- low-rank factors
    low = {k: v for k, v in good.items() if k != FC1 + ".diff"}

    def lowrank(name: str, up: torch.Tensor | None, down: torch.Tensor | None, alpha: torch.Tensor | None = None,
                keep_full: bool = False) -> Path:
        tensors = dict(good if keep_full else low)
        for suffix, value in ((".lora_up.weight", up), (".lora_down.weight", down), (".alpha", alpha)):
            if value is not None:
                tensors[FC1 + suffix] = value
        return c.save(name, tensors)

    add("low-rank 1-D up factor", lowrank("lr_1d", torch.zeros(64), torch.zeros(1, 32)))
    add("low-rank rank 0", c.crafted("lr_rank0", tensors=list(low.items()) + [(FC1 + ".lora_up.weight", torch.zeros(64, 0)),
                                                                             (FC1 + ".lora_down.weight", torch.zeros(0, 32))]))
    add("low-rank mismatched ranks", lowrank("lr_ranks", torch.zeros(64, 4), torch.zeros(3, 32)))
    add("low-rank up without down", lowrank("lr_no_down", torch.zeros(64, 4), None))
    add("low-rank down without up", lowrank("lr_no_up", None, torch.zeros(4, 32)))
    add("low-rank alpha alone", lowrank("lr_alpha", None, None, torch.tensor(4.0)))
    add("low-rank alpha of two numbers", lowrank("lr_alpha2", torch.zeros(64, 4), torch.zeros(4, 32), torch.zeros(2)))
    add("low-rank NaN alpha", lowrank("lr_nan_alpha", torch.zeros(64, 4), torch.zeros(4, 32), torch.tensor(float("nan"))), "values")
    add("low-rank huge factors (1e20 x 1e20)", lowrank("lr_overflow", torch.full((64, 1), 1e20), torch.full((1, 32), 1e20)), "values")
    add("low-rank expanding to 10^10 elements", lowrank("lr_expand", torch.zeros(100_000, 1), torch.zeros(1, 100_000)))
    add("low-rank and full difference for one weight", lowrank("lr_and_full", torch.zeros(64, 4), torch.zeros(4, 32), keep_full=True))

    # --- well formed, but not for this encoder: refused once the encoder is known
    add("(1,) difference for a (64, 32) weight", c.with_tensor("bcast_1", FC1 + ".diff", torch.full((1,), 0.01)), "apply")
    add("(32,) difference for a (64, 32) weight", c.with_tensor("bcast_32", FC1 + ".diff", torch.full((32,), 0.01)), "apply")
    add("(1, 32) difference for a (64, 32) weight", c.with_tensor("bcast_1_32", FC1 + ".diff", torch.full((1, 32), 0.01)), "apply")
    add("transposed difference", c.with_tensor("transposed", FC1 + ".diff", 0.01 * torch.ones(32, 64)), "apply")
    add("wrong-sized difference", c.with_tensor("wrong_size", FC1 + ".diff", 0.01 * torch.ones(64, 31)), "apply")
    add("(32,) difference for a (64,) bias", c.with_tensor("bias_32", FC1 + ".diff_b", 0.01 * torch.ones(32)), "apply")
    add("layer 99, which the encoder lacks", c.with_tensor("layer_99", P + "encoder.layers.99.mlp.fc1.diff", torch.zeros(64, 32)), "apply")
    add("a parameter the encoder lacks (fc3)", c.with_tensor("fc3", P + "encoder.layers.0.mlp.fc3.diff", torch.zeros(64, 32)), "apply")
    add("difference 5,000 (finite, 10^4 x the weight)", c.with_tensor("implausible", FC1 + ".diff", torch.full_like(fc1_w, 5e3)), "apply")
    add("low-rank factors of the transposed shape", c.save("lr_transposed", dict(low, **{
        FC1 + ".lora_up.weight": 0.01 * torch.ones(32, 2), FC1 + ".lora_down.weight": 0.01 * torch.ones(2, 64)})), "apply")
    return cases


# ------------------------------------------------------------------------------------------- running them
def _cli(args: list[str]) -> tuple[int, str, str]:
    from safetext_core.cli import main

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(args)
    return code, out.getvalue(), err.getvalue()


def _snapshot(module: torch.nn.Module) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    return {n: (p, p.detach().clone()) for n, p in module.state_dict(keep_vars=True).items()}


def _identical(module: torch.nn.Module, snapshot) -> bool:
    now = module.state_dict(keep_vars=True)
    return set(now) == set(snapshot) and all(now[n] is p and torch.equal(p, v) for n, (p, v) in snapshot.items()) \
        and "forward" not in module.__dict__


def run_corpus(folder: Path, eval_apply_stage: bool = True) -> dict:
    """Every case through every door; returns the figures and the list of failures (empty when all is well)."""
    from safetext_core import apply_safetext

    folder.mkdir(parents=True, exist_ok=True)
    states = tiny_models.write_single_file(folder / "model.safetensors", "sd1")
    checkpoint = str(folder / "model.safetensors")
    prompts = folder / "prompts.txt"
    prompts.write_text("a red car, photo\na bowl of fruit\n")
    corpus = Corpus(folder, states["clip_l"])
    pipe = tiny_models.tiny_sd_pipeline(states["clip_l"])
    encoder = pipe.text_encoder
    snapshot = _snapshot(encoder)
    failures: list[str] = []
    figures = {"cases": 0, "load_stage": 0, "values_stage": 0, "apply_stage": 0, "clear_errors": 0, "crashes": 0,
               "silent_acceptances": 0, "models_left_modified": 0, "doors": 0}

    # The control: the unbroken file loads, shows, and applies (so the checks do not just refuse everything).
    good = corpus.save("good")
    SafeTextFile.load(good)
    assert _cli(["info", str(good)])[0] == 0
    handle = apply_safetext(pipe, good, override_fingerprint=False)
    handle.remove()
    assert _identical(encoder, snapshot)

    for case, stage, path in build_corpus(corpus):
        figures["cases"] += 1
        figures[f"{stage}_stage"] += 1
        doors: list[tuple[str, Callable[[], object], bool]] = [
            ("load", lambda: SafeTextFile.load(path), stage != "apply"),
            ("info", lambda: _cli(["info", str(path)]), stage == "load"),  # the header only: not "values"
            ("apply", lambda: apply_safetext(pipe, path, override_fingerprint=True), True),
        ]
        if stage == "load" or eval_apply_stage:
            doors.append(("eval", lambda: _cli(["eval", str(path), "--checkpoint", checkpoint, "--prompts", str(prompts),
                                                "--override"]), True))
        for door, call, must_refuse in doors:
            figures["doors"] += 1
            try:
                result = call()
            except SafeTextFileError as error:
                message = str(error)
                if not must_refuse:
                    failures.append(f"{case}: {door} refused a file it should read: {message}")
                elif isinstance(error, FingerprintMismatch):
                    failures.append(f"{case}: {door} refused it only for its fingerprint")
                elif path.name not in message and not (door == "load" and "does not exist" in message):
                    failures.append(f"{case}: {door}'s message does not name the file: {message}")
                else:
                    figures["clear_errors"] += 1
            except Exception as error:  # noqa: BLE001 - the point: anything else is a crash
                figures["crashes"] += 1
                failures.append(f"{case}: {door} crashed with {type(error).__name__}: {error}"[:400])
            else:
                if door in ("info", "eval"):
                    code, out, err = result
                    if "\x1b" in out or "\x1b" in err:
                        failures.append(f"{case}: {door} printed a raw escape code")
                    if code == 2 and must_refuse and "safetext: error:" in err:
                        figures["clear_errors"] += 1
                        continue
                    if code == 0 and not must_refuse:
                        continue
                    failures.append(f"{case}: {door} exited {code} ({err.strip()[:200]})")
                    if code == 0:
                        figures["silent_acceptances"] += 1
                elif must_refuse:
                    figures["silent_acceptances"] += 1
                    failures.append(f"{case}: {door} accepted it")
                    if door == "apply":
                        result.remove()
            if not _identical(encoder, snapshot):
                figures["models_left_modified"] += 1
                failures.append(f"{case}: the encoder's weights changed after {door}")
                encoder.__dict__.pop("forward", None)
                for name, (param, value) in snapshot.items():
                    with torch.no_grad():
                        param.copy_(value)
    figures["failures"] = failures
    return figures


def test_malformed_file_corpus_is_refused_clearly_by_every_door(tmp_path):
    figures = run_corpus(tmp_path)
    failures = figures.pop("failures")
    assert not failures, "\n".join(failures)
    assert figures["cases"] >= 50
    assert figures["crashes"] == figures["silent_acceptances"] == figures["models_left_modified"] == 0
    # info reads "values" files (header only); load and info read "apply" files; everything else is refused
    assert figures["clear_errors"] == figures["doors"] - figures["values_stage"] - 2 * figures["apply_stage"]


# ------------------------------------------------------------------------------------------- info in detail
def test_info_reads_the_header_only_and_prints_safely(tmp_path, monkeypatch):
    import safetensors

    states = tiny_models.write_single_file(tmp_path / "model.safetensors", "sd1")
    corpus = Corpus(tmp_path, states["clip_l"])
    hostile = "\x1b[31mred\x1b]0;owned\x07\u202eevil\x00" + "x" * 5_000_000
    path = corpus.save("hostile", meta=corpus.meta(base=hostile, created="\x1b[2J", figures=json.dumps(
        {"heldout": {"\x1b[5m": "\x9b31m", "ok": 0.5}})))
    # A low-rank file whose difference expands to 2^28 elements (1 GiB in float32): info never expands it.
    big = corpus.save("big_lowrank", dict(corpus.tensors(), **{
        P + "encoder.layers.1.mlp.fc2.lora_up.weight": torch.zeros(16384, 1),
        P + "encoder.layers.1.mlp.fc2.lora_down.weight": torch.zeros(1, 16384)}))

    def no_tensor_reads(*args, **kwargs):
        raise AssertionError("info read a tensor")

    monkeypatch.setattr(safetensors, "safe_open", no_tensor_reads)
    monkeypatch.setattr("safetensors.torch.load_file", no_tensor_reads)
    code, out, err = _cli(["info", str(path)])
    assert code == 0, err
    assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out and "\x9b" not in out and "\x00" not in out
    assert "\\x1b[31mred" in out and "\\u202e" in out
    assert "shortened: 5,000," in out and len(out) < 5000
    code, out, _ = _cli(["info", "--json", str(path)])
    shown = json.loads(out)
    assert code == 0 and shown["shortened"]["safetext.base"] == len(hostile) and len(out) < 20_000
    assert "\x1b" not in out  # JSON escapes it
    code, out, err = _cli(["info", str(big)])
    expanded = 16384 * 16384 + sum(t.numel() for t in corpus.deltas.values())
    assert code == 0 and f"{expanded:,} changed" in out, err


def test_info_marks_unreadable_fields_and_exits_2(tmp_path):
    states = tiny_models.write_single_file(tmp_path / "model.safetensors", "sd1")
    corpus = Corpus(tmp_path, states["clip_l"])
    for name, meta, shown in (
            ("config_list", corpus.meta(config="[1]"), "config:       unreadable (must be a JSON object, not a list)"),
            ("figures_deep", corpus.meta(figures="[" * 100_000 + "]" * 100_000), "figures:      unreadable"),
            ("version_0", corpus.meta(format="0"), "format:       unreadable")):
        code, out, err = _cli(["info", str(corpus.save(name, meta=meta))])
        assert code == 2 and shown in out and "problems:" in out and name in err and "Traceback" not in err


def test_validate_against_names_file_and_key(tmp_path):
    states = tiny_models.write_single_file(tmp_path / "model.safetensors", "sd1")
    corpus = Corpus(tmp_path, states["clip_l"])
    path = corpus.with_tensor("transposed", FC1 + ".diff", torch.zeros(32, 64))
    file = SafeTextFile.load(path)
    with pytest.raises(SafeTextFileError, match=r"transposed.safetensors.*mlp\.fc1\.weight.*\(32, 64\).*\(64, 32\)"):
        file.validate_against({"clip_l": states["clip_l"]})
    fine = SafeTextFile.load(corpus.save("fine"))
    fine.validate_against({"clip_l": states["clip_l"]})
    # transformers 5 names (no text_model level) are found too
    fine.validate_against({"clip_l": {k[len("text_model."):] if k.startswith("text_model.") else k: v
                                      for k, v in states["clip_l"].items()}})


def test_export_transformers_checks_magnitude_like_apply(tmp_path):
    # A finite difference 1,000x its weight passes load (values <= 1e4) but must not be exported into a model.
    states = tiny_models.write_single_file(tmp_path / "model.safetensors", "sd1")
    corpus = Corpus(tmp_path, states["clip_l"])
    weight = states["clip_l"]["text_model.encoder.layers.0.mlp.fc1.weight"]
    path = corpus.with_tensor("huge", FC1 + ".diff", torch.full_like(weight, 1000 * float(weight.abs().max())))
    code, _, err = _cli(["export", str(path), "--format", "transformers", "--checkpoint",
                         str(tmp_path / "model.safetensors"), "--output", str(tmp_path / "out")])
    assert code == 2 and "huge.safetensors" in err and "mlp.fc1.weight" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()
    fine = corpus.save("fine")
    code, _, err = _cli(["export", str(fine), "--format", "transformers", "--checkpoint",
                         str(tmp_path / "model.safetensors"), "--output", str(tmp_path / "ok")])
    assert code == 0 and (tmp_path / "ok").is_dir(), err


if __name__ == "__main__":
    import tempfile
    import time

    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        result = run_corpus(Path(folder))
    failures = result.pop("failures")
    print(json.dumps(result, indent=1))
    print("\n".join(failures) or "no failures", f"\n{time.perf_counter() - start:.1f} s")
