"""The PDF report: opens with pypdf, carries the disclaimer, the image, the heatmaps and the results."""
from __future__ import annotations

import io
from typing import Any

import pypdf
import pytest
from pydicom import config

from app.report import build_report
from tests.app.report.test_sr import DISCLAIMER, make_dicom, make_png, sample_result
from tests.app.report.test_sr_sources import PRIVATE_VALUE, odd_dicom


def build_pdf(result: dict[str, Any], data: bytes | None = None, name: str = "chest.png") -> pypdf.PdfReader:
    payload, mimetype, download = build_report("pdf", result, make_png() if data is None else data, name)
    assert mimetype == "application/pdf" and download.endswith("-cxrlab-report.pdf")
    assert payload.startswith(b"%PDF-")
    return pypdf.PdfReader(io.BytesIO(payload))


def text_of(reader: pypdf.PdfReader) -> str:
    """All pages' text with whitespace collapsed (wrapping breaks lines anywhere)."""
    return " ".join(" ".join(page.extract_text() or "" for page in reader.pages).split())


def images_of(reader: pypdf.PdfReader) -> list[Any]:
    return [image for page in reader.pages for image in page.images]


@pytest.fixture(scope="module")
def reader() -> pypdf.PdfReader:
    return build_pdf(sample_result())


def test_pdf_opens_and_states_what_it_is(reader):
    text = text_of(reader)
    assert "cxrlab report — research tool, not a diagnostic device" in text
    assert DISCLAIMER in text
    assert "chest.png" in text and " UTC" in text
    assert reader.metadata.title.startswith("cxrlab report")


def test_pdf_has_every_model_with_identity_and_test_set(reader):
    text = text_of(reader)
    for model in sample_result()["models"]:
        assert f"Model: {model['name']}" in text
        assert model["model_sha256"] in text  # in full
        assert model["architecture"] in text
    assert "96 px" in text and "platt" in text
    assert "macro AUC 0.810 (95% CI 0.740-0.880)" in text
    assert "Internal: held out" in text and "External: from a source not used in training" in text


def test_pdf_has_the_outputs_agreement_gate_and_flags(reader):
    text = text_of(reader)
    assert "0.712" in text and "0.641" in text and "0.406" in text  # calibrated, raw, agreement min
    assert "no better than chance on its test set" in text
    assert "Verdict: warn" in text and "too_small" in text and "below 512" in text
    assert "Agreement between models" in text
    assert "mutually exclusive outputs both positive" in text
    assert "the map is uniform (zero gradient)" in text


def test_pdf_embeds_the_upload_and_every_heatmap(reader):
    # The sample's heatmaps all differ (reportlab stores identical images once).
    heatmaps = sum(len(m["heatmaps"]) for m in sample_result()["models"])
    assert len(images_of(reader)) == 1 + heatmaps


def test_the_disclaimer_is_in_every_page_footer():
    result = sample_result()
    result["models"] = result["models"] * 3  # long enough for several pages
    reader = build_pdf(result)
    assert len(reader.pages) >= 2
    for page in reader.pages:
        assert DISCLAIMER in " ".join((page.extract_text() or "").split())


def test_a_dicom_upload_is_decoded_and_a_large_one_downscaled():
    data, _ = make_dicom(size=1200)
    reader = build_pdf(sample_result(), data, "chest.dcm")
    upload = max(images_of(reader), key=lambda image: image.image.width * image.image.height)
    assert max(upload.image.size) == 1024


def test_a_refused_upload_states_the_refusal_and_no_probabilities():
    reader = build_pdf(sample_result("refuse"))
    text = text_of(reader)
    assert "Verdict: refuse" in text and "refused by the input quality gate" in text
    assert "this does not look like a chest X-ray" in text
    assert "demo-resnet50" in text and DISCLAIMER in text
    assert "0.712" not in text and "Probability" not in text and "Agreement" not in text
    assert len(images_of(reader)) == 1  # the upload, no heatmaps


def test_missing_optional_keys_and_none_numbers_do_not_crash():
    result = {"gate": {"verdict": "accept", "reasons": []}, "disclaimer": DISCLAIMER,
              "models": [{"name": "bare", "outputs": [{"name": "COVID-19", "probability": None,
                                                       "raw_probability": None, "threshold": None,
                                                       "positive": None, "test_auc": None}],
                          "test": None, "gate": None}]}
    text = text_of(build_pdf(result))
    assert "Model: bare" in text and "no test-set evaluation recorded" in text


def test_text_is_escaped_and_a_bad_heatmap_becomes_a_note():
    result = sample_result()
    result["models"][0]["name"] = "<b>m&m</b>"
    result["models"][0]["heatmaps"] = {"COVID-19": "data:image/png;base64,bm90IGEgcG5n",
                                       "Pneumonia": "javascript:alert(1)"}
    text = text_of(build_pdf(result))
    assert "Model: <b>m&m</b>" in text
    assert text.count("heatmap could not be decoded") == 2
    assert "not a PNG or JPEG data URI" not in text                 # the kind only, not the message


def test_an_undecodable_upload_still_gives_a_report():
    text = text_of(build_pdf(sample_result(), b"not an image", "Jane_Doe_broken.png"))
    assert "The image could not be rendered (ImageDecodeError)" in text and DISCLAIMER in text
    # The note gives the kind only: the decoder's message (which names the file) stays out.
    assert text.count("Jane_Doe_broken") == 1                       # the "File" line, nothing else


def test_a_dicom_with_invalid_values_gets_its_picture_and_nothing_said(caplog, capfd, monkeypatch):
    import logging
    import warnings

    data, _ = odd_dicom()
    monkeypatch.setattr(config.settings, "_reading_validation_mode", config.WARN)  # pydicom's default
    caplog.set_level(logging.DEBUG)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reader = build_pdf(sample_result(), data, "chest.dcm")
    assert len(images_of(reader)) == 1 + 4 and "could not be rendered" not in text_of(reader)
    said = caplog.text + "".join(capfd.readouterr()) + " ".join(str(w.message) for w in caught)
    for value in ("1970-01-01", "10:10:10", "45 years", "DOE JANE", PRIVATE_VALUE):
        assert value not in said, value
