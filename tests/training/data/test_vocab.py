"""Finding strings → pathology labels (old flat and hierarchical ieee8023 styles)."""
import math
import warnings

import numpy as np
import pytest

from training.data.dataset import PATHOLOGIES
from training.data.vocab import (TERMS, apply_hierarchy, finding_to_labels,
                                 findings_to_labels, known_findings)

N = math.nan


def as_dict(finding, exhaustive=True):
    labels, known = finding_to_labels(finding, exhaustive)
    return dict(zip(PATHOLOGIES, labels.tolist())), known


def check(got: dict, expected: dict) -> None:
    for name in PATHOLOGIES:
        want = expected.get(name, N)
        if math.isnan(want):
            assert math.isnan(got[name]), (name, got)
        else:
            assert got[name] == want, (name, got)


COVID = {"No Finding": 0, "Pneumonia": 1, "Bacterial Pneumonia": 0, "Viral Pneumonia": 1,
         "Fungal Pneumonia": 0, "COVID-19": 1, "SARS": 0, "ARDS": 0}
STREP = {**COVID, "Bacterial Pneumonia": 1, "Viral Pneumonia": 0, "COVID-19": 0}
FLU = {**COVID, "COVID-19": 0}
PCP = {**STREP, "Bacterial Pneumonia": 0, "Fungal Pneumonia": 1}


@pytest.mark.parametrize("finding, expected", [
    # old flat style
    ("COVID-19", COVID),
    ("COVID-19, ARDS", {**COVID, "ARDS": 1}),
    ("SARS", {**COVID, "COVID-19": 0, "SARS": 1}),
    ("Streptococcus", STREP),
    ("Klebsiella", STREP), ("E.Coli", STREP), ("Legionella", STREP),
    ("Chlamydophila", STREP), ("Mycoplasma Bacterial Pneumonia", STREP), ("Bacterial", STREP),
    ("Pneumocystis", PCP),
    ("Influenza", FLU), ("Varicella", FLU), ("MERS", FLU),
    ("Pneumonia", {"No Finding": 0, "Pneumonia": 1, "ARDS": 0}),
    ("Lipoid", {**STREP, "Bacterial Pneumonia": 0}),
    ("Aspiration", {**FLU, "Viral Pneumonia": 0, "Bacterial Pneumonia": N}),
    ("ARDS", {"No Finding": 0, "ARDS": 1}),
    ("No Finding", {"No Finding": 1, **{p: 0 for p in PATHOLOGIES[1:]}}),
    # current hierarchical style
    ("Pneumonia/Viral/COVID-19", COVID),
    ("Pneumonia/Viral/COVID-19, ARDS", {**COVID, "ARDS": 1}),
    ("Pneumonia/Viral/SARS", {**COVID, "COVID-19": 0, "SARS": 1}),
    ("Pneumonia/Viral/Influenza/H1N1", FLU),
    ("Pneumonia/Viral/Herpes ", FLU),
    ("Pneumonia/Viral/MERS-CoV", FLU),
    ("Pneumonia/Viral", {"No Finding": 0, "Pneumonia": 1, "Viral Pneumonia": 1,
                         "Bacterial Pneumonia": 0, "Fungal Pneumonia": 0, "ARDS": 0}),
    ("Pneumonia/Bacterial/Streptococcus", STREP),
    ("Pneumonia/Bacterial/Staphylococcus/MRSA", STREP),
    ("Pneumonia/Bacterial/Mycoplasma", STREP),
    ("Pneumonia/Fungal/Pneumocystis", PCP),
    ("Pneumonia/Fungal/Aspergillosis", PCP),
    ("Pneumonia/Lipoid", {**STREP, "Bacterial Pneumonia": 0}),
    ("Tuberculosis", {"No Finding": 0, "Viral Pneumonia": 0, "Fungal Pneumonia": 0,
                      "COVID-19": 0, "SARS": 0, "ARDS": 0}),
    # co-infection: both types positive, the rest decided
    ("Pneumonia/Viral/COVID-19, Pneumonia/Bacterial/Streptococcus",
     {**COVID, "Bacterial Pneumonia": 1}),
    ("covid-19 | ards", {**COVID, "ARDS": 1}),
])
def test_known_findings(finding, expected):
    got, known = as_dict(finding)
    assert known
    check(got, expected)


@pytest.mark.parametrize("finding", ["todo", "", None, float("nan"), "Unknown", "  todo "])
def test_unlabelled_is_all_nan_and_known(finding):
    labels, known = finding_to_labels(finding)
    assert known and np.isnan(labels).all()


@pytest.mark.parametrize("finding", ["Adenovirus", "Pneumonia/Viral/Adenovirus", "COVID-19, Foo",
                                     "No Finding, COVID-19"])
def test_unknown_or_contradictory_is_all_nan_and_not_known(finding):
    labels, known = finding_to_labels(finding)
    assert not known and np.isnan(labels).all()


def test_not_exhaustive_leaves_ards_unknown():
    got, _ = as_dict("COVID-19", exhaustive=False)
    assert math.isnan(got["ARDS"]) and got["COVID-19"] == 1 and got["No Finding"] == 0
    got, _ = as_dict("No Finding", exhaustive=False)
    assert got["ARDS"] == 0  # normal means no disease at all


def test_findings_to_labels_warns_once_with_counts():
    with pytest.warns(UserWarning, match=r"3 row\(s\).*'Foo': 2.*'Bar': 1") as record:
        labels, unknown = findings_to_labels(["COVID-19", "Foo", "Foo", "Bar", "todo"], source="x")
    assert len(record) == 1
    assert unknown == {"Foo": 2, "Bar": 1}
    assert labels.shape == (5, len(PATHOLOGIES)) and labels.dtype == np.float32
    assert np.isnan(labels[1:]).all() and labels[0, PATHOLOGIES.index("COVID-19")] == 1


def test_findings_to_labels_no_warning_when_all_known():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        labels, unknown = findings_to_labels(["COVID-19", "todo"])
    assert unknown == {} and labels.shape == (2, len(PATHOLOGIES))


def test_every_term_is_consistent():
    """No term both sets and clears a column; every column it names is in the vocabulary."""
    for term, (ones, zeros) in TERMS.items():
        assert not ones & zeros, term
        assert (ones | zeros) <= set(PATHOLOGIES), term
    assert "covid-19" in known_findings()


def test_every_pathology_name_is_understood():
    for name in PATHOLOGIES:
        labels, known = finding_to_labels(name)
        assert known and labels[PATHOLOGIES.index(name)] == 1


def test_apply_hierarchy_fills_and_flags():
    col = {p: i for i, p in enumerate(PATHOLOGIES)}
    rows = np.full((3, len(PATHOLOGIES)), np.nan, dtype=np.float32)
    rows[0, col["COVID-19"]] = 1
    rows[1, col["No Finding"]] = 1
    rows[2, col["COVID-19"]] = 1
    rows[2, col["Viral Pneumonia"]] = 0  # contradiction
    out, conflict = apply_hierarchy(rows)
    assert out[0, col["Viral Pneumonia"]] == 1 and out[0, col["Pneumonia"]] == 1
    assert out[0, col["No Finding"]] == 0 and np.isnan(out[0, col["SARS"]])
    assert (out[1, 1:] == 0).all()
    assert conflict.tolist() == [False, False, True]
