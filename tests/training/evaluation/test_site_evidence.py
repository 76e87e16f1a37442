"""``evaluate --part site``: a report like any test part, SITE_HELD_OUT items on the card, the
internal test left as it was, outputs without enough patients at the sites not recorded."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.training.evaluation.conftest import save_tiny, write_cxr
from training.data.formats import load_datasets
from training.data.site_split import hold_out_sites
from training.data.spec import DataSpec
from training.data.splits import make_split, save_split, split_hash
from training.data.tasks import get_task
from training.evaluation.estimate import Estimate
from training.evaluation.evaluate import evaluate_model
from training.evaluation.evidence import Evidence, EvidenceKind
from training.evaluation.model_plots import plot_files
from training.evaluation.site_evidence import describe
from training.models.card import read_card, update_card

#: Italy is the largest qualifying site and trains; Germany and Spain are held out.
LOCATIONS = [("Milan, Italy", 24), ("Berlin, Germany", 14), ("Madrid, Spain", 12), ("Porto, Portugal", 4)]
OUTPUTS = ["No Finding", "Pneumonia", "COVID-19"]  # COVID-19: no labels at the sites


@pytest.fixture(scope="module")
def site_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("site")
    rng = np.random.default_rng(3)
    rows, i = [], 0
    for location, n in LOCATIONS:
        for _ in range(n):
            sick = i % 2 == 1
            path = write_cxr(root / "img" / f"i{i:03d}.png",
                             rng.uniform(0.4, 0.8) if sick else rng.uniform(0.1, 0.5), 900 + i)
            rows.append({"path": str(path), "patient": f"p{i}", "Pneumonia": int(sick),
                         "No Finding": int(not sick), "location": location})
            i += 1
    csv = root / "sites.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    ds = load_datasets(DataSpec(str(csv)))
    task = get_task("pneumonia")
    held = hold_out_sites(make_split(ds, task, parts=(0.6, 0.2, 0.2), seed=0), ds, task)
    assert held.sites == ("Germany", "Spain")
    split = save_split(held.split, root / "split.csv")
    sources = sorted(set(ds.meta["source"].astype(str)))
    model = save_tiny(root / "models", "m", "multilabel", OUTPUTS, "multilabel", split, sources, [str(csv)])
    return {"root": root, "data": str(csv), "model": model, "split": split}


def test_site_part_records_transfer_evidence_not_the_internal_test(site_model):
    model, root = site_model["model"], site_model["root"]
    evaluate_model(model, [site_model["data"]], out_dir=root / "test", n_boot=50)
    internal = read_card(model).metrics.test.to_json()
    cross = Evidence(EvidenceKind.SITE_HELD_OUT, Estimate(0.6, 0.55, 0.65), "cross-site pooled", 9, 9,
                     recipe_only=True)
    update_card(model, evidence=read_card(model).evidence.replaced((), {"Pneumonia": [cross]}).to_json())

    r = evaluate_model(model, [site_model["data"]], part="site", out_dir=root / "site", n_boot=50)
    assert r["test_set"] == "site-held-out" and r["part"] == "site" and r["n_patients"] == 26
    assert r["site_held_out"]["sites"] == ["Germany", "Spain"]
    assert "COVID-19" in r["site_held_out"]["not_estimable"]
    assert any("COVID-19: site-held-out AUC not estimable" in n for n in r["notes"])
    assert "site-held-out" in (root / "site" / "report.html").read_text(encoding="utf-8")

    card = read_card(model)
    assert card.metrics.test.to_json() == internal  # the internal test is untouched
    assert card.evidence.items("Pneumonia", EvidenceKind.INTERNAL)
    mine = [e for e in card.evidence.items("Pneumonia", EvidenceKind.SITE_HELD_OUT) if not e.recipe_only]
    assert len(mine) == 1
    what = describe(("Germany", "Spain"), split_hash(site_model["split"]))
    assert mine[0].what == what and what.startswith("held-out sites Germany, Spain (never in training")
    assert (mine[0].n_images, mine[0].n_patients) == (26, 26)
    assert mine[0].auc == Estimate.of(r["metrics"]["per_output"]["Pneumonia"]["roc_auc"])
    assert mine[0].auc.low is not None and mine[0].auc.low <= mine[0].auc.value <= mine[0].auc.high
    assert card.evidence.items("COVID-19", EvidenceKind.SITE_HELD_OUT) == []
    assert cross in card.evidence.items("Pneumonia", EvidenceKind.SITE_HELD_OUT)  # cross-site's kept

    evaluate_model(model, [site_model["data"]], part="site", out_dir=root / "site2", n_boot=50)
    again = read_card(model).evidence.items("Pneumonia", EvidenceKind.SITE_HELD_OUT)
    assert len(again) == 2 and cross in again  # its own item replaced, not appended

    kept = plot_files(model)
    assert {"test", "site"} <= set(kept) and "roc.png" in kept["site"] and "reliability_calibrated.png" in kept["test"]
