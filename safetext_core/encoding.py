"""Prompts in, consumed embeddings out.

``EncoderSet`` holds a family's original (frozen) encoders and tokenizers. ``consumed_outputs``
returns, for one encoder, exactly what the diffusion model sees for each of the family's targets
(plus the pooled vector where consumed) and the mask of positions that count.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from torch import nn

from .families import EncoderSpec, Family, get_family
from .errors import PromptError

# A1111 / ComfyUI prompt syntax that does not belong in a training prompt: (word:1.2), [a:b:0.5], BREAK, <lora:...>
_WEIGHTING = re.compile(r"\([^()]*:\s*-?\d+(?:\.\d+)?\s*\)|\[[^\[\]]*\]|\bBREAK\b|<(?:lora|lyco|hypernet|embedding):[^>]*>|\(\(|\)\)")


def find_weighting_syntax(prompt: str) -> str | None:
    match = _WEIGHTING.search(prompt)
    return match.group(0) if match else None


def strip_weighting_syntax(prompt: str) -> str:
    """Plain text of a weighted prompt: ``(red hair:1.2)`` -> ``red hair``; drops BREAK and <lora:...>."""
    text = re.sub(r"<(?:lora|lyco|hypernet|embedding):[^>]*>", " ", prompt)
    text = re.sub(r"\bBREAK\b", " ", text)
    text = re.sub(r":\s*-?\d+(?:\.\d+)?\s*\)", ")", text)
    text = re.sub(r"[\[\]()]", " ", text)
    return re.sub(r"\s+", " ", text).strip()


@dataclass
class EncoderSet:
    """The original encoders of one checkpoint (frozen, eval mode) with their tokenizers."""

    family: str
    models: dict[str, nn.Module]
    tokenizers: dict[str, Any]
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def profile(self) -> Family:
        return get_family(self.family)

    def spec(self, encoder: str) -> EncoderSpec:
        return self.profile.encoder(encoder)

    def fingerprints(self) -> dict[str, str]:
        from .fingerprint import fingerprint_state_dict

        return {name: fingerprint_state_dict(model.state_dict()) for name, model in self.models.items()}

    def to(self, device: torch.device | str) -> "EncoderSet":
        for model in self.models.values():
            model.to(device)
        return self


def max_tokens(tokenizer: Any, spec: EncoderSpec) -> int:
    if spec.kind == "clip":
        return 77
    limit = getattr(tokenizer, "model_max_length", 512) or 512
    return min(int(limit), 512)


def check_prompts(prompts: Sequence[str], tokenizer: Any, spec: EncoderSpec, source: str = "prompts",
                  allow_weighting: bool = False) -> None:
    """Raise one :class:`PromptError` that lists every unusable prompt (empty, too long, weighting syntax)."""
    problems = []
    limit = max_tokens(tokenizer, spec)
    for index, prompt in enumerate(prompts):
        if not isinstance(prompt, str):
            problems.append(f"#{index + 1}: not text ({type(prompt).__name__})")
            continue
        if not allow_weighting and (syntax := find_weighting_syntax(prompt)):
            problems.append(f"#{index + 1} {prompt[:60]!r}: prompt-weighting syntax {syntax!r} is not used in training "
                            "(write plain text, or pass strip_weighting / --strip-weighting)")
            continue
        count = len(tokenizer(prompt, truncation=False)["input_ids"])
        if count > limit:
            problems.append(f"#{index + 1} {prompt[:60]!r}...: {count} tokens, over the encoder's {limit} "
                            f"({limit - 2} words-pieces plus start/end); shorten or split it")
    if problems:
        shown = "\n  ".join(problems[:10])
        more = f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else ""
        raise PromptError(f"{len(problems)} unusable prompt(s) in {source}:\n  {shown}{more}")


def tokenize(tokenizer: Any, prompts: Sequence[str], spec: EncoderSpec, device: torch.device | str = "cpu"
             ) -> dict[str, torch.Tensor]:
    if spec.kind == "clip":
        batch = tokenizer(list(prompts), padding="max_length", max_length=77, truncation=True, return_tensors="pt")
        ids = batch["input_ids"].to(device)
        return {"input_ids": ids, "mask": torch.ones_like(ids, dtype=torch.float32)}
    batch = tokenizer(list(prompts), padding=True, truncation=True, max_length=max_tokens(tokenizer, spec),
                      return_tensors="pt")
    batch = {k: v.to(device) for k, v in batch.items()}
    batch["mask"] = batch["attention_mask"].to(torch.float32)
    return batch


def consumed_outputs(model: nn.Module, batch: dict[str, torch.Tensor], spec: EncoderSpec
                     ) -> tuple[list[torch.Tensor], torch.Tensor | None]:
    """Hidden states the consumer sees, one per target of ``spec``, and the pooled vector if consumed."""
    if spec.kind == "clip":
        out = model(input_ids=batch["input_ids"], output_hidden_states=True)
        hidden = out.hidden_states
        final_norm = model.text_model.final_layer_norm
    else:
        inputs = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        out = model(**inputs, output_hidden_states=True)
        hidden = out.hidden_states
        final_norm = None
    outputs = []
    for target in spec.targets:
        if target.layer_from_end == 1 and spec.kind == "clip" and target.final_norm:
            outputs.append(out.last_hidden_state)
            continue
        state = hidden[-target.layer_from_end]
        if target.final_norm and final_norm is not None:
            state = final_norm(state)
        outputs.append(state)
    pooled = getattr(out, "text_embeds", None) if spec.pooled_weight > 0 else None
    return outputs, pooled


def conditioning(encoders: EncoderSet, prompts: Sequence[str], models: dict[str, nn.Module] | None = None,
                 device: torch.device | str = "cpu", batch_size: int = 32
                 ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """The family's default conditioning for ``prompts``: primary targets of every encoder concatenated
    along the feature axis (SDXL: 768 + 1280 = 2048 wide), the pooled vectors concatenated, and the mask.

    ``models`` replaces the original encoders (to encode with aligned ones). No gradients.
    """
    models = models or encoders.models
    conds, pools, masks = [], [], []
    with torch.no_grad():
        for start in range(0, len(prompts), batch_size):
            chunk = list(prompts[start:start + batch_size])
            parts, pooled_parts, mask = [], [], None
            for spec in encoders.profile.encoders:
                batch = tokenize(encoders.tokenizers[spec.name], chunk, spec, device)
                outputs, pooled = consumed_outputs(models[spec.name], batch, spec)
                parts.append(outputs[0].float())
                mask = batch["mask"] if mask is None else mask
                if pooled is not None:
                    pooled_parts.append(pooled.float())
            conds.append(torch.cat(parts, dim=-1).cpu())
            masks.append(mask.cpu())
            if pooled_parts:
                pools.append(torch.cat(pooled_parts, dim=-1).cpu())
    if not conds:
        raise PromptError("no prompts to encode")
    # Masked encoders pad each chunk to its own longest prompt; pad to a common length.
    length = max(c.shape[1] for c in conds)
    conds = [torch.nn.functional.pad(c, (0, 0, 0, length - c.shape[1])) for c in conds]
    masks = [torch.nn.functional.pad(m, (0, length - m.shape[1])) for m in masks]
    return torch.cat(conds), (torch.cat(pools) if pools else None), torch.cat(masks)
