"""The DICOM SR report: readable by pydicom, highdicom and dcmtk, referencing its source, private.

Also holds the builders both report tests use: a synthetic DX DICOM, a PNG, a prediction result.
"""
from __future__ import annotations

import base64
import copy
import io
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom import config
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (ComprehensiveSRStorage, DigitalXRayImageStorageForPresentation,
                         ExplicitVRLittleEndian, generate_uid)

from app.report import ReportError, build_report
from tests.helpers.tools import require_tool

DISCLAIMER = ("Research tool, not a diagnostic device. The outputs are not validated for clinical use "
              "and must not guide diagnosis or treatment.")
SITE = {"InstitutionName": "St Elsewhere Hospital", "InstitutionAddress": "1 Secret Road",
        "StationName": "XR-ROOM-7", "DeviceSerialNumber": "SN-998877"}


def make_dicom(size: int = 256, **attrs: Any) -> tuple[bytes, Dataset]:
    """A DX For Presentation chest image (uint16 MONOCHROME2) as file bytes, and its dataset."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DigitalXRayImageStorageForPresentation
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Doe^Jane", "PID-4711", "19700101", "F"
    ds.StudyDate, ds.StudyTime, ds.AccessionNumber, ds.StudyID = "20260101", "101010", "ACC-1", "S-1"
    ds.ReferringPhysicianName = ""
    ds.Modality, ds.Manufacturer, ds.SeriesNumber, ds.InstanceNumber = "DX", "ACME Imaging", 1, 1
    ds.ViewPosition, ds.BodyPartExamined = "PA", "CHEST"
    ds.ImageType, ds.PresentationIntentType = ["ORIGINAL", "PRIMARY"], "FOR PRESENTATION"
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.Rows, ds.Columns = 1, "MONOCHROME2", size, size
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    yy, xx = np.mgrid[0:size, 0:size]
    ds.PixelData = ((yy + xx) * 4095 // (2 * size - 2)).astype(np.uint16).tobytes()
    with config.disable_value_validation():  # real archives' values, as they are ("1970-01-01")
        for key, value in {**SITE, **attrs}.items():
            if key in ds:
                delattr(ds, key)  # a new element: an existing one would validate as it was made to
            if value is not None:
                setattr(ds, key, value)
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue(), ds


def make_png(width: int = 200, height: int = 160) -> bytes:
    gray = (np.add.outer(np.arange(height), np.arange(width)) % 256).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(gray).save(buffer, format="PNG")
    return buffer.getvalue()


def data_uri(color: str, fmt: str = "PNG", size: int = 48) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buffer, format=fmt)
    return f"data:image/{fmt.lower()};base64,{base64.b64encode(buffer.getvalue()).decode()}"


def _model(name: str, arch: str, probs: dict[str, float], test_set: str | None = "internal",
           colors: tuple[str, str] = ("red", "blue")) -> dict[str, Any]:
    outputs = [{"name": out, "probability": p, "raw_probability": round(p * 0.9, 4), "threshold": 0.5,
                "positive": p >= 0.5, "chance_level": out == "No Finding",
                "test_auc": {"value": 0.8, "low": 0.7, "high": 0.9}} for out, p in probs.items()]
    return {"name": name, "architecture": arch, "input_size": 96, "model_sha256": (name.encode().hex() * 8)[:64],
            "cxrlab_version": "0.1.0", "created": "2026-12-01T10:00:00+00:00", "calibration": "platt",
            "gate": {"verdict": "warn", "score": 3.1, "threshold": 9.0},
            "test": {"test_set": test_set, "split": "patient-disjoint by source", "n_images": 120,
                     "macro_auc": {"value": 0.81, "low": 0.74, "high": 0.88}, "chance_level": False},
            "outputs": outputs,
            "heatmaps": {"COVID-19": data_uri(colors[0]), "Pneumonia": data_uri(colors[1], "JPEG")},
            "heatmap_notes": {"No Finding": "the map is uniform (zero gradient); nothing to show"}}


def sample_result(verdict: str = "warn") -> dict[str, Any]:
    """A /api/predict result with two models, a gate warning, agreement and a flag."""
    reasons = [{"code": "too_small", "level": "warn", "message": "the image is 256 x 256 px, below 512"}]
    if verdict == "refuse":
        reasons.append({"code": "not_xray", "level": "refuse", "message": "this does not look like a chest X-ray"})
    return {
        "filename": "chest.dcm",
        "gate": {"verdict": verdict, "reasons": reasons},
        "models": [_model("demo-resnet50", "resnet50", {"COVID-19": 0.7123456789, "Pneumonia": 0.25, "No Finding": 0.61}),
                   _model("demo-vgg16", "vgg16", {"COVID-19": 0.40625, "Pneumonia": 0.8, "No Finding": 0.1}, "external",
                          ("green", "yellow"))],
        "agreement": {"COVID-19": {"n_models": 2, "n_positive": 1, "min": 0.40625, "max": 0.7123456789, "disagree": True}},
        "flags": [{"model": "demo-resnet50", "outputs": ["No Finding", "COVID-19"],
                   "message": "mutually exclusive outputs both positive"}],
        "disclaimer": DISCLAIMER,
    }


def build_sr(result: dict[str, Any] | None = None, **dicom_attrs: Any) -> tuple[bytes, Dataset]:
    data, source = make_dicom(**dicom_attrs)
    payload, mimetype, name = build_report("sr", result or sample_result(), data, "chest.dcm")
    assert (mimetype, name) == ("application/dicom", "chest-cxrlab-sr.dcm")
    return payload, source


def walk(items: Any) -> Iterator[Dataset]:
    """Every content item of an SR content tree, depth first."""
    for item in items:
        yield item
        yield from walk(item.get("ContentSequence", []))


def texts(ds: Dataset, meaning: str) -> list[str]:
    return [item.TextValue for item in walk(ds.ContentSequence)
            if item.ValueType == "TEXT" and item.ConceptNameCodeSequence[0].CodeMeaning == meaning]


def all_keywords(ds: Dataset) -> set[str]:
    """Keywords of every element, nested sequences included."""
    found = set()
    for element in ds:
        found.add(element.keyword)
        if element.VR == "SQ":
            for item in element.value:
                found |= all_keywords(item)
    return found


@pytest.fixture(scope="module")
def sr() -> tuple[Dataset, Dataset, bytes]:
    payload, source = build_sr()
    return pydicom.dcmread(io.BytesIO(payload)), source, payload


def test_sr_reads_back_with_pydicom_and_highdicom(sr):
    import highdicom as hd

    ds, source, payload = sr
    assert ds.SOPClassUID == ComprehensiveSRStorage and ds.Modality == "SR"
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert ds.StudyInstanceUID == source.StudyInstanceUID
    assert ds.SeriesInstanceUID != source.SeriesInstanceUID and ds.SOPInstanceUID != source.SOPInstanceUID
    assert (ds.SeriesNumber, ds.InstanceNumber, ds.Manufacturer) == (9901, 1, "cxrlab")
    document = hd.sr.srread(io.BytesIO(payload))
    assert isinstance(document, hd.sr.ComprehensiveSR)
    assert isinstance(document.content, hd.sr.MeasurementReport)
    assert ds.ContentTemplateSequence[0].TemplateIdentifier == "1500"


def test_sr_evidence_references_the_source(sr):
    ds, source, _ = sr
    (study,) = ds.CurrentRequestedProcedureEvidenceSequence
    assert study.StudyInstanceUID == source.StudyInstanceUID
    (series,) = study.ReferencedSeriesSequence
    assert series.SeriesInstanceUID == source.SeriesInstanceUID
    (instance,) = series.ReferencedSOPSequence
    assert instance.ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert instance.ReferencedSOPClassUID == DigitalXRayImageStorageForPresentation
    images = [item for item in walk(ds.ContentSequence) if item.ValueType == "IMAGE"]
    assert len(images) == 2  # one "Source of Measurement" per model group
    assert {i.ReferencedSOPSequence[0].ReferencedSOPInstanceUID for i in images} == {source.SOPInstanceUID}


def test_sr_keeps_the_source_patient_and_adds_nothing_identifying(sr):
    ds, source, payload = sr
    assert ds.PatientID == source.PatientID and ds.PatientName == source.PatientName
    assert (ds.PatientBirthDate, ds.PatientSex, ds.AccessionNumber) == ("19700101", "F", "ACC-1")
    assert not set(SITE) & all_keywords(ds), "site/device identifiers copied into the SR"
    for value in SITE.values():
        assert value.encode() not in payload
    assert "OperatorsName" not in ds and "InstitutionalDepartmentName" not in ds


def test_sr_says_not_for_clinical_use(sr):
    ds, _, _ = sr
    assert "NOT FOR CLINICAL USE" in ds.SeriesDescription
    (comment,) = texts(ds, "Comment")
    assert comment.startswith("RESEARCH, NOT FOR CLINICAL USE.") and DISCLAIMER in comment
    assert (ds.PreliminaryFlag, ds.VerificationFlag, ds.CompletionFlag) == ("PRELIMINARY", "UNVERIFIED", "COMPLETE")


def test_sr_has_one_group_per_model_with_its_probabilities(sr):
    import highdicom as hd

    ds, _, payload = sr
    result = sample_result()
    groups = hd.sr.srread(io.BytesIO(payload)).content.get_image_measurement_groups()
    assert [g.tracking_identifier for g in groups] == [m["name"] for m in result["models"]]
    assert texts(ds, "Algorithm Name") == [m["name"] for m in result["models"]]
    for group, model in zip(groups, result["models"]):
        probabilities = {m.name.meaning: m.value for m in group.get_measurements()}
        assert probabilities == {f"Probability of {o['name']}": o["probability"] for o in model["outputs"]}
        assert {m.unit.value for m in group.get_measurements()} == {"1"}
        evaluations = {q.name.meaning: q.value.meaning for q in group.get_qualitative_evaluations()}
        assert evaluations == {o["name"]: "Present" if o["positive"] else "Absent" for o in model["outputs"]}
    versions = texts(ds, "Algorithm Version")
    assert versions == [f"0.1.0 sha256:{m['model_sha256'][:16]}" for m in result["models"]]
    parameters = texts(ds, "Algorithm Parameters")
    assert "architecture=resnet50" in parameters and "calibration=platt" in parameters
    assert "threshold[COVID-19]=0.5" in parameters


def test_sr_carries_the_gate_warnings_and_caveats(sr):
    ds, _, _ = sr
    assert texts(ds, "Input quality gate verdict") == ["warn"]
    assert texts(ds, "Input quality gate reason") == ["warn too_small: the image is 256 x 256 px, below 512"]
    assert texts(ds, "No better than chance on its test set") == ["demo-resnet50: No Finding",
                                                                  "demo-vgg16: No Finding"]
    assert len(texts(ds, "Model input gate warning")) == 2
    assert texts(ds, "Models disagree")[0].startswith("COVID-19: 1 of 2 deciding models positive")
    assert "mutually exclusive outputs both positive" in texts(ds, "Consistency flag")[0]


def test_sr_keeps_the_source_character_set_or_switches_to_utf8():
    latin = {"SpecificCharacterSet": "ISO_IR 100", "PatientName": "Müller^Jürgen"}
    payload, _ = build_sr(**latin)
    ds = pydicom.dcmread(io.BytesIO(payload))
    assert ds.SpecificCharacterSet == "ISO_IR 100" and ds.PatientName == "Müller^Jürgen"
    result = sample_result()
    result["gate"]["reasons"][0]["message"] = "the image is 256×256 px, ≥ 512 is better"
    payload, _ = build_sr(result, **latin)
    ds = pydicom.dcmread(io.BytesIO(payload))
    assert ds.SpecificCharacterSet == "ISO_IR 192" and ds.PatientName == "Müller^Jürgen"
    assert "256×256 px, ≥ 512" in texts(ds, "Input quality gate reason")[0]


def test_sr_from_an_anonymised_source_without_type2_patient_attributes():
    payload, _ = build_sr(PatientBirthDate=None, PatientSex=None, AccessionNumber=None, StudyID=None,
                          ReferringPhysicianName=None)
    ds = pydicom.dcmread(io.BytesIO(payload))
    assert ds.PatientID == "PID-4711" and ds.PatientBirthDate == "" and ds.AccessionNumber == ""


def test_sr_long_output_names_get_distinct_short_codes():
    result = sample_result()
    long_names = ["Pleural effusion, left side, moderate", "Pleural effusion, left side, severe"]
    result["models"] = [_model("m", "resnet50", dict.fromkeys(long_names, 0.6))]
    ds = pydicom.dcmread(io.BytesIO(build_sr(result)[0]))
    codes = {i.ConceptNameCodeSequence[0].CodeValue for i in walk(ds.ContentSequence) if i.ValueType == "NUM"}
    assert len(codes) == 2 and all(len(c) <= 16 for c in codes)


def test_dsrdump_reads_the_sr_strictly(sr, tmp_path: Path):
    dsrdump = require_tool("dsrdump", "Debian: apt-get install dcmtk")
    _, _, payload = sr
    path = tmp_path / "report-sr.dcm"
    path.write_bytes(payload)
    # No -E options: dcmtk then enforces the IOD's relationship content constraints and
    # rejects invalid items (its -Ec/-Ee/-Ei/-Ev options would relax exactly those checks).
    proc = subprocess.run([dsrdump, "-v", "+Pt", str(path)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert not [line for line in proc.stderr.splitlines() if line.startswith("E:")], proc.stderr
    assert "Comprehensive SR Document" in proc.stdout and "TID 1500" in proc.stdout
    assert "NOT FOR CLINICAL USE" in proc.stdout and '"demo-resnet50"' in proc.stdout


def test_sr_for_a_png_upload_is_refused():
    with pytest.raises(ReportError, match="needs a DICOM upload and this upload is not DICOM; ask for format=pdf"):
        build_report("sr", sample_result(), make_png(), "chest.png")


def test_sr_for_a_source_without_modality_names_what_is_missing():
    data, _ = make_dicom(Modality=None)
    with pytest.raises(ReportError, match="Modality"):
        build_report("sr", sample_result(), data, "chest.dcm")


def test_sr_for_a_refused_upload_is_a_report_error():
    data, _ = make_dicom()
    with pytest.raises(ReportError, match="refused"):
        build_report("sr", sample_result("refuse"), data, "chest.dcm")


def test_sr_does_not_change_the_result():
    result = sample_result()
    before = copy.deepcopy(result)
    build_sr(result)
    assert result == before


def test_unknown_format_is_a_value_error():
    with pytest.raises(ValueError, match="allowed: pdf, sr"):
        build_report("docx", sample_result(), make_png(), "chest.png")
