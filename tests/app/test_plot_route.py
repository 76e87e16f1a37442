"""A model's evaluation plots on its card page: linked, served by bare name, nothing else served."""
from __future__ import annotations

import io
import shutil

import pytest
from PIL import Image

from training.evaluation.model_plots import PLOTS_DIR, keep_plots


@pytest.fixture
def plotted(bank, tmp_path):
    """The bank's first model with a kept ROC plot of its test part (removed afterwards)."""
    model = next(iter(bank))
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), "white").save(buf, format="PNG")
    (tmp_path / "roc.png").write_bytes(buf.getvalue())
    folder = keep_plots(["roc.png"], tmp_path, model.directory, "test")
    (folder / "notes.txt").write_text("not a plot")
    yield model, buf.getvalue()
    shutil.rmtree(model.directory / PLOTS_DIR)


def test_card_page_links_the_plots_and_the_route_serves_them(client, plotted):
    model, png = plotted
    url = f"/models/{model.name}/plots/test/roc.png"
    page = client.get(f"/models/{model.name}").get_data(as_text=True)
    assert f'href="{url}"' in page and "internal test part" in page
    rv = client.get(url)
    assert rv.status_code == 200 and rv.mimetype == "image/png" and rv.data == png


@pytest.mark.parametrize("path", ["test/notes.txt", "test/..%2F..%2Fcard.json", "test/../../card.json",
                                  "..%2Ftest/roc.png", "test/missing.png", "site/roc.png"])
def test_plot_route_refuses_anything_else(client, plotted, path):
    model, _ = plotted
    rv = client.get(f"/models/{model.name}/plots/{path}")
    assert rv.status_code == 404
    assert b"card.json" not in rv.data and rv.mimetype == "text/html"


def test_unknown_model_and_no_plots(client, bank):
    assert client.get("/models/no-such-model/plots/test/roc.png").status_code == 404
    model = next(iter(bank))
    page = client.get(f"/models/{model.name}").get_data(as_text=True)
    assert "No evaluation plots kept with this model yet" in page
