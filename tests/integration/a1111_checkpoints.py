"""Test fixtures for driving a real AUTOMATIC1111 / Forge webui offline.

Two things a webui needs that no hub can give us on a machine without internet:

* ``build_hf_home(folder)`` — an HF cache that holds ``openai/clip-vit-large-patch14``'s tokenizer files
  and config (no weights; the webui reads the text encoder's weights from the checkpoint). Use it with
  ``HF_HOME=<folder>`` and ``HF_HUB_OFFLINE=1``.
* ``build_sd15_checkpoint(...)`` — a single-file SD 1.5 ``.safetensors`` with the full SD 1.5 shapes (the
  webui builds the model from ``configs/v1-inference.yaml``) and random weights, biases included (all-zero
  biases make the webui's emphasis normalisation divide by zero). Stored in fp16 (~2 GB).

The checkpoint is built by running this file with the webui's own Python (it needs ``ldm`` from the
webui's ``repositories/`` to learn the exact key set), so the project venv never imports webui code::

    $A1111_PYTHON tests/integration/a1111_checkpoints.py --webui $A1111_PATH --hf-home DIR --out FILE

Nothing here writes into the repository: callers pass temporary folders.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

CLIP_L_REPO = "openai/clip-vit-large-patch14"
# Any 40-hex string works as a snapshot id; this one is fixed so repeated builds reuse the folder.
_SNAPSHOT = "0" * 32 + "5afe7e47"
CHECKPOINT_VERSION = 1  # bump when the builder changes what it writes

CLIP_L_TEXT_CONFIG = {
    "vocab_size": 49408,
    "hidden_size": 768,
    "intermediate_size": 3072,
    "projection_dim": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-05,
    "initializer_range": 0.02,
    "initializer_factor": 1.0,
    "attention_dropout": 0.0,
    "dropout": 0.0,
    "bos_token_id": 0,
    "eos_token_id": 2,
    "pad_token_id": 1,
    "model_type": "clip_text_model",
}

CLIP_L_VISION_CONFIG = {
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "projection_dim": 768,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "num_channels": 3,
    "image_size": 224,
    "patch_size": 14,
    "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-05,
    "model_type": "clip_vision_model",
}


def _clip_l_config() -> dict:
    return {
        "_name_or_path": CLIP_L_REPO,
        "architectures": ["CLIPModel"],
        "model_type": "clip",
        "projection_dim": 768,
        "logit_scale_init_value": 2.6592,
        "initializer_factor": 1.0,
        "text_config": dict(CLIP_L_TEXT_CONFIG),
        "vision_config": dict(CLIP_L_VISION_CONFIG),
        "torch_dtype": "float32",
    }


def build_hf_home(folder: str | os.PathLike) -> Path:
    """Write an offline HF cache with CLIP-L's tokenizer and config; return ``folder``.

    Layout: ``hub/models--openai--clip-vit-large-patch14/{refs/main, snapshots/<sha>/...}``.
    """
    root = Path(folder)
    repo = root / "hub" / ("models--" + CLIP_L_REPO.replace("/", "--"))
    snapshot = repo / "snapshots" / _SNAPSHOT
    if (snapshot / "config.json").is_file() and (snapshot / "merges.txt").is_file():
        return root
    snapshot.mkdir(parents=True, exist_ok=True)
    try:
        from safetext_core.tokenizer import write_clip_tokenizer_files
    except ImportError:  # run from the webui's Python: put the repository root on the path
        sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
        from safetext_core.tokenizer import write_clip_tokenizer_files
    write_clip_tokenizer_files(snapshot, pad_token="<|endoftext|>")
    (snapshot / "config.json").write_text(json.dumps(_clip_l_config(), indent=2), encoding="utf-8")
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(_SNAPSHOT, encoding="utf-8")
    return root


def offline_env(hf_home: str | os.PathLike, base: dict | None = None) -> dict:
    env = dict(os.environ if base is None else base)
    env.update({
        "HF_HOME": str(hf_home),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "DO_NOT_TRACK": "1",
    })
    env.pop("HUGGINGFACE_HUB_CACHE", None)
    env.pop("TRANSFORMERS_CACHE", None)
    return env


def default_cache_dir() -> Path:
    import tempfile

    return Path(os.environ.get("SAFETEXT_A1111_CACHE", Path(tempfile.gettempdir()) / "safetext-a1111-fixtures"))


def build_sd15_checkpoint(webui: str | os.PathLike, python: str, out_dir: str | os.PathLike | None = None,
                          seed: int = 0, timeout: float = 1800) -> Path:
    """Build (or reuse) the random SD 1.5 checkpoint for ``seed``; return its path.

    Runs this file with the webui's ``python``. The file is reused when it already exists: it depends only
    on ``seed`` and ``CHECKPOINT_VERSION``.
    """
    out_dir = Path(out_dir) if out_dir else default_cache_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"safetext-test-sd15-v{CHECKPOINT_VERSION}-seed{seed}.safetensors"
    if target.is_file() and target.stat().st_size > 1_000_000_000:
        return target
    hf_home = build_hf_home(out_dir / "hf_home")
    partial = target.with_suffix(".partial")
    cmd = [python, str(Path(__file__).resolve()), "--webui", str(webui), "--hf-home", str(hf_home),
           "--out", str(partial), "--seed", str(seed)]
    subprocess.run(cmd, check=True, env=offline_env(hf_home), timeout=timeout)
    os.replace(partial, target)
    return target


# --------------------------------------------------------------------------------------------------------
# The part below runs inside the webui's Python.


def _no_init():
    """Make torch's initialisers no-ops: every parameter is overwritten afterwards anyway."""
    import torch

    def keep(tensor, *args, **kwargs):
        return tensor

    names = ["uniform_", "normal_", "constant_", "ones_", "zeros_", "xavier_uniform_", "xavier_normal_",
             "kaiming_uniform_", "kaiming_normal_", "trunc_normal_", "orthogonal_"]
    for name in names:
        if hasattr(torch.nn.init, name):
            setattr(torch.nn.init, name, keep)


def _instantiate_ldm(webui: Path):
    sys.path[:0] = [str(webui), str(webui / "repositories" / "stable-diffusion-stability-ai")]
    from omegaconf import OmegaConf
    import transformers

    # FrozenCLIPEmbedder calls CLIPTextModel.from_pretrained(<hub id>): build from the config only.
    import ldm.modules.encoders.modules as encoders

    def from_config_only(name, *args, **kwargs):
        return transformers.CLIPTextModel(transformers.CLIPTextConfig.from_pretrained(name))

    encoders.CLIPTextModel.from_pretrained = staticmethod(from_config_only)
    from ldm.util import instantiate_from_config

    config = OmegaConf.load(str(webui / "configs" / "v1-inference.yaml"))
    _no_init()
    return instantiate_from_config(config.model)


def _random_state_dict(model, seed: int):
    import torch

    gen = torch.Generator().manual_seed(seed)
    params = dict(model.named_parameters())
    out = {}
    for name, tensor in model.state_dict().items():
        if name not in params:  # buffers: the noise schedule, computed by the model, kept in fp32
            out[name] = tensor.detach().clone().contiguous()
            continue
        shape = tuple(tensor.shape)
        if name.endswith("token_embedding.weight"):
            value = torch.randn(shape, generator=gen) * 0.02
        elif name.endswith("position_embedding.weight"):
            value = torch.randn(shape, generator=gen) * 0.01
        elif len(shape) >= 2:
            fan_in = 1
            for n in shape[1:]:
                fan_in *= n
            value = torch.randn(shape, generator=gen) * (1.0 / fan_in) ** 0.5
        elif name.endswith("weight"):  # norm scales
            value = 1.0 + 0.02 * torch.randn(shape, generator=gen)
        else:  # biases: drawn, never all zero
            value = 0.02 * torch.randn(shape, generator=gen)
        out[name] = value.to(torch.float16).contiguous()
    return out


def _build(webui: Path, out: Path, seed: int) -> None:
    import torch
    from safetensors.torch import save_file

    torch.set_grad_enabled(False)
    model = _instantiate_ldm(webui)
    state = _random_state_dict(model, seed)
    del model
    digest = hashlib.sha256(json.dumps(sorted((k, list(v.shape)) for k, v in state.items())).encode()).hexdigest()
    save_file(state, str(out), metadata={"safetext_test_checkpoint": "sd15-random", "seed": str(seed),
                                         "keys_sha256": digest})
    print(f"wrote {out} ({len(state)} tensors, {out.stat().st_size / 2**30:.2f} GiB)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--webui", required=True, type=Path)
    parser.add_argument("--hf-home", type=Path, help="build an offline HF cache here first (and use it)")
    parser.add_argument("--out", type=Path, help="checkpoint to write")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.hf_home:
        build_hf_home(args.hf_home)
        os.environ.update(offline_env(args.hf_home))
    if args.out:
        _build(args.webui.resolve(), args.out, args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
