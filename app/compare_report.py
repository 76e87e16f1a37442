"""The ``python -m training compare`` report (compare.json/csv + figures), if present.

``training.evaluation.compare.compare_models`` writes ``compare.json`` with the test set
(``split``, ``part``, ``test_set``, ``n_images``, ``n_patients``, ``n_boot``), the ``best``
model, ``paired`` bootstrap tests of the macro AUC against it, the ``figures`` and one
``models`` row per model whose ``estimates`` are objects, ``{output | "macro" | "overall":
{metric: {"value", "low", "high"}}}``. :func:`load_report` turns that into
:class:`CompareView`; a report without that structure is still shown as a plain table.
"""
from __future__ import annotations

import base64
import csv
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.metrics_view import CI_LEVEL, METRICS, Estimate, split_name
from training.evaluation.cases import CASES_FILE
from training.data.splits import split_hash

log = logging.getLogger(__name__)


@dataclass
class ModelColumn:
    """One compared model: what it is, what it costs, and how it did."""

    name: str
    architecture: str | None
    mode: str | None
    params_total: int | None
    params_trainable: int | None
    seconds_per_epoch: float | None
    latency_ms: float | None
    threshold_method: str | None
    macro_auc: Estimate
    per_output: dict[str, list[Estimate]]          # output -> METRICS order
    is_best: bool = False
    vs_best: Estimate | None = None                # paired macro-AUC difference best - this
    p_value: float | None = None
    # output -> (the card's transfer evidence status, its best held-out AUC or None)
    transfer: dict[str, tuple[str | None, Estimate | None]] = field(default_factory=dict)


@dataclass
class CompareView:
    """The structured comparison: the test set, one column per model, the ROC overlays."""

    test_set: str | None
    split: str | None
    split_sha256: str | None
    part: str | None
    n_images: int | None
    n_patients: int | None
    n_boot: int | None
    best: str | None
    split_mismatch: bool
    outputs: list[str]
    models: list[ModelColumn]
    skipped: int = 0
    disclaimer: str | None = None
    labels: list[str] = field(default_factory=lambda: [label for _, label in METRICS])
    ci: str = CI_LEVEL


@dataclass
class CompareReport:
    folder: Path
    table: list[dict[str, str]] = field(default_factory=list)
    summary: Any = None
    images: list[tuple[str, str]] = field(default_factory=list)   # (file name, data URI)
    view: CompareView | None = None
    error: str | None = None

    @property
    def columns(self) -> list[str]:
        return list(self.table[0]) if self.table else []


#: ``estimates`` sections that are not outputs
SUMMARY_SECTIONS = ("macro", "overall")


def _outputs(rows: list[dict[str, Any]], details: Any) -> list[str]:
    """The compared outputs: from the metric details, else the first model's estimates."""
    if isinstance(details, dict):
        for d in details.values():
            if isinstance(d, dict) and d.get("outputs"):
                return [str(o) for o in d["outputs"]]
    return [str(o) for o in rows[0]["estimates"] if o not in SUMMARY_SECTIONS]


def _estimate(row: dict[str, Any], section: str, metric: str) -> Estimate:
    return Estimate.of((row["estimates"].get(section) or {}).get(metric))


def _column(row: dict[str, Any], outputs: list[str], best: Any, paired: dict) -> ModelColumn:
    name = str(row.get("model"))
    test = paired.get(name) if isinstance(paired.get(name), dict) else None
    return ModelColumn(
        name=name, architecture=row.get("architecture"), mode=row.get("mode"),
        params_total=row.get("params_total"), params_trainable=row.get("params_trainable"),
        seconds_per_epoch=row.get("seconds_per_epoch"), latency_ms=row.get("latency_ms"),
        threshold_method=row.get("threshold_method"),
        macro_auc=_estimate(row, "macro", "roc_auc"),
        per_output={o: [_estimate(row, o, key) for key, _ in METRICS] for o in outputs},
        is_best=name == best,
        vs_best=Estimate.of({"value": test.get("diff"), "low": test.get("low"),
                             "high": test.get("high")}) if test else None,
        p_value=test.get("p_value") if test else None, transfer=_transfer(row, outputs))


def _transfer(row: dict[str, Any], outputs: list[str]) -> dict[str, tuple[str | None, Estimate | None]]:
    raw = row.get("transfer") if isinstance(row.get("transfer"), dict) else {}
    out = {}
    for o in outputs:
        t = raw.get(o) if isinstance(raw.get(o), dict) else {}
        out[o] = (t.get("status"), Estimate.of(t["held_out"]) if t.get("held_out") else None)
    return out


def _split_sha256(split: Any) -> str | None:
    """The SHA-256 of the split file the comparison used (as model cards record it), if readable."""
    if not split or not Path(str(split)).is_file():
        return None

    return split_hash(str(split))


def compare_view(summary: Any) -> CompareView | None:
    """The structured view of a ``compare.json``; None if it is not compare_models' output."""
    if not isinstance(summary, dict):
        return None
    rows = summary.get("models")
    if not isinstance(rows, list) or not rows or not all(
            isinstance(r, dict) and "model" in r and isinstance(r.get("estimates"), dict) for r in rows):
        return None
    outputs = _outputs(rows, summary.get("details"))
    paired = summary.get("paired") if isinstance(summary.get("paired"), dict) else {}
    best = summary.get("best")
    return CompareView(
        test_set=summary.get("test_set"), split=split_name(summary.get("split")),
        split_sha256=summary.get("split_sha256") or _split_sha256(summary.get("split")),
        part=summary.get("part"),
        n_images=summary.get("n_images"), n_patients=summary.get("n_patients"),
        n_boot=summary.get("n_boot"), best=best, split_mismatch=bool(summary.get("split_mismatch")),
        outputs=outputs, models=[_column(r, outputs, best, paired) for r in rows],
        skipped=len(summary.get("skipped") or []), disclaimer=summary.get("disclaimer"))


def _figures(folder: Path, summary: Any) -> list[Path]:
    """The report's figures in its own order, else every PNG of the folder."""
    listed = summary.get("figures") if isinstance(summary, dict) else None
    if isinstance(listed, list) and listed:
        # Only bare file names inside the folder: compare.json must not point anywhere else.
        return [folder / Path(str(f)).name for f in listed if (folder / Path(str(f)).name).is_file()]
    return sorted(folder.glob("*.png"))


def load_report(folder: str | Path) -> CompareReport | None:
    """The report in ``folder``, or None when neither compare.json nor compare.csv exists."""
    folder = Path(folder)
    json_path, csv_path = folder / "compare.json", folder / "compare.csv"
    if not json_path.is_file() and not csv_path.is_file():
        return None
    report = CompareReport(folder)
    if csv_path.is_file():
        with csv_path.open(newline="", encoding="utf-8") as fh:
            report.table = list(csv.DictReader(fh))
    if json_path.is_file():
        try:
            report.summary = json.loads(json_path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            report.error = (f"{json_path.name} cannot be read ({exc}). What to do: run "
                            "python -m training compare again.")
            log.warning("%s: %s", json_path, exc)
        report.view = compare_view(report.summary)
        if report.view is None:
            log.info("%s is not compare_models' structure: showing it as a plain table", json_path)
    # Inlined as data URIs (the CSP allows them, and no route serves arbitrary files), unless
    # cases.json lists them: /compare/files serves those, per output (app.compare_cases).
    for png in [] if (folder / CASES_FILE).is_file() else _figures(folder, report.summary):
        uri = "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode("ascii")
        report.images.append((png.name, uri))
    return report
