"""Case-level comparison against a hand computation on a small literal fixture."""
import numpy as np
import pytest
from scipy.stats import chi2

from training.evaluation.cases import gallery_rows, kappa, mcnemar, output_cases

NAN = float("nan")
#: truths of 8 cases (case 6 unknown) and three models' decisions
Y = np.array([1, 1, 0, 0, 1, 0, NAN, 1])
DECISIONS = {"A": [1, 0, 0, 1, 1, 0, 1, 0],
             "B": [1, 1, 1, 1, 0, 0, 0, 0],
             "C": [0, 0, 0, 1, 1, 0, 1, 0]}
#: spreads (max - min per case): 0.3 0.2 0.1 0.5 0.15 0.6 0.05 0.0
PROBS = {"A": [0.6, 0.4, 0.45, 0.9, 0.7, 0.1, 0.55, 0.2],
         "B": [0.7, 0.6, 0.55, 0.8, 0.55, 0.7, 0.5, 0.2],
         "C": [0.4, 0.4, 0.45, 0.4, 0.6, 0.1, 0.52, 0.2]}


def _cases(**kw):
    positive = {k: np.array(v, bool) for k, v in DECISIONS.items()}
    probs = {k: np.array(v) for k, v in PROBS.items()}
    return output_cases("Pneumonia", Y, probs, positive, kw.pop("undecided", {}), None, **kw)


def test_errors_shared_and_alone_right_by_hand():
    # wrong sets per known case: 0 {C}, 1 {A,C}, 2 {B}, 3 {A,B,C}, 4 {B}, 5 {}, 7 {A,B,C}
    oc = _cases(k=2, n_boot=50)
    assert oc.n_known == 7
    assert oc.errors == {"A": 3, "B": 4, "C": 4}
    assert oc.shared == {1: 3, 2: 1, 3: 2}
    assert oc.subsets == [(("B",), 2), (("A", "B", "C"), 2), (("C",), 1), (("A", "C"), 1)]
    assert oc.alone_right == {"A": [], "B": [1], "C": []}


def test_gallery_is_top_spread_plus_every_split_case():
    # top 2 by spread: 5 (0.6), 3 (0.5); split decisions: 0, 1, 2, 4, 6; case 6's truth is
    # unknown (NaN), so it is left out: nothing can be learnt from a disagreement there
    oc = _cases(k=2, n_boot=50)
    assert oc.gallery == [5, 3, 0, 1, 4, 2]
    assert oc.split == [0, 1, 4, 2]
    assert oc.spread[5] == pytest.approx(0.6) and 6 not in oc.spread
    P = np.array([[0.1, 0.9, 0.5], [0.1, 0.2, 0.5]])   # spreads 0, 0.7, 0 (ties: by index)
    assert gallery_rows(P, np.zeros((2, 3), bool), k=2) == [1, 0]
    # cases without a known truth (an output kept within another source) never enter it
    assert gallery_rows(P, np.zeros((2, 3), bool), k=2, known=np.array([True, False, True])) == [0, 2]


def test_kappa_and_mcnemar_by_hand():
    oc = _cases(k=2, n_boot=200)
    pairs = {(p.a, p.b): p for p in oc.pairs}
    assert list(pairs) == [("A", "B"), ("A", "C"), ("B", "C")]
    # A-B: agree on 4 of 8, each positive half the time: p_o = p_e = 0.5, kappa 0
    assert pairs["A", "B"].kappa.value == pytest.approx(0.0)
    # A-C: agree on 7 of 8; p_A = 1/2, p_C = 3/8: p_e = 1/2, kappa = (7/8 - 1/2) / (1/2)
    ac = pairs["A", "C"].kappa
    assert ac.value == pytest.approx(0.75) and ac.low <= 0.75 <= ac.high
    # A right where B is wrong: cases 2 and 4; B right where A is wrong: case 1
    m = pairs["A", "B"].mcnemar
    assert (m.b, m.c, m.method) == (2, 1, "exact binomial")
    assert m.p_value == pytest.approx(1.0)     # 2 * P(X <= 1 | n=3) = 2 * 4/8, capped at 1


def test_mcnemar_exact_and_chi_square():
    ten = mcnemar(np.ones(12, bool), np.r_[np.zeros(10, bool), np.ones(2, bool)])
    assert (ten.b, ten.c) == (10, 0) and ten.p_value == pytest.approx(2 / 1024)
    a = np.r_[np.ones(30, bool), np.zeros(10, bool)]
    big = mcnemar(a, ~a)
    assert big.method.startswith("chi-square") and big.statistic == pytest.approx(19 ** 2 / 40)
    assert big.p_value == pytest.approx(chi2.sf(19 ** 2 / 40, 1))
    assert mcnemar(a, a).p_value == 1.0


def test_kappa_undefined_when_both_constant():
    assert np.isnan(kappa(np.ones(4), np.ones(4)))
    assert kappa(np.array([1, 0, 1, 0]), np.array([1, 0, 1, 0])) == pytest.approx(1.0)


def test_an_undecided_model_is_left_out_of_the_counts_and_said_so():
    oc = _cases(k=2, n_boot=50, undecided={"C": "threshold not estimable"})
    assert oc.deciding == ["A", "B"] and oc.undecided == {"C": "threshold not estimable"}
    assert oc.errors == {"A": 3, "B": 4} and [(p.a, p.b) for p in oc.pairs] == [("A", "B")]
    assert oc.shared == {1: 3, 2: 2}                   # A-only 1; B-only 2, 4; both 3, 7
    assert oc.gallery == [5, 3, 1, 4, 2] and oc.split == [1, 4, 2]   # 0 splits only with C; 6: no truth
    js = oc.to_json()
    assert js["shared"] == {"1": 3, "2": 2} and js["pairs"][0]["kappa"]["value"] == pytest.approx(0.0)
