"""Markdown tables of a ``compare.json`` (for docs): ``python -m training.evaluation.markdown FILE``."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _ci(m: dict[str, Any] | None) -> str:
    if not m or m.get("value") is None:
        return "n/a"
    lo, hi = m.get("low"), m.get("high")
    ci = f" [{lo:.2f}, {hi:.2f}]" if lo is not None and hi is not None else ""
    return f"{m['value']:.2f}{ci}"


def compare_markdown(summary: dict[str, Any]) -> str:
    """A models table and one per-output table (AUC, sensitivity, specificity with 95% CIs)."""
    lines = [f"Test set: part `{summary.get('part')}` of `{summary.get('split')}` "
             f"({summary.get('test_set')}, patient-disjoint), {summary.get('n_images')} images, "
             f"{summary.get('n_patients')} patients; 95% CIs from {summary.get('n_boot')} patient "
             "bootstrap resamples.", "",
             "| model | mode | params (total / trainable) | s/epoch | latency ms | macro AUC [95% CI] | "
             "best − this model, macro AUC [95% CI], p |", "|---|---|---|---|---|---|---|"]
    paired = summary.get("paired") or {}
    for r in summary["models"]:
        p = paired.get(r["model"])
        diff = (f"{p['diff']:+.3f} [{p['low']:+.3f}, {p['high']:+.3f}], p={p['p_value']:.2f}"
                if p else "(best)")
        macro = {"value": r.get("macro: roc_auc"), "low": r.get("macro: roc_auc low"),
                 "high": r.get("macro: roc_auc high")}
        lines.append(f"| {r['model']} | {r['mode']} | {r['params_total']:,} / {r['params_trainable']:,} | "
                     f"{r['seconds_per_epoch']:.0f} | {r['latency_ms']:.0f} | {_ci(macro)} | {diff} |")
    details = summary.get("details") or {}
    first = next(iter(details.values()), None)
    if not first:
        return "\n".join(lines)
    for output, m0 in first["per_output"].items():
        lines += ["", f"**{output}** (test: {m0.get('n_pos')} positive / {m0.get('n_neg')} negative)", "",
                  "| model | ROC-AUC | sensitivity | specificity | PPV | F1 |", "|---|---|---|---|---|---|"]
        for name, d in details.items():
            m = d["per_output"][output]
            lines.append(f"| {name} | {_ci(m.get('roc_auc'))} | {_ci(m.get('recall'))} | "
                         f"{_ci(m.get('specificity'))} | {_ci(m.get('precision'))} | {_ci(m.get('f1'))} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(compare_markdown(json.loads(Path(sys.argv[1]).read_text())))
