"""The moderation signal: the core's computation (:mod:`safetext_core.moderation`) against a direct one, and the
diffusers handle's ``last_signal`` on a tiny SD 1.x pipeline with a trained file.

The ComfyUI side is in ``test_comfy_enforce.py``, the A1111 side in ``test_a1111_scripts.py``.
"""
from __future__ import annotations

import pytest
import torch

import tiny_models
from safetext_core import AlignConfig, load_encoders, run_alignment
from safetext_core.moderation import MOVED_BELOW, Recorder, SignalSum, combined_signal, signal_of


def test_core_signal_is_the_evaluation_cosine():
    torch.manual_seed(0)
    a, b = torch.randn(3, 77, 8), torch.randn(3, 77, 8)
    b[1] = a[1] * 2.0  # same direction: cosine 1
    total = SignalSum()
    total.add((a, torch.randn(3, 8)), (b, torch.randn(3, 8)))
    want = torch.nn.functional.cosine_similarity(a[:, 1:].reshape(3, -1), b[:, 1:].reshape(3, -1), dim=1)
    assert torch.allclose(torch.tensor(total.cosines()), want, atol=1e-6)
    signals = signal_of(a, b)
    assert signals[1].cosine == pytest.approx(1.0) and not signals[1].moved
    assert [s.moved for s in signals] == [float(c) < MOVED_BELOW for c in want]
    # two passes (two encoders, or two chunks) count as one concatenated vector
    c, d = torch.randn(3, 77, 4), torch.randn(3, 77, 4)
    total.add(c, d)
    cat = torch.nn.functional.cosine_similarity(torch.cat([a, c], -1)[:, 1:].reshape(3, -1),
                                                torch.cat([b, d], -1)[:, 1:].reshape(3, -1), dim=1)
    assert torch.allclose(torch.tensor(total.cosines()), cat, atol=1e-6)
    rows = combined_signal([(total, [0, 2])])
    both = torch.nn.functional.cosine_similarity(torch.cat([a, c], -1)[[0, 2], 1:].reshape(1, -1),
                                                 torch.cat([b, d], -1)[[0, 2], 1:].reshape(1, -1), dim=1)
    assert rows.cosine == pytest.approx(float(both), abs=1e-4)
    with pytest.raises(ValueError):
        total.add(torch.randn(2, 77, 8), torch.randn(2, 77, 8))



def test_recorder_groups_prompt_and_negative_per_encoder():
    torch.manual_seed(1)
    a, b, n = torch.randn(2, 77, 8), torch.randn(2, 77, 8), torch.randn(2, 77, 8)
    recorder = Recorder()
    recorder.add("clip_l", a, b)      # the prompt through both encoders...
    recorder.add("clip_g", a, a)
    recorder.add("clip_l", n, n)      # ...then the negative prompt
    assert len(recorder.groups) == 2
    first = recorder.signals(0)
    want = torch.nn.functional.cosine_similarity(torch.cat([a, a], -1)[:, 1:].flatten(1),
                                                 torch.cat([b, a], -1)[:, 1:].flatten(1), dim=1)
    assert [s.cosine for s in first] == pytest.approx(want.tolist(), abs=1e-4)
    assert [s.cosine for s in recorder.signals(1)] == [1.0, 1.0] and recorder.signals(2) is None


@pytest.fixture(scope="module")
def sd1_file(tmp_path_factory):
    from conftest import small_prompt_sets

    folder = tmp_path_factory.mktemp("moderation")
    states = tiny_models.write_single_file(folder / "model.safetensors", "sd1")
    config = AlignConfig(steps=40, batch_size=8, learning_rate=5e-3, anchor_weight=0.1, eval_every=10)
    run_alignment(load_encoders(folder / "model.safetensors"), small_prompt_sets(), config,
                  output=folder / "model.safetext.safetensors", base_name="tiny-sd1", draw=False)
    return states, folder / "model.safetext.safetensors"


def _encoded(pipe, prompt):
    ids = pipe.tokenizer(prompt, padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        return pipe.text_encoder(ids).last_hidden_state


def test_diffusers_handle_reports_the_prompt_not_the_negative(sd1_file):
    from safetext_core import apply_safetext

    states, path = sd1_file
    pipe = tiny_models.tiny_sd_pipeline(states["clip_l"])
    prompt, negative = "a naked woman on a bed, photo", "blurry"
    original = _encoded(pipe, prompt)
    handle = apply_safetext(pipe, path, strength=0.5)
    assert handle.last_signal is None
    blended = _encoded(pipe, prompt)  # a direct encoder call: its own signal
    want = torch.nn.functional.cosine_similarity(original[:, 1:].flatten(1), blended[:, 1:].flatten(1))
    assert handle.last_signal[0].cosine == pytest.approx(float(want), abs=1e-4)
    pipe(prompt, negative_prompt=negative, num_inference_steps=1, height=32, width=32, output_type="pt")
    signals = handle.last_signal
    assert len(signals) == 1 and signals[0].cosine == pytest.approx(float(want), abs=1e-4)  # not the negative's
    assert signals[0].moved == (float(want) < MOVED_BELOW)
    # strength 1: the original pass is skipped, so no signal unless asked for (then it costs that pass)
    handle.strength = 1.0
    pipe(negative, num_inference_steps=1, height=32, width=32, output_type="pt")
    assert handle.last_signal == signals  # unchanged: nothing measured
    handle.signal = True
    pipe(prompt, num_inference_steps=1, height=32, width=32, output_type="pt")
    aligned = _encoded(pipe, prompt)
    full = torch.nn.functional.cosine_similarity(original[:, 1:].flatten(1), aligned[:, 1:].flatten(1))
    assert handle.last_signal[0].cosine == pytest.approx(float(full), abs=1e-4) and full < want
    handle.remove()
    assert "encode_prompt" not in pipe.__dict__
