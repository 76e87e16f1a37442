"""A tiny ieee8023-style folder (metadata.csv, images/, severity scores) for the clinical tests."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.images import write_image

COLUMNS = ["patientid", "offset", "sex", "age", "finding", "survival", "intubated",
           "intubation_present", "went_icu", "in_icu", "needed_supplemental_O2", "temperature",
           "pO2_saturation", "view", "modality", "folder", "filename"]


def make_ieee8023(root: Path, n_patients: int = 24, seed: int = 0) -> Path:
    """``n_patients`` patients with two images each; half COVID-19, outcomes alternating.

    Image 1 of a patient is early (offset 2 or 3), image 2 late (offset 12). Patient 0 is
    intubated at its early image; patient 1's outcomes are all unknown.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_patients):
        covid = p % 2 == 0
        died = p % 3 == 0
        for k, offset in enumerate((2 + p % 2, 12)):
            name = f"p{p}_{k}.png"
            write_image(root / "images" / name, seed=p * 10 + k)
            yes_no = (lambda v: "") if p == 1 else (lambda v: "Y" if v else "N")
            rows.append({
                "patientid": str(p), "offset": offset, "sex": "MF"[p % 2] if p % 5 else "",
                "age": "" if p % 4 == 0 else 30 + p, "finding": "COVID-19" if covid else "Streptococcus",
                "survival": yes_no(not died), "intubated": yes_no(p % 4 in (0, 1)),
                "intubation_present": "Y" if p == 0 and k == 0 else ("" if p == 1 else "N"),
                "went_icu": yes_no(p % 2 == 0), "in_icu": "" if p == 1 else "N",
                "needed_supplemental_O2": yes_no(p % 3 != 1),
                "temperature": round(37 + rng.random() * 2, 1) if p % 3 else "",
                "pO2_saturation": "" if p % 2 else 90 + p % 7,
                "view": "PA" if p % 2 else "AP", "modality": "X-ray", "folder": "images",
                "filename": name})
    with open(root / "metadata.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, COLUMNS)
        w.writeheader()
        w.writerows(rows)
    scores = root / "annotations" / "covid-severity-scores.csv"
    scores.parent.mkdir(parents=True, exist_ok=True)
    lines = ["## Severity scores (test copy),,", "## geographic_extent_mean: 0 to 8,,",
             "filename,geographic_mean,opacity_mean"]
    lines += [f"p{p}_0.png,{(p % 9) * 0.8:.2f},{(p % 7) * 0.7:.2f}" for p in range(n_patients)]
    lines.append("absent.png,1.0,1.0")  # scored but not in the data: reported as unmatched
    scores.write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="session")
def tiny_ieee(tmp_path_factory) -> Path:
    return make_ieee8023(tmp_path_factory.mktemp("ieee8023"))
