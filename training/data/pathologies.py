"""The one pathology vocabulary across collections, and each collection's spellings of it.

:data:`VOCABULARY` is the canonical output order: the seed's eight labels first
(:data:`training.data.dataset.PATHOLOGIES`, whose finding strings ``vocab.py`` maps),
then the findings of NIH ChestX-ray14, CheXpert, MIMIC-CXR, PadChest, RSNA and COVIDx
(after torchxrayvision's relabelling; Cohen et al., MIDL 2020). :data:`SYNONYMS` maps
every spelling a collection uses (case and ``_``/space insensitive) onto one of them.

A collection labels only what it annotates: its loader sets the columns it annotates
(1/0, or NaN where its own file says unknown) and leaves every other vocabulary column out,
so :func:`training.data.formats.combine` makes them NaN for its images, never 0.
"""
from __future__ import annotations

from typing import Iterable

from training.data.dataset import PATHOLOGIES
from training.errors import DataError

VOCABULARY: tuple[str, ...] = PATHOLOGIES + (
    "Atelectasis",
    "Cardiomegaly",
    "Consolidation",
    "Edema",
    "Effusion",
    "Emphysema",
    "Enlarged Cardiomediastinum",
    "Fibrosis",
    "Fracture",
    "Hernia",
    "Infiltration",
    "Lung Lesion",
    "Lung Opacity",
    "Mass",
    "Nodule",
    "Pleural Other",
    "Pleural Thickening",
    "Pneumothorax",
    "Support Devices",
    "Tuberculosis",
)

#: Spelling (normalised by :func:`_norm`) → canonical name; every canonical name maps to itself.
SYNONYMS: dict[str, str] = {
    "normal": "No Finding",
    "no finding": "No Finding",
    "pleural effusion": "Effusion",
    "effusion": "Effusion",
    "pleural thickening": "Pleural Thickening",
    "apical pleural thickening": "Pleural Thickening",
    "infiltrate": "Infiltration",
    "infiltrates": "Infiltration",
    "interstitial pattern": "Infiltration",
    "alveolar pattern": "Consolidation",
    "covid": "COVID-19",
    "covid 19": "COVID-19",
    "covid19": "COVID-19",
    "covid-19 pneumonia": "COVID-19",
    "hiatal hernia": "Hernia",
    "pulmonary fibrosis": "Fibrosis",
    "heart insufficiency": "Cardiomegaly",
    "pulmonary edema": "Edema",
    "pulmonary mass": "Mass",
    "lung mass": "Mass",
    "multiple nodules": "Nodule",
    "nodule": "Nodule",
    "lung opacity": "Lung Opacity",
    "opacity": "Lung Opacity",
    "rib fracture": "Fracture",
    "clavicle fracture": "Fracture",
    "vertebral fracture": "Fracture",
    "tuberculosis": "Tuberculosis",
    "tuberculosis sequelae": "Tuberculosis",
    "pneumonia": "Pneumonia",
    "bacterial pneumonia": "Bacterial Pneumonia",
    "viral pneumonia": "Viral Pneumonia",
    # PadChest's terms (its Labels lists; after torchxrayvision's mapping)
    "atypical pneumonia": "Pneumonia",
    "laminar atelectasis": "Atelectasis",
    "lobar atelectasis": "Atelectasis",
    "segmental atelectasis": "Atelectasis",
    "round atelectasis": "Atelectasis",
    "total atelectasis": "Atelectasis",
    "air bronchogram": "Consolidation",
    "ground glass pattern": "Infiltration",
    "reticular interstitial pattern": "Infiltration",
    "reticulonodular interstitial pattern": "Infiltration",
    "loculated pleural effusion": "Effusion",
    "calcified pleural thickening": "Pleural Thickening",
    "humeral fracture": "Fracture",
    "callus rib fracture": "Fracture",
    "mediastinal enlargement": "Enlarged Cardiomediastinum",
    "pacemaker": "Support Devices",
    "dual chamber device": "Support Devices",
    "single chamber device": "Support Devices",
    "endotracheal tube": "Support Devices",
    "nsg tube": "Support Devices",
    "chest drain tube": "Support Devices",
    "tracheostomy tube": "Support Devices",
    "central venous catheter": "Support Devices",
    "central venous catheter via jugular vein": "Support Devices",
    "central venous catheter via subclavian vein": "Support Devices",
    "reservoir central venous catheter": "Support Devices",
    "picc": "Support Devices",
}


def _norm(name: str) -> str:
    return " ".join(str(name).replace("_", " ").strip().lower().split())


_INDEX: dict[str, str] = {**{_norm(v): v for v in VOCABULARY}, **SYNONYMS}


def canonical(name: str) -> str | None:
    """The vocabulary name of a collection's spelling, or None when it has none."""
    return _INDEX.get(_norm(name))


def ordered(names: Iterable[str]) -> list[str]:
    """``names`` (canonical) in vocabulary order, each once."""
    wanted = set(names)
    unknown = sorted(wanted - set(VOCABULARY))
    if unknown:
        raise ValueError(f"not in the vocabulary: {unknown}")
    return [v for v in VOCABULARY if v in wanted]


def select(names: Iterable[str]) -> list[str]:
    """``--pathologies`` as canonical names (any known spelling), in the order given.

    An unknown name is a DataError listing the vocabulary.
    """
    out: list[str] = []
    for name in names:
        found = canonical(name)
        if found is None:
            raise DataError(f"unknown pathology {name!r}",
                            hint=f"use names of the vocabulary: {', '.join(VOCABULARY)}")
        if found not in out:
            out.append(found)
    return out
