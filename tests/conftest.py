"""Shared pytest fixtures: paths to the real data (skipped cleanly when absent)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CXRLAB_SHARED_DATA", ROOT.parent / "shared" / "data"))
IEEE8023 = SHARED_DATA / "ieee8023-covid-chestxray"
KERMANY = SHARED_DATA / "kermany-pneumonia"


@pytest.fixture(scope="session")
def ieee8023_dir() -> Path:
    """The real ieee8023 COVID-19 collection, or skip."""
    if not (IEEE8023 / "metadata.csv").exists():
        pytest.skip(f"real data not present at {IEEE8023}")
    return IEEE8023


@pytest.fixture(scope="session")
def kermany_dir() -> Path:
    """The real Kermany pneumonia set, or skip."""
    if not (KERMANY / "train").is_dir():
        pytest.skip(f"real data not present at {KERMANY}")
    return KERMANY
