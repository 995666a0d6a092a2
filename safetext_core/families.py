"""Model families: which text encoders a checkpoint has and which of their outputs the diffusion model sees.

SafeText aligns exactly what the consumer consumes. For CLIP that is a hidden state of a chosen
layer (optionally after the final layer norm) over all 77 positions, plus, for SDXL's OpenCLIP
bigG, the pooled and projected vector. Every SD family also lists the neighbouring layer that users
select with "clip skip", with a smaller weight, so a checkpoint used that way is safe too.

The T5 and LLM families (Flux.1, SD 3/3.5, Chroma, Lumina 2) were read from ComfyUI 0.3.64
(``comfy/text_encoders/{flux,sd3_clip,pixart_t5,lumina2,llama}.py``, ``comfy/sd1_clip.py``,
``comfy_extras/nodes_lumina2.py``); the Qwen families (Z-Image, Flux.2 Klein, Anima, Qwen-Image) from ComfyUI's
current source (``comfy/text_encoders/{z_image,flux,anima,qwen_image,llama}.py``, ``comfy/sd1_clip.py``,
``comfy/sd.py``, ``comfy/model_base.py``) and diffusers 0.42's ZImage / Flux2Klein / QwenImage pipelines;
docs/encoders.md gives the line-by-line reading and where diffusers' pipelines differ. What each field means
for them:

* ``pad_to`` / ``attention_mask``: ComfyUI pads Flux's T5 prompts to at least 256 tokens and SD3's to 77
  with the pad token and runs T5 *without* an attention mask, so the diffusion model consumes every one of
  those positions, padding included (they depend on the prompt: T5 attends both ways). Chroma's T5 and
  Lumina 2's Gemma-2 see exactly the prompt's tokens (no padding for one prompt, a mask in a batch).
* ``causal``: under causal attention the leading tokens every prompt shares (BOS, a system prompt) give
  the same outputs for every prompt; they count where outputs must stay put and are left out of the
  unsafe terms, where they would only dilute the cosine.
* ``template``: the prompt formatting the host applies (Lumina 2's system prompt, the Qwen chat templates).
* ``drop_lead``: the host cuts the template's leading tokens out of the output (Qwen-Image): they are in no term.
* ``padding_consumed``: the host masks its padding inside the encoder but hands every position, padding
  included, to the diffusion model (Flux.2 Klein: 512 positions); the padding's outputs depend on the prompt.
* ``join_targets``: the host joins the targets along features (Flux.2 Klein: three Qwen3 layers, 3 x width).
* ``adapter_targets``: the linear layers a low-rank adapter trains (regular expressions on module names).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .errors import CheckpointError, UnsupportedModel


@dataclass(frozen=True)
class Target:
    """One consumed output: hidden state ``-layer_from_end`` (1 = last), optional final layer norm.

    ``layer_from_end == 0`` is the pooled vector alone (the encoder's only consumed output, e.g. Flux's
    CLIP-L), handled as a sequence of one position. ``index`` counts from the start instead, as hosts that
    name layers by number do (ComfyUI's ``layer=[9, 18, 27]``): transformers' ``hidden_states[index]``, the
    input of block ``index`` (0: the embeddings; normed only past the last block, as ComfyUI's list layers are);
    ``layer_from_end`` is then unused."""

    layer_from_end: int
    final_norm: bool
    weight: float = 1.0
    index: int | None = None

    @property
    def pooled(self) -> bool:
        return self.layer_from_end == 0 and self.index is None

    @property
    def label(self) -> str:
        if self.index is not None:
            return f"h{self.index}"
        if self.layer_from_end == 0:
            return "pooled"
        return f"h-{self.layer_from_end}{'+ln' if self.final_norm else ''}"


@dataclass(frozen=True)
class EncoderSpec:
    """One text encoder of a family."""

    name: str  # file key: clip_l, clip_g, clip_h, t5xxl, gemma2_2b, text
    kind: str  # "clip" or "hf" (a transformers encoder: ``arch`` says which)
    targets: tuple[Target, ...]
    pooled_weight: float = 0.0  # > 0: the pooled vector is consumed besides the targets (SDXL / SD3 bigG)
    hidden_act: str = "quick_gelu"
    pad_token: str = "<|endoftext|>"
    layer_norm_eps: float = 1e-5
    diffusers: tuple[str, str] = ("text_encoder", "tokenizer")  # a diffusers pipeline's sub-folders for it
    a1111_prefix: str = ""  # AUTOMATIC1111's LoRA key prefix for it ("lora_te_", "lora_te1_", ...); "": none
    arch: str = ""  # kind "hf": "t5" (T5 v1.1 encoder), "gemma2", "qwen3", "qwen25vl" (decoders), "" (generic)
    pooled_projected: bool = True  # the pooled vector through text_projection (bigG) or the bare EOS state (CLIP-L)
    pad_to: int = 0  # the host pads every prompt to at least this many tokens (0: a batch pads to its longest)
    attention_mask: bool = True  # kind "hf": the host masks padding; False: padding is attended and consumed
    causal: bool = False  # causal attention (CLIP, LLMs): shared leading tokens give the same outputs for all
    template: str = "{}"  # the prompt formatting the host applies; "{}" is the user's prompt
    max_length: int = 0  # longest prompt in tokens (0: the kind's default: 77 for CLIP, else the tokenizer's, <= 512)
    adapter_targets: tuple[str, ...] = ()  # linear layers a low-rank adapter trains (regular expressions)
    drop_lead: bool = False  # the host cuts the template's leading tokens out of the output (Qwen-Image)
    padding_consumed: bool = False  # masked inside the encoder, yet every position up to pad_to is consumed
    join_targets: bool = False  # the host joins the targets' outputs along features (Flux.2 Klein)

    @property
    def uses_mask(self) -> bool:
        """Only real tokens count (and the model gets an attention mask); else every position counts."""
        return self.kind != "clip" and self.attention_mask and not self.padding_consumed

    @property
    def pooled_only(self) -> bool:
        return all(target.pooled for target in self.targets)


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


# Linear layers a low-rank adapter trains, per architecture (module names as the encoder's own modules name them).
_CLIP_LINEARS = (r"layers\.\d+\.self_attn\.(q|k|v|out)_proj$", r"layers\.\d+\.mlp\.fc[12]$")
_T5_LINEARS = (r"block\.\d+\.layer\.0\.SelfAttention\.[qkvo]$", r"block\.\d+\.layer\.1\.DenseReluDense\.(wi_0|wi_1|wo)$")
_LLM_LINEARS = (r"layers\.\d+\.self_attn\.[qkvo]_proj$", r"layers\.\d+\.mlp\.(gate|up|down)_proj$")

# ComfyUI's CLIPTextEncodeLumina2 "superior" system prompt, also diffusers' Lumina2Pipeline default.
LUMINA2_SYSTEM_PROMPT = ("You are an assistant designed to generate superior images with the superior degree of "
                         "image-text alignment based on textual prompts or user prompts.")

# The Qwen chat templates the hosts wrap a prompt in (ComfyUI's ``llama_template``s; diffusers'
# ``apply_chat_template`` gives the same text). Z-Image: comfy/text_encoders/z_image.py ZImageTokenizer (diffusers
# ZImagePipeline: enable_thinking=True, which adds no think block); Flux.2 Klein: comfy/text_encoders/flux.py
# KleinTokenizer (diffusers Flux2KleinPipeline: enable_thinking=False, the empty think block); Qwen-Image:
# comfy/text_encoders/qwen_image.py QwenImageTokenizer (diffusers QwenImagePipeline.prompt_template_encode).
Z_IMAGE_TEMPLATE = "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"
KLEIN_TEMPLATE = "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
QWEN_IMAGE_TEMPLATE = ("<|im_start|>system\nDescribe the image by detailing the color, shape, size, texture, quantity, "
                       "text, spatial relationships of the objects and background:<|im_end|>\n<|im_start|>user\n{}"
                       "<|im_end|>\n<|im_start|>assistant\n")
# Flux.2 Klein: Qwen3 hidden states 9, 18 and 27 (comfy/text_encoders/flux.py Qwen3_4BModel/Qwen3_8BModel
# layer=[9, 18, 27], read by llama.py Llama2_.forward before block i runs, no final norm since
# layer_norm_hidden_state=False; diffusers Flux2KleinPipeline hidden_states_layers=(9, 18, 27)), joined along
# features (Flux2TEModel.encode_token_weights), every one of at least 512 positions (KleinTokenizer's
# Qwen3Tokenizer min_length=512, pad <|endoftext|>; the pad queries attend to the prompt; model_base.Flux2 hands
# all of them on, Flux.extra_conds passes no text mask).
_KLEIN_TARGETS = tuple(Target(0, False, 1.0 / 3, index=i) for i in (9, 18, 27))

FAMILIES: dict[str, Family] = {
    "sd1": Family("sd1", "Stable Diffusion 1.x", (
        # Default: last layer after the final norm; clip skip 2: penultimate, normed (A1111 and ComfyUI both norm it).
        EncoderSpec("clip_l", "clip", (Target(1, True, 1.0), Target(2, True, 0.5)), a1111_prefix="lora_te_",
                    causal=True, adapter_targets=_CLIP_LINEARS),
    )),
    "sd2": Family("sd2", "Stable Diffusion 2.x", (
        EncoderSpec("clip_h", "clip", (Target(2, True, 1.0), Target(1, True, 0.5)), hidden_act="gelu", pad_token="!",
                    a1111_prefix="lora_te_", causal=True, adapter_targets=_CLIP_LINEARS),
    )),
    "sdxl": Family("sdxl", "Stable Diffusion XL", (
        EncoderSpec("clip_l", "clip", (Target(2, False, 1.0),), a1111_prefix="lora_te1_", causal=True,
                    adapter_targets=_CLIP_LINEARS),
        EncoderSpec("clip_g", "clip", (Target(2, False, 1.0),), pooled_weight=1.0, hidden_act="gelu", pad_token="!",
                    diffusers=("text_encoder_2", "tokenizer_2"), a1111_prefix="lora_te2_", causal=True,
                    adapter_targets=_CLIP_LINEARS),
    )),
    # Flux.1 dev / schnell / Krea / Kontext: the transformer cross-attends to T5's last hidden state (after the
    # final norm) over >= 256 positions, padding included (no mask); CLIP-L gives only its pooled vector, the
    # bare final-normed EOS state (return_projected_pooled=False), to the modulation.
    "flux": Family("flux", "Flux.1", (
        EncoderSpec("clip_l", "clip", (Target(0, True, 1.0),), pooled_projected=False, causal=True,
                    adapter_targets=_CLIP_LINEARS),
        EncoderSpec("t5xxl", "hf", (Target(1, True, 1.0),), arch="t5", pad_token="<pad>", pad_to=256,
                    attention_mask=False, max_length=512, diffusers=("text_encoder_2", "tokenizer_2"),
                    adapter_targets=_T5_LINEARS),
    )),
    # SD 3 / 3.5: CLIP-L and bigG penultimate (no final norm) joined along features, padded to 4096, then T5's
    # last hidden state (77 positions, padding included, no mask) joined along the sequence; pooled = CLIP-L's
    # bare EOS state (ComfyUI: return_projected_pooled=False) + bigG's projected one.
    "sd3": Family("sd3", "Stable Diffusion 3 / 3.5", (
        EncoderSpec("clip_l", "clip", (Target(2, False, 1.0),), pooled_weight=1.0, pooled_projected=False,
                    causal=True, adapter_targets=_CLIP_LINEARS),
        EncoderSpec("clip_g", "clip", (Target(2, False, 1.0),), pooled_weight=1.0, hidden_act="gelu", pad_token="!",
                    causal=True, diffusers=("text_encoder_2", "tokenizer_2"), adapter_targets=_CLIP_LINEARS),
        EncoderSpec("t5xxl", "hf", (Target(1, True, 1.0),), arch="t5", pad_token="<pad>", pad_to=77,
                    attention_mask=False, max_length=512, diffusers=("text_encoder_3", "tokenizer_3"),
                    adapter_targets=_T5_LINEARS),
    )),
    # Chroma: T5's last hidden state over the prompt's own tokens and its end token (ComfyUI's PixArt tokenizer:
    # no padding for one prompt).
    "chroma": Family("chroma", "Chroma", (
        EncoderSpec("t5xxl", "hf", (Target(1, True, 1.0),), arch="t5", pad_token="<pad>", max_length=512,
                    adapter_targets=_T5_LINEARS),
    )),
    # Lumina Image 2.0: Gemma-2-2B hidden layer -2 (no final norm) over the real tokens, BOS first, no end token,
    # after ComfyUI's CLIPTextEncodeLumina2 (and diffusers' Lumina2Pipeline) put the system prompt in front.
    "lumina2": Family("lumina2", "Lumina Image 2.0", (
        EncoderSpec("gemma2_2b", "hf", (Target(2, False, 1.0),), arch="gemma2", pad_token="<pad>", causal=True,
                    template=LUMINA2_SYSTEM_PROMPT + " <Prompt Start> {}", max_length=256,
                    adapter_targets=_LLM_LINEARS),
    )),
    # Z-Image: Qwen3-4B hidden layer -2 (the second-to-last block's output, no final norm) over the real tokens of
    # the chat template around the prompt, attention mask on, no padding for one prompt (comfy/text_encoders/
    # z_image.py Qwen3_4BModel(layer="hidden", layer_idx=-2), Qwen3Tokenizer min_length=1; diffusers ZImagePipeline
    # hidden_states[-2] at the masked positions). ComfyUI picks it for a qwen3_4b file unless the CLIP type is
    # flux / flux2 (comfy/sd.py load_text_encoder_state_dicts).
    "z_image": Family("z_image", "Z-Image", (
        EncoderSpec("qwen3_4b", "hf", (Target(2, False, 1.0),), arch="qwen3", pad_token="<|endoftext|>", causal=True,
                    template=Z_IMAGE_TEMPLATE, max_length=512, adapter_targets=_LLM_LINEARS),
    )),
    # Flux.2 [klein] 4B (Qwen3-4B) and 9B (Qwen3-8B): see _KLEIN_TARGETS.
    "flux2_klein_4b": Family("flux2_klein_4b", "Flux.2 [klein] 4B", (
        EncoderSpec("qwen3_4b", "hf", _KLEIN_TARGETS, arch="qwen3", pad_token="<|endoftext|>", causal=True,
                    template=KLEIN_TEMPLATE, pad_to=512, padding_consumed=True, join_targets=True, max_length=512,
                    adapter_targets=_LLM_LINEARS),
    )),
    "flux2_klein_9b": Family("flux2_klein_9b", "Flux.2 [klein] 9B", (
        EncoderSpec("qwen3_8b", "hf", _KLEIN_TARGETS, arch="qwen3", pad_token="<|endoftext|>", causal=True,
                    template=KLEIN_TEMPLATE, pad_to=512, padding_consumed=True, join_targets=True, max_length=512,
                    adapter_targets=_LLM_LINEARS),
    )),
    # Anima: Qwen3-0.6B's last hidden state after the final norm over the bare prompt's tokens (no template, no
    # start or end token, mask on; comfy/text_encoders/anima.py Qwen3_06BModel(layer="last"), Qwen3Tokenizer
    # min_length=1). Its diffusion model also reads the prompt's T5 token ids (AnimaTEModel: t5xxl_ids), ids
    # only, no T5 model: nothing there to align.
    "anima": Family("anima", "Anima", (
        EncoderSpec("qwen3_06b", "hf", (Target(1, True, 1.0),), arch="qwen3", pad_token="<|endoftext|>", causal=True,
                    max_length=512, adapter_targets=_LLM_LINEARS),
    )),
    # Qwen-Image: Qwen2.5-VL-7B's text model, last hidden state after the final norm, with the template's system
    # turn and "<|im_start|>user\n" cut off (comfy/text_encoders/qwen_image.py QwenImageTEModel.encode_token_weights:
    # out[:, template_end:], template_end past the second <|im_start|> and "user\n"; diffusers QwenImagePipeline
    # drops its first 34 tokens, the same ones); the template's tail "<|im_end|>\n<|im_start|>assistant\n" stays.
    "qwen_image": Family("qwen_image", "Qwen-Image", (
        EncoderSpec("qwen25_7b", "hf", (Target(1, True, 1.0),), arch="qwen25vl", pad_token="<|endoftext|>",
                    causal=True, template=QWEN_IMAGE_TEMPLATE, drop_lead=True, max_length=1024 + 34,
                    adapter_targets=_LLM_LINEARS),
    )),
    "generic": Family("generic", "Any transformers text encoder (last hidden state, real tokens)", (
        EncoderSpec("text", "hf", (Target(1, False, 1.0),)),
    ), diffusion=False),
}


# diffusers pipeline classes (``model_index.json``'s ``_class_name``, ``type(pipe).__name__``) and the families they
# carry: the first entry whose marker the class name contains (img2img, inpaint and ControlNet variants share their
# base's encoders); a string instead of families is why the class is refused. Flux.2 [dev] before Flux.1 and
# Qwen-Image-Edit before Qwen-Image, whose names they contain. SD 1.x / 2.x pipelines are in no entry: their
# encoders' widths (loading) or fingerprints (applying) tell them apart.
DIFFUSERS_PIPELINES: tuple[tuple[str, tuple[str, ...] | str], ...] = (
    ("Flux2Klein", ("flux2_klein_4b", "flux2_klein_9b")),
    ("Flux2", "Flux.2 [dev] (Mistral-3 24B encoder) is not supported yet"),
    ("Flux", ("flux",)), ("StableDiffusion3", ("sd3",)), ("Chroma", ("chroma",)), ("Lumina2", ("lumina2",)),
    ("ZImage", ("z_image",)),
    ("QwenImageEdit", "Qwen-Image-Edit encodes the input image with the prompt (another template and Qwen2.5-VL's "
                      "vision tower), which SafeText does not align yet"),
    ("QwenImage", ("qwen_image",)), ("XL", ("sdxl",)))


def diffusers_families(class_name: str) -> tuple[str, ...]:
    """The families a diffusers pipeline class carries, by its name (:data:`DIFFUSERS_PIPELINES`); ``()`` for a class in
    no entry (SD 1.x / 2.x, anything else). A class refused by name raises :class:`UnsupportedModel` saying why."""
    for marker, families in DIFFUSERS_PIPELINES:
        if marker in class_name:
            if isinstance(families, str):
                raise UnsupportedModel(families)
            return families
    return ()


def get_family(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        raise UnsupportedModel(f"unknown model family {name!r}; known: {', '.join(FAMILIES)}") from None


def families_by_encoders(names) -> list[str]:
    """Every text-to-image family whose encoders are exactly ``names`` (a ``qwen3_4b`` is Z-Image's or Klein 4B's)."""
    wanted = tuple(sorted(names))
    return [family.name for family in FAMILIES.values()
            if family.diffusion and tuple(sorted(family.encoder_names)) == wanted]


def family_by_encoders(names) -> str | None:
    """The one text-to-image family whose encoders are exactly ``names`` (e.g. ComfyUI's ``clip_l`` + ``clip_g``);
    ``None`` when none or several are (the caller must then be told the family)."""
    found = families_by_encoders(names)
    return found[0] if len(found) == 1 else None


def detect_family_from_keys(keys) -> str:
    """Guess the family of a single-file checkpoint from its tensor names."""
    keys = set(keys)
    if any(k.startswith("conditioner.embedders.1.model.") for k in keys):
        return "sdxl"
    if any(k.startswith("cond_stage_model.model.") for k in keys):
        return "sd2"
    if any(k.startswith("cond_stage_model.transformer.") for k in keys):
        return "sd1"
    if any(k.startswith("model.diffusion_model.joint_blocks.") for k in keys):  # SD 3's MMDiT
        return "sd3"
    # ComfyUI's layout (SD3/3.5 and Flux single files carry it too): which encoders are there decides.
    heads = {k.split(".", 2)[1] for k in keys if k.startswith("text_encoders.")} | {k.split(".", 1)[0] for k in keys}
    if "t5xxl" in heads:
        if "clip_g" in heads:
            return "sd3"
        return "flux" if "clip_l" in heads else "chroma"
    if "gemma2_2b" in heads:
        return "lumina2"
    if "qwen3_4b" in heads:  # Z-Image's and Klein 4B's encoder: the diffusion model's blocks tell them apart
        if any(k.startswith("model.diffusion_model.double_blocks.") for k in keys):
            return "flux2_klein_4b"
        if any(k.startswith(("model.diffusion_model.noise_refiner.", "model.diffusion_model.context_refiner."))
               for k in keys):
            return "z_image"
        raise CheckpointError("this checkpoint's qwen3_4b encoder is Z-Image's or Flux.2 Klein 4B's, and the file does "
                              "not say which: name the family (z_image or flux2_klein_4b)")
    for head, family in (("qwen3_8b", "flux2_klein_9b"), ("qwen3_06b", "anima"), ("qwen25_7b", "qwen_image")):
        if head in heads:
            return family
    if any(k.startswith("text_encoders.clip_g.") or k.startswith("clip_g.") for k in keys):
        return "sdxl"
    if any(k.startswith("text_encoders.clip_h.") for k in keys):
        return "sd2"
    if any(k.startswith("text_encoders.clip_l.") or k.startswith("clip_l.") for k in keys):
        return "sd1"
    raise CheckpointError("could not recognise the checkpoint: no text-encoder tensors of a known family (SD 1.x, "
                          "SD 2.x, SDXL, SD 3, Flux.1, Chroma, Lumina 2, Z-Image, Flux.2 Klein, Anima, Qwen-Image) found")
