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
