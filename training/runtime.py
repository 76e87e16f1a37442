"""One saved model, loaded and used: the runtime ``predict``, ``evaluate``, ``compare``, the
lung audit and the app's ``ModelBank`` share.

:func:`load` reads ``card.json`` + ``model.keras`` once and builds what using the model needs:
its preprocessing, its calibration (the identity when the card has none), its thresholds and
the decision rule, its OOD gate, its clinical inputs and one compiled forward pass that
returns the probabilities and the gate's features together. The rules, stated once:

* **Names**: a model is called by its card's ``name``; :func:`load_all` refuses two folders
  whose cards share a name (ModelCardError), for the CLI and the app alike.
* **Missing thresholds**: no decision (``decide(..., missing=None)``): the probability is
  shown, no output is called positive (:attr:`Prediction.decided` says which are decided).
  The evaluation's metrics state their own 0.5 where they need one.
* **Decision**: :func:`training.evaluation.decision.decide` on the calibrated probabilities.
* **Batches**: fixed-size, the last one padded, so a row's result depends neither on the
  batch size nor on where the row sits.
"""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from training import preprocess as pp
from training.errors import ModelCardError
from training.evaluation.calibration import Calibration
from training.evaluation.decision import Thresholds, decide, decision_thresholds, no_decision
from training.gate.ood import OODGate, load_gate
from training.models.card import CARD_FILE, ModelCard, load_model, read_card

log = logging.getLogger(__name__)

#: ``x (, metadata) -> (probabilities, gate features or None)``
Infer = Callable[..., tuple[np.ndarray, np.ndarray | None]]


@dataclass(frozen=True)
class Prediction:
    """What one model says about N images (rows: images; columns: :attr:`outputs`)."""

    outputs: list[str]
    raw: np.ndarray           # (N, C) float32: the network's outputs (NaN rows: no image)
    calibrated: np.ndarray    # (N, C) float64: through the card's calibration (the thresholds' scale)
    positive: np.ndarray      # (N, C) bool: the decision rule with the card's thresholds
    decided: np.ndarray       # (C,) bool, per output: False where the card gives the rule no
    #                           threshold (show the probability, no positive/negative)
    ood_score: np.ndarray     # (N,) the gate's score (NaN: the model has no gate, or no image)

    def findings(self) -> list[str | None]:
        """Per row: the positive outputs joined by ';'; None where the row has no
        probabilities or the model decides no output."""
        known = ~np.isnan(self.calibrated).any(axis=1)
        if not self.decided.any():
            return [None] * len(known)
        return [";".join(o for o, on in zip(self.outputs, row) if on) if ok else None
                for row, ok in zip(self.positive, known)]


@dataclass
class Runtime:
    """A saved model ready to use (built by :func:`load`; ``infer`` is its compiled call)."""

    name: str
    directory: Path
    card: ModelCard
    model: Any                          # keras.Model
    preprocess: pp.PreprocessConfig
    calibration: Calibration            # the identity when the card has none
    gate: OODGate | None
    infer: Infer

    @property
    def outputs(self) -> list[str]:
        return list(self.card.outputs)

    @property
    def kind(self) -> str:
        return self.card.kind

    @property
    def metadata_features(self) -> list[str]:
        """The clinical fields the model takes besides the image (empty: image only)."""
        return list(self.card.metadata_features or [])

    def thresholds(self) -> Thresholds:
        """What the decision rule reads: the card's thresholds (calibrated scale), or None."""
        return self.card.thresholds

    def decision_thresholds(self) -> list[float | None]:
        """The threshold the decision applies to each output, on that output's own scale."""
        return decision_thresholds(self.kind, self.thresholds(), self.outputs, missing=None)

    def no_decision(self) -> dict[str, str]:
        """``{output: why}`` of the outputs the rule does not decide (their probability only)."""
        return no_decision(self.kind, self.thresholds(), self.outputs)

    def decided(self) -> np.ndarray:
        """``(C,)`` bool: whether the rule decides each output (see :class:`Prediction`)."""
        undecided = self.no_decision()
        return np.array([o not in undecided for o in self.outputs], dtype=bool)

    def prepare(self, gray: np.ndarray) -> np.ndarray:
        """The model's uint8 ``(S, S, 3)`` input from a decoded float32 image."""
        return pp.preprocess(gray, self.preprocess)

    def calibrate(self, P: np.ndarray) -> np.ndarray:
        """Raw probabilities through the card's calibration (float64): ``(N, C)``, or one image's ``(C,)``."""
        P = np.asarray(P, dtype=np.float64)
        return self.calibration.apply(P[None])[0] if P.ndim == 1 else self.calibration.apply(P)

    def forward(self, images: np.ndarray, metadata: Sequence[Mapping[str, Any]] | None = None,
                batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
        """Raw probabilities ``(N, C)`` float32 and OOD scores ``(N,)`` of uint8 ``(N, S, S, 3)``.

        ``metadata``: one record of clinical fields per image (None: all unknown), used by
        models with clinical inputs. Batches of exactly ``min(batch_size, N)`` rows, the last
        one padded with zeros.
        """
        x = np.asarray(images)
        n = len(x)
        raw, scores = np.zeros((n, len(self.outputs)), np.float32), np.full(n, np.nan)
        meta = self._metadata(metadata, n) if self.metadata_features else None
        b = max(1, min(int(batch_size), n))
        for start in range(0, n, b):
            k = min(b, n - start)
            xs = [_padded(x[start:start + k], b).astype(np.float32)]
            if meta is not None:
                xs.append(_padded(meta[start:start + k], b))
            probs, feats = self.infer(*xs)
            raw[start:start + k] = np.asarray(probs)[:k]
            if self.gate is not None and feats is not None:
                scores[start:start + k] = self.gate.score(np.asarray(feats)[:k])
        return raw, scores

    def interpret(self, raw: np.ndarray, ood_score: np.ndarray | None = None) -> Prediction:
        """Calibrate and decide raw probabilities ``(N, C)`` (NaN rows stay undecided)."""
        raw = np.asarray(raw, dtype=np.float32)
        calibrated = self.calibrate(raw)
        positive = decide(calibrated, self.kind, self.thresholds(), self.outputs, missing=None)
        scores = np.full(len(raw), np.nan) if ood_score is None else np.asarray(ood_score, np.float64)
        return Prediction(self.outputs, raw, calibrated, positive, self.decided(), scores)

    def predict(self, images: np.ndarray, metadata: Sequence[Mapping[str, Any]] | None = None,
                batch_size: int = 32) -> Prediction:
        """:meth:`forward`, then :meth:`interpret`."""
        return self.interpret(*self.forward(images, metadata, batch_size))

    def _metadata(self, records: Sequence[Mapping[str, Any]] | None, n: int) -> np.ndarray:
        if records is not None and len(records) != n:
            raise ValueError(f"{n} images but {len(records)} metadata records")
        encoder = self.card.metadata_encoder
        return metadata_vector(self.metadata_features, records or [{}] * n,
                               None if encoder is None else encoder.to_json())


def _padded(rows: np.ndarray, size: int) -> np.ndarray:
    """``rows`` with zero rows appended up to ``size`` (one input shape: no retracing)."""
    missing = size - len(rows)
    return rows if missing <= 0 else np.concatenate([rows, np.zeros((missing,) + rows.shape[1:], rows.dtype)])


def metadata_vector(features: list[str], records: Sequence[Mapping[str, Any]],
                    encoder: dict | None = None) -> np.ndarray:
    """Clinical fields as ``(N, F)`` float32 rows; unknown values are NaN, never guessed.

    A card with a ``metadata_encoder`` (training.clinical) gets that encoder's vectors instead.
    """
    if encoder:
        from training.clinical.encoder import ClinicalEncoder  # clinical fusion models only

        return ClinicalEncoder.from_dict(encoder).encode_records(list(records))

    def encode(value: Any) -> float:
        if value is None or value == "":
            return float("nan")
        if isinstance(value, str):
            return {"M": 1.0, "F": 0.0}.get(value.upper(), float("nan"))
        return float(value)

    return np.array([[encode(r.get(f)) for f in features] for r in records],
                    dtype=np.float32).reshape(len(records), len(features))


def compile_inference(model: Any, size: int, n_meta: int = 0,
                      feature_layers: list[str] | None = None) -> Infer:
    """A compiled ``x (, metadata) -> (probabilities, features or None)`` call.

    ``tf.function`` with a fixed signature on TensorFlow (Keras's own ``predict_on_batch``
    on other backends). With ``feature_layers`` the same forward pass also returns their
    pooled outputs, which the OOD gate scores: no second pass through the backbone.
    """
    import keras  # loads the Keras backend: only when a model is used

    net = model
    if feature_layers:
        from training.models.parts import feature_model  # only for models with a fitted gate

        feats = feature_model(model, feature_layers).outputs[0]
        net = keras.Model(model.inputs, [model.outputs[0], feats])

    def split(out: Any) -> tuple[np.ndarray, np.ndarray | None]:
        if feature_layers:
            return np.asarray(out[0]), np.asarray(out[1])
        return np.asarray(out), None

    if keras.backend.backend() != "tensorflow":
        return lambda *xs: split(net.predict_on_batch(list(xs) if len(xs) > 1 else xs[0]))
    import tensorflow as tf  # TensorFlow backend only (a JAX run has no TensorFlow)

    spec = [tf.TensorSpec((None, size, size, 3), tf.float32)]
    if n_meta:
        spec.append(tf.TensorSpec((None, n_meta), tf.float32))
    fn = tf.function(lambda *xs: net(list(xs) if len(xs) > 1 else xs[0], training=False),
                     input_signature=spec, reduce_retracing=True)
    return lambda *xs: split(fn(*xs))


def metadata_width(card: ModelCard) -> int:
    """Width of the model's clinical input (0: image only)."""
    if card.metadata_encoder:
        return len(card.metadata_encoder.output_names)
    return len(card.metadata_features or [])


def load(folder: str | os.PathLike) -> Runtime:
    """The runtime of one model folder; a card that does not fit its model fails here, naming it."""
    start, folder = time.perf_counter(), Path(folder)
    model, card = load_model(folder)
    expected = 1 + bool(card.metadata_features)
    if len(model.inputs) != expected:
        raise ModelCardError(
            f"{folder / CARD_FILE}: the model has {len(model.inputs)} input(s) but the card implies "
            f"{expected} (the image, plus clinical fields when 'metadata_features' is set). "
            "What to do: fix the card or re-save the model.")
    gate = load_gate(folder, card.gate)
    infer = compile_inference(model, int(card.input_size), metadata_width(card),
                              gate.feature_layers if gate else None)
    runtime = Runtime(_name(card, folder), folder, card, model, card.preprocessing,
                      _calibration(card, folder), gate, infer)
    log.info("loaded model %s (%s, %d px) in %.1f s", runtime.name, card.architecture,
             card.input_size, time.perf_counter() - start)
    return runtime


def load_all(folders: Sequence[str | os.PathLike]) -> list[Runtime]:
    """Every folder's runtime, in order; two cards with one name are refused before loading."""
    folders = [Path(f) for f in folders]
    names = [_name(read_card(f), f) for f in folders]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        where = ", ".join(str(f) for f, n in zip(folders, names) if n in dupes)
        raise ModelCardError(f"several model cards use the name(s) {dupes} ({where}). What to do: "
                             "give each model a unique 'name' in its card.json.")
    return [load(f) for f in folders]


def _name(card: ModelCard, folder: Path) -> str:
    return str(card.name or folder.name)


def _calibration(card: ModelCard, folder: Path) -> Calibration:
    if not card.calibration:
        return Calibration.identity(card.kind, card.outputs, "the card has no calibration")
    try:
        return Calibration.from_json(card.calibration.to_json(), card.outputs, card.kind)
    except ValueError as exc:
        raise ModelCardError(f"{folder}: {exc}. What to do: refit it with `python -m training "
                             "calibrate --model DIR` or fix card.json.") from exc
