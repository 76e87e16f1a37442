"""A fair side-by-side comparison of several saved models on the same test images.

Same split (the cards' split hashes must agree), same rows, same patient resamples for
every CI, thresholds chosen on each model's validation part, and a paired bootstrap of the
macro ROC-AUC between the best model and each other one. Case by case (``cases.json``): the
cards' own thresholds through the runtime's decision rule, as the app serves them.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from training import io
from training.errors import ImageDecodeError, ModelCardError, SplitError
from training.evaluation.bootstrap import ScalarMetric, paired_bootstrap
from training.evaluation.estimate import Estimate
from training.data.spec import DataSpec
from training.evaluation.evalset import check_overlap, image_cache, load_eval_set, training_split
from training.evaluation.cases import CASES_FILE, GALLERY_K
from training.evaluation.evaluate import DISCLAIMER, SEED, model_thresholds, rounded, score, slug, write_json
from training.evaluation.gallery import write_cases
from training.evaluation.predict import predict_paths
from training.evaluation.report import render_comparison
from training.evaluation import plots
from training.preprocess import load_image
from training.runtime import Prediction, Runtime, load_all

log = logging.getLogger(__name__)

#: Metrics shown per output / class in the comparison table (each with its CI).
COMPARE_METRICS: tuple[str, ...] = ("precision", "recall", "f1", "specificity", "roc_auc")


def _check_same_task(models: Sequence[Runtime]) -> None:
    first = models[0]
    for m in models[1:]:
        if (m.card.task, m.kind, m.outputs) != (first.card.task, first.kind, first.outputs):
            raise ModelCardError(f"models {first.name!r} and {m.name!r} solve different tasks "
                                 f"({first.card.task} {first.outputs} vs {m.card.task} "
                                 f"{m.outputs}). What to do: compare models of one task.")


def _check_same_split(models: Sequence[Runtime], allow: bool) -> bool:
    """True when the cards record different split files (allowed only with ``allow``)."""
    hashes = {m.name: m.card.split.sha256 for m in models}
    if len(set(hashes.values())) <= 1:
        return False
    if not allow:
        listed = ", ".join(f"{k}: {str(v)[:12]}" for k, v in hashes.items())
        raise SplitError(f"the models were trained on different splits (split SHA-256 {listed}); "
                         "a comparison would not be fair. What to do: retrain them on one split "
                         "(train-all), or pass allow_split_mismatch=True to compare anyway.")
    log.warning("comparing models trained on different splits (allow_split_mismatch)")
    return True


def latency_ms(m: Runtime, image: np.ndarray, repeats: int = 5) -> float:
    """Median wall time of single-image calls of the runtime's compiled call (what the app
    serves with), after a warm-up call that traces it."""
    x = image[None]
    m.forward(x, batch_size=1)  # warm-up: traces and compiles
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        m.forward(x, batch_size=1)
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000)


def _row(m: Runtime, scored: dict, thr: dict, latency: float) -> dict[str, Any]:
    """One model of compare.json: what it is and costs, and ``estimates`` as objects:
    ``{output | "macro" | "overall": {metric: {"value", "low", "high"}}}``."""
    card = m.card
    mets = scored["metrics"]
    sections = dict(mets["per_output"])
    pn = scored.get("positive_negative") or {}
    sections.update({k: v for k, v in pn.items() if k != "class" and k not in sections})
    estimates = {name: {metric: _cell(d[metric]) for metric in COMPARE_METRICS}
                 for name, d in sections.items()}
    estimates["macro"] = {"roc_auc": _cell(mets["macro"]["roc_auc"])}
    if m.kind == "single":
        estimates["overall"] = {k: _cell(mets[k]) for k in ("accuracy", "balanced_accuracy")}
    return {"model": m.name, "architecture": card.architecture, "mode": card.transfer.mode,
            "params_total": (card.params or {}).get("total"),
            "params_trainable": (card.params or {}).get("trainable"),
            "seconds_per_epoch": card.training.seconds_per_epoch,
            "latency_ms": latency, "threshold_method": thr["method"], "estimates": estimates,
            "transfer": _transfer(card, m.outputs)}


def _transfer(card: Any, outputs: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per output, the card's transfer evidence status and its best held-out AUC (or None),
    shown beside this comparison's (internal) test AUC."""
    ev = card.evidence
    out = {}
    for o in outputs:
        best = ev.best_transfer(o) if ev else None
        out[o] = {"status": ev.status(o) if ev else None,
                  "held_out": None if best is None else {**_cell(best.auc), "what": best.what}}
    return out


def _cell(cell: Any) -> dict[str, Any]:
    return {k: v for k, v in Estimate.of(cell).to_json().items() if k in ("value", "low", "high")}


def flat_row(row: dict[str, Any]) -> dict[str, Any]:
    """A compare.json row as one table row (compare.csv, compare.html): ``"<output>: <metric>"``
    columns with ``" low"``/``" high"`` beside them (``overall`` metrics without a prefix)."""
    out = {k: v for k, v in row.items() if k not in ("estimates", "transfer")}
    for section, metrics in row["estimates"].items():
        for metric, e in metrics.items():
            name = metric if section == "overall" else f"{section}: {metric}"
            out[name], out[f"{name} low"], out[f"{name} high"] = e["value"], e["low"], e["high"]
    return out


def compare_models(model_dirs: Sequence[str | Path], data: DataSpec | Sequence[str], split: str | None,
                   part: str = "test", out_dir: str | Path = "compare", n_boot: int = 1000,
                   allow_split_mismatch: bool = False, allow_overlap: bool = False,
                   threshold_method: str = "youden", target_sensitivity: float | None = None,
                   batch_size: int = 32, cache_dir: str | Path | None = None,
                   gallery_k: int = GALLERY_K) -> pd.DataFrame:
    """Evaluate every model on the same part of one split; one row per model.

    ``data``: a DataSpec (paths alone: default options), read as in ``evaluate_model``.

    Writes ``compare.csv``, ``compare.json``, ``compare.html``, per output ROC and PR curves
    with each model's operating point and reliability diagrams (PNG), and the case-level
    comparison (``cases.json``: the disagreement gallery of ``gallery_k`` cases plus every
    split decision with each model's Grad-CAM, shared errors, κ and McNemar; see
    :mod:`training.evaluation.gallery`) in ``out_dir``. Refuses models of different tasks, models trained on different splits
    (unless ``allow_split_mismatch``) and test images a model trained on (unless
    ``allow_overlap``).
    """
    models = load_all(model_dirs)
    _check_same_task(models)
    mismatch = _check_same_split(models, allow_split_mismatch)
    first = models[0]
    spec = DataSpec.of(data)
    evs = load_eval_set(first.card, first.directory, spec, split, part, False)
    overlap, thresholds, cache = {}, {}, image_cache(cache_dir)
    for m in models:
        seen = training_split(m.card, m.directory)
        overlap[m.name] = check_overlap(evs.paths, list(evs.groups), seen, allow_overlap)
        # On the calibrated scale, as served (and as the card's fallback thresholds are).
        thresholds[m.name] = model_thresholds(m, evs, seen, threshold_method, target_sensitivity,
                                              batch_size, cache, calibration=m.calibration)
    probs, errors = predict_paths(models, evs.paths, batch_size, cache)
    bad = [(p, e) for p, e in zip(evs.paths, errors) if e is not None]
    if bad and spec.on_error == "raise":
        raise ImageDecodeError(f"{len(bad)} test images cannot be read, e.g. {bad[0][1]}",
                               hint="fix or remove them, or use on_error='skip'")
    ok = np.array([e is None for e in errors], dtype=bool)
    Y, groups = evs.targets[ok], evs.groups[ok]
    # The card's thresholds through the runtime's decision rule, as served: the case-level part.
    preds = {m.name: m.interpret(p[ok]) for m, p in zip(models, probs)}
    probs = {name: p.calibrated for name, p in preds.items()}

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sample = _first_image(evs.paths, ok, first)
    rows, scored = [], {}
    for m in models:
        scored[m.name] = score(Y, probs[m.name], m.kind, m.outputs, thresholds[m.name]["values"],
                               groups, n_boot)
        rows.append(_row(m, scored[m.name], thresholds[m.name], latency_ms(m, sample)))
    best, paired = _paired(models, Y, probs, groups, n_boot)
    for r in rows:
        r["macro AUC diff vs best"] = paired.get(r["model"], {}).get("diff")
        r["macro AUC p-value vs best"] = paired.get(r["model"], {}).get("p_value")
    structured, rows = rows, [flat_row(r) for r in rows]
    cases = write_cases(out, models, [p for p, good in zip(evs.paths, ok) if good], Y, groups,
                        preds, n_boot, SEED, gallery_k)
    for j, o in enumerate(first.outputs):
        cases[o]["figures"] = _figures(out, o, j, Y, preds)
    figures = [f for o in first.outputs for f in cases[o]["figures"].values()]
    df = pd.DataFrame(rows)
    io.write_csv(out / "compare.csv", df)
    summary = rounded({"split": evs.split, "split_sha256": first.card.split.sha256,
                       "part": evs.part, "test_set": evs.test_set,
                       "data": list(spec.data), "n_images": int(len(Y)),
                       "n_patients": int(pd.Series(groups).nunique()), "n_boot": n_boot,
                       "seed": SEED, "split_mismatch": mismatch, "best": best, "paired": paired,
                       "overlap": overlap, "thresholds": thresholds, "skipped": bad,
                       "figures": figures, "disclaimer": DISCLAIMER})
    table = rounded(df.to_dict(orient="records"))
    write_json({**summary, "models": rounded(structured),
                "details": {k: v["metrics"] for k, v in scored.items()}}, out / "compare.json")
    io.write_text(out / "compare.html", render_comparison(summary, table, list(df.columns)))
    write_json(rounded({"k": gallery_k, "models": [m.name for m in models], "n_boot": n_boot,
                        "outputs": cases}), out / CASES_FILE)
    return df


def _figures(out: Path, output: str, j: int, Y: np.ndarray, preds: dict[str, Prediction]) -> dict[str, str]:
    """One output's figures: ROC and PR with each model's operating point, reliability side by side."""
    marked = {n: (Y[:, j], p.calibrated[:, j], p.positive[:, j] if p.decided[j] else None)
              for n, p in preds.items()}
    s = slug(output)
    return {"roc": plots.plot_marked_curves(marked, "roc", out / f"roc_{s}.png", f"ROC: {output}").name,
            "pr": plots.plot_marked_curves(marked, "pr", out / f"pr_{s}.png",
                                           f"Precision-recall: {output}").name,
            "reliability": plots.plot_reliability_panels(
                {n: (Y[:, j], p.calibrated[:, j]) for n, p in preds.items()},
                out / f"reliability_{s}.png", f"Reliability: {output}").name}


def _first_image(paths: list[str], ok: np.ndarray, m: Runtime) -> np.ndarray:
    if not ok.any():
        raise ImageDecodeError("no test image could be read", hint="check the data")
    return load_image(paths[int(np.flatnonzero(ok)[0])], m.preprocess)


def _paired(models: Sequence[Runtime], Y: np.ndarray, probs: dict[str, np.ndarray],
            groups: np.ndarray, n_boot: int) -> tuple[str, dict[str, dict]]:
    """The model with the highest macro ROC-AUC, and its paired bootstrap against each other."""
    metric = ScalarMetric("roc_auc", kind=models[0].kind)
    aucs = {m.name: metric(Y, probs[m.name]) for m in models}
    best = max(aucs, key=lambda k: -np.inf if np.isnan(aucs[k]) else aucs[k])
    paired = {m.name: paired_bootstrap(metric, Y, probs[best], probs[m.name], groups, n_boot, seed=SEED)
              for m in models if m.name != best}
    return best, paired
