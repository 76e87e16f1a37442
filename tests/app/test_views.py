"""HTML pages: every upload format, friendly errors, cards, comparison, nothing stored."""
from __future__ import annotations

import dataclasses
import os
import re

import numpy as np
import pytest

from tests.app.conftest import upload
from tests.helpers.images import (
    write_xray_dicom,
    write_xray,
    write_not_image,
    write_truncated,
)

DISCLAIMER = "Research tool, not a diagnostic device"
MAKERS = {
    "png-gray": lambda p: write_xray(p / "a.png", "L"),
    "png-rgba": lambda p: write_xray(p / "a.png", "RGBA"),
    "jpeg": lambda p: write_xray(p / "a.jpg", "RGB"),
    "png-16bit": lambda p: write_xray(p / "a.png", "I;16"),
    "dicom": lambda p: write_xray_dicom(p / "a.dcm", patient_name="Secret^Patient"),
}


def test_index_lists_models_and_notice(client, bank):
    page = client.get("/").get_data(as_text=True)
    assert DISCLAIMER in page and 'type="file"' in page
    for m in bank:
        assert m.name in page


@pytest.mark.parametrize("kind", MAKERS)
def test_upload_gives_one_column_per_model(client, bank, tmp_path, kind):
    rv = upload(client, MAKERS[kind](tmp_path))
    page = rv.get_data(as_text=True)
    assert rv.status_code == 200, page
    assert DISCLAIMER in page
    for m in bank:
        assert f'data-model="{m.name}"' in page
        for output in m.outputs:
            assert f"<th>{output}</th>" in page
    # The upload once (every heatmap layer lies on it), a figure per model and output, one scale.
    assert page.count('href="data:image/jpeg;base64,') == 1
    figures = page.count('<figure class="layered"')
    assert figures == len(bank) * len({o for m in bank for o in m.outputs})
    layers = page.count('<image class="layer" href="data:image/png;base64,')
    assert 0 < layers == figures - page.count("No heatmap:")
    assert page.count('<img src="data:image/png;base64,') == 1
    assert "Secret" not in page and "TEST-0001" not in page       # DICOM patient tags
    assert rv.headers["Cache-Control"] == "no-store"


def test_probabilities_and_threshold_marks_shown(client, bank, tmp_path):
    page = upload(client, MAKERS["png-gray"](tmp_path)).get_data(as_text=True)
    probs = re.findall(r'<td class="prob"[^>]*>([0-9.]+)</td>', page)
    assert len(probs) == sum(len(m.outputs) for m in bank)
    assert page.count('class="threshold"') == 2 * len(probs)       # per-model columns and matrix
    assert "Not evaluated on a test set" in page and "abababababab" in page   # split hash


def test_selected_heatmap_class(client, bank, tmp_path):
    page = upload(client, MAKERS["png-gray"](tmp_path), heatmap_class="Pneumonia").get_data(as_text=True)
    assert page.count('data-default="Pneumonia"') == 1         # the strip shown first
    assert len(re.findall(r'<figure class="layered" data-model="[^"]+" data-output="Pneumonia">', page)) == len(bank)


def test_oversized_upload_gives_friendly_413(make_app, tmp_path):
    client = make_app(MAX_CONTENT_LENGTH=1024 * 1024).test_client()
    rv = upload(client, data=b"\x89PNG" + os.urandom(2 * 1024 * 1024), name="big.png")
    assert rv.status_code == 413
    page = rv.get_data(as_text=True)
    assert "1 MB limit" in page and DISCLAIMER in page


@pytest.mark.parametrize("maker", [write_not_image, write_truncated])
def test_undecodable_upload_gives_422_page(client, tmp_path, maker):
    rv = upload(client, maker(tmp_path / "broken.png"))
    assert rv.status_code == 422
    page = rv.get_data(as_text=True)
    # The reason is shown, the file name is not (it may name the patient).
    assert "could not be read" in page and "broken.png" not in page and "Traceback" not in page


def test_unsupported_type_gives_415_page(client, tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    rv = upload(client, path)
    assert rv.status_code == 415
    assert "PNG, JPG, JPEG, DCM, DICOM" in rv.get_data(as_text=True)


def test_missing_csrf_token_gives_400(client, tmp_path):
    rv = upload(client, MAKERS["png-gray"](tmp_path), token=False)
    assert rv.status_code == 400
    assert "security token" in rv.get_data(as_text=True)


def test_missing_file_gives_400(client):
    from tests.app.conftest import csrf_token

    rv = client.post("/predict", data={"csrf_token": csrf_token(client)})
    assert rv.status_code == 400 and "No file" in rv.get_data(as_text=True)


def test_busy_page_is_503(make_app, tmp_path):
    client = make_app(MAX_INFLIGHT=0).test_client()
    rv = upload(client, MAKERS["png-gray"](tmp_path))
    assert rv.status_code == 503 and "busy" in rv.get_data(as_text=True)
    assert rv.headers["Retry-After"] == "5"


def test_nothing_written_to_disk_during_a_request(make_app, models_dir, tmp_path, monkeypatch):
    """A large upload (werkzeug would spool it) stays in memory; no file appears anywhere."""
    import tempfile

    client = make_app().test_client()
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    image = write_xray(tmp_path / "in" / "big.png", "L", 900, 900, seed=1)
    assert image.stat().st_size > 500 * 1024
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    # Only this process's temp files land here (parallel test workers share /tmp).
    monkeypatch.setattr(tempfile, "tempdir", str(private_tmp))
    watched = [work, models_dir, tmp_path / "in", private_tmp]
    before = {d: sorted(os.listdir(d)) for d in map(str, watched)}

    def forbidden(*args, **kwargs):
        raise AssertionError("an upload was written to a temporary file")

    monkeypatch.setattr(tempfile, "TemporaryFile", forbidden)
    monkeypatch.setattr(tempfile, "NamedTemporaryFile", forbidden)
    monkeypatch.setattr(tempfile, "SpooledTemporaryFile", forbidden)
    rv = upload(client, image)
    assert rv.status_code == 200, rv.get_data(as_text=True)[:500]
    assert {d: sorted(os.listdir(d)) for d in map(str, watched)} == before


def test_model_card_page(client, bank):
    name = bank.models[0].name
    page = client.get(f"/models/{name}").get_data(as_text=True)
    assert f"Model card: {name}" in page and "not yet evaluated" in page and DISCLAIMER in page
    assert client.get("/models/nope").status_code == 404


def test_model_card_page_names_the_initialisation(make_app, bank):
    from app.model_bank import ModelBank
    from training.models.card import ModelCard

    m = bank.models[0]
    page = make_app().test_client().get(f"/models/{m.name}").get_data(as_text=True)
    assert "random initialisation (trained from scratch)" in page  # a card without the entry
    init = {"kind": "cxr-pretrained", "summary": "CXR-pretrained here on kermany (3,977 images)"}
    card = ModelCard.from_json({**m.card.to_json(), "initialisation": init})
    other = ModelBank([dataclasses.replace(m, card=card)])
    page = make_app(MODEL_BANK=other).test_client().get(f"/models/{m.name}").get_data(as_text=True)
    assert "Initialisation" in page and "CXR-pretrained here on kermany (3,977 images)" in page


def test_a_card_with_unknown_test_metrics_is_refused_naming_the_section(bank):
    """Readers never guess keys: a test evaluation not in evaluate's structure fails on load."""
    import pytest

    from training.errors import ModelCardError
    from training.models.card import ModelCard

    raw = {**bank.models[0].card.to_json(),
           "metrics": {"test": {"test_set": "external", "auc": {"COVID-19": {"value": 0.91, "ci": [0.85, 0.95]}}}}}
    with pytest.raises(ModelCardError, match="metrics.test has no metrics object.*What to do"):
        ModelCard.from_json(raw, "m/card.json")


def test_model_card_page_lists_validation_metrics_with_their_names(make_app, bank):
    from app.model_bank import ModelBank
    from training.models.card import ModelCard

    m = bank.models[0]
    card = ModelCard.from_json({**m.card.to_json(), "metrics": {"validation": {
        "loss": 0.25, "per_output": {m.outputs[0]: {"n_pos": 3, "n_neg": 4, "roc_auc": 0.875}}}}})
    other = ModelBank([dataclasses.replace(m, card=card)])
    page = make_app(MODEL_BANK=other).test_client().get(f"/models/{m.name}").get_data(as_text=True)
    assert "loss: 0.250" in page and f"{m.outputs[0]} · roc_auc: 0.875" in page
    assert "not yet evaluated" in page


def test_compare_page_explains_how_to_produce_the_report(client):
    page = client.get("/compare").get_data(as_text=True)
    assert "python -m training compare" in page


def test_no_models_page_says_how_to_train(make_app):
    from app.model_bank import ModelBank

    page = make_app(MODEL_BANK=ModelBank([])).test_client().get("/").get_data(as_text=True)
    assert "No models are loaded" in page and "make demo" in page and "train-all" in page


def test_refused_upload_shows_reasons_and_no_probabilities(client, tmp_path):
    from tests.helpers.images import png_bytes

    rv = upload(client, data=png_bytes(np.zeros((400, 400), np.uint8)), name="black.png")
    page = rv.get_data(as_text=True)
    assert rv.status_code == 422
    assert 'data-verdict="refuse"' in page and 'data-code="near_constant"' in page
    assert 'class="prob"' not in page and "Download report" not in page


def test_warned_upload_shows_the_warning_above_the_columns(client, tmp_path):
    from tests.helpers.images import chest_like, png_bytes

    marked = np.repeat(chest_like(300, 260)[..., None], 3, axis=-1)
    marked[20:45, 20:140] = (255, 0, 0)                              # a red label: a warning
    page = upload(client, data=png_bytes(marked), name="marked.png").get_data(as_text=True)
    assert 'data-verdict="warn"' in page and 'data-code="colour"' in page
    assert page.index('data-verdict="warn"') < page.index('class="columns"')
    assert 'class="prob"' in page


def test_result_page_has_agreement_greyed_untested_outputs_and_a_report_form(client, bank, tmp_path):
    page = upload(client, MAKERS["png-gray"](tmp_path)).get_data(as_text=True)
    assert "Agreement between the models" in page
    assert page.count('<tr data-output=') == len({o for m in bank for o in m.outputs})
    assert page.count('class=" greyed"') + page.count('class="positive greyed"') == \
        sum(len(m.outputs) for m in bank)                       # untested: every row greyed
    assert page.count("not evaluated on a test set") == sum(len(m.outputs) for m in bank)
    assert 'action="/report"' in page and 'class="payload"' in page
