"""Evaluate one saved model on a test set: metrics with patient-bootstrap CIs, report, card.

Honesty rules enforced here:

* the test images must not be images the model trained or validated on: matched by path,
  by patient id and by file content (SHA-256) against the model's own split; refused unless
  ``allow_overlap`` (then every output says so);
* thresholds come from the validation part of the model's split (never from the test set),
  through the one post-training step (``evaluation.posttrain``), and only where it holds enough
  positive and negative patients (else "not estimable": no decision for that output);
* probabilities are calibrated by the card's calibration (or one refit on that validation
  part, for experiments) before thresholds and metrics; the report shows ECE before and after;
* data from another source than training, without a split, is an **external** test;
* every metric gets a 95 % CI resampled by patient.
"""
from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from training import io
from training.errors import ImageDecodeError, SplitError
from training.evaluation import metrics as M
from training.evaluation.bootstrap import attach_ci, bootstrap_metrics
from training.evaluation.calibration import METHODS as CALIBRATION_METHODS
from training.evaluation.calibration import Calibration
from training.evaluation.records import TestEvaluation
from training.evaluation.posttrain import PostTraining, post_train
from training.evaluation.reliability import calibration_section
from training.evaluation.predict import predict_paths
from training.evaluation.report import DECIMALS, render_evaluation
from training.runtime import Runtime, load
from training.models.card import ModelCard, update_card
from training.evaluation.thresholds import MIN_PATIENTS, choose_record, thresholded_outputs
from training.data.formats import load_datasets
from training.data.spec import DataSpec
from training.data.splits import split_hash
from training.errors import CXRError
from training.evaluation import plots
from training.data.site_split import SITE_PART
from training.evaluation import site_evidence
from training.evaluation.model_plots import figure_names, keep_plots

# The evaluated data and the overlap check live in evalset (re-exported: older imports).
from training.evaluation.evalset import (EvalSet, check_overlap, image_cache, load_eval_set,  # noqa: E402,F401
                                         patient_ids, task_targets, training_split)

log = logging.getLogger(__name__)

DISCLAIMER = ("Research tool. Not a medical device and not validated for clinical use: these "
              "numbers describe one model on one data set and do not establish diagnostic "
              "performance. Do not use for diagnosis or treatment decisions.")
ALPHA, SEED = 0.05, 0


# ------------------------------------------------------------------ thresholds

def _validation_rows(card: ModelCard, evs: EvalSet,
                     seen: pd.DataFrame | None) -> tuple[Any, str] | None:
    """The validation images of the model's split (from the loaded data, else its training data)."""
    if seen is None:
        return None
    val = set(seen.loc[seen["part"] == "val", "path"])
    if not val:
        return None
    mask = evs.full.meta["path"].astype(str).isin(val).to_numpy()
    if mask.any():
        return evs.full.subset(mask), "the evaluated data"
    trained = DataSpec.from_dict(card.training.config)
    data = [d for d in trained.data if Path(d).exists()]
    if not data:
        return None
    try:
        ds = load_datasets(trained.replace(data=data, on_error="skip"))
    except (CXRError, TypeError) as exc:
        log.warning("cannot load the training data for validation thresholds: %s", exc)
        return None
    mask = ds.meta["path"].astype(str).isin(val).to_numpy()
    return (ds.subset(mask), "the training data") if mask.any() else None


@dataclass
class ValidationPredictions:
    """The model's RAW probabilities on its validation part (shared by thresholds and calibration)."""

    Y: np.ndarray
    P: np.ndarray
    groups: np.ndarray
    where: str  # which loaded data held the validation images

    @property
    def n(self) -> int:
        return int(len(self.Y))


def validation_predictions(lm: Runtime, evs: EvalSet, seen: pd.DataFrame | None,
                           batch_size: int = 32, cache: Any = None) -> ValidationPredictions | None:
    """Predictions on the validation images of the model's split; None when unavailable."""
    found = _validation_rows(lm.card, evs, seen)
    if found is None:
        return None
    val, where = found
    probs, errors = predict_paths([lm], val.meta["path"].astype(str).tolist(), batch_size, cache)
    ok = np.array([e is None for e in errors], dtype=bool)
    return ValidationPredictions(task_targets(val, lm.card)[ok], probs[0][ok],
                                 patient_ids(val.meta)[ok], where)


def _uses_validation(lm: Runtime, method: str) -> bool:
    """Whether thresholds of ``method`` are chosen on validation (not argmax, not fixed)."""
    return method != "fixed" and bool(thresholded_outputs(lm.kind, lm.outputs))


def post_training(lm: Runtime, val: ValidationPredictions | None, calibration: str | Calibration,
                  method: str = "youden", target_sensitivity: float | None = None,
                  min_patients: int = MIN_PATIENTS) -> PostTraining | None:
    """The post-training step on the model's validation part (None without it).

    ``calibration``: "card" (the card's, kept), a method refit here, or a :class:`Calibration`.
    """
    if val is None:
        return None
    cal = lm.calibration if calibration == "card" else calibration
    return post_train(val.Y, val.P, lm.kind, lm.outputs, val.groups, calibration=cal,
                      threshold_method=method, target_sensitivity=target_sensitivity,
                      min_patients=min_patients)


def thresholds_on(lm: Runtime, post: PostTraining | None, val: ValidationPredictions | None,
                  method: str = "youden", target_sensitivity: float | None = None,
                  calibration: Calibration | None = None) -> dict[str, Any]:
    """The result's ``thresholds``: the record (``post``'s, chosen on validation), its sentence,
    where it was fitted and the values metrics use (0.5 stands in where not estimable).

    Fixed or argmax: no validation needed. No validation data: the card's record, said so.
    """
    source = None
    if not _uses_validation(lm, method):
        record = choose_record(None, None, lm.kind, lm.outputs, method=method,
                               target_sensitivity=target_sensitivity,
                               calibration=None if calibration is None else calibration.method)
    elif post is None:
        log.warning("%s: no validation images available; using the card's thresholds", lm.name)
        record, source = lm.card.thresholds, "card (validation images unavailable)"
    else:
        record, source = post.thresholds, f"validation part of the model's split, from {val.where}"
    if record is None:
        return {"method": "none in the model card", "source": source, "values": None, "record": None}
    return {"method": record.describe(), "source": source, "n_validation": None if val is None else val.n,
            "values": record.decided() or None, "not_estimable": record.not_estimable(),
            "record": record.to_json()}


def model_thresholds(lm: Runtime, evs: EvalSet, seen: pd.DataFrame | None,
                     method: str = "youden", target_sensitivity: float | None = None,
                     batch_size: int = 32, cache: Any = None,
                     calibration: Calibration | None = None,
                     min_patients: int = MIN_PATIENTS) -> dict[str, Any]:
    """:func:`thresholds_on` the model's validation part (predicted here).

    Without ``calibration`` the thresholds are on the raw scale (for raw test probabilities).
    """
    cal = calibration or Calibration.identity(lm.kind, lm.outputs, "raw scale")
    val = validation_predictions(lm, evs, seen, batch_size, cache) if _uses_validation(lm, method) else None
    post = post_training(lm, val, cal, method, target_sensitivity, min_patients)
    return thresholds_on(lm, post, val, method, target_sensitivity, cal)


# ------------------------------------------------------------------ calibration

NO_CARD_CALIBRATION = "none (the card has no calibration)"


def resolve_calibration(lm: Runtime, method: str, val: ValidationPredictions | None,
                        post: PostTraining | None) -> tuple[Calibration, str, str]:
    """``(calibration, method label, source)``: the card's (``"card"``) or, for experiments,
    the one ``post`` refit with ``method`` on the model's validation part (``val``)."""
    if method == "card":
        if not lm.card.calibration:
            return Calibration.identity(lm.kind, lm.outputs, NO_CARD_CALIBRATION), NO_CARD_CALIBRATION, "card"
        return lm.calibration, lm.calibration.method, "card"
    if method not in CALIBRATION_METHODS:
        raise ValueError(f"unknown calibration {method!r}; choose 'card' or one of "
                         f"{list(CALIBRATION_METHODS)}")
    if val is None or post is None:
        raise SplitError(f"{lm.directory}: cannot refit the calibration ({method}): the model's "
                         "validation images are unavailable. What to do: pass the training data "
                         "(or its split), or use calibration='card'.")
    cal = post.calibration
    return cal, cal.method, (f"refit ({method}) on the validation part of the model's split, from "
                             f"{val.where} ({val.n} images); the card's calibration is not used")


def calibration_result(cal: Calibration, label: str, source: str, Y: np.ndarray, raw: np.ndarray,
                       P: np.ndarray, groups: np.ndarray, n_boot: int) -> dict[str, Any]:
    """The result's ``calibration``: how, and ECE (patient-bootstrap CI) + curves before/after."""
    return {"method": label, "source": source, "chosen_by": cal.chosen_by, "fitted_on": cal.fitted_on,
            "before": calibration_section(Y, raw, cal.outputs, groups, n_boot, SEED),
            "after": calibration_section(Y, P, cal.outputs, groups, n_boot, SEED)}


def _ece_summary(calib: dict[str, Any]) -> dict[str, Any]:
    """ECE before/after for the card (no curves)."""
    return {"method": calib["method"], "source": calib["source"],
            **{when: {k: v["ece"] for k, v in calib[when].items()} for when in ("before", "after")}}


# ------------------------------------------------------------------ scoring

def positive_negative(Y: np.ndarray, P: np.ndarray, pred: np.ndarray,
                      outputs: Sequence[str]) -> tuple[str, tuple] | None:
    """The COVID-19 output (else the positive class of a 2-class task) seen as a binary problem.

    Returns ``(name, (Y2, P2, pred2, names2))`` with a positive and a negative column.
    """
    for name in ("COVID-19", "COVID-19 positive"):
        if name in outputs:
            j = list(outputs).index(name)
            break
    else:
        if len(outputs) != 2:
            return None
        j = 1
    base = outputs[j].replace(" positive", "")
    y, p, d = Y[:, j], P[:, j], pred[:, j]
    stack = lambda a, b: np.stack([a, b], axis=1)  # noqa: E731
    return base, (stack(y, 1 - y), stack(p, 1 - p), stack(d, 1 - d),
                  [f"{base} positive", f"{base} negative"])


def score(Y: np.ndarray, P: np.ndarray, kind: str, outputs: Sequence[str], thresholds: Any,
          groups: np.ndarray, n_boot: int = 1000, seed: int = SEED) -> dict[str, Any]:
    """Every metric with its patient-bootstrap CI, plus the positive/negative class view."""
    point = M.compute_metrics(Y, P, kind, outputs, thresholds)
    cis = bootstrap_metrics(Y, P, kind, outputs, thresholds, groups, n_boot, ALPHA, seed)
    out = {"metrics": attach_ci(point, cis)}
    known = ~np.isnan(Y).all(axis=1) if kind == "single" else np.ones(len(Y), bool)
    pred = M.predictions(P, kind, thresholds, outputs)
    pn = positive_negative(Y[known], P[known], pred[known], outputs)
    if pn is not None:
        base, (Y2, P2, d2, names2) = pn
        point2 = M.multilabel_metrics(Y2, P2, None, names2, pred=d2)["per_output"]
        ci2 = bootstrap_metrics(Y2, P2, "multilabel", names2, None, groups[known], n_boot,
                                ALPHA, seed, pred=d2)["per_output"]
        out["positive_negative"] = {"class": base, **attach_ci(point2, ci2)}
    return out


# ------------------------------------------------------------------ output files

def rounded(obj: Any, decimals: int = DECIMALS) -> Any:
    """Floats rounded (so the HTML shows exactly the JSON's numbers); NaN/inf -> None."""
    if isinstance(obj, dict):
        return {str(k): rounded(v, decimals) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [rounded(v, decimals) for v in obj]
    if isinstance(obj, np.ndarray):
        return rounded(obj.tolist(), decimals)
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float):
        return round(obj, decimals) if math.isfinite(obj) else None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_") or "output"


def make_figures(Y: np.ndarray, P: np.ndarray, result: dict, outputs: Sequence[str],
                 out_dir: Path) -> dict[str, Any]:
    """ROC, PR, reliability and confusion-matrix PNGs; returns their file names."""
    cal = result["calibration"]
    figs = {"roc": plots.plot_roc(Y, P, outputs, out_dir / "roc.png").name,
            "pr": plots.plot_pr(Y, P, outputs, out_dir / "pr.png").name,
            "reliability_raw": plots.plot_reliability(cal["before"], out_dir / "reliability_raw.png",
                                                      "Reliability: raw probabilities").name,
            "reliability_calibrated": plots.plot_reliability(
                cal["after"], out_dir / "reliability_calibrated.png",
                f"Reliability: calibrated ({cal['method']})").name}
    m = result["metrics"]
    if result["model"]["kind"] == "single":
        figs["confusion"] = [plots.plot_confusion(m["confusion_matrix"], outputs,
                                                  out_dir / "confusion.png").name]
    else:
        figs["confusion"] = [plots.plot_confusion(m["per_output"][o]["confusion_matrix"],
                                                  ["absent", "present"], out_dir / f"confusion_{slug(o)}.png",
                                                  title=o).name for o in outputs]
    return figs


def write_json(obj: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return io.write_text(path, json.dumps(rounded(obj), indent=2, allow_nan=False) + "\n")


def evaluate_model(model_dir: str | Path, data: DataSpec | Sequence[str], split: str | None = None,
                   part: str = "test", out_dir: str | Path = "evaluation", allow_overlap: bool = False,
                   external: bool = False, threshold_method: str = "youden",
                   target_sensitivity: float | None = None, n_boot: int = 1000,
                   batch_size: int = 32,
                   cache_dir: str | Path | None = None, calibration: str = "card",
                   min_patients: int = MIN_PATIENTS) -> dict[str, Any]:
    """Evaluate a saved model; writes ``metrics.json``, ``report.html`` and figures in ``out_dir``.

    See the module docstring for the rules. Returns the content of ``metrics.json`` (rounded).
    Updates the card's ``metrics.test`` and ``test_set`` (part ``site``: its site-held-out
    evidence instead, :mod:`~training.evaluation.site_evidence`); copies the figures into the
    model folder (:mod:`~training.evaluation.model_plots`). ``data``: a DataSpec (paths alone:
    default options; views/modalities left to default are the card's).
    Images go through the preprocessed-image cache (``cache_dir``, default the trainer's).
    ``calibration``: "card" (the card's; none if it has none) or a method of
    ``CHOICES["calibration"]`` refit on the model's validation part (experiments; the card's
    calibration is left as it is). Thresholds and metrics use the calibrated probabilities;
    a threshold needs ``min_patients`` positive and negative validation patients.
    """

    model_dir, out = Path(model_dir), Path(out_dir)
    spec = DataSpec.of(data)
    lm = load(model_dir)
    evs = load_eval_set(lm.card, model_dir, spec, split, part, external)
    seen = training_split(lm.card, model_dir)
    overlap = check_overlap(evs.paths, list(evs.groups), seen, allow_overlap)
    cache = image_cache(cache_dir)
    needs_val = calibration != "card" or _uses_validation(lm, threshold_method)
    val = validation_predictions(lm, evs, seen, batch_size, cache) if needs_val else None
    post = post_training(lm, val, calibration, threshold_method, target_sensitivity, min_patients)
    cal, cal_label, cal_source = resolve_calibration(lm, calibration, val, post)
    thr = thresholds_on(lm, post, val, threshold_method, target_sensitivity, cal)
    probs, errors = predict_paths([lm], evs.paths, batch_size, cache)
    skipped = [{"path": p, "reason": e} for p, e in zip(evs.paths, errors) if e is not None]
    if skipped and spec.on_error == "raise":
        raise ImageDecodeError(f"{len(skipped)} test images cannot be read, e.g. {skipped[0]['reason']}",
                               hint="fix or remove them, or use on_error='skip' (they are then listed "
                                    "in the report)")
    ok = np.array([e is None for e in errors], dtype=bool)
    Y, raw, groups = evs.targets[ok], probs[0][ok], evs.groups[ok]
    P = cal.apply(raw)
    calib = calibration_result(cal, cal_label, cal_source, Y, raw, P, groups, n_boot)
    result = _result(lm, evs, spec.data, overlap, thr, skipped, Y, P, groups, n_boot, calib)
    out.mkdir(parents=True, exist_ok=True)
    result["figures"] = make_figures(Y, P, result, lm.outputs, out)
    result = rounded(result)
    split_sha = split_hash(evs.split) if evs.split else None
    site = None
    if evs.part == SITE_PART:  # transfer evidence, never the card's internal test
        site = site_evidence.site_evaluation(evs, Y, groups, result["metrics"].get("per_output") or {},
                                             lm.outputs, split_sha)
        result = {**result, "notes": result["notes"] + site.notes(), "site_held_out": site.to_json()}
    write_json(result, out / "metrics.json")
    io.write_text(out / "report.html", render_evaluation(result))
    keep_plots(figure_names(result["figures"]), out, model_dir, evs.part or evs.test_set)
    if site is not None:
        site_evidence.record(model_dir, lm.card, site)
        return result
    summary = {k: result[k] for k in ("test_set", "split", "part", "n_images", "n_patients",
                                      "thresholds", "metrics", "overlap")}
    summary["calibration"] = _ece_summary(result["calibration"])
    summary["split_sha256"] = split_sha
    update_card(model_dir, metrics={**lm.card.metrics.to_json(), "test": summary},
                evidence=lm.card.evidence.with_test(TestEvaluation.from_json(summary)).to_json())
    return result


def _result(lm: Runtime, evs: EvalSet, data: Sequence[str], overlap: dict, thr: dict,
            skipped: list, Y: np.ndarray, P: np.ndarray, groups: np.ndarray, n_boot: int,
            calibration: dict) -> dict:
    labelled = ~np.isnan(Y).all(axis=1)
    scored = score(Y, P, lm.kind, lm.outputs, thr["values"], groups, n_boot)
    card = lm.card
    return {
        "model": {"name": lm.name, "dir": str(lm.directory), "architecture": card.architecture,
                  "task": card.task, "kind": lm.kind, "outputs": lm.outputs,
                  "transfer": card.transfer.to_json()},
        "test_set": evs.test_set, "split": evs.split, "part": evs.part,
        "data": [str(d) for d in data],
        "n_images": int(len(Y)), "n_patients": int(pd.Series(groups).nunique()),
        "n_labelled": int(labelled.sum()),
        "thresholds": thr, "overlap": overlap, "notes": evs.notes,
        "skipped": skipped + list(evs.ds.skipped),
        "bootstrap": {"n_boot": n_boot, "alpha": ALPHA, "seed": SEED, "resampling": "patients",
                      "interval": "percentile"},
        **scored,
        "calibration": calibration,
        "disclaimer": DISCLAIMER,
    }
