"""The three clinical experiments on ieee8023: fusion, prognosis, severity.

Each ``run_*`` takes an :class:`ExperimentConfig`, writes ``results.json`` and figures into
``cfg.out`` and returns the results. Images go through the shared image cache; image
features come from a frozen backbone (random init unless ``weights`` names a file: no
ImageNet weights are available offline, so these features are weak; see docs/fusion.md).
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from training.clinical import encoder as F
from training.clinical import prognosis as P
from training.clinical import severity as S
from training.config import DataOptions, opt
from training.errors import CXRError, DataError
from training import io
from training.audits.shortcuts import intensity_histogram
from training.clinical.fusion import fit_head, fusion_parts
from training.clinical.fusion import build_fusion_model
from training.data.cache import ImageCache, default_cache_dir
from training.data.formats import load_datasets
from training.data.splits import make_split, save_split, split_hash
from training.data.tasks import get_task
from training.engine.data import class_balance_weights
from training.engine.feature_cache import compute_features
from training.evaluation.bootstrap import bootstrap_ci
from training.evaluation.bootstrap import paired_bootstrap
from training.models.build import build_model, split_feature_head
from training.models.card import save_model
from training.preprocess import PreprocessConfig

log = logging.getLogger(__name__)

#: fusion default: everything but ``view`` (a known acquisition shortcut in this collection,
#: and a field the app cannot ask a user for)
FUSION_FIELDS = ("age", "sex", "offset", "temperature", "pO2_saturation",
                 "leukocyte_count", "neutrophil_count", "lymphocyte_count")
GRID = 4        # image statistics: mean intensity on a GRID x GRID grid (regional opacity)
HIST_BINS = 16


def _names(value: Any) -> tuple[str, ...] | None:
    """``"age,sex"`` (a flag) or a sequence → a tuple of names; None stays None."""
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else value
    return tuple(str(v).strip() for v in items if str(v).strip())


@dataclass
class ExperimentConfig(DataOptions):
    """Settings shared by the clinical experiments (cheap defaults: 64 px, frozen backbone);
    every field is a flag of ``cxrlab clinical``. ``data``: one ieee8023 covid-chestxray folder."""

    out: str = opt("clinical-output", "output folder")
    img_size: int = opt(64, "input size in px")
    arch: str = opt("resnet50", "backbone of the image features")
    weights: str | None = opt(None, "backbone weights file (default random init: offline)")
    seed: int = opt(0, "random seed")
    n_boot: int = opt(1000, "bootstrap resamples for the CIs")
    cache_dir: str | None = opt(None, "preprocessed-image cache (default ~/.cache/cxrlab)")
    fields: tuple[str, ...] | None = opt(None, "clinical fields, comma-separated (default per experiment)",
                                         metavar="NAME,...")
    epochs: int = opt(100, "fusion: max epochs of the heads")
    folds: int = opt(5, "prognosis/severity: cross-validation folds (by patient)")
    repeats: int = opt(5, "prognosis/severity: repeats of the cross-validation")
    tasks: tuple[str, ...] = opt(tuple(P.TASKS), "prognosis: outcomes to predict", metavar="NAME,...")
    extra: dict[str, Any] = opt(factory=dict, cli=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.data) > 1:
            raise CXRError(f"clinical: {len(self.data)} data folders given. What to do: pass one "
                           "ieee8023 covid-chestxray folder (--data DIR)")
        self.fields = _names(self.fields)
        self.tasks = _names(self.tasks) or ()


# ---------------------------------------------------------------------- shared pieces
def root(cfg: ExperimentConfig) -> Path:
    """The ieee8023 folder of ``cfg`` (its severity scores and metadata live there)."""
    return Path(cfg.data[0])


def load(cfg: ExperimentConfig):
    return load_datasets(cfg.data_spec)


def load_images(paths: Sequence[str], cfg: ExperimentConfig) -> tuple[np.ndarray, Any, list]:
    """uint8 ``(N, S, S, 3)`` images from the image cache, their PreprocessConfig, and errors."""
    pcfg = PreprocessConfig(size=cfg.img_size)
    images, errors = ImageCache(cfg.cache_dir or default_cache_dir()).load(list(paths), pcfg, on_error="skip")
    for e in errors:
        log.warning("image not used: %s (%s)", e["path"], e["reason"])
    return images, pcfg, errors


def image_statistics(images: np.ndarray) -> np.ndarray:
    """Intensity histogram and GRID x GRID regional means + std per image, ``(N, 16+16+2)``."""
    x = np.asarray(images)[..., 0].astype(np.float32) / 255.0
    n, s = x.shape[:2]
    hist = intensity_histogram(x, HIST_BINS)
    cut = np.linspace(0, s, GRID + 1).astype(int)
    grid = [x[:, cut[i]:cut[i + 1], cut[j]:cut[j + 1]].mean(axis=(1, 2))
            for i in range(GRID) for j in range(GRID)]
    flat = x.reshape(n, -1)
    return np.column_stack([hist, *grid, flat.mean(1), flat.std(1)]).astype(np.float32)


def feature_model(cfg: ExperimentConfig, outputs: list[str] | None = None, n_metadata: int = 0):
    """``(full model or None, image → pooled features model)``; seeded (random init is repeatable)."""
    import keras  # loads the Keras backend: only when a model is used


    keras.utils.set_random_seed(cfg.seed)
    if n_metadata:
        model = build_fusion_model(cfg.arch, outputs, "single", n_metadata, cfg.img_size,
                                   "frozen", cfg.weights, seed=cfg.seed)
        return model, fusion_parts(model)[0]
    model = build_model(cfg.arch, ["a", "b"], "single", cfg.img_size, "frozen", cfg.weights, seed=cfg.seed)
    return None, split_feature_head(model)[0]


def image_features(images: np.ndarray, cfg: ExperimentConfig) -> np.ndarray:
    """Frozen-backbone pooled features + :func:`image_statistics` (for the scikit-learn models)."""
    _, fm = feature_model(cfg)
    return np.hstack([compute_features(fm, images), image_statistics(images)])


def _ci_text(d: dict[str, Any]) -> str:
    return f"{d['value']:.3f} [{d['low']:.3f}, {d['high']:.3f}]"


def write_results(results: dict[str, Any], out: str | Path) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    return io.write_json(out / "results.json", results)


def _settings(cfg: ExperimentConfig) -> dict[str, Any]:
    d = asdict(cfg)
    d.pop("extra")
    return d


def _bar_plot(rows: list[tuple[str, str, dict]], path: Path, title: str) -> Path:
    """AUC with CI per (group, model)."""
    from matplotlib.figure import Figure  # the object API: no pyplot state, no backend switch

    fig = Figure(figsize=(max(6, 0.6 * len(rows)), 4))
    ax = fig.subplots()
    vals = [r[2]["value"] for r in rows]
    err = [[v - r[2]["low"] for v, r in zip(vals, rows)], [r[2]["high"] - v for v, r in zip(vals, rows)]]
    ax.bar(range(len(rows)), vals, yerr=err, capsize=3, color="#5b8dc9")
    ax.axhline(0.5, color="k", ls="--", lw=1)
    ax.set_xticks(range(len(rows)), [f"{g}\n{m}" for g, m, _ in rows], rotation=45, ha="right", fontsize=8)
    ax.set(ylim=(0, 1), ylabel="ROC-AUC (95% CI, patient bootstrap)", title=title)
    fig.tight_layout()
    io.write_figure(path, fig, dpi=110)
    return path


# ---------------------------------------------------------------------- fusion
def run_fusion(cfg: ExperimentConfig, save_model: bool = True) -> dict[str, Any]:
    """COVID-19 vs other findings on one patient split: image-only, metadata-only, fused."""
    out = Path(cfg.out)
    task = get_task("covid")
    ds = load(cfg)
    ds = ds.subset(~np.isnan(task.encode(ds)).all(axis=1))
    images, pcfg, errors = load_images(ds.meta["path"].astype(str).tolist(), cfg)
    ok = np.ones(len(ds), bool)
    ok[[e["index"] for e in errors]] = False
    ds, images = ds.subset(ok), images[ok]
    split = make_split(ds, task, parts=(0.7, 0.1, 0.2), seed=cfg.seed)
    split_file = save_split(split, out / "split.csv")
    part = split["part"].to_numpy()
    y = task.encode(ds)
    groups = ds.meta["patient"].astype(str).to_numpy()
    fields = F.available_fields(ds.meta[part == "train"], cfg.fields or FUSION_FIELDS)
    enc = F.ClinicalEncoder(fields).fit(ds.meta[part == "train"])
    meta = enc.transform(ds.meta)
    model, fm = feature_model(cfg, task.classes(), enc.width)

    feats = compute_features(fm, images)
    preds = _fusion_models(model, feats, meta, y, part, cfg)
    test = part == "test"
    yt = y[test, 1]
    scores = {name: _auc(yt, p, groups[test], cfg) for name, p in preds.items()}

    paired = {other: paired_bootstrap("roc_auc", yt, preds["fused (keras)"], preds[other],
                                      groups[test], cfg.n_boot, seed=cfg.seed)
              for other in preds if other != "fused (keras)"}
    counts = {p_: {"images": int((part == p_).sum()), "patients": int(len(set(groups[part == p_]))),
                   "positives": int(y[part == p_, 1].sum())} for p_ in ("train", "val", "test")}
    results = {"experiment": "fusion", "task": "covid", "positive_class": "COVID-19 positive",
               "settings": _settings(cfg), "fields": fields, "encoded": enc.params["output_names"],
               "split": {"file": "split.csv", "sha256": split_hash(split_file), "counts": counts},
               "images_not_used": errors, "test": scores, "paired_vs_fused": paired,
               "missingness_by_class": _missingness(ds.meta, fields, y[:, 1])}
    if save_model:
        results["model"] = str(_save_fused(model, cfg, task, enc, pcfg, split_file, counts, scores, out))
    write_results(results, out)
    _bar_plot([("covid", n, s["roc_auc"]) for n, s in scores.items()], out / "auc.png",
              "COVID-19 vs other findings, test part")
    return results


def _fusion_models(model, feats, meta, y, part, cfg) -> dict[str, np.ndarray]:
    """Test-part scores of every compared model (all fitted on the train part only)."""
    import keras  # loads the Keras backend: only when a model is used
    from sklearn.ensemble import HistGradientBoostingClassifier  # scikit-learn: only this step needs it
    from sklearn.linear_model import LogisticRegression  # scikit-learn: only this step needs it


    tr, va, te = (part == p for p in ("train", "val", "test"))
    cw = class_balance_weights(y[tr])[0]  # "balanced", as scikit-learn's
    model.get_layer("image_norm").adapt(feats[tr])
    _, head = fusion_parts(model)
    val = ([feats[va], meta[va]], y[va]) if va.any() else None
    fit_head(head, [feats[tr], meta[tr]], y[tr], val, cfg.epochs, sample_weight=cw, seed=cfg.seed)
    out = {"fused (keras)": np.asarray(head.predict([feats[te], meta[te]], verbose=0))[:, 1]}
    keras.utils.set_random_seed(cfg.seed)
    norm = keras.layers.Normalization()
    norm.adapt(feats[tr])
    img = keras.Sequential([keras.Input(feats.shape[1:]), norm, keras.layers.Dropout(0.2, seed=cfg.seed),
                            keras.layers.Dense(2, activation="softmax")])
    fit_head(img, [feats[tr]], y[tr], ([feats[va]], y[va]) if va.any() else None, cfg.epochs,
             sample_weight=cw, seed=cfg.seed)
    out["image-only (keras)"] = np.asarray(img.predict(feats[te], verbose=0))[:, 1]
    yt = y[tr, 1].astype(int)
    lr = LogisticRegression(max_iter=5000, class_weight="balanced").fit(meta[tr], yt)
    out["metadata-only (LR)"] = lr.predict_proba(meta[te])[:, 1]
    hgb = HistGradientBoostingClassifier(max_depth=3, class_weight="balanced", random_state=cfg.seed)
    out["metadata-only (HGB)"] = hgb.fit(meta[tr], yt).predict_proba(meta[te])[:, 1]
    return out


def _auc(y: np.ndarray, p: np.ndarray, groups: np.ndarray, cfg: ExperimentConfig) -> dict[str, Any]:
    ci = bootstrap_ci("roc_auc", y, p, groups=groups, n_boot=cfg.n_boot, seed=cfg.seed)
    return {"n": int(len(y)), "patients": int(len(set(groups))), "positives": int(np.sum(y == 1)),
            "roc_auc": ci.to_json()}


def _missingness(meta, fields: list[str], y: np.ndarray) -> dict[str, dict[str, float]]:
    """Share of rows with each field known, per class: missingness itself can carry the label."""
    return {f: {"positive": float(meta[f][y == 1].notna().mean()),
                "negative": float(meta[f][y == 0].notna().mean())} for f in fields}


def _test_evaluation(s: dict[str, Any], classes: list[str], split_file: Path) -> dict[str, Any]:
    """The fused model's test score as the card's test evaluation (its positive class's AUC)."""
    positive = {"n_pos": s["positives"], "n_neg": s["n"] - s["positives"], "roc_auc": s["roc_auc"]}
    return {"test_set": "internal", "split": str(split_file), "split_sha256": split_hash(split_file),
            "part": "test", "n_images": s["n"], "n_patients": s["patients"],
            "metrics": {"kind": "single", "outputs": list(classes), "per_output": {classes[-1]: positive}}}


def _save_fused(model, cfg, task, enc, pcfg, split_file, counts, scores, out: Path) -> Path:
    card = {"name": f"fusion-covid-{cfg.arch}", "architecture": cfg.arch, "task": task.name,
            "kind": "single", "outputs": task.classes(), "input_size": cfg.img_size,
            "preprocessing": pcfg.to_dict(), "transfer": {"mode": "frozen", "weights": cfg.weights},
            "metadata_features": list(enc.features), "metadata_encoder": enc.to_dict(),
            "split": {"file": str(split_file), "sha256": split_hash(split_file),
                      "counts": {k: v["images"] for k, v in counts.items()}},
            "metrics": {"test": _test_evaluation(scores["fused (keras)"], task.classes(), split_file)},
            "notes": "late fusion (image backbone + clinical MLP); the backbone is "
                     f"{'random-init' if cfg.weights is None else cfg.weights} and frozen: weak image features"}
    return save_model(model, card, out / "model")


# ---------------------------------------------------------------------- prognosis
def run_prognosis(cfg: ExperimentConfig) -> dict[str, Any]:
    """Each prognosis task: image features + LR, metadata-only LR, prevalence baseline."""
    from sklearn.linear_model import LogisticRegression  # scikit-learn: only this step needs it
    from sklearn.pipeline import make_pipeline  # scikit-learn: only this step needs it
    from sklearn.preprocessing import StandardScaler  # scikit-learn: only this step needs it

    out = Path(cfg.out)
    ds = load(cfg)
    cohorts = {t: P.cohort(ds.meta, t) for t in cfg.tasks}
    rows = sorted({int(r) for c, _ in cohorts.values() for r in c["row"]})
    if not rows:
        raise DataError("no eligible patient for any prognosis task", path=root(cfg),
                        hint="check offsets and outcome columns in metadata.csv")
    images, _, errors = load_images(ds.meta["path"].iloc[rows].astype(str).tolist(), cfg)
    bad = {rows[e["index"]] for e in errors}
    feats = dict(zip(rows, image_features(images, cfg)))
    fields = F.available_fields(ds.meta.iloc[rows], cfg.fields or F.FIELDS)
    results: dict[str, Any] = {"experiment": "prognosis", "settings": _settings(cfg), "fields": fields,
                               "protocol": P.__doc__.split("\n\n")[1], "tasks": {}, "images_not_used": errors}
    bars = []
    for t, (c, counts) in cohorts.items():
        c = c[~c["row"].isin(bad)].reset_index(drop=True)
        y, g = c["y"].to_numpy(), c["patient"].astype(str).to_numpy()
        xi = np.stack([feats[r] for r in c["row"]])
        m = ds.meta.iloc[c["row"].to_numpy()].reset_index(drop=True)

        def image_lr(tr, te, xi=xi, y=y):  # bound now: used within this iteration
            est = make_pipeline(StandardScaler(), LogisticRegression(C=0.01, max_iter=5000))
            return est.fit(xi[tr], y[tr]).predict_proba(xi[te])[:, 1]

        def meta_lr(tr, te, m=m, y=y):
            enc = F.ClinicalEncoder(fields).fit(m.iloc[tr])  # fitted on the training fold only
            est = LogisticRegression(C=1.0, max_iter=5000)
            return est.fit(enc.transform(m.iloc[tr]), y[tr]).predict_proba(enc.transform(m.iloc[te]))[:, 1]

        entry = {"positive_class": P.TASKS[t][2], "counts": {**counts, "n": len(y), "positives": int(y.sum())},
                 "models": {}}
        for name, fp in (("image features + LR", image_lr), ("metadata-only (LR)", meta_lr),
                         ("prevalence baseline", P.prevalence_predict(y))):
            try:
                p = P.cv_predict(fp, y, g, cfg.folds, cfg.repeats, cfg.seed)
            except DataError as exc:
                entry["models"][name] = {"error": str(exc)}
                continue
            scorer = P.baseline_score if name == "prevalence baseline" else P.score
            entry["models"][name] = scorer(y, p, g, cfg.n_boot, cfg.seed)
            bars.append((t, name, entry["models"][name]["roc_auc"]))
        results["tasks"][t] = entry
    write_results(results, out)
    if bars:
        _bar_plot(bars, out / "auc.png", "Prognosis from an early X-ray (out-of-fold)")
    return results


# ---------------------------------------------------------------------- severity
def run_severity(cfg: ExperimentConfig) -> dict[str, Any]:
    """Ridge regression of geographic extent and opacity from image features (grouped CV)."""
    out = Path(cfg.out)
    ds = load(cfg)
    scores = S.read_scores(root(cfg) / S.SCORES_FILE)
    joined, unmatched = S.join_scores(ds.meta, scores)
    if unmatched:
        log.warning("%d scored file(s) not in the dataset (missing image or other view): %s",
                    len(unmatched), unmatched[:5])
    images, _, errors = load_images(ds.meta["path"].iloc[joined["row"]].astype(str).tolist(), cfg)
    keep = np.ones(len(joined), bool)
    keep[[e["index"] for e in errors]] = False
    joined, images = joined[keep].reset_index(drop=True), images[keep]
    x = image_features(images, cfg)
    groups = ds.meta["patient"].iloc[joined["row"]].astype(str).to_numpy()
    results: dict[str, Any] = {"experiment": "severity", "settings": _settings(cfg),
                               "scored_files": len(scores), "matched": len(joined),
                               "unmatched_files": unmatched, "images_not_used": errors, "targets": {}}
    panels = {}
    for name, (_, top) in S.TARGETS.items():
        y = joined[name].to_numpy()
        p = S.cv_regress(x, y, groups, cfg.folds, top)
        s = S.score(y, p, groups, cfg.n_boot, cfg.seed)
        s["baseline_mean_mae"] = S.mae(y, np.full(len(y), y.mean()))  # in-sample mean: optimistic
        results["targets"][name] = s
        panels[name] = (y, p, s)
    S.scatter_plot(panels, out / "scatter.png")
    write_results(results, out)
    return results


def summary(results: dict[str, Any]) -> str:
    """A plain-text table of a results dict (for the CLI and the docs)."""
    lines = []
    if results["experiment"] == "fusion":
        for name, s in results["test"].items():
            lines.append(f"{name:<22} AUC {_ci_text(s['roc_auc'])}  n={s['n']} "
                         f"patients={s['patients']} pos={s['positives']}")
    elif results["experiment"] == "prognosis":
        for t, e in results["tasks"].items():
            for name, s in e["models"].items():
                if "error" in s:
                    lines.append(f"{t:<24} {name:<22} {s['error']}")
                    continue
                lines.append(f"{t:<24} {name:<22} AUC {_ci_text(s['roc_auc'])}  "
                             f"Brier {_ci_text(s['brier'])}  n={s['n']} pos={s['positives']}")
    else:
        for t, s in results["targets"].items():
            lines.append(f"{t:<18} MAE {_ci_text(s['mae'])}  r {_ci_text(s['pearson_r'])}  "
                         f"n={s['n']} patients={s['patients']}")
    return "\n".join(lines)


EXPERIMENTS = {"fusion": run_fusion, "prognosis": run_prognosis, "severity": run_severity}
