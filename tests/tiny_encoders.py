"""Tiny T5 and Gemma-2 text encoders of the real architectures, random weights, and tokenizers trained in memory.

No hub and no PyPI package ships a T5 or Gemma vocabulary, so the tests train small tokenizers with the
``tokenizers`` library on the shipped prompt sets (a Unigram model with T5's special ids: ``<pad>`` 0, ``</s>``
1, ``<unk>`` 2, ``</s>`` appended; a BPE model with Gemma's: ``<pad>`` 0, ``<eos>`` 1, ``<bos>`` 2, ``<unk>`` 3,
``<bos>`` prepended, no end token) and wrap them as transformers ``PreTrainedTokenizerFast``. The models are
transformers ``T5EncoderModel`` / ``Gemma2Model`` built from tiny configs, their tensors named as ComfyUI's
text-encoder files name them (``shared.weight``, ``encoder.block.*``; ``model.layers.*``).
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

    from safetext_core.families import LUMINA2_SYSTEM_PROMPT

    return tuple(lines + SAFE_WORDS + UNSAFE_WORDS + ["photo, oil painting, close up, cinematic, sketch, 4k"]
                 + [LUMINA2_SYSTEM_PROMPT + " <Prompt Start>"] * 20)


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


def save_tokenizer(tokenizer, folder: Path) -> Path:
    tokenizer.save_pretrained(str(folder))
    return folder
