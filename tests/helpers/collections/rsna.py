"""A small RSNA Pneumonia Detection Challenge (stage 2) in its published layout.

``stage_2_train_labels.csv`` (one row per box; blank box for an image without one),
``stage_2_detailed_class_info.csv`` (one row per labels row: an image with two boxes is
listed twice, as in the download) and ``stage_2_train_images/<patientId>.dcm`` whose header
has the challenge's tags (ViewPosition, PatientSex, PatientAge as a bare number of years,
Modality CR; PatientID = the patientId).
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path

from tests.helpers.images import write_xray_dicom

CLASSES = ("Lung Opacity", "Normal", "No Lung Opacity / Not Normal")


@dataclass
class RsnaImage:
    """One image of the fixture: its id, class, boxes and header tags."""

    patient_id: str
    cls: str
    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)
    view: str = "PA"
    sex: str = "F"
    age: str = "51"


def rsna_images(n: int = 6, seed: int = 0) -> list[RsnaImage]:
    """``n`` images cycling the three classes (opacities with one or two boxes), PA and AP,
    one implausible age (RSNA has a few of 148-155) when ``n`` > 4."""
    out = []
    for i in range(n):
        pid = str(uuid.UUID(int=(seed << 64) + i + 1, version=4))
        cls = CLASSES[i % 3]
        boxes = [(264.0 + i, 152.0, 213.0, 379.0)] if cls == "Lung Opacity" else []
        if cls == "Lung Opacity" and i % 2 == 0:
            boxes.append((562.0, 152.0, 256.0, 453.0))
        age = "148" if i == 4 else str(20 + 7 * i)
        out.append(RsnaImage(pid, cls, boxes, ("PA", "AP")[i % 2], "MF"[i % 2], age))
    return out


def make_rsna(root: str | Path, images: list[RsnaImage] | None = None, size: int = 64,
              write_images: bool = True) -> Path:
    """Write the collection of ``images`` (default :func:`rsna_images`) under ``root``."""
    root = Path(root)
    images = rsna_images() if images is None else images
    labels = ["patientId,x,y,width,height,Target"]
    classes = ["patientId,class"]
    for k, image in enumerate(images):
        for box in image.boxes or [None]:
            labels.append(f"{image.patient_id}," + (",,,,0" if box is None else
                                                    ",".join(map(str, box)) + ",1"))
            classes.append(f"{image.patient_id},{image.cls}")
        if write_images:
            _write_dicom(root / "stage_2_train_images" / f"{image.patient_id}.dcm",
                             h=size, w=size, seed=k, PatientID=image.patient_id,
                             ViewPosition=image.view, PatientSex=image.sex,
                             PatientAge=image.age, Modality="CR", BodyPartExamined="CHEST")
    root.mkdir(parents=True, exist_ok=True)
    (root / "stage_2_train_labels.csv").write_text("\n".join(labels) + "\n")
    (root / "stage_2_detailed_class_info.csv").write_text("\n".join(classes) + "\n")
    return root


def _write_dicom(path: Path, **kwargs) -> None:
    """:func:`write_xray_dicom` without pydicom's complaint about RSNA's bare ages ("51", not
    the standard "051Y"): the challenge's files are written that way."""
    from pydicom.config import disable_value_validation  # DICOM fixtures only

    with disable_value_validation():
        write_xray_dicom(path, **kwargs)
