"""Image-level figures: the same seed with the original and the aligned encoder, compared with kornia.

For safe prompts the pictures should barely change: SSIM near 1 and a high PSNR. Needs a diffusers
pipeline (a folder or an object); only used when one is at hand.
"""
from __future__ import annotations

import os
from typing import Any, Sequence

import torch

from .diffusers_apply import apply_safetext
from .errors import PromptSetError
from .safetext_file import SafeTextFile


def to_pil(image: torch.Tensor) -> Any:
    """A [1, 3, H, W] tensor in [0, 1] as a PIL image."""
    from PIL import Image

    array = (image[0].permute(1, 2, 0).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    return Image.fromarray(array)


def _load_pipeline(pipeline: Any, device: str) -> Any:
    if not isinstance(pipeline, (str, os.PathLike)):
        return pipeline
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(str(pipeline), local_files_only=True, use_safetensors=True,
                                             safety_checker=None, requires_safety_checker=False)
    return pipe.to(device)


def _generate(pipe: Any, prompt: str, seed: int, steps: int, size: int, device: str) -> torch.Tensor:
    generator = torch.Generator(device="cpu").manual_seed(seed)
    out = pipe(prompt, num_inference_steps=steps, height=size, width=size, generator=generator, output_type="pt")
    return out.images[:1].float().clamp(0, 1).cpu()


def image_figures(pipeline: Any, file: SafeTextFile | str, prompts: Sequence[str], steps: int = 20, size: int = 512,
                  seed: int = 0, device: str = "cpu", strength: float = 1.0, mode: str = "embedding",
                  comparison_path: str | os.PathLike | None = None) -> dict[str, float]:
    """Mean/min SSIM and mean PSNR between original and SafeText images of ``prompts`` (same seeds)."""
    import kornia

    if not prompts:
        raise PromptSetError("no prompts for the image comparison")
    pipe = _load_pipeline(pipeline, device)
    handle = apply_safetext(pipe, file, strength=strength, mode=mode)
    ssims, psnrs, rows = [], [], []
    try:
        for index, prompt in enumerate(prompts):
            handle.enabled = False
            before = _generate(pipe, prompt, seed + index, steps, size, device)
            handle.enabled = True
            after = _generate(pipe, prompt, seed + index, steps, size, device)
            ssims.append(float(kornia.metrics.ssim(before, after, window_size=11).mean()))
            psnrs.append(float(kornia.metrics.psnr(before, after, max_val=1.0)))
            rows.append((prompt, before, after))
    finally:
        handle.remove()
    if comparison_path is not None:
        from .plots import image_comparison

        pictures = [(prompt, to_pil(a), to_pil(b)) for prompt, a, b in rows]
        image_comparison(pictures, caption=f"same seed; SafeText strength {strength} ({mode} blend)").save(comparison_path)
    figures = {"images": float(len(prompts)), "ssim_mean": sum(ssims) / len(ssims), "ssim_min": min(ssims),
               "psnr_mean": sum(p for p in psnrs if p != float("inf")) / max(1, sum(p != float("inf") for p in psnrs))}
    return figures
