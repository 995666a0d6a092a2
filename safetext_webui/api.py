"""SafeText over HTTP: checking the panel's values in ``/sdapi/v1/txt2img|img2img``, and the ``/safetext/v1`` routes.

Script errors inside a job are only printed by the webui, so bad values are refused before the job starts:
:func:`install_request_checks` wraps ``modules.api.api.Api.init_script_args`` (which fills the always-on
scripts' arguments) and answers HTTP 422 with a ``SafeText: ...`` message. It also accepts the arguments as an
object (``{"enabled": true, "strength": 0.5}``); the webui itself takes only a list.

Forge's ``POST /sdapi/v1/options`` ignores ``restrict_api``: :func:`install_request_checks` also drops SafeText's
restricted options (the lock, the folder, the mismatch override) from it, as A1111 does.

Routes: ``GET /safetext/v1/files`` (folder and files, each with ``fits``), ``GET /safetext/v1/training`` (live
status), ``POST /safetext/v1/train`` (queued with generation; 409 when interrupted, 422 for bad values, 403
while the operator lock disables training).
"""
from __future__ import annotations

import functools
from typing import Any, Callable

from fastapi import Body
from fastapi.exceptions import HTTPException
from modules import shared

from safetext_core.errors import AlignmentCancelled, SafeTextError

from . import files, training
from .args import ARG_NAMES, TITLE, Settings
from .settings import lock_settings, models_dir, panel_settings, training_locked


def validate_request_args(raw: Any) -> Settings | None:
    """The settings a request's values (panel defaults filled in) give; None while the operator lock decides."""
    if lock_settings() is not None:
        return None  # the request's values are ignored
    settings = panel_settings(raw)
    if settings.enabled:
        files.applicable_file(settings, files.loaded_model())
    return settings


def _our_entry(alwayson: Any) -> tuple[Any, Any]:
    """(key, entry) of SafeText in a request's ``alwayson_scripts``; (None, None) when absent."""
    if isinstance(alwayson, dict):
        for key, value in alwayson.items():
            if isinstance(key, str) and key.strip().lower() == TITLE.lower():
                return key, value
    return None, None


def _our_script(script_runner: Any) -> Any:
    for script in getattr(script_runner, "alwayson_scripts", None) or []:
        if str(script.title()).lower() == TITLE.lower():
            return script
    return None


def _panel_defaults(script: Any, defaults: Any) -> list[Any]:
    """The panel's default values from the webui's default script args (None where unknown)."""
    base = [None] * len(ARG_NAMES)
    if script is not None and isinstance(defaults, (list, tuple)) and script.args_from is not None:
        base = (list(defaults[script.args_from:script.args_to]) + base)[:len(ARG_NAMES)]
    return base


def _refused(error: SafeTextError) -> HTTPException:
    return HTTPException(status_code=422, detail=f"SafeText: {error}")


def _checking(original: Callable[..., Any]) -> Callable[..., Any]:
    def init_script_args(self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        key, entry = _our_entry(getattr(request, "alwayson_scripts", None))
        if key is None:
            return original(self, request, *args, **kwargs)
        raw = entry.get("args", []) if isinstance(entry, dict) else entry
        try:
            panel_settings(raw)  # the request's own values first: types, ranges, names, count
        except SafeTextError as error:
            raise _refused(error) from None
        script = _our_script(kwargs.get("script_runner", args[3] if len(args) > 3 else None))
        if isinstance(raw, dict):
            base = _panel_defaults(script, kwargs.get("default_script_args", args[0] if args else None))
            request.alwayson_scripts[key] = {"args": [raw.get(n, base[i]) for i, n in enumerate(ARG_NAMES)]}
        elif not isinstance(entry, dict):
            request.alwayson_scripts[key] = {"args": list(raw)}
        result = original(self, request, *args, **kwargs)
        values = raw
        if script is not None and isinstance(result, (list, tuple)) and script.args_from is not None:
            values = list(result[script.args_from:script.args_to])  # with the panel's defaults filled in
        try:
            validate_request_args(values)
        except SafeTextError as error:
            raise _refused(error) from None
        return result

    init_script_args.safetext_wrapper = True
    return init_script_args


def _restricted(key: Any) -> bool:
    return str(key).startswith("safetext_") and getattr(shared.opts.data_labels.get(key), "restrict_api", False)


def _guarding(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)  # FastAPI reads the route's signature (the request body) through __wrapped__
    def set_config(self: Any, req: Any) -> Any:
        if isinstance(req, dict):
            req = {key: value for key, value in req.items() if not _restricted(key)}
        return original(self, req)

    set_config.safetext_wrapper = True
    return set_config


def install_request_checks() -> None:
    """Refuse bad SafeText values in ``/sdapi/v1/txt2img`` and ``img2img`` with HTTP 422, and keep SafeText's
    ``restrict_api`` options out of ``POST /sdapi/v1/options`` (Forge's applies them anyway); once, before the
    webui builds its ``Api``."""
    try:
        from modules.api import api as api_module
    except ImportError:  # a webui without the API module
        return
    cls = getattr(api_module, "Api", None)
    for name, wrap in (("init_script_args", _checking), ("set_config", _guarding)):
        original = getattr(cls, name, None)
        if original is not None and not getattr(original, "safetext_wrapper", False):
            setattr(cls, name, wrap(original))


def add_routes(app: Any) -> None:
    """The ``/safetext/v1`` routes."""
    def api_files() -> dict[str, Any]:
        files.load_checkpoint()  # "fits" needs the checkpoint
        return {"folder": str(models_dir()), "files": files.list_files()}

    def api_training() -> dict[str, Any]:
        return dict(training.STATUS)

    def api_train(body: dict = Body(default_factory=dict)) -> dict[str, Any]:
        from modules.call_queue import queue_lock

        unknown = sorted(set(body) - set(training.FIELDS))
        if unknown:
            raise HTTPException(status_code=422, detail=f"SafeText: unknown training fields {unknown}")
        if training_locked():
            raise HTTPException(status_code=403, detail="SafeText: training is disabled while the operator lock is on")
        with queue_lock:
            shared.state.begin(job="safetext_train")
            try:
                result = training.train(**body)
            except AlignmentCancelled:
                raise HTTPException(status_code=409, detail="SafeText: training interrupted; no file was written") \
                    from None
            except SafeTextError as error:
                raise _refused(error) from None
            finally:
                shared.state.end()
        result.pop("report", None)
        return result

    app.add_api_route("/safetext/v1/files", api_files, methods=["GET"])
    app.add_api_route("/safetext/v1/training", api_training, methods=["GET"])
    app.add_api_route("/safetext/v1/train", api_train, methods=["POST"])


def on_app_started(demo: Any, app: Any) -> None:
    """The webui's ``app_started`` callback."""
    install_request_checks()
    add_routes(app)
