"""An output whose threshold was not estimable (too few validation patients) gets no
positive/negative decision anywhere the app shows it, and every place says why."""
from __future__ import annotations

import io

import pydicom
import pytest

from tests.app.conftest import upload
from tests.app.tiny_models import write_models
from tests.helpers.images import write_xray, write_xray_dicom
from training.evaluation.thresholds import OutputThreshold, Status, ThresholdMethod, ThresholdRecord
from training.models.card import read_card, update_card

WHY = "2 positive and 40 negative patients in validation; at least 10 of each are needed"
FEW = OutputThreshold(None, Status.NOT_ESTIMABLE, 2, 40, 16, 300, reason=WHY)


def _with_not_estimable(folder, output: str) -> None:
    kept = read_card(folder).thresholds
    record = ThresholdRecord(ThresholdMethod.YOUDEN, {**kept.entries, output: FEW}, min_patients=10,
                             scale="raw", fitted_on="validation")
    update_card(folder, thresholds=record.to_json())


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from app import create_app
    from app.model_bank import ModelBank

    root = write_models(tmp_path_factory.mktemp("few") / "models", gated=False)
    _with_not_estimable(root / "tiny-multi", "ARDS")
    _with_not_estimable(root / "tiny-single", "Pneumonia")  # a softmax's positive class
    app = create_app({"MODEL_BANK": ModelBank.from_dir(root, device="cpu"), "SECRET_KEY": "test",
                      "TESTING": True, "COMPARE_DIR": str(root / "no-compare")})
    return app.test_client()


def _post(client, path, url="/api/predict"):
    return client.post(url, data={"file": (io.BytesIO(path.read_bytes()), path.name)},
                       content_type="multipart/form-data")


def test_api_gives_no_decision_and_why(client, tmp_path):
    body = _post(client, write_xray(tmp_path / "x.png")).get_json()
    models = {m["name"]: {o["name"]: o for o in m["outputs"]} for m in body["models"]}
    ards = models["tiny-multi"]["ARDS"]
    assert ards["positive"] is None and ards["threshold"] is None and WHY in ards["no_decision"]
    assert ards["probability"] is not None  # the probability is still shown
    assert models["tiny-multi"]["Pneumonia"]["positive"] is True  # the others keep their decision
    assert models["tiny-multi"]["Pneumonia"]["no_decision"] is None
    for o in models["tiny-single"].values():  # two-class softmax: no class at all
        assert o["positive"] is None and "the Pneumonia threshold not estimable" in o["no_decision"]


def test_result_page_says_no_decision_and_why(client, tmp_path):
    page = upload(client, write_xray(tmp_path / "x.png")).get_data(as_text=True)
    assert "ARDS: probability only, no positive/negative decision" in page and WHY in page


def test_dicom_sr_has_a_no_decision_text_item(client, tmp_path):
    dcm = write_xray_dicom(tmp_path / "x.dcm", h=300, w=240)
    rv = _post(client, dcm, "/api/report?format=sr")
    assert rv.status_code == 200
    texts = [e.value for e in pydicom.dcmread(io.BytesIO(rv.data)).iterall() if e.keyword == "TextValue"]
    assert any(t.startswith("tiny-multi: ARDS:") and WHY in t for t in texts)


def test_pdf_outputs_table_has_no_yes_no_and_says_why():
    from app.report.pdf import outputs_table

    table = outputs_table([{"name": "ARDS", "probability": 0.41, "raw_probability": 0.4,
                            "threshold": None, "positive": None, "no_decision": WHY}], 500)
    row = table._cellvalues[1]
    assert row[4] not in ("yes", "no") and any(WHY in str(c) for c in row)


def test_model_page_lists_the_not_estimable_threshold(client):
    page = client.get("/models/tiny-multi").get_data(as_text=True)
    assert "ARDS: not estimable, no positive/negative decision" in page and WHY in page
