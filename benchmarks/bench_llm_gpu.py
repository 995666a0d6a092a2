"""llm_gpu: aligning T5-XXL and Qwen3-4B at their released size on one GPU, timed against a LoRA training step of
the diffusion transformer each one feeds, side by side in one run.

Issue 13 asks for the peak GPU memory of aligning a 4B-parameter LLM encoder at the default batch (target: under
20 GB) and for the alignment step of T5-XXL and of a 4B LLM encoder as a ratio to one LoRA training step of the
matching diffusion model. ``bench_llm_memory`` (CPU, reduced depth, extrapolated) and ``bench_llm_cost`` (FLOPs on
``meta``) estimate both without a GPU; this one measures them on a GPU, every model at full size with random
weights (no weights can be downloaded; time and memory do not depend on the values).

* **Alignment** (``safetext_core.align``, the engine's own code, as ``python -m safetext_core align --rank 8
  --device cuda`` runs it): the original encoders in float32 on the host, as the loaders keep them; a low-rank run
  at rank 8 with the memory plan a GPU run takes ("auto": frozen weights in bfloat16, checkpointed blocks, originals
  recomputed with the adapters off); the default batch (16 unsafe + 16 safe prompts, plus the step's pairs and word
  salads); the shipped prompts; validation and mining every 5 steps so that the peak includes them. Z-Image aligns
  its Qwen3-4B (36 blocks, 2,560 wide); Flux its CLIP-L and T5-XXL (24 blocks, 4,096 wide, 256 positions as
  the host pads them). The figure per step is the median time between two training steps' progress reports, the
  peak is ``torch.cuda.max_memory_allocated`` over the whole call (setup, steps, validation, packaging). Tokenizers:
  the tests' small ones trained on the shipped prompts (a real Qwen vocabulary is not at hand offline; the small one
  gives more tokens a prompt, which errs on the costly side; T5's positions are fixed at 256 anyway) and CLIP's real
  vocabulary.
* **LoRA step** (the peer): the diffusers transformer at its released size (Flux.1 [dev]: 19 double and 38 single
  blocks, 3,072 wide; Z-Image: 30 + 2 + 2 blocks, 3,840 wide) in bfloat16, PEFT LoRA of rank 16 on the attention
  projections (``to_q``, ``to_k``, ``to_v``, ``to_out.0``: diffusers' own LoRA training scripts' targets) in float32,
  gradient checkpointing, AdamW; one 1024 x 1024 picture (4,096 latent tokens) with its caption (Flux: 512 T5
  positions; Z-Image: 48), flow-matching MSE loss; forward, backward and optimiser step, median of the timed steps.

    python -m benchmarks.bench_llm_gpu [--steps 10] [--lora-steps 6] [--only align:z_image,lora:flux]

Each case runs in its own child process (a clean peak-memory count). It writes ``benchmarks/results/llm_gpu.json``
and ``llm_gpu.md``. ``--layers N`` builds every model N blocks deep instead (a smoke test of the code paths on a CPU;
figures meaningless).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

RANK = 8
LORA_RANK = 16
CASES = ("align:z_image", "align:flux", "lora:z_image", "lora:flux", "align:flux2_klein_9b")
# Qwen3-4B (Z-Image) and Qwen3-8B (Flux.2 [klein] 9B, three hidden layers, 512 positions consumed): width, MLP.
QWEN3 = {"z_image": ("qwen3_4b", (2560, 9728)), "flux2_klein_9b": ("qwen3_8b", (4096, 12288))}
PEERS = {"flux": ("t5xxl", "Flux.1 [dev] transformer", 512), "z_image": ("qwen3_4b", "Z-Image transformer", 48)}


def _device():
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _encoders(family: str, layers: int | None, device):
    """The family's encoders at their released size, float32 on the host (built on ``device`` for speed)."""
    import torch
    from transformers import CLIPTextConfig, Qwen3Config, Qwen3Model, T5Config, T5EncoderModel

    import tiny_encoders
    from safetext_core.encoding import EncoderSet
    from safetext_core.models import ClipTextEncoder, PrefixedEncoder
    from safetext_core.tokenizer import load_clip_tokenizer

    def built(make):
        with torch.device(device), torch.no_grad():
            model = make()
        return model.float().cpu().eval().requires_grad_(False)

    if family in QWEN3:
        name, (hidden, intermediate) = QWEN3[family]
        config = Qwen3Config(vocab_size=151936, hidden_size=hidden, intermediate_size=intermediate,
                             num_attention_heads=32, num_key_value_heads=8, head_dim=128,
                             num_hidden_layers=layers or 36, bos_token_id=None, eos_token_id=None, pad_token_id=None,
                             use_cache=False)
        models = {name: built(lambda: PrefixedEncoder(Qwen3Model(config)))}
        tokenizers = {name: tiny_encoders.qwen_tokenizer()}
    else:
        clip = CLIPTextConfig(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=layers or 12,
                              num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu",
                              projection_dim=768)
        t5 = T5Config(vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=layers or 24, num_heads=64,
                      feed_forward_proj="gated-gelu", dropout_rate=0.0, is_encoder_decoder=False, use_cache=False)
        models = {"clip_l": built(lambda: ClipTextEncoder(clip, with_projection=False)), "t5xxl": built(lambda: T5EncoderModel(t5))}
        tokenizers = {"clip_l": load_clip_tokenizer(), "t5xxl": tiny_encoders.t5_tokenizer()}
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return EncoderSet(family, models, tokenizers)


def _align_child(family: str, steps: int, every: int, layers: int | None, out: Path, batch: int | None = None) -> None:
    import torch

    from safetext_core import AlignConfig, load_prompt_sets
    from safetext_core.loop import align

    device = _device()
    torch.manual_seed(0)
    started = time.perf_counter()
    encoders = _encoders(family, layers, device)
    built = time.perf_counter() - started
    params = {name: sum(p.numel() for p in m.parameters()) for name, m in encoders.models.items()}
    config = AlignConfig(rank=RANK, steps=steps, eval_every=every, mine_every=every, early_stop=False,
                         **({"batch_size": batch} if batch else {}))
    prompts = load_prompt_sets()
    stamps: list[float] = []
    phases: list[str] = []

    profile_to = os.environ.get("SAFETEXT_BENCH_PROFILE")  # a file: the operators of training steps 2-3, profiled
    profiler = None

    def progress(event) -> None:
        nonlocal profiler
        if event.phase == "train":
            stamps.append(time.perf_counter())
            if profile_to and len(stamps) == 2:
                profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU] + (
                    [torch.profiler.ProfilerActivity.CUDA] if device.type == "cuda" else []))
                profiler.start()
            elif profiler is not None and len(stamps) == 4:
                profiler.stop()
                averages = profiler.key_averages()
                tables = [averages.table(sort_by="self_cpu_time_total", row_limit=30)]
                if device.type == "cuda":
                    tables.append(averages.table(sort_by="self_cuda_time_total", row_limit=20))
                Path(profile_to).write_text("\n\n".join(tables))
                profiler = None
        phases.append(event.phase)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device) if device.type == "cuda" else 0
    started = time.perf_counter()
    result = align(encoders, prompts, config, progress=progress, device=device)
    _sync(device)
    seconds = time.perf_counter() - started
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0
    reserved = torch.cuda.max_memory_reserved(device) if device.type == "cuda" else 0
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    factors = sum(up.numel() + down.numel() for f in result.factors.values() for up, down, _ in f.values())
    out.write_text(json.dumps({
        "case": f"align:{family}", "parameters": params, "steps": steps, "steps_run": result.steps_run,
        "build_seconds": built, "align_seconds": seconds, "step_seconds": statistics.median(gaps) if gaps else None,
        "step_gaps": gaps, "setup_seconds": (stamps[0] - started) if stamps else None,
        "peak_allocated": peak - before, "peak_reserved": reserved, "factor_parameters": factors,
        "loss": result.history[-1]["loss"], "phases": sorted(set(phases))}))


def _lora_child(family: str, steps: int, layers: int | None, resolution: int, out: Path) -> None:
    import torch
    from diffusers import FluxTransformer2DModel, ZImageTransformer2DModel
    from peft import LoraConfig

    device = _device()
    torch.manual_seed(0)
    _, peer, caption = PEERS[family]
    started = time.perf_counter()
    with torch.device(device):
        if family == "flux":
            model = FluxTransformer2DModel(patch_size=1, in_channels=64, num_layers=layers or 19,
                                           num_single_layers=layers or 38, attention_head_dim=128,
                                           num_attention_heads=24, joint_attention_dim=4096,
                                           pooled_projection_dim=768, guidance_embeds=True)
        else:
            kwargs = {"n_layers": layers, "n_refiner_layers": min(layers, 2)} if layers else {}
            model = ZImageTransformer2DModel(**kwargs)
    model = model.to(torch.bfloat16).requires_grad_(False)
    params = sum(p.numel() for p in model.parameters())
    model.add_adapter(LoraConfig(r=LORA_RANK, lora_alpha=LORA_RANK, init_lora_weights="gaussian",
                                 target_modules=["to_k", "to_q", "to_v", "to_out.0"]))
    trained = [p for p in model.parameters() if p.requires_grad]
    for p in trained:
        p.data = p.data.float()  # diffusers' scripts: cast_training_params(..., dtype=torch.float32)
    if not os.environ.get("SAFETEXT_BENCH_NO_CHECKPOINTING"):
        model.enable_gradient_checkpointing()
    model.train()
    optimizer = torch.optim.AdamW(trained, lr=1e-4)
    built = time.perf_counter() - started
    side = resolution // 16  # latent side after the VAE (8x) and 2x2 patches
    tokens = side * side

    def step() -> None:
        with torch.device(device):
            if family == "flux":
                latents = torch.randn(1, tokens, 64, dtype=torch.bfloat16)
                target = torch.randn_like(latents)
                pred = model(hidden_states=latents, encoder_hidden_states=torch.randn(1, caption, 4096,
                                                                                     dtype=torch.bfloat16),
                             pooled_projections=torch.randn(1, 768, dtype=torch.bfloat16),
                             timestep=torch.full((1,), 0.5), img_ids=torch.zeros(tokens, 3),
                             txt_ids=torch.zeros(caption, 3), guidance=torch.full((1,), 3.5)).sample
                loss = torch.nn.functional.mse_loss(pred.float(), target.float())
            else:
                latents = torch.randn(16, 1, side * 2, side * 2, dtype=torch.bfloat16)
                target = torch.randn_like(latents)
                pred = model([latents], torch.full((1,), 0.5), [torch.randn(caption, 2560, dtype=torch.bfloat16)]).sample
                loss = torch.nn.functional.mse_loss(pred[0].float(), target.float())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    times = []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for i in range(steps + 2):  # two warm-up steps
        _sync(device)
        t0 = time.perf_counter()
        step()
        _sync(device)
        if i >= 2:
            times.append(time.perf_counter() - t0)
    out.write_text(json.dumps({
        "case": f"lora:{family}", "peer": peer, "parameters": params, "lora_parameters": sum(p.numel() for p in trained),
        "build_seconds": built, "step_seconds": statistics.median(times), "step_times": times,
        "latent_tokens": tokens, "caption_positions": caption, "resolution": resolution,
        "gradient_checkpointing": not os.environ.get("SAFETEXT_BENCH_NO_CHECKPOINTING"),
        "peak_allocated": torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0}))


def _batch(environment: dict) -> str:
    size = environment.get("batch_size")
    return f"batch {size} unsafe + {size} safe" if size else "default batch"


def _table(rows: dict[str, dict], environment: dict, failures: dict[str, str] | None = None) -> str:
    gib = 2 ** 30
    failures = failures or {}
    lines = [f"Measured on {environment['device']} ({environment['torch']}, transformers {environment['transformers']}, "
             f"diffusers {environment['diffusers']}), {environment['date']}; every model at full size, random weights.",
             "", f"| family | alignment (rank 8, {_batch(environment)}) | s a step | peak GPU memory | peer: LoRA step (rank 16, "
             f"{environment['resolution']}², bf16, checkpointing) | s a step | peak | **alignment / LoRA step** |",
             "|---|---|---|---|---|---|---|---|"]
    for key, a in rows.items():
        if not key.startswith("align:"):
            continue
        family = key.split(":")[1]
        size = ", ".join(f"{name} {count / 1e9:.2f}B" for name, count in a["parameters"].items())
        cells = f"| {family} | {size} | {a['step_seconds']:.3f} | {a['peak_allocated'] / gib:.2f} GiB |"
        lo = rows.get(f"lora:{family}")
        if lo:
            plain = "" if lo.get("gradient_checkpointing", True) else ", without checkpointing"
            cells += (f" {lo['peer']} ({lo['parameters'] / 1e9:.2f}B{plain}) | {lo['step_seconds']:.3f} | "
                      f"{lo['peak_allocated'] / gib:.1f} GiB | **{a['step_seconds'] / lo['step_seconds']:.2f}** |")
        elif f"lora:{family}" in failures:
            errors = [line for line in failures[f"lora:{family}"].splitlines() if line.startswith("torch.") or ": CUDA error" in line] or ["?"]
            error = errors[-1].strip()[:120]
            cells += f" {PEERS[family][1]}: failed ({error}) | - | - | - |"
        else:
            cells += " - | - | - | - |"
        lines.append(cells)
    for key, a in rows.items():
        if key.startswith("align:"):
            lines.append(f"\n{key}: setup {a['setup_seconds']:.1f} s (tokenising, the anchor, the first step's "
                         f"originals), {a['steps_run']} steps in {a['align_seconds']:.1f} s, "
                         f"{a['factor_parameters'] / 1e6:.1f} M factor values; peak reserved "
                         f"{a['peak_reserved'] / gib:.2f} GiB")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=10, help="alignment steps (validation and mining every 5)")
    parser.add_argument("--every", type=int, default=5, help="validation and mining every N steps (0: never)")
    parser.add_argument("--batch-size", type=int, help="unsafe (and as many safe) prompts a step; default: the engine's")
    parser.add_argument("--lora-steps", type=int, default=6, help="timed LoRA steps after two warm-up steps")
    parser.add_argument("--only", default=",".join(CASES))
    parser.add_argument("--layers", type=int, help="blocks of every model (smoke test); default: released depth")
    parser.add_argument("--resolution", type=int, default=1024)
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--child", nargs=2, metavar=("CASE", "OUT"))
    parser.add_argument("--render", metavar="JSON", help="only write the table of an earlier run's llm_gpu.json")
    args = parser.parse_args(argv)
    if args.render:
        saved = json.loads(Path(args.render).read_text())
        print(_write(Path(args.output), saved["environment"], saved["rows"], saved["failures"]))
        return
    if args.child:
        kind, family = args.child[0].split(":")
        if kind == "align":
            _align_child(family, args.steps, args.every, args.layers, Path(args.child[1]), args.batch_size)
        else:
            _lora_child(family, args.lora_steps, args.layers, args.resolution, Path(args.child[1]))
        return
    import torch
    import transformers

    try:
        import diffusers
        diffusers_version = diffusers.__version__
    except ImportError:
        diffusers_version = "-"
    device = _device()
    environment = {"device": torch.cuda.get_device_name(0) if device.type == "cuda" else "CPU",
                   "torch": torch.__version__, "transformers": transformers.__version__, "diffusers": diffusers_version,
                   "date": time.strftime("%Y-%m-%d"), "layers": args.layers, "resolution": args.resolution,
                   "batch_size": args.batch_size,
                   "command": "python -m benchmarks.bench_llm_gpu " + " ".join(argv or sys.argv[1:])}
    rows: dict[str, dict] = {}
    failures: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as folder:
        for case in [c for c in args.only.split(",") if c]:
            out = Path(folder) / (case.replace(":", "-") + ".json")
            command = [sys.executable, "-m", "benchmarks.bench_llm_gpu", "--steps", str(args.steps), "--every",
                       str(args.every), "--lora-steps",
                       str(args.lora_steps), "--resolution", str(args.resolution), "--child", case, str(out)]
            if args.layers:
                command += ["--layers", str(args.layers)]
            if args.batch_size:
                command += ["--batch-size", str(args.batch_size)]
            started = time.perf_counter()
            run = subprocess.run(command, cwd=str(ROOT), capture_output=True, text=True, env=os.environ.copy())
            if (run.returncode != 0 or not out.is_file()) and case.startswith("lora:"):
                # Flux's checkpointed LoRA step failed on an H200 (torch 2.11, a CUDA illegal memory access in the
                # recompute): time it without checkpointing rather than not at all; the row says which it was.
                failures[case + " (checkpointed)"] = run.stderr[-3000:]
                print(f"{case} with checkpointing FAILED, again without:\n{run.stderr[-1500:]}", flush=True)
                run = subprocess.run(command, cwd=str(ROOT), capture_output=True, text=True,
                                     env={**os.environ, "SAFETEXT_BENCH_NO_CHECKPOINTING": "1"})
            if run.returncode != 0 or not out.is_file():
                failures[case] = run.stderr[-3000:]
                print(f"{case} FAILED:\n{run.stderr[-3000:]}", flush=True)
                continue
            rows[case] = json.loads(out.read_text())
            print(f"{case}: {time.perf_counter() - started:.0f} s, {json.dumps(rows[case])[:400]}", flush=True)
            _write(Path(args.output), environment, rows, failures)  # after each case: a killed run keeps the others
    print(_write(Path(args.output), environment, rows, failures))


def _write(output: Path, environment: dict, rows: dict[str, dict], failures: dict[str, str]) -> str:
    output.mkdir(parents=True, exist_ok=True)
    (output / "llm_gpu.json").write_text(json.dumps({"environment": environment, "rows": rows,
                                                     "failures": failures}, indent=2))
    table = _table(rows, environment, failures)
    (output / "llm_gpu.md").write_text(table)
    return table


if __name__ == "__main__":
    main()
