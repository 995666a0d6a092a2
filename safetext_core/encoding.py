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
        """Each original's fingerprint; a T5 / LLM encoder's as taken from the weights it was built from
        (``models.build_hf_text_model``), so that loading it in bfloat16 does not change it."""
        from .fingerprint import fingerprint_state_dict

        return {name: getattr(model, "source_fingerprint", None) or fingerprint_state_dict(model.state_dict())
                for name, model in self.models.items()}

    def to(self, device: torch.device | str) -> "EncoderSet":
        for model in self.models.values():
            model.to(device)
        return self


def max_tokens(tokenizer: Any, spec: EncoderSpec) -> int:
    """The longest prompt, in tokens, the encoder is trained on (the template's tokens included)."""
    if spec.kind == "clip":
        return 77
    if spec.max_length:
        return spec.max_length
    limit = getattr(tokenizer, "model_max_length", 512) or 512
    return min(int(limit), 512)


def format_prompt(prompt: str, spec: EncoderSpec) -> str:
    """``prompt`` as the host hands it to the tokenizer (Lumina 2: after its system prompt)."""
    if spec.template == "{}":
        return prompt
    before, _, after = spec.template.partition("{}")
    return before + prompt + after


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
        count = len(tokenizer(format_prompt(prompt, spec), truncation=False)["input_ids"])
        if count > limit:
            what = (f"({limit - 2} words-pieces plus start/end)" if spec.kind == "clip" else
                    "(with the template the host puts around it)" if spec.template != "{}" else "")
            problems.append(f"#{index + 1} {prompt[:60]!r}...: {count} tokens, over the encoder's {limit} "
                            f"{what}; shorten or split it".replace("  ", " "))
    if problems:
        shown = "\n  ".join(problems[:10])
        more = f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else ""
        raise PromptError(f"{len(problems)} unusable prompt(s) in {source}:\n  {shown}{more}")


_PREFIX_IDS: dict[tuple[int, str], list[int]] = {}


def _lead_tokens(tokenizer: Any, spec: EncoderSpec, ids: torch.Tensor) -> int:
    """How many leading positions every row of ``ids`` shares with the template's text before the prompt
    (BOS included). Under causal attention their outputs are the same for every prompt."""
    if not spec.causal:
        return 0
    if spec.kind == "clip" and spec.template == "{}":
        return 1  # the start token
    key = (id(tokenizer), spec.template)
    prefix = _PREFIX_IDS.get(key)
    if prefix is None:
        # Trailing spaces join the prompt's first word (Gemma's "<Prompt Start> "); a newline stays a token of its own
        # in the Qwen templates ("<|im_start|>user\n").
        prefix = _PREFIX_IDS[key] = list(tokenizer(spec.template.partition("{}")[0].rstrip(" "))["input_ids"])
    lead = 0
    rows = ids.tolist()
    while lead < min(len(prefix), ids.shape[1]) and all(row[lead] == prefix[lead] for row in rows):
        lead += 1
    return lead


def tokenize(tokenizer: Any, prompts: Sequence[str], spec: EncoderSpec, device: torch.device | str = "cpu"
             ) -> dict[str, torch.Tensor]:
    """Token ids as the host builds them, and ``mask``: the positions the consumer sees (1) or not (0).

    CLIP: 77 positions, all counted. Transformers encoders: the host's template, padding to ``spec.pad_to``
    at least; with ``spec.attention_mask`` the real tokens count (and the model gets the mask), without it
    every position does (Flux's and SD3's T5 attend to and pass on their padding). An encoder whose only
    consumed output is its pooled vector gets a one-position mask. ``mask.lead_tokens`` says how many leading
    positions every prompt shares (see :func:`safetext_core.losses.content_mask`).
    """
    if spec.kind == "clip":
        batch = tokenizer(list(prompts), padding="max_length", max_length=77, truncation=True, return_tensors="pt")
        ids = batch["input_ids"].to(device)
        count = 1 if spec.pooled_only else ids.shape[1]
        mask = torch.ones((ids.shape[0], count), dtype=torch.float32, device=device)
        mask.lead_tokens = 0 if spec.pooled_only else _lead_tokens(tokenizer, spec, ids)
        return {"input_ids": ids, "mask": mask}
    texts = [format_prompt(p, spec) for p in prompts]
    batch = tokenizer(texts, padding=True, truncation=True, max_length=max_tokens(tokenizer, spec), return_tensors="pt")
    batch = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
    if "attention_mask" not in batch:
        batch["attention_mask"] = torch.ones_like(batch["input_ids"])
    short = max(spec.pad_to, 1) - batch["input_ids"].shape[1]
    if short > 0:  # the host pads to a fixed minimum with the pad token (ComfyUI: min_length, at least 1)
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        batch = {k: torch.nn.functional.pad(v, (0, short), value=pad_id if k == "input_ids" else 0)
                 for k, v in batch.items()}
    # An empty prompt without start or end token (Anima's: no template) is one pad token at the host, whose output
    # is consumed; alone in its sequence it attends to itself, masked or not, so it is a real position here.
    empty = batch["attention_mask"].sum(1) == 0
    if empty.any():
        batch["attention_mask"][empty, 0] = 1
    batch = {k: v.to(device) for k, v in batch.items()}
    if spec.uses_mask:
        batch["mask"] = batch["attention_mask"].to(torch.float32)
    else:  # no mask, or (Flux.2 Klein) a mask inside the encoder while every position is consumed
        batch["mask"] = torch.ones_like(batch["input_ids"], dtype=torch.float32)
    lead = _lead_tokens(tokenizer, spec, batch["input_ids"])
    if spec.drop_lead:  # Qwen-Image: the host cuts these positions off; they count nowhere
        batch["mask"][:, :lead] = 0.0
    batch["mask"].lead_tokens = lead
    return batch


_DECODERS = ("gemma2", "qwen3", "qwen25vl")  # language models: their forward keeps a key/value cache by default


def consumed_outputs(model: nn.Module, batch: dict[str, torch.Tensor], spec: EncoderSpec
                     ) -> tuple[list[torch.Tensor], torch.Tensor | None]:
    """Hidden states the consumer sees, one per target of ``spec``, and the pooled vector if consumed.

    A target ``layer_from_end == 0`` is the pooled vector as a sequence of one position. For transformers
    encoders the last target (1) is ``last_hidden_state`` (after T5's / Gemma's final norm, as hosts take
    it); deeper ones are the raw outputs of their layer (ComfyUI's ``intermediate_output``), and a target with
    an ``index`` is ``hidden_states[index]``. Outputs keep every input position (Qwen-Image's cut-off template
    tokens are zeros in the mask; :func:`conditioning` cuts them as the host does).
    """
    if spec.kind == "clip":
        out = model(input_ids=batch["input_ids"], output_hidden_states=True)
        hidden = out.hidden_states
        final_norm = model.text_model.final_layer_norm
    else:
        names = ("input_ids", "attention_mask", "token_type_ids") if spec.attention_mask else ("input_ids",)
        inputs = {k: v for k, v in batch.items() if k in names}
        if spec.arch in _DECODERS:  # no key/value cache: nothing generates, and a checkpointed block's recompute
            inputs["use_cache"] = False  # would append to it a second time
        out = model(**inputs, output_hidden_states=True)
        hidden = out.hidden_states
        final_norm = None
    pooled = None
    if spec.kind == "clip" and (spec.pooled_weight > 0 or spec.pooled_only):
        pooled = out.text_embeds if spec.pooled_projected else out.pooler_output
    outputs = []
    for target in spec.targets:
        if target.index is not None:
            if target.index >= len(hidden):
                raise ValueError(f"the {spec.name} encoder has {len(hidden) - 1} layers; its host reads hidden state "
                                 f"{target.index}")
            outputs.append(hidden[target.index])
            continue
        if target.pooled:
            outputs.append(pooled.unsqueeze(1))
            continue
        if target.layer_from_end == 1 and (target.final_norm or spec.kind != "clip"):
            outputs.append(out.last_hidden_state)
            continue
        state = hidden[-target.layer_from_end]
        if target.final_norm and final_norm is not None:
            state = final_norm(state)
        outputs.append(state)
    return outputs, (pooled if spec.pooled_weight > 0 else None)


def primary_output(outputs: Sequence[torch.Tensor], spec: EncoderSpec) -> torch.Tensor:
    """The encoder's main consumed output, as the host lays it out before any cut: the first target, or (Flux.2
    Klein) all targets joined along features."""
    return torch.cat(list(outputs), dim=-1) if spec.join_targets else outputs[0]


def conditioning(encoders: EncoderSet, prompts: Sequence[str], models: dict[str, nn.Module] | None = None,
                 device: torch.device | str = "cpu", batch_size: int = 32
                 ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """The family's default conditioning for ``prompts``, laid out as ComfyUI hands it to the diffusion model:
    CLIP encoders' primary targets joined along features (SDXL: 768 + 1280 = 2048 wide), transformers
    encoders' joined along the sequence after them (SD 3: CLIP-L + bigG padded to T5's 4096, then T5's
    tokens), an encoder that gives only a pooled vector adds to the pooled vectors (Flux's CLIP-L); the pooled
    vectors concatenated, and the mask of the positions that count.

    ``models`` replaces the original encoders (to encode with aligned ones). No gradients.
    """
    models = models or encoders.models
    conds, pools, masks = [], [], []
    with torch.no_grad():
        for start in range(0, len(prompts), batch_size):
            chunk = list(prompts[start:start + batch_size])
            clip_parts, clip_mask, seq_parts, seq_masks, pooled_parts = [], None, [], [], []
            for spec in encoders.profile.encoders:
                batch = tokenize(encoders.tokenizers[spec.name], chunk, spec, device)
                outputs, pooled = consumed_outputs(models[spec.name], batch, spec)
                if spec.pooled_only:
                    pooled_parts.append(outputs[0][:, 0].float())
                    continue
                if spec.kind == "clip":
                    clip_parts.append(outputs[0].float())
                    clip_mask = batch["mask"]
                else:
                    # Flux.2 Klein joins its three layers along features; Qwen-Image cuts the template's lead off.
                    joined = primary_output(outputs, spec)
                    lead = batch["mask"].lead_tokens if spec.drop_lead else 0
                    seq_parts.append(joined[:, lead:].float())
                    seq_masks.append(batch["mask"][:, lead:])
                if pooled is not None:
                    pooled_parts.append(pooled.float())
            if clip_parts:
                seq_parts.insert(0, torch.cat(clip_parts, dim=-1))
                seq_masks.insert(0, clip_mask)
            width = max(part.shape[-1] for part in seq_parts)
            seq_parts = [torch.nn.functional.pad(part, (0, width - part.shape[-1])) for part in seq_parts]
            conds.append(torch.cat(seq_parts, dim=1).cpu())
            masks.append(torch.cat(seq_masks, dim=1).cpu())
            if pooled_parts:
                pools.append(torch.cat(pooled_parts, dim=-1).cpu())
    if not conds:
        raise PromptError("no prompts to encode")
    # Masked encoders pad each chunk to its own longest prompt; pad to a common length.
    length = max(c.shape[1] for c in conds)
    conds = [torch.nn.functional.pad(c, (0, 0, 0, length - c.shape[1])) for c in conds]
    masks = [torch.nn.functional.pad(m, (0, length - m.shape[1])) for m in masks]
    return torch.cat(conds), (torch.cat(pools) if pools else None), torch.cat(masks)
