"""The shipped training prompt sets are data generated from phrase files, and they stay that way.

``safetext_core/prompts/data/unsafe/*.txt``, ``safe/*.txt`` and the README there are written by
``tools/make_prompts.py`` from the hand-written phrases in ``tools/prompt_phrases/``. These tests:

1. regenerate every set in memory (nothing is written into the repository) and require the shipped
   files to be byte-identical;
2. run every shipped prompt through the engine's own checks: the prompt loader keeps every line, and
   ``safetext_core.encoding.check_prompts`` accepts them with the real CLIP tokenizer of each CLIP
   encoder SafeText supports;
3. break a copy of the phrase folder in the ways the generator must refuse (empty line, duplicate,
   weighting syntax, too long alone or once framed, ...) and require an error naming file and line;
4. show that a user's own phrase folder generates into a folder of the user's choice.
"""
from __future__ import annotations

import importlib.util
import re
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "safetext_core" / "prompts" / "data"
PHRASES = ROOT / "tools" / "prompt_phrases"


@pytest.fixture(scope="module")
def make_prompts():
    spec = importlib.util.spec_from_file_location("make_prompts_under_test", ROOT / "tools" / "make_prompts.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


@pytest.fixture(scope="module")
def generated(make_prompts):
    return make_prompts.generate_all(PHRASES)


def _shipped_training_files() -> list[str]:
    return sorted(str(p.relative_to(DATA)) for folder in ("unsafe", "safe") for p in (DATA / folder).glob("*.txt"))


# 1. regeneration ------------------------------------------------------------------------------------------

def test_shipped_sets_regenerate_byte_identically(generated):
    txt = sorted(rel for rel in generated if rel.endswith(".txt"))
    assert txt == _shipped_training_files(), "the generator and the shipped unsafe/ and safe/ files disagree on names"
    differ = [rel for rel, text in generated.items() if (DATA / rel).read_bytes() != text.encode("utf-8")]
    assert not differ, (f"shipped files differ from what tools/prompt_phrases generates: {differ}; "
                        "run `python tools/make_prompts.py` (never edit the generated files by hand)")


def test_every_phrase_file_is_plain_utf8_one_phrase_per_line():
    files = sorted(PHRASES.rglob("*.txt"))
    assert len(files) >= 80
    for path in files:
        raw = path.read_bytes()
        text = raw.decode("utf-8")
        assert not raw.startswith(b"\xef\xbb\xbf") and "\r" not in text, path
        assert text.endswith("\n") and not text.endswith("\n\n"), f"{path}: must end in exactly one newline"


# 2. the engine's own checks ------------------------------------------------------------------------------

def test_every_shipped_prompt_passes_the_engine_checks():
    from safetext_core.encoding import check_prompts
    from safetext_core.families import FAMILIES
    from safetext_core.prompt_sets import load_prompt_file
    from safetext_core.tokenizer import load_clip_tokenizer

    prompts: dict[str, list[str]] = {}
    for rel in _shipped_training_files():
        lines = (DATA / rel).read_text(encoding="utf-8").splitlines()
        assert load_prompt_file(DATA / rel) == lines, f"{rel}: the prompt loader drops or changes a line"
        prompts[rel] = lines
    specs = {(spec.pad_token, spec.kind): spec for family in FAMILIES.values() for spec in family.encoders
             if spec.kind == "clip"}
    assert len(specs) == 2  # OpenAI CLIP-L and OpenCLIP (pad "!"): every CLIP encoder SafeText trains
    for (pad_token, _), spec in specs.items():
        tokenizer = load_clip_tokenizer(pad_token=pad_token)
        for rel, lines in prompts.items():
            check_prompts(lines, tokenizer, spec, source=rel)  # raises PromptError listing every bad prompt


def test_shipped_sets_load_through_the_prompt_set_api():
    from safetext_core.prompt_sets import CATEGORIES, load_prompt_sets

    sets = load_prompt_sets()
    sets.validate()
    assert set(sets.unsafe) == set(CATEGORIES) and set(sets.obfuscated) == set(CATEGORIES)
    unsafe = {p.lower() for p in sets.all_unsafe()}
    assert not [p for p in sets.safe + sets.near_miss if p.lower() in unsafe]


# 3. a bad phrase is an error naming file and line -----------------------------------------------------------

def _copy(tmp_path: Path) -> Path:
    root = tmp_path / "phrases"
    shutil.copytree(PHRASES, root)
    return root


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def _write(path: Path, lines: list[str]) -> None:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _insert(root: Path, rel: str, index: int, text: str) -> int:
    """Put ``text`` at 0-based ``index`` of a phrase file; return its 1-based line number."""
    lines = _lines(root / rel)
    lines.insert(index, text)
    _write(root / rel, lines)
    return index + 1


def _replace(root: Path, rel: str, index: int, text: str) -> int:
    lines = _lines(root / rel)
    lines[index] = text
    _write(root / rel, lines)
    return index + 1


LONG = ", ".join(["a long winding description of an ordinary garden path with many flowers"] * 6)
# 36 words and well under 72 ids alone, but every scene has at least 17 words of its own, so no scene gives a
# hidden-phrase line of at most 50 words with it
HIDDEN = ("a man in a long grey coat and a flat cap slowly walking away from a burning corner shop at night "
          "while holding a heavy canvas bag full of stolen gold watches and rings under one arm")


def _case_empty(root):
    return "unsafe/sexual/explicit.txt", _insert(root, "unsafe/sexual/explicit.txt", 2, ""), "empty line"


def _case_whitespace(root):
    return "framing/quality.txt", _replace(root, "framing/quality.txt", 4, "sharp  focus"), "stray whitespace"


def _case_duplicate(root):
    first = _lines(root / "near_miss/phrases.txt")[0]
    line = _insert(root, "near_miss/phrases.txt", 10, first.upper())
    return "near_miss/phrases.txt", line, r"duplicate of \S*near_miss/phrases.txt:1\b"


def _case_duplicate_across_lists(root):
    explicit = _lines(root / "unsafe/hate/explicit.txt")[7]
    return "unsafe/hate/euphemistic.txt", _insert(root, "unsafe/hate/euphemistic.txt", 0, explicit), \
        r"duplicate of \S*unsafe/hate/explicit.txt:8\b"


def _case_weighting(root):
    line = _replace(root, "everyday/food/subjects.txt", 4, "a bowl of (tomato soup:1.3) on a table")
    return "everyday/food/subjects.txt", line, "prompt-weighting syntax"


def _case_break(root):
    line = _insert(root, "unsafe/violence/styles.txt", 3, "cinematic BREAK gritty")
    return "unsafe/violence/styles.txt", line, "prompt-weighting syntax"


def _case_too_long(root):
    line = _insert(root, "unsafe/shocking/euphemistic.txt", 5, LONG)
    return "unsafe/shocking/euphemistic.txt", line, r"CLIP ids on its own, over the limit of 72"


def _case_too_long_once_framed(root):
    line = _insert(root, "unsafe/illegal/hidden.txt", 0, HIDDEN)
    return "unsafe/illegal/hidden.txt", line, "no unused scene of framing/scenes.txt"


def _case_minor(root):
    line = _insert(root, "unsafe/self_harm/explicit.txt", 0, "a teenager standing on a ledge")
    return "unsafe/self_harm/explicit.txt", line, "mentions a minor"


def _case_unsafe_word_in_everyday(root):
    line = _insert(root, "everyday/portrait/extras.txt", 1, "bloody good lighting")
    return "everyday/portrait/extras.txt", line, "unsafe word 'bloody'"


def _case_template_without_placeholder(root):
    line = _insert(root, "unsafe/sexual/nonsense.txt", 2, "a woman on a bed, nothing on")
    return "unsafe/sexual/nonsense.txt", line, r"exactly one \{X\}"


def _case_leet_format(root):
    line = _insert(root, "unsafe/violence/leet.txt", 1, "blood n4ked")
    return "unsafe/violence/leet.txt", line, "expected 'word: variant"


def _case_leet_unused(root):
    line = _insert(root, "unsafe/violence/leet.txt", 0, "accordion: acc0rdion | akordion")
    return "unsafe/violence/leet.txt", line, "appears in no explicit or hidden phrase"


def _case_safe_line_is_unsafe(root):
    # an unsafe phrase that is written bare in the shipped unsafe file takes the place of a near-miss phrase
    # that is written bare too (the seeded draws stay the same, so it is written bare as well)
    unsafe_bare = set(_lines(DATA / "unsafe/hate.txt"))
    phrase = next(p for p in _lines(root / "unsafe/hate/explicit.txt") if p in unsafe_bare)
    near_miss_bare = set(_lines(DATA / "safe/near_miss.txt"))
    index = next(i for i, p in enumerate(_lines(root / "near_miss/phrases.txt")) if p in near_miss_bare)
    line = _replace(root, "near_miss/phrases.txt", index, phrase)
    return "near_miss/phrases.txt", line, "also an unsafe prompt"


CASES = [_case_empty, _case_whitespace, _case_duplicate, _case_duplicate_across_lists, _case_weighting, _case_break,
         _case_too_long, _case_too_long_once_framed, _case_minor, _case_unsafe_word_in_everyday,
         _case_template_without_placeholder, _case_leet_format, _case_leet_unused, _case_safe_line_is_unsafe]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.__name__[len("_case_"):])
def test_a_rejected_phrase_is_an_error_naming_file_and_line(make_prompts, tmp_path, case):
    root = _copy(tmp_path)
    rel, line, message = case(root)
    with pytest.raises(make_prompts.PhraseError) as caught:
        make_prompts.generate_all(root)
    text = str(caught.value)
    assert text.startswith(f"{root / rel}:{line}: "), text
    assert re.search(message, text), text


def test_a_file_outside_the_layout_is_an_error_not_ignored(make_prompts, tmp_path):
    root = _copy(tmp_path)
    (root / "unsafe" / "sexual" / "explicit.txt").rename(root / "unsafe" / "sexual" / "explict.txt")
    with pytest.raises(make_prompts.PhraseError, match=r"explict\.txt: not read by the generator"):
        make_prompts.generate_all(root)
    (root / "unsafe" / "sexual" / "explict.txt").rename(root / "unsafe" / "sexual" / "explicit.txt")
    (root / "everyday" / "gardens").mkdir()
    with pytest.raises(make_prompts.PhraseError, match=r"everyday/gardens: not read by the generator"):
        make_prompts.generate_all(root)


def test_the_command_line_reports_the_error_and_writes_nothing(make_prompts, tmp_path, capsys):
    root = _copy(tmp_path)
    line = _case_empty(root)[1]
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as stopped:
        make_prompts.main(["--phrases", str(root), "--out", str(out)])
    assert stopped.value.code == 2
    assert f"{root / 'unsafe/sexual/explicit.txt'}:{line}: empty line" in capsys.readouterr().err
    assert not out.exists()


# 4. users' own phrase folders -------------------------------------------------------------------------------

def test_a_users_phrase_folder_generates_into_their_own_folder(make_prompts, tmp_path, capsys):
    root = _copy(tmp_path)
    _insert(root, "near_miss/phrases.txt", 0, "a bowl of blood oranges on a marble counter")
    out = tmp_path / "my_sets"
    with pytest.raises(SystemExit) as stopped:
        make_prompts.main(["--phrases", str(root), "--out", str(out)])
    assert stopped.value.code == 0, capsys.readouterr().out
    near_miss = _lines(out / "safe" / "near_miss.txt")
    assert len(near_miss) == len(_lines(DATA / "safe" / "near_miss.txt")) + 1
    assert any(p.startswith("a bowl of blood oranges on a marble counter") for p in near_miss)
    assert (out / "unsafe" / "hate.txt").read_bytes() == (DATA / "unsafe" / "hate.txt").read_bytes()


# 5. packaging: a wheel (pip install git+...) carries every data file ------------------------------------------

def test_every_shipped_data_file_is_declared_as_package_data():
    """setuptools puts into a wheel only the data files that match ``package-data``; an undeclared file (the pairs,
    the evaluation sets) is missing from a non-editable install, where the loader then skips it without a word."""
    import fnmatch
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = config["tool"]["setuptools"]["package-data"]["safetext_core"]
    package = ROOT / "safetext_core"
    files = [p.relative_to(package).as_posix() for p in (package / "prompts" / "data").rglob("*") if p.is_file()]
    # fnmatch's '*' also crosses '/', so compare depth too, as setuptools' glob does
    undeclared = [f for f in files if not any(fnmatch.fnmatch(f, pat) and f.count("/") == pat.count("/")
                                               for pat in patterns)]
    assert len(files) > 70 and not undeclared, f"not in [tool.setuptools.package-data]: {undeclared}"
