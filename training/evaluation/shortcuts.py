"""External and shortcut checks: does a model learn the disease, or the hospital?

Three checks, each a plain function writing ``<name>.json`` and a short ``<name>.html``:

* :func:`source_probe`: how well the image alone predicts which data set it came from. A
  logistic-regression *probe* is fitted on image features of the train part (patient-level
  split) and scored on the test part (ROC-AUC, balanced accuracy, patient-bootstrap CIs).
  A high score (ROC-AUC > :data:`WARN_AUC`) warns that a model separating classes that come
  from different sources (COVID-19 from ieee8023, normal from Kermany) may learn the source.
* :func:`leave_one_source_out`: for data combining several sources, train on all sources
  but one and test on the held-out one (an **external** test: never split from the training
  data). By default the "model" is the same cheap probe (features + logistic regression),
  which makes the check run in seconds; pass ``trainer=`` to train a real model per fold.
* :func:`lung_restricted_eval`: a saved model's AUC on the full image versus the image with
  everything outside the lungs set to 0 (ieee8023 lungVAE masks or lung boxes), paired by
  image. A model that loses much of its AUC without the borders read something outside
  the lungs (markers, text, devices, collimation).

Probe features: the pooled features of a frozen backbone (:func:`training.models.build
.build_model` + ``split_feature_head``; with ``weights=None`` a random-init backbone, which
still encodes texture and intensity statistics), plus, by default when ``weights=None``,
cheap image statistics that capture acquisition differences (:func:`image_statistics`).
"""
from __future__ import annotations

import html
import json
import logging
import re
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from training.errors import CXRError, DataError

log = logging.getLogger(__name__)

#: Source-probe ROC-AUC above which the report warns.
WARN_AUC = 0.9
SOURCE_WARNING = ("the image alone identifies its source: a model trained to separate classes "
                  "that come from different sources may learn the source")
HIST_BINS = 32
#: Width of the border band, as a share of the image side.
BORDER = 0.1
FEATURE_SETS = ("backbone", "stats")
MASKS_DIR = Path("annotations") / "lungVAE-masks"
BOXES_FILE = Path("annotations") / "imageannotation_ai_lung_bounding_boxes.json"
_MASK_NAME = re.compile(r"^(?P<stem>.+)_mask\.png(\.png)?$", re.IGNORECASE)

#: ``trainer(train, test, task) -> probabilities (len(test), C)`` in ``task.classes`` order.
#: ``train.meta["part"]`` says train / val, for trainers that want a validation set.
Trainer = Callable[[Any, Any, Any], np.ndarray]


# ------------------------------------------------------------------ features

def original_size(path: str) -> tuple[float, float]:
    """``(width, height)`` of the file as stored (header only); NaN when unreadable."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return float(img.width), float(img.height)
    except (OSError, UnidentifiedImageError):
        pass
    try:  # DICOM (PIL does not read it)
        import pydicom

        d = pydicom.dcmread(path, stop_before_pixels=True)
        return float(d.Columns), float(d.Rows)
    except Exception:  # noqa: BLE001  any unreadable header: the size is unknown, not an error
        return float("nan"), float("nan")


def intensity_histogram(x: np.ndarray, bins: int) -> np.ndarray:
    """Per-image histogram ``(N, bins)`` of grey levels ``x`` in [0, 1] (fractions of pixels)."""
    n = len(x)
    idx = np.minimum((x * bins).astype(np.int64), bins - 1).reshape(n, -1)
    return np.stack([np.bincount(i, minlength=bins) for i in idx]) / idx.shape[1]


def image_statistics(images: np.ndarray, paths: Sequence[str]) -> np.ndarray:
    """Cheap acquisition features per image, ``(N, 32 + 10 + 4)`` float32.

    A 32-bin intensity histogram of the preprocessed image; mean and std of each border band
    (top, bottom, left, right: padding, collimation, burnt-in text) and of the centre; and the
    original file's width, height, aspect and log pixel count (scanner / export settings).
    """
    x = np.asarray(images)[..., 0].astype(np.float32) / 255.0
    n, s = x.shape[:2]
    hist = intensity_histogram(x, HIST_BINS)
    b = max(1, int(round(s * BORDER)))
    bands = [x[:, :b], x[:, -b:], x[:, :, :b], x[:, :, -b:], x[:, b:-b, b:-b] if s > 2 * b else x]
    band_stats = [f(a.reshape(n, -1), axis=1) for a in bands for f in (np.mean, np.std)]
    w, h = np.array([original_size(p) for p in paths], dtype=np.float64).reshape(-1, 2).T
    size = [w, h, w / h, np.log(w * h)]
    out = np.column_stack([hist, *band_stats, *size]).astype(np.float32)
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)


def backbone_features(images: np.ndarray, arch: str, weights: str | None, seed: int = 0,
                      batch_size: int = 32) -> np.ndarray:
    """Pooled frozen-backbone features ``(N, F)`` of uint8 images (random init when weights=None)."""
    import keras

    from training.engine.features import compute_features
    from training.models.build import build_model, split_feature_head

    keras.utils.set_random_seed(seed)  # a random-init backbone must be the same every run
    model = build_model(arch, ["a", "b"], "single", input_size=images.shape[1], mode="frozen",
                        weights=weights)
    feature_model, _ = split_feature_head(model)
    return compute_features(feature_model, images, batch_size)


def _feature_sets(features: str | Sequence[str], weights: str | None) -> tuple[str, ...]:
    if features == "auto":
        return ("backbone", "stats") if weights is None else ("backbone",)
    sets = (features,) if isinstance(features, str) else tuple(features)
    unknown = sorted(set(sets) - set(FEATURE_SETS))
    if unknown or not sets:
        raise CXRError(f"unknown probe feature set(s) {unknown or sets}; choose from "
                       f"{', '.join(FEATURE_SETS)} or 'auto'")
    return sets


def probe_features(paths: Sequence[str], img_size: int, arch: str = "resnet50",
                   weights: str | None = None, features: str | Sequence[str] = "auto",
                   cache_dir: str | Path | None = None, seed: int = 0
                   ) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]:
    """Probe features of every path: ``(X for readable rows, readable mask, skipped records)``.

    Images come from the preprocessed-image cache (:class:`training.data.cache.ImageCache`);
    unreadable files are left out and listed (never silently dropped).
    """
    from training.data.cache import ImageCache, default_cache_dir
    from training.preprocess import PreprocessConfig

    sets = _feature_sets(features, weights)
    cache = ImageCache(Path(cache_dir) if cache_dir else default_cache_dir())
    images, errors = cache.load(list(paths), PreprocessConfig(size=int(img_size)), on_error="skip")
    ok = np.ones(len(paths), dtype=bool)
    ok[[e["index"] for e in errors]] = False
    kept = [p for p, k in zip(paths, ok) if k]
    blocks = []
    if "backbone" in sets:
        blocks.append(backbone_features(images[ok], arch, weights, seed))
    if "stats" in sets:
        blocks.append(image_statistics(images[ok], kept))
    skipped = [{"path": e["path"], "reason": e["reason"]} for e in errors]
    return np.hstack(blocks).astype(np.float32), ok, skipped


def fit_probe(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, n_classes: int,
              seed: int = 0) -> np.ndarray:
    """Standardised logistic regression; probabilities ``(len(x_test), n_classes)``.

    Classes absent from ``y_train`` get probability 0 (the probe cannot predict them).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if len(np.unique(y_train)) < 2:
        raise CXRError(f"the probe needs at least 2 classes in its training rows, got "
                       f"{np.unique(y_train).tolist()}")
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))
    clf.fit(x_train, y_train)
    out = np.zeros((len(x_test), n_classes), dtype=np.float64)
    out[:, clf.classes_.astype(np.int64)] = clf.predict_proba(x_test)
    return out


class ProbeTrainer:
    """The default :data:`Trainer` of :func:`leave_one_source_out`: features + logistic regression."""

    def __init__(self, features: np.ndarray, paths: Sequence[str], seed: int = 0):
        self.features = features
        self.row = {str(p): i for i, p in enumerate(paths)}
        self.seed = seed

    def _x(self, ds: Any) -> np.ndarray:
        return self.features[[self.row[str(p)] for p in ds.meta["path"]]]

    def __call__(self, train: Any, test: Any, task: Any) -> np.ndarray:
        y = task.encode(train)
        known = ~np.isnan(y).any(axis=1)
        return fit_probe(self._x(train)[known], y[known].argmax(axis=1), self._x(test),
                         y.shape[1], self.seed)


# ------------------------------------------------------------------ scoring and output

def _scored(Y: np.ndarray, P: np.ndarray, names: Sequence[str], groups: np.ndarray,
            n_boot: int, seed: int) -> dict[str, Any]:
    """Macro ROC-AUC, balanced accuracy and per-class ROC-AUC with patient-bootstrap CIs."""
    from training.evaluation import metrics as M
    from training.evaluation.bootstrap import attach_ci, bootstrap_metrics

    m = attach_ci(M.compute_metrics(Y, P, "single", names),
                  bootstrap_metrics(Y, P, "single", names, None, groups, n_boot, 0.05, seed))
    return {"roc_auc": m["macro"]["roc_auc"], "balanced_accuracy": m["balanced_accuracy"],
            "per_class_roc_auc": {n: m["per_output"][n]["roc_auc"] for n in names},
            "confusion_matrix": m["confusion_matrix"], "n": m["n"]}


def _ci_text(v: Any) -> str:
    from training.evaluation.evaluate import fmt

    if isinstance(v, dict):
        return f"{fmt(v.get('value'))} (95% CI {fmt(v.get('low'))}–{fmt(v.get('high'))})"
    return fmt(v)


def _write(result: dict[str, Any], out_dir: str | Path, name: str, title: str,
           rows: list[list[Any]], header: list[str]) -> dict[str, Any]:
    """``<name>.json`` (rounded) and ``<name>.html`` (summary paragraph + one table)."""
    from training.evaluation.evaluate import DISCLAIMER, rounded, write_json

    out = Path(out_dir)
    result = rounded({**result, "disclaimer": DISCLAIMER})
    write_json(result, out / f"{name}.json")
    e = html.escape
    table = "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title></head>"
            f"<body><h1>{e(title)}</h1>"
            + "".join(f"<p>{e(p)}</p>" for p in result["summary"])
            + f"<table border='1'><tr>{''.join(f'<th>{e(h)}</th>' for h in header)}</tr>{table}"
            f"</table><p><small>{e(DISCLAIMER)}</small></p></body></html>\n")
    (out / f"{name}.html").write_text(page, encoding="utf-8")
    return result


def _load(data: Sequence[str] | str, on_error: str = "skip") -> Any:
    from training.data.formats import load_datasets

    return load_datasets([data] if isinstance(data, (str, Path)) else list(data), on_error=on_error)


def _groups(ds: Any) -> np.ndarray:
    return ds.meta["patient"].astype(str).to_numpy(dtype=object)


# ------------------------------------------------------------------ source probe

def _source_split(ds: Any, split_csv: str | Path | None, seed: int) -> np.ndarray:
    """Part per row: from ``split_csv``, else a patient-level split stratified by source."""
    from training.data.dataset import CXRDataset
    from training.data.splits import load_split, make_split
    from training.data.tasks import get_task

    if split_csv is not None:
        return load_split(split_csv, ds)["part"].to_numpy()
    sources = sorted(set(ds.meta["source"].astype(str)))
    # sources as a one-hot "multilabel" matrix: make_split then stratifies by source
    onehot = (ds.meta["source"].astype(str).to_numpy()[:, None] == np.array(sources)[None]).astype(np.float32)
    by_source = CXRDataset(sources, onehot, ds.meta, ds.name)
    return make_split(by_source, get_task("multilabel"), parts=(0.7, 0.0, 0.3), seed=seed)["part"].to_numpy()


def source_probe(data: Sequence[str] | str, split_csv: str | Path | None = None,
                 arch: str = "resnet50", img_size: int = 224, weights: str | None = None,
                 out_dir: str | Path = "shortcuts", seed: int = 0,
                 features: str | Sequence[str] = "auto", cache_dir: str | Path | None = None,
                 n_boot: int = 1000, on_error: str = "skip") -> dict[str, Any]:
    """How well the image alone predicts its source; writes ``source_probe.json`` / ``.html``.

    Fits the probe on the train (and val) part of a patient-level split (``split_csv``, or a
    new one stratified by source: 70 / 30) and scores it on the test part.
    """
    ds = _load(data, on_error)
    sources = sorted(set(ds.meta["source"].astype(str)))
    if len(sources) < 2:
        raise DataError(f"the data hold one source only ({sources}): a source probe needs at "
                        "least two", hint="pass two or more datasets")
    part = _source_split(ds, split_csv, seed)
    paths = ds.meta["path"].astype(str).tolist()
    X, ok, skipped = probe_features(paths, img_size, arch, weights, features, cache_dir, seed)
    y = np.searchsorted(sources, ds.meta["source"].astype(str).to_numpy())[ok]
    part, groups = part[ok], _groups(ds)[ok]
    train, test = part != "test", part == "test"
    if not test.any():
        raise DataError("the split has no test part", path=split_csv, hint="make a split with a test part")
    P = fit_probe(X[train], y[train], X[test], len(sources), seed)
    scores = _scored(np.eye(len(sources))[y[test]], P, sources, groups[test], n_boot, seed)
    auc = scores["roc_auc"]["value"]
    warn = bool(np.isfinite(auc) and auc > WARN_AUC)
    summary = [f"Source probe ({'+'.join(_feature_sets(features, weights))} features of "
               f"{arch} at {img_size} px, weights={weights}): predicting the source "
               f"({', '.join(sources)}) from the image gives ROC-AUC {_ci_text(scores['roc_auc'])} and "
               f"balanced accuracy {_ci_text(scores['balanced_accuracy'])} on "
               f"{int(test.sum())} test images of {len(set(groups[test]))} patients."]
    summary.append(f"WARNING: {SOURCE_WARNING}." if warn else
                   f"The source is not readily identified from the image (ROC-AUC <= {WARN_AUC}).")
    result = {"check": "source_probe", "sources": sources, "warning": warn,
              "warn_above_auc": WARN_AUC, "arch": arch, "img_size": img_size, "weights": weights,
              "features": list(_feature_sets(features, weights)), "n_features": int(X.shape[1]),
              "split": str(split_csv) if split_csv else f"new patient-level split by source, seed {seed}",
              "n_train": int(train.sum()), "n_test": int(test.sum()),
              "n_test_patients": int(len(set(groups[test]))), "metrics": scores,
              "bootstrap": {"n_boot": n_boot, "resampling": "patients"}, "skipped": skipped,
              "summary": summary}
    rows = [[s, _ci_text(scores["per_class_roc_auc"][s])] for s in sources]
    return _write(result, out_dir, "source_probe", "Source probe", rows, ["source", "ROC-AUC (one vs rest)"])


# ------------------------------------------------------------------ leave one source out

def leave_one_source_out(data: Sequence[str], task: str = "pneumonia",
                         split_csv: str | Path | None = None, arch: str = "resnet50",
                         img_size: int = 224, weights: str | None = None,
                         out_dir: str | Path = "shortcuts", seed: int = 0,
                         features: str | Sequence[str] = "auto",
                         cache_dir: str | Path | None = None, n_boot: int = 1000,
                         trainer: Trainer | None = None, on_error: str = "skip") -> dict[str, Any]:
    """Per source S: train on the other sources' train+val parts, test on all of S (external).

    Also an ``internal`` reference: train on every source's train+val, test on the test part.
    ``trainer`` (see :data:`Trainer`) replaces the default probe model. Writes
    ``leave_one_source_out.json`` / ``.html``.
    """
    from training.data.splits import load_split, make_split
    from training.data.tasks import get_task

    t = get_task(task)
    if t.kind != "single":
        raise CXRError(f"leave-one-source-out needs a single-label task, got {task!r} ({t.kind}); "
                       "choose one of covid, pneumonia, 3class, 4class")
    ds = _load(data, on_error)
    source = ds.meta["source"].astype(str).to_numpy()
    sources = sorted(set(source))
    if len(sources) < 2:
        raise DataError(f"the data hold one source only ({sources}): nothing to leave out",
                        hint="pass two or more datasets")
    part = (load_split(split_csv, ds) if split_csv else make_split(ds, t, seed=seed))["part"].to_numpy()
    paths = ds.meta["path"].astype(str).tolist()
    skipped: list[dict[str, Any]] = []
    if trainer is None:
        X, ok, skipped = probe_features(paths, img_size, arch, weights, features, cache_dir, seed)
        trainer = ProbeTrainer(X, [p for p, k in zip(paths, ok) if k], seed)
        model_desc = (f"probe model: logistic regression on {'+'.join(_feature_sets(features, weights))} "
                      f"features of {arch} at {img_size} px, weights={weights}")
    else:
        ok, model_desc = np.ones(len(ds), dtype=bool), f"trainer {getattr(trainer, '__name__', trainer)!r}"
    labelled = ~np.isnan(t.encode(ds)).any(axis=1) & ok
    folds = {"internal": (labelled & (part != "test"), labelled & (part == "test"), "internal")}
    for s in sources:
        folds[s] = (labelled & (source != s) & (part != "test"), labelled & (source == s), "external")
    results = {name: _fold(ds, t, part, tr, te, kind, trainer, n_boot, seed)
               for name, (tr, te, kind) in folds.items()}
    summary = [f"Leave-one-source-out, task {task} ({model_desc}). Each held-out source is an "
               "external test: the model never saw any of its images."]
    summary += [f"{name}: {r['skipped']}" if "skipped" in r else
                f"{name} ({r['test_set']}, n={r['n_test']}): ROC-AUC {_ci_text(r['metrics']['roc_auc'])}"
                for name, r in results.items()]
    result = {"check": "leave_one_source_out", "task": task, "classes": t.classes(ds),
              "sources": sources, "model": model_desc, "folds": results, "skipped": skipped,
              "bootstrap": {"n_boot": n_boot, "resampling": "patients"}, "summary": summary}
    rows = [[n, r.get("test_set"), r.get("n_train"), r.get("n_test"),
             _ci_text(r["metrics"]["roc_auc"]) if "metrics" in r else r["skipped"],
             _ci_text(r["metrics"]["balanced_accuracy"]) if "metrics" in r else ""]
            for n, r in results.items()]
    return _write(result, out_dir, "leave_one_source_out", "Leave one source out", rows,
                  ["held out", "test set", "train images", "test images", "ROC-AUC (macro)",
                   "balanced accuracy"])


def _fold(ds: Any, task: Any, part: np.ndarray, train: np.ndarray, test: np.ndarray, kind: str,
          trainer: Trainer, n_boot: int, seed: int) -> dict[str, Any]:
    """Train on ``train`` rows, score on ``test`` rows; a reason instead when impossible."""
    classes = task.classes(ds)
    y_tr = task.encode(ds)[train]
    present = sorted({classes[i] for i in y_tr.argmax(axis=1)})
    base = {"test_set": kind, "n_train": int(train.sum()), "n_test": int(test.sum()),
            "train_classes": present}
    if not test.any() or len(present) < 2:
        why = "no labelled test images" if not test.any() else f"training rows hold {present} only"
        return {**base, "skipped": f"not scored: {why}"}
    tr = ds.subset(train)
    tr.meta["part"] = part[train]
    te = ds.subset(test)
    P = np.asarray(trainer(tr, te, task), dtype=np.float64)
    missing = [c for c in classes if c not in present]
    notes = [f"classes {missing} never seen in training: the model cannot predict them"] if missing else []
    return {**base, "n_test_patients": int(te.meta["patient"].nunique()), "notes": notes,
            "metrics": _scored(task.encode(te), P, classes, _groups(te), n_boot, seed)}


# ------------------------------------------------------------------ lung masks and boxes

def find_lung_masks(root: str | Path) -> dict[str, Path]:
    """``{image path: mask path}`` for the ieee8023 images that have a lungVAE mask.

    Masks are named ``<image stem>_mask.png`` (a few ``_mask.png.png``); masks whose image
    is absent from ``images/`` are logged, not returned.
    """
    root = Path(root)
    folder = root / MASKS_DIR
    if not folder.is_dir():
        raise DataError("no lung mask folder", path=folder, hint="point at the ieee8023 dataset root")
    images = {p.stem: p for p in sorted((root / "images").iterdir()) if p.is_file()}
    out: dict[str, Path] = {}
    orphans = []
    for mask in sorted(folder.iterdir()):
        m = _MASK_NAME.match(mask.name)
        if not m:
            continue  # README.md and the like
        image = images.get(m["stem"])
        if image is None:
            orphans.append(mask.name)
        else:
            out[str(image)] = mask
    if orphans:
        log.info("%s: %d lung masks name images absent from images/ (e.g. %s)", folder,
                 len(orphans), orphans[:3])
    return out


def read_lung_boxes(root: str | Path) -> dict[str, list[tuple[float, float, float, float]]]:
    """``{image path: [(x0, y0, x1, y1), ...]}`` lung boxes in the stored file's pixels.

    The JSON is COCO-style (``bbox = [x, y, width, height]`` in the pixels of the annotated
    image, whose ``width``/``height`` it records); the stored images were downsized since, so
    boxes are scaled to each file's actual size. Boxes without coordinates are logged and left out.
    """
    root = Path(root)
    path = root / BOXES_FILE
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        images = {im["id"]: im for im in doc["images"]}
        annotations = doc["annotations"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise DataError(f"cannot read the lung boxes ({exc})", path=path,
                        hint="check that it is the imageannotation.ai COCO-style JSON") from exc
    out: dict[str, list[tuple[float, float, float, float]]] = {}
    unusable = 0
    for a in annotations:
        im = images.get(a.get("image_id"))
        box = a.get("bbox") or []
        if im is None or len(box) != 4 or any(v is None for v in box) or not im.get("width"):
            unusable += 1
            continue
        file = root / "images" / im["file_name"]
        if not file.is_file():
            continue
        w, h = original_size(str(file))
        sx, sy = w / im["width"], h / im["height"]
        x, y, bw, bh = (float(v) for v in box)
        out.setdefault(str(file), []).append((x * sx, y * sy, (x + bw) * sx, (y + bh) * sy))
    if unusable:
        log.info("%s: %d lung boxes without coordinates or image left out", path, unusable)
    return out


def boxes_mask(boxes: Sequence[tuple[float, float, float, float]], shape: tuple[int, int]) -> np.ndarray:
    """Boolean ``shape`` mask, True inside any box (boxes clipped to the image)."""
    mask = np.zeros(shape, dtype=bool)
    h, w = shape
    for x0, y0, x1, y1 in boxes:
        r0, r1 = max(0, int(np.floor(y0))), min(h, int(np.ceil(y1)))
        c0, c1 = max(0, int(np.floor(x0))), min(w, int(np.ceil(x1)))
        mask[r0:r1, c0:c1] = True
    return mask


def read_mask(path: str | Path, shape: tuple[int, int]) -> np.ndarray:
    """A mask image resized (nearest) to ``shape`` ``(h, w)``; True where it is bright (> 127)."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            small = img.convert("L").resize((shape[1], shape[0]), Image.Resampling.NEAREST)
    except OSError as exc:
        raise DataError(f"cannot read the lung mask ({exc})", path=path,
                        hint="re-download the annotations") from exc
    return np.asarray(small) > 127


def apply_mask(gray: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``gray`` with every pixel outside ``mask`` set to 0 (before preprocessing)."""
    if gray.shape != mask.shape:
        raise ValueError(f"mask {mask.shape} does not match the image {gray.shape}")
    return np.where(mask, gray, 0).astype(np.float32)


def _region(kind: str, gray: np.ndarray, source: Any) -> np.ndarray:
    return read_mask(source, gray.shape) if kind == "masks" else boxes_mask(source, gray.shape)


# ------------------------------------------------------------------ lung-restricted evaluation

def _unseen(ds: Any, card: dict, model_dir: Path) -> tuple[np.ndarray, str]:
    """Rows the model did not train or validate on (by path or patient), and how that was decided."""
    from training.evaluation.evaluate import training_split

    seen = training_split(card, model_dir)
    if seen is None:
        return np.ones(len(ds), dtype=bool), "no split recorded in the card: every annotated image used"
    used = seen[seen["part"].isin(["train", "val"])]
    mask = ~(ds.meta["path"].astype(str).isin(set(used["path"]))
             | ds.meta["patient"].astype(str).isin(set(used["patient"]))).to_numpy()
    return mask, (f"images of the model's test part or outside its split ({seen.attrs.get('file')}); "
                  f"{int((~mask).sum())} images of train/val patients left out")


def _images(paths: Sequence[str], regions: dict[str, Any], kind: str, cfg: Any
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, str]]]:
    """Full and lung-restricted preprocessed images (same decode and preprocess path)."""
    from training.preprocess import decode_image, preprocess

    full, restricted, ok, skipped = [], [], [], []
    for p in paths:
        try:
            gray = decode_image(p)
            masked = apply_mask(gray, _region(kind, gray, regions[p]))
            full.append(preprocess(gray, cfg))
            restricted.append(preprocess(masked, cfg))
            ok.append(True)
        except (CXRError, ValueError) as exc:
            skipped.append({"path": p, "reason": str(exc)})
            ok.append(False)
    shape = (0, cfg.size, cfg.size, cfg.channels)
    stack = lambda xs: np.stack(xs) if xs else np.zeros(shape, np.uint8)  # noqa: E731
    return stack(full), stack(restricted), np.array(ok, dtype=bool), skipped


def _compare(Y: np.ndarray, p_full: np.ndarray, p_rest: np.ndarray, outputs: Sequence[str],
             groups: np.ndarray, n_boot: int, seed: int) -> dict[str, Any]:
    """Per output: ROC-AUC full and restricted with CIs, and the paired difference (restricted - full)."""
    from training.evaluation.bootstrap import bootstrap_ci, paired_bootstrap

    out = {}
    for j, o in enumerate(outputs):
        k = ~np.isnan(Y[:, j])
        y, g = Y[k, j], groups[k]
        ci = {name: bootstrap_ci("roc_auc", y, p[k, j], g, n_boot, seed=seed)
              for name, p in (("full", p_full), ("restricted", p_rest))}
        diff = paired_bootstrap("roc_auc", y, p_rest[k, j], p_full[k, j], g, n_boot, seed=seed)
        out[o] = {**{n: {"value": c.point, "low": c.low, "high": c.high} for n, c in ci.items()},
                  "difference": {k2: diff[k2] for k2 in ("diff", "low", "high", "p_value")},
                  "n": int(k.sum()), "n_pos": int((y == 1).sum())}
    return out


def lung_restricted_eval(model_dir: str | Path, ieee8023_root: str | Path,
                         out_dir: str | Path = "shortcuts", regions: Sequence[str] = ("masks", "boxes"),
                         n_boot: int = 1000, seed: int = 0, batch_size: int = 32) -> dict[str, Any]:
    """ROC-AUC on the full image vs the lungs only, per output; writes ``lung_restricted.json`` / ``.html``.

    ``regions``: "masks" (lungVAE masks) and/or "boxes" (lung bounding boxes); each is its own
    comparison on the images that have that annotation. Only images the model did not train
    or validate on are used (by path and patient, from the split in its card).
    """
    from training.data.formats import load_dataset
    from training.evaluation.evaluate import task_targets
    from training.evaluation.predict import load_models, predict_array

    bad = sorted(set(regions) - {"masks", "boxes"})
    if bad or not regions:
        raise CXRError(f"unknown lung region(s) {bad or regions}; choose masks and/or boxes")
    model_dir, root = Path(model_dir), Path(ieee8023_root)
    lm = load_models([model_dir])[0]
    opts = {k: lm.card.get("training", {}).get(k) for k in ("views", "modalities")}
    ds = load_dataset(root, fmt="ieee8023", on_error="skip", **{k: v for k, v in opts.items() if v})
    unseen, how = _unseen(ds, lm.card, model_dir)
    Y_all = task_targets(ds, lm.card)
    labelled = ~np.isnan(Y_all).all(axis=1)
    paths = ds.meta["path"].astype(str).to_numpy()
    results, rows, summary = {}, [], []
    for kind in regions:
        found = find_lung_masks(root) if kind == "masks" else read_lung_boxes(root)
        use = unseen & labelled & np.isin(paths, list(found))
        full, rest, ok, skipped = _images(list(paths[use]), found, kind, lm.preprocess)
        idx = np.flatnonzero(use)[ok]
        groups = _groups(ds)[idx]
        p_full, p_rest = (predict_array(lm.model, x, batch_size) for x in (full, rest))
        per = _compare(Y_all[idx], p_full, p_rest, lm.outputs, groups, n_boot, seed)
        results[kind] = {"n_annotated": len(found), "n_images": int(len(idx)),
                         "n_patients": int(len(set(groups))), "per_output": per, "skipped": skipped}
        summary.append(f"Lung {kind}: {len(idx)} images of {len(set(groups))} patients "
                       f"({len(found)} annotated in all).")
        rows += [[kind, o, r["n"], _ci_text(r["full"]), _ci_text(r["restricted"]),
                  _ci_text({"value": r["difference"]["diff"], **r["difference"]})]
                 for o, r in per.items()]
    summary.insert(0, f"Model {lm.name}: ROC-AUC on the full image versus the image with "
                      f"everything outside the lungs set to 0 (before preprocessing). Images: {how}. "
                      "A large drop means the model relies on what lies outside the lungs.")
    result = {"check": "lung_restricted", "model": {"name": lm.name, "dir": str(model_dir),
              "task": lm.card["task"], "outputs": lm.outputs}, "data": str(root), "selection": how,
              "regions": results, "bootstrap": {"n_boot": n_boot, "resampling": "patients"},
              "summary": summary}
    return _write(result, out_dir, "lung_restricted", "Full image vs lungs only", rows,
                  ["region", "output", "n", "ROC-AUC full", "ROC-AUC lungs only",
                   "difference (lungs - full)"])
