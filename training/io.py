"""Crash-safe file writes that give files the permissions a plain ``open()`` would.

Every file the project writes (model cards and models, splits, cache shards, reports) goes
through here. A write goes to a temporary file in the destination's folder, is flushed to
disk, then renamed over the destination (``os.replace``): a reader sees the old file or the
new one, never half of one. The temporary file is created with mode ``0o666`` and the kernel
applies the process umask, exactly as for ``open(path, "w")``, so the final file is
``0o666 & ~umask`` (``tempfile.mkstemp`` would give 0600: a model folder trained by one user
could then not be read by the Docker image's unprivileged user, or by anyone else).

Files written by another library under a temporary name (Keras's ``model.save``,
``save_weights``) and temporary folders (``tempfile.mkdtemp``, 0700) that are renamed into
place are published with :func:`publish`, which sets the same mode first.
"""
from __future__ import annotations

import contextlib
import hashlib
import io as _io
import json
import math
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

_UMASK_LOCK = threading.Lock()


def umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux ``/proc``).

    Elsewhere it is read by setting and restoring it under a lock (only files this module
    creates are guarded against the brief change; they are created with an explicit mode).
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        old = os.umask(0o077)
        os.umask(old)
    return old


def file_mode() -> int:
    """Mode ``open()`` gives a new file now: ``0o666 & ~umask``."""
    return 0o666 & ~umask()


def dir_mode() -> int:
    """Mode ``mkdir()`` gives a new folder now: ``0o777 & ~umask``."""
    return 0o777 & ~umask()


def fix_mode(path: str | os.PathLike) -> Path:
    """Give ``path`` the mode ``open()``/``mkdir()`` would have given it (folders recursively)."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        dmode, fmode = dir_mode(), file_mode()
        for root, dirs, files in os.walk(path):
            for name in dirs:
                os.chmod(os.path.join(root, name), dmode)
            for name in files:
                if not os.path.islink(os.path.join(root, name)):
                    os.chmod(os.path.join(root, name), fmode)
        os.chmod(path, dmode)
    else:
        os.chmod(path, file_mode())
    return path


def fsync_file(path: str | os.PathLike) -> None:
    """Flush a finished file to disk (before it is renamed into place)."""
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable; best effort (some filesystems refuse)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def publish(tmp: str | os.PathLike, path: str | os.PathLike, fsync: bool = True) -> Path:
    """Rename a finished temporary file or folder onto ``path`` with the umask's mode.

    For files another library wrote (``model.save(tmp)``) and ``mkdtemp`` folders. A file is
    flushed to disk first unless ``fsync`` is false (frequent, large training backups).
    ``tmp`` must be in ``path``'s filesystem (same folder, ideally).
    """
    tmp, path = Path(tmp), Path(path)
    fix_mode(tmp)
    if fsync and tmp.is_file():
        fsync_file(tmp)
    os.replace(tmp, path)
    _fsync_dir(path.parent)
    return path


def temp_path(path: str | os.PathLike) -> Path:
    """A fresh, unused name beside ``path`` (hidden; same suffix, which Keras insists on)."""
    path = Path(path)
    suffix = "".join(path.suffixes) if path.name.endswith(".weights.h5") else path.suffix
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp{suffix}")


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", encoding: str | None = None,
                newline: str | None = None) -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success it is flushed and renamed onto it.

    ``mode`` is ``"wb"`` or ``"w"`` (text, UTF-8 by default). The file is created with mode
    ``0o666`` minus the umask, as ``open()`` would. On any error (or interrupt) the
    temporary file is removed and ``path`` is left as it was.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes whole files: mode 'w' or 'wb', not {mode!r}")
    path = Path(path)
    while True:
        tmp = temp_path(path)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
            break
        except FileExistsError:  # pragma: no cover - 48 random bits
            continue
    try:
        if mode == "wb":
            f = os.fdopen(fd, "wb")
        else:
            f = os.fdopen(fd, "w", encoding=encoding or "utf-8", newline=newline)
        with f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Atomically write ``data`` to ``path`` (mode as ``open()`` would give); returns the path."""
    with atomic_open(path, "wb") as f:
        f.write(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Atomically write ``text`` to ``path``; returns the path."""
    with atomic_open(path, "w", encoding=encoding, newline="") as f:
        f.write(text)
    return Path(path)


def write_figure(path: str | os.PathLike, fig: Any, **savefig: Any) -> Path:
    """Atomically write a matplotlib ``Figure`` (format from the suffix; ``savefig`` options)."""
    buffer = _io.BytesIO()
    fig.savefig(buffer, format=Path(path).suffix.lstrip(".") or "png", **savefig)
    return write_bytes(path, buffer.getvalue())


def write_csv(path: str | os.PathLike, df: Any, **to_csv: Any) -> Path:
    """Atomically write a pandas ``DataFrame`` as CSV (``index=False`` unless given)."""
    return write_text(path, df.to_csv(**{"index": False, **to_csv}))


def json_text(obj: Any, indent: int | None = 2, **kwargs: Any) -> str:
    """Strict JSON text of ``obj`` (:func:`jsonable`: NaN/inf → null, numpy → Python), newline-ended."""
    return json.dumps(jsonable(obj), indent=indent, allow_nan=False, **kwargs) + "\n"


def write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2, **kwargs: Any) -> Path:
    """Atomically write strict JSON (:func:`json_text`); returns the path."""
    return write_text(path, json_text(obj, indent=indent, **kwargs))


def jsonable(obj: Any) -> Any:
    """JSON-safe copy: numpy to Python, NaN/inf to None, tuples to lists, paths to str."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes (``hashlib`` algorithm name), read in chunks."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, algorithm).hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file (model, split and gate files are named by it in cards)."""
    return file_digest(path, "sha256")
