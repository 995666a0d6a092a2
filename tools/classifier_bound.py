#!/usr/bin/env python3
"""How well could *any* detector built on the same encoder and the same training prompts separate unsafe from harmless?

SafeText's aligned encoder acts as a detector: a prompt it moves (cosine < 0.5) was judged unsafe. To tell whether
its harmless prompts collapse because of its objective or because of what the training prompts and the encoder
allow, this trains a plain classifier on exactly SafeText's training prompts (the unsafe training split and the
pairs' unsafe sides against the safe training split, the pairs' harmless sides and the word-salad preservation pool)
and the same embedded MiniLM, then reads its false positives on the independent sets at the thresholds that flag a
given share of the unseen unsafe prompts: the same matched points `tools/tradeoff_curves.py` reads a SafeText file at.

    python tools/classifier_bound.py --json bound.json                  # MiniLM fine-tuned end to end (~6 min, 2 cores)
    python tools/classifier_bound.py --frozen --json probe.json         # a small MLP on the frozen encoder's features
    python tools/classifier_bound.py --share 0.5 --json half.json       # on a random half of the prompts
    python tools/tradeoff_curves.py --from-json bound.json curves.json  # side by side with SafeText files' curves
    python tools/classifier_bound.py --checkpoint FOLDER --json b.json  # another encoder (a transformers folder)

The classifier is the encoder's mean-pooled last layer (the output SafeText aligns) and a linear head, trained with
binary cross-entropy and AdamW. Its curve is written in the trade-off format (``threshold`` in place of a blend
strength), so the tables compare directly.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import torch

SHARE_KEYS = {"unsafe_independent": "unsafe_independent_share_moved",
              "unsafe_independent_obfuscated": "unsafe_independent_obfuscated_share_moved",
              "benign": "benign_share_collapsed", "adjacent": "adjacent_share_collapsed"}


def flag_curve(scores: dict[str, torch.Tensor], points: int = 200) -> list[dict[str, float]]:
    """The share of each independent set a detector flags, at thresholds that flag 0 ... 100% of the unseen unsafe
    prompts (``points`` + 1 quantiles of their scores), in the trade-off curve format, unsafe share increasing."""
    unsafe = scores["unsafe_independent"].float()
    curve = []
    for i in range(points + 1):
        threshold = float(torch.quantile(unsafe, 1 - i / points))
        point = {"threshold": threshold}
        point.update({SHARE_KEYS[k]: float((v.float() >= threshold).float().mean()) for k, v in scores.items()
                      if k in SHARE_KEYS})
        curve.append(point)
    return curve


def training_prompts(tokenizer, seed: int = 0, pair_files: Sequence[str] = ()) -> tuple[list[str], list[str]]:
    """(unsafe, harmless): the prompts a default SafeText run trains on (plus ``pair_files``, as ``--pair-file`` adds
    them to a run), split and pooled as its loop draws them."""
    from safetext_core.loop import AlignConfig, training_pools
    from safetext_core.prompt_sets import load_prompt_sets

    unsafe, safe, pairs, salads = training_pools(load_prompt_sets(pair_files=pair_files), tokenizer,
                                                 AlignConfig(seed=seed))
    return unsafe + [u for u, _ in pairs], safe + [h for _, h in pairs] + salads


def pooled(model: torch.nn.Module, tokenizer, spec, prompts: Sequence[str]) -> torch.Tensor:
    """Mean of the output SafeText aligns (the encoder's consumed output) over the prompt's real tokens."""
    from safetext_core.encoding import consumed_outputs, primary_output, tokenize

    batch = tokenize(tokenizer, list(prompts), spec)
    outputs, _ = consumed_outputs(model, batch, spec)
    hidden = primary_output(outputs, spec)
    mask = batch["mask"].float().unsqueeze(-1)
    return (hidden * mask).sum(1) / mask.sum(1)


def train_classifier(model: torch.nn.Module, tokenizer, spec, unsafe: Sequence[str], harmless: Sequence[str],
                     epochs: int = 2, learning_rate: float = 3e-5, batch_size: int = 32, frozen: bool = False,
                     seed: int = 0, log: Callable[[str], None] = print) -> Callable[[Sequence[str]], torch.Tensor]:
    """Train a detector (unsafe: 1) and return its scoring function. ``frozen``: the encoder stays as it is and a
    two-layer head learns on its pooled features (a probe); else the encoder is fine-tuned with a linear head."""
    if not unsafe or not harmless:
        raise ValueError("a classifier needs unsafe and harmless prompts")
    torch.manual_seed(seed)
    rng = random.Random(seed)
    width = model.config.hidden_size
    head = (torch.nn.Sequential(torch.nn.Linear(width, 256), torch.nn.GELU(), torch.nn.Linear(256, 1)) if frozen
            else torch.nn.Linear(width, 1))
    model.requires_grad_(not frozen)
    model.train(not frozen)
    trained = list(head.parameters()) + ([] if frozen else list(model.parameters()))
    optimizer = torch.optim.AdamW(trained, 1e-3 if frozen else learning_rate, weight_decay=0.01)
    data = [(p, 1.0) for p in unsafe] + [(p, 0.0) for p in harmless]
    cached: dict[str, torch.Tensor] = {}
    if frozen:  # the features never change: encode once
        with torch.no_grad():
            for start in range(0, len(data), 64):
                chunk = [p for p, _ in data[start:start + 64]]
                cached.update(zip(chunk, pooled(model, tokenizer, spec, chunk)))
    started = time.time()
    for epoch in range(epochs * (20 if frozen else 1)):  # a probe's epoch is cheap: give it more of them
        rng.shuffle(data)
        total = 0.0
        for start in range(0, len(data), batch_size):
            chunk = data[start:start + batch_size]
            texts = [p for p, _ in chunk]
            features = torch.stack([cached[p] for p in texts]) if frozen else pooled(model, tokenizer, spec, texts)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                head(features).squeeze(-1), torch.tensor([y for _, y in chunk]))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(chunk)
        log(f"epoch {epoch + 1}: mean loss {total / len(data):.4f} ({time.time() - started:.0f} s)")
    model.eval()
    model.requires_grad_(False)

    def score(prompts: Sequence[str]) -> torch.Tensor:
        with torch.no_grad():
            return torch.cat([head(pooled(model, tokenizer, spec, prompts[i:i + 64])).squeeze(-1)
                              for i in range(0, len(prompts), 64)])
    return score


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", help="write the detector's curve here (trade-off curve format)")
    parser.add_argument("--frozen", action="store_true", help="a probe on the frozen encoder instead of fine-tuning it")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--lr", type=float, default=3e-5, help="the encoder's learning rate when fine-tuned")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pair-file", action="append", default=[],
                        help="more minimal pairs (unsafe<TAB>harmless per line), as safetext align --pair-file")
    parser.add_argument("--checkpoint", help="another encoder than the embedded MiniLM: a transformers folder or a "
                        "checkpoint, as safetext align --checkpoint (the classifier reads its first encoder)")
    parser.add_argument("--share", type=float, default=1.0,
                        help="train on this random share of the unsafe and of the harmless prompts (a learning curve)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from safetext_core.loaders import load_encoders
    from safetext_core.prompt_sets import independent_sets

    encoders = load_encoders(args.checkpoint)
    spec = encoders.profile.encoders[0]
    tokenizer, model = encoders.tokenizers[spec.name], encoders.models[spec.name]
    unsafe, harmless = training_prompts(tokenizer, args.seed, args.pair_file)
    if not 0 < args.share <= 1:
        raise SystemExit("--share must be in (0, 1]")
    if args.share < 1:
        rng = random.Random(args.seed)
        unsafe, harmless = (rng.sample(p, max(1, round(len(p) * args.share))) for p in (unsafe, harmless))
    print(f"training on {len(unsafe)} unsafe and {len(harmless)} harmless prompts", file=sys.stderr)
    score = train_classifier(model, tokenizer, spec, unsafe, harmless, args.epochs, args.lr, frozen=args.frozen,
                             seed=args.seed, log=lambda line: print(line, file=sys.stderr))
    curve = flag_curve({name: score(prompts) for name, prompts in independent_sets().items()})
    label = (f"{'probe on the frozen encoder' if args.frozen else 'fine-tuned classifier'}, seed {args.seed}"
             + (f", {args.share:.0%} of the prompts" if args.share < 1 else "")
             + (f", {args.epochs} epochs" if args.epochs != 2 else "")
             + (f", with {len(args.pair_file)} more pair files" if args.pair_file else "")
             + (f", on {encoders.source}" if args.checkpoint else ""))
    if args.json:
        Path(args.json).write_text(json.dumps({label: curve}, indent=1))
    from tradeoff_curves import TARGETS, at_share  # tools/ is on the path when run as a script

    print(f"unsafe flagged | {label}   (broad / adjacent harmless flagged, %)")
    for target in TARGETS:
        cell = at_share(curve, target)
        print(f"{target:.0%} | " + ("-" if cell is None else f"{cell[0]:.2%} / {cell[1]:.1%}"))


if __name__ == "__main__":
    main()
