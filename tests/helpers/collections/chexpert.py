"""A small CheXpert in its published layout: ``CheXpert-v1.0-small/{train,valid}.csv`` whose
``Path`` starts with the collection's folder name, JPEGs under
``train/patientNNNNN/studyK/viewJ_frontal.jpg``, labels 1.0 / 0.0 / -1.0 / blank (train) and
0.0 / 1.0 only (valid, radiologist-labelled)."""
from __future__ import annotations

import csv
from pathlib import Path

from tests.helpers.images import write_xray

FOLDER = "CheXpert-v1.0-small"
FINDINGS = ("No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity",
            "Lung Lesion", "Edema", "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax",
            "Pleural Effusion", "Pleural Other", "Fracture", "Support Devices")
COLUMNS = ("Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", *FINDINGS)
#: train.csv label cells cycled per image: blank = not mentioned, -1.0 = uncertain
TRAIN_CELLS = ("1.0", "", "-1.0", "0.0")


def _row(split: str, patient: int, study: int, view: int, lateral: bool, cells: list[str],
         seed: int) -> dict[str, str]:
    kind = "lateral" if lateral else "frontal"
    path = f"{FOLDER}/{split}/patient{patient:05d}/study{study}/view{view}_{kind}.jpg"
    return {"Path": path, "Sex": "Female" if patient % 2 else "Male", "Age": str(30 + seed),
            "Frontal/Lateral": "Lateral" if lateral else "Frontal",
            "AP/PA": "" if lateral else ("AP" if seed % 2 else "PA"),
            **dict(zip(FINDINGS, cells))}


def make_chexpert(parent: str | Path, patients: int = 6, valid_patients: int = 2,
                  size: int = 64) -> Path:
    """Write ``parent/CheXpert-v1.0-small`` and return it. Each training patient has a frontal
    and a lateral view in study1; each validation patient one frontal view."""
    root = Path(parent) / FOLDER
    rows: dict[str, list[dict[str, str]]] = {"train": [], "valid": []}
    seed = 0
    for p in range(1, patients + 1):
        for view, lateral in ((1, False), (2, True)):
            cells = [TRAIN_CELLS[(seed + k) % len(TRAIN_CELLS)] for k in range(len(FINDINGS))]
            rows["train"].append(_row("train", p, 1, view, lateral, cells, seed))
            seed += 1
    for p in range(64541, 64541 + valid_patients):  # CheXpert's valid patients
        cells = ["1.0" if (seed + k) % 3 == 0 else "0.0" for k in range(len(FINDINGS))]
        rows["valid"].append(_row("valid", p, 1, 1, False, cells, seed))
        seed += 1
    for split, entries in rows.items():
        root.mkdir(parents=True, exist_ok=True)
        with open(root / f"{split}.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, COLUMNS)
            writer.writeheader()
            writer.writerows(entries)
        for i, entry in enumerate(entries):
            write_xray(Path(parent) / entry["Path"], h=size, w=size, seed=i)
    return root
