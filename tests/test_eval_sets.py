"""The hand-written evaluation sets under ``safetext_core/prompts/data/eval`` stay well-formed and held out.

``eval/benign`` holds everyday prompts by topic and ``eval/adjacent`` holds harmless prompts that share a
setting, a body part or a word with unsafe ones (the over-blocking probe). ``eval/unsafe`` holds unsafe
prompts by category (``<category>.txt``) plus obfuscated variants (``<category>.obfuscated.txt``: misspellings,
leetspeak, other languages, made-up words), the held-out probe of how far erasure generalises. They were
written independently of the training data; these tests keep them that way:

1. every expected file exists and meets its minimum count;
2. no blank, duplicate, comment or prompt-weighting lines;
3. every prompt fits CLIP's 75-token window (project tokenizer); unsafe eval prompts fit 60 tokens;
4. phrasing is held out: no eval prompt shares a 4-word sequence with any training prompt
   (``data/safe``, ``data/unsafe`` including ``*.obfuscated.txt``, and ``data/pairs`` when it exists),
   ignoring 4-grams made almost only of function words;
5. the shipped training loader never returns an eval prompt;
6. the README's count table matches the files;
7. sexual unsafe eval prompts never use words that suggest a minor or a school setting.
"""
from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "safetext_core" / "prompts" / "data"
EVAL = DATA / "eval"

BENIGN_TOPICS = (
    "people_everyday", "romance_affection", "children_family", "medicine_anatomy", "law_courts",
    "police_crime_fiction", "history_war_memorials", "sport_combat_sports", "food_drink", "religion",
    "politics_protest", "animals_nature", "art_nude_in_art_history", "fashion_swimwear",
    "architecture_interiors", "vehicles_transport", "fantasy", "scifi", "products", "landscapes_travel",
    "jobs_trades", "hobbies_crafts", "holidays_celebrations", "music_performance", "science_space",
)
ADJACENT_TOPICS = (
    "bedroom_bathroom", "beach_swim", "body_medical", "crime_police_law", "violence_words_harmless",
    "drugs_pharmacy_bar", "death_grief_horror_fiction", "weapons_hunting_military_history",
    "children_injury_play", "religion_politics_symbols",
)
UNSAFE_CATEGORIES = ("sexual", "violence", "self_harm", "hate", "illegal", "shocking")
MIN_BENIGN_TOTAL, MIN_BENIGN_PER_FILE = 2000, 80
MIN_ADJACENT_TOTAL, MIN_ADJACENT_PER_FILE = 500, 40
MIN_UNSAFE_PER_FILE, MIN_UNSAFE_OBFUSCATED_PER_FILE = 60, 20
MAX_CLIP_TOKENS = 75  # 77-token context minus BOS and EOS
MAX_UNSAFE_CLIP_TOKENS = 60  # unsafe eval prompts stay well inside the window
NGRAM = 4
STOPWORDS = frozenset("a an the of in on at with and to by for from is her his their its into over under near".split())
WEIGHTING = re.compile(r"[()\[\]]|\bBREAK\b|:\s*-?\d")


def _eval_files() -> dict[str, list[Path]]:
    return {"benign": [EVAL / "benign" / f"{t}.txt" for t in BENIGN_TOPICS],
            "adjacent": [EVAL / "adjacent" / f"{t}.txt" for t in ADJACENT_TOPICS],
            "unsafe": [EVAL / "unsafe" / f"{c}.txt" for c in UNSAFE_CATEGORIES],
            "unsafe_obfuscated": [EVAL / "unsafe" / f"{c}.obfuscated.txt" for c in UNSAFE_CATEGORIES]}


def _all_eval_files() -> list[Path]:
    """The expected files plus any other ``*.txt`` someone adds under eval/ (they must obey the rules too)."""
    expected = [p for files in _eval_files().values() for p in files]
    extra = sorted(p for p in EVAL.rglob("*.txt") if p not in expected) if EVAL.is_dir() else []
    return expected + extra


@lru_cache(maxsize=1)
def _eval_prompts() -> tuple[tuple[str, int, str], ...]:
    """(file relative to eval/, line number, prompt) for every line of every eval file."""
    rows = []
    for path in _all_eval_files():
        if path.is_file():
            lines = path.read_text(encoding="utf-8").split("\n")
            if lines and lines[-1] == "":  # the final newline ends the last line; it is not a blank line
                lines.pop()
            rows.extend((str(path.relative_to(EVAL)), number, line) for number, line in enumerate(lines, 1))
    return tuple(rows)


def _words(text: str) -> list[str]:
    """Lower-cased, punctuation stripped (replaced by a space), whitespace-split."""
    return re.sub(r"[^\w\s]|_", " ", text.lower()).split()


def _ngrams(text: str) -> set[tuple[str, ...]]:
    words = _words(text)
    grams = (tuple(words[i:i + NGRAM]) for i in range(len(words) - NGRAM + 1))
    return {g for g in grams if sum(w not in STOPWORDS for w in g) >= 2}


def _training_lines() -> list[tuple[str, str]]:
    """(source, prompt text) for every training prompt: safe/, unsafe/ (incl. obfuscated) and pairs/."""
    lines: list[tuple[str, str]] = []
    for folder in ("safe", "unsafe"):
        for path in sorted((DATA / folder).glob("*.txt")):
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if line.strip():
                    lines.append((f"{folder}/{path.name}:{number}", line))
    pairs = DATA / "pairs"
    if pairs.is_dir():
        for path in sorted(p for p in pairs.rglob("*") if p.is_file()):
            try:
                text = path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                continue
            for number, line in enumerate(text.splitlines(), 1):
                for column, field in enumerate(line.split("\t")):
                    if field.strip():
                        lines.append((f"pairs/{path.relative_to(pairs)}:{number} col {column}", field))
    return lines


# 1. files and counts ----------------------------------------------------------------------------------------

def test_every_eval_file_exists_and_meets_its_minimum():
    problems = []
    totals = {}
    minimum_per_file = {"benign": MIN_BENIGN_PER_FILE, "adjacent": MIN_ADJACENT_PER_FILE,
                        "unsafe": MIN_UNSAFE_PER_FILE, "unsafe_obfuscated": MIN_UNSAFE_OBFUSCATED_PER_FILE}
    for kind, files in _eval_files().items():
        totals[kind] = 0
        for path in files:
            if not path.is_file():
                problems.append(f"missing file {path.relative_to(ROOT)}")
                continue
            count = sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
            totals[kind] += count
            if count < minimum_per_file[kind]:
                problems.append(f"{path.relative_to(ROOT)} has {count} prompts, needs >= {minimum_per_file[kind]}")
    if totals.get("benign", 0) < MIN_BENIGN_TOTAL:
        problems.append(f"benign total {totals.get('benign', 0)} < {MIN_BENIGN_TOTAL}")
    if totals.get("adjacent", 0) < MIN_ADJACENT_TOTAL:
        problems.append(f"adjacent total {totals.get('adjacent', 0)} < {MIN_ADJACENT_TOTAL}")
    assert (EVAL / "README.md").is_file(), "eval/README.md is missing"
    assert not problems, "\n".join(problems)


# 2. well-formed lines ---------------------------------------------------------------------------------------

def test_no_blank_duplicate_comment_or_weighting_lines():
    problems = []
    seen: dict[str, str] = {}
    for name, number, line in _eval_prompts():
        where = f"eval/{name}:{number}"
        if not line.strip():
            problems.append(f"{where}: blank line")
            continue
        if line != line.strip():
            problems.append(f"{where}: leading/trailing whitespace: {line!r}")
        if line.lstrip().startswith("#"):
            problems.append(f"{where}: starts with '#': {line!r}")
        if WEIGHTING.search(line):
            problems.append(f"{where}: prompt-weighting syntax (parentheses, brackets, ':number', BREAK): {line!r}")
        if "\t" in line or "\r" in line:
            problems.append(f"{where}: tab or carriage return: {line!r}")
        key = " ".join(line.lower().split())
        if key in seen:
            problems.append(f"{where}: duplicate of {seen[key]}: {line!r}")
        else:
            seen[key] = where
    assert not problems, f"{len(problems)} malformed eval lines:\n" + "\n".join(problems[:200])


def test_eval_files_are_utf8_text_ending_in_newline():
    for path in _all_eval_files():
        if path.is_file():
            raw = path.read_bytes()
            raw.decode("utf-8")  # raises on anything that is not UTF-8
            assert not raw.startswith(b"\xef\xbb\xbf"), f"{path}: has a byte-order mark"
            assert raw.endswith(b"\n") and not raw.endswith(b"\n\n"), f"{path}: must end in exactly one newline"


# 3. CLIP length -------------------------------------------------------------------------------------------

def test_every_prompt_fits_the_clip_window():
    try:
        from safetext_core.tokenizer import TokenizerUnavailable, load_clip_tokenizer
    except ImportError as exc:  # pragma: no cover - depends on the environment
        pytest.skip(f"project tokenizer module cannot be imported: {exc}")
    try:
        tok = load_clip_tokenizer()
    except (TokenizerUnavailable, ImportError, OSError) as exc:
        pytest.skip(f"CLIP tokenizer unavailable on this machine: {exc}")
    rows = [r for r in _eval_prompts() if r[2].strip()]
    encoded = tok([r[2] for r in rows], add_special_tokens=False)["input_ids"]
    too_long = [f"eval/{name}:{number}: {len(ids)} tokens (limit {_token_limit(name)}): {line!r}"
                for (name, number, line), ids in zip(rows, encoded) if len(ids) > _token_limit(name)]
    assert not too_long, "prompts over their CLIP token limit:\n" + "\n".join(too_long)


def _token_limit(name: str) -> int:
    """CLIP tokens allowed for a prompt in the eval file ``name`` (relative to eval/)."""
    return MAX_UNSAFE_CLIP_TOKENS if name.startswith("unsafe/") else MAX_CLIP_TOKENS


# 4. phrasing held out from training ------------------------------------------------------------------------

def test_ngram_helper_ignores_function_word_sequences():
    assert _words("A man, in the rain!") == ["a", "man", "in", "the", "rain"]
    assert _ngrams("in the middle of the") == set()  # every 4-gram has a single content word
    assert ("photo", "of", "a", "cat") in _ngrams("a photo of a cat")
    assert ("a", "photo", "of", "a") not in _ngrams("a photo of a cat")


def test_no_eval_prompt_shares_a_four_word_sequence_with_training():
    training = _training_lines()
    if not training:
        pytest.skip("no training prompt files found under safetext_core/prompts/data/safe or unsafe")
    index: dict[tuple[str, ...], tuple[str, str]] = {}
    for source, text in training:
        for gram in _ngrams(text):
            index.setdefault(gram, (source, text))
    problems = []
    for name, number, line in _eval_prompts():
        for gram in sorted(_ngrams(line)):
            if gram in index:
                source, text = index[gram]
                problems.append(f"eval/{name}:{number}: {line!r}\n    shares {' '.join(gram)!r} with "
                                f"training {source}: {text!r}")
                break
    assert not problems, (f"{len(problems)} eval prompts share a 4-word sequence with a training prompt; "
                          "rewrite the eval prompt (never the training file):\n" + "\n".join(problems[:300]))


# 4b. the second near-miss batch holds no sibling of an eval prompt ------------------------------------------
# That batch was written from a brief that named example scenes, some of which the eval sets also contain (the
# issue quoted them). Sharing no 4-gram is then not enough: "children playing cops and robbers in a backyard" and
# "kids playing cops and robbers in a backyard" differ by one word. Every line of that batch must share fewer than
# 4 content words, and fewer than 3 when they are 60% or more of the shorter prompt's, with every eval prompt.

PHRASES = ROOT / "tools" / "prompt_phrases" / "near_miss" / "phrases.txt"
SECOND_BATCH_MARK = "# Second batch"
SIBLING_STOP = STOPWORDS | frozenset("as while after before during up down out off one two three four five some very "
                                     "this that who what big small little old new young large tiny".split())


def _content(text: str) -> set[str]:
    """Content words, a plural or third-person 's' stripped from words over three letters."""
    words = (w[:-1] if len(w) > 3 and w.endswith("s") else w for w in _words(text))
    return {w for w in words if w not in SIBLING_STOP and len(w) > 2}


def _siblings(line: str, eval_rows) -> list[str]:
    mine = _content(line)
    found = []
    for name, number, other in eval_rows:
        shared = mine & other[1]
        if len(shared) >= 4 or (len(shared) >= 3 and len(shared) >= 0.6 * min(len(mine), len(other[1]))):
            found.append(f"eval/{name}:{number}: {other[0]!r} (shares {sorted(shared)})")
    return found


def test_sibling_rule_catches_a_one_word_rewrite():
    rows = [("adjacent/x.txt", 1, ("kids playing cops and robbers in a backyard with toy badges",
                                   _content("kids playing cops and robbers in a backyard with toy badges")))]
    assert _siblings("children playing cops and robbers in a backyard with cardboard badges", rows)
    assert not _siblings("a chess club tournament in a school gym", rows)


def test_second_near_miss_batch_has_no_eval_sibling():
    lines = PHRASES.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(SECOND_BATCH_MARK))
    batch = [(i + 1, line) for i, line in enumerate(lines[start:], start) if not line.startswith("#")]
    assert len(batch) >= 300
    rows = [(name, number, (line, _content(line))) for name, number, line in _eval_prompts()]
    problems = [f"near_miss/phrases.txt:{n}: {line!r}\n    " + "\n    ".join(found[:3])
                for n, line in batch if (found := _siblings(line, rows))]
    assert not problems, f"{len(problems)} second-batch lines are siblings of eval prompts:\n" + "\n".join(problems)


# 5. the training loader never sees eval prompts --------------------------------------------------------------

def _strings(value) -> set[str]:
    if isinstance(value, str):
        return {value}
    if isinstance(value, dict):
        return set().union(*(_strings(v) for v in value.values())) if value else set()
    if isinstance(value, (list, tuple, set, frozenset)):
        return set().union(*(_strings(v) for v in value)) if value else set()
    if hasattr(value, "__dict__"):
        return _strings(vars(value))
    return set()


@pytest.mark.parametrize("batch", ["third_batch", "fourth_batch"])
def test_later_pair_batches_have_no_eval_sibling(batch):
    """The third and fourth pair batches were written from briefs (and, for the fourth, a pairs/README.md) whose
    examples include scenes the issue and docs/precision.md quote as collapsed, so like the second near-miss batch
    they must hold no sibling of an eval prompt, on either side of a pair."""
    rows = [(name, number, (line, _content(line))) for name, number, line in _eval_prompts()]
    problems = []
    files = sorted((DATA / "pairs" / batch).glob("*.tsv"))
    assert len(files) == 6
    for path in files:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for side in line.split("\t"):
                if found := _siblings(side, rows):
                    problems.append(f"pairs/{batch}/{path.name}:{number}: {side!r}\n    " + "\n    ".join(found[:3]))
    assert not problems, f"{len(problems)} {batch} sides are siblings of eval prompts:\n" + "\n".join(problems)


def test_shipped_training_sets_contain_no_eval_prompt():
    try:
        from safetext_core.prompt_sets import load_prompt_sets
    except ImportError as exc:  # pragma: no cover - only while the loader is being refactored
        pytest.skip(f"safetext_core.prompt_sets.load_prompt_sets cannot be imported: {exc}")

    shipped = {" ".join(s.lower().split()) for s in _strings(load_prompt_sets())}
    leaked = [f"eval/{name}:{number}: {line!r}" for name, number, line in _eval_prompts()
              if " ".join(line.lower().split()) in shipped]
    assert not leaked, "eval prompts found in the shipped training sets:\n" + "\n".join(leaked)


# 6. the README's table matches the files ----------------------------------------------------------------------

def test_readme_counts_match_the_files():
    readme = (EVAL / "README.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| `([a-z_]+(?:\.obfuscated)?\.txt)` \| ([\d,]+) \|", readme, flags=re.M))
    problems = []
    for kind, files in _eval_files().items():
        for path in files:
            if not path.is_file():
                continue
            count = sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
            listed = rows.get(path.name)
            if listed is None:
                problems.append(f"{kind}/{path.name} is not in the README table")
            elif int(listed.replace(",", "")) != count:
                problems.append(f"README lists {kind}/{path.name} with {listed} prompts, the file has {count}")
    assert not problems, "\n".join(problems)


# 7. sexual unsafe prompts are about adults only ----------------------------------------------------------------

# Words (any language used in the obfuscated file) that would make a sexual prompt's age ambiguous or place it
# in a school; matched as whole lower-cased words after the same normalisation as the overlap check
# (Chinese and Japanese entries as substrings).
MINOR_OR_SCHOOL_WORDS = frozenset("""
    girl girls boy boys teen teens teenage teenager teenagers young younger youth youthful child children
    kid kids minor minors underage juvenile adolescent school schoolgirl schoolboy student students pupil
    classroom petite loli lolita shota barely jailbait
    fille filles garçon jeune lycéenne écolière mädchen junge jugendliche schülerin schule chica chico niña
    niño joven colegiala ragazza ragazzo giovane scolaretta menina menino jovem colegial девочка девушка
    школьница подросток 少女 少年 学生 女子高生
""".split())


def _is_cjk(word: str) -> bool:
    return any("\u3040" <= ch <= "\u30ff" or "\u4e00" <= ch <= "\u9fff" for ch in word)


def test_sexual_unsafe_prompts_never_suggest_a_minor_or_a_school():
    problems = []
    for name, number, line in _eval_prompts():
        if name in ("unsafe/sexual.txt", "unsafe/sexual.obfuscated.txt"):
            words = set(_words(line))
            # Chinese and Japanese are written without spaces, so those words are matched as substrings.
            found = sorted(w for w in MINOR_OR_SCHOOL_WORDS if w in words or (_is_cjk(w) and w in line))
            if found:
                problems.append(f"eval/{name}:{number}: {found}: {line!r}")
    assert not problems, "sexual eval prompts must be about adults only:\n" + "\n".join(problems)
