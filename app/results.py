"""One prediction as the API contract (README, "API"): the page, the JSON API and the reports
all read this dict, so they cannot disagree.

Besides each model's calibrated and raw probabilities it says how far to trust them: the
gate's verdict, whether each output did better than chance on its test set (AUC 95% CI above
0.5), whether it holds outside its training sources (the card's transfer evidence, one rule:
:func:`transfer_view`), how many models agree per output, and "nothing found" positive with a
finding.

The result page's view of that dict (:func:`result_page`): the pathology × model matrix, each
decision and greying in words, and the heatmap strip per pathology.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from app.cards import short_card
from app.config import DISCLAIMER
from app.metrics_view import test_summary
from app.model_bank import NORMAL_CLASSES
from training import __version__
from training.evaluation.estimate import Estimate
from training.evaluation.evidence import (BELOW_CHANCE, SUPPORTED, TRAINING_ONLY, TRANSFER_KINDS, Evidence,
                                          EvidenceKind, TransferEvidence)

CHANCE = "no better than chance on its test set (AUC 95% CI includes 0.5)"
UNTESTED = "not evaluated on a test set: how good it is is unknown"


#: What the page, API, PDF and SR call each transfer status (the record's own words, except
#: that "elsewhere" is said where: at held-out sites or collections).
STATUS_WORDS = {SUPPORTED: "transfer supported", TRAINING_ONLY: "validated only on its training sources",
                BELOW_CHANCE: "below chance at held-out sites"}
KIND_WORDS = {EvidenceKind.INTERNAL: "internal test", EvidenceKind.SITE_HELD_OUT: "site-held-out",
              EvidenceKind.EXTERNAL: "external collection"}
NOT_MEASURED = "not measured at held-out sites or on an external collection"


def output_trust(card: Any, summary: Any = None) -> dict[str, dict[str, Any]]:
    """Per output: its test AUC with CI, whether it is chance-level (or untested), its transfer
    evidence (:func:`transfer_view`), and ``greyed``: shown as not to be relied on, unless it
    beat chance on its test and its transfer is supported.

    ``summary``: the card's ``test_summary`` when the caller has it already.
    """
    summary = summary or test_summary(card)
    rows = {r.name: r.cells[0] for r in summary.outputs} if summary else {}
    evidence = card.evidence or TransferEvidence()
    out = {}
    for name in card.outputs:
        auc = rows.get(name)
        if auc is None or auc.value is None:
            test = {"test_auc": None, "chance_level": True, "note": UNTESTED}
        else:
            chance = auc.includes(0.5) or auc.high is None or auc.high <= 0.5
            test = {"test_auc": auc.to_json(), "chance_level": chance, "note": CHANCE if chance else None}
        transfer = transfer_view(evidence, name)
        out[name] = {**test, **transfer,
                     "greyed": test["chance_level"] or transfer["evidence_status"] != STATUS_WORDS[SUPPORTED]}
    return out


def transfer_view(evidence: TransferEvidence, output: str) -> dict[str, Any]:
    """``output``'s transfer status in words, the held-out measurement behind it, and the
    sentence every consumer shows (``transfer_note``)."""
    status = evidence.status(output)
    shown = _deciding(evidence, output, status)
    words = STATUS_WORDS[status]
    if shown is None:
        note = f"{words}: {NOT_MEASURED}"
    else:
        note = f"{words}: {_measured(shown)}"
        if status == TRAINING_ONLY:
            note += " (its CI includes 0.5)"
    return {"evidence_status": words, "held_out": None if shown is None else _evidence_json(shown),
            "transfer_note": note}


def _deciding(evidence: TransferEvidence, output: str, status: str) -> Evidence | None:
    """The held-out item shown beside the status: below chance, the one wholly below 0.5 with
    the lowest upper bound (it decided); else the one with the highest lower bound."""
    if status == BELOW_CHANCE:
        below = [e for e in evidence.items(output) if e.kind in TRANSFER_KINDS
                 and e.auc.high is not None and e.auc.high < 0.5]
        return min(below, key=lambda e: e.auc.high)
    return evidence.best_transfer(output)


def _measured(e: Evidence) -> str:
    """"site-held-out AUC 0.62 (95% CI 0.51 to 0.73), <what>, 94 images / 60 patients".

    ASCII only: the SR carries it, and a non-ASCII text would force UTF-8 on every SR."""
    ci = f" (95% CI {e.auc.low:.2f} to {e.auc.high:.2f})" if e.auc.low is not None and e.auc.high is not None else ""
    value = "n/a" if e.auc.value is None else f"{e.auc.value:.2f}"
    recipe = ("; measured on models trained with this model's recipe without the held-out data, "
              "not on this model itself") if e.recipe_only else ""
    return (f"{KIND_WORDS[e.kind]} AUC {value}{ci}, {e.what}, "
            f"{e.n_images} images / {e.n_patients} patients{recipe}")


def _evidence_json(e: Evidence) -> dict[str, Any]:
    return {"kind": e.kind.value, **e.auc.to_json(), "what": e.what, "n_images": e.n_images,
            "n_patients": e.n_patients, "recipe_only": e.recipe_only}


def evidence_rows(card: Any) -> list[dict[str, Any]]:
    """The model card page's evidence table: per output its status and greying (from
    :func:`output_trust`) and, per kind, its measurements (empty: not measured)."""
    trust = output_trust(card)
    evidence = card.evidence or TransferEvidence()
    return [{"name": name, **{k: trust[name][k] for k in ("evidence_status", "greyed")},
             "cells": {KIND_WORDS[kind]: [_evidence_json(e) for e in evidence.items(name, kind)]
                       for kind in EvidenceKind}}
            for name in card.outputs]


def model_test(card: Any, summary: Any = None) -> dict[str, Any]:
    """The model's test set in one line: which, how big, its macro AUC with CI."""
    summary = summary or test_summary(card)
    if summary is None:
        return {"test_set": None, "n_images": None, "macro_auc": None, "chance_level": True,
                "split": None, "note": UNTESTED}
    auc = summary.macro[0]
    return {"test_set": summary.test_set, "n_images": summary.n_images,
            "n_patients": summary.n_patients, "part": summary.part,
            "split": "patient-disjoint split" + (f" ({summary.split})" if summary.split else ""),
            "macro_auc": auc.to_json() if auc.value is not None else None,
            "chance_level": auc.value is None or auc.includes(0.5)}


def agreement(models: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per output name: models having it, how many call it positive, the probability spread."""
    table: dict[str, list[dict[str, Any]]] = {}
    for m in models:
        for o in m["outputs"]:
            table.setdefault(o["name"], []).append(o)
    out = {}
    for name, rows in table.items():
        probs = [o["probability"] for o in rows]
        positive = sum(bool(o["positive"]) for o in rows)
        # a model without a decision on this output (no estimable threshold) neither agrees nor disagrees
        decided = sum(o["positive"] is not None for o in rows)
        out[name] = {"n_models": len(rows), "n_decided": decided, "n_positive": positive,
                     "min": min(probs), "max": max(probs), "spread": max(probs) - min(probs),
                     "disagree": 0 < positive < decided}
    return out


def exclusive_flags(models: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Contradictions inside one model: "nothing found" (``NORMAL_CLASSES``) positive with a
    finding. Only a multilabel model can say this: a softmax model has exactly one positive
    class (``training.evaluation.decision``)."""
    flags = []
    for m in models:
        positive = [o["name"] for o in m["outputs"] if o["positive"]]
        normal = [p for p in positive if p in NORMAL_CLASSES]
        findings = [p for p in positive if p not in NORMAL_CLASSES]
        if normal and findings:
            flags.append({"model": m["name"], "outputs": normal + findings,
                          "message": f"{m['name']}: {' and '.join(normal + findings)} are both positive, "
                                     "but they exclude each other; treat this column as unreliable."})
    return flags


def _model_json(result: Any, served: Any) -> dict[str, Any]:
    card = served.card
    summary = test_summary(card)  # read once: trust, the test line and the short card use it
    trust = output_trust(card, summary)
    outputs = [{**vars(o), **trust[o.name]} for o in result.outputs]
    entry = {"name": result.name, "architecture": result.architecture,
             "input_size": result.input_size, "kind": card.kind,
             "model_sha256": card.model_sha256,
             "cxrlab_version": (card.versions or {}).get("cxrlab", __version__),
             "created": card.created,
             "calibration": card.calibration.method if card.calibration else "none",
             "card": short_card(card), "test": model_test(card, summary), "outputs": outputs,
             "seconds": round(result.seconds, 4)}
    if result.heatmaps:
        entry["heatmap_class"] = result.heatmap_class
        entry["heatmaps"] = {k: h.image for k, h in result.heatmaps.items() if h.image}
        entry["heatmap_layers"] = {k: h.layer for k, h in result.heatmaps.items() if h.layer}
        entry["heatmap_box"] = result.heatmap_box.to_json()
        entry["heatmap_notes"] = {k: h.problem for k, h in result.heatmaps.items() if h.problem}
    if result.heatmap_problem:
        entry.update(heatmap_class=None, heatmaps={}, heatmap_layers={}, heatmap_box=None,
                     heatmap_notes={"*": result.heatmap_problem})
    return entry


def result_json(prediction: Any, bank: Any, filename: str) -> dict[str, Any]:
    """The API contract for one prediction (also what the page and the reports render)."""
    gate = prediction.gate.to_json()
    models = [_model_json(r, bank.get(r.name)) for r in prediction.models]
    for m in models:
        m["gate"] = gate["models"].get(m["name"])
    image = {"width": prediction.width, "height": prediction.height}
    if prediction.display is not None:   # with heatmaps: the picture their layers lie on
        image["display"] = vars(prediction.display)
    return {"filename": filename, "gate": gate, "models": models,
            "agreement": agreement(models), "flags": exclusive_flags(models), "image": image,
            "seconds": round(prediction.seconds, 4), "disclaimer": DISCLAIMER}


def estimate(raw: Any) -> Estimate:
    """For templates: an Estimate from its JSON form."""
    return Estimate.of(raw)


# ------------------------------------------------------------------ the result page's view

#: A decision in words: the page never says positive by colour alone.
DECISION_WORDS = {True: "positive", False: "negative", None: "no decision"}
ABSENT = "not an output of this model"


@dataclass(frozen=True)
class Cell:
    """One model's output as the page words it; ``entry`` None: not an output of this model."""

    model: str
    entry: dict[str, Any] | None
    decision: str = ""                  # DECISION_WORDS
    marker: str | None = None           # why it is greyed, in a few words; None: not greyed


@dataclass(frozen=True)
class MatrixRow:
    """One pathology across the models (the matrix row, and the agreement table's)."""

    output: str
    cells: list[Cell]                   # one per model, in the result's order
    agreement: str                      # e.g. "2 of 3 deciding positive"
    disagree: bool


@dataclass(frozen=True)
class Figure:
    """One model's heatmap layer for one pathology in the strip, or why there is none."""

    model: str
    layer: str | None                   # PNG data URI, lying on ``box`` of the display image
    box: dict[str, int] | None
    note: str | None = None


@dataclass(frozen=True)
class ResultPage:
    matrix: list[MatrixRow]
    strips: dict[str, list[Figure]]     # pathology -> a figure per model; {} without heatmaps
    first: str | None                   # the strip shown first
    display: dict[str, Any] | None      # the picture every layer lies on (sent once)

    def cell(self, model: str, output: str) -> Cell:
        row = next(r for r in self.matrix if r.output == output)
        return next(c for c in row.cells if c.model == model)


def trust_marker(entry: dict[str, Any]) -> str | None:
    """Why an output is greyed (:func:`output_trust`'s one rule), short enough for a cell."""
    if not entry["greyed"]:
        return None
    if entry["test_auc"] is None:
        return "untested"
    if entry["chance_level"]:
        return "chance level"
    if entry["evidence_status"] == STATUS_WORDS[BELOW_CHANCE]:
        return "below chance elsewhere"
    return "not validated elsewhere"


def agreement_words(row: dict[str, Any]) -> str:
    """An :func:`agreement` row in words: "2 of 3 deciding positive (1 without a decision)"."""
    if not row["n_decided"]:
        return "no model decides"
    text = f"{row['n_positive']} of {row['n_decided']} deciding positive"
    undecided = row["n_models"] - row["n_decided"]
    return text + (f" ({undecided} without a decision)" if undecided else "")


def result_page(result: dict[str, Any]) -> ResultPage:
    """The page's view of :func:`result_json`'s dict (not refused)."""
    models = result["models"]
    matrix = []
    for name, row in result["agreement"].items():
        cells = []
        for m in models:
            entry = next((o for o in m["outputs"] if o["name"] == name), None)
            cells.append(Cell(m["name"], None) if entry is None else
                         Cell(m["name"], entry, DECISION_WORDS[entry["positive"]], trust_marker(entry)))
        matrix.append(MatrixRow(name, cells, agreement_words(row), row["disagree"]))
    strips = {row.output: [_figure(m, row.output) for m in models] for row in matrix}
    has_maps = any("heatmaps" in m for m in models)
    return ResultPage(matrix, strips if has_maps else {}, _first_strip(models, result["agreement"]),
                      result["image"].get("display"))


def _first_strip(models: list[dict[str, Any]], table: dict[str, dict[str, Any]]) -> str | None:
    """The pathology most models show first (requested, else their top finding); between equals,
    the one more models have (more maps side by side)."""
    shown = Counter(m["heatmap_class"] for m in models if m.get("heatmap_class"))
    return max(shown, key=lambda o: (shown[o], table[o]["n_models"])) if shown else None


def _figure(model: dict[str, Any], output: str) -> Figure:
    notes = model.get("heatmap_notes") or {}
    layer = (model.get("heatmap_layers") or {}).get(output)
    if layer:
        return Figure(model["name"], layer, model["heatmap_box"])
    if not any(o["name"] == output for o in model["outputs"]):
        return Figure(model["name"], None, None, ABSENT)
    return Figure(model["name"], None, None, notes.get(output) or notes.get("*") or "not computed")
