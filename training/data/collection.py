"""What the public collections' loaders share: labels onto the vocabulary, the uncertain policy,
the view filter and missing image files.

Labels come either as one column per finding (CheXpert, MIMIC: 1 / 0 / -1 uncertain / blank
unknown) or as a list of findings per image (NIH, PadChest: exhaustive over what the
collection annotates, so a finding not listed is 0). Either way the result has only the
canonical names the collection annotates (:func:`training.data.pathologies.ordered`); a finding
without a canonical name is counted and logged once, never turned into a 0 elsewhere.
"""
from __future__ import annotations

import logging
from collections import Counter
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from training.data.csv_format import OnError, files_exist, missing_files_error
from training.data.pathologies import canonical, ordered
from training.data.spec import UNCERTAIN_CHOICES
from training.errors import DataError

log = logging.getLogger(__name__)

#: What a ``-1`` becomes under each policy (ignore: unknown, the honest default)
UNCERTAIN_VALUE: dict[str, float] = dict(zip(UNCERTAIN_CHOICES, (np.nan, 1.0, 0.0)))


def _log_unknown(unknown: Counter, where: str) -> None:
    if unknown:
        shown = ", ".join(f"{name!r} ({n})" for name, n in unknown.most_common())
        log.info("%s: findings without a vocabulary name are left out: %s", where, shown)


def label_columns(df: pd.DataFrame, columns: Sequence[str], uncertain: str,
                  where: str) -> tuple[list[str], np.ndarray]:
    """One column per finding (1, 0, -1 uncertain, blank unknown) → (pathologies, labels)."""
    if uncertain not in UNCERTAIN_VALUE:
        raise DataError(f"uncertain={uncertain!r} is not one of {list(UNCERTAIN_VALUE)}",
                        hint="use --uncertain ignore, ones or zeros")
    names = {c: canonical(c) for c in columns if c in df.columns}
    _log_unknown(Counter({c: len(df) for c, n in names.items() if n is None}), where)
    pathologies = ordered(n for n in names.values() if n is not None)
    out = np.full((len(df), len(pathologies)), np.nan, dtype=np.float32)
    for column, name in names.items():
        if name is None:
            continue
        values = pd.to_numeric(df[column].astype("string").str.strip(), errors="coerce")
        odd = df[column].notna().to_numpy() & ~values.isin([1, 0, -1]).to_numpy()
        if odd.any():
            row = int(np.flatnonzero(odd)[0])
            raise DataError(f"column {column!r} has value {df[column].iloc[row]!r} "
                            f"(line {row + 2} of {where})",
                            hint="labels are 1, 0, -1 (uncertain) or blank (unknown)")
        col = values.to_numpy(dtype=np.float32, na_value=np.nan)
        col[col == -1] = UNCERTAIN_VALUE[uncertain]
        out[:, pathologies.index(name)] = col
    return pathologies, out


def label_lists(findings: Iterable[Sequence[str]], annotated: Sequence[str],
                where: str) -> tuple[list[str], np.ndarray]:
    """Per image, the findings listed (exhaustive over ``annotated``, canonical names):
    listed = 1, annotated but not listed = 0 → (pathologies, labels)."""
    pathologies = ordered(annotated)
    rows, unknown = [], Counter()
    for listed in findings:
        row = np.zeros(len(pathologies), dtype=np.float32)
        for finding in listed:
            name = canonical(finding)
            if name in pathologies:
                row[pathologies.index(name)] = 1.0
            else:
                unknown[finding] += 1
        rows.append(row)
    _log_unknown(unknown, where)
    labels = np.vstack(rows) if rows else np.zeros((0, len(pathologies)), dtype=np.float32)
    return pathologies, labels


def view_name(value: Any, names: dict[str, str]) -> Any:
    """A collection's view spelling under the project's view names (``names``: its lower-case
    spellings → ours, e.g. ``{"lateral": "L"}``); blank → NA, anything else unchanged."""
    if pd.isna(value) or not str(value).strip():
        return pd.NA
    text = str(value).strip()
    return names.get(text.lower(), text)


def view_names(views: Sequence[str] | None, names: dict[str, str]) -> list[str] | None:
    """The ``views`` option under the project's view names (the collection's spelling works too)."""
    if views is None:
        return None
    return [view_name(v, names) for v in ([views] if isinstance(views, str) else views)]


def view_mask(views: pd.Series, allowed: Sequence[str] | None) -> np.ndarray:
    """Rows whose view is in ``allowed`` (case-insensitive); None keeps every row."""
    if allowed is None:
        return np.ones(len(views), dtype=bool)
    wanted = {str(a).strip().lower() for a in ([allowed] if isinstance(allowed, str) else allowed)}
    text = views.astype("string").str.strip().str.lower()
    return text.isin(wanted).fillna(False).to_numpy(dtype=bool)


def check_files(meta: pd.DataFrame, where: str, on_error: OnError
                ) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Rows whose image exists; a missing one raises, or (``skip``) is listed in ``skipped``."""
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    paths = [str(p) for p in meta["path"]]
    exists = files_exist(paths)
    missing = [p for p, ok in zip(paths, exists) if not ok]
    if missing and on_error == "raise":
        raise missing_files_error(missing, where)
    if missing:
        log.warning("%s: skipped %d row(s) whose image is missing (see dataset.skipped)",
                    where, len(missing))
    return exists, [{"path": p, "reason": "image file does not exist"} for p in missing]
