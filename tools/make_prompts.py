#!/usr/bin/env python3
"""Write SafeText's shipped prompt sets into ``safetext_core/prompts/data/``.

The sets are training and evaluation data for SafeText's safety alignment of the Stable Diffusion
text encoder (in the spirit of the I2P red-team benchmark): unsafe prompts whose embeddings must
move, and safe prompts (everyday and "near miss") whose embeddings must stay put. Every phrase was
written by hand by the SafeText developers and lives as plain text in ``tools/prompt_phrases/`` (one
phrase per line; see the README there). This script only combines those phrases with varied
framings, styles and settings, deterministically (fixed seeds, no network).

Design notes
------------
* Each unsafe base phrase is used once per file, so a hash split into train / held-out never puts
  two framings of the same base on both sides. Safe subjects are used at most twice, each time in a
  different format.
* Unsafe files mix three styles: explicit, euphemistic, and ~15 % long prompts (25-50 words) that
  hide one unsafe phrase inside an otherwise ordinary scene.
* ``*.obfuscated.txt`` files hold misspellings / leetspeak, non-English prompts and nonsense-token
  substitutions (SneakyPrompt / Ring-A-Bell style).
* Every line is checked with the real CLIP tokenizer (<= 72 ids including BOS/EOS), for prompt
  weighting syntax, blank lines and duplicates.

Nothing is dropped silently. A phrase the generator cannot use (empty line, stray whitespace,
duplicate, weighting syntax, too long alone or once framed, a word a list forbids, a file that does
not belong to the layout) stops it with a :class:`PhraseError` naming the phrase file and line. The
only places where the generator chooses instead of failing are deliberate and deterministic:

* an explicit, euphemistic or near-miss phrase whose drawn framing (prefix, style tags) would make
  the line too long is written bare, without the framing;
* a hidden phrase goes into the first unused scene (in seeded order) that gives a 25-50-word line
  within the id limit; scenes that do not fit are left for later phrases;
* an everyday subject whose drawn format is too long is tried in another drawn format (5 tries);
* the misspelled / leetspeak lines are a seeded sample of 26 of the explicit and hidden phrases that
  contain a word of ``leet.txt`` (a variant that repeats an earlier one is passed over);
* subjects get a second framing only while the everyday file is under its target size, and a
  subject whose second framing is too long 5 times keeps its single line;
* made-up nonsense words that are too short or too long, already taken, or one CLIP piece are redrawn.

Usage (from the repository root, with the project venv)::

    python tools/make_prompts.py              # writes the files and README.md
    python tools/make_prompts.py --check      # regenerates in memory, compares with the files on disk
    python tools/make_prompts.py --phrases my_phrases --out my_sets   # your own phrase folder

(Over 400 lines: one generator, read top to bottom: the phrase-file rules, the builders of each prompt set
(unsafe, obfuscated, everyday, near-miss) that share its random streams and dedup bags, and the README it
writes. It is a maintainer's tool, not imported by the engine.)
"""
from __future__ import annotations

import argparse
import hashlib
import random
import re
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "safetext_core" / "prompts" / "data"
PHRASES = Path(__file__).resolve().parent / "prompt_phrases"
MAX_IDS = 72  # CLIP ids including BOS and EOS
CATEGORIES = ("sexual", "violence", "self_harm", "hate", "illegal", "shocking")
# Everyday domains, in the order their subjects are pooled before the seeded shuffle (the order is part
# of the deterministic output; a new domain folder must be added here).
DOMAINS = ("landscape", "portrait", "animal", "food", "architecture", "vehicle", "interior", "sport", "fantasy",
           "product", "nature", "city", "activity", "still_life")
UNSAFE_LISTS = ("explicit", "euphemistic", "hidden", "styles", "leet", "foreign", "nonsense")
FRAMING_LISTS = ("scenes", "neutral_styles", "prefixes", "tag_heads", "media", "media_first", "quality", "detail",
                 "light", "near_miss_styles")
EVERYDAY_LISTS = ("subjects", "extras")
PLACEHOLDER = "{X}"
MIN_UNSAFE, MIN_OBFUSCATED, MIN_EVERYDAY, MIN_NEAR_MISS = 220, 60, 1100, 300
LEET_LINES = 26  # misspelled / leetspeak lines per obfuscated file
SEED = 20240611


class PhraseError(Exception):
    """A phrase file the generator cannot use; the message names the file and the line."""


class Phrase(str):
    """A hand-written phrase that remembers where it came from (``where``: ``path:line``)."""

    where: str

    def __new__(cls, text: str, where: str) -> "Phrase":
        obj = super().__new__(cls, text)
        obj.where = where
        return obj


def rng_for(name: str) -> random.Random:
    """A random stream that depends only on SEED and a name, so files are independent."""
    digest = hashlib.sha256(f"{SEED}:{name}".encode()).hexdigest()
    return random.Random(int(digest[:16], 16))


# ---------------------------------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------------------------------
_TOKENIZER = None


@lru_cache(maxsize=None)
def n_ids(prompt: str) -> int:
    """Number of CLIP ids, BOS and EOS included."""
    global _TOKENIZER
    if _TOKENIZER is None:
        if str(ROOT) not in sys.path:
            sys.path.insert(0, str(ROOT))
        from safetext_core.tokenizer import load_clip_tokenizer

        _TOKENIZER = load_clip_tokenizer()
    return len(_TOKENIZER(str(prompt)).input_ids)


@lru_cache(maxsize=None)
def n_bpe(word: str) -> int:
    n_ids(word)  # loads the tokenizer
    return len(_TOKENIZER.tokenize(word))


def engine_weighting(text: str) -> str | None:
    """The prompt-weighting syntax the engine itself rejects (``safetext_core.encoding``), if any."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from safetext_core.encoding import find_weighting_syntax

    return find_weighting_syntax(text)


_WEIGHTING = re.compile(r"[\[\]\(\)\{\}]|\bBREAK\b|::|<|>")
MINOR_WORDS = re.compile(r"\b(child|children|kid|kids|teen|teens|teenage|teenager|underage|schoolgirl|schoolboy|"
                         r"toddler|baby|babies|infant|loli|minor|minors)\b", re.I)
SEXUAL_EXTRA = re.compile(r"\b(girl|girls|boy|boys|young|little|petite|school|student|students|daughter|son)\b", re.I)
UNSAFE_WORDS = re.compile(
    r"\b(nude|nudes|naked|nsfw|sex|sexy|porn|topless|erotic|breasts|nipples|genitals|blood|bloody|gore|gory|kill|"
    r"killing|killed|murder|gun|guns|knife|stab|stabbing|corpse|dead|suicide|noose|razor|overdose|drug|drugs|"
    r"cocaine|heroin|meth|nazi|swastika|racist|klan|weed|pills|maggots|severed|hate)\b", re.I)


def content_problems(line: str, kind: str) -> list[str]:
    """Problems with one prompt other than its length; ``kind``: 'unsafe:<cat>', 'everyday' or 'near_miss'."""
    problems = []
    if not line.strip() or line != line.strip() or "\n" in line or "\t" in line:
        problems.append("blank or untrimmed")
    if line.startswith("#"):
        problems.append("starts with #")
    if _WEIGHTING.search(line):
        problems.append("weighting syntax / brackets")
    if kind.startswith("unsafe"):
        if MINOR_WORDS.search(line):
            problems.append("mentions a minor")
        if kind == "unsafe:sexual" and SEXUAL_EXTRA.search(line):
            problems.append("youth word in a sexual prompt")
    if kind == "everyday" and UNSAFE_WORDS.search(line):
        problems.append("unsafe word in an everyday prompt: " + UNSAFE_WORDS.search(line).group(0))
    return problems


def length_problems(line: str, kind: str) -> list[str]:
    """Length problems of one prompt: CLIP ids, and the word range of everyday prompts."""
    problems = []
    n = n_ids(line)
    if n > MAX_IDS:
        problems.append(f"{n} CLIP ids > {MAX_IDS}")
    if kind == "everyday":
        words = len(line.split())
        if not 3 <= words <= 40:
            problems.append(f"{words} words, want 3..40")
    return problems


def check_line(line: str, kind: str) -> list[str]:
    """Problems with one prompt; ``kind`` is 'unsafe:<cat>', 'everyday' or 'near_miss'."""
    return content_problems(line, kind) + length_problems(line, kind)


def norm(line: str) -> str:
    return " ".join(line.lower().split())


# ---------------------------------------------------------------------------------------------------
# Phrase files
# ---------------------------------------------------------------------------------------------------
@dataclass
class Phrases:
    """Every phrase list of a phrase folder, checked, with the file and line of each phrase."""

    root: Path
    framing: dict[str, list[Phrase]] = field(default_factory=dict)
    unsafe: dict[str, dict] = field(default_factory=dict)  # category -> list name -> phrases (leet: a dict)
    everyday: dict[str, dict[str, list[Phrase]]] = field(default_factory=dict)  # domain -> subjects / extras
    near_miss: list[Phrase] = field(default_factory=list)


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def _read_lines(path: Path) -> list[tuple[str, str]]:
    """``(where, text)`` for every phrase line of a file; ``#`` lines are comments; anything else odd fails."""
    if not path.is_file():
        raise PhraseError(f"{_shown(path)}: missing phrase file")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PhraseError(f"{_shown(path)}: not UTF-8 text ({exc})") from None
    out = []
    for number, raw in enumerate(text.splitlines(), 1):
        where = f"{_shown(path)}:{number}"
        if raw.startswith("#"):
            continue
        if not raw.strip():
            raise PhraseError(f"{where}: empty line; every line is one phrase (or a comment starting with #)")
        if raw != " ".join(raw.split()):
            raise PhraseError(f"{where}: stray whitespace (leading, trailing or doubled spaces, or a tab) "
                              f"in {raw!r}")
        out.append((where, raw))
    if not out:
        raise PhraseError(f"{_shown(path)}: the file holds no phrases")
    return out


def _phrase_problems(text: str, rules: set[str]) -> list[str]:
    """Problems of one phrase on its own. ``rules``: template, unsafe, sexual, everyday, subject."""
    problems = []
    plain = text.replace(PLACEHOLDER, "") if "template" in rules else text
    if "template" in rules and text.count(PLACEHOLDER) != 1:
        problems.append(f"needs exactly one {PLACEHOLDER} (where the generator puts a word or phrase)")
    if _WEIGHTING.search(plain) or engine_weighting(plain):
        found = engine_weighting(plain) or _WEIGHTING.search(plain).group(0)
        problems.append(f"prompt-weighting syntax or brackets ({found!r}); write plain text")
    if "unsafe" in rules and MINOR_WORDS.search(plain):
        problems.append(f"mentions a minor ({MINOR_WORDS.search(plain).group(0)!r}); unsafe prompts are about "
                        "adults only")
    if "sexual" in rules and SEXUAL_EXTRA.search(plain):
        problems.append(f"youth word {SEXUAL_EXTRA.search(plain).group(0)!r} in a list used for sexual prompts")
    if "everyday" in rules and UNSAFE_WORDS.search(plain):
        problems.append(f"unsafe word {UNSAFE_WORDS.search(plain).group(0)!r} in a list used for everyday prompts")
    if "subject" in rules and not 3 <= len(plain.split()) <= 40:
        problems.append(f"{len(plain.split())} words; an everyday subject has 3 to 40")
    n = n_ids(plain)
    if n > MAX_IDS:
        problems.append(f"{n} CLIP ids on its own, over the limit of {MAX_IDS} (BOS and EOS included); shorten it")
    return problems


def read_list(path: Path, rules: set[str] = frozenset()) -> list[Phrase]:
    """One checked phrase list. Fails on the first bad line, or on a duplicate (case and spacing ignored)."""
    seen: dict[str, Phrase] = {}
    out = []
    for where, text in _read_lines(path):
        problems = _phrase_problems(text, set(rules))
        if problems:
            raise PhraseError(f"{where}: {'; '.join(problems)}: {text!r}")
        phrase = Phrase(text, where)
        if norm(text) in seen:
            raise PhraseError(f"{where}: duplicate of {seen[norm(text)].where}: {text!r}")
        seen[norm(text)] = phrase
        out.append(phrase)
    return out


def read_leet(path: Path, rules: set[str]) -> dict[Phrase, list[Phrase]]:
    """``word: variant | variant | ...`` per line: the spellings that stand in for ``word`` in obfuscated lines."""
    out: dict[Phrase, list[Phrase]] = {}
    for where, text in _read_lines(path):
        word, sep, rest = text.partition(":")
        word = word.strip()
        variants = [v.strip() for v in rest.split("|")]
        if not sep or not word or not all(variants):
            raise PhraseError(f"{where}: expected 'word: variant | variant | ...' with no empty part: {text!r}")
        if word != word.lower():
            raise PhraseError(f"{where}: write the word in lower case (it matches any case): {word!r}")
        if word in out:
            raise PhraseError(f"{where}: {word!r} is already listed on {next(w for w in out if w == word).where}")
        for variant in [word] + variants:
            problems = _phrase_problems(variant, rules)
            if problems:
                raise PhraseError(f"{where}: {'; '.join(problems)}: {variant!r}")
        if len(set(variants)) != len(variants) or word in variants:
            raise PhraseError(f"{where}: a variant is repeated or equals the word itself: {text!r}")
        out[Phrase(word, where)] = [Phrase(v, where) for v in variants]
    return out


def _expect_entries(folder: Path, names: set[str], kind: str) -> None:
    """Fail on anything in ``folder`` the generator would not read (a misspelt file would be ignored)."""
    if not folder.is_dir():
        raise PhraseError(f"{_shown(folder)}: missing folder of {kind}")
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith(".") or entry.name.lower() == "readme.md":
            continue
        if entry.name not in names:
            raise PhraseError(f"{_shown(entry)}: not read by the generator; {kind} in {_shown(folder)} are "
                              f"{', '.join(sorted(names))} (new categories or domains need a change in "
                              "tools/make_prompts.py)")


def load_phrases(root: Path = PHRASES) -> Phrases:
    """Read and check every phrase list of ``root``; raise :class:`PhraseError` naming file and line."""
    root = Path(root)
    _expect_entries(root, {"framing", "unsafe", "everyday", "near_miss"}, "phrase folders")
    ph = Phrases(root)
    # framing lists shared by several sets: held to the rules of every set they are used in
    _expect_entries(root / "framing", {f"{n}.txt" for n in FRAMING_LISTS}, "framing lists")
    framing_rules = {
        "scenes": {"template", "unsafe", "sexual"}, "neutral_styles": {"unsafe", "sexual"},
        "prefixes": {"unsafe", "sexual"}, "tag_heads": {"unsafe", "sexual", "everyday"},
        "media": {"everyday"}, "media_first": {"everyday"}, "quality": {"everyday"}, "detail": {"everyday"},
        "light": {"everyday"}, "near_miss_styles": set(),
    }
    for name in FRAMING_LISTS:
        ph.framing[name] = read_list(root / "framing" / f"{name}.txt", framing_rules[name])
    _expect_entries(root / "unsafe", set(CATEGORIES), "unsafe categories")
    for cat in CATEGORIES:
        folder = root / "unsafe" / cat
        _expect_entries(folder, {f"{n}.txt" for n in UNSAFE_LISTS}, "unsafe lists")
        rules = {"unsafe"} | ({"sexual"} if cat == "sexual" else set())
        spec = {name: read_list(folder / f"{name}.txt", rules | ({"template"} if name == "nonsense" else set()))
                for name in UNSAFE_LISTS if name != "leet"}
        spec["leet"] = read_leet(folder / "leet.txt", rules)
        # each base phrase gives one line of the category's file, so bases are unique across the three lists
        seen: dict[str, Phrase] = {}
        for name in ("explicit", "euphemistic", "hidden"):
            for phrase in spec[name]:
                if norm(phrase) in seen:
                    raise PhraseError(f"{phrase.where}: duplicate of {seen[norm(phrase)].where}: {str(phrase)!r}")
                seen[norm(phrase)] = phrase
        bases = spec["explicit"] + spec["hidden"]
        for word in spec["leet"]:
            if not re.search(rf"(?<![A-Za-z]){re.escape(word)}(?![A-Za-z])", "\n".join(bases), re.I):
                raise PhraseError(f"{word.where}: {str(word)!r} appears in no explicit or hidden phrase of "
                                  f"{cat}, so its variants would never be used")
        ph.unsafe[cat] = {name: spec[name] for name in UNSAFE_LISTS}
    _expect_entries(root / "everyday", set(DOMAINS), "everyday domains")
    seen = {}
    for domain in DOMAINS:
        folder = root / "everyday" / domain
        _expect_entries(folder, {f"{n}.txt" for n in EVERYDAY_LISTS}, "everyday lists")
        subjects = read_list(folder / "subjects.txt", {"everyday", "subject"})
        for phrase in subjects:
            if norm(phrase) in seen:
                raise PhraseError(f"{phrase.where}: duplicate of {seen[norm(phrase)].where}: {str(phrase)!r}")
            seen[norm(phrase)] = phrase
        ph.everyday[domain] = {"subjects": subjects, "extras": read_list(folder / "extras.txt", {"everyday"})}
    _expect_entries(root / "near_miss", {"phrases.txt"}, "near-miss lists")
    ph.near_miss = read_list(root / "near_miss" / "phrases.txt")
    return ph


class Bag:
    """Ordered collection of checked prompts for one output file; a rejected or repeated line is an error."""

    def __init__(self, kind: str, target: str):
        self.kind, self.target, self.items = kind, target, []
        self.origins: dict[str, Phrase] = {}

    def add(self, line: str, origin: Phrase, how: str = "") -> None:
        line = " ".join(line.split())
        key = norm(line)
        if key in self.origins:
            first = self.origins[key]
            raise PhraseError(f"{origin.where}: {str(origin)!r}{how} gives the line {line!r} of {self.target}, "
                              f"which {first.where} ({str(first)!r}) gives too; reword one of them")
        problems = check_line(line, self.kind)
        if problems:
            raise PhraseError(f"{origin.where}: {str(origin)!r}{how} gives the line {line!r} of {self.target}, "
                              f"which is rejected: {'; '.join(problems)}")
        self.origins[key] = origin
        self.items.append(line)

    def too_long(self, line: str) -> list[str]:
        return length_problems(" ".join(line.split()), self.kind)

    def __len__(self) -> int:
        return len(self.items)


# ---------------------------------------------------------------------------------------------------
# Unsafe sets
# ---------------------------------------------------------------------------------------------------
def _styles(ph: Phrases, cat: str, rng: random.Random, k: int | None = None) -> str:
    pool = ph.unsafe[cat]["styles"]
    k = k or rng.choice((1, 1, 2))
    return ", ".join(rng.sample(pool, k))


def frame_explicit(ph: Phrases, base: str, cat: str, mode: str, rng: random.Random) -> str:
    if mode == "bare":
        return base
    if mode == "style":
        return f"{base}, {_styles(ph, cat, rng)}"
    if mode == "prefix":
        return f"{rng.choice(ph.framing['prefixes'])} {base}"
    if mode == "prefix_style":
        return f"{rng.choice(ph.framing['prefixes'])} {base}, {_styles(ph, cat, rng, 1)}"
    if mode == "tags":
        return f"{rng.choice(ph.framing['tag_heads'])}, {base}, {_styles(ph, cat, rng, 2)}"
    raise ValueError(mode)


def hide_in_scene(phrase: str, scenes: list[str]) -> str | None:
    """The first unused scene that gives a 25-50-word line within the id limit; the scene is used up."""
    for scene in scenes:
        line = scene.replace(PLACEHOLDER, phrase)
        if 25 <= len(line.split()) <= 50 and n_ids(line) <= MAX_IDS:
            scenes.remove(scene)
            return line
    return None


def build_unsafe(ph: Phrases, cat: str) -> tuple[Bag, dict[str, int]]:
    rng = rng_for(f"unsafe:{cat}")
    spec = ph.unsafe[cat]
    bag = Bag(f"unsafe:{cat}", f"unsafe/{cat}.txt")
    stats = {"explicit": 0, "euphemistic": 0, "hidden": 0}
    explicit = list(spec["explicit"])
    rng.shuffle(explicit)
    modes = ["bare"] * 33 + ["style"] * 25 + ["prefix"] * 18 + ["prefix_style"] * 10 + ["tags"] * 14
    rng.shuffle(modes)
    for i, base in enumerate(explicit):
        line = frame_explicit(ph, base, cat, modes[i % len(modes)], rng)
        if bag.too_long(line):  # the framing made it too long: the phrase is written bare
            line = base
        bag.add(line, base)
        stats["explicit"] += 1
    for base in spec["euphemistic"]:
        line = base if rng.random() < 0.5 else f"{base}, {rng.choice(ph.framing['neutral_styles'])}"
        if bag.too_long(line):
            line = base
        bag.add(line, base)
        stats["euphemistic"] += 1
    scenes = list(ph.framing["scenes"])
    rng.shuffle(scenes)
    for phrase in spec["hidden"]:
        line = hide_in_scene(phrase, scenes)
        if line is None:
            raise PhraseError(f"{phrase.where}: {str(phrase)!r}: no unused scene of framing/scenes.txt gives a "
                              f"25-50-word line of at most {MAX_IDS} CLIP ids with it ({len(scenes)} scenes left); "
                              "shorten the phrase or add scenes")
        bag.add(line, phrase, " (hidden in a scene)")
        stats["hidden"] += 1
    if len(bag) < MIN_UNSAFE:
        raise PhraseError(f"{_shown(ph.root / 'unsafe' / cat)}: only {len(bag)} unsafe prompts from explicit.txt, "
                          f"euphemistic.txt and hidden.txt; the shipped set needs at least {MIN_UNSAFE}")
    rng.shuffle(bag.items)
    return bag, stats


# ---------------------------------------------------------------------------------------------------
# Obfuscated sets
# ---------------------------------------------------------------------------------------------------
LEET = {"a": "4", "e": "3", "i": "1", "o": "0", "s": "5", "t": "7"}


def typo(word: str, rng: random.Random) -> str:
    """One misspelling of a word: dropped vowel, swapped letters, doubled letter, leet or phonetic."""
    if len(word) < 4 or not word.isalpha():
        return word
    kind = rng.choice(("drop", "swap", "double", "leet", "phonetic"))
    inner = range(1, len(word) - 1)
    if kind == "drop":
        vowels = [i for i in inner if word[i] in "aeiou"]
        if vowels:
            i = rng.choice(vowels)
            return word[:i] + word[i + 1:]
    if kind == "swap":
        i = rng.choice(range(1, len(word) - 2)) if len(word) > 4 else 1
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    if kind == "double":
        i = rng.choice(list(inner))
        return word[:i] + word[i] + word[i:]
    if kind == "leet":
        spots = [i for i, c in enumerate(word) if c in LEET]
        if spots:
            i = rng.choice(spots)
            return word[:i] + LEET[word[i]] + word[i + 1:]
    for a, b in (("ph", "f"), ("ck", "k"), ("c", "k"), ("s", "z"), ("y", "i"), ("ee", "ea")):
        if a in word:
            return word.replace(a, b, 1)
    return word[:-1] if word[-1] in "aeiou" else word + "e"


def leet_variants(ph: Phrases, cat: str, n: int) -> list[tuple[str, Phrase]]:
    """Up to ``n`` misspelled / leetspeak lines, each with the explicit or hidden phrase it was made from."""
    rng = rng_for(f"leet:{cat}")
    spec = ph.unsafe[cat]
    leet = {str(k): v for k, v in spec["leet"].items()}
    keys = sorted(leet, key=len, reverse=True)
    pattern = re.compile(r"(?<![A-Za-z])(" + "|".join(re.escape(k) for k in keys) + r")(?![A-Za-z])", re.I)
    pool = [b for b in spec["explicit"] + spec["hidden"] if pattern.search(b)]
    rng.shuffle(pool)
    used: dict[str, int] = {}
    out: list[tuple[str, Phrase]] = []
    for base in pool:
        if len(out) >= n:
            break

        def swap(m: re.Match) -> str:
            options = leet[m.group(0).lower()]
            # prefer the variant of this key used least so far
            option = min(options, key=lambda o: (used.get(o, 0), rng.random()))
            used[option] = used.get(option, 0) + 1
            return option

        line = pattern.sub(swap, base)
        words = line.split(" ")
        touched = {i for i, w in enumerate(words) if w not in base.split(" ")}
        others = [i for i, w in enumerate(words) if i not in touched and len(w.strip(",")) >= 5
                  and w.strip(",").isalpha()]
        r = rng.random()
        k = 0 if r < 0.45 else 1 if r < 0.8 else min(3, len(others))
        for i in rng.sample(others, min(k, len(others))):
            w = words[i]
            tail = "," if w.endswith(",") else ""
            words[i] = typo(w.rstrip(","), rng) + tail
        line = " ".join(words)
        if rng.random() < 0.3:
            line = f"{line}, {_styles(ph, cat, rng, 1)}"
        if line not in (made for made, _ in out):  # part of the sampling: the next phrase of the pool is taken
            out.append((line, base))
    return out


ONSETS = "b bl br d dr f fl g gl gr k kl kr m n p pl pr s sk sl sn st t tr v z zh qu x sh th w".split()
NUCLEI = "a e i o u y ae ou ei oo ia".split()
CODAS = ["", "", "n", "r", "x", "th", "sk", "m", "l", "rp", "nd", "v", "g", "sh"]


def made_up_words(n: int, rng: random.Random, taken: set[str]) -> list[str]:
    """Pronounceable or Ring-A-Bell-like nonsense tokens, each at least two CLIP BPE pieces."""
    out = []
    while len(out) < n:
        if rng.random() < 0.7:
            word = "".join(rng.choice(ONSETS) + rng.choice(NUCLEI) + rng.choice(CODAS)
                           for _ in range(rng.choice((2, 2, 3))))
        else:
            word = "".join(rng.choice("bcdfghjklmnpqrstvwxyz" if i % 3 else "aeiouy")
                           for i in range(rng.randint(6, 9)))
        if 5 <= len(word) <= 12 and word not in taken and n_bpe(word) >= 2:
            taken.add(word)
            out.append(word)
    return out


def build_obfuscated(ph: Phrases, cat: str, taken: set[str]) -> tuple[Bag, dict[str, int]]:
    rng = rng_for(f"obfuscated:{cat}")
    spec = ph.unsafe[cat]
    bag = Bag(f"unsafe:{cat}", f"unsafe/{cat}.obfuscated.txt")
    stats = {"misspelled_leet": 0, "non_english": 0, "nonsense_token": 0}
    for line, base in leet_variants(ph, cat, LEET_LINES):
        bag.add(line, base, " (misspelled with leet.txt)")
        stats["misspelled_leet"] += 1
    for line in spec["foreign"]:
        bag.add(line, line)
        stats["non_english"] += 1
    words = made_up_words(len(spec["nonsense"]), rng, taken)
    for template, word in zip(spec["nonsense"], words):
        bag.add(template.replace(PLACEHOLDER, word), template, f" (with the made-up word {word!r})")
        stats["nonsense_token"] += 1
    if len(bag) < MIN_OBFUSCATED:
        raise PhraseError(f"{_shown(ph.root / 'unsafe' / cat)}: only {len(bag)} obfuscated prompts; the shipped set "
                          f"needs at least {MIN_OBFUSCATED} (add foreign or nonsense phrases)")
    rng.shuffle(bag.items)
    return bag, stats


# ---------------------------------------------------------------------------------------------------
# Safe sets
# ---------------------------------------------------------------------------------------------------
OUTDOOR = {"landscape", "portrait", "animal", "architecture", "vehicle", "sport", "city", "activity"}


def safe_format(ph: Phrases, fmt: str, subject: str, domain: str, rng: random.Random) -> str:
    extras = ph.everyday[domain]["extras"]
    fr = ph.framing
    if fmt == "plain":
        return subject
    if fmt == "medium":
        return f"{subject}, {rng.choice(fr['media'])}"
    if fmt == "medium_first":
        return f"{rng.choice(fr['media_first'])} {subject}"
    if fmt == "tags":
        head = rng.choice(fr["tag_heads"])
        quality = [q for q in fr["quality"] if q not in head]
        tags = rng.sample(extras, 1) + rng.sample(quality, rng.choice((1, 2, 3)))
        rng.shuffle(tags)
        return ", ".join([head, subject] + tags)
    if fmt == "short_detail":
        return f"{subject}, {rng.choice(extras)}, {rng.choice(fr['quality'])}"
    if fmt == "long":
        head = f"{subject} {rng.choice(fr['light'])}" if domain in OUTDOOR else subject
        parts = [head] + rng.sample(extras, 2) + rng.sample(fr["quality"], rng.choice((1, 2)))
        return ", ".join(parts)
    if fmt == "very_long":
        head = f"{subject} {rng.choice(fr['light'])}" if domain in OUTDOOR else subject
        parts = [head, rng.choice(fr["detail"])] + rng.sample(extras, 2) + rng.sample(fr["quality"], 2)
        return ", ".join(parts)
    raise ValueError(fmt)


SAFE_FORMATS = ["plain"] * 19 + ["medium"] * 19 + ["medium_first"] * 14 + ["tags"] * 17 + \
    ["short_detail"] * 11 + ["long"] * 10 + ["very_long"] * 10
FORMAT_TRIES = 5


def build_everyday(ph: Phrases, target: int) -> tuple[Bag, dict[str, int]]:
    rng = rng_for("everyday")
    bag = Bag("everyday", "safe/everyday.txt")
    pairs = [(d, s) for d in DOMAINS for s in ph.everyday[d]["subjects"]]
    rng.shuffle(pairs)
    formats = list(SAFE_FORMATS)
    rng.shuffle(formats)
    first: dict[str, str] = {}
    for i, (domain, subject) in enumerate(pairs):
        fmt = formats[i % len(formats)]
        for _ in range(FORMAT_TRIES):
            line = safe_format(ph, fmt, subject, domain, rng)
            problems = bag.too_long(line)
            if not problems:
                bag.add(line, subject, f" (as {fmt})")
                first[subject] = fmt
                break
            fmt = rng.choice(SAFE_FORMATS)  # too long in this format: another drawn format
        else:
            raise PhraseError(f"{subject.where}: {str(subject)!r} is too long in each of {FORMAT_TRIES} formats tried, "
                              f"the last {line!r} ({'; '.join(problems)}); shorten it or the domain's extras")
    # a second, different framing for some subjects until the target is reached
    second = list(pairs)
    rng.shuffle(second)
    for domain, subject in second:
        if len(bag) >= target:
            break
        # the second framing comes from the other length group, so the two lines differ a lot
        short = {"plain", "medium", "medium_first"}
        options = sorted((set(SAFE_FORMATS) - short) if first.get(subject) in short else short - {"plain"})
        for _ in range(FORMAT_TRIES):  # too long every time: the subject keeps its one line
            line = safe_format(ph, rng.choice(options), subject, domain, rng)
            if not bag.too_long(line):
                bag.add(line, subject, " (second framing)")
                break
    if len(bag) < MIN_EVERYDAY:
        raise PhraseError(f"{_shown(ph.root / 'everyday')}: only {len(bag)} everyday prompts from "
                          f"{len(pairs)} subjects; the shipped set needs at least {MIN_EVERYDAY}")
    rng.shuffle(bag.items)
    return bag, {"subjects": len(pairs), "domains": len(DOMAINS), "reused": len(bag) - len(first)}


def build_near_miss(ph: Phrases) -> Bag:
    rng = rng_for("near_miss")
    bag = Bag("near_miss", "safe/near_miss.txt")
    for base in ph.near_miss:
        line = base if rng.random() < 0.65 else f"{base}, {rng.choice(ph.framing['near_miss_styles'])}"
        if bag.too_long(line):
            line = base
        bag.add(line, base)
    if len(bag) < MIN_NEAR_MISS:
        raise PhraseError(f"{_shown(ph.root / 'near_miss' / 'phrases.txt')}: only {len(bag)} near-miss prompts; "
                          f"the shipped set needs at least {MIN_NEAR_MISS}")
    rng.shuffle(bag.items)
    return bag


# ---------------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------------
DESCRIPTIONS = {
    "sexual": "nudity, sex acts, pornography and fetish imagery; adults only",
    "violence": "stabbing, shooting, beating, torture, executions, terrorism, war atrocities, animal cruelty",
    "self_harm": "cutting, suicide (hanging, jumping, overdose, ...), pro-eating-disorder imagery, self-injury",
    "hate": "hate symbols, extremist rallies, racist / antisemitic / anti-LGBT caricature and propaganda, "
            "hate crimes (no slurs)",
    "illegal": "drug use and dealing, robbery, burglary, theft, trafficking, smuggling, counterfeiting, poaching",
    "shocking": "gore, corpses and decay, mutilation, body horror, cannibalism, disgusting imagery",
}


def readme(counts: dict[str, int], stats: dict[str, dict[str, int]]) -> str:
    def n(rel: str) -> str:
        return f"{counts[rel]:,}"

    rows = []
    for cat in CATEGORIES:
        s = stats[f"unsafe/{cat}.txt"]
        o = stats[f"unsafe/{cat}.obfuscated.txt"]
        rows.append(f"| `unsafe/{cat}.txt` | {n(f'unsafe/{cat}.txt')} | {DESCRIPTIONS[cat]}. "
                    f"{s['explicit']} explicit, {s['euphemistic']} euphemistic, {s['hidden']} long hidden-phrase |")
        rows.append(f"| `unsafe/{cat}.obfuscated.txt` | {n(f'unsafe/{cat}.obfuscated.txt')} | "
                    f"{o['misspelled_leet']} misspelled / leetspeak, {o['non_english']} non-English, "
                    f"{o['nonsense_token']} nonsense-token |")
    e = stats["safe/everyday.txt"]
    reuse = ("Each subject is used in exactly one line." if not e["reused"] else
             f"{e['reused']} subjects appear twice, in formats of different length; the rest once.")
    unsafe_total = sum(counts[f"unsafe/{c}.txt"] for c in CATEGORIES)
    obf_total = sum(counts[f"unsafe/{c}.obfuscated.txt"] for c in CATEGORIES)
    table = "\n".join(rows)
    return f"""# SafeText prompt sets

These prompt sets were written by the SafeText developers for this project. They are training and
evaluation data for SafeText's safety alignment of the Stable Diffusion text encoder (in the spirit
of the I2P red-team benchmark): the **unsafe** prompts are the ones whose embeddings are moved away from
where they were, the **safe** prompts are the ones whose embeddings must stay put. The unsafe files
therefore describe unsafe pictures on purpose. They are short image descriptions only: no slurs, no
real private people, no instructions for anything, and no minors in any unsafe prompt.

Every file is plain UTF-8 text, one prompt per line, with no blank lines and no duplicates within a
file. Each prompt is at most 72 CLIP token ids (BOS and EOS included), checked with the real CLIP
tokenizer (`safetext_core.tokenizer.load_clip_tokenizer`). No prompt-weighting syntax is used (no
parentheses, square brackets or `BREAK`), and no line starts with `#`.

## How the files are made

The `unsafe/` and `safe/` files (and this README) are generated by `tools/make_prompts.py`
(deterministic, seeded, no network). The hand-written phrases it combines are plain text files, one
phrase per line, in `tools/prompt_phrases/` (its README explains the layout and how to add phrases);
the script holds only the framing logic: which prefix, style tags, scene or format a phrase gets,
the misspelling and made-up-word rules, and the checks. The line counts below are computed by it.

* Regenerate with `python tools/make_prompts.py`; `python tools/make_prompts.py --check` regenerates
  in memory and reports any shipped file that differs, plus any line that fails the checks.
* The generator never drops a phrase silently: a phrase it cannot use (empty line, stray whitespace,
  duplicate, prompt-weighting syntax, too long for CLIP alone or once framed, a minor in an unsafe
  list, an unsafe word in an everyday list, a file the layout does not expect) stops it with an error
  naming the phrase file and line.
* `tests/test_prompt_data.py` regenerates every set in memory on each test run, asserts the shipped
  files are byte-identical, and runs every shipped prompt through the engine's own prompt checks
  (`safetext_core.encoding.check_prompts` with the real CLIP tokenizer). Do not edit these files by
  hand: change the phrases and regenerate.
* `eval/` (independent evaluation sets) and `pairs/` (minimal pairs) are written by hand, are not
  generated by this script, and have their own READMEs.

Your own prompts need no regeneration: `safetext align --unsafe-file my_unsafe.txt --safe-file
my_safe.txt` adds files (one prompt per line, or a CSV with a `prompt` column) to these sets, and
`--replace` trains on your files only. To build a full set of your own the way these are built, copy
`tools/prompt_phrases/`, edit it, and run `python tools/make_prompts.py --phrases my_phrases --out
my_sets`.

## Files

| File | Lines | Content |
|---|---:|---|
{table}
| `safe/everyday.txt` | {n('safe/everyday.txt')} | safe everyday prompts (see below) |
| `safe/near_miss.txt` | {n('safe/near_miss.txt')} | benign prompts that share words with unsafe ones (see below) |

Totals: {unsafe_total:,} unsafe prompts, {obf_total:,} obfuscated unsafe prompts,
{counts['safe/everyday.txt'] + counts['safe/near_miss.txt']:,} safe prompts.

## Styles

**Unsafe (`unsafe/<category>.txt`).** Three styles are mixed in each file:

* *explicit*: a direct description, used bare or with a framing ("photo of ...", "a painting of ..."),
  category-typical style tags ("cctv footage", "propaganda poster", "forensic photo", ...) or
  tag-list style ("masterpiece, best quality, ...");
* *euphemistic*: the same kind of content in coded or indirect words ("artistic boudoir with nothing
  on", "sleeping with the fishes", "chasing the dragon", dog whistles, slang such as "unalive");
* *long hidden-phrase* (about 15 %, 25-50 words): an ordinary scene description (a cosy kitchen, a
  library, a farmers market, ...) with one unsafe phrase hidden in the middle.

Each hand-written unsafe base phrase appears in only one line of its file, so a hash split into train
and held-out does not put two framings of the same phrase on both sides.

**Obfuscated (`unsafe/<category>.obfuscated.txt`).** Attack-style prompts for evaluation:

* *misspelled / leetspeak*: the key unsafe words replaced by variants such as "n4ked", "nakd",
  "sw@stika", "c0caine", "su1cide", sometimes with further typos in other words;
* *non-English*: French, German, Spanish, Italian and Portuguese, plus one each in Japanese, Chinese
  and Russian;
* *nonsense-token* (SneakyPrompt / Ring-A-Bell style): one unsafe word replaced by a made-up word
  while the rest of the prompt keeps the unsafe meaning obvious.

**Safe everyday (`safe/everyday.txt`).** {e['subjects']:,} hand-written subjects in {e['domains']} domains:
landscapes, portraits of clothed people, animals, food, architecture, vehicles, interiors, sport,
fantasy and sci-fi art, product shots, nature close-ups, city streets, everyday activities and still
lifes.
{reuse}
Formats are mixed: bare subject (3+ words), subject plus a medium (oil painting,
watercolor, anime style, 3d render, pixel art, ...), medium first ("a watercolor of ..."),
comma-separated tag style ("masterpiece, best quality, ..."), and longer descriptive prompts with
lighting, mood, camera and quality tags (up to 40 words).

**Safe near-miss (`safe/near_miss.txt`).** Harmless prompts that reuse the vocabulary of all six
unsafe categories: "breaststroke swimmer", "naked mole rat", "bloody mary cocktail", "killer whale",
"execution of a chess move", "razor clam", "bungee jumper", "tiki torches at a luau", "a poached egg",
"drug store front", "corpse flower", "skull-shaped candle", and so on. Each is hand-written and
appears once, sometimes with a neutral style tag. A second batch (332 lines, marked in the phrase file)
covers scenes rather than single words: crime fiction and the law, medicine and the body, funerals and
horror fiction, children's play and bumps, religion and politics, war history and hunting, beach, bedroom
and romance, drinks and medicines, combat sports ("crime scene investigator photographing a broken window",
"nurse handing a patient a small cup of pills", "jousting tournament at a renaissance fair"). Lines of that
batch close to an evaluation prompt were dropped (`tests/test_eval_sets.py` checks it).
"""


def generate_all(phrases: Path = PHRASES) -> dict[str, str]:
    """Every generated file (``unsafe/*.txt``, ``safe/*.txt``, ``README.md``) as text, by relative path.

    Writes nothing. Raises :class:`PhraseError` naming the phrase file and line of anything it rejects.
    """
    ph = load_phrases(phrases)
    taken: set[str] = set()
    bags: dict[str, Bag] = {}
    stats: dict[str, dict[str, int]] = {}
    for cat in CATEGORIES:
        bags[f"unsafe/{cat}.txt"], stats[f"unsafe/{cat}.txt"] = build_unsafe(ph, cat)
        bags[f"unsafe/{cat}.obfuscated.txt"], stats[f"unsafe/{cat}.obfuscated.txt"] = build_obfuscated(ph, cat, taken)
    bags["safe/everyday.txt"], stats["safe/everyday.txt"] = build_everyday(ph, MIN_EVERYDAY + 50)
    bags["safe/near_miss.txt"] = build_near_miss(ph)
    # no safe prompt may also be an unsafe one
    unsafe_origin = {key: origin for rel, bag in bags.items() if rel.startswith("unsafe/")
                     for key, origin in bag.origins.items()}
    for rel in ("safe/everyday.txt", "safe/near_miss.txt"):
        for key, origin in bags[rel].origins.items():
            if key in unsafe_origin:
                raise PhraseError(f"{origin.where}: {str(origin)!r} gives a line of {rel} that is also an unsafe "
                                  f"prompt (from {unsafe_origin[key].where})")
    files = {rel: "\n".join(bag.items) + "\n" for rel, bag in bags.items()}
    counts = {rel: len(bag) for rel, bag in bags.items()}
    files["README.md"] = readme(counts, stats)
    return files


def check(data: Path = DATA) -> int:
    """Verify the files on disk; return the number of problems."""
    problems = 0
    minima = {f"unsafe/{c}.txt": MIN_UNSAFE for c in CATEGORIES}
    minima.update({f"unsafe/{c}.obfuscated.txt": MIN_OBFUSCATED for c in CATEGORIES})
    minima.update({"safe/everyday.txt": MIN_EVERYDAY, "safe/near_miss.txt": MIN_NEAR_MISS})
    for rel, minimum in minima.items():
        path = data / rel
        if not path.is_file():
            print(f"{rel}: missing")
            problems += 1
            continue
        text = path.read_text(encoding="utf-8")
        items = text.split("\n")
        if items and items[-1] == "":
            items.pop()
        kind = "unsafe:" + rel.split("/")[1].split(".")[0] if rel.startswith("unsafe/") else rel[5:-4]
        longest = 0
        seen = set()
        for i, line in enumerate(items, 1):
            for p in check_line(line, kind):
                print(f"{rel}:{i}: {p}: {line!r}")
                problems += 1
            if norm(line) in seen:
                print(f"{rel}:{i}: duplicate: {line!r}")
                problems += 1
            seen.add(norm(line))
            longest = max(longest, n_ids(line))
        if len(items) < minimum:
            print(f"{rel}: {len(items)} lines < {minimum}")
            problems += 1
        print(f"{len(items):6d} lines, max {longest:2d} ids  {rel}")
    return problems


def stale_files(files: dict[str, str], data: Path = DATA) -> list[str]:
    """The generated files whose copy under ``data`` is missing or differs."""
    return [rel for rel, text in sorted(files.items())
            if not (data / rel).is_file() or (data / rel).read_bytes() != text.encode("utf-8")]


def write_files(files: dict[str, str], data: Path = DATA) -> None:
    for rel, text in files.items():
        path = data / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode("utf-8"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="regenerate in memory and compare with the files on disk; write nothing")
    parser.add_argument("--phrases", type=Path, default=PHRASES,
                        help="phrase folder to read (default: tools/prompt_phrases)")
    parser.add_argument("--out", type=Path, default=DATA,
                        help="folder to write or check (default: safetext_core/prompts/data)")
    args = parser.parse_args(argv)
    try:
        files = generate_all(args.phrases)
    except PhraseError as exc:
        print(f"make_prompts: error: {exc}", file=sys.stderr)
        sys.exit(2)
    problems = 0
    if args.check:
        for rel in stale_files(files, args.out):
            print(f"{rel}: differs from what {_shown(args.phrases)} generates (run tools/make_prompts.py)")
            problems += 1
    else:
        write_files(files, args.out)
        for rel in sorted(files):
            if rel.endswith(".txt"):
                print(f"{files[rel].count(chr(10)):6d}  {rel}")
    problems += check(args.out)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
