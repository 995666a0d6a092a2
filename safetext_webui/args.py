"""The panel's arguments: one typed shape (:class:`Settings`) for the Script, the infotext and the API.

The panel hands the Script ``[enabled, file, strength, mode]`` positionally, and A1111's API passes the same
list as ``alwayson_scripts["SafeText"]["args"]`` (SafeText also takes an object with those names).
:func:`parse_args` turns either into :class:`Settings` or raises a :class:`~safetext_core.errors.SafeTextError`
that says which value is wrong. Nothing here reads the webui: the panel's defaults are passed in.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from safetext_core.errors import ConfigError
from safetext_core.hosting import check_file_name
from safetext_core.weights import BLEND_MODES, check_mode, check_strength

TITLE = "SafeText"
ARG_NAMES = ("enabled", "file", "strength", "mode")
DEFAULT_MODE = BLEND_MODES[0]  # "embedding"
_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


@dataclass(frozen=True)
class Settings:
    """What SafeText does for one job: on or off, which file, how strongly, which blend; ``locked`` by the operator."""

    enabled: bool = False
    file: str = ""
    strength: float = 1.0
    mode: str = DEFAULT_MODE
    locked: bool = False


def as_bool(value: Any, what: str) -> bool:
    """``value`` as a bool (bools, 0/1 and the usual words); :class:`ConfigError` for anything else."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise ConfigError(f"{what} must be true or false, not {value!r}")


def as_list(args: Any) -> list[Any]:
    """The four values of a list or an object of the panel's values, trailing ones left out given as None."""
    if isinstance(args, Mapping):
        unknown = sorted(set(args) - set(ARG_NAMES))
        if unknown:
            raise ConfigError(f"unknown SafeText arguments {unknown}; expected {list(ARG_NAMES)}")
        args = [args.get(name) for name in ARG_NAMES]
    if not isinstance(args, (list, tuple)):
        raise ConfigError(f"SafeText args must be a list [enabled, file, strength, mode], not {type(args).__name__}")
    if len(args) > len(ARG_NAMES):
        raise ConfigError(f"SafeText takes at most {len(ARG_NAMES)} args {list(ARG_NAMES)}, got {len(args)}")
    return list(args) + [None] * (len(ARG_NAMES) - len(args))


def parse_args(args: Sequence[Any] | Mapping[str, Any], *, default_enabled: bool = False,
               default_strength: Any = 1.0) -> Settings:
    """The panel's values (enabled, file, strength, mode), checked; a value left out takes its default."""
    enabled, name, strength, mode = as_list(args)
    if name is not None and not isinstance(name, str):
        raise ConfigError(f"file must be a file name, not {name!r}")
    if isinstance(strength, bool):
        raise ConfigError(f"strength must be a number between 0 and 1, not {strength!r}")
    on = as_bool(enabled, "enabled") if enabled is not None else bool(default_enabled)
    file = (name or "").strip()
    return Settings(enabled=on, file=check_file_name(file) if on and file else file,
                    strength=check_strength(default_strength if strength is None else strength),
                    mode=check_mode(DEFAULT_MODE if mode in (None, "") else mode))


def wants_enabled(args: Sequence[Any]) -> bool:
    """Whether values that could not be parsed asked for SafeText (an unreadable ``enabled`` counts as yes)."""
    try:
        return bool(args) and as_bool(args[0], "enabled")
    except ConfigError:
        return True
