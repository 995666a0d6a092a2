"""The diffusers apply path under threads and under accelerate's offload hooks.

* Several threads x hundreds of calls on one shared tiny pipeline's text encoder, each with its own
  settings (on/off, strengths, both blend modes) through ``handle.local(...)``, while another thread keeps
  changing the handle's global settings and another calls the encoder's class ``forward`` directly (a user
  SafeText does not know about): every result must equal its single-threaded expectation bit for bit, no call
  may raise, and after ``remove()`` every weight is the same Parameter object with the same bits.
* ``enable_model_cpu_offload()`` with real accelerate (on the CPU: ``device="cpu"``), before and after
  ``apply_safetext``: accelerate's hook runs, results are right, and ``remove()`` leaves exactly what would be
  there without SafeText (accelerate's hook included). ``enable_sequential_cpu_offload()`` is refused clearly.

``python tests/test_apply_concurrency.py --measure`` prints the CPU comparison docs/reliability.md quotes
(parameter swap, swap under a lock, ``torch.func.functional_call`` and the shadow module SafeText uses).
"""
from __future__ import annotations

import importlib.util
import random
import statistics
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import tiny_models  # noqa: E402
from safetext_core import SafeTextError, SafeTextFile, apply_safetext  # noqa: E402
from safetext_core.fingerprint import fingerprint_state_dict  # noqa: E402

CONFIGS = [(False, 1.0, "embedding"), (True, 1.0, "embedding"), (True, 0.5, "embedding"), (True, 0.25, "embedding"),
           (True, 0.0, "embedding"), (True, 1.0, "weight"), (True, 0.5, "weight"), (True, 0.75, "weight")]
PROMPTS = ["a naked woman on a bed, photo", "a red bicycle", "a bloody corpse in the street"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("concurrency")
    state = tiny_models.random_clip_state()
    torch.manual_seed(3)
    deltas = {n: 0.05 * torch.randn_like(t) for n, t in state.items()}  # every weight, clearly moved
    file = SafeTextFile(family="sd1", deltas={"clip_l": deltas}, fingerprints={"clip_l": fingerprint_state_dict(state)},
                        base_name="tiny")
    path = file.save(folder / "tiny.safetext.safetensors")
    return state, path


def _ids(pipe, prompt):
    return pipe.tokenizer(prompt, padding="max_length", max_length=77, return_tensors="pt").input_ids


def _encode(encoder, ids):
    with torch.no_grad():
        out = encoder(ids, output_hidden_states=True)
    return out.last_hidden_state, out.pooler_output, out.hidden_states[-2]


def _same(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b))


def _snapshot(module):
    return {n: (p, p.detach().clone()) for n, p in module.state_dict(keep_vars=True).items()}


def _untouched(module, snapshot) -> bool:
    now = module.state_dict(keep_vars=True)
    return set(now) == set(snapshot) and all(now[n] is p and torch.equal(p, v) for n, (p, v) in snapshot.items())


@pytest.fixture
def one_thread_each():
    """Bit-exact comparisons: one intra-op thread, so a result never depends on which thread computed it."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_threads_share_one_pipeline_without_seeing_each_other(setup, one_thread_each):
    state, path = setup
    pipe = tiny_models.tiny_sd_pipeline(state)
    encoder = pipe.text_encoder
    snapshot = _snapshot(encoder)
    ids = [_ids(pipe, p) for p in PROMPTS]
    original = [_encode(encoder, i) for i in ids]
    handle = apply_safetext(pipe, path, strength=0.3, mode="weight")
    expected = {}
    for config in CONFIGS:  # single-threaded expectations, through the same handle
        enabled, strength, mode = config
        with handle.local(enabled=enabled, strength=strength, mode=mode):
            expected[config] = [_encode(encoder, i) for i in ids]
    assert all(_same(expected[(False, 1.0, "embedding")][k], original[k]) for k in range(len(ids)))
    assert all(_same(expected[(True, 0.0, "embedding")][k], original[k]) for k in range(len(ids)))
    assert not torch.equal(expected[(True, 1.0, "embedding")][0][0], original[0][0])
    assert not torch.equal(expected[(True, 0.5, "weight")][0][0], expected[(True, 0.5, "embedding")][0][0])

    wrong, errors, calls = [], [], [0]
    stop = threading.Event()
    start = threading.Barrier(8)

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        start.wait()
        for _ in range(300):
            config, k = rng.choice(CONFIGS), rng.randrange(len(ids))
            try:
                with handle.local(enabled=config[0], strength=config[1], mode=config[2]):
                    got = _encode(encoder, ids[k])
                if not _same(got, expected[config][k]):
                    wrong.append((seed, config, k))
            except Exception as error:  # noqa: BLE001 - counted, never expected
                errors.append(repr(error))
            calls[0] += 1

    def bystander() -> None:  # uses the encoder's own class forward: must always see the original weights
        start.wait()
        k = 0
        while not stop.is_set():
            with torch.no_grad():
                out = type(encoder).forward(encoder, ids[k % len(ids)], output_hidden_states=True)
            if not torch.equal(out.last_hidden_state, original[k % len(ids)][0]):
                wrong.append(("bystander", k))
            k += 1

    def fiddler() -> None:  # keeps changing the handle's global settings; no local call may notice
        rng = random.Random(99)
        start.wait()
        while not stop.is_set():
            handle.strength, handle.mode, handle.enabled = rng.random(), rng.choice(["weight", "embedding"]), rng.random() > 0.5
            time.sleep(0.0005)

    workers = [threading.Thread(target=worker, args=(seed,)) for seed in range(6)]
    others = [threading.Thread(target=bystander), threading.Thread(target=fiddler)]
    for thread in workers + others:
        thread.start()
    for thread in workers:
        thread.join()
    stop.set()
    for thread in others:
        thread.join()
    assert calls[0] == 6 * 300
    assert not errors, errors[:5]
    assert not wrong, f"{len(wrong)} wrong results, e.g. {wrong[:5]}"
    handle.remove()
    assert _untouched(encoder, snapshot) and "forward" not in encoder.__dict__
    assert all(_same(_encode(encoder, i), o) for i, o in zip(ids, original))


def test_global_settings_are_read_once_per_call(setup, one_thread_each):
    """A call uses one (enabled, strength, mode): changing them mid-call never mixes two."""
    state, path = setup
    pipe = tiny_models.tiny_sd_pipeline(state)
    encoder = pipe.text_encoder
    ids = _ids(pipe, PROMPTS[0])
    handle = apply_safetext(pipe, path, strength=0.5)
    possible = []
    for strength in (0.5, 0.9):
        handle.strength = strength
        possible.append(_encode(encoder, ids))
    stop = threading.Event()

    def flip():
        while not stop.is_set():
            handle.strength = 0.9
            handle.strength = 0.5

    flipper = threading.Thread(target=flip)
    flipper.start()
    try:
        results = [_encode(encoder, ids) for _ in range(200)]
    finally:
        stop.set()
        flipper.join()
    assert all(any(_same(r, p) for p in possible) for r in results)
    handle.remove()


# ------------------------------------------------------------------------------------------------ accelerate
needs_accelerate = pytest.mark.skipif(importlib.util.find_spec("accelerate") is None,
                                      reason="accelerate is not installed (pip install accelerate; it is in the dev extra)")


def _counting_hook(encoder):
    """Count calls of accelerate's pre_forward on the encoder (proof the hook ran)."""
    hook = encoder._hf_hook
    calls = [0]
    original = hook.pre_forward

    def pre_forward(module, *args, **kwargs):
        calls[0] += 1
        return original(module, *args, **kwargs)

    hook.pre_forward = pre_forward
    return calls


def _offload(pipe):
    # Real accelerate hooks (CpuOffload via cpu_offload_with_hook), as on a GPU machine; device="cpu" lets
    # diffusers install them on a machine without an accelerator.
    pipe.enable_model_cpu_offload(device="cpu")


@needs_accelerate
def test_model_offload_enabled_before_apply(setup):
    state, path = setup
    reference = tiny_models.tiny_sd_pipeline(state)
    ids = _ids(reference, PROMPTS[0])
    ref_handle = apply_safetext(reference, path, strength=0.5)
    want_on, want_weight = _encode(reference.text_encoder, ids), None
    ref_handle.mode = "weight"
    want_weight = _encode(reference.text_encoder, ids)
    ref_handle.remove()
    want_off = _encode(reference.text_encoder, ids)

    pipe = tiny_models.tiny_sd_pipeline(state)
    encoder = pipe.text_encoder
    snapshot = _snapshot(encoder)
    _offload(pipe)
    hooked_forward, hooked_old = encoder.__dict__["forward"], encoder.__dict__["_old_forward"]
    calls = _counting_hook(encoder)
    handle = apply_safetext(pipe, path, strength=0.5)
    assert encoder.__dict__["forward"] is hooked_forward  # accelerate's hook stays outermost
    assert _same(_encode(encoder, ids), want_on) and calls[0] == 1
    handle.mode = "weight"
    assert _same(_encode(encoder, ids), want_weight) and calls[0] == 2
    handle.remove()
    assert encoder.__dict__["forward"] is hooked_forward and encoder.__dict__["_old_forward"] is hooked_old
    assert _same(_encode(encoder, ids), want_off)
    assert _untouched(encoder, snapshot)
    pipe.remove_all_hooks()
    assert "_hf_hook" not in encoder.__dict__ and _same(_encode(encoder, ids), want_off)


@needs_accelerate
def test_model_offload_enabled_after_apply_and_again(setup):
    state, path = setup
    pipe = tiny_models.tiny_sd_pipeline(state)
    encoder = pipe.text_encoder
    snapshot = _snapshot(encoder)
    ids = _ids(pipe, PROMPTS[2])
    want_off = _encode(encoder, ids)
    handle = apply_safetext(pipe, path, strength=1.0)
    want_on = _encode(encoder, ids)
    assert not _same(want_on, want_off)
    _offload(pipe)  # accelerate wraps SafeText's forward
    calls = _counting_hook(encoder)
    assert _same(_encode(encoder, ids), want_on) and calls[0] == 1
    _offload(pipe)  # diffusers removes every hook and installs new ones: SafeText survives
    calls = _counting_hook(encoder)
    assert _same(_encode(encoder, ids), want_on) and calls[0] == 1
    # A whole generation: at its end diffusers re-installs every hook again (maybe_free_model_hooks)
    pipe("a cat", num_inference_steps=1, height=32, width=32, output_type="pt")
    calls = _counting_hook(encoder)
    assert _same(_encode(encoder, ids), want_on) and calls[0] == 1
    hooked_forward = encoder.__dict__["forward"]
    handle.remove()
    assert encoder.__dict__["forward"] is hooked_forward and "_hf_hook" in encoder.__dict__  # never pops the hook
    old = encoder.__dict__["_old_forward"]  # what accelerate would hold had SafeText never been applied
    assert old.__self__ is encoder and old.__func__ is type(encoder).forward
    assert _same(_encode(encoder, ids), want_off) and calls[0] == 2
    pipe("a cat", num_inference_steps=1, height=32, width=32, output_type="pt")
    pipe.remove_all_hooks()
    assert _same(_encode(encoder, ids), want_off) and _untouched(encoder, snapshot)
    handle = apply_safetext(pipe, path, strength=1.0)  # after accelerate's removal left a plain bound forward
    assert _same(_encode(encoder, ids), want_on)
    handle.remove()
    assert _same(_encode(encoder, ids), want_off)


@needs_accelerate
def test_sequential_offload_is_refused_clearly_in_either_order(setup):
    """Sequential offload hooks every sub-module (and moves its weights to the meta device between calls): the
    aligned pass cannot run under it, so SafeText refuses it at apply time, or fails closed at the first aligned
    call when it is enabled afterwards. (Its own calls are not checked here: on this CPU-only set-up accelerate's
    sequential hooks fail by themselves.)"""
    state, path = setup
    pipe = tiny_models.tiny_sd_pipeline(state)
    encoder = pipe.text_encoder
    ids = _ids(pipe, PROMPTS[0])
    pipe.enable_sequential_cpu_offload(device="cpu")
    with pytest.raises(SafeTextError, match="sequential_cpu_offload"):
        apply_safetext(pipe, path)
    from safetext_core.diffusers_apply import _Wrapper

    assert not any(isinstance(encoder.__dict__.get(slot), _Wrapper) for slot in ("forward", "_old_forward"))

    pipe = tiny_models.tiny_sd_pipeline(state)
    encoder = pipe.text_encoder
    handle = apply_safetext(pipe, path)
    pipe.enable_sequential_cpu_offload(device="cpu")
    with pytest.raises(SafeTextError, match="sequential_cpu_offload"):  # fails closed, never unprotected
        _encode(encoder, ids)
    handle.remove()
    old = encoder.__dict__["_old_forward"]  # under accelerate's root hook: the plain forward again
    assert old.__self__ is encoder and old.__func__ is type(encoder).forward


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device")
def test_cuda_graph_replays_from_threads(setup):
    state, path = setup
    pipe = tiny_models.tiny_sd_pipeline(state).to("cuda")
    encoder = pipe.text_encoder
    ids = _ids(pipe, PROMPTS[0]).to("cuda")
    handle = apply_safetext(pipe, path, strength=0.5, use_cuda_graphs=False)
    with torch.inference_mode():
        eager = {s: None for s in (0.25, 0.5, 0.75)}
        for s in eager:
            with handle.local(strength=s):
                eager[s] = encoder(ids).last_hidden_state.clone()
    handle.use_cuda_graphs = True
    wrong, errors = [], []

    def worker(seed):
        rng = random.Random(seed)
        stream = torch.cuda.Stream() if seed % 2 else torch.cuda.current_stream()
        with torch.cuda.stream(stream), torch.inference_mode():
            for _ in range(100):
                s = rng.choice(list(eager))
                try:
                    with handle.local(strength=s):
                        got = encoder(ids).last_hidden_state
                    stream.synchronize()
                    if not torch.allclose(got, eager[s], atol=1e-5):
                        wrong.append(s)
                except Exception as error:  # noqa: BLE001
                    errors.append(repr(error))

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and not wrong, (errors[:3], len(wrong))
    assert any(g is not None for g in handle._graphs.values())
    handle.remove()


# ------------------------------------------------------------------------------------------------ measuring
def measure(hidden: int = 32, layers: int = 2, rounds: int = 300, threads: int = 4, calls: int = 60) -> None:
    """Per-call time of the aligned pass four ways, and what a race does to each (printed)."""
    from transformers import CLIPTextModel

    from safetext_core.weights import ShiftPlan

    torch.set_num_threads(1)
    ids = torch.randint(0, 49407, (1, 77))

    def ways():
        """A fresh model and the four ways of running its aligned pass (with the original pass each pairs with)."""
        torch.manual_seed(0)
        config = tiny_models.clip_config(hidden, layers)
        config.intermediate_size = hidden * 4
        model = CLIPTextModel(config).eval()
        deltas = {n: 0.01 * torch.randn_like(p) for n, p in model.named_parameters()}
        plan = ShiftPlan(model, deltas, 1.0)
        shifted = {name: value.clone() for (_, _, _, value), name in zip(plan.slots, deltas)}
        lock = threading.Lock()
        forward = type(model).forward

        def plain():
            return forward(model, ids)

        def swap():
            plan.current()
            with plan.swapped():
                return forward(model, ids)

        def swap_locked():
            plan.current()
            with lock, plan.swapped():
                return forward(model, ids)

        def plain_locked():
            with lock:
                return forward(model, ids)

        def functional():
            return torch.func.functional_call(model, shifted, (ids,))

        def shadow():
            plan.current()
            return plan.run((ids,), {})

        return model, plain, [("parameter swap (before)", swap, plain), ("swap under a lock", swap_locked, plain_locked),
                              ("torch.func.functional_call", functional, plain), ("shadow module (SafeText)", shadow, plain)]

    with torch.no_grad():
        model, plain, timed = ways()
        times = {name: [] for name in ["plain forward"] + [w[0] for w in timed]}
        for _ in range(rounds):  # interleaved, so a busy machine slows every way alike
            for name, fn in [("plain forward", plain)] + [(w[0], w[1]) for w in timed]:
                began = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - began)
        base = statistics.median(times["plain forward"])
        print(f"CLIP text encoder {hidden} wide, {layers} layers, CPU, 1 thread: plain forward {base * 1e3:.3f} ms "
              f"(median of {rounds})")
        for name, _, _ in timed:
            median = statistics.median(times[name])
            print(f"  aligned pass, {name:28s} {median * 1e3:.3f} ms ({(median - base) * 1e6:+.0f} us)")
        print(f"race: {threads} threads x {calls} calls, alternately aligned and original")
        for index in range(4):
            model, plain, every = ways()  # each way on its own fresh model
            name, on, off = every[index]
            fresh = {n: (p, p.detach().clone()) for n, p in model.named_parameters()}
            aligned, original = every[3][1]().last_hidden_state, plain().last_hidden_state
            wrong, errors = [0], [0]

            def worker(k):
                for i in range(calls):
                    aligned_call = (i + k) % 2 == 0
                    try:
                        out = (on if aligned_call else off)().last_hidden_state
                        wrong[0] += not torch.equal(out, aligned if aligned_call else original)
                    except Exception:  # noqa: BLE001
                        errors[0] += 1

            pool = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
            began = time.perf_counter()
            for thread in pool:
                thread.start()
            for thread in pool:
                thread.join()
            seconds = time.perf_counter() - began
            now = dict(model.named_parameters())
            left = sum(now.get(n) is not p or not torch.equal(p, v) for n, (p, v) in fresh.items())
            print(f"  {name:28s} wrong {wrong[0]}/{threads * calls}, exceptions {errors[0]}, "
                  f"tensors left modified {left}, {seconds:.2f} s")


if __name__ == "__main__":
    if "--measure" in sys.argv:
        measure()
        measure(256, 4, rounds=50, threads=2, calls=40)  # big enough for torch to release the GIL: throughput
        if "--large" in sys.argv:  # CLIP-L's size (123M parameters; about 1 GB of memory)
            measure(768, 12, rounds=15, threads=2, calls=6)
