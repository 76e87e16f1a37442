"""A dataset report: the descriptive figures and tables a CXR paper opens with.

:func:`write_report` writes PNG figures, ``summary.json`` (every number shown) and an
``index.html`` into one folder. :func:`summarize` gives the numbers alone. Figures use
matplotlib's object API with the Agg canvas (no pyplot, no global backend switch), so
this also runs inside the web app's threads.
"""
from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from training import io
from training.data.dataset import CXRDataset
from training.data.splits import PARTS, check_patient_disjoint
from training.html import render
from training.errors import SplitError

UNKNOWN = "unknown"
UNASSIGNED = "unassigned"
AGE_BINS: tuple[int, ...] = tuple(range(0, 101, 10))  # 0-9, ..., 90-99, 100+ (last bin open)
MAX_IMAGES_PER_PATIENT = 10  # images-per-patient histogram: 1..9 and "10+"
MAX_SKIPPED_LISTED = 100  # skipped rows listed one by one (all are counted by reason)
COLORS = ("#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C")
LABEL_COLORS = {"positive": "#C44E52", "negative": "#4C72B0", "unknown": "#BBBBBB"}


# --------------------------------------------------------------------------- numbers
def _counts(values: pd.Series) -> dict[str, int]:
    """Value counts with missing values as ``"unknown"``, commonest first."""
    s = values.astype("object").where(values.notna(), UNKNOWN).astype(str)
    return {str(k): int(v) for k, v in s.value_counts().items()}


def _by_source(meta: pd.DataFrame, col: str) -> dict[str, dict[str, int]]:
    return {str(src): _counts(g[col]) for src, g in meta.groupby("source", sort=True, dropna=False)}


def _pathology_counts(labels: np.ndarray, pathologies: list[str]) -> dict[str, dict[str, int]]:
    return {
        p: {"positive": int((labels[:, j] == 1).sum()), "negative": int((labels[:, j] == 0).sum()),
            "unknown": int(np.isnan(labels[:, j]).sum())}
        for j, p in enumerate(pathologies)
    }


def _age(meta: pd.DataFrame) -> dict[str, Any]:
    age = pd.to_numeric(meta["age"], errors="coerce")
    known = age.dropna()
    out: dict[str, Any] = {"known": int(known.size), "unknown": int(age.isna().sum()), "bins": list(AGE_BINS)}
    edges = [*AGE_BINS, np.inf]
    out["counts"] = np.histogram(known.clip(lower=0), bins=edges)[0].astype(int).tolist()
    out["counts_by_source"] = {
        str(src): np.histogram(pd.to_numeric(g["age"], errors="coerce").dropna().clip(lower=0), bins=edges)[0]
        .astype(int).tolist()
        for src, g in meta.groupby("source", sort=True, dropna=False)
    }
    if known.size:
        out.update(mean=round(float(known.mean()), 1), median=float(known.median()),
                   min=float(known.min()), max=float(known.max()))
    return out


def _images_per_patient(meta: pd.DataFrame) -> dict[str, Any]:
    per = meta.groupby("patient", dropna=False).size()
    capped = per.clip(upper=MAX_IMAGES_PER_PATIENT)
    hist = {(f"{k}+" if k == MAX_IMAGES_PER_PATIENT else str(k)): int((capped == k).sum())
            for k in range(1, MAX_IMAGES_PER_PATIENT + 1)}
    return {"histogram": hist, "mean": round(float(per.mean()), 2) if len(per) else 0.0,
            "max": int(per.max()) if len(per) else 0}


def _skipped(ds: CXRDataset) -> dict[str, Any]:
    reasons = Counter(str(s.get("reason", UNKNOWN)) for s in ds.skipped)
    rows = [{"path": str(s.get("path", "")), "reason": str(s.get("reason", UNKNOWN))}
            for s in ds.skipped[:MAX_SKIPPED_LISTED]]
    return {"count": len(ds.skipped), "reasons": dict(reasons.most_common()), "rows": rows}


def _split_parts(ds: CXRDataset, split: pd.DataFrame) -> pd.Series:
    """The part of every ds row (``"unassigned"`` when the split lacks the path)."""
    for col in ("path", "patient", "part"):
        if col not in split.columns:
            raise SplitError(f"the split has no {col!r} column; make it with training.data.splits.make_split")
    if split["path"].duplicated().any():
        raise SplitError("the split lists some image paths twice; re-run `python -m training split`")
    check_patient_disjoint(split)
    return ds.meta["path"].astype(str).map(split.set_index(split["path"].astype(str))["part"]).fillna(UNASSIGNED)


def _group_table(ds: CXRDataset, keys: pd.Series, strata: pd.Series | None, order: list) -> dict[str, Any]:
    """Images, patients, unlabelled, strata and pathology positives per key."""
    out: dict[str, Any] = {}
    for key in order:
        mask = (keys == key).to_numpy()
        sub = ds.labels[mask]
        out[str(key)] = {
            "images": int(mask.sum()),
            "patients": int(ds.meta.loc[mask, "patient"].nunique()),
            "unlabelled": int(np.isnan(sub).all(axis=1).sum()),
            "strata": _counts(strata[mask]) if strata is not None else {},
            "pathologies": {p: int((sub[:, j] == 1).sum()) for j, p in enumerate(ds.pathologies)},
        }
    return out


def _split_summary(ds: CXRDataset, split: pd.DataFrame) -> dict[str, Any]:
    parts = _split_parts(ds, split)
    lookup = split.set_index(split["path"].astype(str))
    paths = ds.meta["path"].astype(str)
    strata = paths.map(lookup["stratum"]).fillna(UNASSIGNED) if "stratum" in split else None
    order = [p for p in PARTS if p in set(parts)] + ([UNASSIGNED] if (parts == UNASSIGNED).any() else [])
    out = {"parts": _group_table(ds, parts, strata, order),
           "unassigned": int((parts == UNASSIGNED).sum()), "folds": None}
    if "fold" in split.columns:
        folds = paths.map(lookup["fold"]).fillna(-1).astype(int)  # -1: unassigned rows
        out["folds"] = _group_table(ds, folds, strata, sorted(f for f in folds.unique().tolist() if f >= 0))
    return out


def summarize(ds: CXRDataset, split: pd.DataFrame | None = None, title: str | None = None) -> dict[str, Any]:
    """Every number the report shows, as plain JSON-able Python."""
    meta = ds.meta
    unl = ds.unlabelled
    summary: dict[str, Any] = {
        "title": title or f"Dataset report: {ds.name}",
        "dataset": ds.name,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "n_images": len(ds),
        "n_patients": int(meta["patient"].nunique()),
        "sources": {str(src): {"images": len(g), "patients": int(g["patient"].nunique()),
                               "unlabelled": int(unl[g.index].sum())}
                    for src, g in meta.groupby("source", sort=True, dropna=False)},
        "pathologies": _pathology_counts(ds.labels, list(ds.pathologies)),
        "pathologies_by_source": {str(src): _pathology_counts(ds.labels[g.index], list(ds.pathologies))
                                  for src, g in meta.groupby("source", sort=True, dropna=False)},
        "age": _age(meta),
        "images_per_patient": _images_per_patient(meta),
        "unlabelled": {"images": int(unl.sum()), "patients": int(meta.loc[unl, "patient"].nunique())},
        "skipped": _skipped(ds),
        "split": _split_summary(ds, split) if split is not None else None,
    }
    for col in ("sex", "view", "modality"):
        summary[col] = _counts(meta[col])
        summary[f"{col}_by_source"] = _by_source(meta, col)
    return summary


# --------------------------------------------------------------------------- figures
def _bars(path: Path, categories: list[str], series: dict[str, list[int]], title: str, xlabel: str,
          ylabel: str, stacked: bool = True, horizontal: bool = False,
          colors: dict[str, str] | None = None) -> None:
    """A bar chart (stacked or grouped, vertical or horizontal) with counts on the bars."""
    n = max(len(categories), 1)
    values = np.asarray(list(series.values()), dtype=float).reshape(len(series), len(categories))
    totals = values.sum(axis=0)
    peak = max(float((totals if stacked else values).max(initial=0)), 1.0)
    size = (8, 1.2 + 0.45 * n) if horizontal else (max(6.0, 0.65 * n + 2), 4.5)
    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    bar = ax.barh if horizontal else ax.bar
    pos = np.arange(len(categories), dtype=float)
    width = 0.8 if stacked else 0.8 / max(len(series), 1)
    base = np.zeros(len(categories))
    for i, (name, row) in enumerate(zip(series, values)):
        offset = pos if stacked else pos - 0.4 + width * (i + 0.5)
        kw = ({"left": base} if horizontal else {"bottom": base}) if stacked else {}
        color = (colors or {}).get(name, COLORS[i % len(COLORS)])
        cont = bar(offset, row, width, label=name, color=color, **kw)
        if not stacked or len(series) == 1:
            ax.bar_label(cont, labels=[f"{int(v)}" for v in row], padding=2, fontsize=8)
        else:  # segment counts where they fit; the total goes at the end of the bar
            labels = [f"{int(v)}" if 0.06 * peak <= v < t else "" for v, t in zip(row, totals)]
            ax.bar_label(cont, labels=labels, label_type="center", fontsize=8, color="white")
        base = base + row
    if stacked and len(series) > 1:
        for p, total in zip(pos, base):
            xy, shift = ((total, p), (3, 0)) if horizontal else ((p, total), (0, 3))
            ax.annotate(f"{int(total)}", xy, xytext=shift, textcoords="offset points", fontsize=8,
                        fontweight="bold", ha="left" if horizontal else "center",
                        va="center" if horizontal else "bottom")
    long_names = max(map(len, categories), default=0) > 8
    if horizontal:
        ax.set_yticks(pos, categories)
        ax.invert_yaxis()  # first category on top, as read
        ax.set_xlim(0, peak * 1.15)
    else:
        ax.set_xticks(pos, categories, rotation=30 if long_names else 0, ha="right" if long_names else "center")
        ax.set_ylim(0, peak * 1.15)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.spines[["top", "right"]].set_visible(False)
    if len(series) > 1:
        fig.legend(loc="outside right upper", frameon=False, fontsize=8)
    io.write_figure(path, fig, dpi=110)


def _categorical_figure(out: Path, summary: dict, col: str, label: str) -> str:
    """Counts of one metadata column (stacked by source when there are several)."""
    by = summary[f"{col}_by_source"]
    cats = list(summary[col])
    series = {src: [c.get(k, 0) for k in cats] for src, c in by.items()}
    name = f"{col}.png"
    _bars(out / name, cats, series, f"Images by {label}", label, "images")
    return name


def _figures(out: Path, s: dict) -> dict[str, str]:
    """Every figure as ``{file name: caption}``."""
    figs: dict[str, str] = {}
    paths = list(s["pathologies"])
    series = {k: [s["pathologies"][p][k] for p in paths] for k in ("positive", "negative", "unknown")}
    _bars(out / "pathologies.png", paths, series, "Labels per pathology (images)", "images", "",
          horizontal=True, colors=LABEL_COLORS)
    figs["pathologies.png"] = ("Positive, negative and unknown labels per pathology "
                               "(multi-label: an image can be positive for several).")
    if len(s["sources"]) > 1:
        series = {src: [c[p]["positive"] for p in paths] for src, c in s["pathologies_by_source"].items()}
        _bars(out / "pathologies_by_source.png", paths, series, "Positive images per pathology and source",
              "positive images", "", stacked=False, horizontal=True)
        figs["pathologies_by_source.png"] = "Positive images per pathology, per source."
    for col, label in (("sex", "sex"), ("view", "view"), ("modality", "modality")):
        figs[_categorical_figure(out, s, col, label)] = f"Images by {label} (unknown = not recorded)."
    age = s["age"]
    cats = [f"{a}-{b - 1}" for a, b in zip(AGE_BINS[:-1], AGE_BINS[1:])] + [f"{AGE_BINS[-1]}+"]
    series = {src: c for src, c in age["counts_by_source"].items() if any(c)} or {"images": age["counts"]}
    _bars(out / "age.png", cats, series,
          f"Age at imaging ({age['known']} known, {age['unknown']} unknown)", "age (years)", "images")
    figs["age.png"] = "Age histogram (images with a recorded age)."
    ipp = s["images_per_patient"]["histogram"]
    _bars(out / "images_per_patient.png", list(ipp), {"patients": list(ipp.values())},
          "Images per patient", "images of the patient", "patients")
    figs["images_per_patient.png"] = "How many images each patient has: why splits must be by patient."
    if s["split"] is not None:
        parts = s["split"]["parts"]
        strata = sorted({k for p in parts.values() for k in p["strata"]})
        series = {k: [parts[p]["strata"].get(k, 0) for p in parts] for k in strata}
        _bars(out / "split.png", list(parts), series, "Images per split part and task label",
              "part", "images", stacked=False)
        figs["split.png"] = "Images per part of the patient-level split, per task label (stratum)."
    return figs


# --------------------------------------------------------------------------- html
def _render(summary: dict, figures: dict[str, str]) -> str:
    split = summary["split"]
    strata = sorted({k for c in split["parts"].values() for k in c["strata"]}) if split else []
    return render("dataset_report.html", s=summary, figures=figures, strata=strata)


def write_report(ds: CXRDataset, out_dir: str | Path, split: pd.DataFrame | None = None,
                 title: str | None = None) -> Path:
    """Write figures, ``summary.json`` and ``index.html`` into ``out_dir``; returns index.html."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(ds, split, title)
    figures = _figures(out, summary)
    summary["figures"] = list(figures)
    io.write_json(out / "summary.json", summary, ensure_ascii=False)
    return io.write_text(out / "index.html", _render(summary, figures))
