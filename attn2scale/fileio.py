"""Writes that never leave a half-written file: a temporary file beside the
target, flushed to disk, then renamed over it (``os.replace`` is atomic on
one filesystem). Used by the converter, the dataset preparation and, later,
checkpoints."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator, Union

PathLike = Union[str, os.PathLike]


def temp_beside(path: PathLike) -> str:
    """A new empty temporary file in ``path``'s folder, with the permissions ``open()`` would give."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600
    return tmp


def fsync_file(path: PathLike) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


@contextlib.contextmanager
def atomic_path(path: PathLike, *, durable: bool = True) -> Iterator[str]:
    """Yield a temporary path to write ``path``'s content to; on success it is
    flushed (``durable``) and renamed onto ``path``, on an exception removed.

    ``durable=False`` skips the fsync: still atomic (a reader sees the old or
    the new file, never a part), for many small files that can be remade."""
    tmp = temp_beside(path)
    try:
        yield tmp
        if durable:
            fsync_file(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text_atomic(path: PathLike, text: str, *, durable: bool = True) -> None:
    with atomic_path(path, durable=durable) as tmp:
        Path(tmp).write_text(text)


def symlink_atomic(target: PathLike, link: PathLike) -> None:
    """Make ``link`` point to ``target``, replacing an existing link in one step."""
    link = Path(link)
    tmp = link.parent / f".{link.name}.{os.getpid()}.lnk"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(target, tmp)
    os.replace(tmp, link)
