"""SafeText's options in the webui's Settings: reading them, the SafeText folder and the operator lock.

The operator lock (for shared servers) makes every generation use the lock's file and strength, whatever the
UI or API asks, and by default disables training. The lock, the folder and the mismatch override are
``restrict_api`` options: ``/sdapi/v1/options`` and ``override_settings`` cannot change them.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import gradio as gr
from modules import shared

from safetext_core.errors import ConfigError
from safetext_core.weights import check_strength

from .args import DEFAULT_MODE, TITLE, Settings, parse_args

SECTION = ("safetext", TITLE)
STRENGTH_SLIDER = {"minimum": 0.0, "maximum": 1.0, "step": 0.05}


def opt(name: str, default: Any = None) -> Any:
    """The option ``name``, or ``default`` when it is unset or not registered (yet)."""
    try:
        value = getattr(shared.opts, name)
    except (AttributeError, KeyError):
        return default
    return default if value is None else value


def models_dir() -> Path:
    """The SafeText folder: Settings' choice, else ``<models>/safetext``."""
    custom = str(opt("safetext_models_dir", "") or "").strip()
    if custom:
        return Path(custom).expanduser()
    base = getattr(shared, "models_path", None) or os.path.join(getattr(shared, "data_path", "."), "models")
    return Path(base) / "safetext"


def allow_mismatch() -> bool:
    """Whether files made for another checkpoint are applied anyway."""
    return bool(opt("safetext_allow_mismatch", False))


def default_enabled() -> bool:
    return bool(opt("safetext_default_enabled", False))


def default_strength() -> Any:
    return opt("safetext_default_strength", 1.0)


def lock_settings() -> Settings | None:
    """The operator lock's settings while the lock is on (they override whatever the UI or API asks)."""
    if not bool(opt("safetext_lock", False)):
        return None
    try:
        strength = check_strength(opt("safetext_lock_strength", 1.0))
    except ConfigError:
        strength = 1.0
    return Settings(True, str(opt("safetext_lock_file", "") or ""), strength, DEFAULT_MODE, locked=True)


def training_locked() -> bool:
    """Whether the operator lock also disables training (the default while it is on)."""
    return lock_settings() is not None and bool(opt("safetext_lock_training", True))


def panel_settings(args: Any) -> Settings:
    """The job's own values, checked, with the panel's defaults (from Settings) for values left out."""
    return parse_args(args, default_enabled=default_enabled(), default_strength=default_strength())


def effective_settings(args: Any) -> Settings:
    """What a job does: the lock's settings while it is on, else the job's own values."""
    locked = lock_settings()
    return locked if locked is not None else panel_settings(args)


def add_options(lock_file_choices: Callable[[], list[str]]) -> None:
    """Register SafeText's section in Settings; ``lock_file_choices`` lists the files the lock can use."""
    info = shared.OptionInfo
    options = {
        "safetext_models_dir": info("", "SafeText folder (empty: <models>/safetext)", section=SECTION,
                                    restrict_api=True),
        "safetext_default_enabled": info(False, "SafeText on by default", section=SECTION),
        "safetext_default_strength": info(1.0, "Default SafeText strength", gr.Slider, STRENGTH_SLIDER,
                                          section=SECTION),
        "safetext_allow_mismatch": info(False, "Apply SafeText files made for another checkpoint (not recommended)",
                                        section=SECTION, restrict_api=True),
        "safetext_lock": info(False, "Operator lock: keep SafeText on with the file and strength below, whatever the "
                                     "UI or API asks", section=SECTION, restrict_api=True),
        # Only ``choices``: Gradio 3.41's Dropdown.update takes it (the Settings page passes these to update too).
        "safetext_lock_file": info("", "Operator lock: SafeText file", gr.Dropdown,
                                   lambda: {"choices": [""] + lock_file_choices()}, section=SECTION, restrict_api=True),
        "safetext_lock_strength": info(1.0, "Operator lock: strength", gr.Slider, STRENGTH_SLIDER, section=SECTION,
                                       restrict_api=True),
        "safetext_lock_training": info(True, "Operator lock: also disable training", section=SECTION,
                                       restrict_api=True),
    }
    for key, option in options.items():
        shared.opts.add_option(key, option)
