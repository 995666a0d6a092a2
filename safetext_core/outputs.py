"""Writing a training run's outputs so that no crash, full disk or bad path costs the run (docs/reliability.md).

* :func:`atomic_write`: every file SafeText writes (the SafeText file, the resume checkpoint, the report PNG,
  the figures JSON) goes to a hidden ``.<name>.<pid>.<random>.partial`` next to it, is flushed to disk, then
  renamed into place. Permissions follow the umask like any other file (0644 under the usual 022), never the
  0600 of ``mkstemp``. A failure removes the partial and raises :class:`OutputError` naming the file.
* :func:`preflight`: before any training, the output is checked: not a directory, an existing file refused
  unless ``overwrite``, its folder creatable and writable (a real probe file: ``os.access`` says yes to root on
  a read-only folder), free space for the largest moment of the run, every name the run derives from it
  short enough for the file system. Partials left by earlier runs that were killed are removed.
* :func:`crash_point`: the fault suite (tests/test_crash_safety.py) kills a real run at named moments by
  setting ``SAFETEXT_CRASH_AT``; unset (always, outside that suite) it only reads the environment.
"""
from __future__ import annotations

import errno
import os
import re
import secrets
import shutil
import signal
from pathlib import Path
from typing import Callable, Iterable, Sequence

from .errors import OutputError

CRASH_ENV = "SAFETEXT_CRASH_AT"
PARTIAL_SUFFIX = ".partial"
# What a partial name adds to the target's: "." + "." + pid (up to 7 digits) + "." + 16 hex + ".partial".
PARTIAL_EXTRA = 1 + 1 + 7 + 1 + 16 + len(PARTIAL_SUFFIX)
SPARE_BYTES = 16 << 20  # report PNG, figures JSON, headers: a few MB at most; keep a margin on top
# The part between ".<target>." and ".partial": ours (pid.random), older resume checkpoints' (pid), mkstemp's.
_MIDDLE = re.compile(r"^(?P<pid>\d+)\.[0-9a-f]{16}$|^(?P<old_pid>\d+)$|^[A-Za-z0-9_]{8}$")


def crash_point(name: str, step: int | None = None) -> None:
    """Kill this process with SIGKILL when ``SAFETEXT_CRASH_AT`` names this moment (``name`` or ``name:step``).

    For the fault suite only: it proves what a power cut or the OOM killer at this moment leaves behind.
    """
    wanted = os.environ.get(CRASH_ENV)
    if wanted and (wanted == name or (step is not None and wanted == f"{name}:{step}")):
        os.kill(os.getpid(), signal.SIGKILL)


def _errno(error: BaseException) -> int | None:
    """The OS error behind ``error``: an OSError's, or the "(os error N)" safetensors' Rust writer reports."""
    if isinstance(error, OSError):
        return error.errno
    found = re.search(r"os error (\d+)", str(error))
    return int(found.group(1)) if found else None


def _why(error: BaseException) -> str:
    code = _errno(error)
    if code in (errno.ENOSPC, errno.EDQUOT):
        return "the disk is full"
    if code in (errno.EROFS, errno.EACCES, errno.EPERM):
        return "the folder is not writable"
    if code == errno.ENAMETOOLONG:
        return "the name is too long for the file system"
    if code == errno.EISDIR:
        return "it is a directory"
    return getattr(error, "strerror", None) or str(error)


def _partial_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(8)}{PARTIAL_SUFFIX}")


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # not every platform opens folders (Windows); the rename itself is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, write: Callable[[str], None], what: str = "file",
                 crash: tuple[str, int | None] | None = None) -> Path:
    """Write ``path`` through ``write(partial_path)``, then rename into place; :class:`OutputError` on failure.

    ``crash``: the :func:`crash_point` between writing and renaming (a kill there leaves only the partial).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"cannot write the {what} {path}: cannot create its folder ({_why(error)})") from error
    if path.is_dir():
        raise OutputError(f"cannot write the {what} {path}: it is a directory")
    temporary = _partial_name(path)
    try:
        # Created with 0666 & ~umask, as any program's files are (mkstemp would make it 0600).
        os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        mode = os.stat(temporary).st_mode & 0o777
        write(str(temporary))
        if os.stat(temporary).st_mode & 0o777 != mode:  # safetensors re-creates the file as 0600
            os.chmod(temporary, mode)
        with open(temporary, "rb+") as handle:  # on disk before the rename: a power cut keeps old or new, whole
            os.fsync(handle.fileno())
        if crash is not None:
            crash_point(*crash)
        os.replace(temporary, path)
    except BaseException as error:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        if _errno(error) is not None:
            raise OutputError(f"cannot write the {what} {path}: {_why(error)}") from error
        raise
    _fsync_folder(path.parent)
    return path


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def clean_partials(targets: Iterable[str | os.PathLike]) -> list[Path]:
    """Remove the partial files that runs which died left for ``targets``; returns what was removed.

    A partial of a process that is still running (another run writing the same name) is left alone.
    """
    removed = []
    for target in targets:
        target = Path(target)
        folder = target.parent
        if not folder.is_dir():
            continue
        prefix = f".{target.name}."
        for entry in folder.iterdir():
            if not (entry.name.startswith(prefix) and entry.name.endswith(PARTIAL_SUFFIX)) or not entry.is_file():
                continue
            match = _MIDDLE.match(entry.name[len(prefix):-len(PARTIAL_SUFFIX)])
            if match is None:  # another target's partial whose name starts like this one's (x.safetensors.resume)
                continue
            pid = match.group("pid") or match.group("old_pid")
            if pid is not None and _alive(int(pid)):
                continue
            try:
                entry.unlink()
                removed.append(entry)
            except OSError:
                pass
    return removed


def _name_limit(folder: Path) -> int:
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):
        return 255


def _existing_ancestor(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def preflight(output: str | os.PathLike, needed: int, overwrite: bool = False,
              derived: Sequence[str | os.PathLike] = (), what: str = "output file") -> list[Path]:
    """Check that ``output`` can be written before a run spends time on it; returns the stale partials removed.

    ``needed``: bytes that must be free on its file system at the run's largest moment. ``derived``: other
    files the run writes (resume checkpoint, report, figures): none may be a directory, and every partial name
    must fit the file system. Raises :class:`OutputError` saying what is wrong and what to do.
    """
    output = Path(output)
    targets = [output, *(Path(p) for p in derived)]
    for target in targets:
        if target.is_dir():
            raise OutputError(f"the {what if target == output else 'file'} {target} is a directory; give a file name")
    if output.exists() and not overwrite:
        raise OutputError(f"{output} already exists; choose another name, or overwrite it "
                          "(--overwrite, overwrite=True, or the overwrite switch)")
    for target in targets:
        longest = len(target.name.encode("utf-8")) + PARTIAL_EXTRA
        limit = _name_limit(_existing_ancestor(target.parent))
        if longest > limit:
            raise OutputError(f"the name {target.name[:60]!r}... is too long: with its temporary suffix it needs "
                              f"{longest} bytes, the file system allows {limit}; choose a shorter name")
    folders = list(dict.fromkeys(t.parent for t in targets))
    for folder in folders:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise OutputError(f"cannot write to {folder}: it is a file, not a folder") from None
        except OSError as error:
            raise OutputError(f"cannot create the folder {folder} ({_why(error)})") from error
        probe = _partial_name(folder / "probe")
        try:
            os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except OSError as error:
            raise OutputError(f"cannot write to {folder} ({_why(error)}); choose another output folder") from error
        os.unlink(probe)
    removed = clean_partials(targets)
    free = shutil.disk_usage(output.parent).free
    if free < needed:
        raise OutputError(f"not enough free space for {output}: the run needs about {_size(needed)} there "
                          f"(the file, its resume checkpoint and the report), {_size(free)} are free")
    return removed


def _size(count: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count} bytes"


__all__ = ["CRASH_ENV", "atomic_write", "clean_partials", "crash_point", "preflight"]
