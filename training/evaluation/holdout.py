"""Leave one group out: the folds of an external-test protocol, for any grouping.

A group is whatever must never be split between training and test: a collection
(``cross_collection``: the ``source`` of each ``--data``), a hospital or a site. Each fold
trains on every other group and tests on all of the one left out.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from training.errors import DataError


@dataclass(frozen=True)
class Fold:
    """One fold: ``held_out`` is the group tested on; masks over the items given."""

    held_out: str
    train: np.ndarray  # bool: items of every other group
    test: np.ndarray  # bool: items of the held-out group

    def train_groups(self, groups: Sequence[str]) -> list[str]:
        """The groups trained on, sorted."""
        return sorted({str(g) for g, t in zip(groups, self.train) if t})


def leave_one_group_out(groups: Sequence[str], min_groups: int = 2) -> list[Fold]:
    """One :class:`Fold` per distinct group (sorted), for items labelled by ``groups``.

    Fewer than ``min_groups`` groups is a DataError: there would be nothing to train on.
    """
    labels = np.asarray([str(g) for g in groups], dtype=object)
    names = sorted(set(labels))
    if len(names) < max(2, min_groups):
        raise DataError(f"leave one group out needs at least {max(2, min_groups)} groups, "
                        f"got {len(names)} ({', '.join(names) or 'none'})",
                        hint="pass data from two or more collections (repeat --data)")
    return [Fold(name, labels != name, labels == name) for name in names]
