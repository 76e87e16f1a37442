import numpy as np
import pytest

from training.errors import DataError
from training.evaluation.holdout import leave_one_group_out


def test_one_fold_per_group_disjoint_and_complete():
    groups = ["nih", "chexpert", "nih", "padchest", "chexpert"]
    folds = leave_one_group_out(groups)
    assert [f.held_out for f in folds] == ["chexpert", "nih", "padchest"]
    for f in folds:
        assert not (f.train & f.test).any() and (f.train | f.test).all()
        assert set(np.asarray(groups)[f.test]) == {f.held_out}
        assert f.held_out not in f.train_groups(groups)
    assert folds[1].train_groups(groups) == ["chexpert", "padchest"]


@pytest.mark.parametrize("groups, min_groups", [(["a", "a"], 2), (["a", "b"], 3), ([], 2)])
def test_too_few_groups(groups, min_groups):
    with pytest.raises(DataError, match="What to do"):
        leave_one_group_out(groups, min_groups)
