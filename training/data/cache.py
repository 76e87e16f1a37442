"""The preprocessed-image cache: every image is decoded and preprocessed once per config.

Layout (one *store* per preprocessing config)::

    <root>/<key>/config.json          the PreprocessConfig, for humans
    <root>/<key>/shard-<id>.npy       uint8 (n, size, size) preprocessed grayscale rows
    <root>/<key>/shard-<id>.json      its manifest: the sha1 of each row's source file bytes

``<key>`` is ``PreprocessConfig.key()`` with ``channels=1``: rows are stored as one channel and
repeated on load, since ``channels`` never changes the pixels (a third of the disk and I/O).
Entries are keyed by the sha1 of the file's *bytes*, so a changed file is preprocessed again
and a renamed or duplicated one is not.

Writes are crash-safe: a shard is written to a temporary name and renamed (``os.replace``),
and its manifest is renamed into place last; a shard counts only once its manifest exists, so an
interrupted build leaves at worst ignored temporary files. Every writer writes new, uniquely
named shards and never rewrites existing files, so concurrent readers are always safe and even
concurrent writers do not corrupt the store (they may duplicate some work).

Reading (:meth:`ImageCache.open`) never materialises the set: it returns a lazy
:class:`~training.data.cached_images.CachedImages` view over the shards (memory flat in the
number of images; channels repeated per batch on the host, so a saved model's input stays
``(S, S, 3)`` uint8).

Building scales with processes: files are read and hashed by threads (I/O, GIL released);
with ``workers > 1`` and at least :data:`PROCESS_MIN` files, decoding and preprocessing (CPU
bound Python/Pillow) run in a pool of ``workers`` processes; at most ``4 x workers`` files
are in flight, so building is memory-flat too.
"""
from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import sys
import time
import uuid
from collections import deque
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Literal

import numpy as np
from tqdm.auto import tqdm

from training import io
from training import preprocess as pp
from training.data.cached_images import CachedImages
from training.errors import DataError, ImageDecodeError

log = logging.getLogger(__name__)

#: Bump when the layout below changes; older stores are then ignored (and rebuilt).
STORE_VERSION = 1
#: Rows per shard: ~12 MB at 224 px, few enough files for big datasets.
SHARD_ROWS = 256
#: Fewest files for which decoding uses processes: starting them costs ~1 s (spawn + imports).
PROCESS_MIN = 256

_SKIP_HINT = "or pass --on-error skip (on_error='skip') to leave it out and report it"


def default_cache_dir() -> Path:
    """``$CXRLAB_CACHE`` if set, else ``~/.cache/cxrlab``."""
    env = os.environ.get("CXRLAB_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "cxrlab"


@dataclass
class _Item:
    """The outcome for one path: a cache hit (digest only), a new image, or an error."""

    digest: str | None = None
    image: np.ndarray | None = None
    error: DataError | None = None


class ImageCache:
    """Preprocessed uint8 images on disk, keyed by file content and preprocessing config.

    One process writing at a time is the intended use; readers may run concurrently.
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)
        #: Counts of the last build: ``hits``, ``misses`` (preprocessed now), ``errors``.
        self.last_stats: dict[str, int] = {}
        self._stores: dict[Path, _Store] = {}  # kept: chunked callers re-read only new manifests

    def store_dir(self, cfg: pp.PreprocessConfig) -> Path:
        """The folder holding the images preprocessed with ``cfg``."""
        return self.root / replace(cfg, channels=1).key()

    def open(self, paths: list[str], cfg: pp.PreprocessConfig,
             on_error: Literal["raise", "skip"] = "raise", progress: bool = False,
             workers: int | None = None) -> tuple[CachedImages, list[dict[str, Any]]]:
        """A lazy view of the images of ``paths`` (``(N, size, size, channels)``), and the errors.

        Files not in the cache are decoded and preprocessed first (``workers`` in parallel,
        default: the CPU count; see the module docstring) and stored. With ``on_error="skip"``
        a bad file's row reads as zeros and gets a record ``{"index", "path", "reason"}`` in
        the returned list; with ``"raise"`` the first bad file raises
        :class:`ImageDecodeError` (or :class:`DataError` if unreadable).
        """
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        paths = [str(p) for p in paths]
        store = self._store(cfg)
        digests, errors = self._build(store, paths, on_error, progress, workers)
        return CachedImages.from_index(digests, store.index, cfg.size, cfg.channels), errors

    def load(self, paths: list[str], cfg: pp.PreprocessConfig,
             on_error: Literal["raise", "skip"] = "raise", progress: bool = False,
             workers: int | None = None) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """:meth:`open`, materialised as one ``uint8 (N, size, size, channels)`` array: for
        small sets only (the trainer, evaluation and the gate read the view)."""
        view, errors = self.open(paths, cfg, on_error, progress, workers)
        return np.asarray(view), errors

    def _store(self, cfg: pp.PreprocessConfig) -> _Store:
        folder = self.store_dir(cfg)
        if folder not in self._stores:
            self._stores[folder] = _Store(folder, replace(cfg, channels=1))
        store = self._stores[folder]
        store.refresh()  # shards written since (by us or by another process)
        return store

    def _build(self, store: _Store, paths: list[str], on_error: str, progress: bool,
               workers: int | None) -> tuple[list[str | None], list[dict[str, Any]]]:
        """Store what is missing; each path's digest (None: unreadable) and the errors."""
        n = max(1, workers or os.cpu_count() or 1)
        threads = ThreadPoolExecutor(max_workers=n)
        procs = (ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn"))
                 if n > 1 and len(paths) >= PROCESS_MIN else None)
        digests: list[str | None] = [None] * len(paths)
        errors: list[dict[str, Any]] = []
        hits = misses = 0
        started = time.monotonic()
        bar = tqdm(total=len(paths), disable=not (progress and sys.stderr.isatty()),
                   desc="preprocessing", unit="img", file=sys.stderr)
        try:
            fetch = (lambda p: store.fetch(p, procs))  # noqa: E731
            for i, item in enumerate(_bounded_map(fetch, paths, threads, 4 * n)):
                bar.update()
                if item.error is not None:
                    if on_error == "raise":
                        raise _with_skip_hint(item.error) from item.error
                    errors.append({"index": i, "path": paths[i], "reason": pp.error_reason(item.error)})
                    continue
                digests[i] = item.digest
                if item.image is None:
                    hits += 1
                else:
                    store.add(item.digest, item.image)
                    misses += 1
        finally:
            bar.close()
            threads.shutdown(wait=True, cancel_futures=True)
            if procs is not None:
                procs.shutdown(wait=True, cancel_futures=True)
            store.flush()  # keep the work done so far, even when a bad file stops the build
        self.last_stats = {"hits": hits, "misses": misses, "errors": len(errors)}
        if misses:  # counts only: file names are patient data and never logged
            rate = misses / max(time.monotonic() - started, 1e-9)
            log.info("preprocessed %d images (%.1f/s with %d %s), %d cached, %d unreadable",
                     misses, rate, n, "processes" if procs else "threads", hits, len(errors))
        return digests, errors


def _bounded_map(fn: Callable[[str], _Item], items: Iterable[str], pool: Executor,
                 window: int) -> Iterator[_Item]:
    """``pool.map(fn, items)`` in order with at most ``window`` calls in flight (flat memory)."""
    pending: deque[Future] = deque()
    source = iter(items)
    try:
        for item in source:
            pending.append(pool.submit(fn, item))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()


def _with_skip_hint(err: DataError) -> DataError:
    """The same error, its hint extended with the --on-error skip way out."""
    if err.hint and "--on-error" in err.hint:
        return err
    hint = f"{err.hint}; {_SKIP_HINT}" if err.hint else _SKIP_HINT
    return type(err)(pp.error_reason(err), path=err.path, hint=hint)


class _Store:
    """One config's folder: an in-memory index of its committed shards, plus pending rows."""

    def __init__(self, folder: Path, cfg: pp.PreprocessConfig):
        self.folder = folder
        self.cfg = cfg
        self.index: dict[str, tuple[Path, int]] = {}
        self.pending: dict[str, np.ndarray] = {}
        self._seen: dict[str, tuple[int, int] | None] = {}  # manifest → its shard's stamp
        self._rows: dict[str, list[str]] = {}  # manifest → the digests it indexed

    def refresh(self) -> None:
        """Index the committed shards not read yet, and re-read any changed or removed since
        (a manifest is read again only when its shard's size or mtime changed)."""
        manifests = sorted(self.folder.glob("shard-*.json"))
        for gone in set(self._seen) - {m.name for m in manifests}:
            self._forget(gone)
        for manifest in manifests:
            stamp = _stamp(manifest.with_suffix(".npy"))
            if manifest.name in self._seen and self._seen[manifest.name] == stamp:
                continue
            self._forget(manifest.name)
            self._seen[manifest.name] = stamp
            self._rows[manifest.name] = rows = self._valid_rows(manifest) or []
            for row, digest in enumerate(rows):
                self.index.setdefault(digest, (manifest.with_suffix(".npy"), row))

    def _forget(self, name: str) -> None:
        shard = (self.folder / name).with_suffix(".npy")
        self._seen.pop(name, None)
        for digest in self._rows.pop(name, []):
            if self.index.get(digest, (None, 0))[0] == shard:
                del self.index[digest]

    def _valid_rows(self, manifest: Path) -> list[str] | None:
        """The manifest's digests if it and its shard are intact, else None (shard ignored)."""
        try:
            meta = json.loads(manifest.read_text())
            shard = np.load(manifest.with_suffix(".npy"), mmap_mode="r")  # header only
            size = self.cfg.size
            ok = (meta.get("store_version") == STORE_VERSION
                  and shard.shape == (len(meta["rows"]), size, size) and shard.dtype == np.uint8)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring damaged cache shard %s (%s)", manifest, exc)
            return None
        if not ok:
            log.warning("ignoring cache shard %s: it does not match this config", manifest)
            return None
        return meta["rows"]

    def fetch(self, path: str, procs: Executor | None = None) -> _Item:
        """Read ``path``; preprocess it (in ``procs`` when given) unless its content is
        already stored. Thread-safe."""
        try:
            data, label = pp.read_source(path)
            digest = hashlib.sha1(data, usedforsecurity=False).hexdigest()
            if digest in self.index:
                return _Item(digest=digest)
            if procs is None:
                image = _preprocess(data, self.cfg, label)
            else:
                image = _raised(procs.submit(_preprocess_quietly, data, self.cfg, label).result(), label)
        except DataError as exc:
            return _Item(error=exc)
        return _Item(digest=digest, image=image)

    def add(self, digest: str, image: np.ndarray) -> None:
        """Queue a new row; a full shard is written at once."""
        if digest in self.index or digest in self.pending:
            return  # same content under two paths: store it once
        self.pending[digest] = image
        if len(self.pending) >= SHARD_ROWS:
            self.flush()

    def flush(self) -> None:
        """Write the pending rows as one new shard (data first, manifest last)."""
        if not self.pending:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        self._write_config()
        digests = list(self.pending)
        stem = self.folder / f"shard-{uuid.uuid4().hex}"
        _atomic_write(stem.with_suffix(".npy"),
                      lambda f: np.save(f, np.stack([self.pending[d] for d in digests])))
        manifest = {"store_version": STORE_VERSION, "config": self.cfg.to_dict(), "rows": digests}
        _atomic_write(stem.with_suffix(".json"), lambda f: f.write(json.dumps(manifest).encode()))
        for row, digest in enumerate(digests):
            self.index[digest] = (stem.with_suffix(".npy"), row)
        self._seen[stem.with_suffix(".json").name] = _stamp(stem.with_suffix(".npy"))
        self._rows[stem.with_suffix(".json").name] = digests
        self.pending.clear()

    def _write_config(self) -> None:
        path = self.folder / "config.json"
        if not path.exists():
            payload = {"store_version": STORE_VERSION, "preprocess_version": pp.PREPROCESS_VERSION,
                       "config": self.cfg.to_dict()}
            _atomic_write(path, lambda f: f.write(json.dumps(payload, indent=2).encode()))


def _stamp(path: Path) -> tuple[int, int] | None:
    """``(size, mtime_ns)`` of a file (None if unreadable): whether a shard changed."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def _preprocess(data: bytes, cfg: pp.PreprocessConfig, label: str) -> np.ndarray:
    """One file's bytes as its stored ``uint8 (size, size)`` row."""
    return pp.load_image(data, cfg, name=label)[..., 0]


def _preprocess_quietly(data: bytes, cfg: pp.PreprocessConfig, label: str
                        ) -> np.ndarray | tuple[str, str, str | None]:
    """:func:`_preprocess` in a worker process; an error comes back as ``(type, reason, hint)``
    (a DataError's ``path`` and ``hint`` do not survive pickling)."""
    try:
        return _preprocess(data, cfg, label)
    except DataError as exc:
        return type(exc).__name__, pp.error_reason(exc), exc.hint


def _raised(result: np.ndarray | tuple[str, str, str | None], label: str) -> np.ndarray:
    """The row of :func:`_preprocess_quietly`, or its error raised again in this process."""
    if isinstance(result, np.ndarray):
        return result
    kind, reason, hint = result
    error = ImageDecodeError if kind == ImageDecodeError.__name__ else DataError
    raise error(reason, path=label, hint=hint)


def _atomic_write(path: Path, write) -> None:
    """Write via a temporary file in the same folder, fsync, then ``os.replace`` into place
    (:func:`training.io.atomic_open`: the file gets the mode ``open()`` would give)."""
    with io.atomic_open(path, "wb") as f:
        write(f)

