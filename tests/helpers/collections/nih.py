"""A small NIH ChestX-ray14 in its published layout: ``Data_Entry_2017.csv`` (the 2017 header,
whose bracketed column names hold commas, and a trailing comma), PNGs flat in ``images/`` or
in ``images_001/images/`` ..., and the official ``train_val_list.txt`` / ``test_list.txt``."""
from __future__ import annotations

from pathlib import Path

from tests.helpers.images import write_xray

HEADER = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,"
          "View Position,OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],")
#: Finding Labels cycled over the images: ``No Finding``, several findings, NIH's spellings
FINDINGS = ("No Finding", "Effusion|Atelectasis", "Nodule", "Pneumonia|Infiltration",
            "Cardiomegaly|Pleural_Thickening", "No Finding", "Mass|Edema", "Hernia")


def image_name(patient: int, follow_up: int) -> str:
    return f"{patient:08d}_{follow_up:03d}.png"


def make_nih(root: str | Path, patients: int = 6, per_patient: int = 2, folders: int = 0,
             old_ages: bool = True, official: bool = True, size: int = 64,
             missing: int = 0) -> Path:
    """Write the collection at ``root``. ``folders`` > 0: the ``images_NNN/images/`` layout
    (round robin), else flat ``images/``. ``old_ages``: ``058Y`` (2017 file), else ``58``.
    ``official``: the last third of the patients is in ``test_list.txt``. The last ``missing``
    rows have no image file."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    lines, train_val, test = [HEADER], [], []
    n = patients * per_patient
    for i in range(n):
        patient, follow_up = i // per_patient + 1, i % per_patient
        name = image_name(patient, follow_up)
        age = 20 + 7 * patient
        view = "AP" if i % 3 == 2 else "PA"
        sex = "F" if patient % 2 else "M"
        lines.append(f"{name},{FINDINGS[i % len(FINDINGS)]},{follow_up},{patient},"
                     f"{f'{age:03d}Y' if old_ages else age},{sex},{view},2500,2048,0.143,0.143,")
        (test if patient > patients - patients // 3 else train_val).append(name)
        folder = root / (f"images_{i % folders + 1:03d}/images" if folders else "images")
        if i < n - missing:
            write_xray(folder / name, h=size, w=size, seed=i)
    (root / "Data_Entry_2017.csv").write_text("\n".join(lines) + "\n")
    if official:
        (root / "train_val_list.txt").write_text("\n".join(train_val) + "\n")
        (root / "test_list.txt").write_text("\n".join(test) + "\n")
    return root
