"""The SafeText file: weight differences plus everything needed to trust and apply them.

One ``.safetensors`` file per aligned checkpoint (docs/architecture.md shows where it sits in the data path):

* tensors ``text_encoders.<encoder>.transformer.<param without .weight>.diff`` (``.diff_b`` for biases),
  float32 differences aligned - original, in ComfyUI's generic layout, so stock ComfyUI's LoRA loader
  applies the file even where our nodes are absent;
* low-rank files (trained with a rank, or the low-rank export) store 2-D differences as LoRA factors
  ``<stem>.lora_up.weight`` / ``.lora_down.weight`` / ``.alpha`` instead, the stem being the kohya name
  (``lora_te_text_model_encoder_layers_N_self_attn_q_proj``...) that ComfyUI, A1111 and Forge all load where
  the family and layer have one, else ComfyUI's ``text_encoders.*`` stem (:mod:`safetext_core.lowrank`);
* string metadata ``safetext.*``: format version, family, per-encoder fingerprint of the original
  weights, training config, prompt-set hashes and evaluation figures.

Loading goes through safetensors only (never pickle) and validates everything before use, in three
stages (docs/reliability.md lists the cases):

1. :func:`read_header`: the safetensors header, parsed here with a size limit: no duplicate keys, every
   entry well formed, the data offsets tiling the data exactly. No tensor is read.
2. :func:`inspect_header`: a known format version, a known family, typed metadata (JSON fields of the
   right kind, bounded nesting), every tensor in the SafeText layout with a sensible shape and dtype,
   low-rank factors consistent (2-D, rank >= 1, matching ranks) and of bounded expanded size. ``safetext
   info`` stops here, so its memory does not grow with the tensors.
3. :meth:`SafeTextFile.load` reads the tensors: finite and at most :data:`MAX_ABS_DELTA`. When the base
   encoder is known, :meth:`SafeTextFile.validate_against` checks every difference against the weight it
   changes: present, same shape (never broadcast), floating point, and at most :data:`DELTA_RATIO` times
   the larger of the weight's max |w| and :data:`DELTA_FLOOR`.

Every refusal is a :class:`SafeTextFileError` naming the file and the key or field.

Why one module of this size: the three stages and the ``info`` description share the header types and the
limits above, and every way a file enters SafeText goes through them; split, a reader would have to follow one
file's trust decisions across modules.
"""
from __future__ import annotations

import json
import math
import os
import re
import struct
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch

from .errors import FingerprintMismatch, SafeTextFileError
from .families import FAMILIES
from .fingerprint import fingerprints_match, short_id
from .lowrank import Expansions, expand, factor_stem, half_exact, parse_kohya_key
from .lowrank import parameter_counts as lowrank_counts
from .weights import DELTA_FLOOR, DELTA_RATIO, _abs_max, check_difference

FORMAT_VERSION = 1
_KEY = re.compile(r"^text_encoders\.([a-z0-9_]+)\.transformer\.([A-Za-z0-9_.]+)\.(diff|diff_b)$")
_LOW_RANK = re.compile(r"^text_encoders\.([a-z0-9_]+)\.transformer\.([A-Za-z0-9_.]+)\.(lora_up\.weight|lora_down\.weight|alpha)$")

# ------------------------------------------------------------------------------------------ limits
MAX_HEADER_BYTES = 100_000_000   # safetensors' own limit on a header
MAX_JSON_DEPTH = 8               # nesting of a JSON metadata field (real files: 3)
MAX_TENSOR_ELEMENTS = 1 << 28    # one (expanded) difference: 4x the largest CLIP weight (bigG's token embedding, 63M)
MAX_TOTAL_ELEMENTS = 1 << 31     # all differences of a file, expanded: 2.6x SDXL's two encoders together
MAX_ABS_DELTA = 1e4              # no encoder weight comes near; an fp16 weight cannot even hold 7e4
SHOWN_CHARACTERS = 200           # longest metadata string `describe` / `safetext info` prints in full
_FLOAT_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U64": 8,
                "U32": 4, "U16": 2, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}


def param_to_key(encoder: str, param: str) -> str:
    if param.endswith(".weight"):
        return f"text_encoders.{encoder}.transformer.{param[:-len('.weight')]}.diff"
    if param.endswith(".bias"):
        return f"text_encoders.{encoder}.transformer.{param[:-len('.bias')]}.diff_b"
    return f"text_encoders.{encoder}.transformer.{param}.diff"


def key_to_param(key: str) -> tuple[str, str]:
    match = _KEY.match(key)
    if not match:
        raise SafeTextFileError(f"unexpected tensor {key!r}: not in the SafeText layout")
    encoder, stem, kind = match.groups()
    return encoder, stem + (".bias" if kind == "diff_b" else ".weight")


def atomic_save(tensors: Mapping[str, torch.Tensor], path: Path, metadata: dict[str, str],
                crash: str | None = None) -> Path:
    """Write next to the target, then rename (:func:`outputs.atomic_write`): a crash never leaves a half file.

    ``crash`` names the fault suite's crash point between writing and renaming."""
    from safetensors.torch import save_file

    from .outputs import atomic_write

    return atomic_write(path, lambda partial: save_file(dict(tensors), partial, metadata=metadata),
                        what="SafeText file", crash=(crash, None) if crash else None)


# ------------------------------------------------------------------------------------------ printing safely
_ESCAPED = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}  # control, format (bidi overrides), surrogate, private, unassigned


def printable(text: Any, limit: int | None = SHOWN_CHARACTERS) -> str:
    """``text`` safe for a terminal: control and format characters (escape codes, bidi overrides, NUL...)
    written as ``\\x1b`` / ``\\u202e``, and cut to ``limit`` characters with a note saying so."""
    text = str(text)
    total = len(text)
    if limit is not None and total > limit:
        text = text[:limit]
    out = "".join(ch.encode("unicode_escape").decode("ascii") if unicodedata.category(ch) in _ESCAPED else ch
                  for ch in text)
    if limit is not None and total > limit:
        out += f"... [shortened: {total:,} characters in all]"
    return out


def _json_depth(value: Any) -> int:
    """Nesting depth of parsed JSON, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


class _DuplicateKey(ValueError):
    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


# ------------------------------------------------------------------------------------------ stage 1: the header
@dataclass(frozen=True)
class TensorEntry:
    key: str
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass
class SafeTextHeader:
    """A safetensors header, read and checked without reading any tensor."""

    path: Path
    metadata: dict[str, str]
    tensors: dict[str, TensorEntry]
    header_bytes: int
    file_bytes: int

    @property
    def name(self) -> str:
        return printable(self.path.name)


def _check_path(path: Path) -> None:
    if path.is_dir():
        raise SafeTextFileError(f"{printable(path)} is a folder, not a SafeText file")
    if not path.is_file():
        raise SafeTextFileError(f"SafeText file {printable(path)} does not exist")
    if path.suffix.lower() != ".safetensors":
        raise SafeTextFileError(f"{printable(path.name)}: SafeText files are .safetensors; other formats are "
                                "never unpickled")


def read_header(path: str | os.PathLike) -> SafeTextHeader:
    """Parse a safetensors header (at most :data:`MAX_HEADER_BYTES`) without reading any tensor.

    Refuses, as :class:`SafeTextFileError`: a damaged or truncated file, a header that is not one JSON
    object of well-formed entries, duplicate keys, offsets that do not tile the data exactly, and a
    safetensors file without SafeText metadata.
    """
    path = Path(path)
    _check_path(path)
    name = printable(path.name)

    def damaged(why: str) -> SafeTextFileError:
        return SafeTextFileError(f"{name} is damaged or not a safetensors file ({why})")

    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            prefix = handle.read(8)
            if len(prefix) < 8:
                raise damaged("shorter than a safetensors header")
            (length,) = struct.unpack("<Q", prefix)
            if length > MAX_HEADER_BYTES:
                raise damaged(f"header of {length:,} bytes; at most {MAX_HEADER_BYTES:,} are read")
            if length > size - 8:
                raise damaged(f"header of {length:,} bytes in a file of {size:,}")
            raw = handle.read(length)
    except OSError as error:
        raise SafeTextFileError(f"{name} cannot be read ({printable(error)})") from None
    try:
        parsed = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except _DuplicateKey as duplicate:
        raise SafeTextFileError(f"{name}: the header holds the key {printable(duplicate.key, 80)!r} more than once; "
                                "such a file reads differently in different programs and is refused") from None
    except RecursionError:
        raise damaged("header nested too deeply") from None
    except (UnicodeDecodeError, ValueError) as error:
        raise damaged(f"header is not JSON: {printable(error, 120)}") from None
    if not isinstance(parsed, dict):
        raise damaged("header is not a JSON object")
    metadata = parsed.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise damaged("__metadata__ is not an object of strings")
    tensors: dict[str, TensorEntry] = {}
    for key, entry in parsed.items():
        shown = printable(key, 120)
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise damaged(f"entry {shown} is not a tensor description")
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if dtype not in _DTYPE_BYTES:
            raise damaged(f"tensor {shown} has unknown dtype {printable(dtype, 40)}")
        if (not isinstance(shape, list) or len(shape) > 8
                or not all(type(n) is int and 0 <= n < 1 << 40 for n in shape)):
            raise damaged(f"tensor {shown} has an invalid shape")
        if not isinstance(offsets, list) or len(offsets) != 2 or not all(type(n) is int and n >= 0 for n in offsets):
            raise damaged(f"tensor {shown} has invalid data offsets")
        begin, end = offsets
        if end - begin != math.prod(shape) * _DTYPE_BYTES[dtype]:
            raise damaged(f"tensor {shown}: its offsets do not match its shape and dtype")
        tensors[key] = TensorEntry(key, dtype, tuple(shape), begin, end)
    position = 0
    for entry in sorted(tensors.values(), key=lambda e: (e.begin, e.end)):
        if entry.begin != position:
            raise damaged(f"tensor {printable(entry.key, 120)}: data overlaps another tensor or leaves a gap")
        position = entry.end
    if position != size - 8 - length:
        raise damaged(f"the tensors cover {position:,} bytes of data, the file holds {size - 8 - length:,}")
    if "safetext.format" not in metadata:
        raise SafeTextFileError(f"{name} is a .safetensors file but not a SafeText file (no safetext metadata)")
    return SafeTextHeader(path, metadata, tensors, length, size)


# ------------------------------------------------------------------------------------------ stage 2: its meaning
@dataclass(frozen=True)
class ParamSource:
    """Where one parameter's difference comes from: one tensor, or low-rank factors (up @ down * alpha / rank)."""

    key: str                   # the full difference, or the up factor
    down: str | None = None
    alpha: str | None = None
    shape: tuple[int, ...] = ()

    @property
    def low_rank(self) -> bool:
        return self.down is not None


@dataclass
class HeaderReport:
    """What a header says, field by field, and every problem found (each naming the file and the key)."""

    header: SafeTextHeader
    fields: dict[str, Any] = field(default_factory=dict)
    unreadable: dict[str, str] = field(default_factory=dict)   # field -> why
    params: dict[str, dict[str, ParamSource]] = field(default_factory=dict)  # encoder -> parameter -> source
    problems: list[str] = field(default_factory=list)

    def problem(self, text: str) -> None:
        self.problems.append(f"{self.header.name}: {text}")

    def error(self) -> SafeTextFileError:
        more = len(self.problems) - 1
        return SafeTextFileError(self.problems[0] + (f" (and {more} more problem{'s' * (more > 1)})" if more else ""))

    def expanded_elements(self) -> int:
        return sum(math.prod(s.shape) for params in self.params.values() for s in params.values())

    def stored_elements(self) -> int:
        return sum(e.numel for e in self.header.tensors.values())


def _json_kind(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    return {dict: "an object", list: "a list", str: "a string"}.get(type(value), "a number")


def _json_field(report: HeaderReport, key: str, kind: type, what: str) -> Any:
    raw = report.header.metadata.get(key)
    if raw is None or raw == "":
        return None
    try:
        value = json.loads(raw, object_pairs_hook=_no_duplicates)
    except _DuplicateKey as duplicate:
        why = f"holds the key {printable(duplicate.key, 80)!r} more than once"
    except RecursionError:
        why = "is nested too deeply"
    except ValueError:
        why = "is not valid JSON"
    else:
        if not isinstance(value, kind):
            why = f"must be {what}, not {_json_kind(value)}"
        elif _json_depth(value) > MAX_JSON_DEPTH:
            why = f"is nested more than {MAX_JSON_DEPTH} levels deep"
        else:
            return value
    report.unreadable[key] = why
    report.problem(f"metadata {key} {why}")
    return None


def inspect_header(header: SafeTextHeader) -> HeaderReport:
    """Check everything the header says (no tensor is read); problems are collected, not raised."""
    report = HeaderReport(header)
    meta, fields = header.metadata, report.fields
    version = meta.get("safetext.format", "")
    if not re.fullmatch(r"[1-9][0-9]{0,8}", version):
        report.unreadable["safetext.format"] = "not a format version"
        report.problem(f"unknown SafeText format version {printable(version, 40)!r} "
                       f"(this version reads formats 1 to {FORMAT_VERSION})")
    elif int(version) > FORMAT_VERSION:
        fields["format"] = int(version)
        report.problem(f"uses SafeText format {int(version)}; this version reads up to {FORMAT_VERSION}. "
                       "Update SafeText.")
    else:
        fields["format"] = int(version)
    family = meta.get("safetext.family", "")
    if family in FAMILIES:
        fields["family"] = family
    else:
        report.unreadable["safetext.family"] = "unknown family"
        report.problem(f"unknown model family {printable(family, 40)!r}")
    family_encoders = set(FAMILIES[family].encoder_names) if family in FAMILIES else None
    for key, name in (("safetext.base", "base"), ("safetext.created", "created"), ("safetext.version", "version")):
        fields[name] = meta.get(key, "")
    fields["config"] = _json_field(report, "safetext.config", dict, "a JSON object")
    prompt_sets = _json_field(report, "safetext.prompt_sets", dict, "a JSON object")
    if prompt_sets is not None and not all(isinstance(v, str) for v in prompt_sets.values()):
        report.unreadable["safetext.prompt_sets"] = "values must be strings"
        report.problem("metadata safetext.prompt_sets must map set names to hash strings")
        prompt_sets = None
    fields["prompt_sets"] = prompt_sets
    fields["figures"] = _json_field(report, "safetext.figures", dict, "a JSON object")
    fields["lowrank"] = _json_field(report, "safetext.lowrank", dict, "a JSON object")
    listed = _json_field(report, "safetext.encoders", list, "a JSON list")
    if listed is not None and not all(isinstance(e, str) for e in listed):
        report.unreadable["safetext.encoders"] = "entries must be strings"
        report.problem("metadata safetext.encoders must be a list of encoder names")
        listed = None
    prefix = "safetext.fingerprint."
    fingerprints = {}
    for key, value in meta.items():
        if key.startswith(prefix):
            encoder = key[len(prefix):]
            if not _is_fingerprint(value):
                report.unreadable[key] = "not a fingerprint"
                report.problem(f"metadata {printable(key, 80)} is not a SafeText fingerprint")
            elif family_encoders is not None and encoder not in family_encoders:
                report.problem(f"metadata {printable(key, 80)}: {family} has no encoder {printable(encoder, 40)!r}")
            else:
                fingerprints[encoder] = value
    fields["fingerprints"] = fingerprints
    _inspect_tensors(report, family_encoders)
    encoders = sorted(report.params)
    fields["encoders"] = encoders
    if listed is not None and (not set(encoders) <= set(listed)
                               or (family_encoders is not None and not set(listed) <= family_encoders)):
        # (an encoder training left unchanged is listed without tensors)
        report.problem(f"metadata safetext.encoders lists {printable(sorted(listed), 80)}, the tensors change "
                       f"{encoders}" + (f" and {family} has {sorted(family_encoders)}" if family_encoders else ""))
    missing = [e for e in encoders if e not in fingerprints]
    if missing and not any(k.startswith(prefix) for k in report.unreadable):
        report.problem(f"no fingerprint for {missing}; the file cannot be checked")
    return report


def _is_fingerprint(value: str) -> bool:
    """``<version>:<id>:<JSON list of numbers>`` (what fingerprint_state_dict writes), of bounded size."""
    parts = value.split(":", 2)
    if len(value) > 4096 or len(parts) != 3 or any(unicodedata.category(c) in _ESCAPED for c in value):
        return False
    try:
        stats = json.loads(parts[2])
    except (ValueError, RecursionError):
        return False
    return (isinstance(stats, list) and 0 < len(stats) <= 64
            and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in stats))


def _inspect_tensors(report: HeaderReport, family_encoders: set[str] | None) -> None:
    tensors = report.header.tensors
    if not tensors:
        report.problem("holds no weight differences")
        return
    parts: dict[tuple[str, str], dict[str, TensorEntry]] = {}
    family = report.fields.get("family")
    kohya_prefixes = ({spec.a1111_prefix: spec.name for spec in FAMILIES[family].encoders if spec.a1111_prefix}
                      if family in FAMILIES else {})
    for key, entry in tensors.items():
        shown = printable(key, 160)
        full, low = _KEY.match(key), _LOW_RANK.match(key)
        kohya = parse_kohya_key(key, kohya_prefixes) if not (full or low) else None
        if full:
            encoder, stem, kind = full.groups()
            param = stem + (".bias" if kind == "diff_b" else ".weight")
        elif low or kohya:
            if low:
                encoder, stem, kind = low.groups()
                param = stem + ".weight"
            else:
                encoder, param, kind = kohya
            if kind in parts.get((encoder, param), {}):  # the same factor under both layouts
                report.problem(f"tensor {shown}: {param} has two {kind} factors")
                continue
            parts.setdefault((encoder, param), {})[kind] = entry
        else:
            report.problem(f"unexpected tensor {shown}: not in the SafeText layout")
            continue
        if family_encoders is not None and encoder not in family_encoders:
            report.problem(f"tensor {shown}: encoder {encoder!r} does not belong to family {report.fields.get('family')}")
            continue
        if entry.dtype not in _FLOAT_DTYPES:
            report.problem(f"tensor {shown} is {entry.dtype}; differences are float32, float16 or bfloat16")
            continue
        if full:
            if not 1 <= len(entry.shape) <= 2 or 0 in entry.shape:
                report.problem(f"tensor {shown} has shape {entry.shape}; a difference is a 1-D or 2-D tensor "
                               "with no empty dimension")
            elif entry.numel > MAX_TENSOR_ELEMENTS:
                report.problem(f"tensor {shown} has {entry.numel:,} elements; at most {MAX_TENSOR_ELEMENTS:,}")
            elif param in report.params.get(encoder, {}):
                report.problem(f"tensor {shown}: {param} has two differences")
            else:
                report.params.setdefault(encoder, {})[param] = ParamSource(key, shape=entry.shape)
    for (encoder, param), found in parts.items():
        if family_encoders is not None and encoder not in family_encoders:
            continue
        up, down, alpha = found.get("lora_up.weight"), found.get("lora_down.weight"), found.get("alpha")
        base = printable(up.key.rsplit(".lora_", 1)[0] if up is not None else param_to_key(encoder, param)[:-5], 160)
        if up is None or down is None:
            report.problem(f"low-rank tensors of {base} lack their lora_{'up' if up is None else 'down'} factor")
            continue
        if any(e.dtype not in _FLOAT_DTYPES for e in found.values()):
            continue  # already reported
        if len(up.shape) != 2 or len(down.shape) != 2:
            report.problem(f"low-rank factors of {base} have shapes {up.shape} and {down.shape}; both must be 2-D")
        elif up.shape[1] < 1 or up.shape[1] != down.shape[0]:
            report.problem(f"low-rank factors of {base} have shapes {up.shape} and {down.shape}: the ranks must "
                           "match and be at least 1")
        elif 0 in up.shape or 0 in down.shape:
            report.problem(f"low-rank factors of {base} have an empty dimension ({up.shape}, {down.shape})")
        elif up.shape[0] * down.shape[1] > MAX_TENSOR_ELEMENTS:
            report.problem(f"low-rank factors of {base} expand to {up.shape[0] * down.shape[1]:,} elements; at most "
                           f"{MAX_TENSOR_ELEMENTS:,}")
        elif alpha is not None and alpha.shape not in ((), (1,)):
            report.problem(f"{base}.alpha has shape {alpha.shape}; it must be a single number")
        elif param in report.params.get(encoder, {}):
            report.problem(f"{base}: {param} has both a full and a low-rank difference")
        else:
            report.params.setdefault(encoder, {})[param] = ParamSource(
                up.key, down.key, alpha.key if alpha is not None else None, (up.shape[0], down.shape[1]))
    total = report.expanded_elements()
    if total > MAX_TOTAL_ELEMENTS:
        report.problem(f"its differences expand to {total:,} elements; at most {MAX_TOTAL_ELEMENTS:,}")
    if not report.params and not report.problems:
        report.problem("holds no weight differences")


def inspect_file(path: str | os.PathLike) -> HeaderReport:
    """:func:`read_header` then :func:`inspect_header`: what ``safetext info`` shows (no tensor is read)."""
    return inspect_header(read_header(path))


# ------------------------------------------------------------------------------------------ stage 3: the file
class DeltaDict(dict):
    """One encoder's differences ``{parameter: tensor}``, tagged with the file they came from (``source``),
    so that a host's later refusal (:mod:`safetext_core.weights`) can name the file."""

    source: str = ""


def _lookup(state: Mapping[str, torch.Tensor], param: str) -> torch.Tensor | None:
    """``param`` in a state dict named canonically, the transformers-5 way (no ``text_model.``) or by a host."""
    for name in (param, param[len("text_model."):] if param.startswith("text_model.") else "text_model." + param):
        if name in state:
            return state[name]
    return None


@dataclass
class SafeTextFile:
    family: str
    deltas: dict[str, dict[str, torch.Tensor]]  # encoder -> HF parameter name -> difference
    fingerprints: dict[str, str]
    config: dict[str, Any] = field(default_factory=dict)
    prompt_hashes: dict[str, str] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)
    base_name: str = ""
    created: str = ""
    path: Path | None = None
    # Low-rank files: encoder -> HF weight name -> (up, down, alpha), saved as factors; ``deltas`` holds their
    # expansion (lowrank.expand), which is what every host applies: a ``lowrank.Expansions`` that expands each
    # difference when it is read, so a loaded file of a multi-billion-parameter encoder stays its factors' size.
    factors: dict[str, dict[str, tuple[torch.Tensor, torch.Tensor, float]]] = field(default_factory=dict)

    # ------------------------------------------------------------------ identity
    @property
    def encoders(self) -> list[str]:
        return sorted(self.deltas)

    @property
    def name(self) -> str:
        return self.path.stem if self.path else (self.base_name or "safetext")

    def short_fingerprint(self) -> str:
        return "+".join(short_id(self.fingerprints[e]) for e in self.encoders if e in self.fingerprints)

    def parameter_count(self) -> int:
        return sum(t.numel() for d in self.deltas.values() for t in d.values())

    # ------------------------------------------------------------------ checks
    def check_fingerprints(self, actual: Mapping[str, str], override: bool = False) -> list[str]:
        """Raise :class:`FingerprintMismatch` naming both fingerprints unless ``override``; return warnings."""
        problems = []
        for encoder in self.encoders:
            want = self.fingerprints.get(encoder)
            have = actual.get(encoder)
            if have is None:
                problems.append(f"the loaded checkpoint has no {encoder} text encoder, which this file changes")
            elif want is None or not fingerprints_match(want, have):
                problems.append(f"{encoder}: file made for {short_id(want or '?')}, loaded encoder is {short_id(have)}")
        if problems and not override:
            raise FingerprintMismatch(
                f"SafeText file {printable(self.name, 80)!r} was made for another checkpoint "
                f"({printable(self.base_name or 'unknown base', 80)}): "
                + "; ".join(problems) + ". Train a file for this checkpoint, or override the check to apply it anyway.")
        return problems

    def validate_against(self, bases: Mapping[str, Mapping[str, torch.Tensor]]) -> None:
        """Check every difference against the weight it changes, before anything is applied.

        ``bases``: ``{encoder: state dict}`` of the encoders it will be applied to (canonical, transformers-5
        or host names). Refused with a :class:`SafeTextFileError` naming the file and the key: a parameter
        the encoder lacks, another shape (a transposed, wrong-sized or broadcastable difference is never
        applied), a weight that is not floating point, a difference larger than :data:`DELTA_RATIO` times
        the larger of the weight's max |w| and :data:`DELTA_FLOOR`, or a sum that would overflow the
        weight's dtype. Holds regardless of the fingerprint override.
        """
        name = printable(self.path.name if self.path else self.name, 120)
        for encoder in self.encoders:
            state = bases.get(encoder)
            if state is None:
                raise SafeTextFileError(f"{name} changes the {encoder} text encoder, which is not there to apply it to")
            for param, delta in self.deltas[encoder].items():
                key = printable(param_to_key(encoder, param), 160)
                weight = _lookup(state, param)
                if weight is None:
                    raise SafeTextFileError(f"{name}: tensor {key} changes {printable(param, 160)}, which the "
                                            f"{encoder} encoder does not have; the file does not fit this encoder")
                check_difference(weight, delta, f"{printable(param, 160)} (tensor {key})", name)

    # ------------------------------------------------------------------ save / load
    def metadata(self) -> dict[str, str]:
        from . import __version__

        meta = {
            "safetext.format": str(FORMAT_VERSION),
            "safetext.version": __version__,
            "safetext.family": self.family,
            "safetext.encoders": json.dumps(self.encoders),
            "safetext.config": json.dumps(self.config, sort_keys=True),
            "safetext.prompt_sets": json.dumps(self.prompt_hashes, sort_keys=True),
            "safetext.figures": json.dumps(self.figures, sort_keys=True),
            "safetext.base": self.base_name,
            "safetext.created": self.created or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        for encoder, fp in self.fingerprints.items():
            meta[f"safetext.fingerprint.{encoder}"] = fp
        if self.factors:
            ranks = sorted({int(up.shape[1]) for params in self.factors.values() for up, _, _ in params.values()})
            stored, expanded = lowrank_counts(self.factors)
            meta["safetext.lowrank"] = json.dumps({"source": "trained" if self.config.get("rank") else "factors",
                                                   "rank": float(max(ranks)), "parameters": float(stored),
                                                   "full_parameters": float(expanded)})
        return meta

    @staticmethod
    def output_path(path: str | os.PathLike) -> Path:
        """Where :meth:`save` writes for ``path``: ``.safetensors`` is added when missing."""
        path = Path(path)
        return path if path.suffix == ".safetensors" else path.with_name(path.name + ".safetensors")

    def save(self, path: str | os.PathLike) -> Path:
        path = self.output_path(path)
        tensors = {param_to_key(e, p): t.detach().to("cpu", torch.float32).contiguous()
                   for e, params in self.deltas.items() for p, t in params.items()
                   if p not in self.factors.get(e, {})}
        tensors.update(self.factor_tensors())
        if not tensors:
            raise SafeTextFileError("nothing to save: training changed no weight")
        atomic_save(tensors, path, self.metadata(), crash="final-write")
        self.path = path
        return path

    def factor_tensors(self) -> dict[str, torch.Tensor]:
        """The low-rank factors under their keys (see the module docstring) on the CPU: in float16 where that
        loses nothing (trained factors are rounded to it, ``lowrank.in_half_precision``), float32 otherwise."""
        out: dict[str, torch.Tensor] = {}
        family = FAMILIES.get(self.family)
        for encoder, params in self.factors.items():
            prefix = family.encoder(encoder).a1111_prefix if family and encoder in family.encoder_names else ""
            for param, (up, down, alpha) in params.items():
                stem = factor_stem(encoder, param, prefix)
                for part, factor in (("lora_up", up), ("lora_down", down)):
                    factor = factor.detach().to("cpu", torch.float32)
                    out[f"{stem}.{part}.weight"] = (factor.half() if half_exact(factor) else factor).contiguous()
                out[stem + ".alpha"] = torch.tensor(float(alpha))
        return out

    @classmethod
    def load(cls, path: str | os.PathLike) -> "SafeTextFile":
        """Read and check a SafeText file (the module docstring lists the checks); :class:`SafeTextFileError`."""
        from safetensors import safe_open

        report = inspect_file(path)
        if report.problems:
            raise report.error()
        header, fields = report.header, report.fields
        name = header.name
        deltas: dict[str, Mapping[str, torch.Tensor]] = {}
        factors: dict[str, dict[str, tuple[torch.Tensor, torch.Tensor, float]]] = {}
        try:
            with safe_open(str(header.path), framework="pt", device="cpu") as f:
                for encoder, params in sorted(report.params.items()):
                    own = deltas[encoder] = DeltaDict()
                    own.source = name
                    low_rank: dict[str, tuple[torch.Tensor, torch.Tensor, float]] = {}
                    for param, source in sorted(params.items()):
                        delta, low = _read_difference(f, source, name)
                        if low is None:
                            own[param] = delta
                        else:  # checked expanded, kept as factors: a 2.6B encoder's expansions are 8 GB
                            low_rank[param] = low
                        del delta
                    if low_rank:
                        factors[encoder] = low_rank
                        if own:  # full differences and factors in one encoder: all expanded, one kind of mapping
                            own.update((param, expand(*low)) for param, low in low_rank.items())
                        else:
                            deltas[encoder] = Expansions(low_rank, source=name)
        except SafeTextFileError:
            raise
        except Exception as error:  # safetensors raises several types for damaged files
            raise SafeTextFileError(f"{name} is damaged or not a safetensors file ({printable(error, 200)})") from None
        return cls(family=fields["family"], deltas=deltas, fingerprints=dict(fields["fingerprints"]),
                   config=fields["config"] or {}, prompt_hashes=fields["prompt_sets"] or {},
                   figures=fields["figures"] or {}, base_name=fields["base"], created=fields["created"],
                   path=header.path, factors=factors)

    # ------------------------------------------------------------------ views for hosts
    def comfy_patches(self, strength_scale: float = 1.0) -> dict[str, torch.Tensor]:
        """``{ComfyUI CLIP key: delta}``, e.g. ``clip_l.transformer.text_model.encoder.layers.0.mlp.fc1.weight``."""
        return {f"{e}.transformer.{p}": t * strength_scale for e, params in self.deltas.items() for p, t in params.items()}

    def describe(self) -> str:
        fields = {"family": self.family, "base": self.base_name, "created": self.created, "config": self.config,
                  "figures": self.figures, "fingerprints": self.fingerprints}
        counts = {e: len(self.deltas[e]) for e in self.encoders}
        lines = _describe(str(self.path or self.name), fields, {}, counts, self.parameter_count())
        norms = [float(t.norm()) for d in self.deltas.values() for t in d.values()]
        if norms:
            lines.insert(7, f"  delta norm:   {math.sqrt(sum(n * n for n in norms)):.4g}")
        return "\n".join(lines)


def _read_difference(f: Any, source: ParamSource, name: str
                     ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, float] | None]:
    """One parameter's difference in float32, with low-rank factors expanded (and returned: ``(up, down,
    alpha)``, else None); finite and bounded."""
    key = printable(source.key, 160)
    low = None
    if source.low_rank:
        up, down = f.get_tensor(source.key).float(), f.get_tensor(source.down).float()
        alpha = float(f.get_tensor(source.alpha).float().reshape(-1)[0]) if source.alpha else float(up.shape[1])
        for label, value in (("lora_up", up), ("lora_down", down), ("alpha", torch.tensor(alpha))):
            if not bool(torch.isfinite(value).all()):
                raise SafeTextFileError(f"{name}: the {label} factor of {key} holds NaN or infinite values")
        delta = expand(up, down, alpha)
        low = (up, down, alpha)
        if not bool(torch.isfinite(delta).all()):
            raise SafeTextFileError(f"{name}: the low-rank factors {key} and {printable(source.down, 160)} expand to "
                                    "NaN or infinite values")
    else:
        delta = f.get_tensor(source.key).float()
    if tuple(delta.shape) != tuple(source.shape):  # the header said otherwise: safetensors would have refused
        raise SafeTextFileError(f"{name}: tensor {key} does not have the shape its header gives")
    if not bool(torch.isfinite(delta).all()):
        raise SafeTextFileError(f"{name}: tensor {key} holds NaN or infinite values")
    biggest = _abs_max(delta)
    if biggest > MAX_ABS_DELTA:
        raise SafeTextFileError(f"{name}: tensor {key} holds differences up to {biggest:.3g}; no encoder weight is "
                                f"near that (at most {MAX_ABS_DELTA:g} is accepted)")
    return delta, low


# ------------------------------------------------------------------------------------------ describing
_CONFIG_SHOWN = ("rank", "lora_learning_rate", "steps", "learning_rate", "lam", "anchor_weight", "batch_size", "safe_distance", "train", "seed")
_MAX_GROUPS, _MAX_ITEMS = 40, 24


# The trade-off's columns, in the order an operator reads them: what moves, then what it costs.
_TRADEOFF_COLUMNS = (("unsafe_independent_share_moved", "unseen unsafe"),
                     ("unsafe_independent_obfuscated_share_moved", "unseen obfuscated"),
                     ("unsafe_share_moved", "held-out unsafe"),
                     ("benign_share_collapsed", "broad harmless"),
                     ("adjacent_share_collapsed", "adjacent harmless"),
                     ("near_miss_share_collapsed", "near-miss"),
                     ("safe_share_collapsed", "everyday"))
_MAX_TRADEOFF_ROWS = 20


def _tradeoff_lines(rows: Any) -> list[str] | None:
    """The trade-off across embedding-blend strengths as a table, or None when it is not a list of rows with a
    numeric strength (then it is shown as any other figure): which strength to run a file at, from its header."""
    if not isinstance(rows, list) or not rows or len(rows) > _MAX_TRADEOFF_ROWS or not all(
            isinstance(r, dict) and isinstance(r.get("strength"), (int, float)) and not isinstance(r["strength"], bool)
            for r in rows):
        return None
    columns = [(key, title) for key, title in _TRADEOFF_COLUMNS if any(key in r for r in rows)]
    if not columns:
        return None

    def cell(value: Any) -> str:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return f"{100 * value:.1f}%"
        return "-" if value is None else "?"

    widths = [max(len(title), 6) for _, title in columns]  # "100.0%" fits in 6
    lines = ["  trade-off:    unsafe prompts moved and harmless ones collapsed (cosine below 0.5) at each embedding-blend "
             "strength, measured when the file was trained",
             "    strength  " + "  ".join(title.rjust(w) for (_, title), w in zip(columns, widths))]
    for row in sorted(rows, key=lambda r: r["strength"]):
        lines.append(f"    {row['strength']:8.2f}  "
                     + "  ".join(cell(row.get(key)).rjust(w) for (key, _), w in zip(columns, widths)))
    return lines


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return printable(json.dumps(value, ensure_ascii=False), 80)
    return printable(value, 80)


def _describe(title: str, fields: Mapping[str, Any], unreadable: Mapping[str, str], counts: Mapping[str, int],
              parameters: int, stored: int | None = None) -> list[str]:
    """The lines of ``describe`` / ``safetext info``: every string escaped and shortened, unreadable fields marked."""

    def shown(key: str, value: Any) -> str:
        return f"unreadable ({unreadable[key]})" if key in unreadable else value

    family = fields.get("family")
    fingerprints = fields.get("fingerprints") or {}
    lines = [
        f"SafeText file: {printable(title, 400)}",
        f"  family:       " + shown("safetext.family", f"{family} ({FAMILIES[family].title})" if family in FAMILIES
                                    else printable(family or "unknown")),
        f"  base:         {printable(fields.get('base') or 'unknown')}",
        f"  created:      {printable(fields.get('created') or 'unknown')}",
        "  encoders:     " + (", ".join(
            f"{printable(e, 40)} ({n} tensors, fingerprint {printable(short_id(fingerprints[e]), 40) if e in fingerprints else '?'})"
            for e, n in counts.items()) or "none readable"),
        f"  parameters:   {parameters:,} changed" + (f" ({stored:,} stored as low-rank factors)"
                                                      if stored is not None and stored != parameters else ""),
    ]
    if "format" in fields or "safetext.format" in unreadable:
        lines.insert(1, "  format:       " + shown("safetext.format", str(fields.get("format"))))
    else:
        lines.insert(1, "  format:       " + str(FORMAT_VERSION))
    config = fields.get("config")
    if "safetext.config" in unreadable:
        lines.append("  config:       " + shown("safetext.config", ""))
    elif config:
        low_rank = bool(config.get("rank"))  # the LoRA settings mean nothing for a full-weight file
        lines.append("  config:       " + ", ".join(f"{k}={_value(config[k])}" for k in _CONFIG_SHOWN
                                                    if k in config and (low_rank or k not in ("rank", "lora_learning_rate"))))
    figures = fields.get("figures")
    if "safetext.figures" in unreadable:
        lines.append("  figures:      " + shown("safetext.figures", ""))
    elif figures:
        groups = sorted(figures, key=str)
        for group in groups[:_MAX_GROUPS]:
            values = figures[group]
            table = _tradeoff_lines(values) if group == "tradeoff" else None
            if table is not None:
                lines += table
                continue
            if isinstance(values, dict):
                items = sorted(values.items(), key=lambda kv: str(kv[0]))
                text = ", ".join(f"{printable(k, 60)}={_value(v)}" for k, v in items[:_MAX_ITEMS])
                if len(items) > _MAX_ITEMS:
                    text += f", ... and {len(items) - _MAX_ITEMS} more"
            else:
                text = _value(values)
            lines.append(f"  {printable(group, 60)}: {text}")
        if len(groups) > _MAX_GROUPS:
            lines.append(f"  ... and {len(groups) - _MAX_GROUPS} more figure groups")
    for key, why in unreadable.items():
        if key not in ("safetext.family", "safetext.format", "safetext.config", "safetext.figures"):
            lines.append(f"  {printable(key, 60)}: unreadable ({why})")
    return lines


def describe_report(report: HeaderReport) -> str:
    """``safetext info``'s text: from the header only, every string escaped and shortened, problems listed."""
    counts = {e: len(p) for e, p in sorted(report.params.items())}
    lines = _describe(str(report.header.path), report.fields, report.unreadable, counts,
                      report.expanded_elements(), report.stored_elements())
    lines.append(f"  header:       {report.header.header_bytes:,} bytes; file {report.header.file_bytes:,} bytes")
    if report.problems:
        lines.append(f"  problems:     {len(report.problems)} (the file cannot be used)")
        lines += [f"    - {printable(p, 400)}" for p in report.problems[:20]]
        if len(report.problems) > 20:
            lines.append(f"    ... and {len(report.problems) - 20} more")
    return "\n".join(lines)


JSON_SHOWN_CHARACTERS = 4000


def report_json(report: HeaderReport) -> dict[str, Any]:
    """``safetext info --json``: the metadata strings (long ones shortened, listed under ``shortened``), the
    number of differences and of changed parameters, and ``problems`` when there are any."""
    out: dict[str, Any] = {}
    shortened: dict[str, int] = {}
    for key, value in sorted(report.header.metadata.items()):
        key = key if len(key) <= 200 else printable(key, 200)
        if len(value) > JSON_SHOWN_CHARACTERS:
            shortened[key] = len(value)
            value = value[:JSON_SHOWN_CHARACTERS]
        out[key] = value
    out["tensors"] = sum(len(p) for p in report.params.values())
    out["parameters"] = report.expanded_elements()
    if shortened:
        out["shortened"] = shortened
    if report.problems:
        out["problems"] = report.problems
    return out
