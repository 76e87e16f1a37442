"""COVID-19 pneumonia severity: regress the ieee8023 expert scores from image features.

``annotations/covid-severity-scores.csv`` (Cohen et al., arXiv 2005.11856) holds the mean of
three raters per image: geographic extent (0-8) and opacity (0-6). Its header is preceded by
comment lines starting with ``##``; they are skipped explicitly (``read_csv(comment="#")``
would also cut any data field containing ``#``). Scores are joined to dataset rows by file
name; a scored file that is not in the dataset is reported, never dropped silently.

Model: ridge regression (``RidgeCV`` on standardised features), scored by patient-grouped
K-fold CV (out-of-fold predictions, each image predicted once) with MAE and Pearson r, both
with 95 % CIs by patient bootstrap.
"""
from __future__ import annotations

from io import StringIO
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import pearsonr
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from training import io
from training.errors import DataError
from training.evaluation.bootstrap import bootstrap_ci

SCORES_FILE = Path("annotations") / "covid-severity-scores.csv"
TARGETS: dict[str, tuple[str, float]] = {  # name → (CSV column, maximum score)
    "geographic_extent": ("geographic_mean", 8.0),
    "opacity": ("opacity_mean", 6.0),
}
#: other spellings of a column (the ``##`` header text says geographic_extent_mean)
ALIASES = {"geographic_extent_mean": "geographic_mean"}
ALPHAS = tuple(np.logspace(-1, 5, 13))


def read_scores(path: str | Path) -> pd.DataFrame:
    """``filename, geographic_extent, opacity`` from the scores CSV (``##`` lines skipped)."""
    path = Path(path)
    if not path.is_file():
        raise DataError("severity score file not found", path=path,
                        hint=f"point --data at the ieee8023 folder (it has {SCORES_FILE})")
    lines = path.read_text(encoding="utf-8").splitlines()
    body = "\n".join(line for line in lines if not line.lstrip().startswith("##"))
    try:
        df = pd.read_csv(StringIO(body), dtype={"filename": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise DataError(f"not a readable CSV after the ## comment lines ({e})", path=path,
                        hint="check the file against the ieee8023 original") from None
    df = df.rename(columns={a: c for a, c in ALIASES.items() if c not in df.columns})
    wanted = ["filename"] + [c for c, _ in TARGETS.values()]
    absent = [c for c in wanted if c not in df.columns]
    if absent:
        raise DataError(f"lacks column(s) {absent}; has {list(df.columns)}", path=path,
                        hint="use the ieee8023 covid-severity-scores.csv")
    out = df[wanted].rename(columns={c: n for n, (c, _) in TARGETS.items()})
    out["filename"] = out["filename"].str.strip()
    for name, (_, top) in TARGETS.items():
        values = pd.to_numeric(out[name], errors="coerce")
        bad = values.isna() | (values < 0) | (values > top)
        if bad.any():
            raise DataError(f"{int(bad.sum())} {name} value(s) missing or outside 0..{top:g} "
                            f"(e.g. {out.loc[bad, 'filename'].tolist()[:3]})", path=path,
                            hint="fix or remove those rows")
        out[name] = values.astype(float)
    dup = out["filename"].duplicated()
    if dup.any():
        raise DataError(f"file(s) scored twice: {out.loc[dup, 'filename'].tolist()[:3]}", path=path,
                        hint="keep one row per image")
    return out.reset_index(drop=True)


def join_scores(meta: pd.DataFrame, scores: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Scores aligned to ``meta`` rows (``row`` = index into ``meta``) + unmatched file names."""
    names = meta["path"].astype(str).map(lambda p: Path(p).name)
    rows = pd.DataFrame({"row": np.arange(len(meta)), "filename": names.to_numpy()})
    joined = rows.merge(scores, on="filename", how="inner")
    unmatched = sorted(set(scores["filename"]) - set(joined["filename"]))
    return joined.sort_values("row").reset_index(drop=True), unmatched


def cv_regress(x: np.ndarray, y: np.ndarray, groups: np.ndarray, folds: int = 5,
               top: float | None = None) -> np.ndarray:
    """Out-of-fold ridge predictions (patient-grouped K-fold), clipped to ``[0, top]``."""
    k = min(folds, len(np.unique(groups)))
    if k < 2:
        raise DataError("severity regression needs images of at least 2 patients")
    pred = np.empty(len(y))
    for train, test in GroupKFold(n_splits=k).split(x, y, groups):
        model = make_pipeline(StandardScaler(), RidgeCV(alphas=ALPHAS))
        pred[test] = model.fit(x[train], y[train]).predict(x[test])
    return np.clip(pred, 0.0, np.inf if top is None else top)


def mae(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.mean(np.abs(np.asarray(y) - np.asarray(p))))


def pearson(y: np.ndarray, p: np.ndarray) -> float:
    """Pearson r; NaN when either side is constant (undefined)."""
    if np.std(y) == 0 or np.std(p) == 0:
        return float("nan")
    return float(pearsonr(y, p).statistic)


def score(y: np.ndarray, p: np.ndarray, groups: np.ndarray, n_boot: int = 1000,
          seed: int = 0) -> dict[str, Any]:
    """n, patients, MAE and Pearson r with 95 % patient-bootstrap CIs."""
    out: dict[str, Any] = {"n": int(len(y)), "patients": int(len(np.unique(groups)))}
    for name, fn in (("mae", mae), ("pearson_r", pearson)):
        ci = bootstrap_ci(fn, y, p, groups=groups, n_boot=n_boot, seed=seed)
        out[name] = ci.to_json()
    return out


def scatter_plot(results: dict[str, tuple[np.ndarray, np.ndarray, dict]], path: str | Path) -> Path:
    """One panel per target: expert score vs out-of-fold prediction, with r and MAE."""
    from matplotlib.figure import Figure  # the object API: no pyplot state, no backend switch

    fig = Figure(figsize=(5 * len(results), 4.5))
    axes = fig.subplots(1, len(results), squeeze=False)
    for ax, (name, (y, p, s)) in zip(axes[0], results.items()):
        top = TARGETS[name][1] if name in TARGETS else float(max(y.max(), p.max()))
        ax.scatter(y, p, s=14, alpha=0.7)
        ax.plot([0, top], [0, top], "k--", lw=1)
        ax.set(xlim=(0, top), ylim=(0, top), xlabel=f"expert {name} (mean of 3)",
               ylabel="predicted (out-of-fold)",
               title=f"{name}: r={s['pearson_r']['value']:.2f}, MAE={s['mae']['value']:.2f} (n={s['n']})")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    io.write_figure(path, fig, dpi=110)
    return path
