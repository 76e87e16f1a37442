"""A small COVIDx CXR in its published (v9+) layout: ``train.txt``/``val.txt``/``test.txt``,
space-separated ``patient_id filename class source`` without a header, images in
``train/``, ``val/``, ``test/``; classes ``positive``/``negative`` (v9 binary) or
``COVID-19``/``pneumonia``/``normal`` (the older three classes)."""
from __future__ import annotations

from pathlib import Path

from tests.helpers.images import write_xray

#: (patient_id, filename, source) per image, named as COVIDx names them.
IMAGES = (
    ("419639-003251", "MIDRC-RICORD-1C-419639-003251-46647-0.png", "ricord"),
    ("3", "SARS-10.1148rg.242035193-g04mr34g0-Fig8a-day0.jpeg", "cohen"),
    ("00313ee0-9eaa-42f4-b0ab-c148ed3241cd", "00313ee0-9eaa-42f4-b0ab-c148ed3241cd.png", "rsna"),
    ("sub-S03068", "sub-S03068_ses-E06592_run-1_bp-chest_vp-ap_dx.png", "bimcv"),
    ("COVID-00003b", "COVID-00003b.jpg", "fig1"),
    ("7", "covid-19-pneumonia-7-PA.jpg", "sirm"),
)
BINARY = ("positive", "negative")
THREE_CLASS = ("COVID-19", "pneumonia", "normal")


def covidx_lines(classes: tuple[str, ...] = BINARY) -> dict[str, list[str]]:
    """The list files' lines per part: images cycle over the parts and ``classes``."""
    parts: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for i, (patient, filename, source) in enumerate(IMAGES):
        part = ("train", "train", "val", "test")[i % 4]
        parts[part].append(f"{patient} {filename} {classes[i % len(classes)]} {source}")
    return parts


def make_covidx(root: str | Path, classes: tuple[str, ...] = BINARY,
                lines: dict[str, list[str]] | None = None, size: int = 64) -> Path:
    """Write the list files (``lines``, default :func:`covidx_lines`) and every image they name."""
    root = Path(root)
    lines = covidx_lines(classes) if lines is None else lines
    for k, (part, rows) in enumerate(lines.items()):
        root.mkdir(parents=True, exist_ok=True)
        (root / f"{part}.txt").write_text("".join(f"{r}\n" for r in rows))
        for j, row in enumerate(rows):
            filename = " ".join(row.split()[1:-2])
            write_xray(root / part / filename, h=size, w=size, seed=10 * k + j)
    return root
