"""Map finding strings (ieee8023 flat or hierarchical, CSV labels) onto :data:`PATHOLOGIES`.

A finding is a list of parts separated by ``,`` or ``|``; each part is a ``/``-path
(``Pneumonia/Viral/COVID-19``) or a flat name (``COVID-19``, ``Streptococcus``,
``Mycoplasma Bacterial Pneumonia``). Every term in :data:`TERMS` says which columns it
makes 1 and which it makes 0; a finding's labels are the union of its terms' ones,
then their zeros (never overriding a one); everything else stays NaN (unknown).

Decisions (documented here because they shape every dataset):

* A typed pneumonia (``Streptococcus``) makes Pneumonia=1, its type 1 and the other
  types 0; a named virus also decides COVID-19 and SARS (``Influenza`` → both 0).
* ``Pneumonia`` alone or ``Viral`` with no virus named leaves the undecided columns NaN
  (unknown, never 0).
* ``Aspiration`` pneumonia is not viral/fungal, but may or may not be bacterial: NaN.
* ``Tuberculosis`` (not in the vocabulary) rules out viral/fungal pneumonia, COVID-19
  and SARS; whether it counts as (bacterial) pneumonia is left NaN.
* ``ARDS`` alone makes ARDS=1 and No Finding=0; its cause (pneumonia or not, COVID-19
  or not) is not stated, so those stay NaN.
* Any disease makes No Finding=0; ``No Finding`` makes every disease 0.
* ``exhaustive=True`` (ieee8023: the collection lists ARDS whenever present) makes ARDS=0
  on every labelled row that does not list it.
* ``todo``/``Unknown``/empty: unlabelled (all NaN, kept). Unknown strings: all NaN,
  ``known=False``; :func:`findings_to_labels` warns once with their counts.
"""
from __future__ import annotations

import logging
import re
import warnings
from collections import Counter
from functools import lru_cache
from typing import Iterable

import numpy as np
import pandas as pd

from training.data.dataset import PATHOLOGIES

log = logging.getLogger(__name__)

NF, PNEU, BACT, VIRAL, FUNGAL, COVID, SARS, ARDS = PATHOLOGIES
DISEASES: tuple[str, ...] = tuple(p for p in PATHOLOGIES if p != NF)
_TYPES = (BACT, VIRAL, FUNGAL)
_VIRUSES = (COVID, SARS)


def _bacterial() -> tuple[set[str], set[str]]:
    return {PNEU, BACT}, {VIRAL, FUNGAL, *_VIRUSES}


def _fungal() -> tuple[set[str], set[str]]:
    return {PNEU, FUNGAL}, {BACT, VIRAL, *_VIRUSES}


def _virus(name: str | None = None) -> tuple[set[str], set[str]]:
    """A viral pneumonia; ``name`` = COVID-19/SARS, or None for another named virus."""
    ones = {PNEU, VIRAL} | ({name} if name else set())
    return ones, {BACT, FUNGAL, *(v for v in _VIRUSES if v != name)}


#: term (lower case) → (columns set to 1, columns set to 0). One line per finding.
TERMS: dict[str, tuple[set[str], set[str]]] = {
    "no finding": ({NF}, set(DISEASES)),
    "normal": ({NF}, set(DISEASES)),
    "pneumonia": ({PNEU}, set()),
    # pneumonia types without a species
    "bacterial": _bacterial(),
    "bacterial pneumonia": _bacterial(),
    "viral": ({PNEU, VIRAL}, {BACT, FUNGAL}),
    "viral pneumonia": ({PNEU, VIRAL}, {BACT, FUNGAL}),
    "fungal": _fungal(),
    "fungal pneumonia": _fungal(),
    # viruses
    "covid-19": _virus(COVID),
    "covid19": _virus(COVID),
    "covid": _virus(COVID),
    "sars": _virus(SARS),
    "mers": _virus(),
    "mers-cov": _virus(),
    "influenza": _virus(),
    "h1n1": _virus(),
    "varicella": _virus(),
    "herpes": _virus(),
    # bacteria
    "streptococcus": _bacterial(),
    "klebsiella": _bacterial(),
    "e.coli": _bacterial(),
    "legionella": _bacterial(),
    "chlamydophila": _bacterial(),
    "mycoplasma": _bacterial(),
    "mycoplasma bacterial pneumonia": _bacterial(),
    "staphylococcus": _bacterial(),
    "mrsa": _bacterial(),
    "nocardia": _bacterial(),
    # fungi
    "pneumocystis": _fungal(),
    "aspergillosis": _fungal(),
    # other pneumonias
    "lipoid": ({PNEU}, {*_TYPES, *_VIRUSES}),
    "aspiration": ({PNEU}, {VIRAL, FUNGAL, *_VIRUSES}),
    # other findings
    "ards": ({ARDS}, set()),
    "tuberculosis": (set(), {VIRAL, FUNGAL, *_VIRUSES}),
}

#: Strings meaning "not labelled yet": all NaN, known.
UNLABELLED: frozenset[str] = frozenset({"", "todo", "unknown", "nan"})

_SPLIT = re.compile(r"[,|]")


def known_findings() -> list[str]:
    """Every term the vocabulary understands (for error messages)."""
    return sorted(TERMS)


@lru_cache(maxsize=4096)
def _parse(finding: str, exhaustive: bool) -> tuple[tuple[float, ...], bool]:
    ones: set[str] = set()
    zeros: set[str] = set()
    for part in _SPLIT.split(finding):
        key = part.strip().lower()
        if key in UNLABELLED:
            continue
        # a whole part first ("mycoplasma bacterial pneumonia"), else its /-path terms
        tokens = [key] if key in TERMS else [t.strip() for t in key.split("/") if t.strip()]
        for token in tokens:
            if token not in TERMS:
                return (np.nan,) * len(PATHOLOGIES), False
            ones |= TERMS[token][0]
            zeros |= TERMS[token][1]
    if not ones and not zeros:
        return (np.nan,) * len(PATHOLOGIES), True
    if NF in ones and ones & set(DISEASES):
        return (np.nan,) * len(PATHOLOGIES), False  # contradictory: normal and diseased
    if NF not in ones:
        zeros.add(NF)
        if exhaustive:
            zeros.add(ARDS)
    values = {p: 1.0 if p in ones else 0.0 if p in zeros else np.nan for p in PATHOLOGIES}
    return tuple(values[p] for p in PATHOLOGIES), True


def finding_to_labels(finding: str | None, exhaustive: bool = True) -> tuple[np.ndarray, bool]:
    """Labels ``(K,)`` (1/0/NaN, order of PATHOLOGIES) and whether the string was understood.

    ``todo``/empty/None give all NaN and ``known=True``; an unknown or contradictory
    string gives all NaN and ``known=False``.
    """
    text = "" if not isinstance(finding, str) and pd.isna(finding) else str(finding)
    values, known = _parse(text, exhaustive)
    return np.array(values, dtype=np.float32), known


def findings_to_labels(findings: Iterable[str | None], exhaustive: bool = True,
                       source: str = "") -> tuple[np.ndarray, dict[str, int]]:
    """Labels ``(N, K)`` for many findings; unknown strings (NaN rows) warned about once.

    Returns the label matrix and ``{unknown string: count}``.
    """
    rows, unknown = [], Counter()
    for finding in findings:
        labels, known = finding_to_labels(finding, exhaustive)
        rows.append(labels)
        if not known:
            unknown[str(finding)] += 1
    if unknown:
        where = f"{source}: " if source else ""
        msg = (f"{where}{sum(unknown.values())} row(s) with finding(s) the vocabulary does not "
               f"know, kept as unlabelled (all NaN): {dict(unknown)}. Add them to "
               f"training.data.vocab.TERMS if they are real findings.")
        log.warning(msg)
        warnings.warn(msg, stacklevel=2)
    out = np.vstack(rows) if rows else np.zeros((0, len(PATHOLOGIES)), dtype=np.float32)
    return out.astype(np.float32), dict(unknown)


def apply_hierarchy(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fill what explicit labels imply; return ``(filled, conflict_rows_mask)``.

    COVID-19/SARS=1 → Viral=1; a type=1 → Pneumonia=1; a disease=1 → No Finding=0;
    No Finding=1 → every disease 0. Only NaN cells are filled; a row whose explicit
    values contradict an implication is flagged in the mask.
    """
    out = np.array(labels, dtype=np.float32, copy=True)
    col = {p: i for i, p in enumerate(PATHOLOGIES)}
    conflict = np.zeros(len(out), dtype=bool)

    def imply(when: np.ndarray, target: str, value: float) -> None:
        cells = out[:, col[target]]
        conflict[when & ~np.isnan(cells) & (cells != value)] = True
        cells[when & np.isnan(cells)] = value

    for v in _VIRUSES:
        imply(out[:, col[v]] == 1, VIRAL, 1.0)
    for t in _TYPES:
        imply(out[:, col[t]] == 1, PNEU, 1.0)
    sick = (out[:, [col[d] for d in DISEASES]] == 1).any(axis=1)
    imply(sick, NF, 0.0)
    for d in DISEASES:
        imply(out[:, col[NF]] == 1, d, 0.0)
    return out, conflict
