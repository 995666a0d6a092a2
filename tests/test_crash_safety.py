"""Crash-safe training: a real ``python -m safetext_core align`` killed with SIGKILL at several moments, then resumed.

The kills come from ``SAFETEXT_CRASH_AT`` (safetext_core/outputs.py: ``crash_point``), which names a moment:
``step:N`` (after step N, its checkpoint written if one was due), ``checkpoint-write:N`` (the checkpoint of
step N written to its partial file, not yet renamed), ``trained`` (training over, before the held-out figures)
and ``final-write`` (the SafeText file written to its partial, not yet renamed). After every kill: at most
``checkpoint_every`` steps lost, the previous checkpoint whole; the next run removes the partials the killed
one left; the resumed result is bit for bit the uninterrupted run's. Then full disks, read-only folders,
directories, existing files and damaged checkpoints: each a clear error before any training (or, when the
disk fills during the run, with the run kept). docs/reliability.md has the figures.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

import tiny_models
from conftest import small_prompt_sets
from safetext_core import AlignConfig, load_encoders, run_alignment
from safetext_core import loop
from safetext_core.errors import AlignmentCancelled, ConfigError, OutputError, ResumeError
from safetext_core.outputs import atomic_write, clean_partials, preflight

ROOT = Path(__file__).resolve().parents[1]
EVERY = 3      # checkpoint_every of the subprocess runs
STEPS = 12


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("crash")
    tiny_models.write_single_file(folder / "m.safetensors", "sd1")
    sets = small_prompt_sets()
    (folder / "u.txt").write_text("\n".join(sets.all_unsafe()))
    (folder / "s.txt").write_text("\n".join(sets.safe + sets.near_miss))
    return folder


def _arguments(inputs: Path, output: Path, *extra: str) -> list[str]:
    return ["align", "--checkpoint", str(inputs / "m.safetensors"), "--replace", "--unsafe-file", str(inputs / "u.txt"),
            "--safe-file", str(inputs / "s.txt"), "--steps", str(STEPS), "--batch-size", "4", "--lr", "1e-3",
            "--eval-every", "4", "--mine-every", "5", "--checkpoint-every", str(EVERY), "--checkpoint-share", "1", "--output", str(output),
            *extra]


def _align(inputs: Path, output: Path, *extra: str, crash: str | None = None) -> subprocess.CompletedProcess:
    """A real ``python -m safetext_core align`` process (one intra-op thread, as :func:`_align_here`)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env.pop("SAFETEXT_CRASH_AT", None)
    if crash:
        env["SAFETEXT_CRASH_AT"] = crash
    return subprocess.run([sys.executable, "-m", "safetext_core", *_arguments(inputs, output, *extra)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)


def _align_here(inputs: Path, output: Path, *extra: str) -> int:
    """The same command in this process (it saves a torch start-up, the bulk of a tiny run), on one thread."""
    from safetext_core.cli import main

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return main(_arguments(inputs, output, *extra))
    finally:
        torch.set_num_threads(threads)


def _checkpoint_step(resume: Path) -> int:
    with safe_open(str(resume), framework="pt") as f:
        return int(f.metadata()["step"])


def _partials(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".partial"))


def test_sigkill_at_every_moment_then_resume_is_bit_identical(inputs, tmp_path, capsys):
    checkpoint_bytes = (inputs / "m.safetensors").read_bytes()
    assert _align_here(inputs, tmp_path / "straight" / "a.safetensors") == 0  # the uninterrupted run

    folder = tmp_path / "killed"
    output, resume = folder / "b.safetensors", folder / "b.safetensors.resume"
    lost = {}

    # 1. Mid-training, after step 8: the checkpoint of step 6 is the run.
    run = _align(inputs, output, crash="step:8")
    assert run.returncode == -signal.SIGKILL, run.stderr[-2000:]
    assert not output.exists() and _checkpoint_step(resume) == 6
    lost["mid-training"] = 8 - _checkpoint_step(resume)

    # 2. While the checkpoint of step 9 is being written: the one of step 6 stays whole, the partial is left.
    run = _align(inputs, output, "--resume", crash="checkpoint-write:9")
    assert run.returncode == -signal.SIGKILL, run.stderr[-2000:]
    assert _checkpoint_step(resume) == 6
    left = _partials(folder)
    assert len(left) == 1 and left[0].startswith(".b.safetensors.resume."), left
    lost["checkpoint write"] = 9 - _checkpoint_step(resume)

    # 3. Right after training: a checkpoint marked finished was written first; nothing is lost.
    run = _align(inputs, output, "--resume", crash="trained")
    assert run.returncode == -signal.SIGKILL, run.stderr[-2000:]
    assert _partials(folder) == [], "the run after a kill removes the partials it left"
    assert not output.exists() and _checkpoint_step(resume) == STEPS
    lost["after training"] = STEPS - _checkpoint_step(resume)

    # 4. While the SafeText file is being written: it is not in place, so the checkpoint is still there.
    run = _align(inputs, output, "--resume", crash="final-write")
    assert run.returncode == -signal.SIGKILL, run.stderr[-2000:]
    assert not output.exists() and resume.exists() and _checkpoint_step(resume) == STEPS
    left = _partials(folder)
    assert len(left) == 1 and left[0].startswith(".b.safetensors.") and ".resume." not in left[0], left
    lost["final write"] = STEPS - _checkpoint_step(resume)

    # 5. Resume to the end.
    run = _align(inputs, output, "--resume")
    assert run.returncode == 0, run.stderr[-2000:]
    assert output.exists() and not resume.exists() and _partials(folder) == []
    assert max(lost.values()) <= EVERY, lost
    assert lost == {"mid-training": 2, "checkpoint write": 3, "after training": 0, "final write": 0}

    expected, got = load_file(str(tmp_path / "straight" / "a.safetensors")), load_file(str(output))
    assert sorted(expected) == sorted(got) and expected
    assert all(torch.equal(expected[k], got[k]) for k in expected), "resumed run differs from the uninterrupted one"
    history = [json.loads((p.parent / (p.name[:-len(".safetensors")] + ".figures.json")).read_text())["history"]
               for p in (tmp_path / "straight" / "a.safetensors", output)]
    assert history[0] == history[1] and len(history[0]) == STEPS

    assert (inputs / "m.safetensors").read_bytes() == checkpoint_bytes  # the model is never written to

    umask = os.umask(0)
    os.umask(umask)
    for name in ("b.safetensors", "b.report.png", "b.figures.json"):
        assert (folder / name).stat().st_mode & 0o777 == 0o666 & ~umask, name

    # An existing output is refused before anything runs; --overwrite replaces it.
    capsys.readouterr()
    assert _align_here(inputs, output) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "--overwrite" in err


# ------------------------------------------------------------------------------------------ in-process faults

FAST = AlignConfig(steps=6, batch_size=4, learning_rate=1e-3, eval_every=3, checkpoint_every=2, checkpoint_share=1.0)


@pytest.fixture(scope="module")
def encoders(inputs):
    return load_encoders(inputs / "m.safetensors")


def _recorder(step_log):
    def progress(event):
        step_log.append(event.step)
    return progress


@contextlib.contextmanager
def _tmpfs(folder: Path, size: str, read_only: bool = False):
    """A real small (or read-only) file system when this process may mount one (root); else None."""
    folder.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    try:
        mounted = os.geteuid() == 0 and subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                                                       capture_output=True).returncode == 0
    except OSError:  # no mount command
        mounted = False
    if not mounted:
        yield None
        return
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], capture_output=True)


def test_preflight_refuses_before_any_training(encoders, tmp_path, monkeypatch):
    steps: list[int] = []
    prompts = small_prompt_sets()

    def attempt(output, **kwargs):
        with pytest.raises(OutputError) as raised:
            run_alignment(encoders, prompts, FAST, output=output, progress=_recorder(steps), draw=False, **kwargs)
        assert steps == [], "training ran before the output was checked"
        return str(raised.value)

    (tmp_path / "dir.safetensors").mkdir()
    assert "is a directory" in attempt(tmp_path / "dir.safetensors")
    (tmp_path / "old.safetensors").write_bytes(b"keep me")
    assert "already exists" in attempt(tmp_path / "old.safetensors")
    assert (tmp_path / "old.safetensors").read_bytes() == b"keep me"
    (tmp_path / "file").write_text("x")
    assert "is a file" in attempt(tmp_path / "file" / "out.safetensors")
    assert "too long" in attempt(tmp_path / ("n" * 240 + ".safetensors"))
    assert "is a directory" in attempt(tmp_path / "ok.safetensors", side_outputs=[tmp_path])

    with _tmpfs(tmp_path / "ro", "1m", read_only=True) as mounted:
        if mounted is None and os.geteuid() != 0:  # not root: permissions do the job root ignores
            (tmp_path / "ro").chmod(0o555)
        elif mounted is None:  # root that may not mount (a container): the file system's answer, simulated
            real_open = os.open

            def read_only(path, *args, **kwargs):
                if str(path).startswith(str(tmp_path / "ro")):
                    raise OSError(errno.EROFS, "Read-only file system", str(path))
                return real_open(path, *args, **kwargs)
            monkeypatch.setattr("safetext_core.outputs.os.open", read_only)
        assert "not writable" in attempt(tmp_path / "ro" / "out.safetensors")
        monkeypatch.undo()
    with _tmpfs(tmp_path / "small", "1m") as mounted:
        if mounted is None:
            monkeypatch.setattr("safetext_core.outputs.shutil.disk_usage",
                                lambda _: type("U", (), {"free": 1 << 20})())
        message = attempt(tmp_path / "small" / "out.safetensors", resume_path=tmp_path / "small" / "out.resume")
        assert "not enough free space" in message and "MiB" in message
        assert os.listdir(tmp_path / "small") == []


def test_disk_full_during_the_run_keeps_the_last_checkpoint_and_resumes(encoders, tmp_path, monkeypatch):
    prompts = small_prompt_sets()
    before = encoders.fingerprints()
    straight = run_alignment(encoders, prompts, FAST, draw=False, independent=False)
    folder = tmp_path / "disk"
    output, resume = folder / "out.safetensors", folder / "out.resume"
    filler = folder / "filler"

    with _tmpfs(folder, "96m") as mounted:
        def fill(event):  # after step 3 another program takes the space: the checkpoint of step 4 cannot be written
            if event.phase == "train" and event.step == 3:
                if mounted is not None:
                    with open(filler, "wb") as handle:
                        with contextlib.suppress(OSError):
                            while True:
                                handle.write(b"\0" * (1 << 20))
                else:  # not root: the file system says "full" from now on
                    from safetensors import torch as st_torch

                    def full(*args, **kwargs):
                        raise OSError(errno.ENOSPC, "No space left on device")
                    monkeypatch.setattr(st_torch, "save_file", full)

        with pytest.raises(OutputError, match="disk is full") as raised:
            run_alignment(encoders, prompts, FAST, output=output, resume_path=resume, progress=fill, draw=False,
                          independent=False)
        assert str(resume) in str(raised.value) or "resume checkpoint" in str(raised.value)
        assert _partials(folder) == [] and not output.exists()
        assert _checkpoint_step(resume) == 2  # the last good checkpoint, whole
        filler.unlink(missing_ok=True)
        monkeypatch.undo()
        resumed = run_alignment(encoders, prompts, FAST, output=output, resume_path=resume, draw=False,
                                independent=False)
        assert output.exists() and not resume.exists() and _partials(folder) == []
        assert resumed.result.history == straight.result.history
        for name, delta in straight.file.deltas["clip_l"].items():
            assert torch.equal(resumed.file.deltas["clip_l"][name], delta), name
    assert encoders.fingerprints() == before  # the encoders trained from are never modified


@pytest.mark.parametrize("early", [False, True])
def test_stop_after_training_keeps_a_finished_checkpoint_that_resumes_without_training(encoders, tmp_path, early):
    from dataclasses import replace

    prompts = small_prompt_sets()
    config = replace(FAST, target_unsafe_share=0.0, min_safe_cos=-1.0, min_near_miss_cos=-1.0) if early else FAST
    output, resume = tmp_path / "out.safetensors", tmp_path / "out.resume"
    done = {"flag": False}

    def mark(event):
        done["flag"] = done["flag"] or event.phase == "done"

    with pytest.raises(AlignmentCancelled) as stopped:  # Ctrl-C as training ends: nothing trained is lost
        run_alignment(encoders, prompts, config, output=output, resume_path=resume, progress=mark,
                      should_cancel=lambda: done["flag"], draw=False, independent=False)
    assert stopped.value.resume_path == str(resume) and _checkpoint_step(resume) == (3 if early else FAST.steps)
    assert not output.exists()
    phases: list[str] = []
    resumed = run_alignment(encoders, prompts, config, output=output, resume_path=resume, draw=False,
                            independent=False, progress=lambda event: phases.append(event.phase))
    assert "train" not in phases and output.exists() and not resume.exists()
    straight = run_alignment(encoders, prompts, config, draw=False, independent=False)
    assert resumed.result.history == straight.result.history and resumed.result.best_step == straight.result.best_step
    assert resumed.result.stopped_early == straight.result.stopped_early == early
    for name, delta in straight.file.deltas["clip_l"].items():
        assert torch.equal(resumed.file.deltas["clip_l"][name], delta), name


def test_damaged_resume_checkpoint_is_a_clear_error(encoders, tmp_path):
    prompts = small_prompt_sets()
    resume = tmp_path / "out.resume"
    calls = {"n": 0}

    def cancel_after_three() -> bool:
        calls["n"] += 1
        return calls["n"] > 3

    with pytest.raises(AlignmentCancelled):
        run_alignment(encoders, prompts, FAST, output=tmp_path / "out.safetensors", resume_path=resume,
                      should_cancel=cancel_after_three, draw=False)
    good = resume.read_bytes()
    from safetensors.torch import save_file

    tensors = {k: v.clone() for k, v in load_file(str(resume)).items()}  # not views of a file rewritten below
    with safe_open(str(resume), framework="pt") as f:
        meta = f.metadata()
    wrong_shape = dict(tensors)
    key = next(k for k in tensors if k.startswith("param/"))
    wrong_shape[key] = torch.zeros(3)
    damaged = {
        "truncated": lambda: resume.write_bytes(good[: len(good) // 2]),
        "garbage": lambda: resume.write_bytes(b"\x00not a checkpoint" * 10),
        "empty": lambda: resume.write_bytes(b""),
        "wrong shape": lambda: save_file(wrong_shape, str(resume), metadata=meta),
        "bad history": lambda: save_file(tensors, str(resume), metadata={**meta, "history": "{"}),
        "NaN weights": lambda: save_file({**tensors, key: torch.full_like(tensors[key], float("nan"))}, str(resume),
                                         metadata=meta),
    }
    for case, damage in damaged.items():
        damage()
        with pytest.raises(ResumeError) as raised:
            run_alignment(encoders, prompts, FAST, output=tmp_path / "out.safetensors", resume_path=resume,
                          draw=False)
        assert str(resume) in str(raised.value), case
        assert resume.exists() and not (tmp_path / "out.safetensors").exists(), case  # nothing deleted, nothing written


def test_cli_reports_a_damaged_resume_checkpoint_without_a_traceback(inputs, tmp_path, capsys):
    from safetext_core.cli import main

    output = tmp_path / "c.safetensors"
    (tmp_path / "c.safetensors.resume").write_bytes(b"{not safetensors")
    code = main(["align", "--checkpoint", str(inputs / "m.safetensors"), "--replace", "--unsafe-file",
                 str(inputs / "u.txt"), "--safe-file", str(inputs / "s.txt"), "--steps", "2", "--output", str(output),
                 "--resume"])
    err = capsys.readouterr().err
    assert code == 2 and "c.safetensors.resume" in err and "damaged" in err and "Traceback" not in err


def test_partials_of_dead_runs_are_removed_and_live_ones_kept(tmp_path):
    target = tmp_path / "x.safetensors"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    names = {f".x.safetensors.{dead_pid}.{'a' * 16}.partial": False,   # a killed run's: removed
             ".x.safetensors.abc_12xy.partial": False,                 # an older version's mkstemp name: removed
             f".x.safetensors.{os.getpid()}.{'b' * 16}.partial": True,  # a live run's: kept
             f".x.safetensors.resume.{dead_pid}.{'c' * 16}.partial": True,  # another target's: not this one's
             ".y.safetensors.abc_12xy.partial": True}
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    clean_partials([target])
    assert {n: (tmp_path / n).exists() for n in names} == names


def test_atomic_write_failure_keeps_the_old_file_and_leaves_no_partial(tmp_path):
    target = tmp_path / "r.json"
    target.write_text("old")

    def broken(partial):
        Path(partial).write_text("half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OutputError, match="disk is full"):
        atomic_write(target, broken, what="figures")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["r.json"]
    preflight(tmp_path / "new.safetensors", needed=1)  # and an ordinary folder passes
    assert os.listdir(tmp_path) == ["r.json"]


# ------------------------------------------------------------------------------------------ how often a run checkpoints

def test_checkpoint_budget_skips_writes_until_the_time_since_the_last_is_long_enough():
    now = [0.0]
    budget = loop.CheckpointBudget(0.1, clock=lambda: now[0])
    assert budget.due()  # the first one is always written
    with budget.timed():
        now[0] += 2.0  # a 2 s write: the next needs 18 s after it
    now[0] += 17.9
    assert not budget.due()
    now[0] += 0.1
    assert budget.due()
    with budget.timed():
        now[0] += 0.5  # a faster write shortens the wait
    now[0] += 4.5
    assert budget.due()
    assert loop.CheckpointBudget(1.0, clock=lambda: now[0]).due()
    with pytest.raises(ConfigError, match="checkpoint_share"):
        AlignConfig(checkpoint_share=0.0)


def test_slow_checkpoint_writes_are_skipped_but_the_run_resumes_the_same(encoders, tmp_path, monkeypatch):
    """Writes made slow (0.3 s each, as a CLIP-L checkpoint against a fast GPU step): with the default share the run
    writes its first checkpoint only; with share 1, one every N steps. Either way a run
    stopped mid-way resumes to the same file as a straight run."""
    written: list[int] = []
    real_save = loop.save_resume

    def slow_save(path, step, *args, **kwargs):
        time.sleep(0.3)
        written.append(step)
        return real_save(path, step, *args, **kwargs)

    monkeypatch.setattr(loop, "save_resume", slow_save)
    prompts = small_prompt_sets()
    every_step = replace(FAST, steps=8, checkpoint_every=1, eval_every=0)
    run_alignment(encoders, prompts, every_step, resume_path=tmp_path / "a.resume", draw=False, independent=False)
    assert written == [1, 2, 3, 4, 5, 6, 7, 8]  # each step (no output: no finished checkpoint)
    written.clear()
    budgeted = replace(every_step, checkpoint_share=0.1)
    straight = run_alignment(encoders, prompts, budgeted, resume_path=tmp_path / "b.resume", draw=False,
                             independent=False)
    assert written == [1]

    written.clear()
    steps: list[int] = []
    with pytest.raises(AlignmentCancelled):
        run_alignment(encoders, prompts, budgeted, resume_path=tmp_path / "c.resume", draw=False, independent=False,
                      should_cancel=lambda: len(steps) >= 5, progress=lambda e: steps.append(e.step)
                      if e.phase == "train" else None)
    assert written == [1, 5]  # a stop always writes
    resumed = run_alignment(encoders, prompts, budgeted, resume_path=tmp_path / "c.resume", draw=False,
                            independent=False)
    for name, delta in straight.file.deltas["clip_l"].items():
        assert torch.equal(resumed.file.deltas["clip_l"][name], delta), name
