"""The case-level comparison on ``/compare``: ``cases.json`` (written by
``training.evaluation.gallery.write_cases`` beside ``compare.json``) as display records.

Pictures stay files in the compare folder; pages link them through ``/compare/files/<name>``,
which serves only the files :func:`pictures` lists (a gallery inlined as data URIs would be
megabytes). ``case_files.json`` (the gallery's image paths) is read only by :func:`case_file`,
for the "open this case" route: no path reaches a page or the API.
"""
from __future__ import annotations

import functools
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.metrics_view import Estimate
from training.evaluation.cases import CASE_FILES, CASES_FILE

log = logging.getLogger(__name__)


@dataclass
class GalleryCell:
    """One model on one gallery case: its probability against its threshold, its heatmap."""

    model: str
    probability: float | None
    threshold: float | None
    positive: bool | None          # None: the model decides nothing on this output
    heatmap: str | None            # file name in the compare folder
    why: str | None                # why there is no heatmap


@dataclass
class GalleryRow:
    case: int
    truth: float | None            # None: unknown (not annotated)
    spread: float | None
    split: bool
    image: str | None
    cells: list[GalleryCell]


@dataclass
class PairRow:
    """Two models' decisions: Cohen's κ (CI) and McNemar's test (b: only a right, c: only b)."""

    a: str
    b: str
    kappa: Estimate
    only_a: int
    only_b: int
    p_value: float | None
    method: str


@dataclass
class OutputCasesView:
    output: str
    models: list[str]
    deciding: list[str]
    undecided: dict[str, str]
    n_known: int | None
    errors: dict[str, int]
    shared: list[tuple[int, int]]                      # (k models wrong, cases)
    subsets: list[tuple[list[str], int]]               # UpSet rows: exact set of models wrong
    alone_right: dict[str, list[int]]
    pairs: list[PairRow]
    rows: list[GalleryRow]
    figures: dict[str, str] = field(default_factory=dict)   # roc / pr / reliability -> file

    @property
    def max_subset(self) -> int:
        return max([n for _, n in self.subsets] or [1])


def _float(v: Any) -> float | None:
    return Estimate.of(v).value


def _row(raw: dict[str, Any], models: list[str]) -> GalleryRow:
    cells = raw.get("models") or {}
    return GalleryRow(
        case=int(raw["case"]), truth=_float(raw.get("truth")), spread=_float(raw.get("spread")),
        split=bool(raw.get("split")), image=raw.get("image"),
        cells=[GalleryCell(m, _float(c.get("probability")), _float(c.get("threshold")), c.get("positive"),
                           c.get("file"), c.get("why"))
               for m in models if isinstance(c := cells.get(m), dict)])


def _pair(raw: dict[str, Any]) -> PairRow:
    mc = raw.get("mcnemar") or {}
    return PairRow(str(raw.get("a")), str(raw.get("b")), Estimate.of(raw.get("kappa")),
                   int(mc.get("b", 0)), int(mc.get("c", 0)), _float(mc.get("p_value")),
                   str(mc.get("method", "")))


def _output(raw: dict[str, Any]) -> OutputCasesView:
    models = [str(m) for m in raw.get("models") or []]
    return OutputCasesView(
        output=str(raw.get("output")), models=models, deciding=list(raw.get("deciding") or []),
        undecided=dict(raw.get("undecided") or {}), n_known=raw.get("n_known"),
        errors=dict(raw.get("errors") or {}),
        shared=sorted((int(k), int(n)) for k, n in (raw.get("shared") or {}).items()),
        subsets=[(list(s["models"]), int(s["count"])) for s in raw.get("subsets") or []],
        alone_right={k: list(v) for k, v in (raw.get("alone_right") or {}).items()},
        pairs=[_pair(p) for p in raw.get("pairs") or []],
        rows=[_row(r, models) for r in raw.get("rows") or []],
        figures={k: str(v) for k, v in (raw.get("figures") or {}).items()})


def read_cases(folder: str | Path) -> dict[str, Any] | None:
    """``cases.json`` as written (the API returns it), or None when absent or unreadable."""
    path = Path(folder) / CASES_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        log.warning("%s cannot be read: %s", CASES_FILE, type(exc).__name__)
        return None
    return data if isinstance(data, dict) and isinstance(data.get("outputs"), dict) else None


def load_cases(folder: str | Path) -> list[OutputCasesView]:
    """One view per output of ``cases.json`` (empty without one); malformed entries skipped."""
    data = read_cases(folder) or {"outputs": {}}
    views = []
    for raw in data["outputs"].values():
        try:
            views.append(_output(raw))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            log.warning("%s: output skipped (%s)", CASES_FILE, type(exc).__name__)
    return views


def pictures(folder: str | Path) -> frozenset[str]:
    """Every file ``cases.json`` names (gallery JPEGs, figure PNGs): all the route may serve."""
    path = Path(folder) / CASES_FILE
    # A page asks for dozens of pictures: read cases.json once per version of the file.
    return _pictures(str(folder), path.stat().st_mtime_ns) if path.is_file() else frozenset()


@functools.lru_cache(maxsize=4)
def _pictures(folder: str, mtime_ns: int) -> frozenset[str]:
    out: set[str] = set()
    for v in load_cases(folder):
        out |= set(v.figures.values())
        for r in v.rows:
            out |= {r.image} if r.image else set()
            out |= {c.heatmap for c in r.cells if c.heatmap}
    return frozenset(out)


def case_file(folder: str | Path, case: int) -> Path | None:
    """The image file of gallery case ``case`` (server side only), or None."""
    path = Path(folder) / CASE_FILES
    try:
        files = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (UnicodeDecodeError, ValueError):
        return None
    found = files.get(str(case)) if isinstance(files, dict) else None
    return Path(found) if isinstance(found, str) and Path(found).is_file() else None
