"""Real evaluation output in the app: compare_models' report on /compare, evaluate's card metrics."""
from __future__ import annotations

import json
import re

import pytest

from tests.training.evaluation.conftest import make_kermany, save_tiny

N_BOOT = 30


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """Two tiny pneumonia models, compared and evaluated on one split (real output files)."""
    from training.data.formats import load_datasets
    from training.data.splits import make_split, save_split, split_hash
    from training.data.tasks import get_task
    from training.evaluation.compare import compare_models
    from training.evaluation.evaluate import evaluate_model

    root = tmp_path_factory.mktemp("reports")
    data = str(make_kermany(root / "kermany", 24))
    split = save_split(make_split(load_datasets([data]), get_task("pneumonia"), parts=(0.5, 0.25, 0.25),
                                  seed=0), root / "split.csv")
    good = save_tiny(root / "models", "good", "single", ["Normal", "Pneumonia"], "pneumonia", split,
                     ["kermany"], [data])
    bad = save_tiny(root / "models", "inverted", "single", ["Normal", "Pneumonia"], "pneumonia", split,
                    ["kermany"], [data], gain=-2.0)
    compare_models([good, bad], [data], str(split), out_dir=root / "compare", n_boot=N_BOOT)
    evaluate_model(good, [data], str(split), out_dir=root / "eval", n_boot=N_BOOT)
    return {"compare": root / "compare", "good": good, "sha": split_hash(split)}


def _cells(page: str) -> list[str]:
    return re.findall(r'<span class="val">([^<]+)</span>', page)


def test_compare_page_renders_compare_models_report(make_app, evaluated):
    from app.compare_report import load_report

    folder = evaluated["compare"]
    summary = json.loads((folder / "compare.json").read_text())
    rv = make_app(COMPARE_DIR=str(folder)).test_client().get("/compare")
    page = rv.get_data(as_text=True)
    assert rv.status_code == 200
    assert "internal" in page and f">{summary['n_images']}<" in page and f">{summary['n_patients']}<" in page
    assert evaluated["sha"][:12] in page and "split.csv" in page
    for label in ("AUC", "Sensitivity", "Specificity", "PPV", "F1", "Time per epoch", "Latency"):
        assert f"<th>{label}" in page, label
    row = next(r for r in summary["models"] if r["model"] == "good")
    # Point estimate and CI of a per-output metric, exactly as compare.json holds them.
    sens = row["Pneumonia: recall"], row["Pneumonia: recall low"], row["Pneumonia: recall high"]
    assert f"{sens[0]:.3f}" in page and f"{sens[1]:.3f}–{sens[2]:.3f}" in page
    paired = summary["paired"]["inverted"]
    assert f"{paired['diff']:.3f}" in page and f"{paired['low']:.3f}–{paired['high']:.3f}" in page
    assert f"{paired['p_value']:.3f}" in page and "1.5 s" in page
    assert page.count('class="tag">best') == 1
    assert page.count('src="data:image/png;base64,') == len(summary["figures"]) == 2
    view = load_report(folder).view
    # 2 outputs x 2 models x 5 metrics + 2 macro AUCs + 1 paired difference
    assert len(_cells(page)) == 2 * 2 * 5 + 2 + 1
    assert [m.name for m in view.models] == ["good", "inverted"] and view.outputs == ["Normal", "Pneumonia"]


def test_compare_page_falls_back_to_a_plain_table(make_app, tmp_path):
    from tests.helpers.images import write_xray

    folder = tmp_path / "compare"
    folder.mkdir()
    (folder / "compare.csv").write_text("model,auc\nk-resnet50,0.93\n")
    (folder / "compare.json").write_text(json.dumps({"test_set": "internal"}))
    write_xray(folder / "roc_overlay.png", "RGB")
    page = make_app(COMPARE_DIR=str(folder)).test_client().get("/compare").get_data(as_text=True)
    assert "k-resnet50" in page and "0.93" in page and "roc_overlay.png" in page
    assert 'src="data:image/png;base64,' in page


def test_broken_compare_json_is_explained(make_app, tmp_path):
    folder = tmp_path / "compare"
    folder.mkdir()
    (folder / "compare.json").write_text("{not json")
    rv = make_app(COMPARE_DIR=str(folder)).test_client().get("/compare")
    assert rv.status_code == 200 and "cannot be read" in rv.get_data(as_text=True)


def _bank_with(card, bank):
    from app.model_bank import ModelBank
    from training.models.card import ModelCard

    m = bank.models[1]          # tiny-single: Normal / Pneumonia, like the evaluated model
    typed = ModelCard.from_json({**m.card.to_json(), **card})
    return ModelBank([type(m)(m.name, typed, m.model, m.preprocess, m.infer, m.path)]), m


def test_result_and_card_pages_show_evaluated_metrics_with_ci(make_app, bank, evaluated, tmp_path):
    from tests.app.conftest import upload
    from tests.helpers.images import write_xray
    from training.models.card import read_card

    card = read_card(evaluated["good"])
    test = card["metrics"]["test"]
    other, m = _bank_with({"metrics": card["metrics"], "test_set": card["test_set"]}, bank)
    client = make_app(MODEL_BANK=other).test_client()
    auc = test["metrics"]["per_output"]["Pneumonia"]["roc_auc"]
    spec = test["metrics"]["per_output"]["Normal"]["specificity"]
    # The result page: the test set in one line and each output's AUC with its CI (compact,
    # so four columns fit); the model card page: every metric with its CI.
    result = upload(client, write_xray(tmp_path / "x.png")).get_data(as_text=True)
    assert "<strong>internal</strong> test set" in result and f"{test['n_images']} images" in result
    assert f"{auc['value']:.2f}" in result and f"{auc['low']:.2f}–{auc['high']:.2f}" in result
    macro = test["metrics"]["macro"]["roc_auc"]
    assert f"macro AUC {macro['value']:.2f}" in result
    page = client.get(f"/models/{m.name}").get_data(as_text=True)
    assert f"{test['n_images']} images, {test['n_patients']} patients" in page
    assert "internal test" in page
    assert f"{auc['value']:.3f}" in page and f"{auc['low']:.3f}–{auc['high']:.3f}" in page
    assert f"{spec['low']:.3f}–{spec['high']:.3f}" in page
    assert len(_cells(page)) == 3 * 5        # Normal, Pneumonia, macro x 5 metrics
    assert "Balanced accuracy" in page and test["thresholds"]["method"] in page
    body = client.post("/api/predict", data={"file": (write_xray(tmp_path / "y.png").open("rb"), "y.png")},
                       content_type="multipart/form-data").get_json()
    api = body["models"][0]["card"]["test"]
    assert api["per_output"]["Pneumonia"]["roc_auc"] == {"value": auc["value"], "low": auc["low"],
                                                         "high": auc["high"]}
    assert api["n_patients"] == test["n_patients"] and body["models"][0]["card"]["test_metrics"] == {}


def test_overlap_warning_is_shown(make_app, bank, evaluated):
    from training.models.card import read_card

    card = read_card(evaluated["good"])
    metrics = json.loads(json.dumps(card["metrics"]))
    metrics["test"]["overlap"] = {"checked": True, "n_images": 3}
    other, m = _bank_with({"metrics": metrics, "test_set": "internal"}, bank)
    page = make_app(MODEL_BANK=other).test_client().get(f"/models/{m.name}").get_data(as_text=True)
    assert "3 of" in page and "optimistic" in page
