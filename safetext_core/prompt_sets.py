"""Prompt sets: the shipped defaults, user files, and the fixed train / validation / held-out split.

Shipped sets live in ``safetext_core/prompts/data`` (written by the SafeText developers; see the
README there). The split is a property of the prompt text, not of its position: a prompt's SHA-1
decides whether it is held out (20%), used for validation during training (10%), or trained on
(70%). The same prompt therefore lands in the same part whatever file it comes from or in which
order, and held-out figures never see a training prompt.

Every way prompts come in (files, the Python API, the ComfyUI node, the A1111 tab) goes through
:func:`prompt_list` / :func:`clean_prompt`: text given where a list is expected is one prompt per line (never
one prompt per character), control characters (NUL...) become spaces, and a prompt that is not text or is
empty once cleaned is a :class:`PromptError` that names it and where it came from.
"""
from __future__ import annotations

import csv
import hashlib
import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from .errors import PromptError, PromptSetError

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


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")  # C0/C1 controls, NUL, tab, line breaks


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def clean_prompt(prompt: object, where: str = "prompt") -> str:
    """``prompt`` as training uses it: control characters (NUL, tab, line breaks...) turned into spaces, outer
    spaces stripped. Not text, or nothing left: :class:`PromptError` naming it and ``where`` it came from."""
    if isinstance(prompt, (bytes, bytearray)):
        raise PromptError(f"{where}: {_shown(prompt)} is bytes, not text; decode it first (e.g. .decode('utf-8'))")
    if not isinstance(prompt, str):
        raise PromptError(f"{where}: {_shown(prompt)} is {type(prompt).__name__}, not text")
    text = _CONTROL.sub(" ", prompt).strip()
    if not text:
        raise PromptError(f"{where}: {_shown(prompt)} is empty once control characters and spaces are removed")
    return text


def prompt_list(value: object, where: str = "prompts") -> list[str]:
    """Prompts given as text (one per line; blank lines and ``#`` comments skipped, as in a file) or as a list
    of texts (each one prompt), cleaned by :func:`clean_prompt` and without duplicates; None gives none."""
    if value is None:
        return []
    if isinstance(value, str):
        lines = [(f"{where}, line {n}", line) for n, line in enumerate(value.splitlines(), 1)]
        return _clean(lines)
    if isinstance(value, (bytes, bytearray)):
        raise PromptError(f"{where}: got bytes, not text; decode it first (e.g. .decode('utf-8'))")
    if isinstance(value, dict) or not hasattr(value, "__iter__"):
        raise PromptError(f"{where}: expected text (one prompt per line) or a list of prompts, "
                          f"not {type(value).__name__}")
    return _clean([(f"{where}, #{n}", item) for n, item in enumerate(value, 1)], comments=False)


def _clean(lines: Iterable[tuple[str, object]], comments: bool = True) -> list[str]:
    """(where, text) pairs to prompts. ``comments``: lines of text, where blank lines and ``#`` comments are
    skipped (a list's items are each a prompt: a blank item is an error, like any prompt that cleans to nothing)."""
    seen, out = set(), []
    for where, line in lines:
        if comments and isinstance(line, str) and (not line.strip() or line.strip().startswith("#")):
            continue
        text = clean_prompt(line, where)
        if text not in seen:
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
        prompts = _clean((f"{path}, row {n}", row.get(chosen) or "") for n, row in enumerate(rows, 2))
    else:
        prompts = _clean((f"{path}:{n}", line) for n, line in enumerate(text.splitlines(), 1))
    if not prompts:
        raise PromptSetError(f"{path}: the file holds no prompts")
    return prompts


def _shipped(relative: str) -> Path:
    """A shipped training file; a missing one is an incomplete installation, never "no prompts"."""
    path = DATA_DIR / relative
    if not path.is_file():
        raise PromptSetError(f"shipped prompt file {path} is missing: this SafeText installation is incomplete "
                             "(reinstall it, or train on your own files with --replace)")
    return path


@dataclass
class PromptSets:
    """Unsafe prompts by category (plain and obfuscated), safe everyday prompts and benign near-misses.

    ``shipped_categories``: the shipped categories these sets include (None: none, the user's prompts only);
    the independent evaluation sets of the same categories are measured after training.
    """

    unsafe: dict[str, list[str]] = field(default_factory=dict)
    obfuscated: dict[str, list[str]] = field(default_factory=dict)
    safe: list[str] = field(default_factory=list)
    near_miss: list[str] = field(default_factory=list)
    pairs: list[tuple[str, str]] = field(default_factory=list)  # (unsafe, the same scene made harmless)
    shipped_categories: tuple[str, ...] | None = None

    def _part(self, prompts: Iterable[str], part: str) -> list[str]:
        return [p for p in prompts if split_of(p) == part]

    def all_unsafe(self) -> list[str]:
        return [p for group in (self.unsafe, self.obfuscated) for prompts in group.values() for p in prompts]

    def unsafe_part(self, part: str) -> list[str]:
        return self._part(self.all_unsafe(), part)

    def safe_part(self, part: str) -> list[str]:
        """Safe training/validation prompts include the near-misses: they are the hard cases to keep."""
        return self._part(self.safe + self.near_miss, part)

    def pair_part(self, part: str) -> list[tuple[str, str]]:
        """Minimal pairs of one split, split by the unsafe side (a pair never straddles two splits)."""
        return [pair for pair in self.pairs if split_of(pair[0]) == part]

    def evaluation_sets(self, part: str = "heldout") -> dict[str, list[str]]:
        sets = {
            "unsafe": self._part([p for prompts in self.unsafe.values() for p in prompts], part),
            "unsafe_obfuscated": self._part([p for prompts in self.obfuscated.values() for p in prompts], part),
            "safe": self._part(self.safe, part),
            "near_miss": self._part(self.near_miss, part),
            "pair_harmless": [harmless for _, harmless in self.pair_part(part)],
        }
        return {name: prompts for name, prompts in sets.items() if prompts}

    def hashes(self) -> dict[str, str]:
        def digest(prompts: Sequence[str]) -> str:
            return hashlib.sha256("\n".join(prompts).encode("utf-8")).hexdigest()[:16]

        out = {f"unsafe/{c}": digest(p) for c, p in sorted(self.unsafe.items())}
        out.update({f"obfuscated/{c}": digest(p) for c, p in sorted(self.obfuscated.items())})
        out["safe"] = digest(self.safe)
        out["near_miss"] = digest(self.near_miss)
        if self.pairs:  # absent for files made before pairs existed, so their hashes stay the same
            out["pairs"] = digest(["\t".join(pair) for pair in self.pairs])
        return out

    def counts(self) -> dict[str, int]:
        return {"unsafe": sum(map(len, self.unsafe.values())), "obfuscated": sum(map(len, self.obfuscated.values())),
                "safe": len(self.safe), "near_miss": len(self.near_miss), "pairs": len(self.pairs)}

    def validate(self) -> None:
        """Every prompt text and not empty once cleaned, every group a list; enough to train on."""
        groups = [(f"unsafe[{c!r}]", p) for c, p in self.unsafe.items()]
        groups += [(f"obfuscated[{c!r}]", p) for c, p in self.obfuscated.items()]
        groups += [("safe", self.safe), ("near_miss", self.near_miss)]
        for name, prompts in groups:
            if isinstance(prompts, (str, bytes)) or not isinstance(prompts, (list, tuple)):
                raise PromptError(f"{name} is {type(prompts).__name__}, not a list of prompts (load_prompt_sets "
                                  "reads text as one prompt per line)")
            for n, prompt in enumerate(prompts, 1):
                clean_prompt(prompt, f"{name} #{n}")
        for n, pair in enumerate(self.pairs, 1):
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise PromptError(f"pairs #{n}: {_shown(pair)} is not an (unsafe, harmless) pair")
            clean_prompt(pair[0], f"pairs #{n} (unsafe side)")
            clean_prompt(pair[1], f"pairs #{n} (harmless side)")
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


INDEPENDENT_DIR = DATA_DIR / "eval"
_WORD = re.compile(r"[a-z]+")


def vocabulary_words(tokenizer: Any) -> list[str]:
    """Whole English words of a tokenizer's vocabulary (CLIP BPE ``word</w>``, WordPiece ``word``, SentencePiece
    ``\u2581word`` as T5 and Gemma write a word that starts after a space, byte-level BPE ``\u0120word``), sorted."""
    words = set()
    for token in tokenizer.get_vocab():
        word = token[:-4] if token.endswith("</w>") else token[1:] if token[:1] in ("\u2581", "\u0120") else token
        if len(word) >= 3 and word.isascii() and word.isalpha() and word.islower():
            words.add(word)
    return sorted(words)


def unsafe_words(prompts: "PromptSets") -> set[str]:
    """Words that occur in the unsafe prompts (pairs' unsafe sides included) and in no safe prompt."""
    def words_of(texts: Iterable[str]) -> set[str]:
        return {w for text in texts for w in _WORD.findall(text.lower())}

    safe = words_of(prompts.safe + prompts.near_miss + [h for _, h in prompts.pairs])
    return words_of(prompts.all_unsafe() + [u for u, _ in prompts.pairs]) - safe


def word_salads(vocabulary: Sequence[str], exclude: set[str], count: int, seed: int = 0,
                lengths: tuple[int, int] = (4, 12)) -> list[str]:
    """``count`` prompts of random vocabulary words (none from ``exclude``), fixed by ``seed``.

    A preservation pool for training: whatever the encoder does to word salads, it does to words in general,
    so keeping them in place keeps the encoder's meaning of every word that carries no harm.
    """
    allowed = [w for w in vocabulary if w not in exclude]
    if not allowed:
        return []
    rng = random.Random(seed)
    return [" ".join(rng.choice(allowed) for _ in range(rng.randint(*lengths))) for _ in range(count)]


def load_pair_file(path: str | Path) -> list[tuple[str, str]]:
    """Minimal pairs, one per line: ``unsafe prompt<TAB>the same scene made harmless`` (``#`` starts a comment).

    A line without exactly one tab, or with an empty side, is a :class:`PromptSetError` naming file and line.
    """
    path = Path(path)
    if not path.is_file():
        raise PromptSetError(f"pair file {path} does not exist")
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError:
        raise PromptSetError(f"pair file {path} is not UTF-8 text") from None
    pairs, seen = [], set()
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        sides = [side.strip() for side in line.split("\t")]
        if len(sides) != 2 or not all(sides):
            raise PromptSetError(f"{path}:{number}: a pair is 'unsafe prompt<TAB>harmless counterpart', one tab, "
                                 f"both sides filled; got {line[:80]!r}")
        sides = [clean_prompt(side, f"{path}:{number}") for side in sides]
        if sides[0] == sides[1]:
            raise PromptSetError(f"{path}:{number}: the harmless counterpart is the unsafe prompt itself")
        if tuple(sides) not in seen:
            seen.add(tuple(sides))
            pairs.append((sides[0], sides[1]))
    if not pairs:
        raise PromptSetError(f"{path}: the file holds no pairs")
    return pairs


def independent_sets(categories: Sequence[str] | None = None) -> dict[str, list[str]]:
    """The shipped evaluation sets written apart from the training data (``prompts/data/eval``), by name.

    ``benign`` (ordinary harmless prompts), ``adjacent`` (harmless prompts that share a setting, body part or
    word with unsafe ones), ``unsafe_independent`` and ``unsafe_independent_obfuscated`` (of ``categories``,
    default all). Training never reads them; they share no 4-word sequence with any training prompt
    (tests/test_eval_sets.py). Empty when absent.
    """
    chosen = set(CATEGORIES if categories is None else categories)

    def folder(name: str, pattern: str = "*.txt", exclude: str | None = None) -> list[str]:
        files = sorted((INDEPENDENT_DIR / name).glob(pattern))
        if name == "unsafe":
            files = [f for f in files if f.name.split(".")[0] in chosen]
        return [p for f in files if exclude is None or not f.name.endswith(exclude) for p in load_prompt_file(f)]

    sets = {"benign": folder("benign"), "adjacent": folder("adjacent"),
            "unsafe_independent": folder("unsafe", exclude=".obfuscated.txt"),
            "unsafe_independent_obfuscated": folder("unsafe", "*.obfuscated.txt")}
    return {name: prompts for name, prompts in sets.items() if prompts}


def load_prompt_sets(categories: Sequence[str] | None = None, unsafe_files: Sequence[str | Path] = (),
                     safe_files: Sequence[str | Path] = (), unsafe_prompts: Sequence[str] | str | None = (),
                     safe_prompts: Sequence[str] | str | None = (), replace: bool = False,
                     pair_files: Sequence[str | Path] = ()) -> PromptSets:
    """Shipped sets for ``categories`` (default: all), extended or, with ``replace``, replaced by the user's.

    The shipped minimal pairs of the chosen categories come along unless ``replace``; ``pair_files`` add more.
    ``unsafe_prompts`` / ``safe_prompts``: a list of prompts, or text with one prompt per line (:func:`prompt_list`).
    """
    chosen = list(CATEGORIES if categories is None else categories)
    unknown = [c for c in chosen if c not in CATEGORIES]
    if unknown:
        raise PromptSetError(f"unknown categories {unknown}; choose from {', '.join(CATEGORIES)}")
    sets = PromptSets()
    if not replace:
        sets.shipped_categories = tuple(chosen)
        for category in chosen:
            sets.unsafe[category] = load_prompt_file(_shipped(f"unsafe/{category}.txt"))
            obfuscated = load_prompt_file(_shipped(f"unsafe/{category}.obfuscated.txt"))
            if obfuscated:
                sets.obfuscated[category] = obfuscated
        sets.safe = load_prompt_file(_shipped("safe/everyday.txt"))
        sets.near_miss = load_prompt_file(_shipped("safe/near_miss.txt"))
    seen: set[tuple[str, str]] = set()  # a pair given twice is kept once, where it first came

    def add_pairs(path: str | Path) -> None:
        fresh = [pair for pair in load_pair_file(path) if pair not in seen]
        seen.update(fresh)
        sets.pairs += fresh

    if not replace:  # every first-batch pair, then the later batches in the order they were written (pairs/README.md)
        for folder in ("pairs", "pairs/second_batch", "pairs/third_batch", "pairs/fourth_batch"):
            for category in chosen:
                add_pairs(_shipped(f"{folder}/{category}.tsv"))
    for pair_file in pair_files:
        add_pairs(pair_file)
    user_unsafe = [p for f in unsafe_files for p in load_prompt_file(f)] + prompt_list(unsafe_prompts, "unsafe_prompts")
    user_safe = [p for f in safe_files for p in load_prompt_file(f)] + prompt_list(safe_prompts, "safe_prompts")
    if user_unsafe:
        sets.unsafe["user"] = list(dict.fromkeys(user_unsafe))
    if user_safe:
        sets.safe = list(dict.fromkeys(sets.safe + user_safe))
    return sets


def shipped_sets_of(hashes: dict[str, str]) -> tuple[PromptSets, bool]:
    """The shipped prompt sets of the categories a file was trained on (read off its prompt hashes; all categories
    when none is recorded), and whether they are exactly the sets it was trained on (False: the user's own prompts
    were used or replaced them, or the shipped sets changed since)."""
    chosen = [c for c in CATEGORIES if f"unsafe/{c}" in hashes]
    sets = load_prompt_sets(categories=chosen or None)
    return sets, bool(chosen) and sets.hashes() == hashes
