"""SafeText core: align a text-to-image model's text encoder so unsafe prompts lose their meaning.

Host-agnostic engine shared by the command line, the diffusers API, the ComfyUI nodes and the
AUTOMATIC1111/Forge extension. It never imports ComfyUI, A1111 or Gradio code.

Typical use::

    from safetext_core import load_encoders, load_prompt_sets, AlignConfig, run_alignment
    encoders = load_encoders("model.safetensors")          # or None for the embedded MiniLM default
    outcome = run_alignment(encoders, load_prompt_sets(), AlignConfig(), output="model.safetext.safetensors")
    print(outcome.heldout)

    from safetext_core import apply_safetext               # diffusers pipelines
    handle = apply_safetext(pipe, "model.safetext.safetensors", strength=1.0)
"""
from __future__ import annotations

__version__ = "0.1.0"

from .encoding import EncoderSet, conditioning, strip_weighting_syntax
from .errors import (AlignmentCancelled, CheckpointError, FingerprintMismatch, OutputError, PromptError,
                     PromptSetError, ResumeError, SafeTextError, SafeTextFileError, SafeTextNotApplied,
                     TokenizerUnavailable, UnsupportedModel)
from .evaluation import evaluate_deltas
from .exports import export_transformers_folder
from .families import FAMILIES, get_family
from .fingerprint import fingerprint_state_dict, fingerprints_match, short_id
from .loaders import encoders_from_state_dicts, load_encoders
from .loop import AlignConfig, AlignResult, ProgressEvent, align
from .models import build_clip_text_model, hf_to_openclip_names, openclip_to_hf
from .pipeline import Outcome, run_alignment
from .prompt_sets import CATEGORIES, PromptSets, load_prompt_file, load_prompt_sets
from .safetext_file import SafeTextFile
from .weights import BLEND_MODES, apply_deltas, blend_outputs, check_mode, check_strength, shifted, shifted_parameters


def apply_safetext(*args, **kwargs):  # noqa: D401 - lazy: diffusers is only needed here
    """Apply a SafeText file to a diffusers pipeline; see :func:`safetext_core.diffusers_apply.apply_safetext`."""
    from .diffusers_apply import apply_safetext as _apply

    return _apply(*args, **kwargs)


__all__ = [name for name in dir() if not name.startswith("_")]
