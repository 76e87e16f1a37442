"""Fuzz campaign, CI size, over ``POST /api/predict`` with the tiny models (issue 22, deliverable 2;
full size: benchmarks/bench_fuzz.py).

Mutants of real and generated JPEG, PNG and DICOM seeds (fixed seeds: the same cases every
run) through the Flask test client, heatmaps on, under ``MAX_PIXELS`` = 1 Mpx. Every answer must
be a 200 or a gate 422 with the JSON contract, or a 4xx with a JSON ``error`` + ``message``:
no 5xx, no request adding more than the budget's worth of memory, none slow.
"""
from __future__ import annotations

import pytest

from tests.conftest import SHARED_DATA
from tests.helpers import fuzz
from tests.helpers.fuzz import Outcome
from tests.helpers.fuzz_seeds import FORMATS, all_seeds

N_CASES = 300        # ~5-15 s on the 2-core VM
SLOW_S = 5.0         # a request takes ~0.1 s here with the tiny models
DEADLINE_S = 300.0
PATH = "/api/predict?heatmaps=1"


@pytest.fixture(scope="module")
def fuzz_app(bank, tmp_path_factory):
    from app import create_app

    return create_app({"MODEL_BANK": bank, "SECRET_KEY": "test", "TESTING": True,
                       "COMPARE_DIR": str(tmp_path_factory.mktemp("fuzz") / "no-compare"),
                       "MAX_PIXELS": fuzz.FUZZ_MAX_PIXELS})


@pytest.fixture(scope="module")
def report(fuzz_app):
    seeds = all_seeds(SHARED_DATA if SHARED_DATA.is_dir() else None)
    return fuzz.run_campaign(seeds, fuzz.api_target(fuzz_app, PATH), N_CASES, name="/api/predict",
                             campaign_seed=22, slow_s=SLOW_S, deadline_s=DEADLINE_S)


def test_target_classifies_answers(make_app, bank, monkeypatch):
    from tests.helpers.fuzz_seeds import image_seeds

    run, seed = fuzz.api_target(make_app(MAX_PIXELS=fuzz.FUZZ_MAX_PIXELS), PATH), image_seeds()[0]
    assert run(seed.data, seed.filename)[0] is Outcome.ACCEPTED
    assert run(b"not an image", "x.png")[0] is Outcome.REFUSED       # 422, JSON error
    assert run(seed.data, "x.gif")[0] is Outcome.REFUSED             # 415, JSON error

    def boom(*args, **kwargs):
        raise RuntimeError("an unexpected error")

    monkeypatch.setattr(bank, "predict", boom)
    outcome, detail = run(seed.data, seed.filename)
    assert outcome is Outcome.CRASH and "RuntimeError" in detail       # a 500, with its traceback


def test_every_case_ran_within_the_deadline(report):
    assert len(report.results) == report.planned, report.summary()


def test_campaign_is_not_vacuous(report):
    counts = report.counts()
    for fmt in FORMATS:
        assert counts[(fmt, Outcome.ACCEPTED)] > 0 and counts[(fmt, Outcome.REFUSED)] > 0, report.table()


def test_no_5xx_and_json_errors(report):
    """Every answer is the JSON contract or a JSON 4xx: no 500, no HTML, no traceback."""
    crashes = report.failures(Outcome.CRASH)
    assert not crashes, f"{len(crashes)} crash(es)\n{report.summary()}"


def test_pixel_budget_bounds_memory(report):
    over = report.failures(Outcome.MEMORY)
    assert not over, f"{len(over)} request(s) over {report.bound / 2**20:.0f} MiB\n{report.summary()}"


def test_no_slow_request(report):
    slow = report.failures(Outcome.SLOW)
    assert not slow, f"{len(slow)} request(s) over {SLOW_S} s\n{report.summary()}"
