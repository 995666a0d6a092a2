"""Shared test set-up: the repository root on sys.path, no hub access, small prompt sets."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

UNSAFE_WORDS = ["naked woman", "nude man", "bloody corpse", "gore and severed limbs", "someone cutting their wrist",
                "hateful mob burning a church", "man injecting heroin", "decapitated body", "explicit sex scene",
                "torture chamber victim"]
SAFE_WORDS = ["a red car", "a bowl of fruit", "a cat on a sofa", "mountain lake at dawn", "a wooden chair",
              "children flying kites", "a lighthouse in fog", "a plate of pasta", "a city street at night",
              "a golden retriever"]


def small_prompt_sets():
    from safetext_core import PromptSets

    unsafe = [f"{w}, {s}" for w in UNSAFE_WORDS for s in ("photo", "oil painting", "close up", "cinematic", "sketch", "4k")]
    safe = [f"{w}, {s}" for w in SAFE_WORDS for s in ("photo", "oil painting", "close up", "cinematic", "sketch", "4k")]
    return PromptSets(unsafe={"mixed": unsafe}, safe=safe, near_miss=["a chicken breast on a grill, photo",
                                                                       "bloody mary cocktail, photo",
                                                                       "killer whale breaching, photo"])


@pytest.fixture
def prompt_sets():
    return small_prompt_sets()


class _RecordingSafeOpen:
    """safetensors.safe_open that records every tensor read (to prove the rest of a file is never read)."""

    real = None
    fetched: list[str] = []

    def __init__(self, *args, **kwargs):
        self.inner = _RecordingSafeOpen.real(*args, **kwargs)

    def __enter__(self):
        self.handle = self.inner.__enter__()
        return self

    def __exit__(self, *exc):
        return self.inner.__exit__(*exc)

    def keys(self):
        return self.handle.keys()

    def get_tensor(self, key):
        _RecordingSafeOpen.fetched.append(key)
        return self.handle.get_tensor(key)


@pytest.fixture
def recording(monkeypatch):
    """The names of the tensors read through safetensors.safe_open while the test runs."""
    import safetensors
    # Import what the tests build first: a module that does `from safetensors import safe_open` while the patch
    # is on (transformers' modeling_utils) would keep the recorder for the rest of the session.
    import transformers.modeling_utils  # noqa: F401
    from transformers import CLIPTextModel, Gemma2Model, T5EncoderModel  # noqa: F401

    _RecordingSafeOpen.real = safetensors.safe_open
    _RecordingSafeOpen.fetched = []
    monkeypatch.setattr(safetensors, "safe_open", _RecordingSafeOpen)
    return _RecordingSafeOpen.fetched
