"""Several processes through Accelerate (safetext_core/distributed.py): two CPU processes (gloo) on a tiny SD 1.x.

``torchrun --nproc_per_node 2`` runs ``safetext align`` (through tests/accelerate_child.py, which records what each
process did) with a batch of 4 unsafe and 6 safe prompts per step, validation, mining and resume checkpoints on.
The same command in one process is the reference. Checked: every step's batch was split in two disjoint halves
that together are the one-process batch; the trained file equals the one-process file within float rounding; only
the main process wrote files (the output, the checkpoints, report and figures: one of each); the other printed
nothing. And a two-process run killed while its checkpoint is written leaves no half-written file, and resumes in
one process to the same weights.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

import tiny_models
from conftest import small_prompt_sets

ROOT = Path(__file__).resolve().parents[1]
CHILD = Path(__file__).resolve().parent / "accelerate_child.py"
STEPS = 8

pytest.importorskip("accelerate")


def _arguments(inputs: Path, output: Path) -> list[str]:
    return ["align", "--checkpoint", str(inputs / "m.safetensors"), "--replace", "--unsafe-file", str(inputs / "u.txt"),
            "--safe-file", str(inputs / "s.txt"), "--steps", str(STEPS), "--batch-size", "4", "--lr", "1e-3",
            "--eval-every", "4", "--mine-every", "3", "--checkpoint-every", "3", "--checkpoint-share", "1",
            "--device", "cpu", "--output", str(output)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _environment(crash: str | None = None) -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "SAFETEXT_CRASH_AT"):
        env.pop(name, None)
    if crash:
        env["SAFETEXT_CRASH_AT"] = crash
    return env


def _launch(processes: int, inputs: Path, output: Path, records: Path, logs: Path, crash: str | None = None
            ) -> subprocess.CompletedProcess:
    records.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes),
               "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
               "--log-dir", str(logs), "--redirects", "3",  # each process's stdout and stderr in its own file
               str(CHILD), str(records), *_arguments(inputs, output)]
    return subprocess.run(command, cwd=ROOT, env=_environment(crash), capture_output=True, text=True, timeout=240)


def _one_process(inputs: Path, output: Path, records: Path, *extra: str) -> subprocess.CompletedProcess:
    """The same child with no launcher: the single-process path, Accelerate never started."""
    records.mkdir(parents=True, exist_ok=True)
    return subprocess.run([sys.executable, str(CHILD), str(records), *_arguments(inputs, output), *extra],
                          cwd=ROOT, env=_environment(), capture_output=True, text=True, timeout=240)


def _logs(logs: Path, rank: int, stream: str) -> str:
    return "".join(p.read_text() for p in logs.rglob(f"{rank}/{stream}.log"))


def _assert_same_weights(expected_path: Path, got_path: Path) -> None:
    """The gradient of the whole batch, summed from two halves, within float rounding (measured: at most 2.4e-7
    against differences of up to 4.4e-3)."""
    expected, got = load_file(str(expected_path)), load_file(str(got_path))
    assert expected.keys() == got.keys() and expected
    moved = max(float(t.abs().max()) for t in expected.values())
    assert moved > 1e-3  # training did move the weights
    for key, value in expected.items():
        if key.endswith("self_attn.k_proj.diff_b"):
            # A key bias adds the same amount to every logit of a softmax row: its true gradient is zero, and what
            # moves it is rounding noise that AdamW scales up to the learning rate, in one process as in two.
            assert float(value.abs().max()) < 0.05 * moved and float(got[key].abs().max()) < 0.05 * moved
            continue
        assert torch.allclose(got[key], value, atol=1e-3 * moved, rtol=0), (key, float((got[key] - value).abs().max()))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The inputs and the one-process run every test compares with."""
    folder = tmp_path_factory.mktemp("accelerate")
    inputs = folder / "inputs"
    inputs.mkdir()
    tiny_models.write_single_file(inputs / "m.safetensors", "sd1")
    sets = small_prompt_sets()
    (inputs / "u.txt").write_text("\n".join(sets.all_unsafe()))
    (inputs / "s.txt").write_text("\n".join(sets.safe + sets.near_miss))
    one = folder / "one"
    single = _one_process(inputs, one / "out" / "a.safetensors", one / "records")
    assert single.returncode == 0, single.stderr[-3000:]
    return inputs, one


def test_two_cpu_processes_split_each_batch_and_train_the_one_process_weights(reference, tmp_path):
    inputs, one = reference
    two = tmp_path / "two"
    run = _launch(2, inputs, two / "out" / "a.safetensors", two / "records", two / "logs")
    assert run.returncode == 0, (run.stderr[-2000:], _logs(two / "logs", 0, "stderr")[-2000:],
                                 _logs(two / "logs", 1, "stderr")[-2000:])

    reference = json.loads((one / "records" / "rank0.json").read_text())
    ranks = [json.loads((two / "records" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [(r["rank"], r["world"], r["code"]) for r in ranks] == [(0, 2, 0), (1, 2, 0)]

    # Each step's safe half, then its unsafe half: split in two disjoint halves that make up the one-process batch.
    assert len(reference["shares"]) == 2 * STEPS
    assert [len(s) for s in reference["shares"]] == [6, 4] * STEPS  # 4 + 2 word salads safe, 4 unsafe
    for whole, first, second in zip(reference["shares"], ranks[0]["shares"], ranks[1]["shares"]):
        assert not set(first) & set(second)
        assert sorted(first + second) == sorted(whole)
        assert len(first) == len(second) == len(whole) // 2

    # Only the main process wrote, and it wrote what the one-process run writes: the checkpoints of steps 3 and
    # 6, the finished one, the file, the report and the figures.
    assert ranks[1]["written"] == []
    assert [Path(p).name for p in ranks[0]["written"]] == [Path(p).name for p in reference["written"]]
    names = sorted(p.name for p in (two / "out").iterdir())
    assert names == sorted(p.name for p in (one / "out").iterdir()) == \
        ["a.figures.json", "a.report.png", "a.safetensors"]
    assert _logs(two / "logs", 1, "stdout") == "" and "wrote" in _logs(two / "logs", 0, "stdout")

    _assert_same_weights(one / "out" / "a.safetensors", two / "out" / "a.safetensors")


def test_two_processes_killed_mid_checkpoint_leave_no_half_written_file_and_resume_in_one(reference, tmp_path):
    inputs, one = reference
    output = tmp_path / "out" / "a.safetensors"
    resume = output.with_name(output.name + ".resume")
    # The main process is killed (SIGKILL) between writing the checkpoint of step 6 and renaming it into place;
    # the launcher then stops the other one, which is waiting for it in step 7.
    run = _launch(2, inputs, output, tmp_path / "records", tmp_path / "logs", crash="checkpoint-write:6")
    assert run.returncode != 0
    assert not output.exists()
    with safe_open(str(resume), framework="pt") as f:  # the checkpoint of step 3, whole
        assert int(f.metadata()["step"]) == 3
    left = sorted(p.name for p in output.parent.iterdir() if p.name.endswith(".partial"))
    assert len(left) == 1 and left[0].startswith(".a.safetensors.resume."), left
    assert sorted(p.name for p in output.parent.iterdir() if not p.name.startswith(".")) == ["a.safetensors.resume"]

    # Resumed in one process: the checkpoint does not depend on how many processes made it.
    resumed = _one_process(inputs, output, tmp_path / "resumed", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert sorted(p.name for p in output.parent.iterdir()) == ["a.figures.json", "a.report.png", "a.safetensors"]
    history = json.loads((tmp_path / "out" / "a.figures.json").read_text())["history"]
    assert [h["step"] for h in history] == list(range(1, STEPS + 1))
    _assert_same_weights(one / "out" / "a.safetensors", output)


def test_no_launcher_is_one_process_and_sharded_weights_are_refused(monkeypatch):
    from safetext_core.distributed import Processes
    from safetext_core.errors import ConfigError

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert type(Processes.from_environment()) is Processes  # no launcher: one process, Accelerate never started
    monkeypatch.setenv("WORLD_SIZE", "2")
    for variable, kind in (("ACCELERATE_USE_FSDP", "FSDP"), ("ACCELERATE_USE_DEEPSPEED", "DeepSpeed")):
        monkeypatch.setenv(variable, "true")
        with pytest.raises(ConfigError, match=f"configured for {kind}, which shards"):
            Processes.from_environment()
        monkeypatch.delenv(variable)
