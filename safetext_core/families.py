"""Model families: which text encoders a checkpoint has and which of their outputs the diffusion model sees.

SafeText aligns exactly what the consumer consumes. For CLIP that is a hidden state of a chosen
layer (optionally after the final layer norm) over all 77 positions, plus, for SDXL's OpenCLIP
bigG, the pooled and projected vector. Every family also lists the neighbouring layer that users
select with "clip skip", with a smaller weight, so a checkpoint used that way is safe too.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .errors import CheckpointError, UnsupportedModel


@dataclass(frozen=True)
class Target:
    """One consumed output: hidden state ``-layer_from_end`` (1 = last), optional final layer norm."""

    layer_from_end: int
    final_norm: bool
    weight: float = 1.0

    @property
    def label(self) -> str:
        return f"h-{self.layer_from_end}{'+ln' if self.final_norm else ''}"


@dataclass(frozen=True)
class EncoderSpec:
    """One text encoder of a family."""

    name: str  # file key: clip_l, clip_g, clip_h, t5xxl, text
    kind: str  # "clip" or "hf" (any transformers encoder, masked)
    targets: tuple[Target, ...]
    pooled_weight: float = 0.0  # > 0: the projected pooled vector is consumed (SDXL bigG)
    hidden_act: str = "quick_gelu"
    pad_token: str = "<|endoftext|>"
    layer_norm_eps: float = 1e-5
    diffusers: tuple[str, str] = ("text_encoder", "tokenizer")  # a diffusers pipeline's sub-folders for it
    a1111_prefix: str = ""  # AUTOMATIC1111's LoRA key prefix for it ("lora_te_", "lora_te1_", ...); "": none

    @property
    def uses_mask(self) -> bool:
        return self.kind != "clip"


@dataclass(frozen=True)
class Family:
    name: str
    title: str
    encoders: tuple[EncoderSpec, ...] = field(default_factory=tuple)
    diffusion: bool = True  # a text-to-image family (hosts and pipelines carry it), not a bare encoder

    @property
    def encoder_names(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.encoders)

    def encoder(self, name: str) -> EncoderSpec:
        for spec in self.encoders:
            if spec.name == name:
                return spec
        raise KeyError(f"family {self.name} has no encoder {name!r}; it has {[e.name for e in self.encoders]}")


FAMILIES: dict[str, Family] = {
    "sd1": Family("sd1", "Stable Diffusion 1.x", (
        # Default: last layer after the final norm; clip skip 2: penultimate, normed (A1111 and ComfyUI both norm it).
        EncoderSpec("clip_l", "clip", (Target(1, True, 1.0), Target(2, True, 0.5)), a1111_prefix="lora_te_"),
    )),
    "sd2": Family("sd2", "Stable Diffusion 2.x", (
        EncoderSpec("clip_h", "clip", (Target(2, True, 1.0), Target(1, True, 0.5)), hidden_act="gelu", pad_token="!",
                    a1111_prefix="lora_te_"),
    )),
    "sdxl": Family("sdxl", "Stable Diffusion XL", (
        EncoderSpec("clip_l", "clip", (Target(2, False, 1.0),), a1111_prefix="lora_te1_"),
        EncoderSpec("clip_g", "clip", (Target(2, False, 1.0),), pooled_weight=1.0, hidden_act="gelu", pad_token="!",
                    diffusers=("text_encoder_2", "tokenizer_2"), a1111_prefix="lora_te2_"),
    )),
    "generic": Family("generic", "Any transformers text encoder (last hidden state, real tokens)", (
        EncoderSpec("text", "hf", (Target(1, False, 1.0),)),
    ), diffusion=False),
}


def get_family(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        raise UnsupportedModel(f"unknown model family {name!r}; known: {', '.join(FAMILIES)}") from None


def family_by_encoders(names) -> str | None:
    """The text-to-image family whose encoders are exactly ``names`` (e.g. ComfyUI's ``clip_l`` + ``clip_g``)."""
    wanted = tuple(sorted(names))
    for family in FAMILIES.values():
        if family.diffusion and tuple(sorted(family.encoder_names)) == wanted:
            return family.name
    return None


def detect_family_from_keys(keys) -> str:
    """Guess the family of a single-file checkpoint from its tensor names."""
    keys = set(keys)
    if any(k.startswith("conditioner.embedders.1.model.") for k in keys):
        return "sdxl"
    if any(k.startswith("cond_stage_model.model.") for k in keys):
        return "sd2"
    if any(k.startswith("cond_stage_model.transformer.") for k in keys):
        return "sd1"
    if any(k.startswith("text_encoders.clip_g.") or k.startswith("clip_g.") for k in keys):
        return "sdxl"
    if any(k.startswith("text_encoders.clip_h.") for k in keys):
        return "sd2"
    if any(k.startswith("text_encoders.clip_l.") or k.startswith("clip_l.") for k in keys):
        return "sd1"
    raise CheckpointError("could not recognise the checkpoint: no SD 1.x, SD 2.x or SDXL text-encoder tensors found")
