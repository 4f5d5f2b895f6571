"""Result files: atomic writes (temporary name, fsync, rename) and validated reads; the run directory lock.

Results are data (JSON, Parquet); nothing here pickles. A write that fails (a full disk, a read-only
folder) raises StorageError and leaves the previous file, if any, as it was.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from coopbench.base.errors import CoopbenchError, RunLockedError, StorageError


def _storage_error(path: Path, err: OSError) -> StorageError:
    code = errno.errorcode.get(err.errno, str(err.errno)) if err.errno is not None else type(err).__name__
    reason = err.strerror or str(err) or type(err).__name__
    kept = f"the previous {path.name} is intact" if path.exists() else f"no partial {path.name} was left"
    if err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        fix = f"free space on the disk holding {path.parent} and re-run ({kept})"
    else:
        fix = f"make {path.parent} a writable folder and re-run ({kept})"
    return StorageError(f"cannot write {path}: {reason} ({code})", fix)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.

    An OSError while writing (ENOSPC, EDQUOT, EROFS...) becomes a StorageError; `path` keeps its old content."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        yield tmp
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as err:
        raise _storage_error(path, err) from None
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)


def write_json(path: str | os.PathLike, data: Any) -> None:
    text = json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n"  # fails before anything is written
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_parquet(path: str | os.PathLike, frame: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CoopbenchError(f"result file missing: {path}", "re-run the stage that writes it") from None
    except IsADirectoryError:
        raise CoopbenchError(f"result file {path} is a directory",
                             f"give the path of the JSON file in {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CoopbenchError(
            f"corrupt result file {path}: {err}", f"delete {path.parent} and re-run that job"
        ) from None


def read_parquet(path: str | os.PathLike, required_columns: list[str] | None = None) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise CoopbenchError(f"result file missing: {path}", "re-run the stage that writes it")
    try:
        frame = pd.read_parquet(path)
    except Exception as err:  # pyarrow raises several unrelated types for a damaged file
        raise CoopbenchError(
            f"corrupt result file {path}: {type(err).__name__}: {' '.join(str(err).split())}",
            f"delete {path.parent} and re-run that job",
        ) from None
    missing = [c for c in (required_columns or []) if c not in frame.columns]
    if missing:
        raise CoopbenchError(
            f"result file {path} lacks columns {missing}",
            f"it was written by another coopbench version; delete {path.parent} and re-run that job",
        )
    return frame


def check_results_dir(path: str | os.PathLike) -> Path:
    """`path` as a results folder: it, or its nearest existing ancestor, must be a writable directory.

    Checked before any work, so that a typo never costs a run."""
    path = Path(path)
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        what = "is a file" if probe == path else f"lies under {probe}, which is a file"
        raise CoopbenchError(f"results directory {path} {what}",
                             "give --results-dir a folder; a missing one is created")
    if probe.exists() and not os.access(probe, os.W_OK | os.X_OK):
        raise CoopbenchError(f"results directory {path} is not writable ({probe} is read-only to this user)",
                             "give --results-dir a folder you can write")
    return path


LOCK_NAME = ".lock"
_HELD: dict[Path, int] = {}  # lock files this process holds -> nesting depth (the lock is re-entrant per process)


def _lock_owner(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        info = {}
    if not isinstance(info, dict) or "pid" not in info:
        return "another process"
    return f"pid {info.get('pid')} on host {info.get('host', '?')} (since {info.get('since', '?')})"


@contextmanager
def run_lock(run_dir: str | os.PathLike) -> Iterator[None]:
    """Hold `<run_dir>/.lock` (fcntl.flock, released when the process exits, even by kill -9) for the block.

    A second process asking for a held lock fails at once with RunLockedError naming the holder (pid, host,
    since when). The lock file holds that owner record and is removed on release."""
    from coopbench.base import provenance

    path = Path(run_dir) / LOCK_NAME
    key = path.resolve() if path.parent.exists() else path.absolute()
    if key in _HELD:
        _HELD[key] += 1
        try:
            yield
        finally:
            _HELD[key] -= 1
        return
    created = [d for d in (path.parent, *path.parent.parents) if not d.exists()]  # removed again if left empty
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise _storage_error(path, err) from None
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise _storage_error(path, err) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            _remove_empty(created)
            raise RunLockedError(f"run directory {run_dir} is in use by {_lock_owner(path)}",
                                 "wait for that process to finish (the lock is released when it exits)") from None
        try:  # the holder before us may have removed the file after we opened it: lock the file on disk
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    key = path.resolve()
    _HELD[key] = 1
    try:
        owner = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": provenance.now()})
        try:
            os.ftruncate(fd, 0)
            os.write(fd, owner.encode())
        except OSError as err:
            raise _storage_error(path, err) from None
        yield
    finally:
        del _HELD[key]
        path.unlink(missing_ok=True)  # while still locked: a waiter that opened it re-checks samestat
        os.close(fd)
        _remove_empty(created)


def _remove_empty(folders: list[Path]) -> None:
    """Remove the folders a failed or empty run created, innermost first, as long as they are empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def read_checked_json(path: str | os.PathLike, shape, what: str, version: int, fix: str) -> dict:
    """A JSON object written by a stage, checked against its pydantic `shape` and schema `version`:
    another shape or version is one CoopbenchError naming the first field that differs."""
    from pydantic import ValidationError

    path = Path(path)
    data = read_json(path)
    if not isinstance(data, dict):
        raise CoopbenchError(f"{path} is not {what}: a JSON {type(data).__name__}, not an object", fix)
    if data.get("schema_version") != version:
        raise CoopbenchError(f"{path} has schema_version {data.get('schema_version')!r}, this coopbench reads "
                             f"{version}", fix)
    try:
        shape.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the top level"
        raise CoopbenchError(f"{path} is not {what}: {where}: {first['msg']}", fix) from None
    return data
