"""Shared pieces of the benchmark suite: full-size models with random weights, timing, prompts, rows.

Every model is built from its published architecture (SD 1.5's CLIP-L text encoder, UNet and VAE)
with random weights, so nothing is downloaded and the costs are those of the real networks. With
``quick=True`` the same code paths run on tiny versions of the same architectures (smoke test only:
the figures then mean nothing).
"""
from __future__ import annotations

import os
import platform
import re
import statistics
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"
SCRATCH_DIR = RESULTS_DIR / "tmp"  # git-ignored; temporary files of the file-size benchmark

GIB = 1024 ** 3
MIB = 1024 ** 2


# --------------------------------------------------------------------------------------- options

@dataclass
class Options:
    """Command-line choices, passed to every benchmark (defaults = the full-size suite)."""

    device: str = "cpu"
    quick: bool = False
    warmup: int = 2            # timed-loop warm-up iterations (not counted)
    repeats: int = 5           # timed iterations whose median is reported
    gen_size: int = 512        # generation resolution (pixels)
    gen_steps: int = 20        # denoising steps per generation
    gen_rounds: int = 5        # interleaved rounds (a, b, c) of the generation benchmark
    gen_dtype: str = "auto"    # auto: float16 on CUDA, float32 on CPU
    real_steps: int = 30       # alignment steps for the "real deltas" of the file benchmark
    load_repeats: int = 5      # file loads per format
    ranks: tuple[int, ...] = (16, 64, 128)
    esd_methods: tuple[str, ...] = ("noxattn",)
    memory_batches: tuple[int, ...] = ()  # extra alignment batch sizes for the memory benchmark
    seed: int = 0

    @property
    def torch_device(self) -> torch.device:
        return torch.device(self.device)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------------------- results

@dataclass
class Row:
    """One line of the results table: a ratio of two quantities measured side by side in one run."""

    benchmark: str
    compared: str                    # "A vs B", in words
    measured: str                    # the measured values, human-readable
    ratio: float | None              # A / B (None: informative row without a ratio)
    target: str                      # e.g. "<= 0.15"; "-" when the issue sets none
    passed: bool | None              # None: no target
    conditions: str = ""             # sizes, precision, repeats: what the reader needs to judge the figure
    verdict: str = ""                # PASS, FAIL, "PASS (within noise)", "-"

    def __post_init__(self) -> None:
        if not self.verdict:
            self.verdict = "-" if self.passed is None else ("PASS" if self.passed else "FAIL")


@dataclass
class BenchResult:
    """What one benchmark returns: table rows plus the raw measurements for the JSON file."""

    name: str
    rows: list[Row]
    raw: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


# --------------------------------------------------------------------------------------- timing

def synchronize(device: torch.device | str) -> None:
    """Wait for queued GPU work, so that perf_counter brackets the work itself."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def time_call(fn: Callable[[], Any], device: torch.device | str, warmup: int, repeats: int) -> list[float]:
    """Seconds per call of ``fn`` for ``repeats`` calls after ``warmup`` uncounted ones."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return times


def depth_fit(points: Iterable[tuple[int, float]], depth: int) -> dict[str, float]:
    """A figure measured at two or more depths as ``fixed + per_block x depth`` (the line through the shallowest and
    deepest points: every block adds the same), and its value at ``depth`` (``at_<depth>``)."""
    (d0, m0), *_, (d1, m1) = sorted(points)
    per_block = (m1 - m0) / (d1 - d0)
    base = m0 - per_block * d0
    return {"per_block": per_block, "fixed": base, f"at_{depth}": base + depth * per_block}


def median(values: Iterable[float]) -> float:
    return float(statistics.median(list(values)))


def fmt_seconds(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def fmt_bytes(count: float) -> str:
    if count >= GIB:
        return f"{count / GIB:.2f} GiB"
    if count >= MIB:
        return f"{count / MIB:.1f} MiB"
    return f"{count / 1024:.1f} KiB"


# --------------------------------------------------------------------------------------- environment

def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: str) -> str:
    if torch.device(device).type == "cuda":
        return torch.cuda.get_device_name(0)
    return f"{cpu_name()} ({torch.get_num_threads()} torch threads, {os.cpu_count()} CPUs)"


def device_tag(device: str, quick: bool) -> str:
    """File stem of the results: e.g. ``cuda-nvidia-h100-80gb-hbm3`` or ``cpu-2cpus`` (``-quick`` for smoke runs)."""
    if torch.device(device).type == "cuda":
        tag = "cuda-" + re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name(0).lower()).strip("-")
    else:
        tag = f"cpu-{os.cpu_count()}cpus"
    return tag + ("-quick" if quick else "")


def environment(device: str) -> dict[str, str]:
    import diffusers
    import safetensors
    import transformers

    env = {"device": device_name(device), "torch": torch.__version__, "transformers": transformers.__version__,
           "diffusers": diffusers.__version__, "safetensors": safetensors.__version__,
           "python": platform.python_version(), "platform": platform.platform()}
    if torch.device(device).type == "cuda":
        env["cuda"] = str(torch.version.cuda)
        env["tf32_matmul"] = str(torch.backends.cuda.matmul.allow_tf32)
        env["tf32_cudnn"] = str(torch.backends.cudnn.allow_tf32)
    return env


# --------------------------------------------------------------------------------------- models

def clip_l_config(quick: bool = False) -> Any:
    """SD 1.5's text encoder, OpenAI CLIP ViT-L/14 text tower (quick: 64 wide, 2 layers, same vocabulary)."""
    from transformers import CLIPTextConfig

    if quick:
        return CLIPTextConfig(vocab_size=49408, hidden_size=64, intermediate_size=256, num_hidden_layers=2,
                              num_attention_heads=2, max_position_embeddings=77, hidden_act="quick_gelu",
                              projection_dim=64, bos_token_id=0, eos_token_id=2, pad_token_id=1)
    return CLIPTextConfig(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                          num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu",
                          projection_dim=768, layer_norm_eps=1e-5, bos_token_id=0, eos_token_id=2, pad_token_id=1)


def randomise_(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Draw every weight and bias (all-zero biases can make outputs degenerate)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in module.named_parameters():
            if "layer_norm" in name and name.endswith("weight"):
                param.copy_(1.0 + 0.05 * torch.randn(param.shape, generator=generator))
            else:
                param.copy_(0.02 * torch.randn(param.shape, generator=generator))
    return module


def clip_l_canonical_state(quick: bool = False, seed: int = 0) -> dict[str, torch.Tensor]:
    """A random CLIP-L state dict in the core's canonical naming (``text_model.*``)."""
    from safetext_core.models import ClipTextEncoder

    model = randomise_(ClipTextEncoder(clip_l_config(quick), with_projection=False), seed)
    return {k: v for k, v in model.state_dict().items() if not k.endswith("position_ids")}


def clip_l_encoder_set(quick: bool = False, seed: int = 0) -> Any:
    """An ``EncoderSet`` of family sd1 (CLIP-L, random weights, real CLIP tokenizer) as the core builds it."""
    from safetext_core import encoders_from_state_dicts

    state = clip_l_canonical_state(quick, seed)
    encoders = encoders_from_state_dicts("sd1", {"clip_l": state}, source="random CLIP-L")
    del state
    return encoders


def unet_config(quick: bool = False) -> dict[str, Any]:
    """SD 1.5's UNet (860M parameters) as diffusers describes it; quick: a two-block toy."""
    if quick:
        return dict(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
                    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=64,
                    attention_head_dim=4, norm_num_groups=16)
    return dict(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
                block_out_channels=(320, 640, 1280, 1280),
                down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
                cross_attention_dim=768, attention_head_dim=8, norm_num_groups=32, norm_eps=1e-5,
                act_fn="silu", center_input_sample=False, downsample_padding=1, flip_sin_to_cos=True,
                freq_shift=0, mid_block_scale_factor=1)


def vae_config(quick: bool = False) -> dict[str, Any]:
    """SD's AutoencoderKL (83M parameters, 8x downsampling); quick: a toy with 2x downsampling."""
    if quick:
        return dict(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(16, 32),
                    down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                    norm_num_groups=16, layers_per_block=1, sample_size=32)
    return dict(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(128, 256, 512, 512),
                down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                layers_per_block=2, norm_num_groups=32, act_fn="silu", sample_size=512, scaling_factor=0.18215)


def build_unet(quick: bool = False, seed: int = 0) -> torch.nn.Module:
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel(**unet_config(quick))


def sd_scheduler_config() -> dict[str, Any]:
    """SD 1.5's PNDM noise schedule (as in its scheduler_config.json)."""
    return dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                set_alpha_to_one=False, skip_prk_steps=True, steps_offset=1)


def build_pipeline(quick: bool = False, seed: int = 0) -> Any:
    """A diffusers ``StableDiffusionPipeline`` assembled from SD 1.5 configs with random weights (float32, CPU)."""
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline
    from transformers import CLIPTextModel

    from safetext_core.models import load_canonical_state
    from safetext_core.tokenizer import load_clip_tokenizer

    text = CLIPTextModel(clip_l_config(quick))
    load_canonical_state(text, clip_l_canonical_state(quick, seed))
    unet = build_unet(quick, seed)
    torch.manual_seed(seed + 1)
    vae = AutoencoderKL(**vae_config(quick))
    scheduler = PNDMScheduler(**sd_scheduler_config())
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text.eval(), tokenizer=load_clip_tokenizer(), unet=unet.eval(),
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def parameter_count(module: torch.nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


# --------------------------------------------------------------------------------------- prompts

_UNSAFE_SUBJECTS = ("nude woman", "naked man", "bloody corpse", "gory wound", "violent street fight",
                    "man pointing a gun", "pile of illegal drugs", "self harm scars", "hateful rally",
                    "severed hand", "topless model", "burning body")
_SAFE_SUBJECTS = ("red bicycle", "golden retriever", "mountain lake", "bowl of ramen", "city skyline",
                  "old lighthouse", "field of sunflowers", "child flying a kite", "wooden sailboat",
                  "snowy forest cabin", "vintage typewriter", "steam locomotive")
_NEAR_MISS = ("breast stroke swimmer", "bloody mary cocktail", "shooting star over a lake", "naked tree in winter",
              "killer whale jumping", "drug store on a corner", "toy water gun on a lawn", "roast chicken dinner")
_STYLES = ("photo of a", "painting of a", "close-up of a", "wide shot of a", "sketch of a", "3d render of a",
           "film still of a", "watercolor of a")
_PLACES = ("at night", "in the rain", "at sunset", "in a studio", "in a park", "on a street", "indoors",
           "in high detail")


def synthetic_prompt_sets() -> Any:
    """Templated prompts (a few hundred per side) for when the shipped sets are absent.

    Their content only matters for the "real deltas" of the file benchmark; the step cost does not
    depend on it (CLIP always runs all 77 positions).
    """
    from safetext_core import PromptSets

    def expand(subjects: Iterable[str]) -> list[str]:
        return [f"{s} {x} {p}" for x in subjects for s in _STYLES for p in _PLACES]

    return PromptSets(unsafe={"synthetic": expand(_UNSAFE_SUBJECTS)}, safe=expand(_SAFE_SUBJECTS),
                      near_miss=expand(_NEAR_MISS))


def prompt_sets() -> tuple[Any, str]:
    """The shipped prompt sets when present and usable, else the synthetic ones; and which it was."""
    from safetext_core import load_prompt_sets

    try:
        sets = load_prompt_sets()
        sets.validate()
        return sets, "shipped (safetext_core/prompts/data)"
    except Exception:  # shipped data not there (yet): fall back, and say so in the results
        return synthetic_prompt_sets(), "synthetic (shipped prompt sets absent)"


# glibc hands a freed block of up to 32 MB back to its heap, not to the system, once it has seen one freed (its mmap
# threshold grows): the resident memory then counts dead tensors. A fixed threshold of 1 MB makes every tensor above
# it a mapping of its own, returned when freed, so the resident memory follows the live tensors. Set it in the
# environment of the child process that measures.
MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(2 ** 20), "MALLOC_TRIM_THRESHOLD_": str(2 ** 20)}


def resident_bytes() -> int:
    """This process's resident memory (Linux ``/proc/self/statm``)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_added(action: Callable[[], Any]) -> tuple[int, Any]:
    """The peak resident memory ``action()`` adds (sampled every 5 ms, and once more at its end, its result alive)
    above the resident memory before it, and its result."""
    before = resident_bytes()
    peak = [before]
    running = [True]

    def sample() -> None:
        while running[0]:
            peak[0] = max(peak[0], resident_bytes())
            time.sleep(0.005)

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    try:
        result = action()
        peak[0] = max(peak[0], resident_bytes())
    finally:
        running[0] = False
        watcher.join()
    return peak[0] - before, result
