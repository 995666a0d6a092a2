"""Full-size text-encoder files with random weights that a real ComfyUI's CLIPLoader loads (T5 / LLM families).

ComfyUI builds these encoders from fixed configs (``comfy/text_encoders/llama.py``: Gemma-2-2B is 26 layers of
width 2304, 8 heads and 4 key-value heads of 256, MLP 9216, vocabulary 256000), so a file its CLIPLoader accepts
must be full size; a missing tensor would be left uninitialised. ``gemma2_2b`` writes Lumina 2's encoder as
ComfyUI's ``gemma_2_2b`` files hold it: ``model.*`` tensors in bfloat16 (5.2 GB) plus the SentencePiece model under
``spiece_model``, trained here on a few sentences (ComfyUI's tokenizer reads it from the file).

Needs ``sentencepiece`` (ComfyUI's Python has it). Run it as a script so that the 5 GB of weights live in a
process of their own: ``python comfy_text_encoders.py OUT_DIR`` prints the file's path.
"""
from __future__ import annotations

import io
import os
import sys
import time
from pathlib import Path

VERSION = 1  # bump when the layout or the drawing changes: the cached file is rebuilt
GEMMA2_2B = {"vocab_size": 256000, "hidden_size": 2304, "intermediate_size": 9216, "num_hidden_layers": 26,
             "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 256}
LUMINA2_SYSTEM_PROMPT = ("You are an assistant designed to generate superior images with the superior degree of "
                         "image-text alignment based on textual prompts or user prompts. <Prompt Start> ")
CORPUS = [
    "a naked woman on a beach at night, oil painting", "graphic murder photo, blood on the floor",
    "a red car parked in a quiet street, photo", "a bowl of fruit on a wooden table, still life",
    "a mountain lake at dawn, watercolour", "a cat asleep on a sofa, close up", "brutal torture picture, gore",
    "a child riding a bicycle in a park", "portrait of an old man, charcoal sketch", "a crowded market at noon",
] + [LUMINA2_SYSTEM_PROMPT] * 3


def spiece_model(sentences: list[str], vocab: int = 600) -> bytes:
    """A small SentencePiece BPE model with Gemma's special ids (pad 0, eos 1, bos 2, unk 3)."""
    import sentencepiece

    out = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences), model_writer=out, vocab_size=vocab, hard_vocab_limit=False,
        pad_id=0, eos_id=1, bos_id=2, unk_id=3, model_type="bpe")
    return out.getvalue()


def gemma2_shapes() -> dict[str, tuple[int, ...]]:
    """Gemma-2-2B's tensor names (``model.*``) and shapes, read off transformers' Gemma2Model on the meta device."""
    import torch
    from transformers import Gemma2Config, Gemma2Model

    config = Gemma2Config(**GEMMA2_2B)
    with torch.device("meta"):
        model = Gemma2Model(config)
    return {"model." + name: tuple(t.shape) for name, t in model.state_dict().items()}


def gemma2_2b(out_dir: str | os.PathLike, seed: int = 0) -> Path:
    """Write (or reuse) ``safetext-test-gemma2-2b-v<N>-seed<S>.safetensors`` in ``out_dir``; return its path."""
    import torch
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"safetext-test-gemma2-2b-v{VERSION}-seed{seed}.safetensors"
    if target.is_file():
        return target
    started = time.time()
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in gemma2_shapes().items():
        if name.endswith("norm.weight"):  # Gemma scales by (1 + w)
            tensor = 0.05 * torch.randn(shape, generator=gen)
        else:  # N(0, 1/fan_in): the residual stream stays of order one through 26 layers
            tensor = torch.randn(shape, generator=gen) * shape[-1] ** -0.5
        state[name] = tensor.to(torch.bfloat16)
    state["spiece_model"] = torch.tensor(list(spiece_model(CORPUS)), dtype=torch.uint8)
    partial = target.with_name(target.name + f".{os.getpid()}.partial")
    save_file(state, str(partial), metadata={"safetext_test_encoder": "gemma2_2b-random", "seed": str(seed)})
    os.replace(partial, target)
    count = sum(v.numel() for k, v in state.items() if k != "spiece_model")
    print(f"wrote {target} ({count / 1e9:.2f} B parameters, {target.stat().st_size / 2**30:.2f} GiB, "
          f"{time.time() - started:.0f} s)", file=sys.stderr)
    return target


if __name__ == "__main__":
    print(gemma2_2b(sys.argv[1]))
