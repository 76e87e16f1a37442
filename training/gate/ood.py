"""Out-of-distribution score in a model's own feature space (Mahalanobis distance).

The pooled backbone features of the model's *training* images are modelled as a Gaussian
with a probabilistic-PCA covariance ``C = U diag(λ) Uᵀ + σ² (I − U Uᵀ)`` (the top ``k``
principal directions, plus isotropic noise σ² for the rest; sklearn's ``PCA`` fits it). The
score of an image is its squared Mahalanobis distance under ``C`` divided by the feature
dimension (about 1 for a typical training image)::

    score = (Σ_k z_k² / λ_k + (‖x − μ‖² − Σ_k z_k²) / σ²) / D,   z = Uᵀ (x − μ)

An image's **p-value** is the share of the model's *validation* images (never the test set)
that score at least as high: ``(1 + #{validation ≥ score}) / (n + 1)``, a conformal p-value,
so for a new image from the same distribution ``P(p ≤ α) ≤ α``. ``verdict.judge`` combines the
models' p-values (Bonferroni) into one false-refusal rate for the whole bank
(docs/gate.md measures it). ``threshold`` / ``warn_threshold`` (the 99th / 95th percentiles of
the validation scores) describe the scale in the card.

The statistics (μ, U, λ, σ²: a few hundred KB) live in ``gate.npz`` beside the model; the
card's ``gate`` entry names the file, its SHA-256, the thresholds and what they were fitted on.
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from training import io as tio
from training.errors import ModelCardError

GATE_FILE = "gate.npz"
METHOD = "mahalanobis-ppca"
#: Principal directions kept; fewer when there are fewer training images.
N_COMPONENTS = 64
WARN_QUANTILE, REFUSE_QUANTILE = 0.95, 0.99


@dataclass
class OODGate:
    """A fitted feature-space gate of one model."""

    mean: np.ndarray                    # (D,) of the standardised features
    components: np.ndarray              # (k, D) orthonormal rows
    variances: np.ndarray               # (k,)
    noise_variance: float
    threshold: float = float("inf")     # 99th percentile of the validation scores (description)
    warn_threshold: float = float("inf")  # 95th percentile
    reference: np.ndarray | None = None  # the validation scores, sorted: the p-values' reference
    feature_layers: list[str] = field(default_factory=lambda: ["features"])
    center: np.ndarray | None = None    # (D,) standardisation: (x - center) / scale
    scale: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def standardise(self, features: np.ndarray) -> np.ndarray:
        x = np.asarray(features, dtype=np.float64)
        return x if self.center is None else (x - self.center) / self.scale

    def score(self, features: np.ndarray) -> np.ndarray:
        """Squared Mahalanobis distance / D of each row of ``features`` (N, D)."""
        x = self.standardise(features) - self.mean
        z = x @ self.components.T
        inside = (z ** 2 / self.variances).sum(axis=1)
        rest = np.maximum((x ** 2).sum(axis=1) - (z ** 2).sum(axis=1), 0.0) / self.noise_variance
        return (inside + rest) / x.shape[1]

    def p_value(self, score: float) -> float:
        """Conformal p-value of ``score`` against the validation scores (1.0 without any)."""
        if not np.isfinite(score):
            return 0.0
        ref = self.reference
        if ref is None or not len(ref):
            return 1.0
        higher = len(ref) - int(np.searchsorted(ref, score, side="left"))
        return (1 + higher) / (len(ref) + 1)

    # ------------------------------------------------------------ persistence
    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        extra = {} if self.center is None else {"center": self.center, "scale": self.scale}
        if self.reference is not None:
            extra["reference"] = self.reference
        np.savez_compressed(buffer, mean=self.mean.astype(np.float32),
                            components=self.components.astype(np.float32),
                            variances=self.variances.astype(np.float64),
                            noise_variance=np.float64(self.noise_variance), **extra)
        return buffer.getvalue()

    def card_entry(self, sha256: str) -> GateRecord:
        """The card's ``gate`` record (the arrays stay in :data:`GATE_FILE`)."""
        return GateRecord.from_json({
            "method": METHOD, "file": GATE_FILE, "sha256": sha256,
            "feature_layers": list(self.feature_layers), "threshold": float(self.threshold),
            "warn_threshold": float(self.warn_threshold),
            "n_components": int(len(self.variances)), "dim": int(len(self.mean)), **self.info})


@dataclass(frozen=True)
class GateRecord:
    """The card's ``gate`` entry: which file holds the statistics, its hash, the thresholds'
    scale and what they were fitted on (``info``: fitted_on, thresholds_from, quantiles, ...)."""

    file: str
    threshold: float
    warn_threshold: float
    feature_layers: list[str] = field(default_factory=lambda: ["features"])
    method: str = METHOD
    sha256: str | None = None
    n_components: int | None = None
    dim: int | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, raw: Any) -> GateRecord:
        """The record of a card's ``gate`` object (ValueError naming what is wrong)."""
        if isinstance(raw, GateRecord):
            return raw
        if not isinstance(raw, dict):
            raise ValueError(f"gate must be a JSON object, got {type(raw).__name__}")
        bad = [k for k in ("threshold", "warn_threshold") if not _is_number(raw.get(k))]
        if bad:
            raise ValueError(f"gate {', '.join(bad)} must be numbers, got {[raw.get(k) for k in bad]!r}")
        layers = raw.get("feature_layers") or [raw.get("feature_layer", "features")]
        known = {"method", "file", "sha256", "feature_layers", "feature_layer", "threshold",
                 "warn_threshold", "n_components", "dim"}
        return cls(str(raw.get("file") or GATE_FILE), float(raw["threshold"]), float(raw["warn_threshold"]),
                   [str(n) for n in layers], str(raw.get("method") or METHOD), raw.get("sha256"),
                   raw.get("n_components"), raw.get("dim"),
                   {k: v for k, v in raw.items() if k not in known})

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method, "file": self.file, "sha256": self.sha256,
                "feature_layers": list(self.feature_layers), "threshold": self.threshold,
                "warn_threshold": self.warn_threshold, "n_components": self.n_components,
                "dim": self.dim, **self.info}

    @property
    def fitted_on(self) -> dict[str, Any]:
        """``{"train_images", "validation_images"}`` the gate was fitted on."""
        return dict(self.info.get("fitted_on") or {})


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def fit_gate(train_features: np.ndarray, val_features: np.ndarray,
             feature_layers: list[str] | None = None, n_components: int = N_COMPONENTS) -> OODGate:
    """Fit μ and the PPCA covariance on training features, the thresholds on validation ones.

    Features are standardised first (training mean and standard deviation): the layers'
    outputs live on different scales, and each feature should count by its own spread.
    """
    from sklearn.decomposition import PCA  # fitting only (the app only scores)

    raw = np.asarray(train_features, dtype=np.float64)
    if len(raw) < 3:
        raise ValueError(f"the OOD gate needs at least 3 training images, got {len(raw)}")
    center, spread = raw.mean(axis=0), raw.std(axis=0)
    # A floor: dead features (constant in training) must not divide by zero.
    scale = np.maximum(spread, 1e-3 * float(spread.mean()) + 1e-12)
    x = (raw - center) / scale
    k = int(max(1, min(n_components, len(x) - 2, x.shape[1] - 1)))
    pca = PCA(n_components=k, svd_solver="full").fit(x)
    # A floor keeps the distance finite when features are (nearly) constant in some direction.
    floor = 1e-6 * max(float(pca.explained_variance_.max()), 1e-12)
    gate = OODGate(mean=pca.mean_, components=pca.components_,
                   variances=np.maximum(pca.explained_variance_, floor),
                   noise_variance=max(float(pca.noise_variance_), floor),
                   feature_layers=list(feature_layers or ["features"]), center=center, scale=scale)
    train_scores = gate.score(raw)
    val = np.asarray(val_features, dtype=np.float64)
    ref = gate.score(val) if len(val) else train_scores
    gate.warn_threshold = float(np.quantile(ref, WARN_QUANTILE))
    gate.threshold = float(np.quantile(ref, REFUSE_QUANTILE))
    gate.reference = np.sort(ref)
    gate.info = {"fitted_on": {"train_images": int(len(x)), "validation_images": int(len(val))},
                 "thresholds_from": "validation" if len(val) else
                 "training images (no validation part: thresholds are optimistic)",
                 "quantiles": {"warn": WARN_QUANTILE, "refuse": REFUSE_QUANTILE},
                 # the smallest p-value this gate can give: n models refuse only if n * this <= 3%
                 "min_p_value": 1.0 / (len(val) + 1),
                 "median_score": {"train": float(np.median(train_scores)),
                                  "validation": float(np.median(ref))}}
    return gate


def save_gate(gate: OODGate, model_dir: str | os.PathLike) -> GateRecord:
    """Write ``gate.npz`` atomically; return the card's ``gate`` record (with its SHA-256)."""
    path = Path(model_dir) / GATE_FILE
    tio.write_bytes(path, gate.to_bytes())
    return gate.card_entry(tio.file_sha256(path))


def load_gate(model_dir: str | os.PathLike, entry: GateRecord | dict[str, Any] | None) -> OODGate | None:
    """The gate a card's ``gate`` record describes (None when the card has none)."""
    if not entry:
        return None
    entry = GateRecord.from_json(entry)
    path = Path(model_dir) / entry.file
    if not path.is_file():
        raise ModelCardError(f"{path}: the card's gate statistics are missing. What to do: copy "
                             "gate.npz with the model, or refit it (python -m training fit-gate).")
    if entry.sha256 and tio.file_sha256(path) != entry.sha256:
        raise ModelCardError(f"{path}: does not match the card (SHA-256 differs). What to do: "
                             "refit the gate (python -m training fit-gate).")
    with np.load(path) as z:
        return OODGate(mean=z["mean"].astype(np.float64), components=z["components"].astype(np.float64),
                       variances=z["variances"], noise_variance=float(z["noise_variance"]),
                       threshold=entry.threshold, warn_threshold=entry.warn_threshold,
                       feature_layers=list(entry.feature_layers),
                       center=z["center"] if "center" in z else None,
                       scale=z["scale"] if "scale" in z else None,
                       reference=z["reference"] if "reference" in z else None,
                       info={k: v for k, v in entry.info.items() if k in ("fitted_on", "thresholds_from")})
