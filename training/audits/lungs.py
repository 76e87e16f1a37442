"""Lungs-only check: a model on the full image vs the image outside the lungs blanked
(ieee8023 lungVAE masks or lung boxes, read here)."""
from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from training.audits.common import ci_text, patient_groups, write_check
from training.audits.probe_features import original_size
from training.errors import CXRError, DataError
from training.data.formats import load_datasets
from training.data.spec import DataSpec
from training.evaluation.bootstrap import bootstrap_ci, paired_bootstrap
from training.evaluation.evalset import task_targets
from training.evaluation.evalset import training_split
from training.preprocess import decode_image, preprocess
from training.runtime import load

log = logging.getLogger(__name__)

MASKS_DIR = Path("annotations") / "lungVAE-masks"
BOXES_FILE = Path("annotations") / "imageannotation_ai_lung_bounding_boxes.json"
_MASK_NAME = re.compile(r"^(?P<stem>.+)_mask\.png(\.png)?$", re.IGNORECASE)


def find_lung_masks(root: str | Path) -> dict[str, Path]:
    """``{image path: mask path}`` for the ieee8023 images that have a lungVAE mask.

    Masks are named ``<image stem>_mask.png`` (a few ``_mask.png.png``); masks whose image
    is absent from ``images/`` are logged, not returned.
    """
    root = Path(root).resolve()  # keys match the loaders' resolved paths (a relative --ieee8023 found none)
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
    root = Path(root).resolve()  # as find_lung_masks
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
    from PIL import Image  # image files only here

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


def _unseen(ds: Any, card: dict, model_dir: Path) -> tuple[np.ndarray, str]:
    """Rows the model did not train or validate on (by path or patient), and how that was decided."""
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
    out = {}
    for j, o in enumerate(outputs):
        k = ~np.isnan(Y[:, j])
        y, g = Y[k, j], groups[k]
        ci = {name: bootstrap_ci("roc_auc", y, p[k, j], g, n_boot, seed=seed)
              for name, p in (("full", p_full), ("restricted", p_rest))}
        diff = paired_bootstrap("roc_auc", y, p_rest[k, j], p_full[k, j], g, n_boot, seed=seed)
        out[o] = {**{n: c.to_json() for n, c in ci.items()},
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
    bad = sorted(set(regions) - {"masks", "boxes"})
    if bad or not regions:
        raise CXRError(f"unknown lung region(s) {bad or regions}; choose masks and/or boxes")
    model_dir, root = Path(model_dir), Path(ieee8023_root)
    lm = load(model_dir)
    spec = DataSpec((str(root),), fmt="ieee8023", on_error="skip")
    ds = load_datasets(spec.for_model(DataSpec.from_dict(lm.card.training.config)))  # its views, modalities
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
        groups = patient_groups(ds)[idx]
        p_full, p_rest = (lm.forward(x, batch_size=batch_size)[0] for x in (full, rest))
        per = _compare(Y_all[idx], p_full, p_rest, lm.outputs, groups, n_boot, seed)
        results[kind] = {"n_annotated": len(found), "n_images": int(len(idx)),
                         "n_patients": int(len(set(groups))), "per_output": per, "skipped": skipped}
        summary.append(f"Lung {kind}: {len(idx)} images of {len(set(groups))} patients "
                       f"({len(found)} annotated in all).")
        rows += [[kind, o, r["n"], ci_text(r["full"]), ci_text(r["restricted"]),
                  ci_text({"value": r["difference"]["diff"], **r["difference"]})]
                 for o, r in per.items()]
    summary.insert(0, f"Model {lm.name}: ROC-AUC on the full image versus the image with "
                      f"everything outside the lungs set to 0 (before preprocessing). Images: {how}. "
                      "A large drop means the model relies on what lies outside the lungs.")
    result = {"check": "lung_restricted", "model": {"name": lm.name, "dir": str(model_dir),
              "task": lm.card.task, "outputs": lm.outputs}, "data": str(root), "selection": how,
              "regions": results, "bootstrap": {"n_boot": n_boot, "resampling": "patients"},
              "summary": summary}
    return write_check(result, out_dir, "lung_restricted", "Full image vs lungs only", rows,
                  ["region", "output", "n", "ROC-AUC full", "ROC-AUC lungs only",
                   "difference (lungs - full)"])
