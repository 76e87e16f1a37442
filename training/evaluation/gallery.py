"""The case-level part of ``compare``: per output, :mod:`cases`' record with its gallery rows,
and the gallery's pictures: each gallery case as the first model sees it, and every
model's Grad-CAM over that same image at one display size, as small JPEGs in the compare
folder (``cases/<case>.jpg``, ``cases/<output>/<case>-<model>.jpg``).

Grad-CAMs are made only for gallery cases (one batched call per case and model covers all
outputs). A model that cannot have a map says why instead (no Grad-CAM layer, clinical
inputs, a 1×1 feature map, a flat map), as the app's result page does.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from training import io
from training.evaluation.cases import CASE_FILES, GALLERY_K, OutputCases, output_cases
from training.evaluation.evaluate import slug
from training.explain import cam_problem, explainer
from training.preprocess import load_image
from training.runtime import Prediction, Runtime

#: Side of every gallery picture (pixels): one scale for every model's map.
DISPLAY = 224
#: Heatmap opacity, as on the app's result page.
ALPHA = 0.4


@functools.lru_cache(maxsize=1)
def _jet() -> np.ndarray:
    from matplotlib import colormaps  # heatmap colours only

    return (colormaps["jet"](np.linspace(0.0, 1.0, 256))[:, :3] * 255.0).astype(np.float32)


def _resized(a: np.ndarray, mode: str) -> np.ndarray:
    img = Image.fromarray(a if mode != "F" else a.astype(np.float32), mode)
    return np.asarray(img.resize((DISPLAY, DISPLAY), Image.BILINEAR))


def base_image(image_uint8: np.ndarray) -> np.ndarray:
    """A model input ``(S, S, 3)`` uint8 as the gallery's ``(DISPLAY, DISPLAY, 3)`` picture."""
    return _resized(np.ascontiguousarray(np.asarray(image_uint8, np.uint8)[..., :3]), "RGB")


def overlay(base: np.ndarray, cam: np.ndarray) -> np.ndarray:
    """``cam`` (any square size, [0, 1]) resized to the display and blended over ``base``."""
    heat = np.clip(_resized(np.asarray(cam, np.float32), "F"), 0.0, 1.0)
    colour = _jet()[np.rint(heat * 255.0).astype(np.uint8)]
    return np.clip(np.rint((1 - ALPHA) * base + ALPHA * colour), 0, 255).astype(np.uint8)


def _save(out: Path, rel: str, image: np.ndarray) -> str:
    path = out / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, "JPEG", quality=85)
    return rel


def _why_no_map(m: Runtime) -> str | None:
    if not m.card.gradcam_layer:
        return "the model's card names no Grad-CAM layer"
    if m.metadata_features:
        return "Grad-CAM of a model with clinical inputs is not drawn in the gallery"
    return None


def _maps(m: Runtime, image: np.ndarray) -> tuple[np.ndarray | None, str | None]:
    """``(C, S, S)`` maps of every output, or why there are none."""
    why = _why_no_map(m)
    if why:
        return None, why
    try:
        cam = explainer(m.model, str(m.card.gradcam_layer))
    except (RuntimeError, ValueError) as exc:   # no TensorFlow backend, no such layer
        return None, str(exc)
    if all(d <= 1 for d in cam.map_size):
        return None, cam_problem(np.zeros((1, 1)), cam.map_size)
    return cam.explain_all(image)[1], None


def case_pictures(out: Path, case: int, path: str, models: Sequence[Runtime],
                  outputs: dict[str, int]) -> dict[str, Any]:
    """Write one gallery case's pictures; ``outputs``: ``{output: index}`` the case is shown
    for. Returns ``{"image": file, "heatmaps": {output: {model: {"file"} | {"why"}}}}``
    (files relative to ``out``)."""
    first = load_image(path, models[0].preprocess)
    base = base_image(first)
    heatmaps: dict[str, dict[str, dict[str, str]]] = {o: {} for o in outputs}
    for m in models:
        maps, why = _maps(m, first if m.preprocess == models[0].preprocess
                          else load_image(path, m.preprocess))
        for o, j in outputs.items():
            problem = why or cam_problem(maps[j])
            heatmaps[o][m.name] = {"why": problem} if problem else {
                "file": _save(out, f"cases/{slug(o)}/{case}-{slug(m.name)}.jpg", overlay(base, maps[j]))}
    return {"image": _save(out, f"cases/{case}.jpg", base), "heatmaps": heatmaps}


def _undecided(models: Sequence[Runtime], j: int) -> dict[str, str]:
    out = {}
    for m in models:
        why = m.no_decision()
        if m.outputs[j] in why:
            out[m.name] = why[m.outputs[j]] or "no threshold"
    return out


def _row(case: int, j: int, oc: OutputCases, y: np.ndarray, models: Sequence[Runtime],
         preds: dict[str, Prediction], pictures: dict[str, Any]) -> dict[str, Any]:
    """One gallery row: the truth, and per model its probability against its threshold and map."""
    truth = float(y[case])
    cells = {}
    for m in models:
        p = preds[m.name]
        cells[m.name] = {"probability": float(p.calibrated[case, j]),
                         "threshold": m.decision_thresholds()[j], "decided": bool(p.decided[j]),
                         "positive": bool(p.positive[case, j]) if p.decided[j] else None,
                         **pictures["heatmaps"][oc.output][m.name]}
    return {"case": case, "truth": None if np.isnan(truth) else truth, "spread": oc.spread[case],
            "split": case in oc.split, "image": pictures["image"], "models": cells}


def write_cases(out: Path, models: Sequence[Runtime], paths: Sequence[str], Y: np.ndarray,
                groups: np.ndarray, preds: dict[str, Prediction], n_boot: int, seed: int,
                k: int = GALLERY_K) -> dict[str, Any]:
    """The case-level comparison of every output (``cases.json``'s ``outputs``), with the
    gallery pictures written; case = row of ``paths``/``Y``. The cases one model alone gets
    right are split decisions, so they are gallery rows too."""
    outputs = models[0].outputs
    found = {o: output_cases(o, Y[:, j], {n: p.calibrated[:, j] for n, p in preds.items()},
                             {n: p.positive[:, j] for n, p in preds.items()},
                             _undecided(models, j), groups, k, n_boot, seed)
             for j, o in enumerate(outputs)}
    shown: dict[int, dict[str, int]] = {}
    for j, o in enumerate(outputs):
        for c in found[o].gallery:
            shown.setdefault(c, {})[o] = j
    pictures = {c: case_pictures(out, c, paths[c], models, outs) for c, outs in sorted(shown.items())}
    # Server-side only (the app's "open this case" route): never shown, never in the API.
    io.write_text(out / CASE_FILES, json.dumps({str(c): str(paths[c]) for c in shown}))
    return {o: {**oc.to_json(), "rows": [_row(c, j, oc, Y[:, j], models, preds, pictures[c])
                                         for c in oc.gallery]}
            for j, (o, oc) in enumerate(found.items())}
