"""Calibration maps fitted on validation (measuring calibration: :mod:`.reliability`).

A calibration map turns a model's raw probabilities into calibrated ones. It is fitted on the
validation part only (never the test set), stored in the model card (:meth:`Calibration.to_json`)
and applied wherever probabilities are shown or thresholded (prediction, evaluation, app).

* softmax (``kind="single"``): temperature scaling, ``softmax(log p / T)``: one parameter, rows
  still sum to 1, the arg-max never changes;
* sigmoids (``kind="multilabel"``), per output: Platt scaling ``sigmoid(a * logit(p) + b)`` or
  isotonic regression (a monotone step function, linearly interpolated); ``auto`` chooses by
  cross-validated log loss on the validation set, and uses Platt where an output has too few
  positives or negatives for isotonic (it overfits them);
* ``none``: the identity (an output with one class in validation cannot be calibrated).

Plain functions first; :class:`Calibration` wraps them and records how it was fitted.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import expit, log_softmax, softmax
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from training.config import CHOICES
from training.evaluation.reliability import calibration_report, macro_mean
from training.evaluation.records import CalibrationRecord

METHODS: tuple[str, ...] = CHOICES["calibration"]
SIGMOID_METHODS: tuple[str, ...] = ("platt", "isotonic", "none")
KINDS: tuple[str, ...] = ("single", "multilabel")
#: Probabilities are kept in [EPS, 1 - EPS]: a finite validation set never warrants 0 or 1.
EPS = 1e-6
#: ``auto``: isotonic is considered only with at least this many positives and negatives.
MIN_PER_CLASS = 20
N_FOLDS = 5
#: Nearly unregularised logistic regression (Platt scaling has only two parameters).
PLATT_C = 1e6
#: Temperature search range, as log T (T from about 0.02 to 55).
LOG_T_BOUNDS = (-4.0, 4.0)


# ------------------------------------------------------------------ plain calibration maps

def logit(p: np.ndarray) -> np.ndarray:
    """``log(p / (1 - p))`` with ``p`` kept in [EPS, 1 - EPS] (NaN stays NaN)."""
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p)


def _softmax_logits(P: np.ndarray) -> np.ndarray:
    """Logits of softmax probabilities, up to a per-row constant (which softmax ignores)."""
    return np.log(np.clip(np.asarray(P, dtype=np.float64), EPS, 1.0))


def apply_temperature(P: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log P / T)`` row-wise: rows sum to 1, the arg-max is unchanged."""
    return softmax(_softmax_logits(P) / float(temperature), axis=1)


def _softmax_rows(Y: np.ndarray, P: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows with a full one-hot label and finite probabilities."""
    Y, P = np.asarray(Y, dtype=np.float64), np.asarray(P, dtype=np.float64)
    ok = ~np.isnan(Y).any(axis=1) & (Y.sum(axis=1) > 0) & np.isfinite(P).all(axis=1)
    return Y[ok], P[ok]


def softmax_nll(Y: np.ndarray, P: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of one-hot ``Y`` under ``P`` at ``temperature``."""
    Y, P = _softmax_rows(Y, P)
    return float(-(Y * log_softmax(_softmax_logits(P) / temperature, axis=1)).sum(axis=1).mean())


def fit_temperature(Y: np.ndarray, P: np.ndarray) -> float:
    """The temperature minimising the validation NLL (bounded 1-D search over log T)."""
    Y, P = _softmax_rows(Y, P)
    res = minimize_scalar(lambda u: softmax_nll(Y, P, math.exp(u)), bounds=LOG_T_BOUNDS,
                          method="bounded")
    return float(math.exp(res.x))


def _labelled(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y, p = np.asarray(y, dtype=np.float64).ravel(), np.asarray(p, dtype=np.float64).ravel()
    ok = ~np.isnan(y) & np.isfinite(p)
    return y[ok].astype(np.int64), p[ok]


def fit_platt(y: np.ndarray, p: np.ndarray) -> dict[str, Any]:
    """Platt scaling on ``logit(p)``: ``{"method": "platt", "a", "b"}`` (sigmoid(a·logit + b))."""
    y, p = _labelled(y, p)
    lr = LogisticRegression(C=PLATT_C, max_iter=1000).fit(logit(p)[:, None], y)
    return {"method": "platt", "a": float(lr.coef_[0, 0]), "b": float(lr.intercept_[0])}


def fit_isotonic(y: np.ndarray, p: np.ndarray) -> dict[str, Any]:
    """Isotonic regression: ``{"method": "isotonic", "x", "y"}`` (its breakpoints)."""
    y, p = _labelled(y, p)
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip").fit(p, y)
    return {"method": "isotonic", "x": iso.X_thresholds_.tolist(), "y": iso.y_thresholds_.tolist()}


def apply_sigmoid(p: np.ndarray, params: dict[str, Any]) -> np.ndarray:
    """One sigmoid output through its fitted map (non-decreasing in ``p``; NaN stays NaN)."""
    p = np.asarray(p, dtype=np.float64)
    method = params["method"]
    if method == "none":
        return p.copy()
    if method == "platt":
        out = expit(params["a"] * logit(p) + params["b"])
    else:  # isotonic: np.interp holds the end values beyond the breakpoints (out_of_bounds="clip")
        out = np.interp(p, params["x"], params["y"])
    return np.clip(out, EPS, 1 - EPS)


def _fit_one(y: np.ndarray, p: np.ndarray, method: str) -> dict[str, Any]:
    return fit_platt(y, p) if method == "platt" else fit_isotonic(y, p)


def _cv_log_loss(y: np.ndarray, p: np.ndarray, seed: int, groups: np.ndarray | None) -> dict[str, float]:
    """Out-of-fold log loss of platt and isotonic (folds stratified, by patient when ``groups``)."""
    folds: list = []
    if groups is not None and len(np.unique(groups)) >= N_FOLDS:
        folds = list(StratifiedGroupKFold(N_FOLDS, shuffle=True, random_state=seed).split(p, y, groups))
    if not folds or any(len(np.unique(y[train])) < 2 for train, _ in folds):
        # big patients can leave a fold with one class: then images are split, not patients
        folds = list(StratifiedKFold(N_FOLDS, shuffle=True, random_state=seed).split(p, y))
    oof = {m: np.empty(len(y)) for m in ("platt", "isotonic")}
    for train, held in folds:
        for m in oof:
            oof[m][held] = apply_sigmoid(p[held], _fit_one(y[train], p[train], m))
    return {m: float(log_loss(y, q, labels=[0, 1])) for m, q in oof.items()}


def fit_sigmoid_output(y: np.ndarray, p: np.ndarray, method: str = "auto", seed: int = 0,
                       groups: np.ndarray | None = None) -> dict[str, Any]:
    """The map of one sigmoid output, with ``why`` it is this method (see the module docstring)."""
    known = ~np.isnan(np.asarray(y, dtype=np.float64)) & np.isfinite(np.asarray(p, dtype=np.float64))
    g = None if groups is None else np.asarray(groups, dtype=object)[known]
    y, p = _labelled(y, p)
    n_pos, n_neg = int(y.sum()), int(len(y) - y.sum())
    if min(n_pos, n_neg) == 0:
        why = f"{n_pos} positives and {n_neg} negatives in validation: one class cannot be calibrated"
        return {"method": "none", "reason": why, "why": why}
    if method == "auto":
        if min(n_pos, n_neg) < MIN_PER_CLASS:
            chosen, why = "platt", (f"{n_pos} positives / {n_neg} negatives (< {MIN_PER_CLASS}): "
                                    "isotonic would overfit, platt")
        else:
            cv = _cv_log_loss(y, p, seed, g)
            chosen = "isotonic" if cv["isotonic"] < cv["platt"] else "platt"
            why = (f"{N_FOLDS}-fold CV log loss on validation: platt {cv['platt']:.4f}, "
                   f"isotonic {cv['isotonic']:.4f}")
    else:
        chosen, why = method, f"{method} requested"
    params = {**_fit_one(y, p, chosen), "why": why}
    if chosen == "platt" and params["a"] <= 0:
        why = (f"platt slope {params['a']:.3g} <= 0 (scores not increasing with the label on "
               "validation): not calibrated")
        return {"method": "none", "reason": why, "why": why}
    return params


# ------------------------------------------------------------------ the stored calibration

@dataclass(frozen=True)
class Calibration(CalibrationRecord):
    """A fitted calibration map that runs: the stored record (``card.json``'s ``calibration``:
    its fields, validation and JSON are :class:`CalibrationRecord`'s) plus :meth:`apply`.
    ``params`` may also carry ``why`` per output (how the method was chosen).
    """

    @classmethod
    def identity(cls, kind: str, outputs: Sequence[str], reason: str = "no calibration") -> Calibration:
        """The identity map (``method`` "none"), with why."""
        outputs = list(outputs)
        params: dict[str, Any] = ({"temperature": 1.0, "reason": reason} if kind == "single" else
                                  {o: {"method": "none", "reason": reason} for o in outputs})
        return cls(kind, outputs, "none", params, reason)

    @property
    def is_identity(self) -> bool:
        return self.method == "none"

    def apply(self, P: np.ndarray) -> np.ndarray:
        """Calibrated ``(N, C)`` float64 probabilities of raw ``P`` (NaN rows stay NaN)."""
        P = np.asarray(P, dtype=np.float64)
        if P.ndim != 2 or P.shape[1] != len(self.outputs):
            raise ValueError(f"calibration of {len(self.outputs)} outputs {self.outputs} got "
                             f"probabilities of shape {P.shape}")
        if self.is_identity:
            return P.copy()
        if self.kind == "single":
            return apply_temperature(P, self.params["temperature"])
        return np.stack([apply_sigmoid(P[:, j], self.params[o]) for j, o in enumerate(self.outputs)],
                        axis=1)

    @classmethod
    def from_json(cls, d: Any, outputs: Sequence[str] | None = None,
                  kind: str | None = None) -> Calibration:
        """A stored calibration (a :class:`CalibrationRecord` or its JSON), validated (ValueError
        naming what is wrong); ``outputs`` and ``kind``, when given (the card's), must match it."""
        rec = CalibrationRecord.from_json(d)
        if kind is not None and rec.kind != kind:
            raise ValueError(f"calibration kind {rec.kind!r} != the model's kind {kind!r}")
        if outputs is not None and list(outputs) != rec.outputs:
            raise ValueError(f"calibration outputs mismatch: {rec.outputs} != the model's outputs {list(outputs)}")
        return cls(rec.kind, list(rec.outputs), rec.method, dict(rec.params), rec.chosen_by,
                   dict(rec.fitted_on), dict(rec.validation_ece))


def _summary_method(kind: str, params: dict[str, Any]) -> str:
    if kind == "single":
        return "temperature"
    methods = {v["method"] for v in params.values()}
    return methods.pop() if len(methods) == 1 else "per-output"


def _ece_table(Y: np.ndarray, P: np.ndarray, Q: np.ndarray, outputs: Sequence[str]) -> dict[str, Any]:
    raw, cal = calibration_report(Y, P, outputs), calibration_report(Y, Q, outputs)
    out = {o: {"raw": raw[o]["ece"], "calibrated": cal[o]["ece"]} for o in outputs}
    out["macro"] = {k: macro_mean([out[o][k] for o in outputs]) for k in ("raw", "calibrated")}
    return out


def _fitted_on(Y: np.ndarray, outputs: Sequence[str]) -> dict[str, Any]:
    known = ~np.isnan(Y)
    return {"n_images": int(len(Y)),
            "labelled": {o: int(known[:, j].sum()) for j, o in enumerate(outputs)},
            "positives": {o: int(np.nansum(Y[:, j])) for j, o in enumerate(outputs)}}


def _single_method(method: str) -> tuple[str, str]:
    """``(fitted method, chosen_by)`` of a softmax model for the requested ``method``."""
    if method in ("auto", "temperature"):
        return "temperature", f"{method}: temperature scaling (minimum validation NLL)"
    return "temperature", (f"{method} requested; softmax outputs use temperature scaling (one "
                           "parameter: rows still sum to 1, the arg-max is unchanged)")


def fit_calibration(Y: np.ndarray, P: np.ndarray, kind: str, outputs: Sequence[str],
                    method: str = "auto", seed: int = 0, groups: Sequence | None = None) -> Calibration:
    """Fit a calibration on validation labels ``Y`` (NaN = unknown) and raw probabilities ``P``.

    ``method``: one of :data:`METHODS` (see the module docstring). ``groups`` (patient ids, one
    per row) keeps a patient's images in one fold of ``auto``'s cross-validation.
    """
    if method not in METHODS:
        raise ValueError(f"unknown calibration method {method!r}; choose one of {list(METHODS)}")
    if kind not in KINDS:
        raise ValueError(f"unknown model kind {kind!r}; expected one of {list(KINDS)}")
    Y, P, outputs = np.asarray(Y, dtype=np.float64), np.asarray(P, dtype=np.float64), list(outputs)
    if method == "none":
        return _identity_fitted(Y, P, kind, outputs, "method 'none' requested")
    if kind == "single":
        cal = _fit_single(Y, P, outputs, method)
    else:
        cal = _fit_multilabel(Y, P, outputs, method, seed, groups)
    return dataclasses.replace(cal, fitted_on=_fitted_on(Y, outputs),
                               validation_ece=_ece_table(Y, P, cal.apply(P), outputs))


def _identity_fitted(Y: np.ndarray, P: np.ndarray, kind: str, outputs: list[str], reason: str) -> Calibration:
    return dataclasses.replace(Calibration.identity(kind, outputs, reason),
                               fitted_on=_fitted_on(Y, outputs), validation_ece=_ece_table(Y, P, P, outputs))


def _fit_single(Y: np.ndarray, P: np.ndarray, outputs: list[str], method: str) -> Calibration:
    Yk, _ = _softmax_rows(Y, P)
    present = int((Yk.sum(axis=0) > 0).sum())
    if present < 2:
        return Calibration.identity("single", outputs, f"{present} class(es) in {len(Yk)} labelled "
                                    "validation images: a temperature cannot be fitted")
    fitted, chosen_by = _single_method(method)
    return Calibration("single", outputs, fitted, {"temperature": fit_temperature(Y, P)}, chosen_by)


def _fit_multilabel(Y: np.ndarray, P: np.ndarray, outputs: list[str], method: str, seed: int,
                    groups: Sequence | None) -> Calibration:
    note = ""
    if method == "temperature":
        method, note = "platt", ("temperature requested; sigmoid outputs use platt (a temperature "
                                 "per output is platt with b = 0). ")
    g = None if groups is None else np.asarray(groups, dtype=object)
    params = {o: fit_sigmoid_output(Y[:, j], P[:, j], method, seed, g) for j, o in enumerate(outputs)}
    how = (f"auto per output ({N_FOLDS}-fold stratified CV on validation, platt under "
           f"{MIN_PER_CLASS} positives or negatives)" if method == "auto" else method)
    chosen_by = note + how + ": " + "; ".join(f"{o}: {v['method']} ({v['why']})" for o, v in params.items())
    return Calibration("multilabel", outputs, _summary_method("multilabel", params), params, chosen_by)


def calibrate_card(card: Any, P: np.ndarray) -> np.ndarray:
    """``P`` through the card's calibration (a ModelCard or card.json dict); unchanged without one."""
    stored = card.get("calibration")
    if not stored:
        return np.asarray(P, dtype=np.float64)
    return Calibration.from_json(stored, card.get("outputs"), card.get("kind")).apply(P)
