"""No patient data outside the result and the report: not in a log, stderr, a warning or an error body.

One DICOM with a name, an ID, a birth date that is not valid DICOM ("1970-01-01"), a private
tag and a file name that names the patient goes through the page, the API, the PDF and the SR
(API and page re-post): every time a report comes back, and none of those values is said
anywhere else. The gunicorn check reads a real server's log.
"""
from __future__ import annotations

import io
import json
import logging
import re
import urllib.request
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pydicom
import pytest
from pydicom import config

from tests.app.conftest import upload
from tests.app.test_reports import report_form, repost
from tests.helpers.images import write_xray_dicom

FILENAME = "Jane_Doe_1970.dcm"
PATIENT = {"PatientName": "Doe^Jane", "PatientID": "PID-12345", "PatientBirthDate": "1970-01-01",
           "StudyTime": "10:10:10"}
PRIVATE_VALUE = "Qx-Private-7731"
#: Loggers set to DEBUG besides the root (highdicom keeps its own WARNING: app.report.sr sets it,
#: because its INFO lines quote the source's UIDs; that is the setting under test).
LOGGERS = ("werkzeug", "pydicom", "app", "training")


@pytest.fixture(scope="module")
def patient_dicom(tmp_path_factory) -> tuple[bytes, list[str]]:
    """A chest-like DICOM the gate accepts, with patient values as real archives hold them,
    and the values that must not be said anywhere else."""
    path = tmp_path_factory.mktemp("patient") / "source.dcm"
    with config.disable_value_validation():  # "1970-01-01" written as it is, no warning here
        write_xray_dicom(path, h=300, w=240, **PATIENT)
        ds = pydicom.dcmread(path)
        ds.private_block(0x0011, "ACME 1.0", create=True).add_new(0x01, "LO", PRIVATE_VALUE)
        ds.save_as(path, enforce_file_format=True)
    secrets = ["Doe", "Jane", PATIENT["PatientID"], PATIENT["PatientBirthDate"], "10:10:10",
               PRIVATE_VALUE, Path(FILENAME).stem, ds.StudyInstanceUID, ds.SOPInstanceUID]
    return path.read_bytes(), secrets


@contextmanager
def nothing_said(caplog, capfd, secrets: list[str]) -> Iterator[None]:
    """Everything logged (DEBUG), printed or warned inside must hold none of ``secrets``."""
    capfd.readouterr()
    caplog.clear()
    caplog.set_level(logging.DEBUG)
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    out, err = capfd.readouterr()
    said = "\n".join([caplog.text, out, err, *(str(w.message) for w in caught)])
    leaked = [s for s in secrets if s in said]
    assert not leaked, f"patient data said: {leaked}"


def api_post(client, path: str, data: bytes, name: str = FILENAME):
    return client.post(path, data={"file": (io.BytesIO(data), name)}, content_type="multipart/form-data")


def check_sr(payload: bytes) -> None:
    ds = pydicom.dcmread(io.BytesIO(payload))
    assert (str(ds.PatientName), ds.PatientID) == ("Doe^Jane", "PID-12345")     # copied as they are
    assert ds.PatientBirthDate == "" and PRIVATE_VALUE.encode() not in payload    # left out
    notes = [i.TextValue for i in ds.ContentSequence[-1].ContentSequence
             if i.ConceptNameCodeSequence[0].CodeMeaning == "Attributes left empty"]
    assert notes == ["attributes left empty because their values were not valid DICOM: "
                     "StudyTime, PatientBirthDate"]


def test_page_and_page_reports_say_nothing(client, caplog, capfd, patient_dicom):
    data, secrets = patient_dicom
    with nothing_said(caplog, capfd, secrets):
        page = upload(client, data=data, name=FILENAME)
        assert page.status_code == 200, page.get_data(as_text=True)
        form = report_form(page.get_data(as_text=True))
        pdf = repost(client, form, "pdf")
        sr = repost(client, form, "sr")
    assert pdf.status_code == 200 and pdf.data.startswith(b"%PDF")
    assert sr.status_code == 200 and sr.mimetype == "application/dicom"
    check_sr(sr.data)


def test_api_and_api_reports_say_nothing(client, caplog, capfd, patient_dicom):
    data, secrets = patient_dicom
    with nothing_said(caplog, capfd, secrets):
        predicted = api_post(client, "/api/predict?heatmaps=1", data)
        pdf = api_post(client, "/api/report?format=pdf", data)
        sr = api_post(client, "/api/report?format=sr", data)
    assert predicted.status_code == 200 and predicted.get_json()["models"]
    assert pdf.status_code == 200 and pdf.data.startswith(b"%PDF")
    assert sr.status_code == 200
    check_sr(sr.data)


def test_error_bodies_name_neither_the_file_nor_a_value(client, caplog, capfd, patient_dicom):
    data, secrets = patient_dicom
    corrupted = data[: len(data) - 60_000]                     # the pixel data cut short
    with nothing_said(caplog, capfd, secrets):
        page = upload(client, data=corrupted, name=FILENAME)
        api = api_post(client, "/api/predict", corrupted)
        sr = api_post(client, "/api/report?format=sr", corrupted)
        not_dicom = api_post(client, "/api/report?format=sr", b"\x89PNG\r\n\x1a\n" + b"\0" * 64,
                             "Jane_Doe_1970.png")
    assert page.status_code == api.status_code == sr.status_code == 422
    assert api.get_json()["message"].endswith("Upload an uncorrupted PNG, JPEG or DICOM chest X-ray.")
    assert not_dicom.status_code in (400, 422)
    for rv in (page, api, sr, not_dicom):
        body = rv.get_data(as_text=True)
        assert not [s for s in secrets if s in body], body


def test_an_unexpected_error_is_friendly_and_logged_without_its_message(client, caplog, capfd, patient_dicom,
                                                                        monkeypatch):
    data, secrets = patient_dicom

    def broken(*args, **kwargs):
        raise ValueError(f"cannot handle {PATIENT['PatientBirthDate']} of {FILENAME}")

    monkeypatch.setattr("app.api.build_report", broken)
    with nothing_said(caplog, capfd, secrets):
        api = api_post(client, "/api/report?format=pdf", data)
        form = report_form(upload(client, data=data, name=FILENAME).get_data(as_text=True))
        page = client.post(form["action"], content_type="multipart/form-data",
                           data={**form["fields"], "format": "pdf", "file": (io.BytesIO(data), FILENAME)})
    assert api.status_code == page.status_code == 500
    assert api.get_json() == {"error": "Something went wrong", "status": 500,
                              "message": api.get_json()["message"]}
    assert "Traceback" not in page.get_data(as_text=True) and "Something went wrong" in page.get_data(as_text=True)
    logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(logged) == 2 and all(m.startswith("unexpected ValueError on POST /") for m in logged)
    assert "in broken" in logged[0]                            # where it happened: the frames


def _post(url: str, data: bytes) -> tuple[int, bytes]:
    boundary = uuid.uuid4().hex
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{FILENAME}"\r\n'
            "Content-Type: application/dicom\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    req = urllib.request.Request(url, data=body, method="POST",
                                 headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    try:
        with urllib.request.urlopen(req, timeout=60) as rv:
            return rv.status, rv.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_gunicorn_log_holds_no_patient_data(models_dir, tmp_path, patient_dicom):
    from tests.app.servers import gunicorn_server

    data, secrets = patient_dicom
    log = tmp_path / "gunicorn.log"
    with gunicorn_server(models_dir, log) as url:
        for path in ("/api/predict", "/api/report?format=pdf", "/api/report?format=sr"):
            status, _ = _post(url + path, data)
            assert status == 200, path
        status, body = _post(url + "/api/predict", data[:-60_000])
        assert status == 422 and not [s for s in secrets if s in body.decode()]
    text = log.read_text(errors="replace")
    assert re.search(r'"POST /api/report\?format=sr HTTP/1\.1" 200', text), text[-2000:]
    assert not [s for s in secrets if s in text], [s for s in secrets if s in text]
    assert all(json.loads(line)["event"] for line in text.splitlines() if line.startswith('{"time"'))
