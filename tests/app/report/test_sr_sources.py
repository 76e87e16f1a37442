"""The DICOM SR of real-world sources: values that are not valid DICOM are left empty and named,
valid ones copied as they are, and nothing quotes a value (pydicom's validation switched off).
"""
from __future__ import annotations

import io
import logging
import subprocess
import threading
import warnings
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom import config
from pydicom.dataset import Dataset

from app.report import ReportError, build_report
from tests.app.report.test_sr import build_sr, make_dicom, sample_result, texts
from tests.helpers.tools import require_tool

#: Values real archives hold that are not valid DICOM, and valid ones highdicom would refuse.
ODD = {"PatientBirthDate": "1970-01-01",            # DA with dashes
       "StudyTime": "10:10:10",                     # TM with colons
       "PatientAge": "45 years",                    # AS spelt out
       "AccessionNumber": "ACC-" + "7" * 30,        # SH over 16 characters
       "StudyDescription": "Chest " * 20,           # LO over 64 characters
       "PatientName": "DOE JANE (Jo) O'Brien",      # valid PN: one component, odd characters
       "PatientSex": "W",                           # valid CS, not one highdicom accepts
       "PatientWeight": "70.5"}                     # made "70,5" below: a DS with a decimal comma
PRIVATE_VALUE = "Private-Secret-4711"
LEFT_EMPTY = "attributes left empty because their values were not valid DICOM"


def odd_dicom(**attrs: Any) -> tuple[bytes, Dataset]:
    """:func:`make_dicom` with :data:`ODD` values and a private tag (values as real archives hold them)."""
    data, ds = make_dicom(**{**ODD, **attrs})
    block = ds.private_block(0x0011, "ACME 1.0", create=True)
    block.add_new(0x01, "LO", PRIVATE_VALUE)
    buffer = io.BytesIO()
    with config.disable_value_validation():
        ds.save_as(buffer, enforce_file_format=True)
    data = buffer.getvalue()
    assert data.count(b"70.5") == 1
    return data.replace(b"70.5", b"70,5"), ds


def emptied_note(ds: Dataset) -> list[str]:
    return texts(ds, "Attributes left empty")


def test_sr_of_a_source_with_invalid_values_leaves_them_empty_and_says_so(caplog, capfd, monkeypatch):
    data, _ = odd_dicom()
    # pydicom's default (decoding elsewhere in this process may have turned validation off).
    monkeypatch.setattr(config.settings, "_reading_validation_mode", config.WARN)
    caplog.set_level(logging.DEBUG)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        payload, _, _ = build_report("sr", sample_result(), data, "chest.dcm")
    ds = pydicom.dcmread(io.BytesIO(payload))
    for keyword in ("PatientBirthDate", "StudyTime", "PatientAge", "AccessionNumber", "StudyDescription",
                    "PatientWeight"):
        assert keyword in ds and ds[keyword].value in ("", None), keyword     # Type 2: present, empty
    (note,) = emptied_note(ds)
    assert note.startswith(LEFT_EMPTY)
    assert set(note.split(": ", 1)[1].split(", ")) == {"PatientBirthDate", "StudyTime", "PatientAge",
                                                         "AccessionNumber", "StudyDescription", "PatientWeight"}
    # Valid values are copied as they are, even those highdicom's constructor would refuse.
    assert (str(ds.PatientName), ds.PatientSex, ds.PatientID) == (ODD["PatientName"], "W", "PID-4711")
    assert PRIVATE_VALUE.encode() not in payload                      # private tags are not copied
    # Nothing quotes a value: not pydicom's validation, not highdicom's name check.
    said = caplog.text + "".join(capfd.readouterr()) + " ".join(str(w.message) for w in caught)
    for value in ("1970-01-01", "10:10:10", "45 years", "7777777", "Chest Chest", "DOE JANE", "70,5", PRIVATE_VALUE):
        assert value not in said, value
    assert config.settings.reading_validation_mode == config.WARN       # the switch came back


def test_sr_of_a_clean_source_has_no_left_empty_note():
    ds = pydicom.dcmread(io.BytesIO(build_sr()[0]))
    assert ds.PatientBirthDate == "19700101" and emptied_note(ds) == []


def test_sr_of_a_name_in_a_wrong_character_set():
    # Declares UTF-8, holds Latin-1 bytes: the name does not decode, so it is left out.
    data, _ = make_dicom(SpecificCharacterSet="ISO_IR 100", PatientName="Müller^Jürgen")
    data = data.replace(b"ISO_IR 100", b"ISO_IR 192")
    ds = pydicom.dcmread(io.BytesIO(build_report("sr", sample_result(), data, "chest.dcm")[0]))
    assert ds.PatientName == "" and "PatientName" in emptied_note(ds)[0]
    # Declares nothing (ASCII), holds Latin-1 bytes: pydicom reads them as Latin-1; kept, and
    # the SR declares UTF-8 so that what it holds is encoded validly.
    data, _ = make_dicom(PatientName="Müller^Jürgen")
    assert b"M\xfcller" in data and b"ISO_IR" not in data
    ds = pydicom.dcmread(io.BytesIO(build_report("sr", sample_result(), data, "chest.dcm")[0]))
    assert ds.SpecificCharacterSet == "ISO_IR 192" and str(ds.PatientName) == "Müller^Jürgen"
    assert emptied_note(ds) == []


def test_sr_errors_name_neither_the_file_nor_a_value():
    data, _ = odd_dicom(Modality=None)
    with pytest.raises(ReportError) as missing:
        build_report("sr", sample_result(), data, "Jane_Doe_1970.dcm")
    with pytest.raises(ReportError) as refused:
        build_report("sr", sample_result("refuse"), data, "Jane_Doe_1970.dcm")
    with pytest.raises(ReportError) as broken:
        build_report("sr", sample_result(), b"DICM" * 40, "Jane_Doe_1970.dcm")
    for exc in (missing, refused, broken):
        message = str(exc.value)
        assert "Jane_Doe" not in message and "1970" not in message and "format=pdf" in message
    assert "Modality" in str(missing.value)


def test_dsrdump_reads_the_sr_of_a_source_with_invalid_values(tmp_path: Path):
    dsrdump = require_tool("dsrdump", "Debian: apt-get install dcmtk")
    path = tmp_path / "odd-sr.dcm"
    path.write_bytes(build_report("sr", sample_result(), odd_dicom()[0], "chest.dcm")[0])
    proc = subprocess.run([dsrdump, "-v", "+Pt", "+Pl", str(path)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert not [line for line in proc.stderr.splitlines() if line.startswith("E:")], proc.stderr
    assert LEFT_EMPTY in proc.stdout and "PatientBirthDate" in proc.stdout


def test_quiet_dicom_silences_pydicom_until_the_last_user_leaves(monkeypatch, recwarn):
    from app.report import quiet_dicom

    monkeypatch.setattr(config.settings, "_reading_validation_mode", config.WARN)  # pydicom's default
    inside, release = threading.Event(), threading.Event()

    def other_report() -> None:
        with quiet_dicom():
            inside.set()
            release.wait(10)

    thread = threading.Thread(target=other_report)
    thread.start()
    assert inside.wait(10)
    with quiet_dicom():
        Dataset().PatientSex = "w!"               # an invalid CS: pydicom would quote it
    assert config.settings.reading_validation_mode == config.IGNORE  # the other one is still in
    release.set()
    thread.join(10)
    assert config.settings.reading_validation_mode == config.WARN
    assert not [w for w in recwarn if "w!" in str(w.message)]
    Dataset().PatientSex = "w!"                   # outside: pydicom's own behaviour again
    assert [w for w in recwarn if "w!" in str(w.message)]
