"""The SafeText tab: train a file for the loaded checkpoint from the browser (the job itself is :mod:`.training`).

The Train button goes through the webui's ``wrap_gradio_gpu_call``, so training waits in the same queue as
generation; the live status line is filled by ``javascript/safetext.js`` from ``GET /safetext/v1/training``.
"""
from __future__ import annotations

import html
import math
from typing import Any

import gradio as gr
from modules import shared

import safetext_core as core
from safetext_core.errors import SafeTextError

from .args import TITLE
from .training import train

INTRO = ("<p>Train a SafeText file for the <b>loaded checkpoint</b>: its text encoder is aligned so unsafe prompts lose "
         "their meaning while safe prompts keep theirs. Training is queued with generation; the webui's Interrupt "
         "stops it without writing a file.</p>")


def figures_html(figures: dict[str, float]) -> str:
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{v:.4g}</td></tr>" for k, v in sorted(figures.items())
                   if isinstance(v, (int, float)) and math.isfinite(v))
    return f"<table class='safetext-figures'><tr><th>held-out figure</th><th>value</th></tr>{rows}</table>"


def ui_train(categories: Any, unsafe: Any, safe: Any, replace: Any, steps: Any, learning_rate: Any, lam: Any,
             batch_size: Any, name: Any, rank: Any = 0, lora_alpha: Any = 0.0, lora_learning_rate: Any = None,
             lora_targets: Any = "", lr_schedule: Any = None, lowrank_method: Any = None) -> tuple[Any, str, str]:
    """The Train button: (report image, figures table, status line)."""
    try:
        result = train(categories, unsafe, safe, replace, steps, learning_rate, lam, batch_size, name, rank=rank,
                       lora_alpha=lora_alpha, lora_learning_rate=lora_learning_rate, lora_targets=lora_targets,
                       lr_schedule=lr_schedule, lowrank_method=lowrank_method)
    except core.AlignmentCancelled:
        return None, "", "<p>Interrupted: no file was written.</p>"
    except SafeTextError as error:
        return None, "", f"<p class='error'>SafeText: {html.escape(str(error))}</p>"
    status = (f"<p>Wrote <b>{html.escape(result['file'])}</b> (fingerprint {html.escape(result['fingerprint'])}, "
              f"{result['steps_run']} steps). Refresh the SafeText file list to use it.</p>" + lora_hint(result))
    return result["report"], figures_html(result["figures"]), status


def lora_hint(result: dict[str, Any]) -> str:
    """For a low-rank file: its size, and that a copy in the webui's Lora folder works as ``<lora:NAME:1>`` too."""
    if not result.get("rank"):
        return ""
    stem = result["file"].rsplit(".", 1)[0]
    folder = getattr(getattr(shared, "cmd_opts", None), "lora_dir", None) or "models/Lora"
    return (f"<p>A rank-{int(result['rank'])} LoRA ({result.get('bytes', 0) / 2**20:.1f} MiB): the SafeText panel "
            f"applies it, and a copy in {html.escape(str(folder))} also works as "
            f"<code>&lt;lora:{html.escape(stem)}:1&gt;</code> with the webui's own Lora (docs/lowrank.md).</p>")


def on_ui_tabs() -> list[tuple[Any, str, str]]:
    """The webui's ``ui_tabs`` callback: the SafeText tab."""
    try:
        from modules.call_queue import wrap_gradio_gpu_call
    except ImportError:
        return []
    defaults = core.AlignConfig()
    with gr.Blocks(analytics_enabled=False) as tab:
        with gr.Row():
            with gr.Column():
                gr.HTML(INTRO)
                categories = gr.CheckboxGroup(choices=list(core.CATEGORIES), value=list(core.CATEGORIES),
                                              label="Unsafe categories (shipped prompt sets)",
                                              elem_id="safetext_train_categories")
                unsafe = gr.Textbox(lines=4, label="Extra unsafe prompts (one per line)", elem_id="safetext_train_unsafe")
                safe = gr.Textbox(lines=4, label="Extra safe prompts (one per line)", elem_id="safetext_train_safe")
                replace = gr.Checkbox(label="Use only my prompts (replace the shipped sets)", value=False,
                                      elem_id="safetext_train_replace")
                with gr.Row():
                    steps = gr.Number(value=defaults.steps, precision=0, label="Steps", elem_id="safetext_train_steps")
                    learning_rate = gr.Number(value=defaults.learning_rate, label="Learning rate",
                                              elem_id="safetext_train_lr")
                    lam = gr.Number(value=defaults.lam, label="Lambda (effectiveness weight)",
                                    elem_id="safetext_train_lambda")
                    batch_size = gr.Number(value=defaults.batch_size, precision=0, label="Batch size",
                                           elem_id="safetext_train_batch")
                    # cosine suits full-length runs; a run of a few dozen steps keeps more with a constant rate
                    lr_schedule = gr.Dropdown(choices=["cosine", "constant"], value=defaults.lr_schedule,
                                              label="Learning-rate schedule (constant for short runs)",
                                              elem_id="safetext_train_lr_schedule")
                with gr.Row():  # low-rank (LoRA) training: rank 0 fine-tunes the full weights
                    rank = gr.Number(value=defaults.rank, precision=0, label="LoRA rank (0: full weights)",
                                     elem_id="safetext_train_rank")
                    lora_alpha = gr.Number(value=defaults.lora_alpha, label="LoRA alpha (adapters; 0: = rank)",
                                           elem_id="safetext_train_lora_alpha")
                    lora_learning_rate = gr.Number(value=defaults.lora_learning_rate,
                                                   label="LoRA learning rate (adapters: T5 / LLM encoders)",
                                                   elem_id="safetext_train_lora_lr")
                with gr.Row():
                    lora_targets = gr.Textbox(label="LoRA target layers (regular expression; empty: every block's "
                                                    "linear layers)", elem_id="safetext_train_lora_targets")
                    lowrank_method = gr.Dropdown(choices=["auto", "compress", "adapters"], value=defaults.lowrank_method,
                                                 label="LoRA made by (auto: compress for SD 1.x / 2.x / SDXL, "
                                                       "adapters for T5 / LLM encoders)",
                                                 elem_id="safetext_train_lowrank_method")
                name = gr.Textbox(label="Output file name (empty: <checkpoint>-safetext.safetensors)",
                                  elem_id="safetext_train_name")
                with gr.Row():
                    start = gr.Button("Train", variant="primary", elem_id="safetext_train_button")
                    stop = gr.Button("Interrupt", elem_id="safetext_train_interrupt")
            with gr.Column():
                gr.HTML("<div id='safetext_training_live'></div>")
                report = gr.Image(label="Report", type="pil", interactive=False, elem_id="safetext_train_report")
                figures = gr.HTML(elem_id="safetext_train_figures")
                status = gr.HTML(elem_id="safetext_train_status")
        start.click(fn=wrap_gradio_gpu_call(ui_train, extra_outputs=[None, ""]),
                    inputs=[categories, unsafe, safe, replace, steps, learning_rate, lam, batch_size, name, rank,
                            lora_alpha, lora_learning_rate, lora_targets, lr_schedule, lowrank_method],
                    outputs=[report, figures, status])
        stop.click(fn=lambda: shared.state.interrupt(), inputs=[], outputs=[])
    return [(tab, TITLE, "safetext")]
