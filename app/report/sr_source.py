"""The uploaded DICOM as a DICOM SR's evidence: read, checked, its patient/study values sanitised.

Real archives hold values that are not valid DICOM (a birth date ``1970-01-01``, a 40-character
accession number). Of the attributes the SR copies (highdicom copies the source's Patient and
Study modules), those are left empty (DICOM lets these Type 2 attributes be empty) and their
keywords, never their values, are returned for the SR to state; everything else valid is copied
as it is. Callers hold :func:`app.report.quiet_dicom`, so pydicom quotes no value anywhere.
"""
from __future__ import annotations

import functools
import io
import json
import logging
from collections.abc import Callable
from typing import Any

import pydicom
from highdicom.enum import PatientSexValues
from pydicom.charset import python_encoding
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag
from pydicom.valuerep import DA, TM, VALIDATORS, PersonName

from app.report import ReportError

log = logging.getLogger(__name__)

UTF8 = "ISO_IR 192"
TEXT_VRS = frozenset({"PN", "LO", "SH", "ST", "LT", "UT", "UC"})
#: Type 1 attributes the SR needs from the source (its references and its evidence).
REQUIRED = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "Modality",
            "Rows", "Columns")
#: Type 2 patient/study attributes highdicom reads; an anonymiser may have deleted them, and
#: DICOM lets them be present but empty, so they are added empty (to the evidence copy only).
TYPE2 = ("PatientID", "PatientName", "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID",
         "StudyDate", "StudyTime", "ReferringPhysicianName")
#: Equipment attributes highdicom would copy into the Contributing Equipment Sequence: they
#: name a site or a device, which this report has no need to repeat.
EQUIPMENT_IDS = ("InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName",
                 "StationName", "DeviceSerialNumber")
#: What highdicom's SR constructor accepts silently, per attribute it converts or checks.
CONSTRUCTOR_CHECKS: dict[str, Callable[[Any], Any]] = {
    "PatientName": lambda value: "^" in str(value),
    "PatientBirthDate": DA,
    "PatientSex": PatientSexValues,
    "StudyDate": DA,
    "StudyTime": TM,
}



def read_source(image_bytes: bytes) -> Dataset:
    """The upload as a dataset (no pixel data), or :class:`ReportError` naming what is missing."""
    try:
        # force: a DICOM without the 128-byte preamble is DICOM too (as for the prediction).
        ds = pydicom.dcmread(io.BytesIO(image_bytes), force=True, stop_before_pixels=True)
    except Exception as exc:  # noqa: BLE001 -- any parser failure means "not readable DICOM"
        log.info("DICOM header not read: %s", type(exc).__name__)
        raise ReportError("the upload cannot be read as DICOM (its header is damaged); upload the "
                          "original file, or ask for format=pdf") from None
    missing = [name for name in REQUIRED if not _present(ds, name)]
    if missing:
        raise ReportError("the upload lacks DICOM attributes a structured report must reference: "
                          f"{', '.join(missing)}; ask for format=pdf")
    return ds


def _present(ds: Dataset, keyword: str) -> bool:
    try:
        return bool(str(ds.get(keyword, "") or "").strip())
    except (TypeError, ValueError):  # a value that does not convert is no reference
        return False


@functools.lru_cache(maxsize=64)
def copied_keywords(sop_class_uid: str) -> frozenset[str]:
    """The Patient and Study module attributes highdicom copies into the SR from a source of this class."""
    # highdicom's own tables (version pinned in requirements.txt): exactly what it will copy.
    from highdicom._standard_utils import get_iod_module_map, get_module_attribute_map, get_sop_class_iod_map

    iod = get_sop_class_iod_map().get(sop_class_uid)
    if iod is None:
        raise ReportError("the upload's SOP Class is not a standard DICOM one, so a DICOM SR cannot "
                          "reference it; ask for format=pdf")
    attributes = get_module_attribute_map()
    return frozenset(str(item["keyword"]) for module in get_iod_module_map()[iod]
                     if module["ie"] in ("Patient", "Study")
                     for item in attributes[module["key"]] if not item["path"])


def evidence_copy(source: Dataset) -> tuple[Dataset, list[str]]:
    """The source without site/device identifiers, and the keywords of the attributes left empty.

    An attribute the SR copies whose value is not valid DICOM (or does not even convert) is
    left empty, as DICOM allows for its Type 2 patient/study attributes; absent Type 2 ones
    are added empty. Other unconvertible attributes are dropped (the SR does not use them).
    """
    copied = copied_keywords(str(source.SOPClassUID))
    ds, emptied = Dataset(), []
    for tag in source.keys():
        keyword = keyword_for_tag(tag)
        if keyword in EQUIPMENT_IDS:
            continue
        element = _converted(source, tag)
        if keyword in copied and (element is None or not valid(element)):
            ds.add(DataElement(tag, source.get_item(tag).VR or dictionary_VR(tag), None))
            emptied.append(keyword)
        elif element is not None:
            ds.add(element)
    for keyword in TYPE2:
        if keyword not in ds:
            setattr(ds, keyword, None)
    return ds, emptied


def _converted(source: Dataset, tag: BaseTag) -> DataElement | None:
    """The element, decoded with the source's character set; None if its value does not convert."""
    try:
        return source[tag]
    except Exception:  # noqa: BLE001 -- a value pydicom cannot convert, a damaged sequence...
        return None


def valid(element: DataElement) -> bool:
    """Whether each value is valid for the element's VR and was decoded without loss."""
    check = VALIDATORS.get(element.VR)
    if check is None or element.VR == "SQ":
        return True
    values = element.value if isinstance(element.value, MultiValue) else [element.value]
    if element.VR in ("DS", "IS"):  # numbers now: check the strings they were read from
        values = [getattr(v, "original_string", None) or v for v in values]
    texts = [str(v) for v in values if isinstance(v, (str, PersonName))]  # str(): decoded
    return all("\ufffd" not in text and check(element.VR, text)[0] for text in texts)


def highdicom_safe(evidence: Dataset) -> dict[BaseTag, DataElement]:
    """Empty the valid values highdicom's constructor refuses or warns about; returns them to put back.

    It converts dates and times itself, accepts only M/F/O as a sex, and warns, quoting the
    name, about a one-component name: all valid DICOM, copied as they are after construction.
    """
    kept = {}
    for keyword, accepted in CONSTRUCTOR_CHECKS.items():
        value = evidence.get(keyword)
        try:
            ok = value in (None, "") or accepted(value)
        except (TypeError, ValueError):
            ok = False
        if not ok:
            element = evidence[keyword]
            kept[element.tag] = element
            evidence[keyword] = DataElement(element.tag, element.VR, None)
    return kept


def character_set(result: dict[str, Any], source: Dataset) -> str | list[str] | None:
    """The source's Specific Character Set, or UTF-8 when it cannot encode what the SR holds.

    Model names and gate messages may use any character (e.g. "×"), and a source may hold
    text its declared set does not cover (a Latin-1 name in a file that declares none).
    The source's own set is kept when it can: dcmtk, for one, checks VRs only in the older
    sets. pydicom re-encodes the copied patient/study values, which it decoded with the
    source's set.
    """
    declared = source.get("SpecificCharacterSet")
    if json.dumps(result, ensure_ascii=False, default=str).isascii() and _encodes(source, declared):
        return declared
    return UTF8


def _encodes(source: Dataset, declared: str | list[str] | None) -> bool:
    """Whether ``declared`` (a single character set, or none: ASCII) encodes the copied text."""
    if isinstance(declared, (list, MultiValue)):
        return True  # code extensions (ISO 2022): trust the source's own choice
    encoding = "ascii" if declared in (None, "", "ISO_IR 6") else python_encoding.get(declared)
    if encoding is None:
        return False  # a set pydicom does not know: it could not write it either
    copied = copied_keywords(str(source.SOPClassUID))
    for element in source:
        if element.keyword in copied and element.VR in TEXT_VRS and element.value:
            values = element.value if isinstance(element.value, MultiValue) else [element.value]
            try:
                "\\".join(map(str, values)).encode(encoding)
            except UnicodeEncodeError:
                return False
    return True
