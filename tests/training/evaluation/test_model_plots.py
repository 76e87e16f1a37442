"""A model's kept evaluation plots: copied by part, stale ones removed, served by bare name only."""
from __future__ import annotations

import pytest

from training.evaluation.model_plots import figure_names, keep_plots, plot_file, plot_files


def test_keep_plots_copies_allowed_figures_and_drops_stale_ones(tmp_path):
    src, model = tmp_path / "out", tmp_path / "model"
    src.mkdir()
    for name in ("roc.png", "pr.svg", "confusion_a.png", "metrics.json"):
        (src / name).write_bytes(b"x")
    figures = {"roc": "roc.png", "pr": "pr.svg", "confusion": ["confusion_a.png"], "data": "metrics.json"}
    assert figure_names(figures) == ["roc.png", "pr.svg", "confusion_a.png", "metrics.json"]
    keep_plots(figure_names(figures), src, model, "test")
    assert plot_files(model) == {"test": ["confusion_a.png", "pr.svg", "roc.png"]}  # no JSON
    keep_plots(["roc.png"], src, model, "test")
    assert plot_files(model) == {"test": ["roc.png"]}  # a re-run leaves no stale figure
    with pytest.raises(ValueError, match="plain name"):
        keep_plots(["roc.png"], src, model, "../up")


def test_plot_file_refuses_paths_other_types_and_links(tmp_path):
    model = tmp_path / "model"
    keep_plots([], tmp_path, model, "test")
    folder = model / "evaluation" / "test"
    (folder / "roc.png").write_bytes(b"png")
    (folder / "notes.txt").write_text("no")
    (tmp_path / "secret.png").write_bytes(b"secret")
    (folder / "link.png").symlink_to(tmp_path / "secret.png")
    assert plot_file(model, "test", "roc.png") == folder / "roc.png"
    for part, name in (("test", "../../../secret.png"), ("test", "notes.txt"), ("test", "link.png"),
                       ("..", "test/roc.png"), ("test", ".hidden.png"), ("test", "missing.png")):
        assert plot_file(model, part, name) is None
    assert plot_files(model) == {"test": ["roc.png"]}
    assert plot_files(tmp_path / "no-model") == {}
