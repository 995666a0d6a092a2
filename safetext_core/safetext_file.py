"""The SafeText file: weight differences plus everything needed to trust and apply them.

One ``.safetensors`` file per aligned checkpoint (DESIGN section 4):

* tensors ``text_encoders.<encoder>.transformer.<param without .weight>.diff`` (``.diff_b`` for biases),
  float32 differences aligned - original, in ComfyUI's generic layout, so stock ComfyUI's LoRA loader
  applies the file even where our nodes are absent;
* string metadata ``safetext.*``: format version, family, per-encoder fingerprint of the original
  weights, training config, prompt-set hashes and evaluation figures.

Loading goes through safetensors only (never pickle) and validates everything before use.
"""
from __future__ import annotations

import json
import math
import os
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch

from .errors import FingerprintMismatch, SafeTextFileError
from .families import FAMILIES
from .fingerprint import fingerprints_match, short_id

FORMAT_VERSION = 1
_KEY = re.compile(r"^text_encoders\.([a-z0-9_]+)\.transformer\.(.+)\.(diff|diff_b)$")


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


def atomic_save(tensors: Mapping[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> Path:
    """Write next to the target, then rename: an interrupted write never leaves a half file behind."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=str(path.parent))
    os.close(fd)
    try:
        save_file(dict(tensors), temporary, metadata=metadata)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)  # mkstemp makes 0600; a model file is as readable as any other
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    return path


def _expand_low_rank(tensors: dict[str, torch.Tensor], name: str) -> dict[str, torch.Tensor]:
    """Rebuild ``.diff`` tensors from ``lora_up``/``lora_down`` pairs (files written by the low-rank export)."""
    out = {k: v for k, v in tensors.items() if not k.endswith((".lora_up.weight", ".lora_down.weight", ".alpha"))}
    for key in tensors:
        if key.endswith(".lora_up.weight"):
            base = key[: -len(".lora_up.weight")]
            down = tensors.get(base + ".lora_down.weight")
            if down is None:
                raise SafeTextFileError(f"{name}: {key} has no matching lora_down tensor")
            up = tensors[key].float()
            alpha = float(tensors[base + ".alpha"]) if base + ".alpha" in tensors else float(up.shape[1])
            out[base + ".diff"] = (up @ down.float()) * (alpha / up.shape[1])
    return out


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
                f"SafeText file {self.name!r} was made for another checkpoint ({self.base_name or 'unknown base'}): "
                + "; ".join(problems) + ". Train a file for this checkpoint, or override the check to apply it anyway.")
        return problems

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
        return meta

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        if path.suffix != ".safetensors":
            path = path.with_name(path.name + ".safetensors")
        tensors = {param_to_key(e, p): t.detach().to("cpu", torch.float32).contiguous()
                   for e, params in self.deltas.items() for p, t in params.items()}
        if not tensors:
            raise SafeTextFileError("nothing to save: training changed no weight")
        atomic_save(tensors, path, self.metadata())
        self.path = path
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "SafeTextFile":
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise SafeTextFileError(f"SafeText file {path} does not exist")
        if path.suffix.lower() != ".safetensors":
            raise SafeTextFileError(f"{path.name}: SafeText files are .safetensors; other formats are never unpickled")
        try:
            with safe_open(str(path), framework="pt", device="cpu") as f:
                meta = f.metadata() or {}
                if "safetext.format" not in meta:
                    raise SafeTextFileError(f"{path.name} is a .safetensors file but not a SafeText file (no safetext metadata)")
                keys = list(f.keys())
                tensors = {k: f.get_tensor(k) for k in keys}
        except SafeTextFileError:
            raise
        except Exception as error:  # safetensors raises several types for damaged files
            raise SafeTextFileError(f"{path.name} is damaged or not a safetensors file ({error})") from None
        try:
            version = int(meta["safetext.format"])
        except ValueError:
            raise SafeTextFileError(f"{path.name}: unreadable format version {meta['safetext.format']!r}") from None
        if version > FORMAT_VERSION:
            raise SafeTextFileError(f"{path.name} uses SafeText format {version}; this version reads up to "
                                    f"{FORMAT_VERSION}. Update SafeText.")
        family = meta.get("safetext.family", "")
        if family not in FAMILIES:
            raise SafeTextFileError(f"{path.name}: unknown model family {family!r}")
        deltas: dict[str, dict[str, torch.Tensor]] = {}
        tensors = _expand_low_rank(tensors, path.name)
        for key, tensor in tensors.items():
            encoder, param = key_to_param(key)
            if not tensor.is_floating_point():
                raise SafeTextFileError(f"{path.name}: tensor {key} is not floating point")
            if not bool(torch.isfinite(tensor).all()):
                raise SafeTextFileError(f"{path.name}: tensor {key} holds NaN or infinite values")
            deltas.setdefault(encoder, {})[param] = tensor.float()
        if not deltas:
            raise SafeTextFileError(f"{path.name} holds no weight differences")
        expected = {e.name for e in FAMILIES[family].encoders}
        stray = sorted(set(deltas) - expected)
        if stray:
            raise SafeTextFileError(f"{path.name}: encoders {stray} do not belong to family {family}")

        def parsed(name: str, default: Any) -> Any:
            try:
                return json.loads(meta.get(name, "")) if meta.get(name) else default
            except json.JSONDecodeError:
                raise SafeTextFileError(f"{path.name}: metadata {name} is not valid JSON") from None

        fingerprints = {k[len("safetext.fingerprint."):]: v for k, v in meta.items() if k.startswith("safetext.fingerprint.")}
        missing = sorted(set(deltas) - set(fingerprints))
        if missing:
            raise SafeTextFileError(f"{path.name}: no fingerprint for {missing}; the file cannot be checked")
        return cls(family=family, deltas=deltas, fingerprints=fingerprints, config=parsed("safetext.config", {}),
                   prompt_hashes=parsed("safetext.prompt_sets", {}), figures=parsed("safetext.figures", {}),
                   base_name=meta.get("safetext.base", ""), created=meta.get("safetext.created", ""), path=path)

    # ------------------------------------------------------------------ views for hosts
    def comfy_patches(self, strength_scale: float = 1.0) -> dict[str, torch.Tensor]:
        """``{ComfyUI CLIP key: delta}``, e.g. ``clip_l.transformer.text_model.encoder.layers.0.mlp.fc1.weight``."""
        return {f"{e}.transformer.{p}": t * strength_scale for e, params in self.deltas.items() for p, t in params.items()}

    def describe(self) -> str:
        lines = [
            f"SafeText file: {self.path or self.name}",
            f"  family:       {self.family} ({FAMILIES[self.family].title})",
            f"  base:         {self.base_name or 'unknown'}",
            f"  created:      {self.created or 'unknown'}",
            f"  encoders:     " + ", ".join(f"{e} ({len(self.deltas[e])} tensors, fingerprint {short_id(self.fingerprints.get(e, '?'))})"
                                       for e in self.encoders),
            f"  parameters:   {self.parameter_count():,} changed",
        ]
        norms = [float(t.norm()) for d in self.deltas.values() for t in d.values()]
        if norms:
            lines.append(f"  delta norm:   {math.sqrt(sum(n * n for n in norms)):.4g}")
        if self.config:
            keep = ("steps", "learning_rate", "lam", "anchor_weight", "batch_size", "safe_distance", "train", "seed")
            lines.append("  config:       " + ", ".join(f"{k}={self.config[k]}" for k in keep if k in self.config))
        for group, values in sorted(self.figures.items()):
            if isinstance(values, dict):
                shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(values.items()))
                lines.append(f"  {group}: {shown}")
            else:
                lines.append(f"  {group}: {values}")
        return "\n".join(lines)
