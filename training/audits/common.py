"""What the shortcut checks share: patient-bootstrap scoring, loading, the JSON + HTML output."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from training import io
from training.html import fmt, render
from training.data.formats import load_datasets
from training.data.spec import DataSpec
from training.evaluation import metrics as M
from training.evaluation.bootstrap import attach_ci, bootstrap_metrics
from training.evaluation.evaluate import DISCLAIMER, rounded, write_json


log = logging.getLogger(__name__)


def scored(Y: np.ndarray, P: np.ndarray, names: Sequence[str], groups: np.ndarray,
            n_boot: int, seed: int) -> dict[str, Any]:
    """Macro ROC-AUC, balanced accuracy and per-class ROC-AUC with patient-bootstrap CIs."""
    m = attach_ci(M.compute_metrics(Y, P, "single", names),
                  bootstrap_metrics(Y, P, "single", names, None, groups, n_boot, 0.05, seed))
    return {"roc_auc": m["macro"]["roc_auc"], "balanced_accuracy": m["balanced_accuracy"],
            "per_class_roc_auc": {n: m["per_output"][n]["roc_auc"] for n in names},
            "confusion_matrix": m["confusion_matrix"], "n": m["n"]}


def ci_text(v: Any) -> str:
    if isinstance(v, dict):
        return f"{fmt(v.get('value'))} (95% CI {fmt(v.get('low'))}–{fmt(v.get('high'))})"
    return fmt(v)


def write_check(result: dict[str, Any], out_dir: str | Path, name: str, title: str,
           rows: list[list[Any]], header: list[str]) -> dict[str, Any]:
    """``<name>.json`` (rounded) and ``<name>.html`` (summary paragraph + one table)."""
    out = Path(out_dir)
    result = rounded({**result, "disclaimer": DISCLAIMER})
    write_json(result, out / f"{name}.json")
    page = render("check.html", title=title, summary=result["summary"], header=header,
                  rows=[[str(c) for c in r] for r in rows], disclaimer=DISCLAIMER)
    io.write_text(out / f"{name}.html", page)
    return result


def load_data(data: DataSpec | Sequence[str] | str, on_error: str = "skip") -> Any:
    """The datasets of ``data``: a spec as it is; paths alone with ``on_error``."""
    return load_datasets(data if isinstance(data, DataSpec) else DataSpec(data, on_error=on_error))


def patient_groups(ds: Any) -> np.ndarray:
    return ds.meta["patient"].astype(str).to_numpy(dtype=object)
