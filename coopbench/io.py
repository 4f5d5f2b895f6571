"""Result files: atomic writes (temporary name, fsync, rename) and validated reads.

Results are data (JSON, Parquet); nothing here pickles.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from coopbench.errors import CoopbenchError


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: str | os.PathLike, data: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n")


def write_parquet(path: str | os.PathLike, frame: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CoopbenchError(f"result file missing: {path}", "re-run the stage that writes it") from None
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
            f"corrupt result file {path}: {type(err).__name__}: {err}",
            f"delete {path.parent} and re-run that job",
        ) from None
    missing = [c for c in (required_columns or []) if c not in frame.columns]
    if missing:
        raise CoopbenchError(
            f"result file {path} lacks columns {missing}",
            f"it was written by another coopbench version; delete {path.parent} and re-run that job",
        )
    return frame
