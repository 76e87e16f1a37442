"""Byte-identical images across patients: file digests and the groups they link.

Public collections hold the same image under two names and two patient ids; a split that
put the two in different parts would test on a training image. :func:`content_groups` links
every patient that shares a byte-identical file into one group (used by
:mod:`training.data.splits` and the pretraining's held-out check).
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from training import io


def _sha1(path: str) -> str | None:
    """sha1 of a file's bytes (fast; not a security use); None when it cannot be read (it then
    keeps its own group)."""
    try:
        return io.file_digest(path, "sha1")
    except OSError:
        return None


def file_digests(paths: Sequence[str], workers: int | None = None) -> list[str | None]:
    """sha1 of every file's bytes (None where unreadable); threads, since this is I/O bound."""
    with ThreadPoolExecutor(max_workers=workers or min(16, 4 * (os.cpu_count() or 1))) as pool:
        return list(pool.map(_sha1, [str(p) for p in paths]))


def content_groups(patients: Sequence[str], digests: Sequence[str | None]) -> tuple[np.ndarray, int]:
    """Split group per row: patients that share a byte-identical file are linked into one group.

    The groups are the connected components of the patient--file-content graph (a union-find,
    done by scipy), named by their smallest patient id. Rows without a digest (unreadable file)
    link nothing. Returns ``(group per row, number of patients whose group holds another
    patient too)``.
    """
    codes, uniques = pd.factorize(pd.Series(list(patients), dtype=object))
    dig = pd.Series(list(digests), dtype=object)
    known = dig.notna().to_numpy()
    dcodes, dvals = pd.factorize(dig[known])
    n_p, n = len(uniques), len(uniques) + len(dvals)
    edges = coo_matrix((np.ones(known.sum()), (codes[known], n_p + dcodes)), shape=(n, n))
    comp = connected_components(edges, directed=False)[1][:n_p]
    names = pd.Series(uniques, dtype=object).groupby(comp).transform("min").to_numpy()
    sizes = np.bincount(comp)
    return names[codes].astype(object), int((sizes[comp] > 1).sum())
