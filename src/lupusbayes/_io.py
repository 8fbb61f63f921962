"""Atomic, non-clobbering file output shared by the API and the command line."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from lupusbayes.errors import OutputExistsError


def refuse_existing(path: Path, *, overwrite: bool) -> None:
    """Raise :class:`OutputExistsError` if ``path`` exists and ``overwrite`` is false."""
    if path.exists() and not overwrite:
        kind = "folder" if path.is_dir() else "file"
        raise OutputExistsError(f"{path}: {kind} exists; choose another path or pass --overwrite / overwrite=True")


def write_atomic(path: Path, writer: Callable[[Path], None], *, overwrite: bool = False) -> Path:
    """Write via ``writer(temporary_path)`` in the target folder, then rename into place.

    Nothing appears at ``path`` unless ``writer`` finishes; an existing file is replaced only
    with ``overwrite=True``.
    """
    path = Path(path)
    refuse_existing(path, overwrite=overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(handle)
    temporary_path = Path(temporary)
    try:
        writer(temporary_path)
        os.chmod(temporary_path, 0o666 & ~_current_umask())  # mkstemp makes it private
        os.replace(temporary_path, path)
    finally:
        temporary_path.unlink(missing_ok=True)
    return path


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path: Path, text: str, *, overwrite: bool = False) -> Path:
    """Atomically write ``text`` to ``path`` (UTF-8)."""
    return write_atomic(path, lambda temporary: temporary.write_text(text, encoding="utf-8"), overwrite=overwrite)


@contextmanager
def staged_directory(path: Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success it replaces ``path`` in one rename.

    If the block raises, the staged folder is removed and ``path`` is left as it was, so a
    failed run never leaves partial output.
    """
    path = Path(path)
    refuse_existing(path, overwrite=overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    os.chmod(staging, 0o777 & ~_current_umask())  # mkdtemp makes it private; the result should not be
    try:
        yield staging
        if path.exists():
            backup = path.with_name(f".{path.name}.replaced")
            shutil.rmtree(backup, ignore_errors=True)
            os.replace(path, backup)
            os.replace(staging, path)
            shutil.rmtree(backup, ignore_errors=True)
        else:
            os.replace(staging, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
