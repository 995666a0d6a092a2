"""Tiny T5, Gemma-2, Qwen3 and Qwen2.5-VL text encoders of the real architectures, random weights, and tokenizers
trained in memory.

No hub and no PyPI package ships a T5 or Gemma vocabulary, so the tests train small tokenizers with the
``tokenizers`` library on the shipped prompt sets (a Unigram model with T5's special ids: ``<pad>`` 0, ``</s>``
1, ``<unk>`` 2, ``</s>`` appended; a BPE model with Gemma's: ``<pad>`` 0, ``<eos>`` 1, ``<bos>`` 2, ``<unk>`` 3,
``<bos>`` prepended, no end token) and wrap them as transformers ``PreTrainedTokenizerFast``. The models are
transformers ``T5EncoderModel`` / ``Gemma2Model`` built from tiny configs, their tensors named as ComfyUI's
text-encoder files name them (``shared.weight``, ``encoder.block.*``; ``model.layers.*``). The Qwen tokenizer is a
byte-level BPE with Qwen's special tokens as atomic added tokens (``<|endoftext|>`` the pad, ``<|im_start|>``,
``<|im_end|>``, ``<think>``, ``</think>``), no start or end token; the models are transformers ``Qwen3Model`` and
Qwen2.5-VL's ``Qwen2_5_VLTextModel``.
"""
from __future__ import annotations

import functools
from pathlib import Path

import torch

VOCAB = 600


@functools.lru_cache(maxsize=1)
def _corpus() -> tuple[str, ...]:
    from safetext_core import load_prompt_sets

    sets = load_prompt_sets()
    lines = list(sets.safe) + [p for group in sets.unsafe.values() for p in group] + list(sets.near_miss)
    from conftest import SAFE_WORDS, UNSAFE_WORDS

    from safetext_core.families import KLEIN_TEMPLATE, LUMINA2_SYSTEM_PROMPT, QWEN_IMAGE_TEMPLATE

    return tuple(lines + SAFE_WORDS + UNSAFE_WORDS + ["photo, oil painting, close up, cinematic, sketch, 4k"]
                 + [LUMINA2_SYSTEM_PROMPT + " <Prompt Start>"] * 20
                 + [t.replace("{}", "") for t in (KLEIN_TEMPLATE, QWEN_IMAGE_TEMPLATE)] * 20)


def t5_tokenizer():
    """A Unigram tokenizer with T5's special tokens and post-processing (``</s>`` appended)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=VOCAB, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>")
    tok.train_from_iterator(_corpus(), trainer)
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                                   model_max_length=512)


def gemma_tokenizer():
    """A byte-level BPE tokenizer with Gemma's special ids (``<bos>`` prepended, no end token)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=["<pad>", "<eos>", "<bos>", "<unk>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_corpus(), trainer)
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 2)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>",
                                   unk_token="<unk>", model_max_length=8192)


QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]


def qwen_tokenizer():
    """A byte-level BPE with Qwen's special tokens kept whole (``<|endoftext|>`` pads), no start or end token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=QWEN_SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_corpus(), trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<|endoftext|>", eos_token="<|im_end|>",
                                   additional_special_tokens=QWEN_SPECIALS[1:], model_max_length=32768,
                                   padding_side="right")


def _draw(model: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name:  # RMSNorm weights: T5 multiplies by w, Gemma by (1 + w)
                param.copy_((0.0 if "model." in name else 1.0) + 0.1 * torch.randn_like(param))
            else:
                param.copy_(0.2 * torch.randn_like(param))
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}


def t5_state(d_model: int = 32, layers: int = 2, heads: int = 4, d_ff: int = 64, vocab: int = VOCAB,
             seed: int = 0) -> dict[str, torch.Tensor]:
    """A T5 v1.1 encoder's tensors as ComfyUI's t5xxl files hold them (no tied ``encoder.embed_tokens``)."""
    from transformers import T5Config, T5EncoderModel

    config = T5Config(vocab_size=vocab, d_model=d_model, d_kv=d_model // heads, d_ff=d_ff, num_layers=layers,
                      num_heads=heads, relative_attention_num_buckets=32, feed_forward_proj="gated-gelu",
                      dropout_rate=0.0)
    state = _draw(T5EncoderModel(config), seed)
    state.pop("encoder.embed_tokens.weight", None)
    return state


def gemma2_state(hidden: int = 64, layers: int = 3, heads: int = 2, kv_heads: int = 1, head_dim: int = 16,
                 intermediate: int = 128, vocab: int = VOCAB, seed: int = 0) -> dict[str, torch.Tensor]:
    """A Gemma-2 decoder's tensors named ``model.*`` (ComfyUI's gemma_2_2b files, Gemma2ForCausalLM)."""
    from transformers import Gemma2Config, Gemma2Model

    config = Gemma2Config(vocab_size=vocab, hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=layers,
                          num_attention_heads=heads, num_key_value_heads=kv_heads, head_dim=head_dim,
                          query_pre_attn_scalar=head_dim, attn_logit_softcapping=None, final_logit_softcapping=None)
    return {"model." + k: v for k, v in _draw(Gemma2Model(config), seed).items()}


def qwen3_state(hidden: int = 32, layers: int = 3, heads: int = 2, kv_heads: int = 1, head_dim: int = 16,
                intermediate: int = 64, vocab: int = VOCAB, seed: int = 0) -> dict[str, torch.Tensor]:
    """A Qwen3 decoder's tensors named ``model.*`` as ComfyUI's qwen_3_4b / qwen_3_8b / qwen_3_06b files hold them."""
    from transformers import Qwen3Config, Qwen3Model

    config = Qwen3Config(vocab_size=vocab, hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=layers,
                         num_attention_heads=heads, num_key_value_heads=kv_heads, head_dim=head_dim,
                         bos_token_id=None, eos_token_id=None, pad_token_id=None)
    return {"model." + k: v for k, v in _draw(Qwen3Model(config), seed).items()}


def qwen25vl_state(hidden: int = 32, layers: int = 2, heads: int = 2, kv_heads: int = 1, intermediate: int = 64,
                   vocab: int = VOCAB, seed: int = 0, vision: bool = True) -> dict[str, torch.Tensor]:
    """Qwen2.5-VL's text model named ``model.*`` as ComfyUI's qwen_2.5_vl_7b file holds it, with (``vision``) a
    stand-in for the vision tower's ``visual.*`` tensors that file also carries."""
    from transformers.models.qwen2_5_vl.configuration_qwen2_5_vl import Qwen2_5_VLTextConfig
    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VLTextModel

    head_dim = hidden // heads
    config = Qwen2_5_VLTextConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=intermediate,
                                  num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
                                  rope_scaling={"type": "mrope", "mrope_section": [head_dim // 8, 3 * head_dim // 16,
                                                                                   3 * head_dim // 16]},
                                  bos_token_id=None, eos_token_id=None, pad_token_id=None)
    state = {"model." + k: v for k, v in _draw(Qwen2_5_VLTextModel(config), seed).items()}
    if vision:
        state.update({"visual.patch_embed.proj.weight": torch.randn(16, 3, 2, 14, 14),
                      "visual.blocks.0.attn.qkv.weight": torch.randn(48, 16), "lm_head.weight": torch.randn(vocab, hidden)})
    return state


def save_tokenizer(tokenizer, folder: Path) -> Path:
    tokenizer.save_pretrained(str(folder))
    return folder
