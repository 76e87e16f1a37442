"""Tabular clinical features (ieee8023 meta) for fusion and prognosis models.

:class:`ClinicalEncoder` is fitted on the TRAIN rows only (scikit-learn): numeric fields get
median imputation plus a missing-indicator column each, then standardisation; categoricals
(sex, view) are one-hot encoded, a missing value being its own category and an unseen
value all zeros. The fitted parameters are exported to plain JSON (:meth:`to_dict`), which
is stored in a model card as ``metadata_encoder``; the card key ``metadata_features`` lists
the raw input field names. :meth:`encode_records` turns fields typed by a user (a dict with
some keys missing) into the model's metadata vector.

Transforming always uses the exported parameters (numpy), so an encoder restored from a card
computes exactly what the fitted one did; tests hold it equal to the scikit-learn transform.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from training.clinical.records import ENCODER_VERSION, EncoderRecord
from training.errors import DataError
NUMERIC: tuple[str, ...] = ("age", "offset", "temperature", "pO2_saturation",
                            "leukocyte_count", "neutrophil_count", "lymphocyte_count")
CATEGORICAL: tuple[str, ...] = ("sex", "view")
#: every field the encoder knows, in the order of the brief
FIELDS: tuple[str, ...] = ("age", "sex", "view") + NUMERIC[1:]
MISSING = "missing"  # the category a missing categorical value becomes


def available_fields(meta: pd.DataFrame, fields: Sequence[str] = FIELDS) -> list[str]:
    """The known ``fields`` present in ``meta`` with at least one value."""
    unknown = sorted(set(fields) - set(FIELDS))
    if unknown:
        raise DataError(f"unknown clinical field(s) {unknown}",
                        hint=f"choose among: {', '.join(FIELDS)}")
    return [f for f in fields if f in meta.columns and meta[f].notna().any()]


class ClinicalEncoder:
    """Raw clinical fields → float32 feature matrix, fitted on training rows only."""

    def __init__(self, features: Sequence[str]):
        unknown = sorted(set(features) - set(FIELDS))
        if unknown or not features:
            raise DataError(f"bad clinical feature list {list(features)}",
                            hint=f"choose a non-empty subset of: {', '.join(FIELDS)}")
        self.features = list(features)
        self.numeric = [f for f in self.features if f in NUMERIC]
        self.categorical = [f for f in self.features if f in CATEGORICAL]
        self.params: dict[str, Any] | None = None
        self.transformer: ColumnTransformer | None = None  # the scikit-learn fit (not serialized)

    # ------------------------------------------------------------------ fitting
    def fit(self, meta: pd.DataFrame) -> "ClinicalEncoder":
        """Fit on ``meta`` (the training rows; a test row must never be passed here)."""
        frame = self._frame(meta)
        parts = []
        if self.numeric:
            # keep_empty_features: a field never seen in training keeps its columns (fixed width)
            parts.append(("num", make_pipeline(
                SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
                StandardScaler()), self.numeric))
        if self.categorical:
            parts.append(("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                          self.categorical))
        self.transformer = ColumnTransformer(parts, sparse_threshold=0.0)
        self.transformer.fit(frame)
        self.params = self._export()
        return self

    def _export(self) -> dict[str, Any]:
        out: dict[str, Any] = {"version": ENCODER_VERSION, "features": self.features,
                               "numeric": self.numeric, "categorical": self.categorical}
        if self.numeric:
            imputer, scaler = self.transformer.named_transformers_["num"].steps[0][1], \
                self.transformer.named_transformers_["num"].steps[1][1]
            ind = imputer.indicator_.features_ if imputer.indicator_ is not None else []
            out.update(medians=imputer.statistics_.tolist(),
                       indicators=[self.numeric[i] for i in ind],
                       mean=scaler.mean_.tolist(), scale=scaler.scale_.tolist())
        if self.categorical:
            cats = self.transformer.named_transformers_["cat"].categories_
            out["categories"] = {f: [str(c) for c in c_] for f, c_ in zip(self.categorical, cats)}
        out["output_names"] = self.output_names(out)
        return out

    @staticmethod
    def output_names(params: dict[str, Any]) -> list[str]:
        """Names of the encoded columns, in order."""
        names = list(params["numeric"]) + [f"{f}_missing" for f in params.get("indicators", [])]
        for f in params["categorical"]:
            names += [f"{f}={c}" for c in params["categories"][f]]
        return names

    @property
    def width(self) -> int:
        """Number of encoded columns."""
        return len(self._fitted()["output_names"])

    # ------------------------------------------------------------------ transforming
    def transform(self, meta: pd.DataFrame) -> np.ndarray:
        """Encoded ``(N, width)`` float32 matrix of ``meta`` rows."""
        p = self._fitted()
        frame = self._frame(meta)
        blocks = []
        if self.numeric:
            x = frame[self.numeric].to_numpy(dtype=np.float64)
            missing = np.isnan(x)
            x = np.where(missing, np.asarray(p["medians"])[None, :], x)
            ind = missing[:, [self.numeric.index(f) for f in p["indicators"]]].astype(np.float64)
            both = np.hstack([x, ind])
            blocks.append((both - np.asarray(p["mean"])) / np.asarray(p["scale"]))
        for f in self.categorical:
            cats = np.asarray(p["categories"][f], dtype=object)
            blocks.append((frame[f].to_numpy(dtype=object)[:, None] == cats[None, :]).astype(np.float64))
        return np.hstack(blocks).astype(np.float32)

    def fit_transform(self, meta: pd.DataFrame) -> np.ndarray:
        return self.fit(meta).transform(meta)

    def encode_records(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Encode user-typed records (dicts; absent, None or "" = unknown) → ``(N, width)``."""
        rows = []
        for i, rec in enumerate(records):
            row = {}
            for f in self.features:
                value = rec.get(f)
                row[f] = None if value is None or (isinstance(value, str) and not value.strip()) \
                    else value
                if f in self.numeric and row[f] is not None:
                    row[f] = _number(row[f], f, i)
            rows.append(row)
        return self.transform(pd.DataFrame(rows, columns=self.features))

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON parameters (the card's ``metadata_encoder``)."""
        return dict(self._fitted())

    @classmethod
    def from_dict(cls, params: Mapping[str, Any] | EncoderRecord) -> "ClinicalEncoder":
        """An encoder restored from :meth:`to_dict` output or the card's record."""
        try:
            record = EncoderRecord.from_json(params)
        except ValueError as exc:
            raise DataError(str(exc), hint="re-save the model with training.clinical") from None
        enc = cls(record.features)
        enc.params = record.to_json()
        return enc

    # ------------------------------------------------------------------ helpers
    def _fitted(self) -> dict[str, Any]:
        if self.params is None:
            raise DataError("ClinicalEncoder is not fitted", hint="call fit(train_meta) first")
        return self.params

    def _frame(self, meta: pd.DataFrame) -> pd.DataFrame:
        """The encoder's columns: numerics as float (NaN), categoricals as str ("missing")."""
        absent = [f for f in self.features if f not in meta.columns]
        if absent:
            raise DataError(f"clinical field(s) {absent} missing from the metadata",
                            hint="pass every field the encoder was fitted with (values may be blank)")
        out = pd.DataFrame(index=range(len(meta)))
        for f in self.numeric:
            out[f] = pd.to_numeric(meta[f].reset_index(drop=True), errors="coerce").astype(float)
        for f in self.categorical:
            col = meta[f].reset_index(drop=True).astype(object)
            out[f] = [MISSING if pd.isna(v) or not str(v).strip() else _category(f, v) for v in col]
        return out


def _category(field: str, value: Any) -> str:
    text = str(value).strip()
    return text.upper() if field == "sex" else text


def _number(value: Any, field: str, row: int) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise DataError(f"record {row}: {field}={value!r} is not a number",
                        hint=f"type a number for {field}, or leave it blank") from None


def card_metadata_vector(card: Mapping[str, Any], values: Mapping[str, Any]) -> np.ndarray:
    """The ``(1, width)`` metadata input for a model whose card has ``metadata_encoder``."""
    return ClinicalEncoder.from_dict(card["metadata_encoder"]).encode_records([values])
