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
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
from tqdm.auto import tqdm

from training import io
from training import preprocess as pp
from training.errors import DataError

log = logging.getLogger(__name__)

#: Bump when the layout below changes; older stores are then ignored (and rebuilt).
STORE_VERSION = 1
#: Rows per shard: ~12 MB at 224 px, few enough files for big datasets.
SHARD_ROWS = 256

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
        #: Counts of the last :meth:`load`: ``hits``, ``misses`` (preprocessed now), ``errors``.
        self.last_stats: dict[str, int] = {}

    def store_dir(self, cfg: pp.PreprocessConfig) -> Path:
        """The folder holding the images preprocessed with ``cfg``."""
        return self.root / replace(cfg, channels=1).key()

    def load(self, paths: list[str], cfg: pp.PreprocessConfig,
             on_error: Literal["raise", "skip"] = "raise", progress: bool = False,
             workers: int | None = None) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """Images for ``paths`` as ``uint8 (N, size, size, channels)``, aligned with ``paths``.

        Files not in the cache are decoded and preprocessed with ``workers`` threads (default:
        the CPU count) and stored. With ``on_error="skip"`` a bad file gets a zero image and a
        record ``{"index", "path", "reason"}`` in the returned list; with ``"raise"`` the first
        bad file raises :class:`ImageDecodeError` (or :class:`DataError` if unreadable).
        """
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        paths = [str(p) for p in paths]
        store = _Store(self.store_dir(cfg), replace(cfg, channels=1))
        out = np.zeros((len(paths), cfg.size, cfg.size, cfg.channels), dtype=np.uint8)
        errors: list[dict[str, Any]] = []
        hits: list[tuple[int, str]] = []
        misses = 0
        pool = ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1)
        try:
            items = pool.map(store.fetch, paths)
            for i, item in enumerate(tqdm(items, total=len(paths), disable=not progress,
                                          desc="preprocessing", unit="img")):
                if item.error is not None:
                    if on_error == "raise":
                        raise _with_skip_hint(item.error) from item.error
                    reason = pp.error_reason(item.error)
                    errors.append({"index": i, "path": paths[i], "reason": reason})
                elif item.image is not None:
                    out[i] = item.image[..., None]
                    store.add(item.digest, item.image)
                    misses += 1
                else:
                    hits.append((i, item.digest))
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            store.flush()  # keep the work done so far, even when a bad file stops the build
        store.fill(out, hits)
        self.last_stats = {"hits": len(hits), "misses": misses, "errors": len(errors)}
        return out, errors


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
        self._read_index()

    def _read_index(self) -> None:
        for manifest in sorted(self.folder.glob("shard-*.json")):
            rows = self._valid_rows(manifest)
            for row, digest in enumerate(rows or []):
                self.index[digest] = (manifest.with_suffix(".npy"), row)

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

    def fetch(self, path: str) -> _Item:
        """Read ``path``; preprocess it unless its content is already stored. Thread-safe."""
        try:
            data, label = pp.read_source(path)
            digest = hashlib.sha1(data, usedforsecurity=False).hexdigest()
            if digest in self.index:
                return _Item(digest=digest)
            image = pp.load_image(data, self.cfg, name=label)[..., 0]
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
        self.pending.clear()

    def _write_config(self) -> None:
        path = self.folder / "config.json"
        if not path.exists():
            payload = {"store_version": STORE_VERSION, "preprocess_version": pp.PREPROCESS_VERSION,
                       "config": self.cfg.to_dict()}
            _atomic_write(path, lambda f: f.write(json.dumps(payload, indent=2).encode()))

    def fill(self, out: np.ndarray, hits: list[tuple[int, str]]) -> None:
        """Copy the stored rows of ``hits`` (output index, digest) into ``out``, shard by shard."""
        by_shard: dict[Path, list[tuple[int, int]]] = {}
        for i, digest in hits:
            shard, row = self.index[digest]
            by_shard.setdefault(shard, []).append((i, row))
        for shard, pairs in by_shard.items():
            data = np.load(shard, mmap_mode="r")
            idx, rows = np.array(pairs).T
            out[idx] = data[rows][..., None]


def _atomic_write(path: Path, write) -> None:
    """Write via a temporary file in the same folder, fsync, then ``os.replace`` into place
    (:func:`training.io.atomic_open`: the file gets the mode ``open()`` would give)."""
    with io.atomic_open(path, "wb") as f:
        write(f)
