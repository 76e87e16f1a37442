"""The shared pathology vocabulary and its synonyms."""
from __future__ import annotations

import pytest

from training.data.dataset import PATHOLOGIES
from training.data.pathologies import SYNONYMS, VOCABULARY, canonical, ordered, select
from training.errors import DataError


def test_the_seed_labels_come_first_and_every_name_is_unique():
    assert VOCABULARY[:len(PATHOLOGIES)] == PATHOLOGIES
    assert len(set(VOCABULARY)) == len(VOCABULARY)


def test_every_synonym_points_into_the_vocabulary():
    assert set(SYNONYMS.values()) <= set(VOCABULARY)


@pytest.mark.parametrize("spelling, name", [
    ("Pleural_Thickening", "Pleural Thickening"), ("Pleural Effusion", "Effusion"),
    ("Effusion", "Effusion"), ("no finding", "No Finding"), ("NORMAL", "No Finding"),
    ("COVID 19", "COVID-19"), ("  hiatal   hernia ", "Hernia"), ("Infiltrate", "Infiltration"),
    ("Support Devices", "Support Devices"), ("Enlarged_Cardiomediastinum", "Enlarged Cardiomediastinum")])
def test_collection_spellings_map_to_one_name(spelling, name):
    assert canonical(spelling) == name


def test_unknown_spellings_have_no_name():
    assert canonical("callus rib fracture of the left arm") is None


def test_ordered_and_select():
    assert ordered(["Nodule", "COVID-19", "Atelectasis"]) == ["COVID-19", "Atelectasis", "Nodule"]
    with pytest.raises(ValueError, match="not in the vocabulary"):
        ordered(["Effusions"])
    assert select(["pleural effusion", "Effusion", "COVID 19"]) == ["Effusion", "COVID-19"]
    with pytest.raises(DataError, match="unknown pathology"):
        select(["Effusions"])
