"""The always-visible SafeText panel (a ``scripts.Script``) and the webui callbacks it brings along.

Per job: ``process_batch`` (after extra networks are activated, before ``p.setup_conds()``) resolves the
settings (operator lock first), applies the file (A1111: :mod:`.hijack`; Forge: :mod:`.forge`), gives the
job fresh conditioning caches (their key ignores SafeText's settings) and writes the infotext;
``postprocess`` and the next job's ``process`` undo it. When SafeText is on and cannot be applied, the job
fails closed (:func:`.hijack.fail_closed`) instead of generating without it.
"""
from __future__ import annotations

import sys
from typing import Any, Callable

import gradio as gr
from modules import scripts, shared

from safetext_core.errors import SafeTextError

from . import api, files, forge, hijack, infotext, settings, training_tab
from .args import DEFAULT_MODE, TITLE, Settings, wants_enabled

MODE_CHOICES = [("Embedding blend (exact at every strength)", "embedding"),
                ("Weight blend (W + s*delta; exact at 0 and 1 only)", "weight")]
_COND_CACHES = ("cached_c", "cached_uc", "cached_hr_c", "cached_hr_uc")


def clear_cond_cache(p: Any) -> None:
    """Give the job fresh conditioning caches (A1111) or clear its prompt cache (Forge); the shared cache is never
    written, so it only ever holds SafeText-free conditionings."""
    for attr in _COND_CACHES:
        if hasattr(p, attr):
            setattr(p, attr, [None, None])
    clear = getattr(p, "clear_prompt_cache", None)
    if callable(clear):
        clear()


def reset() -> None:
    """Whatever SafeText did for a job, undone."""
    hijack.deactivate()


def other_checkpoint(p: Any, sd_model: Any) -> str | None:
    """Why the job would encode prompts with a checkpoint SafeText was not applied to (a refiner, a hires
    checkpoint: the webui loads it mid-job); None when it would not."""
    if getattr(p, "refiner_checkpoint", None) not in (None, "", "None", "none"):
        return ("SafeText cannot be applied to a refiner checkpoint yet; generate without the refiner, or turn "
                "SafeText off")
    hires = getattr(p, "hr_checkpoint_info", None) if getattr(p, "enable_hr", False) else None
    loaded = getattr(getattr(sd_model, "sd_checkpoint_info", None), "filename", None)
    if hires is not None and getattr(hires, "filename", None) != loaded:
        return ("SafeText cannot be applied to a separate hires-fix checkpoint yet; use the same checkpoint for "
                "hires fix, or turn SafeText off")
    return None


def apply(p: Any, sd_model: Any, chosen: Settings) -> Settings:
    """Apply ``chosen`` to the job; returns the settings in force (Forge always blends weights)."""
    if sd_model is None:
        raise SafeTextError("no checkpoint is loaded")
    file = files.checked_file(chosen, files.loaded_fingerprints(sd_model))
    if forge.is_forge(sd_model):
        forge.activate(p, file, chosen)
    else:
        hijack.activate(sd_model, chosen, file)
    hijack.record_signals(sd_model)
    clear_cond_cache(p)
    p.extra_generation_params.update(infotext.fields(chosen, file))
    return chosen


class SafeTextScript(scripts.Script):
    sorting_priority = 20

    def title(self) -> str:
        return TITLE

    def show(self, is_img2img: bool) -> Any:
        return scripts.AlwaysVisible

    def ui(self, is_img2img: bool) -> list[Any]:
        tab = "img2img" if is_img2img else "txt2img"
        try:
            dropdown, value = files.file_dropdown_update(), files.default_file()
        except (SafeTextError, OSError):  # an unreadable folder must not break the page
            dropdown, value = {"choices": []}, ""
        with gr.Accordion(TITLE, open=False, elem_id=f"safetext_{tab}"):
            with gr.Row():
                enabled = gr.Checkbox(label="Enable SafeText", value=settings.default_enabled(),
                                      elem_id=f"safetext_enabled_{tab}")
                file = gr.Dropdown(label="SafeText file", value=value, allow_custom_value=True, **dropdown,
                                   elem_id=f"safetext_file_{tab}")
                self._refresh_button(file, tab)
            with gr.Row():
                strength = gr.Slider(minimum=0.0, maximum=1.0, step=0.05, label="SafeText strength",
                                     value=float(settings.default_strength()), elem_id=f"safetext_strength_{tab}")
                mode = gr.Radio(choices=MODE_CHOICES, value=DEFAULT_MODE, label="Blend mode",
                                info="embedding: exact at every strength; weight: W + s*delta, exact at 0 and 1 only",
                                elem_id=f"safetext_mode_{tab}")
            if settings.lock_settings() is not None:
                gr.HTML("<p class='safetext-lock'>SafeText is locked on by the server's operator; "
                        "these controls have no effect.</p>")
        controls = [enabled, file, strength, mode]
        self.infotext_fields = list(zip(controls, infotext.readers(gr.update)))
        self.paste_field_names = list(infotext.PASTE_FIELDS)
        return controls

    @staticmethod
    def _refresh_button(file: Any, tab: str) -> None:
        try:
            from modules.ui_common import create_refresh_button
        except ImportError:  # older or different webuis: the list still refreshes on restart
            return
        # The button first loads the selected checkpoint if none is in memory (Forge loads one only for a job), as
        # /safetext/v1/files does: "fits" needs it.
        create_refresh_button(file, files.load_checkpoint, files.file_dropdown_update, f"safetext_refresh_{tab}")

    def process(self, p: Any, *args: Any) -> None:
        reset()  # whatever an earlier, failed job left

    def process_batch(self, p: Any, *args: Any, **kwargs: Any) -> None:
        sd_model = getattr(p, "sd_model", None) or shared.sd_model
        reset()
        try:
            chosen = settings.effective_settings(args)
        except SafeTextError as error:
            if wants_enabled(args):  # asked for, but with values we cannot use: fail closed
                self._fail(p, sd_model, str(error))
            return
        if not chosen.enabled:
            return
        problem = other_checkpoint(p, sd_model)
        if problem is not None:
            self._fail(p, sd_model, problem)
            return
        try:
            apply(p, sd_model, chosen)
        except Exception as error:  # fail closed on anything: never generate without SafeText when it was asked for
            reset()
            self._fail(p, sd_model, str(error) if isinstance(error, SafeTextError) else f"{type(error).__name__}: {error}")

    @staticmethod
    def _fail(p: Any, sd_model: Any, message: str) -> None:
        message = f"SafeText: {message}"
        print(message, file=sys.stderr)
        clear_cond_cache(p)
        hijack.fail_closed(sd_model, message)

    def postprocess_batch(self, p: Any, *args: Any, **kwargs: Any) -> None:
        """After sampling, before the batch's images get their infotext: the moderation signal per image."""
        prompts = list(getattr(p, "prompts", None) or [])
        signals = hijack.job_signals(prompts, list(getattr(p, "negative_prompts", None) or []))
        if signals:
            infotext.add_signals(p, signals, int(kwargs.get("batch_number", 0) or 0))

    def postprocess(self, p: Any, processed: Any, *args: Any) -> None:
        reset()


def on_ui_settings() -> None:
    settings.add_options(files.file_names)


def on_model_loaded(sd_model: Any) -> None:
    """A checkpoint was (re)loaded, maybe into the same modules: forget what was known about the last one. During a
    SafeText job (another extension swapping checkpoints mid-job), the rest of the job fails closed."""
    hijack.forget_fingerprints()
    forge.forget_fingerprints()
    if hijack.is_active():
        reset()
        hijack.fail_closed(sd_model, "SafeText: the checkpoint changed during the job; SafeText was applied to the "
                                     "previous one")


CALLBACKS: list[tuple[str, Callable[..., Any]]] = [
    ("on_ui_settings", on_ui_settings),
    ("on_ui_tabs", training_tab.on_ui_tabs),
    ("on_app_started", api.on_app_started),
    ("on_infotext_pasted", infotext.on_infotext_pasted),
    ("on_model_loaded", on_model_loaded),
]


def start() -> None:
    """What must happen as the extension loads: the options now (``--nowebui`` never builds the settings page,
    which is what runs ``on_ui_settings``) and the API's request checks."""
    on_ui_settings()
    api.install_request_checks()
