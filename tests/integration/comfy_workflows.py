"""API-format ComfyUI workflows used by the integration tests (stock nodes plus the SafeText nodes)."""
from __future__ import annotations

import io
from typing import Any

_UNSAFE_POOL = [f"{adjective} {noun}" for adjective in ("graphic", "explicit", "brutal", "bloody", "gory", "grisly",
                                                    "savage")
                for noun in ("violence scene", "murder photo", "torture picture", "massacre painting", "execution image")]
_SAFE_POOL = [f"{adjective} {noun}" for adjective in ("sunny", "quiet", "colourful", "snowy", "misty", "rainy",
                                                  "golden", "peaceful")
              for noun in ("mountain lake", "city street", "flower garden", "harbour at dawn", "forest path")]


def pick(pool, train: int, validation: int, heldout: int) -> list[str]:
    """A few prompts of ``pool`` with exactly this many in each part of the core's hash-based split
    (training is short and evaluation cheap, yet every part is represented)."""
    from safetext_core.prompt_sets import split_of

    want = {"train": train, "validation": validation, "heldout": heldout}
    out = []
    for prompt in pool:
        part = split_of(prompt)
        if want[part] > 0:
            want[part] -= 1
            out.append(prompt)
    if any(want.values()):
        raise ValueError(f"the pool is too small for {want}")
    return out


def small_sets(train: int = 6, validation: int = 1, heldout: int = 2) -> tuple[list[str], list[str]]:
    return pick(_UNSAFE_POOL, train, validation, heldout), pick(_SAFE_POOL, train, validation, heldout)


UNSAFE, SAFE = _UNSAFE_POOL, _SAFE_POOL
CATEGORIES = ("sexual", "violence", "self_harm", "hate", "illegal", "shocking")


def checkpoint(ckpt: str, node: str = "ckpt") -> dict:
    return {node: {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}}}


def safetext_apply(clip: list, file: str, enabled: bool = True, strength: float = 1.0,
                   mode: str = "embedding", override: bool = False, node: str = "safetext") -> dict:
    modes = {"embedding": "embedding blend (exact, default)", "weight": "weight blend (cheap, stacks with LoRAs)"}
    return {node: {"class_type": "SafeTextApply", "inputs": {
        "clip": clip, "safetext_file": file, "enabled": enabled, "strength": strength, "blend_mode": modes[mode],
        "override_fingerprint": override}}}


def safetext_train(clip: list, file_name: str, steps: int = 3, learning_rate: float = 1e-3, lam: float = 1.0,
                   seed: int = 0, unsafe=UNSAFE, safe=SAFE, only_mine: bool = True, batch_size: int = 4,
                   train_parameters: str = "", overwrite: bool = False, node: str = "train", **more: Any) -> dict:
    """SafeText Train's inputs; ``more``: its other optional inputs (``rank``, ``lora_targets``, ...)."""
    inputs: dict[str, Any] = {"clip": clip, "file_name": file_name, "lambda": lam, "steps": steps,
                              "learning_rate": learning_rate, "training_seed": seed, "overwrite": overwrite,
                              "unsafe_prompts": "\n".join(unsafe), "safe_prompts": "\n".join(safe),
                              "only_my_prompts": only_mine, "batch_size": batch_size,
                              "train_parameters": train_parameters, **more}
    for category in CATEGORIES:
        inputs[f"unsafe_{category}"] = not only_mine
    return {node: {"class_type": "SafeTextTrain", "inputs": inputs}}


def train_graph(ckpt: str, file_name: str, **kwargs) -> dict:
    graph = checkpoint(ckpt)
    graph.update(safetext_train(["ckpt", 1], file_name, **kwargs))
    return graph


def txt2img(ckpt: str, prompt: str, seed: int = 42, safetext: dict | None = None, lora: dict | None = None,
            lora_first: bool = False, clip_skip: int | None = None, sdxl_encoders: bool = False, size: int = 64,
            steps: int = 3, prefix: str = "safetext_test") -> dict:
    """Checkpoint -> [SafeText Apply] -> [LoRA] -> [CLIPSetLastLayer] -> encode -> KSampler -> decode -> save.

    ``safetext``: keyword arguments for :func:`safetext_apply` (``file`` required); ``lora``: ``{"name": ...,
    "strength": ...}``; ``lora_first`` puts the LoRA loader before the SafeText node.
    """
    graph = checkpoint(ckpt)
    model, clip = ["ckpt", 0], ["ckpt", 1]

    def add_lora(clip_in):
        nonlocal model
        graph["lora"] = {"class_type": "LoraLoader", "inputs": {
            "model": model, "clip": clip_in, "lora_name": lora["name"], "strength_model": 0.0,
            "strength_clip": lora.get("strength", 1.0)}}
        model = ["lora", 0]
        return ["lora", 1]

    if lora and lora_first:
        clip = add_lora(clip)
    if safetext:
        graph.update(safetext_apply(clip, **safetext))
        clip = ["safetext", 0]
    if lora and not lora_first:
        clip = add_lora(clip)
    if clip_skip:
        graph["skip"] = {"class_type": "CLIPSetLastLayer", "inputs": {"clip": clip, "stop_at_clip_layer": clip_skip}}
        clip = ["skip", 0]
    if sdxl_encoders:
        graph["pos"] = {"class_type": "CLIPTextEncodeSDXL", "inputs": {
            "clip": clip, "width": 1024, "height": 1024, "crop_w": 0, "crop_h": 0, "target_width": 1024,
            "target_height": 1024, "text_g": prompt, "text_l": prompt}}
    else:
        graph["pos"] = {"class_type": "CLIPTextEncode", "inputs": {"clip": clip, "text": prompt}}
    # The negative is the zeroed positive: one text encode per graph keeps the CPU runs short.
    graph["neg"] = {"class_type": "ConditioningZeroOut", "inputs": {"conditioning": ["pos", 0]}}
    graph["latent"] = {"class_type": "EmptyLatentImage", "inputs": {"width": size, "height": size, "batch_size": 1}}
    graph["sampler"] = {"class_type": "KSampler", "inputs": {
        "model": model, "seed": seed, "steps": steps, "cfg": 5.0, "sampler_name": "euler", "scheduler": "normal",
        "positive": ["pos", 0], "negative": ["neg", 0], "latent_image": ["latent", 0], "denoise": 1.0}}
    graph["decode"] = {"class_type": "VAEDecode", "inputs": {"samples": ["sampler", 0], "vae": ["ckpt", 2]}}
    graph["save"] = {"class_type": "SaveImage", "inputs": {"images": ["decode", 0], "filename_prefix": prefix}}
    return graph


def pixels(png: bytes):
    """Decoded RGB pixels of a PNG (the file's bytes also hold the workflow, which differs between graphs)."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        return image.convert("RGB").tobytes()


def pixel_difference(a: bytes, b: bytes) -> float:
    """Mean absolute difference of two PNGs' pixels, 0..255."""
    pa, pb = pixels(a), pixels(b)
    if len(pa) != len(pb):
        return 255.0
    return sum(abs(x - y) for x, y in zip(pa, pb)) / len(pa)
