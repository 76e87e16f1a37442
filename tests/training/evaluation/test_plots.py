"""Evaluation figures: every plot writes a PNG, also with one class."""

import numpy as np
import pytest

from training.evaluation import plots



@pytest.fixture
def arrays():
    rng = np.random.default_rng(0)
    Y = (rng.random((80, 2)) < 0.5).astype(float)
    P = np.clip(0.4 * Y + 0.6 * rng.random((80, 2)), 0, 1)
    return Y, P


@pytest.mark.parametrize("name", ["roc", "pr", "overlay", "reliability", "confusion"])
def test_plots_write_png(arrays, tmp_path, name):
    from training.evaluation.reliability import calibration_report

    Y, P = arrays
    calls = {
        "roc": lambda p: plots.plot_roc(Y, P, ["a", "b"], p),
        "pr": lambda p: plots.plot_pr(Y, P, ["a", "b"], p),
        "overlay": lambda p: plots.plot_roc_overlay({"m1": (Y[:, 0], P[:, 0]), "m2": (Y[:, 0], P[:, 1])}, p),
        "reliability": lambda p: plots.plot_reliability(calibration_report(Y, P, ["a", "b"]), p),
        "confusion": lambda p: plots.plot_confusion([[5, 1], [2, 7]], ["neg", "pos"], p),
    }
    path = calls[name](tmp_path / "fig" / f"{name}.png")
    assert path.read_bytes()[:4] == b"\x89PNG" and path.stat().st_size > 1000


def test_plot_with_one_class_does_not_crash(tmp_path):
    path = plots.plot_roc(np.ones((5, 1)), np.linspace(0, 1, 5)[:, None], ["a"], tmp_path / "r.png")
    assert path.is_file()


def test_operating_point_by_hand():
    y = np.array([1, 1, 0, 0, np.nan])
    d = np.array([1, 0, 1, 0, 1], bool)          # TP 1, FN 1, FP 1, TN 1 (the NaN row ignored)
    assert plots.operating_point(y, d, "roc") == (0.5, 0.5)
    assert plots.operating_point(y, d, "pr") == (0.5, 0.5)
    assert plots.operating_point(np.ones(3), np.ones(3, bool), "roc") is None   # no negatives


@pytest.mark.parametrize("kind", ["roc", "pr"])
def test_marked_curves_and_reliability_panels_write_png(arrays, tmp_path, kind):
    Y, P = arrays
    models = {"m1": (Y[:, 0], P[:, 0], P[:, 0] >= 0.5), "m2": (Y[:, 0], P[:, 1], None)}
    path = plots.plot_marked_curves(models, kind, tmp_path / f"{kind}.png", kind)
    assert path.read_bytes()[:4] == b"\x89PNG"
    panels = plots.plot_reliability_panels({"m1": (Y[:, 0], P[:, 0]), "m2": (Y[:, 0], P[:, 1])},
                                           tmp_path / "rel.png")
    assert panels.read_bytes()[:4] == b"\x89PNG"
