"""``apply_safetext`` on diffusers' Flux.1, SD 3, Chroma, Lumina 2, Z-Image, Flux.2 Klein and Qwen-Image pipelines.

Tiny pipelines of the real classes (tests/tiny_pipelines.py); files made the way a user makes them: the pipeline saved
as a diffusers folder, loaded with ``load_encoders`` and trained with ``run_alignment`` (Flux, SD 3: full weights
and low rank), or, for the LLM families, written with the engine's ``SafeTextFile`` from the loaded encoders'
fingerprints and differences on the family's adapter targets (full, or low-rank factors). What is compared is what
each pipeline's own ``encode_prompt`` hands to its transformer; the aligned reference is the pipeline rebuilt
with ``apply_deltas`` copies of its encoders, their parameter names found by this file's own lookup.
"""
from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import tiny_pipelines as tp
from safetext_core import (AlignConfig, FingerprintMismatch, SafeTextFile, SafeTextFileError, UnsupportedModel,
                           apply_deltas, apply_safetext, load_encoders, run_alignment)
from safetext_core.families import get_family
from safetext_core.lowrank import expand

PROMPTS = ["a naked woman on a beach, photo", "a red car"]
TRAIN = AlignConfig(steps=4, batch_size=4, learning_rate=5e-3, anchor_weight=0.1, eval_every=0, preserve_pool=8,
                    mine_every=0)


def _saved(family: str, pipe, folder: Path):
    """The pipeline as a diffusers folder, loaded back by the engine (Klein's tiny Qwen3 has no real width: named)."""
    pipe.save_pretrained(str(folder))
    return load_encoders(folder, family=family if family.startswith("flux2_klein") else None)


def _constructed(encoders, path: Path, rank: int = 0, family: str | None = None, seed: int = 0) -> Path:
    """A SafeText file for ``encoders`` (their fingerprints) changing the family's adapter targets: full differences,
    or rank-``rank`` factors (saved as factors, loaded back as their expansion)."""
    torch.manual_seed(seed)
    deltas: dict = {}
    factors: dict = {}
    for spec in encoders.profile.encoders:
        model = encoders.models[spec.name]
        for name, module in model.named_modules():
            if not any(re.search(p, name) for p in spec.adapter_targets):
                continue
            weight = module.weight
            if rank:
                up, down = 0.3 * torch.randn(weight.shape[0], rank), 0.3 * torch.randn(rank, weight.shape[1])
                factors.setdefault(spec.name, {})[f"{name}.weight"] = (up, down, float(rank))
                deltas.setdefault(spec.name, {})[f"{name}.weight"] = expand(up, down, float(rank))
            else:
                deltas.setdefault(spec.name, {})[f"{name}.weight"] = 0.1 * torch.randn_like(weight)
    file = SafeTextFile(family or encoders.family, deltas, encoders.fingerprints(), factors=factors)
    return file.save(path)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[tuple[str, str], Path]:
    """Per (family, "full" / "lowrank"): a SafeText file for ``tp.pipeline(family)``."""
    root = tmp_path_factory.mktemp("families")
    from conftest import small_prompt_sets

    out = {}
    for family in tp.FAMILIES:
        encoders = _saved(family, tp.pipeline(family), root / family)
        assert encoders.family == family
        for kind in ("full", "lowrank"):
            path = root / f"{family}.{kind}.safetext.safetensors"
            if family in ("flux", "sd3"):  # trained, as a user trains them
                config = replace(TRAIN, rank=4, lora_learning_rate=3e-2) if kind == "lowrank" else TRAIN
                run_alignment(encoders, small_prompt_sets(), config, output=path, draw=False, independent=False)
            else:
                _constructed(encoders, path, rank=4 if kind == "lowrank" else 0)
            out[family, kind] = path
    return out


def _own_name(module: torch.nn.Module, name: str) -> str:
    """The module's own name for a file's (ComfyUI's) parameter name: tried as is, without CLIP's ``text_model.``
    (transformers 5) or a base model's ``model.``, or under Qwen2.5-VL's ``model.language_model.``."""
    own = dict(module.named_parameters())
    for candidate in (name, name.removeprefix("text_model."), name.removeprefix("model."),
                      name.replace("model.", "model.language_model.", 1)):
        if candidate in own:
            return candidate
    raise AssertionError(f"{type(module).__name__} has no parameter for {name}")


def _aligned_pipeline(family: str, file: SafeTextFile, strength: float):
    """The pipeline with every encoder replaced by a copy carrying ``W + strength * delta``."""
    modules = tp.encoders(family)
    aligned = {}
    for spec in get_family(family).encoders:
        attribute, module = spec.diffusers[0], modules[spec.diffusers[0]]
        deltas = {_own_name(module, k): v for k, v in file.deltas.get(spec.name, {}).items()}
        aligned[attribute] = apply_deltas(module, deltas, strength)
    return tp.pipeline(family, aligned)


def _equal(a, b) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("kind", ["full", "lowrank"])
@pytest.mark.parametrize("family", tp.FAMILIES)
def test_apply_to_the_familys_pipeline(family, kind, files):
    """Off and strength 0: bit for bit the original; strength 1: what the pipeline with aligned encoders hands its
    transformer, bit for bit; the embedding blend at 0.5 the exact lerp of the two; the weight blend the encoders
    with W + s * delta; remove() puts every encoder back."""
    path = files[family, kind]
    file = SafeTextFile.load(path)
    assert bool(file.factors) == (kind == "lowrank")
    pipe = tp.pipeline(family)
    baseline = tp.encode(family, pipe, PROMPTS)
    aligned = tp.encode(family, _aligned_pipeline(family, file, 1.0), PROMPTS)
    half_weights = tp.encode(family, _aligned_pipeline(family, file, 0.5), PROMPTS)
    assert not any(torch.allclose(a, b, atol=1e-4) for a, b in zip(aligned, baseline))  # every output moves

    handle = apply_safetext(pipe, path, strength=1.0)
    assert _equal(tp.encode(family, pipe, PROMPTS), aligned)
    if family == "sd3":  # CLIP-L, bigG and T5 each moved in the joint sequence: all three encoders are aligned
        joint, on = baseline[0], tp.encode(family, pipe, PROMPTS)[0]
        for part in (np.s_[:, :77, :32], np.s_[:, :77, 32:96], np.s_[:, 77:]):
            assert not torch.allclose(on[part], joint[part], atol=1e-4)
    handle.enabled = False
    assert _equal(tp.encode(family, pipe, PROMPTS), baseline)
    handle.enabled = True
    handle.strength = 0.0
    assert _equal(tp.encode(family, pipe, PROMPTS), baseline)

    handle.strength = 0.5
    half = tp.encode(family, pipe, PROMPTS)
    assert _equal(half, tuple(torch.lerp(o, a, 0.5) for o, a in zip(baseline, aligned)))
    signal = handle.last_signal  # measured on what the family consumes, one per prompt
    assert signal is not None and len(signal) == len(PROMPTS) and all(s.cosine < 1.0 for s in signal)

    handle.mode = "weight"
    weight_half = tp.encode(family, pipe, PROMPTS)
    assert all(torch.allclose(w, r, atol=1e-6) for w, r in zip(weight_half, half_weights))
    assert not _equal(weight_half, half)  # another point between the two ends
    handle.strength = 1.0
    assert _equal(tp.encode(family, pipe, PROMPTS), aligned)

    handle.remove()
    assert _equal(tp.encode(family, pipe, PROMPTS), baseline)
    for spec in get_family(family).encoders:
        assert "forward" not in getattr(pipe, spec.diffusers[0]).__dict__
    assert "encode_prompt" not in pipe.__dict__


def _images(pipe) -> np.ndarray:
    return pipe("a naked woman on a beach, photo", num_inference_steps=1, height=8, width=8, output_type="np",
                max_sequence_length=32, generator=torch.Generator().manual_seed(0)).images


@pytest.mark.parametrize("family", ["flux", "sd3"])
def test_generation_end_to_end(family, files):
    """A whole generation: off draws the original picture, on the picture of the pipeline with aligned encoders."""
    path = files[family, "full"]
    pipe = tp.pipeline(family)
    baseline = _images(pipe)
    reference = _images(_aligned_pipeline(family, SafeTextFile.load(path), 1.0))
    assert not np.allclose(reference, baseline, atol=1e-6)
    with apply_safetext(pipe, path, strength=1.0) as handle:
        assert np.array_equal(_images(pipe), reference)
        handle.enabled = False
        assert np.array_equal(_images(pipe), baseline)
    assert np.array_equal(_images(pipe), baseline)


def _one_encoder_of(encoders, name: str, family: str) -> SimpleNamespace:
    """One encoder of a loaded set, posing as a set of ``family`` (a file of that family made from it)."""
    return SimpleNamespace(family=family, profile=get_family(family), models={name: encoders.models[name]},
                           fingerprints=lambda: {name: encoders.fingerprints()[name]})


def test_files_of_other_families_and_checkpoints_are_refused(tmp_path):
    """Never half-protect: an SD 1.x file whose CLIP-L fingerprint matches a Flux pipeline's (Flux's CLIP-L is SD 1.x's)
    is refused by the pipeline's class, and on a pipeline of no known class for the T5 it would leave alone; a Chroma
    file for the Flux pipeline's very T5, a Z-Image file for Klein's very Qwen3 (Klein reads other layers), a Flux file
    on SD 3 are refused by family; a Flux file of another checkpoint by fingerprint; Flux.2 [dev], Qwen-Image-Edit and
    unknown pipelines with a T5 / LLM file by name."""
    flux = tp.pipeline("flux")
    flux_encoders = _saved("flux", flux, tmp_path / "flux")
    clip_only = _one_encoder_of(flux_encoders, "clip_l", "sd1")
    sd1 = _constructed(clip_only, tmp_path / "sd1.safetensors")
    with pytest.raises(UnsupportedModel, match="Stable Diffusion 1.x SafeText file does not fit a FluxPipeline"):
        apply_safetext(flux, sd1)
    flux_like = SimpleNamespace(text_encoder=flux.text_encoder, text_encoder_2=flux.text_encoder_2, tokenizer=None)
    with pytest.raises(UnsupportedModel, match=r"also reads text_encoder_2 \(T5EncoderModel\)"):
        apply_safetext(flux_like, sd1)  # a class in no entry: whatever it is, every encoder must be covered
    apply_safetext(SimpleNamespace(text_encoder=flux.text_encoder, tokenizer=None), sd1).remove()  # CLIP-L alone
    t5_only = _one_encoder_of(flux_encoders, "t5xxl", "chroma")
    chroma = _constructed(t5_only, tmp_path / "chroma.safetensors")
    with pytest.raises(UnsupportedModel, match="Chroma SafeText file does not fit a FluxPipeline"):
        apply_safetext(flux, chroma)
    flux_file = _constructed(flux_encoders, tmp_path / "flux.safetensors")
    with pytest.raises(UnsupportedModel, match="Flux.1 SafeText file does not fit a StableDiffusion3Pipeline"):
        apply_safetext(tp.pipeline("sd3"), flux_file)
    other = tp.pipeline("flux", {"text_encoder_2": tp.t5(seed=11)})
    with pytest.raises(FingerprintMismatch, match="t5xxl"):
        apply_safetext(other, flux_file)
    assert not any("forward" in m.__dict__ for m in (flux.text_encoder, flux.text_encoder_2, other.text_encoder_2))
    apply_safetext(flux, flux_file).remove()  # the file of the pipeline's own family and checkpoint is taken
    sd3 = _constructed(_saved("sd3", tp.pipeline("sd3"), tmp_path / "sd3"), tmp_path / "sd3.safetensors")
    without_t5 = tp.pipeline("sd3", {"text_encoder_3": None})  # SD 3 loaded without T5: the file's T5 part has no home
    with pytest.raises(SafeTextFileError, match="no text_encoder_3 for the file's t5xxl"):
        apply_safetext(without_t5, sd3)

    klein = tp.pipeline("flux2_klein_4b")
    klein_encoders = _saved("flux2_klein_4b", klein, tmp_path / "klein")
    z_image = _constructed(klein_encoders, tmp_path / "z.safetensors", family="z_image")
    with pytest.raises(UnsupportedModel, match="Z-Image SafeText file does not fit a Flux2KleinPipeline"):
        apply_safetext(klein, z_image)
    assert "forward" not in klein.text_encoder.__dict__

    dev = type("Flux2Pipeline", (), {"text_encoder": klein.text_encoder})()
    with pytest.raises(UnsupportedModel, match=r"Flux2Pipeline: Flux.2 \[dev\]"):
        apply_safetext(dev, z_image)
    edit = type("QwenImageEditPlusPipeline", (), {"text_encoder": klein.text_encoder})()
    with pytest.raises(UnsupportedModel, match="Qwen-Image-Edit"):
        apply_safetext(edit, z_image)
    unknown = SimpleNamespace(text_encoder=klein.text_encoder, tokenizer=None)
    with pytest.raises(UnsupportedModel, match="does not fit a SimpleNamespace"):
        apply_safetext(unknown, z_image)


@pytest.mark.parametrize("family", ["flux", "sd3"])
def test_image_evaluation_on_transformer_pipelines(family, files, tmp_path):
    """``safetext eval --pipeline`` on Flux and SD 3 (their denoiser is a transformer, not a UNet): the original and
    the SafeText pictures are drawn with the file on and off, and differ where the conditioning does; the pictures'
    identity names the transformer and every text encoder."""
    from safetext_core.evaluate_images import ImageSettings, diffusers_generator, evaluate_images

    pipe = tp.pipeline(family)
    settings = ImageSettings(steps=1, size=8, batch_size=2)
    result = evaluate_images(pipe, files[family, "full"], unsafe={}, safe=PROMPTS, settings=settings,
                             output_dir=tmp_path / "pictures")
    assert result.figures["safe_images"] == len(PROMPTS) and len(result.safe_rows) == len(PROMPTS)
    assert 0.0 <= result.figures["safe_ssim_mean"] < 1.0  # the file changed the pictures (a naked woman's at least)
    assert sorted(p.suffix for p in (tmp_path / "pictures").rglob("*.png"))[:1] == [".png"]
    with apply_safetext(pipe, files[family, "full"]) as handle:
        _, identity = diffusers_generator(pipe, handle, settings)
    encoders = 3 if family == "sd3" else 2
    assert "transformer" in identity and "unet" not in identity and len(identity["text"]) == encoders
