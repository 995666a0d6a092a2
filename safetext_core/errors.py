"""Every error SafeText raises for its user, under one base class.

Front doors (the command line, the ComfyUI nodes, the A1111/Forge extension) catch :class:`SafeTextError`
and show its message; anything else is a bug and keeps its traceback. Each class also derives from the
built-in exception its callers used to catch (``ValueError`` or ``RuntimeError``), so older callers keep
working.
"""
from __future__ import annotations


class SafeTextError(Exception):
    """A problem with what the user gave or asked for, with a message meant for them."""


class SafeTextFileError(SafeTextError, ValueError):
    """A SafeText file that cannot be used: unreadable, damaged, hostile, or made for something else."""


class FingerprintMismatch(SafeTextFileError):
    """A SafeText file made for another checkpoint's text encoder."""


class ConfigError(SafeTextError, ValueError):
    """Settings that cannot work: a strength outside [0, 1], an unknown blend mode, no training steps..."""


class ResumeError(SafeTextError, ValueError):
    """A resume checkpoint that cannot continue this run (other settings or prompts, or damaged)."""


class OutputError(SafeTextError, OSError):
    """An output SafeText cannot write: a directory, an existing file, a read-only folder, a full disk."""


class CheckpointError(SafeTextError, ValueError):
    """A checkpoint or model folder SafeText cannot read."""


class UnsupportedModel(SafeTextError, ValueError):
    """A model (family, encoder layout, host object) SafeText does not work with."""


class PromptError(SafeTextError, ValueError):
    """A prompt the engine cannot use as given, with a message that names it."""


class PromptSetError(SafeTextError, ValueError):
    """A prompt file or prompt selection that cannot be used (missing, empty, unknown category)."""


class TokenizerUnavailable(SafeTextError, RuntimeError):
    """No CLIP vocabulary could be found on this machine."""


class SafeTextNotApplied(SafeTextError, RuntimeError):
    """The host ran the aligned pass without SafeText's change: generating now would be unprotected."""


class AlignmentCancelled(SafeTextError, RuntimeError):
    """Training was stopped by the user; nothing was written except, if enabled, a resume checkpoint."""

    def __init__(self, step: int, resume_path: str | None = None):
        super().__init__(f"alignment cancelled at step {step}" + (f"; resume from {resume_path}" if resume_path else ""))
        self.step = step
        self.resume_path = resume_path


class InsufficientMemory(SafeTextError, MemoryError):
    """Not enough free host memory for what is about to be allocated; nothing was changed. Raised before the
    allocation, so the user reads how much is needed instead of the operating system killing the host."""


class DetectorUnavailable(SafeTextError, RuntimeError):
    """An image detector whose optional package is not installed; the message says what to install."""
