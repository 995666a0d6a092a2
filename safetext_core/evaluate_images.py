"""Image-level evaluation, the way the paper measures SafeText: unsafe pictures removed, safe pictures unchanged.

The same prompts and seeds are drawn twice, with the original and with the aligned encoder. Unsafe prompts'
pictures go to an image detector (:mod:`.detectors`, an optional extra): the share judged unsafe before and
after, and the removal rate (of the prompts whose original picture was unsafe, the share whose SafeText
picture is not), per prompt category. Safe prompts' pictures are compared pair by pair with kornia's SSIM and
PSNR. No perceptual distance is computed: LPIPS and FID need pretrained network weights that no package here
ships (and LPIPS's come pickled), so we do not pretend to one.

Generation is host-neutral: :func:`run_image_evaluation` takes a ``generate(prompts, seeds, aligned)``
callable; :func:`diffusers_generator` makes one for a diffusers pipeline, the ComfyUI node makes one from the
graph's own model, CLIP and VAE. With an output folder every picture is written as soon as it is made (PNG,
written then renamed) under a name that hashes the prompt, seed and every setting that changes it, and a picture
already there is read back instead of drawn again: an interrupted run continues where it stopped, and changed
settings never reuse stale pictures.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch

from .errors import ConfigError, PromptSetError
from .image_metrics import detection_figures, json_safe, safe_figures, similarity
from .safetext_file import SafeTextFile

Generate = Callable[[Sequence[str], Sequence[int], bool], list]  # prompts, seeds, aligned? -> PIL images
Progress = Callable[[int, int], None]  # pictures done, pictures in all
NO_PERCEPTUAL = ("not computed: LPIPS/FID need pretrained network weights that no installable package ships "
                 "(LPIPS's are pickled, which SafeText never loads)")


@dataclass
class ImageSettings:
    """How pictures are drawn; every field that changes a picture is part of its cache key."""

    steps: int = 20
    size: int = 512
    guidance_scale: float = 7.5
    seed: int = 0
    batch_size: int = 4
    strength: float = 1.0
    mode: str = "embedding"

    def check(self) -> "ImageSettings":
        if self.steps < 1 or self.batch_size < 1:
            raise ConfigError("image steps and batch size must be at least 1")
        if self.size < 8 or self.size % 8:
            raise ConfigError(f"image size must be a multiple of 8 (got {self.size})")
        return self


@dataclass
class ImageEvaluation:
    """Figures (all numbers), one row per prompt, the pictures' folder and the two PNGs made from them."""

    figures: dict[str, float]
    unsafe_rows: list[dict[str, Any]] = field(default_factory=list)
    safe_rows: list[dict[str, Any]] = field(default_factory=list)
    detector: str | None = None
    covered: dict[str, bool] = field(default_factory=dict)  # category -> does the detector judge it?
    output_dir: Path | None = None
    report: Any = None  # PIL image
    sheet: Any = None  # PIL image: original and SafeText side by side

    def to_json(self) -> dict[str, Any]:
        return {"figures": self.figures, "detector": self.detector, "covered_categories": self.covered,
                "perceptual_distance": NO_PERCEPTUAL, "unsafe": self.unsafe_rows, "safe": self.safe_rows}


# ----------------------------------------------------------------------------------------------- prompts

def spread(prompts: Sequence[str], count: int) -> list[str]:
    """``count`` prompts spread evenly over ``prompts`` (files are grouped by topic: the first N would be one)."""
    prompts = list(prompts)
    if count >= len(prompts):
        return prompts
    return [prompts[math.floor(i * len(prompts) / count)] for i in range(max(0, count))]


def default_prompts(unsafe_per_category: int, safe_count: int,
                    categories: Sequence[str] | None) -> tuple[dict[str, list[str]], list[str]]:
    """Prompts from the independent evaluation sets (written apart from training, sharing no phrasing with it):
    ``unsafe_per_category`` of each category's plain unsafe file and ``safe_count`` broad harmless prompts."""
    from .prompt_sets import CATEGORIES, INDEPENDENT_DIR, load_prompt_file

    chosen = list(CATEGORIES if categories is None else categories)
    unknown = sorted(set(chosen) - set(CATEGORIES))
    if unknown:
        raise PromptSetError(f"unknown categories {unknown}; choose from {', '.join(CATEGORIES)}")
    unsafe = {}
    for category in chosen:
        path = INDEPENDENT_DIR / "unsafe" / f"{category}.txt"
        if unsafe_per_category > 0 and path.is_file():
            unsafe[category] = spread(load_prompt_file(path), unsafe_per_category)
    benign = [p for f in sorted((INDEPENDENT_DIR / "benign").glob("*.txt")) for p in load_prompt_file(f)]
    return unsafe, spread(benign, safe_count)


# ----------------------------------------------------------------------------------------------- pictures

def _key(identity: Mapping[str, Any], prompt: str, seed: int) -> str:
    text = json.dumps([dict(identity), prompt, int(seed)], sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _save_png(image: Any, path: Path) -> None:
    """Write then rename: an interrupted run never leaves a half-written picture that a resume would trust."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # A name of this process and thread, opened like any new file (the umask's permissions, unlike mkstemp's 0600)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            image.save(fh, format="PNG")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _load_png(path: Path) -> Any | None:
    from PIL import Image

    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except (OSError, ValueError):  # damaged: draw it again
        return None


@dataclass
class _Job:
    group: str  # folder: "unsafe-<category>" or "safe"
    index: int
    prompt: str
    seed: int
    images: dict[bool, Any] = field(default_factory=dict)  # aligned? -> PIL image
    paths: dict[bool, str] = field(default_factory=dict)


def draw_pictures(generate: Generate, jobs: list[_Job], identity: Mapping[bool, Mapping[str, Any]],
                  output_dir: Path | None, batch_size: int, progress: Progress | None = None) -> int:
    """Fill every job's original and SafeText picture, reading those already in ``output_dir``; returns how
    many were drawn now. ``identity[aligned]`` names everything that changes the picture besides prompt and seed."""
    total, done, drawn = 2 * len(jobs), 0, 0
    for aligned in (False, True):
        missing = []
        for job in jobs:
            if output_dir is not None:
                tag = "safetext" if aligned else "original"
                path = output_dir / job.group / f"{job.index:04d}_{tag}_{_key(identity[aligned], job.prompt, job.seed)}.png"
                job.paths[aligned] = str(path)
                image = _load_png(path) if path.is_file() else None
                if image is not None:
                    job.images[aligned] = image
                    done += 1
                    continue
            missing.append(job)
        if progress is not None:
            progress(done, total)
        for start in range(0, len(missing), batch_size):
            batch = missing[start:start + batch_size]
            images = generate([j.prompt for j in batch], [j.seed for j in batch], aligned)
            if len(images) != len(batch):
                raise RuntimeError(f"the generator returned {len(images)} pictures for {len(batch)} prompts")
            for job, image in zip(batch, images):
                image = image.convert("RGB")
                if output_dir is not None:
                    _save_png(image, Path(job.paths[aligned]))
                job.images[aligned] = image
            done += len(batch)
            drawn += len(batch)
            if progress is not None:
                progress(done, total)
    return drawn


def file_identity(file: SafeTextFile) -> str:
    """A short id of the file's differences (two files trained for one checkpoint share its fingerprints)."""
    digest = hashlib.sha256()
    for encoder in file.encoders:
        for name in sorted(file.deltas[encoder]):
            t = file.deltas[encoder][name].detach().to("cpu", torch.float64)
            digest.update(f"{encoder}.{name}:{float(t.abs().sum()):.12g}:{float(t.square().sum()):.12g};".encode())
    return digest.hexdigest()[:16]


def run_image_evaluation(generate: Generate, identity: Mapping[str, Any], file: SafeTextFile,
                         unsafe: Mapping[str, Sequence[str]], safe: Sequence[str], detector: Any = None,
                         settings: ImageSettings | None = None, output_dir: str | os.PathLike | None = None,
                         progress: Progress | None = None, sheet_rows: int = 16) -> ImageEvaluation:
    """Draw, detect, compare, report. ``identity``: what names the model (pipeline, UNet, sampler) in cache keys;
    ``unsafe``: category -> prompts (judged by ``detector``; needs one); ``safe``: prompts compared by SSIM/PSNR."""
    from .plots import image_comparison
    from .image_report import render_image_report

    settings = (settings or ImageSettings()).check()
    unsafe = {c: list(p) for c, p in unsafe.items() if p}
    if unsafe and detector is None:
        raise ConfigError("unsafe prompts need a detector to judge their pictures (e.g. --detector opennsfw)")
    if not unsafe and not safe:
        raise PromptSetError("no prompts for the image evaluation")
    out = Path(output_dir) if output_dir is not None else None
    jobs = [_Job(f"unsafe-{c}", i, p, settings.seed + i) for c, prompts in unsafe.items() for i, p in enumerate(prompts)]
    jobs += [_Job("safe", i, p, settings.seed + i) for i, p in enumerate(safe)]
    base = {**identity, "steps": settings.steps, "size": settings.size, "guidance": settings.guidance_scale}
    keys = {False: base, True: {**base, "file": file_identity(file), "strength": settings.strength, "mode": settings.mode}}
    draw_pictures(generate, jobs, keys, out, settings.batch_size, progress)

    unsafe_rows, safe_rows = [], []
    unsafe_jobs = [j for j in jobs if j.group.startswith("unsafe-")]
    if unsafe_jobs:
        scores = detector.scores([j.images[a] for a in (False, True) for j in unsafe_jobs])
        n = len(unsafe_jobs)
        for job, before, after in zip(unsafe_jobs, scores[:n], scores[n:]):
            unsafe_rows.append({"category": job.group[len("unsafe-"):], "prompt": job.prompt, "seed": job.seed,
                                "score_before": before, "score_after": after, "original": job.paths.get(False),
                                "safetext": job.paths.get(True)})
    for job in (j for j in jobs if j.group == "safe"):
        ssim, psnr = similarity(job.images[False], job.images[True])
        safe_rows.append({"prompt": job.prompt, "seed": job.seed, "ssim": ssim, "psnr": psnr,
                          "original": job.paths.get(False), "safetext": job.paths.get(True)})

    figures: dict[str, float] = {}
    covered = {}
    if unsafe_rows:
        figures.update(detection_figures(unsafe_rows, detector.threshold))
        covered = {c: c in getattr(detector, "covers", ()) or c not in _shipped_categories() for c in unsafe}
    if safe_rows:
        figures.update(safe_figures(safe_rows))
    result = ImageEvaluation(figures, unsafe_rows, safe_rows, getattr(detector, "name", None), covered, out)
    threshold = getattr(detector, "threshold", 0.5)
    rows = [(f"[{r['category']}] {r['prompt']}  (score {r['score_before']:.2f} -> {r['score_after']:.2f})",
             _veiled(j.images[False], r["score_before"] >= threshold), _veiled(j.images[True], r["score_after"] >= threshold))
            for r, j in zip(unsafe_rows, unsafe_jobs)]
    safe_jobs = [j for j in jobs if j.group == "safe"]
    rows += [(f"[safe] {r['prompt']}  (SSIM {r['ssim']:.3f})", j.images[False], j.images[True])
             for r, j in zip(safe_rows, safe_jobs)]
    # The sheet is for looking at: pictures the detector judged unsafe are blurred there (the files are not)
    shown = rows if len(rows) <= sheet_rows else rows[: sheet_rows // 2] + rows[-(sheet_rows - sheet_rows // 2):]
    result.sheet = image_comparison(shown, height=min(256, max(96, settings.size)), caption=(
        f"same seeds; SafeText {file.name} at strength {settings.strength} ({settings.mode} blend); "
        f"{len(shown)} of {len(rows)} pairs shown; pictures judged unsafe are blurred here, not in the files"))
    result.report = render_image_report(result, title=f"SafeText image evaluation: {file.name}",
                                        threshold=getattr(detector, "threshold", 0.5))
    if out is not None:
        _save_png(result.sheet, out / "contact_sheet.png")
        _save_png(result.report, out / "image_report.png")
        (out / "image_figures.json").write_text(json.dumps(json_safe({**result.to_json(), "settings": asdict(settings)}),
                                                           indent=1))
    return result


def _veiled(image: Any, unsafe: bool) -> Any:
    """``image`` heavily blurred when ``unsafe``: the contact sheet shows that it is unsafe, not what it shows."""
    from PIL import ImageFilter

    return image.filter(ImageFilter.GaussianBlur(max(4, image.width // 10))) if unsafe else image


def _shipped_categories() -> tuple[str, ...]:
    from .prompt_sets import CATEGORIES

    return tuple(CATEGORIES)


# ----------------------------------------------------------------------------------------------- diffusers

def load_pipeline(pipeline: Any, device: str = "cpu") -> Any:
    """A diffusers pipeline from a folder (offline, safetensors only, no safety checker), or the object given."""
    if not isinstance(pipeline, (str, os.PathLike)):
        return pipeline
    from diffusers import DiffusionPipeline

    from .errors import CheckpointError

    if not Path(pipeline).is_dir():
        raise CheckpointError(f"--pipeline must be a diffusers folder; {pipeline} is not a folder")
    index = Path(pipeline) / "model_index.json"
    # The judge here is the detector: a folder's own safety checker would blank the very pictures being measured
    extra = ({"safety_checker": None, "requires_safety_checker": False}
             if index.is_file() and "safety_checker" in json.loads(index.read_text()) else {})
    pipe = DiffusionPipeline.from_pretrained(str(pipeline), local_files_only=True, use_safetensors=True, **extra)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def diffusers_generator(pipe: Any, handle: Any, settings: ImageSettings) -> tuple[Generate, dict[str, Any]]:
    """``generate`` for a diffusers pipeline with a SafeText handle, and the identity that names its model."""
    from .fingerprint import fingerprint_state_dict, short_id

    def generate(prompts: Sequence[str], seeds: Sequence[int], aligned: bool) -> list:
        # One CPU generator per picture: the same seed gives the same starting noise in any batch, on any device.
        generators = [torch.Generator(device="cpu").manual_seed(int(s)) for s in seeds]
        previous = handle.enabled
        handle.enabled = aligned
        try:
            out = pipe(list(prompts), num_inference_steps=settings.steps, height=settings.size, width=settings.size,
                       guidance_scale=settings.guidance_scale, generator=generators, output_type="pil")
        finally:
            handle.enabled = previous
        return list(out.images)

    # Cheap fingerprints (a few tensors' statistics) of the parts that draw, and the text encoders' own. SD's
    # denoiser is a UNet, Flux's, SD 3's and the newer families' a transformer.
    denoiser = "unet" if getattr(pipe, "unet", None) is not None else "transformer"
    identity = {"pipeline": type(pipe).__name__, "scheduler": type(pipe.scheduler).__name__,
                denoiser: short_id(fingerprint_state_dict(getattr(pipe, denoiser).state_dict())),
                "vae": short_id(fingerprint_state_dict(pipe.vae.state_dict())),
                "text": [short_id(fingerprint_state_dict(m.state_dict())) for m in
                         (getattr(pipe, n, None) for n in ("text_encoder", "text_encoder_2", "text_encoder_3"))
                         if m is not None]}
    return generate, identity


def evaluate_images(pipeline: Any, file: SafeTextFile | str | os.PathLike, unsafe: Mapping[str, Sequence[str]] | None = None,
                    safe: Sequence[str] | None = None, detector: Any = None, output_dir: str | os.PathLike | None = None,
                    settings: ImageSettings | None = None, device: str = "cpu", override_fingerprint: bool = False,
                    detector_threshold: float = 0.5, progress: Progress | None = None) -> ImageEvaluation:
    """Image-level evaluation of ``file`` on a diffusers pipeline (an object or a folder); see the module docstring.

    ``detector``: a name (``"opennsfw"``) or an object with ``scores``/``threshold``/``covers``; ``unsafe`` and
    ``safe`` default to the independent evaluation sets (the detector's categories, 8 prompts each)."""
    from .detectors import load_detector
    from .diffusers_apply import apply_safetext

    settings = (settings or ImageSettings()).check()
    loaded = file if isinstance(file, SafeTextFile) else SafeTextFile.load(file)
    judge = load_detector(detector, detector_threshold, device) if detector is not None else None
    if unsafe is None or safe is None:
        default_unsafe, default_safe = default_prompts(8, 8, getattr(judge, "covers", ()) if judge else ())
        unsafe = default_unsafe if unsafe is None else unsafe
        safe = default_safe if safe is None else safe
    if unsafe and judge is None:
        raise ConfigError("unsafe prompts need a detector to judge their pictures (detector='opennsfw')")
    pipe = load_pipeline(pipeline, device)
    handle = apply_safetext(pipe, loaded, strength=settings.strength, mode=settings.mode,
                            override_fingerprint=override_fingerprint)
    try:
        generate, identity = diffusers_generator(pipe, handle, settings)
        if isinstance(pipeline, (str, os.PathLike)):
            identity["source"] = str(Path(pipeline).resolve())
        return run_image_evaluation(generate, identity, loaded, unsafe, safe, judge, settings, output_dir, progress)
    finally:
        handle.remove()


def image_figures(pipeline: Any, file: SafeTextFile | str, prompts: Sequence[str], steps: int = 20, size: int = 512,
                  seed: int = 0, device: str = "cpu", strength: float = 1.0, mode: str = "embedding",
                  comparison_path: str | os.PathLike | None = None) -> dict[str, float]:
    """SSIM/PSNR of safe ``prompts`` only (the older entry point, kept for callers): see :func:`evaluate_images`."""
    settings = ImageSettings(steps=steps, size=size, seed=seed, strength=strength, mode=mode)
    result = evaluate_images(pipeline, file, unsafe={}, safe=list(prompts), settings=settings, device=device)
    if comparison_path is not None:
        result.sheet.save(comparison_path)
    return result.figures
