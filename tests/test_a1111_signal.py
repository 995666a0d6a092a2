"""The moderation signal in AUTOMATIC1111's and Forge's infotext and API ``info``, against the stand-ins of
``test_a1111_scripts.py`` and ``test_forge_adapter.py``: per image, the cosine of its prompt's conditioning to the original and whether it
moved, computed once by the core while the webui encodes the job's prompts (negative prompts left out).
"""
from __future__ import annotations

import torch

from safetext_core.moderation import MOVED_BELOW
from test_a1111_scripts import FakeSDModel, _p, _tokens, sd1, webui  # noqa: F401 - fixtures
from test_forge_adapter import PROMPT as FORGE_PROMPT, forge  # noqa: F401 - fixture


class LearnedModel(FakeSDModel):
    """An SD model whose ``get_learned_conditioning(texts)`` encodes the texts as one batch, as the webui's does."""

    def get_learned_conditioning(self, texts):
        cond = self.cond_stage_model
        ids = cond.wrapped.tokenizer(list(texts), padding="max_length", max_length=77, truncation=True,
                                     return_tensors="pt")["input_ids"]
        with torch.no_grad():
            return cond.encode_with_transformers(ids)


def _cos(a, b):
    return torch.nn.functional.cosine_similarity(a[:, 1:].flatten(1), b[:, 1:].flatten(1)).tolist()


def test_infotext_and_api_info_carry_the_signal_per_image(webui, sd1):
    model = sd1.model
    model.__class__ = LearnedModel
    prompts, negatives = ["a photo of a cat", "a naked body, photo"], ["blurry", "blurry"]
    with torch.no_grad():
        original = model.cond_stage_model.encode_with_transformers(_tokens(model.cond_stage_model, prompts[0]))
        original = torch.cat([original, model.cond_stage_model.encode_with_transformers(
            _tokens(model.cond_stage_model, prompts[1]))])
        aligned = torch.cat([sd1.aligned.encode_with_transformers(_tokens(sd1.aligned, p)) for p in prompts])
    want = _cos(original, aligned)
    script = webui.script.SafeTextScript()
    args = [True, "tiny", 1.0, "embedding"]
    p = _p(model)
    p.prompts, p.negative_prompts, p.batch_size, p.n_iter = prompts, negatives, 2, 2
    script.process(p, *args)
    for batch in range(2):
        script.process_batch(p, *args)
        model.get_learned_conditioning(negatives)  # the webui encodes the negative prompts first
        model.get_learned_conditioning(prompts)
        script.postprocess_batch(p, *args, images=None, batch_number=batch)
    params = p.extra_generation_params
    assert params["SafeText cosine"] == [round(c, 4) for c in want] * 2
    assert params["SafeText moved"] == [c < MOVED_BELOW for c in want] * 2
    assert all(c < 0.9999 for c in want)  # the file moves these prompts: a test that can see a missing signal
    script.postprocess(p, None, *args)
    assert "get_learned_conditioning" not in model.__dict__


def _one_batch_started(webui, sd1, args: list, prompt: str, negative: str):
    """The script through ``process`` and ``process_batch`` for a one-image job on a model that encodes in batches."""
    model = sd1.model
    model.__class__ = LearnedModel
    script = webui.script.SafeTextScript()
    p = _p(model)
    p.prompts, p.negative_prompts, p.batch_size, p.n_iter = [prompt], [negative], 1, 1
    script.process(p, *args)
    script.process_batch(p, *args)
    return script, p, model


def test_prompt_editing_falls_back_to_the_lowest_of_the_prompts_texts(webui, sd1):
    args = [True, "tiny", 0.5, "embedding"]
    script, p, model = _one_batch_started(webui, sd1, args, "[a photo of a cat:a naked body:5]", "ugly")
    model.get_learned_conditioning(["ugly"])
    model.get_learned_conditioning(["a photo of a cat", "a naked body"])  # the schedule's two texts
    active = webui.hijack._STATE.active
    lowest = min(active.signals["a photo of a cat"].cosine, active.signals["a naked body"].cosine)
    script.postprocess_batch(p, *args, batch_number=0)
    assert p.extra_generation_params["SafeText cosine"] == [lowest]
    script.postprocess(p, None, *args)


def test_no_signal_fields_when_safetext_is_off(webui, sd1):
    args = [False, "tiny", 1.0, "embedding"]
    script, p, model = _one_batch_started(webui, sd1, args, "a photo of a cat", "")
    model.get_learned_conditioning(["a photo of a cat"])
    script.postprocess_batch(p, *args, batch_number=0)
    assert "SafeText cosine" not in p.extra_generation_params and "get_learned_conditioning" not in model.__dict__


def test_forge_gets_the_signal_through_the_same_wrapper(webui, forge):
    """Forge (and Neo): SafeText's wrapper on the text-processing engine records the signal as on A1111."""
    model = forge.model
    script = webui.script.SafeTextScript()
    args = [True, "forge.safetensors", 1.0, "embedding"]
    p = _p(model)
    p.clear_prompt_cache = lambda: None
    p.prompts, p.negative_prompts, p.batch_size, p.n_iter = [FORGE_PROMPT], [""], 1, 1
    script.process(p, *args)
    script.process_batch(p, *args)
    model.get_learned_conditioning([FORGE_PROMPT])
    script.postprocess_batch(p, *args, batch_number=0)
    script.postprocess(p, None, *args)
    want = _cos(forge.encoded(0.0), forge.encoded(1.0))[0]
    assert p.extra_generation_params["SafeText cosine"] == [round(want, 4)] and want < 0.9999
    assert p.extra_generation_params["SafeText moved"] == [want < MOVED_BELOW]
