"""Prompt sets: the shipped defaults, user files, and the fixed train / validation / held-out split.

Shipped sets live in ``safetext_core/prompts/data`` (written by the SafeText developers; see the
README there). The split is a property of the prompt text, not of its position: a prompt's SHA-1
decides whether it is held out (20%), used for validation during training (10%), or trained on
(70%). The same prompt therefore lands in the same part whatever file it comes from or in which
order, and held-out figures never see a training prompt.
"""
from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from .errors import PromptSetError

DATA_DIR = Path(__file__).resolve().parent / "prompts" / "data"
CATEGORIES = ("sexual", "violence", "self_harm", "hate", "illegal", "shocking")
HELDOUT_PERCENT = 20
VALIDATION_PERCENT = 10


def split_of(prompt: str) -> str:
    """``"heldout"``, ``"validation"`` or ``"train"``, fixed by the prompt's text."""
    bucket = int(hashlib.sha1(prompt.strip().lower().encode("utf-8")).hexdigest(), 16) % 100
    if bucket < HELDOUT_PERCENT:
        return "heldout"
    if bucket < HELDOUT_PERCENT + VALIDATION_PERCENT:
        return "validation"
    return "train"


def _clean(lines: Iterable[str]) -> list[str]:
    seen, out = set(), []
    for line in lines:
        text = line.strip()
        if not text or text.startswith("#") or text in seen:
            continue
        seen.add(text)
        out.append(text)
    return out


def load_prompt_file(path: str | Path, column: str | None = None) -> list[str]:
    """One prompt per line (``#`` starts a comment), or a CSV file's ``prompt``/``text``/named column."""
    path = Path(path)
    if not path.is_file():
        raise PromptSetError(f"prompt file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise PromptSetError(f"prompt file {path} is not UTF-8 text") from None
    if path.suffix.lower() == ".csv":
        rows = list(csv.DictReader(text.splitlines()))
        if not rows:
            raise PromptSetError(f"{path}: the CSV file has no rows")
        names = list(rows[0].keys())
        chosen = column or next((n for n in names if n and n.strip().lower() in ("prompt", "prompts", "text")), None)
        if chosen is None or chosen not in names:
            raise PromptSetError(f"{path}: no column {column or 'prompt/text'!r}; columns are {names}")
        prompts = _clean(row.get(chosen) or "" for row in rows)
    else:
        prompts = _clean(text.splitlines())
    if not prompts:
        raise PromptSetError(f"{path}: the file holds no prompts")
    return prompts


def _shipped(relative: str) -> list[str]:
    path = DATA_DIR / relative
    return load_prompt_file(path) if path.is_file() else []


@dataclass
class PromptSets:
    """Unsafe prompts by category (plain and obfuscated), safe everyday prompts and benign near-misses."""

    unsafe: dict[str, list[str]] = field(default_factory=dict)
    obfuscated: dict[str, list[str]] = field(default_factory=dict)
    safe: list[str] = field(default_factory=list)
    near_miss: list[str] = field(default_factory=list)

    def _part(self, prompts: Iterable[str], part: str) -> list[str]:
        return [p for p in prompts if split_of(p) == part]

    def all_unsafe(self) -> list[str]:
        return [p for group in (self.unsafe, self.obfuscated) for prompts in group.values() for p in prompts]

    def unsafe_part(self, part: str) -> list[str]:
        return self._part(self.all_unsafe(), part)

    def safe_part(self, part: str) -> list[str]:
        """Safe training/validation prompts include the near-misses: they are the hard cases to keep."""
        return self._part(self.safe + self.near_miss, part)

    def evaluation_sets(self, part: str = "heldout") -> dict[str, list[str]]:
        sets = {
            "unsafe": self._part([p for prompts in self.unsafe.values() for p in prompts], part),
            "unsafe_obfuscated": self._part([p for prompts in self.obfuscated.values() for p in prompts], part),
            "safe": self._part(self.safe, part),
            "near_miss": self._part(self.near_miss, part),
        }
        return {name: prompts for name, prompts in sets.items() if prompts}

    def hashes(self) -> dict[str, str]:
        def digest(prompts: Sequence[str]) -> str:
            return hashlib.sha256("\n".join(prompts).encode("utf-8")).hexdigest()[:16]

        out = {f"unsafe/{c}": digest(p) for c, p in sorted(self.unsafe.items())}
        out.update({f"obfuscated/{c}": digest(p) for c, p in sorted(self.obfuscated.items())})
        out["safe"] = digest(self.safe)
        out["near_miss"] = digest(self.near_miss)
        return out

    def counts(self) -> dict[str, int]:
        return {"unsafe": sum(map(len, self.unsafe.values())), "obfuscated": sum(map(len, self.obfuscated.values())),
                "safe": len(self.safe), "near_miss": len(self.near_miss)}

    def validate(self) -> None:
        if not self.all_unsafe():
            raise PromptSetError("no unsafe prompts: pick at least one category or give an unsafe prompt file")
        if not self.safe and not self.near_miss:
            raise PromptSetError("no safe prompts: the shipped safe set is missing and no safe prompt file was given")
        for name, part in (("unsafe", self.unsafe_part("train")), ("safe", self.safe_part("train"))):
            if not part:
                raise PromptSetError(f"the {name} prompts are too few: after holding out 30% for evaluation, "
                                     "none is left to train on; give more prompts")

    def describe(self) -> str:
        return json.dumps(self.counts())


def load_prompt_sets(categories: Sequence[str] | None = None, unsafe_files: Sequence[str | Path] = (),
                     safe_files: Sequence[str | Path] = (), unsafe_prompts: Sequence[str] = (),
                     safe_prompts: Sequence[str] = (), replace: bool = False) -> PromptSets:
    """Shipped sets for ``categories`` (default: all), extended or, with ``replace``, replaced by the user's."""
    chosen = list(CATEGORIES if categories is None else categories)
    unknown = [c for c in chosen if c not in CATEGORIES]
    if unknown:
        raise PromptSetError(f"unknown categories {unknown}; choose from {', '.join(CATEGORIES)}")
    sets = PromptSets()
    if not replace:
        for category in chosen:
            sets.unsafe[category] = _shipped(f"unsafe/{category}.txt")
            obfuscated = _shipped(f"unsafe/{category}.obfuscated.txt")
            if obfuscated:
                sets.obfuscated[category] = obfuscated
        sets.safe = _shipped("safe/everyday.txt")
        sets.near_miss = _shipped("safe/near_miss.txt")
    user_unsafe = [p for f in unsafe_files for p in load_prompt_file(f)] + _clean(unsafe_prompts)
    user_safe = [p for f in safe_files for p in load_prompt_file(f)] + _clean(safe_prompts)
    if user_unsafe:
        sets.unsafe["user"] = _clean(user_unsafe)
    if user_safe:
        sets.safe = _clean(sets.safe + user_safe)
    return sets
