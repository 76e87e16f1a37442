"""End to end on a tiny ieee8023-style folder: each experiment writes results.json + figures."""
from __future__ import annotations

import json

import numpy as np
import pytest

from training.clinical.experiments import ExperimentConfig, image_statistics, run_fusion, \
    run_prognosis, summary
from training.cli import main


def _cfg(data, out, **kw) -> ExperimentConfig:
    return ExperimentConfig(data=str(data), out=str(out), img_size=32, n_boot=50,
                            cache_dir=str(out.parent / "cache"), epochs=3, folds=3, repeats=1, **kw)


def test_image_statistics_shape_and_regions():
    img = np.zeros((2, 8, 8, 3), np.uint8)
    img[1, :4, :4] = 255  # a bright top-left quadrant
    s = image_statistics(img)
    assert s.shape == (2, 16 + 16 + 2) and s[1, 16] == 1.0 and s[0, 16] == 0.0


def test_fusion_end_to_end_saves_a_card_with_the_encoder(tiny_ieee, tmp_path):
    from training.models.card import load_model

    res = run_fusion(_cfg(tiny_ieee, tmp_path / "fusion"))
    out = tmp_path / "fusion"
    assert {"results.json", "auc.png", "split.csv"} <= {p.name for p in out.iterdir()}
    assert set(res["test"]) == {"fused (keras)", "image-only (keras)", "metadata-only (LR)",
                                "metadata-only (HGB)"}
    assert res["split"]["counts"]["test"]["images"] == res["test"]["fused (keras)"]["n"] > 0
    model, card = load_model(out / "model")
    assert card["metadata_features"] == res["fields"] and "view" not in card["metadata_features"]
    assert len(model.inputs) == 2 and model.inputs[1].shape[1] == len(card["metadata_encoder"]["output_names"])
    assert "AUC" in summary(json.loads((out / "results.json").read_text()))


def test_prognosis_end_to_end(tiny_ieee, tmp_path):
    res = run_prognosis(_cfg(tiny_ieee, tmp_path / "prog", tasks=("survival", "went_icu")))
    surv = res["tasks"]["survival"]
    # patient 0 (intubated at its early image) and patient 1 (unknown outcome) are out
    assert surv["counts"]["patients_already_intubated_or_icu"] == 1
    assert surv["counts"]["n"] == 22
    for s in surv["models"].values():
        assert s["n"] == 22 and 0 <= s["roc_auc"]["value"] <= 1
    assert surv["models"]["prevalence baseline"]["roc_auc"]["value"] == 0.5
    assert (tmp_path / "prog" / "auc.png").is_file()


def test_severity_via_cli(tiny_ieee, tmp_path, capsys):
    out = tmp_path / "sev"
    rc = main(["clinical", "severity", "--data", str(tiny_ieee), "--out", str(out), "--img-size", "32",
               "--n-boot", "50", "--cache-dir", str(tmp_path / "cache")])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    assert res["matched"] == 24 and res["unmatched_files"] == ["absent.png"]
    assert set(res["targets"]) == {"geographic_extent", "opacity"}
    assert (out / "scatter.png").is_file() and "pearson" not in capsys.readouterr().err


def test_cli_rejects_unknown_experiment(tiny_ieee, tmp_path):
    with pytest.raises(SystemExit):
        main(["clinical", "nonsense", "--data", str(tiny_ieee), "--out", str(tmp_path)])
