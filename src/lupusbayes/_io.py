"""Atomic, non-clobbering file output shared by the API and the command line."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from lupusbayes.errors import OutputExistsError, OutputPathError

__all__ = ["check_output_path", "refuse_existing", "write_atomic", "write_text_atomic", "staged_directory"]


def refuse_existing(path: Path, *, overwrite: bool) -> None:
    """Raise :class:`OutputExistsError` if ``path`` exists and ``overwrite`` is false."""
    if path.exists() and not overwrite:
        kind = "folder" if path.is_dir() else "file"
        raise OutputExistsError(f"{path}: {kind} exists; choose another path or pass --overwrite / overwrite=True")


def check_output_path(path: str | Path, *, overwrite: bool = False, folder: bool = False, mkdir: bool = False) -> Path:
    """Check, before any work, that ``path`` can be written; return it as a ``Path``.

    Refused with one line: an empty path; a path whose folder is missing (unless ``mkdir``,
    which then creates it) or is a file; a folder that cannot be written in; an existing folder
    where a file is expected, or an existing file where a folder is; an existing output without
    ``overwrite``.
    """
    if str(path).strip() == "":
        raise OutputPathError("the output path is empty; give a file or folder name")
    path = Path(path)
    if path.exists() and path.is_dir() != folder:
        expected, found = ("folder", "file") if folder else ("file", "folder")
        raise OutputPathError(f"{path}: is a {found}; give a {expected} name (--overwrite does not replace a {found})")
    refuse_existing(path, overwrite=overwrite)
    parent = path.parent
    if parent.exists() and not parent.is_dir():
        raise OutputPathError(f"{path}: {parent} is a file, not a folder")
    if not parent.exists():
        if not mkdir:
            raise OutputPathError(f"{path}: the folder {parent} does not exist; create it first or pass --mkdir / mkdir=True")
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise OutputPathError(f"{path}: cannot create the folder {parent} ({error.strerror})") from None
    try:  # the only reliable test of writability (permissions, read-only file systems, root)
        handle, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=parent)
    except OSError as error:
        raise OutputPathError(f"{path}: cannot write in {parent} ({error.strerror})") from None
    os.close(handle)
    os.unlink(probe)
    return path


def write_atomic(path: Path, writer: Callable[[Path], None], *, overwrite: bool = False, mkdir: bool = False) -> Path:
    """Write via ``writer(temporary_path)`` in the target folder, then rename into place.

    Nothing appears at ``path`` unless ``writer`` finishes; an existing file is replaced only
    with ``overwrite=True``; a missing folder is created only with ``mkdir=True``.
    """
    path = check_output_path(path, overwrite=overwrite, mkdir=mkdir)
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


def write_text_atomic(path: Path, text: str, *, overwrite: bool = False, mkdir: bool = False) -> Path:
    """Atomically write ``text`` to ``path`` (UTF-8)."""
    return write_atomic(path, lambda temporary: temporary.write_text(text, encoding="utf-8"), overwrite=overwrite,
                        mkdir=mkdir)


@contextmanager
def staged_directory(path: Path, *, overwrite: bool = False, mkdir: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success it replaces ``path`` in one rename.

    If the block raises, the staged folder is removed and ``path`` is left as it was, so a
    failed run never leaves partial output.
    """
    path = check_output_path(path, overwrite=overwrite, folder=True, mkdir=mkdir)
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
