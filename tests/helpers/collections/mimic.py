"""A small MIMIC-CXR-JPG 2.0.0 in its published layout: the metadata, chexpert, negbio and split
CSVs (optionally gzipped, as PhysioNet ships them) and JPEGs under
``files/p<2 digits>/p<subject_id>/s<study_id>/<dicom_id>.jpg``, laterals included."""
from __future__ import annotations

import gzip
from pathlib import Path

from tests.helpers.images import write_xray

PREFIX = "mimic-cxr-2.0.0-"
METADATA = ("dicom_id,subject_id,study_id,PerformedProcedureStepDescription,ViewPosition,Rows,"
            "Columns,StudyDate,StudyTime,ProcedureCodeSequence_CodeMeaning,"
            "ViewCodeSequence_CodeMeaning,PatientOrientationCodeSequence_CodeMeaning")
LABELS = ("subject_id,study_id,Atelectasis,Cardiomegaly,Consolidation,Edema,"
          "Enlarged Cardiomediastinum,Fracture,Lung Lesion,Lung Opacity,No Finding,"
          "Pleural Effusion,Pleural Other,Pneumonia,Pneumothorax,Support Devices")

#: (dicom_id, subject_id, study_id, ViewPosition, official split)
IMAGES = (
    ("02aa804e-bde0afdd-112c0b34-7bc16630-4e384014", "10000032", "50414267", "PA", "train"),
    ("174413ec-4ec4c1f7-34ea26b7-c5f994f8-79ef1962", "10000032", "50414267", "LATERAL", "train"),
    ("2a2277a9-b0ded155-c0de8eb9-c124d10e-82c5caab", "10000764", "57375967", "AP", "validate"),
    ("68b5c4b1-227d0485-9cc38c3f-7b84ab51-4b472714", "10000898", "50771383", "PA", "test"),
    ("fffabebf-74fd3a1f-673b6b41-96ec0ac9-2ab69818", "10000898", "50771383", "LL", "test"),
    ("ea030e7a-2e3b1346-bc518786-7a8fd698-f673b44c", "11000011", "51029426", "AP", "train"),
    ("096052b7-d256dc40-453a102b-fa7d01c6-1b22c6b4", "19999987", "58971208", "", "train"),
)
#: study_id → the 14 label values in LABELS order (blank = not mentioned); 51029426 has none
CHEXPERT = {
    "50414267": ",,,,,,,,1.0,,,,,",
    "57375967": ",,1.0,0.0,,,,,,,,-1.0,,",
    "50771383": "1.0,,,,,,,,,-1.0,,,,1.0",
    "58971208": ",,,,,,,1.0,,,,,,",
}
NEGBIO = {**CHEXPERT, "57375967": ",,1.0,0.0,,,,,,,,1.0,,"}


def image_path(root: Path, dicom: str, subject: str, study: str) -> Path:
    return root / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{study}" / f"{dicom}.jpg"


def _write(root: Path, kind: str, lines: list[str], gz: bool) -> None:
    text = ("\n".join(lines) + "\n").encode("utf-8")
    name = f"{PREFIX}{kind}.csv"
    if gz:
        (root / f"{name}.gz").write_bytes(gzip.compress(text))
    else:
        (root / name).write_bytes(text)


def mimic(root: str | Path, images=IMAGES, gz: bool = True, split: bool = True,
          missing: str = "") -> Path:
    """Write the collection in ``root``; ``missing``: dicom ids whose JPEG is not written."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    metadata, splits = [METADATA], ["dicom_id,study_id,subject_id,split"]
    for n, (dicom, subject, study, view, part) in enumerate(images):
        described = "CHEST (PA AND LAT)" if view in ("PA", "LATERAL", "LL") else "CHEST (PORTABLE AP)"
        metadata.append(f"{dicom},{subject},{study},{described},{view},3056,2544,21800506,"
                        f"213014.531,{described},postero-anterior,Erect")
        splits.append(f"{dicom},{study},{subject},{part}")
        if dicom not in missing:
            write_xray(image_path(root, dicom, subject, study), seed=n)
    subjects = {study: subject for _, subject, study, _, _ in images}
    for kind, table in (("chexpert", CHEXPERT), ("negbio", NEGBIO)):
        rows = [f"{subjects[s]},{s},{v}" for s, v in table.items() if s in subjects]
        _write(root, kind, [LABELS, *rows], gz)
    _write(root, "metadata", metadata, gz)
    if split:
        _write(root, "split", splits, gz)
    return root
