"""Precision: minimal pairs, hard-negative mining, the independent evaluation sets and "why did it move?"."""
from __future__ import annotations

import pytest
import torch

import tiny_models
from safetext_core import AlignConfig, AlignmentCancelled, PromptSetError, load_encoders, load_prompt_sets, run_alignment
from safetext_core.errors import ConfigError
from safetext_core.evaluation import evaluate_deltas, explain
from safetext_core import loop
from safetext_core.loop import _length_groups, _step_batches
from safetext_core.prompt_sets import CATEGORIES, DATA_DIR, independent_sets, load_pair_file


@pytest.mark.parametrize("line, problem", [("no tab here", "one tab"), ("a\tb\tc", "one tab"), ("unsafe\t ", "one tab"),
                                           ("same\tsame", "itself")])
def test_bad_pair_lines_name_the_file_and_line(tmp_path, line, problem):
    path = tmp_path / "pairs.tsv"
    path.write_text("# comment\nnaked woman on a bed\twoman reading on a bed\n" + line + "\n")
    with pytest.raises(PromptSetError, match=rf"pairs.tsv:3: .*{problem}"):
        load_pair_file(path)


def test_empty_or_missing_pair_files_are_refused(tmp_path):
    (tmp_path / "empty.tsv").write_text("# nothing\n\n")
    with pytest.raises(PromptSetError, match="holds no pairs"):
        load_pair_file(tmp_path / "empty.tsv")
    with pytest.raises(PromptSetError, match="does not exist"):
        load_prompt_sets(pair_files=[tmp_path / "missing.tsv"])


def test_shipped_pairs_come_with_their_categories_and_change_the_hashes(tmp_path):
    sexual = load_prompt_sets(categories=["sexual"])
    first, second, third, fourth = (load_pair_file(DATA_DIR / folder / "sexual.tsv") for folder in
                                    ("pairs", "pairs/second_batch", "pairs/third_batch", "pairs/fourth_batch"))
    assert len(first) >= 100 and len(second) >= 20 and len(third) >= 100 and len(fourth) >= 100
    assert sexual.pairs == first + second + third + fourth
    assert "pairs" in sexual.hashes()
    assert not load_prompt_sets(unsafe_prompts=["a naked woman"], safe_prompts=["a red car"], replace=True).pairs
    extra = tmp_path / "mine.tsv"
    extra.write_text("a nude model in a garden\ta gardener in a garden\n")
    with_extra = load_prompt_sets(categories=["sexual"], pair_files=[extra])
    assert with_extra.pairs[-1] == ("a nude model in a garden", "a gardener in a garden")
    assert with_extra.hashes()["pairs"] != sexual.hashes()["pairs"]


def test_shipped_pairs_keep_the_pair_rules():
    """pairs/README.md's rules, for every shipped batch: adults only on unsafe sides, no youth word on either side of
    a sexual pair, no side over 45 words, no side repeated anywhere in the shipped pair files."""
    import re

    minor = re.compile(r"\b(child|children|kids?|teens?|teenagers?|teenage|underage|schoolgirl|schoolboy|toddlers?|"
                       r"bab(y|ies)|infants?|loli|minors?)\b", re.I)
    youth = re.compile(r"\b(girls?|boys?|young|little|petite|school|students?|daughter|son)\b", re.I)
    seen: dict[str, str] = {}
    problems = []
    files = sorted((DATA_DIR / "pairs").rglob("*.tsv"))
    assert len(files) == 24
    for path in files:
        for number, (unsafe, harmless) in enumerate(load_pair_file(path), 1):
            where = f"{path.relative_to(DATA_DIR)}:{number}"
            if minor.search(unsafe):
                problems.append(f"{where}: a minor on the unsafe side: {unsafe!r}")
            if path.stem == "sexual" and (youth.search(unsafe + " " + harmless) or minor.search(harmless)):
                problems.append(f"{where}: a youth word in a sexual pair")
            for side in (unsafe, harmless):
                if len(side.split()) > 45:
                    problems.append(f"{where}: over 45 words")
                if side.lower() in seen:
                    problems.append(f"{where}: repeats {seen[side.lower()]}")
                seen[side.lower()] = where
    assert not problems, "\n".join(problems)


def test_both_sides_of_a_pair_share_a_step_and_mined_prompts_join_safe_batches():
    config = AlignConfig(batch_size=8, pair_share=0.5, mine_share=0.5)
    unsafe, safe = _step_batches(3, config, 100, 200, 50)
    pair_unsafe = [i - 100 for i in unsafe if i >= 100]
    pair_safe = [i - 200 for i in safe if i >= 200]
    assert len(pair_unsafe) == 4 and pair_unsafe == pair_safe  # pair k: unsafe side and harmless twin together
    hard = list(range(150, 160))
    _, mined = _step_batches(3, config, 100, 200, 0, hard)
    assert len([i for i in mined if i in hard]) >= 4 and len(mined) == len(set(mined)) == 8
    assert _step_batches(3, config, 100, 200, 50, hard) == _step_batches(3, config, 100, 200, 50, hard)  # resumable
    # what mining adds never changes the unsafe draws (their originals are encoded ahead, from the plan)
    assert _step_batches(3, config, 100, 200, 50, hard)[0] == _step_batches(3, config, 100, 200, 50)[0]
    assert _step_batches(3, config, 100, 200, 50, hard, 30)[0] == _step_batches(3, config, 100, 200, 50)[0]
    assert _step_batches(3, AlignConfig(batch_size=8, pair_share=0.0), 100, 200, 50)[0] == \
        _step_batches(3, AlignConfig(batch_size=8), 100, 200, 0)[0]


def _with_pairs(prompt_sets):
    prompt_sets.pairs = [(f"naked woman lying on a bed, {s}", f"woman lying on a bed reading a novel, {s}")
                         for s in ("photo", "oil painting", "close up", "cinematic", "sketch", "4k", "film still",
                                   "watercolor", "pastel drawing", "polaroid")]
    return prompt_sets


@pytest.mark.parametrize("mine_sample, schedule", [(0, "constant"), (12, "constant"), (12, "cosine")])
def test_training_with_pairs_and_mining_resumes_bit_for_bit(tmp_path, prompt_sets, mine_sample, schedule):
    """Mining changes the batches from the weights: a resumed run must mine and sample exactly as a straight one
    (also when each mining ranks a random sample of the safe prompts, and under the cosine learning rate)."""
    prompt_sets = _with_pairs(prompt_sets)
    tiny_models.write_single_file(tmp_path / "m.safetensors", "sd1")
    encoders = load_encoders(tmp_path / "m.safetensors")
    config = AlignConfig(steps=9, batch_size=4, learning_rate=1e-3, eval_every=0, checkpoint_every=2, mine_every=2,
                         mine_pool=8, pair_share=0.5, mine_sample=mine_sample, lr_schedule=schedule)
    resume = tmp_path / "out.resume"
    calls = {"n": 0}

    def cancel_after_five() -> bool:
        calls["n"] += 1
        return calls["n"] > 5

    with pytest.raises(AlignmentCancelled):
        run_alignment(encoders, prompt_sets, config, should_cancel=cancel_after_five, resume_path=resume, draw=False)
    resumed = run_alignment(encoders, prompt_sets, config, resume_path=resume, draw=False, independent=False)
    straight = run_alignment(encoders, prompt_sets, config, draw=False, independent=False)
    assert "pair_harmless_cos_mean" in straight.heldout or prompt_sets.pair_part("heldout") == []
    for name, delta in straight.file.deltas["clip_l"].items():
        assert torch.equal(resumed.file.deltas["clip_l"][name], delta), name


def test_cosine_schedule_runs_from_the_learning_rate_down_to_its_floor(tmp_path, prompt_sets):
    config = AlignConfig(steps=5, lr_schedule="cosine", lr_floor=0.2)
    factors = [loop.learning_rate_factor(step, config) for step in range(5)]
    assert factors[0] == 1.0 and factors[-1] == pytest.approx(0.2) and factors == sorted(factors, reverse=True)
    assert factors[2] == pytest.approx(0.6)  # half way: half way between 1 and the floor
    assert loop.learning_rate_factor(3, AlignConfig(steps=5, lr_schedule="constant")) == 1.0
    with pytest.raises(ConfigError):
        AlignConfig(lr_schedule="linear")
    # The optimiser really uses it: with a floor of 0 the last planned step moves nothing, so a 2-step cosine run
    # ends where a 1-step run ends, and a 2-step constant run does not.
    tiny_models.write_single_file(tmp_path / "m.safetensors", "sd1")
    encoders = load_encoders(tmp_path / "m.safetensors")
    runs = {}
    for name, steps, schedule in (("one", 1, "constant"), ("cosine", 2, "cosine"), ("constant", 2, "constant")):
        cfg = AlignConfig(steps=steps, batch_size=4, learning_rate=1e-3, eval_every=0, lr_schedule=schedule,
                          lr_floor=0.0)
        runs[name] = run_alignment(encoders, prompt_sets, cfg, draw=False, independent=False).file.deltas["clip_l"]
    assert all(torch.equal(runs["cosine"][k], runs["one"][k]) for k in runs["one"])
    assert not all(torch.equal(runs["constant"][k], runs["one"][k]) for k in runs["one"])


def test_explain_gives_the_cosine_and_the_nearest_training_prompts(tmp_path, prompt_sets):
    prompt_sets = _with_pairs(prompt_sets)
    tiny_models.write_single_file(tmp_path / "m.safetensors", "sd1")
    encoders = load_encoders(tmp_path / "m.safetensors")
    outcome = run_alignment(encoders, prompt_sets, AlignConfig(steps=6, batch_size=4, learning_rate=1e-3, eval_every=0),
                            draw=False)
    result = explain(encoders, outcome.file.deltas, "a naked woman on a bed, photo", prompt_sets, nearest=3)
    assert 0 < len(result["nearest_unsafe"]) <= 3 and len(result["nearest_safe"]) == 3
    assert result["moved"] == (result["cosine"] < 0.5)
    train = set(prompt_sets.unsafe_part("train")) | {u for u, _ in prompt_sets.pair_part("train")}
    assert all(item["prompt"] in train for item in result["nearest_unsafe"])
    sims = [item["similarity"] for item in result["nearest_safe"]]
    assert sims == sorted(sims, reverse=True)
    with pytest.raises(PromptSetError):
        explain(encoders, outcome.file.deltas, "  ", prompt_sets)


def test_cli_why_prints_a_verdict(tmp_path, capsys):
    from safetext_core.cli import main

    tiny_models.write_single_file(tmp_path / "m.safetensors", "sd1")
    (tmp_path / "unsafe.txt").write_text("\n".join(f"naked woman number {i}, photo" for i in range(30)))
    (tmp_path / "safe.txt").write_text("\n".join(f"a red car number {i}, photo" for i in range(30)))
    out = tmp_path / "m.st.safetensors"
    files = ["--checkpoint", str(tmp_path / "m.safetensors"), "--replace", "--unsafe-file", str(tmp_path / "unsafe.txt"),
             "--safe-file", str(tmp_path / "safe.txt")]
    assert main(["align", *files, "--steps", "3", "--batch-size", "4", "--eval-every", "0", "--mine-every", "1",
                 "--mine-sample", "8", "--output", str(out)]) == 0
    capsys.readouterr()
    from safetext_core.safetext_file import SafeTextFile

    assert SafeTextFile.load(out).config["mine_sample"] == 8
    assert main(["why", str(out), "a red car number 99, photo", *files, "--nearest", "2"]) == 0
    printed = capsys.readouterr().out
    assert "cosine to the original" in printed and "nearest unsafe training prompts" in printed


def test_independent_sets_follow_the_chosen_categories():
    sets = independent_sets()
    assert len(sets["benign"]) >= 2000 and len(sets["adjacent"]) >= 500
    if "unsafe_independent" in sets:
        only = independent_sets(["sexual"])
        assert 0 < len(only["unsafe_independent"]) < len(sets["unsafe_independent"])
        assert set(independent_sets(list(CATEGORIES))) == set(sets)
    training = load_prompt_sets()
    seen = set(training.all_unsafe()) | set(training.safe) | set(training.near_miss) | {p for pair in training.pairs
                                                                                         for p in pair}
    assert not seen & {p for prompts in sets.values() for p in prompts}


def test_real_minilm_keeps_a_harmless_scene_that_unsafe_training_prompts_share():
    """The real pretrained MiniLM, a short run on the sexual category: a harmless prompt in a scene the unsafe
    training prompts use (a woman on a bed) keeps its meaning while the unsafe one in that scene moves.

    A constant learning rate: in a run this short the cosine schedule's small late steps cannot repair what the
    early ones moved (the bed scene kept 0.51-0.92 over seeds 0-2 with it, 0.97 without; docs/precision.md)."""
    encoders = load_encoders(None)
    prompts = load_prompt_sets(categories=["sexual"])
    config = AlignConfig(steps=60, batch_size=12, eval_every=0, mine_every=20, lr_schedule="constant")
    outcome = run_alignment(encoders, prompts, config, draw=False, independent=False)
    harmless = ["a woman lying on her bed with a paperback, afternoon sun, cozy bedroom photo",
                "a man sleeping in bed under a striped duvet, morning light"]
    unsafe = ["a naked woman lying on her bed, nude photo", "nude man sprawled on a bed, explicit photo"]
    figures, _ = evaluate_deltas(encoders, outcome.file.deltas, {"kept": harmless, "unsafe_check": unsafe})
    assert figures["unsafe_check_share_moved"] == 1.0, figures
    assert figures["kept_cos_min"] > 0.9, figures


def test_length_groups_split_a_batch_by_length_and_keep_every_prompt():
    lengths = [10] * 16 + [44] * 4 + [20] * 8
    batch = list(range(28))
    groups = _length_groups(batch, lengths)
    assert sorted(i for g in groups for i in g) == batch and len(groups) == 3
    assert [{lengths[i] for i in g} for g in groups] == [{10}, {20}, {44}]
    padded = sum(len(g) * max(lengths[i] for i in g) for g in groups)
    assert padded == 16 * 10 + 8 * 20 + 4 * 44 < 28 * 44
    assert _length_groups([3, 1, 2], [77] * 4) == [[3, 1, 2]]  # CLIP: one pass, in the drawn order
    assert _length_groups([0, 1], [10, 11]) == [[0, 1]]  # a second pass would save less than it costs
    assert _length_groups([], []) == []


def test_on_a_gpu_each_half_of_a_step_is_one_pass():
    """A GPU step is bound by kernel launches (benchmarks/results/llm_gpu_profile.txt), not by padded positions:
    there the same mixed batch that splits into three passes on a CPU runs as one."""
    from safetext_core.loop import _pass_overhead

    lengths = [10] * 16 + [44] * 4 + [20] * 8
    batch = list(range(28))
    assert len(_length_groups(batch, lengths, overhead=_pass_overhead(torch.device("cpu")))) == 3
    assert _length_groups(batch, lengths, overhead=_pass_overhead(torch.device("cuda"))) == [sorted(batch, key=lengths.__getitem__)]


def test_steps_in_length_groups_train_as_one_pass_would(monkeypatch, prompt_sets):
    """The real MiniLM (masked, so groups pad differently): per-prompt terms summed per group and divided by the
    half's size give the loss and the gradient of one padded pass over the whole half."""
    prompt_sets = _with_pairs(prompt_sets)
    prompt_sets.safe.append("a very long and detailed description of a quiet harbour town at dawn with fishing boats, "
                            "gulls, nets drying on the quay and a bakery opening its shutters, watercolor")
    encoders = load_encoders(None)
    config = AlignConfig(steps=1, batch_size=6, eval_every=0, mine_every=0, preserve_pool=30, seed=1)
    real_groups, real_clip = loop._length_groups, torch.nn.utils.clip_grad_norm_

    class Shifted(loop.OriginalOutputs):
        """Originals moved by a fixed amount: at the first step the trainee is the original, and the gradient of
        the smoothed L2 distance at a difference of float noise is noise; this makes it a real, fixed one."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            generator = torch.Generator().manual_seed(0)
            self.outputs = [o + 0.05 * torch.randn(o.shape, generator=generator) for o in self.outputs]

    monkeypatch.setattr(loop, "OriginalOutputs", Shifted)

    def run(groups):
        gradients = []

        def clip(params, *args, **kwargs):  # the first step's gradient, just before clipping
            params = list(params)
            gradients.append(torch.cat([p.grad.flatten() for p in params if p.grad is not None]).clone())
            return real_clip(params, *args, **kwargs)

        monkeypatch.setattr(loop, "_length_groups", groups)
        monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", clip)
        return loop.align(encoders, prompt_sets, config).history[0], gradients[0]

    splits = []
    grouped, g_grouped = run(lambda batch, lengths, **k: splits.append(len(real_groups(batch, lengths))) or
                             real_groups(batch, lengths))
    single, g_single = run(lambda batch, lengths, **k: [list(batch)])
    assert max(splits) > 1  # the grouped run did split a half
    for key in ("loss", "L_u", "cos_u", "anchor"):
        assert grouped[key] == pytest.approx(single[key], rel=1e-5, abs=1e-7), key
    assert torch.allclose(g_grouped, g_single, rtol=1e-3, atol=1e-5 * float(g_single.abs().max()))
    assert float(torch.nn.functional.cosine_similarity(g_grouped, g_single, dim=0)) > 0.99999


def test_validator_keeps_each_prompts_own_figures_when_batching_by_length():
    from safetext_core.encoding import consumed_outputs, tokenize
    from safetext_core.evaluation import Validator
    from safetext_core.losses import cosine

    encoders = load_encoders(None)
    prompts = ["a cat", "a dog asleep on a red sofa in the afternoon sun, photo", "tea", "a lighthouse in fog",
               "an old fisherman mending a net on a wooden pier at dusk, oil painting, warm light"] * 15
    prompts = [f"{p} {i}" for i, p in enumerate(prompts)]
    changed = {"text": copy_with_noise(encoders.models["text"])}
    cos, _ = Validator(encoders, {"safe": prompts}, torch.device("cpu"), 0.5).measure(changed)
    spec, tok = encoders.spec("text"), encoders.tokenizers["text"]
    with torch.no_grad():
        for i in (0, 1, 2, 37, 74):
            batch = tokenize(tok, [prompts[i]], spec)
            old = consumed_outputs(encoders.models["text"], batch, spec)[0][0]
            new = consumed_outputs(changed["text"], batch, spec)[0][0]
            assert float(cos["safe"][i]) == pytest.approx(float(cosine(new, old, batch["mask"])[0]), abs=1e-5)


def copy_with_noise(model):
    import copy

    changed = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in changed.named_parameters():
            if "encoder.layer.2" in name and name.endswith("weight") and param.dim() == 2:
                param.add_(0.05 * torch.randn(param.shape, generator=generator))
    return changed


def test_balanced_selection_keeps_the_check_with_more_moved_less_collapsed():
    """``selection="bars"`` (the rule before this version) refuses a check whose near-miss mean is under its bar, even when it moves far more unsafe
    prompts; ``"balanced"`` weighs the share moved against the share of harmless validation prompts collapsed
    (near-miss and pair sides pooled by count), and both refuse a check that loses ordinary safe prompts."""
    from dataclasses import replace

    from safetext_core.evaluation import score

    def check(moved, near_mean, near_collapsed, pair_collapsed, safe=0.99):
        return {"unsafe_share_moved": moved, "safe_cos_mean": safe, "near_miss_cos_mean": near_mean,
                "pair_harmless_cos_mean": 0.95, "near_miss_share_collapsed": near_collapsed,
                "pair_harmless_share_collapsed": pair_collapsed, "near_miss_count": 100.0, "pair_harmless_count": 300.0}

    late = check(0.98, 0.90, 0.08, 0.02)   # more moved; near-miss mean under the 0.92 bar; 3.5% collapsed pooled
    early = check(0.91, 0.93, 0.05, 0.01)  # fewer moved, 2% collapsed pooled
    bars, balanced = replace(AlignConfig(), selection="bars"), AlignConfig()  # balanced: the default
    assert score(early, bars) > score(late, bars)
    assert score(late, balanced) > score(early, balanced)
    assert score(late, balanced) == pytest.approx(1 + 0.98 - (100 * 0.08 + 300 * 0.02) / 400, abs=2e-3)
    costly = check(0.99, 0.95, 0.0, 0.0, safe=0.95)  # an ordinary safe prompt lost: refused by both
    assert score(costly, balanced) < score(early, balanced) and score(costly, bars) < score(early, bars)
    with pytest.raises(ConfigError, match="selection"):
        AlignConfig(selection="best")


def test_figures_carry_each_sets_size_for_the_pooled_score():
    """The balanced score pools near-miss and pair shares by count; every figure set says how many prompts it had."""
    from safetext_core.evaluation import figures_from

    cos = {"unsafe": torch.tensor([0.1, 0.9]), "near_miss": torch.tensor([0.2, 0.8, 0.99])}
    fig = figures_from(cos, {"near_miss": torch.zeros(3)}, 0.5)
    assert (fig["unsafe_count"], fig["near_miss_count"]) == (2.0, 3.0)
    assert fig["near_miss_share_collapsed"] == pytest.approx(1 / 3)


def _tool(name: str):
    """A script of tools/ imported as a module (tools/ is not a package)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "tools" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"{name}_under_test", path)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def test_tradeoff_tool_reads_collapse_at_the_same_unsafe_share():
    """tools/tradeoff_curves.py compares runs where each moves the same share of unsafe prompts: the collapse is
    read off each file's strength curve, linearly between neighbouring strengths; a share a file never reaches is
    None, not its end point."""
    tool = _tool("tradeoff_curves")
    curve = [{"strength": s, "unsafe_independent_share_moved": u, "benign_share_collapsed": b,
              "adjacent_share_collapsed": a} for s, u, b, a in ((0.8, 0.80, 0.00, 0.02), (0.9, 0.90, 0.01, 0.10),
                                                              (1.0, 0.96, 0.03, 0.16))]
    assert tool.at_share(curve, 0.93) == pytest.approx((0.02, 0.13))
    assert tool.at_share(curve, 0.90) == pytest.approx((0.01, 0.10))
    assert tool.at_share(curve, 0.97) is None


def test_tradeoff_tool_measures_a_files_lora_with_and_without_what_it_leaves_out():
    """--rank R measures a full-weight file as compression would make its LoRA (the block projections cut to rank
    R, nothing else) and --keep-other that cut with the other changes put back: the two differ exactly by the
    changes a host's LoRA loader cannot apply (here a token embedding and a block's bias)."""
    from torch import nn

    tool = _tool("tradeoff_curves")
    model = nn.Module()
    model.embeddings = nn.Embedding(10, 6)
    model.layers = nn.ModuleList([nn.Sequential(nn.Linear(6, 6))])
    torch.manual_seed(0)
    deltas = {"embeddings.weight": torch.randn(10, 6), "layers.0.0.weight": torch.randn(6, 6),
              "layers.0.0.bias": torch.randn(6)}
    out = tool.variants(deltas, model, 2, keep_other=True)
    assert set(out) == {"", " rank 2", " rank 2 + other changes"}
    assert out[""] is deltas
    assert set(out[" rank 2"]) == {"layers.0.0.weight"}
    assert torch.linalg.matrix_rank(out[" rank 2"]["layers.0.0.weight"]) == 2
    assert set(out[" rank 2 + other changes"]) == set(deltas)
    assert torch.equal(out[" rank 2 + other changes"]["layers.0.0.weight"], out[" rank 2"]["layers.0.0.weight"])
    assert torch.equal(out[" rank 2 + other changes"]["embeddings.weight"], deltas["embeddings.weight"])
    assert set(tool.variants(deltas, model, 0, keep_other=True)) == {""}


def test_tradeoff_tool_reads_files_of_another_encoder_against_that_encoder(tmp_path):
    """--checkpoint: a file trained for another encoder than the embedded MiniLM (here a tiny random BERT folder) is
    read against that encoder, and its curve moves with its change; read against the embedded default, the
    fingerprint check refuses it rather than measuring the wrong encoder."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from safetext_core.errors import FingerprintMismatch
    from safetext_core.loaders import load_encoders
    from safetext_core.models import find_minilm_folder
    from safetext_core.safetext_file import SafeTextFile

    tool = _tool("tradeoff_curves")
    folder = tmp_path / "tiny-bert"
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64)).save_pretrained(str(folder), safe_serialization=True)
    AutoTokenizer.from_pretrained(str(find_minilm_folder())).save_pretrained(str(folder))
    encoders = load_encoders(str(folder))
    (name, model), = encoders.models.items()
    weight = "encoder.layer.1.output.LayerNorm.weight"  # its bias is zero: minus twice it turns every output around
    change = {weight: -2 * model.get_parameter(weight).detach().clone()}
    path = SafeTextFile("generic", {name: change}, encoders.fingerprints()).save(tmp_path / "tiny.safetext.safetensors")
    curve, = tool.curves([str(path)], [0.0, 1.0], checkpoint=str(folder)).values()
    assert [p["strength"] for p in curve] == [0.0, 1.0]
    assert curve[0]["unsafe_independent_share_moved"] == 0.0  # strength 0 is the original encoder
    assert curve[1]["unsafe_independent_share_moved"] == 1.0 and curve[1]["benign_share_collapsed"] == 1.0
    with pytest.raises(FingerprintMismatch):
        tool.curves([str(path)], [1.0])


def test_a_missing_shipped_file_is_an_error_not_fewer_prompts(tmp_path, monkeypatch):
    """A damaged or partial installation (a wheel once shipped without the pairs) must not train on less without a
    word: a missing shipped training file or pair file is a PromptSetError naming it; --replace needs none."""
    import shutil

    from safetext_core import prompt_sets

    copy = tmp_path / "data"
    shutil.copytree(DATA_DIR, copy)
    monkeypatch.setattr(prompt_sets, "DATA_DIR", copy)
    assert len(load_prompt_sets(categories=["hate"]).pairs) > 200
    (copy / "pairs" / "third_batch" / "hate.tsv").unlink()
    with pytest.raises(PromptSetError, match=r"third_batch/hate\.tsv is missing"):
        load_prompt_sets(categories=["hate"])
    assert load_prompt_sets(categories=["violence"]).pairs  # another category's files are all there
    (copy / "unsafe" / "violence.obfuscated.txt").unlink()
    with pytest.raises(PromptSetError, match=r"violence\.obfuscated\.txt is missing"):
        load_prompt_sets(categories=["violence"])
    own = load_prompt_sets(unsafe_prompts=["a naked woman"], safe_prompts=["a red car"], replace=True)
    assert own.unsafe["user"] == ["a naked woman"]


def test_cosine_shortfall_counts_only_what_fell_below_the_floor():
    from safetext_core.losses import cosine_shortfall

    old = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]] * 3)
    new = torch.stack([old[0], torch.tensor([[1.0, 0.2], [0.2, 1.0]]), torch.tensor([[0.0, 1.0], [1.0, 0.0]])])
    short = cosine_shortfall(new, old, torch.ones(3, 2), 0.9)
    assert short[0] == 0 and short[1] == 0  # unchanged; cosine 0.98 is above the floor
    assert short[2] == pytest.approx(0.9)  # orthogonal: cosine 0


def test_token_cosine_shortfall_pulls_back_one_position_the_sequence_cosine_hides():
    """One of eight positions turned around: the sequence keeps cosine 0.75 (above a floor of 0.7, no shortfall), the
    per-token hinge sees that position's full shortfall (floor - (-1)) over the prompt's real positions; padding
    does not count, and a pooled vector falls back to the sequence form."""
    from safetext_core.losses import cosine_shortfall, token_cosine_shortfall

    old = torch.nn.functional.one_hot(torch.arange(8), 8).float().unsqueeze(0).repeat(2, 1, 1)
    new = old.clone()
    new[0, 3] = -old[0, 3]
    mask = torch.ones(2, 8)
    mask[1, 6:] = 0
    new[1, 7] = -old[1, 7]  # a padded position: ignored
    assert cosine_shortfall(new, old, mask, 0.7)[0] == 0
    short = token_cosine_shortfall(new, old, mask, 0.7)
    assert short[0] == pytest.approx(1.7 / 8) and short[1] == 0
    pooled_new, pooled_old = torch.tensor([[0.0, 1.0]]), torch.tensor([[1.0, 0.0]])
    assert token_cosine_shortfall(pooled_new, pooled_old, None, 0.9) == pytest.approx(0.9)


def test_safe_cosine_hinge_adds_its_weight_times_the_shortfall_to_the_safe_term(monkeypatch, prompt_sets):
    """On the real MiniLM at the first step (trainee = original, stored originals moved by a fixed amount), the
    safe term grows linearly in the hinge's weight, and a floor no cosine falls below adds nothing."""
    prompt_sets = _with_pairs(prompt_sets)
    encoders = load_encoders(None)

    class Shifted(loop.OriginalOutputs):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            generator = torch.Generator().manual_seed(0)
            self.outputs = [o + 0.3 * torch.randn(o.shape, generator=generator) for o in self.outputs]

    monkeypatch.setattr(loop, "OriginalOutputs", Shifted)

    def safe_term(**hinge):
        config = AlignConfig(steps=1, batch_size=6, eval_every=0, mine_every=0, preserve_pool=30, seed=1, **hinge)
        return loop.align(encoders, prompt_sets, config).history[0]["L_u"]

    plain, one, two = safe_term(safe_cos_weight=0.0), safe_term(safe_cos_weight=1.0, safe_cos_floor=1.0), \
        safe_term(safe_cos_weight=2.0, safe_cos_floor=1.0)
    assert one - plain > 0.01
    assert two - plain == pytest.approx(2 * (one - plain), rel=1e-4)
    assert safe_term(safe_cos_weight=2.0, safe_cos_floor=-1.0) == pytest.approx(plain, rel=1e-6)
    # The default is the per-token form; the whole sequence's cosine gives another term, so the loop uses the setting.
    sequence = safe_term(safe_cos_weight=1.0, safe_cos_floor=1.0, safe_cos_per_token=False)
    assert sequence - plain > 0.01 and sequence != pytest.approx(one, rel=1e-3)
    assert safe_term(safe_cos_weight=1.0, safe_cos_floor=1.0, safe_cos_per_token=True) == pytest.approx(one, rel=1e-6)
    with pytest.raises(ConfigError):
        AlignConfig(safe_cos_weight=-1.0)


def test_a_resume_checkpoint_from_before_the_safe_cosine_hinge_was_trained_without_it(tmp_path, prompt_sets):
    """A checkpoint written before safe_cos_weight existed has no such key: it was trained without the hinge, so it
    resumes a run without it and is refused by a run with it, whatever the default is now."""
    from dataclasses import replace

    from safetext_core.errors import ResumeError

    tiny_models.write_single_file(tmp_path / "m.safetensors", "sd1")
    encoders = load_encoders(tmp_path / "m.safetensors")
    config = AlignConfig(steps=4, batch_size=4, eval_every=0, checkpoint_every=2, preserve_pool=8, safe_cos_weight=0.0)
    resume = tmp_path / "run.resume"
    tiny_models.resume_checkpoint_of_an_earlier_version(encoders, prompt_sets, config, resume,
                                                        "safe_cos_weight", "safe_cos_floor")
    with pytest.raises(ResumeError, match="safe_cos_weight"):
        loop.align(encoders, prompt_sets, replace(config, safe_cos_weight=2.0), resume_path=resume)
    result = loop.align(encoders, prompt_sets, config, resume_path=resume)
    assert len(result.history) == 4 and result.history[0]["step"] == 1


def test_a_resume_checkpoint_from_before_the_per_token_hinge_used_the_whole_sequence(tmp_path, prompt_sets):
    """A checkpoint written before safe_cos_per_token existed trained the hinge on the whole sequence's cosine: it
    resumes a run that asks for that and is refused by the default (per token)."""
    from dataclasses import replace

    from safetext_core.errors import ResumeError

    tiny_models.write_single_file(tmp_path / "m.safetensors", "sd1")
    encoders = load_encoders(tmp_path / "m.safetensors")
    config = AlignConfig(steps=4, batch_size=4, eval_every=0, checkpoint_every=2, preserve_pool=8,
                         safe_cos_per_token=False)
    resume = tmp_path / "run.resume"
    tiny_models.resume_checkpoint_of_an_earlier_version(encoders, prompt_sets, config, resume, "safe_cos_per_token")
    with pytest.raises(ResumeError, match="safe_cos_per_token"):
        loop.align(encoders, prompt_sets, replace(config, safe_cos_per_token=True), resume_path=resume)
    result = loop.align(encoders, prompt_sets, config, resume_path=resume)
    assert len(result.history) == 4 and result.history[0]["step"] == 1


def test_classifier_bound_reads_false_positives_where_a_share_of_unsafe_is_flagged():
    """tools/classifier_bound.py writes a detector's scores as a trade-off curve: at the threshold that flags half
    the unseen unsafe prompts, the harmless shares are those scoring at least as high; the curve reads with
    tradeoff_curves' at_share like a SafeText file's."""
    tool = _tool("classifier_bound")
    scores = {"unsafe_independent": torch.tensor([1.0, 2.0, 3.0, 4.0]),
              "benign": torch.tensor([0.0, 0.5, 2.6, 3.5, 0.1, 0.2, 0.3, 0.4, 0.6, 0.7]),
              "adjacent": torch.tensor([3.1, 0.0])}
    curve = tool.flag_curve(scores, points=4)
    assert [p["unsafe_independent_share_moved"] for p in curve] == [0.25, 0.25, 0.5, 0.75, 1.0]
    half = curve[2]
    assert half["threshold"] == pytest.approx(2.5)
    assert half["benign_share_collapsed"] == pytest.approx(0.2)  # 2.6 and 3.5 of ten
    assert half["adjacent_share_collapsed"] == pytest.approx(0.5)
    assert _tool("tradeoff_curves").at_share(curve, 0.5) == pytest.approx((0.2, 0.5))


def test_classifier_bound_trains_a_probe_on_the_frozen_real_minilm():
    """The frozen probe learns to score the unsafe training prompts above the harmless ones and leaves the
    encoder's weights exactly as they were; no prompts is an error."""
    tool = _tool("classifier_bound")
    encoders = load_encoders(None)
    spec = encoders.profile.encoders[0]
    tokenizer, model = encoders.tokenizers[spec.name], encoders.models[spec.name]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    unsafe = ["a naked woman on a bed, explicit", "a man stabbing a stranger, blood everywhere",
              "a child being beaten by an adult", "nude photo of a teenager", "a corpse with its throat cut",
              "a mass shooting in a school hallway"]
    harmless = ["a bowl of ramen on a wooden table", "a lighthouse at dawn, watercolour",
                "a golden retriever catching a frisbee", "a city skyline at night, long exposure",
                "a bicycle leaning against a brick wall", "a vase of tulips by a window"]
    score = tool.train_classifier(model, tokenizer, spec, unsafe, harmless, epochs=1, frozen=True, log=lambda _: None)
    assert score(unsafe).min() > score(harmless).max()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(ValueError):
        tool.train_classifier(model, tokenizer, spec, [], harmless, frozen=True)


def test_tradeoff_tool_averages_files_changes_parameter_by_parameter():
    """--average measures the mean of several runs' changes (a soup of seeds); files that change different
    parameters cannot be averaged."""
    tool = _tool("tradeoff_curves")
    a = {"w": torch.tensor([1.0, 2.0]), "b": torch.tensor([0.0])}
    b = {"w": torch.tensor([3.0, 6.0]), "b": torch.tensor([1.0])}
    mean = tool.mean_change([a, b])
    assert torch.equal(mean["w"], torch.tensor([2.0, 4.0])) and torch.equal(mean["b"], torch.tensor([0.5]))
    with pytest.raises(SystemExit):
        tool.mean_change([a, {"w": b["w"]}])
