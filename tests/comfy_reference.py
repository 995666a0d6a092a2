"""Run under ComfyUI's own Python: encode token ids with ComfyUI's real text-encoder classes and save the output.

``python comfy_reference.py COMFYUI_PATH WORK_DIR`` reads ``WORK_DIR/job.json`` (cases: encoder kind, weights
file, tokenizer folder, prompts, config) and writes ``WORK_DIR/<case>.safetensors`` with what ComfyUI hands the
diffusion model for each prompt (Qwen-Image: with ComfyUI's own tokenizer and template) (``encode_token_weights`` of the encoder class the family uses, tokenised by
ComfyUI's ``SDTokenizer`` with the arguments of that family's tokenizer). tests/test_encoders.py compares it with
SafeText's ``consumed_outputs``. Nothing from ComfyUI is copied into this repository; it is imported where it is.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def main() -> None:
    comfy_path, work = Path(sys.argv[1]), Path(sys.argv[2])
    sys.path.insert(0, str(comfy_path))
    sys.argv = sys.argv[:1] + ["--cpu"]  # ComfyUI reads its own command line on import, when told to
    import comfy.options

    comfy.options.enable_args_parsing()
    import torch
    from safetensors.torch import load_file, save_file
    from transformers import PreTrainedTokenizerFast

    from comfy import sd1_clip
    import comfy.text_encoders.lumina2
    import comfy.text_encoders.sd3_clip

    job = json.loads((work / "job.json").read_text())
    for case in job["cases"]:
        state = load_file(case["weights"])
        if case["kind"] == "qwen3":
            # ComfyUI 0.3.64 has no Qwen3 class, but its Llama2_ computes one from a config: the values of the
            # current source's Qwen3_4BConfig (llama.py: q/k norms "gemma3" over the head, no add, no bias, SiLU,
            # RoPE theta 1e6, RMS eps 1e-6) at the test's size. intermediate_output="all" stacks the input of every
            # block and the final-normed output, from which the current source's list layers ([9, 18, 27]) and -2
            # are taken the same way; the token ids and masks are SafeText's (ComfyUI's process_tokens masks the
            # first pad and all after it, as the tokenizer's mask does).
            import types

            import comfy.ops
            import comfy.text_encoders.llama

            config = types.SimpleNamespace(max_position_embeddings=40960, rms_norm_eps=1e-6, rope_theta=1000000.0,
                                           transformer_type="llama", rms_norm_add=False, mlp_activation="silu",
                                           qkv_bias=False, rope_dims=None, q_norm="gemma3", k_norm="gemma3",
                                           rope_scale=None, **case["config"])
            model = comfy.text_encoders.llama.Llama2_(config, dtype=torch.float32, ops=comfy.ops.manual_cast)
            model.load_state_dict({k[len("model."):]: v for k, v in state.items()}, strict=True)
            ids, mask = torch.tensor(case["ids"]), torch.tensor(case["mask"])
            with torch.no_grad():
                last, stacked = model(ids, attention_mask=mask, intermediate_output="all",
                                      final_layer_norm_intermediate=False, dtype=torch.float32)
                _, second_last = model(ids, attention_mask=mask, intermediate_output=-2,
                                       final_layer_norm_intermediate=False, dtype=torch.float32)
            save_file({"last": last.contiguous(), "all": stacked.contiguous(), "minus2": second_last.contiguous()},
                      str(work / f"{case['name']}.safetensors"))
            continue
        if case["kind"] == "qwen_image":
            # Qwen-Image: ComfyUI's own QwenImageTokenizer (its qwen25_tokenizer folder, the real Qwen vocabulary) and
            # QwenImageTEModel, whose encode_token_weights cuts the template's lead off. Its Qwen2.5-VL also builds the
            # vision tower, which a text prompt never runs: those weights are left unloaded.
            import comfy.text_encoders.qwen_image

            tokenizer = comfy.text_encoders.qwen_image.QwenImageTokenizer()
            model = comfy.text_encoders.qwen_image.QwenImageTEModel(
                dtype=torch.float32, model_options={"qwen25_7b_model_config": case["config"]})
            missing, unexpected = model.load_sd(state)
            assert not [m for m in missing if not m.startswith("visual.")], missing
            out = {}
            with torch.no_grad():
                for index, prompt in enumerate(case["prompts"]):
                    tokens = tokenizer.tokenize_with_weights(prompt)
                    out[f"cond.{index}"] = model.encode_token_weights(tokens)[0].float().contiguous()
                    out[f"ids.{index}"] = torch.tensor([t for t, _ in tokens["qwen25_7b"][0]])
            save_file(out, str(work / f"{case['name']}.safetensors"))
            continue
        if case["kind"] == "t5":
            # Flux: flux.T5XXLTokenizer(min_length=256) + sd3_clip.T5XXLModel (no attention mask); Chroma: PixArt's
            # tokenizer (min_length=1) and the same model class.
            tokenizer = sd1_clip.SDTokenizer(case["tokenizer"], pad_with_end=False, embedding_size=case["width"],
                                             embedding_key="t5xxl", tokenizer_class=PreTrainedTokenizerFast,
                                             has_start_token=False, pad_to_max_length=False, max_length=99999999,
                                             min_length=case["min_length"])
            model = comfy.text_encoders.sd3_clip.T5XXLModel(
                dtype=torch.float32, model_options={"t5xxl_model_config": case["config"]})
        else:
            # Lumina 2: Gemma2BTokenizer's arguments (its SentencePiece class swapped for the test's tokenizer).
            tokenizer = sd1_clip.SDTokenizer(case["tokenizer"], pad_with_end=False, embedding_size=case["width"],
                                             embedding_key="gemma2_2b", tokenizer_class=PreTrainedTokenizerFast,
                                             has_end_token=False, pad_to_max_length=False, max_length=99999999,
                                             min_length=1)
            model = comfy.text_encoders.lumina2.Gemma2_2BModel(
                dtype=torch.float32, model_options={"model_name": "gemma2_2b", "gemma2_2b_model_config": case["config"]})
        missing, unexpected = model.load_sd(state)
        assert not missing, missing
        out = {}
        with torch.no_grad():
            for index, prompt in enumerate(case["prompts"]):
                tokens = tokenizer.tokenize_with_weights(prompt)
                cond = model.encode_token_weights(tokens)[0]
                out[f"cond.{index}"] = cond.float().contiguous()
                out[f"ids.{index}"] = torch.tensor([t for t, _ in tokens[0]])
        save_file(out, str(work / f"{case['name']}.safetensors"))


if __name__ == "__main__":
    main()
