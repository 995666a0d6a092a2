"""Apply a SafeText file to a diffusers ``StableDiffusionPipeline`` / ``StableDiffusionXLPipeline``.

``apply_safetext(pipe, "file.safetensors", strength=1.0, mode="embedding")`` returns a handle whose
``enabled``, ``strength`` and ``mode`` can be changed between generations and whose ``remove()``
restores the pipeline. The encoders' weights are never modified: the handle overrides each encoder's
``forward`` on the instance, computing the aligned pass with substituted parameters. Disabled (or
strength 0 in embedding mode) calls the original forward directly: bit-for-bit the original output.
"""
from __future__ import annotations

import os
from typing import Any

from torch import nn

from .blend import blend_outputs, check_mode, check_strength, run_shifted
from .fingerprint import fingerprint_state_dict
from .models import to_model_names
from .safetext_file import SafeTextFile, SafeTextFileError

# Which pipeline attribute holds which encoder, per family.
PIPELINE_ENCODERS = {
    "sd1": {"clip_l": "text_encoder"},
    "sd2": {"clip_h": "text_encoder"},
    "sdxl": {"clip_l": "text_encoder", "clip_g": "text_encoder_2"},
}


class SafeTextHandle:
    """Live control over a SafeText file applied to a pipeline."""

    def __init__(self, pipe: Any, file: SafeTextFile, strength: float, mode: str, enabled: bool,
                 override_fingerprint: bool):
        if file.family not in PIPELINE_ENCODERS:
            raise SafeTextFileError(f"a {file.family} SafeText file cannot be applied to a diffusion pipeline")
        self.file = file
        self._strength = check_strength(strength)
        self._mode = check_mode(mode)
        self.enabled = bool(enabled)
        self._modules: dict[str, nn.Module] = {}
        for encoder, attribute in PIPELINE_ENCODERS[file.family].items():
            module = getattr(pipe, attribute, None)
            if module is None:
                raise SafeTextFileError(f"this pipeline has no {attribute} for the file's {encoder} encoder")
            self._modules[encoder] = module
        fingerprints = {e: fingerprint_state_dict(m.state_dict()) for e, m in self._modules.items()}
        self.warnings = file.check_fingerprints(fingerprints, override=override_fingerprint)
        self._deltas = {e: to_model_names(m, file.deltas.get(e, {})) for e, m in self._modules.items()}
        self._cache: dict = {}
        for encoder, module in self._modules.items():
            if "forward" in module.__dict__:
                raise RuntimeError(f"{type(module).__name__} already has a patched forward (another SafeText handle?)")
            module.forward = self._make_forward(encoder, module)

    # ------------------------------------------------------------------ controls
    @property
    def strength(self) -> float:
        return self._strength

    @strength.setter
    def strength(self, value: float) -> None:
        self._strength = check_strength(value)
        self._cache.clear()

    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, value: str) -> None:
        self._mode = check_mode(value)

    def remove(self) -> None:
        for module in self._modules.values():
            module.__dict__.pop("forward", None)
        self._modules.clear()
        self._cache.clear()

    def __enter__(self) -> "SafeTextHandle":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove()

    # ------------------------------------------------------------------ the patched forward
    def _make_forward(self, encoder: str, module: nn.Module):
        original_forward = type(module).forward.__get__(module)
        inside = {"active": False}
        handle = self

        def forward(*args: Any, **kwargs: Any) -> Any:
            strength = handle._strength
            if inside["active"] or not handle.enabled or strength == 0.0:
                return original_forward(*args, **kwargs)
            # Weight blend shifts by s; embedding blend runs the fully aligned encoder and lerps outputs.
            shift = strength if handle._mode == "weight" else 1.0
            inside["active"] = True  # functional_call calls module(...) again: route that to the original
            try:
                aligned = run_shifted(module, handle._deltas[encoder], shift, *args,
                                      cache=handle._cache, **kwargs)
            finally:
                inside["active"] = False
            if handle._mode == "weight" or strength == 1.0:
                return aligned
            return blend_outputs(original_forward(*args, **kwargs), aligned, strength)

        return forward


def apply_safetext(pipe: Any, file: str | os.PathLike | SafeTextFile, strength: float = 1.0,
                   mode: str = "embedding", enabled: bool = True, override_fingerprint: bool = False) -> SafeTextHandle:
    """Apply ``file`` to ``pipe``; see the module docstring. Raises ``FingerprintMismatch`` for another checkpoint's file."""
    loaded = file if isinstance(file, SafeTextFile) else SafeTextFile.load(file)
    return SafeTextHandle(pipe, loaded, strength, mode, enabled, override_fingerprint)
