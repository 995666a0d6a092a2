"""Run under ComfyUI's own Python: SafeText's ComfyUI adapter on real ComfyUI CLIP objects of the T5 / LLM families.

``python comfy_apply_check.py COMFYUI_PATH REPO WORK_DIR`` reads ``WORK_DIR/job.json`` (cases: family, ComfyUI
CLIP type, weights file, model config, prompts) and, for each case, builds the CLIP as ComfyUI's CLIPLoader does
(``comfy.sd.load_text_encoder_state_dicts``, or its Chroma / Flux / SD 3 branches by hand; tiny model config, ComfyUI's own
tokenizer), trains
a SafeText file through the adapter (``nodes/comfy_clip.encoder_set``), applies it in both blend modes
(``apply_file``), loads it through stock ComfyUI's LoRA loader (``comfy.sd.load_lora_for_models``, what
LoraLoader runs) and writes the conditionings and the loader's log to ``WORK_DIR/<case>.safetensors`` /
``<case>.json``; tests/test_encoders.py checks them. Nothing from ComfyUI is copied into this repository.
"""
from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import logging
import sys
from pathlib import Path


def main() -> None:
    comfy_path, repo, work = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    sys.path.insert(0, str(comfy_path))
    sys.argv = sys.argv[:1] + ["--cpu"]
    import comfy.options

    comfy.options.enable_args_parsing()
    import torch
    from safetensors.torch import load_file, save_file

    import comfy.sd

    sys.path.insert(0, str(repo))  # the core as its own top-level package, as the pack's bootstrap registers it
    # The adapter's modules as a package of their own (the pack's __init__ would start the server-side parts).
    spec = importlib.machinery.ModuleSpec("safetext_nodes_under_test", None, is_package=True)
    package = importlib.util.module_from_spec(spec)
    package.__path__ = [str(repo / "nodes")]
    sys.modules[spec.name] = package
    from safetext_nodes_under_test import comfy_clip

    from safetext_core import AlignConfig, PromptSets, run_alignment
    from safetext_core.safetext_file import SafeTextFile

    records: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    logging.getLogger().addHandler(Collect())
    job = json.loads((work / "job.json").read_text())
    prompts = PromptSets(unsafe={"mixed": job["unsafe"]}, safe=job["safe"], near_miss=[])
    for case in job["cases"]:
        records.clear()
        states = [load_file(path) for path in case["weights"]]  # DualCLIPLoader: several files
        state = states[-1]
        if case.get("train_spiece"):  # Lumina 2's files carry their SentencePiece model; train a small one
            import io

            import sentencepiece

            model = io.BytesIO()
            text = job["unsafe"] + job["safe"] + [case["template"].replace("{}", "")] * 5
            sentencepiece.SentencePieceTrainer.train(
                sentence_iterator=iter(text), model_writer=model, vocab_size=case["config"]["vocab_size"],
                hard_vocab_limit=False, pad_id=0, eos_id=1, bos_id=2, unk_id=3, model_type="bpe")
            state["spiece_model"] = torch.tensor(list(model.getvalue()), dtype=torch.uint8)
        options = {f"{case['encoder']}_model_config": case["config"], **case.get("more_config", {})}
        if case["clip_type"] in ("CHROMA", "FLUX", "SD3"):
            # comfy.sd.load_text_encoder_state_dicts' CHROMA / FLUX / SD3 branches, taken by hand: its detect_te_model
            # recognises T5-XXL only by block 23 at full width, and its long-CLIP check overwrites a CLIP-L
            # model config, neither of which a tiny model survives.
            import comfy.text_encoders.flux
            import comfy.text_encoders.pixart_t5
            import comfy.text_encoders.sd3_clip

            builders = {"CHROMA": (comfy.text_encoders.pixart_t5.pixart_te, comfy.text_encoders.pixart_t5.PixArtTokenizer),
                        "FLUX": (comfy.text_encoders.flux.flux_clip, comfy.text_encoders.flux.FluxTokenizer),
                        "SD3": (comfy.text_encoders.sd3_clip.sd3_clip, comfy.text_encoders.sd3_clip.SD3Tokenizer)}
            make, tokenizer_class = builders[case["clip_type"]]

            class Target:
                params: dict = {}
                clip = make(**comfy.sd.t5xxl_detect(states))
                tokenizer = tokenizer_class

            clip = comfy.sd.CLIP(Target(), model_options=options)
            for index, part in enumerate(states):
                # SD3ClipModel.load_sd tells bigG by its 31st layer, which a tiny one has not: load it by name then
                names = case.get("weight_encoders")
                owner = getattr(clip.cond_stage_model, names[index]) if names else clip
                missing, _ = owner.load_sd(part)
                assert not [m for m in missing if "text_projection" not in m], missing
        else:
            clip = comfy.sd.load_text_encoder_state_dicts(
                states, clip_type=getattr(comfy.sd.CLIPType, case["clip_type"]), model_options=options)
        result: dict = {"family": comfy_clip.family_of(clip),
                        "weight_dtype": str(clip.cond_stage_model.state_dict()[
                            f"{case['encoder']}.transformer.{case['probe_weight']}"].dtype)}

        def encode(c, prompt: str) -> torch.Tensor:
            text = case["template"].replace("{}", prompt)  # what CLIPTextEncodeLumina2 sends; "{}" elsewhere
            return c.encode_from_tokens(c.tokenize(text)).float()

        with torch.inference_mode(False):
            encoders = comfy_clip.encoder_set(clip)
            config = AlignConfig(steps=30, batch_size=8, learning_rate=5e-3, anchor_weight=0.1, eval_every=0,
                                 preserve_pool=100, mine_every=0, rank=case.get("rank", 0), lora_learning_rate=3e-2)
            outcome = run_alignment(encoders, prompts, config, output=work / f"{case['name']}.safetext.safetensors",
                                    draw=False, independent=False)
        file = SafeTextFile.load(outcome.path)
        out = {}
        for index, prompt in enumerate(job["probe"]):
            out[f"original.{index}"] = encode(clip, prompt)
            for mode in ("embedding", "weight"):
                for strength in (0.0, 0.5, 1.0):
                    applied, _ = comfy_clip.apply_file(clip, file, strength, mode)
                    out[f"{mode}.{strength}.{index}"] = encode(applied, prompt)
            out[f"after.{index}"] = encode(clip, prompt)  # the CLIP the file was applied to is left as it was
        records.clear()
        lora = load_file(str(outcome.path))
        _, lora_clip = comfy.sd.load_lora_for_models(None, clip, lora, 0.0, 1.0)
        result["lora_log"] = [r for r in records if "lora key not loaded" in r or "ERROR" in r]
        result["lora_patched"] = len(lora_clip.patcher.patches)
        result["file_tensors"] = len(lora)
        for index, prompt in enumerate(job["probe"]):
            out[f"lora.{index}"] = encode(lora_clip, prompt)
        save_file({k: v.contiguous() for k, v in out.items()}, str(work / f"{case['name']}.safetensors"))
        (work / f"{case['name']}.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main()
