"""A small PadChest in its published layout: the 160K labels CSV (an unnamed index column, then
BIMCV's column names) and 16-bit PNGs under ``<ImageDir>/<ImageID>`` (or flat)."""
from __future__ import annotations

import csv
import gzip
import io
from pathlib import Path

from tests.helpers.images import write_xray

CSV_NAME = "PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv"
COLUMNS = ("", "ImageID", "ImageDir", "StudyDate_DICOM", "StudyID", "PatientID", "PatientBirth",
           "PatientSex_DICOM", "ViewPosition_DICOM", "Projection", "MethodProjection", "Labels",
           "Localizations", "LabelsLocalizationsBySentence", "labelCUIS", "LocalizationsCUIS")

#: (image id stem, patient, projection, sex, birth year, study date, Labels as written)
ROWS: tuple[tuple[str, str, str, str, str, str, str], ...] = (
    ("a", "p1", "PA", "M", "1950.0", "20140915", "['pneumonia', ' pleural effusion']"),
    ("b", "p1", "L", "M", "1950.0", "20140915", "['pneumonia', ' pleural effusion']"),
    ("c", "p2", "PA", "F", "1980.0", "20120103", "['normal']"),
    ("d", "p3", "AP_horizontal", "F", "", "20160510", "['cardiomegaly', 'NSG tube', "
                                                      "'chronic changes']"),
    ("e", "p4", "AP", "O", "1931.0", "20100228", "[]"),
    ("f", "p5", "PA", "M", "1962.0", "20150101", "nan"),
    ("g", "p6", "COSTAL", "F", "1970.0", "20131111", "['rib fracture']"),
    ("h", "p7", "PA", "M", "1940.0", "20111212", "['exclude']"),
)


def image_id(stem: str) -> str:
    """PadChest's image file name for a fixture row (a long numeric id, as published)."""
    return f"2163284871{ord(stem):03d}1203_{stem}00-158-437.png"


def padchest(root: str | Path, rows=ROWS, flat: bool = False, gz: bool = False,
             missing: str = "") -> Path:
    """Write the collection in ``root``: ``missing`` names image stems not written."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for n, (stem, patient, projection, sex, birth, date, labels) in enumerate(rows):
        folder = str(n % 2)
        view = {"L": "LATERAL", "AP_horizontal": "AP"}.get(projection, "POSTEROANTERIOR")
        writer.writerow([n, image_id(stem), folder, date, f"s{patient}", patient, birth, sex,
                         view, projection, "Manual review of DICOM fields", labels,
                         "['loc right']", "[['pneumonia', 'loc right']]", "['C0032285']", "[]"])
        if stem not in missing:
            where = root if flat else root / folder
            write_xray(where / image_id(stem), mode="I;16", seed=n)
    text = buffer.getvalue().encode("utf-8")
    if gz:
        (root / f"{CSV_NAME}.gz").write_bytes(gzip.compress(text))
    else:
        (root / CSV_NAME).write_bytes(text)
    return root
