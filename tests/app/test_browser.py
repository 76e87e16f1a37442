"""End to end in headless Chromium: upload an X-ray, see every model's column, the agreement,
the pathology × model matrix, the heatmap strip (pathology choice, opacity, plain image, zoom),
download the PDF report; a refused upload shows why."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from tests.app.servers import thread_server
from tests.helpers.images import write_xray
from tests.helpers.tools import unavailable

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
SCREENSHOT = Path(os.environ.get("CXRLAB_SCREENSHOT", "/tmp/cxrlab-result.png"))


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_upload_in_browser_shows_models_and_heatmaps(make_app, bank, tmp_path):
    try:
        from playwright import sync_api
    except ImportError:
        unavailable("playwright is not installed (pip install -r requirements-dev.txt)")
    if not CHROMIUM.exists():
        unavailable(f"{CHROMIUM} is missing (Debian: apt-get install chromium)")
    image = write_xray(tmp_path / "chest.png", "L", 256, 220, seed=7)
    with thread_server(make_app()) as url, sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors = []
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            page.goto(url + "/")
            assert "not a diagnostic device" in page.inner_text(".notice")
            page.set_input_files("input[type=file]", str(image))
            page.click("button[type=submit]")
            page.wait_for_selector("section.model", timeout=30_000)
            columns = page.locator("section.model")
            assert columns.count() == len(bank)
            for i, m in enumerate(bank):
                assert columns.nth(i).get_attribute("data-model") == m.name
                assert columns.nth(i).locator("td.prob").count() == len(m.outputs)
            outputs = {o for m in bank for o in m.outputs}
            assert page.locator("table.agreement tbody tr").count() == len(outputs)
            _switch_to_the_matrix(page, bank, outputs)
            _use_the_heatmap_strip(page, bank, outputs)
            _matrix_on_a_phone_in_the_dark(page)
            assert not [e for e in errors if "Content Security Policy" in e], errors
            page.screenshot(path=str(SCREENSHOT), full_page=True)
            with page.expect_download() as download:
                page.click("form.report button[type=submit]")
            path = download.value.path()
            assert Path(path).read_bytes().startswith(b"%PDF")
            # A constant image: refused, with its reason, and no column at all.
            blank = tmp_path / "blank.png"
            from PIL import Image

            Image.new("L", (300, 300), 0).save(blank)
            page.goto(url + "/")
            page.set_input_files("input[type=file]", str(blank))
            page.click("button[type=submit]")
            page.wait_for_selector("section.gate.refuse", timeout=30_000)
            assert "nearly uniform" in page.inner_text("section.gate.refuse")
            assert page.locator("section.model").count() == 0
        finally:
            browser.close()


def _switch_to_the_matrix(page, bank, outputs) -> None:
    """The per-model columns show first; the toggle swaps in the matrix (and back)."""
    columns, matrix = page.locator("section.columns-view"), page.locator("section.matrix-view")
    to_matrix = page.locator(".view-switch button[data-view='matrix']")
    assert columns.is_visible() and matrix.is_hidden() and to_matrix.get_attribute("aria-pressed") == "false"
    to_matrix.click()
    assert matrix.is_visible() and columns.is_hidden() and to_matrix.get_attribute("aria-pressed") == "true"
    assert page.locator("table.matrix tbody tr").count() == len(outputs)
    assert page.locator("table.matrix td.cell").count() == len(outputs) * len(bank)
    assert page.locator("table.matrix td.absent").count() == len(outputs) * len(bank) - sum(
        len(m.outputs) for m in bank)
    assert "raw " in page.locator("table.matrix td.cell:not(.absent)").first.inner_text()
    page.click(".view-switch button[data-view='columns']")
    assert columns.is_visible() and matrix.is_hidden()


def _use_the_heatmap_strip(page, bank, outputs) -> None:
    """One pathology's strip at a time, a figure per model over the same picture; the slider
    sets the layers' opacity, "Plain image" hides them, zoom enlarges the figures."""
    strip = page.locator("section.heatmap-strip")
    shown = strip.locator(".strip:visible")
    assert shown.count() == 1 and shown.locator("figure.layered").count() == len(bank)
    first = shown.get_attribute("data-output")
    other = next(o for o in sorted(outputs) if o != first)
    strip.locator(f".toggle button[data-output='{other}']").click()
    assert strip.locator(".strip:visible").get_attribute("data-output") == other
    pick = next(o for o in sorted(outputs) if strip.locator(f".strip[data-output='{o}'] image.layer").count())
    strip.locator(f".toggle button[data-output='{pick}']").click()
    layer = strip.locator(f".strip[data-output='{pick}'] image.layer").first
    opacity = "layer => getComputedStyle(layer).opacity"
    assert layer.is_visible() and layer.evaluate(opacity) == "0.4"
    slider = strip.locator("input.opacity")
    slider.focus()
    for _ in range(8):                       # the keyboard: 40 % + 8 steps of 5 %
        page.keyboard.press("ArrowRight")
    assert layer.evaluate(opacity) == "0.8" and strip.locator("output").inner_text() == "80 %"
    plain = strip.locator("button.plain-toggle")
    plain.click()
    assert plain.get_attribute("aria-pressed") == "true" and layer.is_hidden()
    picture = _pixels(strip.locator(f".strip[data-output='{pick}'] svg.stack").first)
    assert picture.std() > 10 and np.allclose(picture[..., 0], picture[..., 2], atol=2)  # the grey X-ray
    plain.click()
    assert not np.allclose(_pixels(strip.locator(f".strip[data-output='{pick}'] svg.stack").first)[..., 0],
                           picture[..., 0], atol=2)                                    # coloured again
    assert layer.is_visible()
    figure = strip.locator(f".strip[data-output='{pick}'] figure.layered").first
    before = figure.bounding_box()["width"]
    zoom = strip.locator("button.zoom-toggle")
    zoom.focus()
    page.keyboard.press("Enter")
    assert zoom.get_attribute("aria-pressed") == "true"
    assert figure.bounding_box()["width"] == pytest.approx(2 * before, rel=0.02)


def _pixels(locator) -> np.ndarray:
    """What the browser drew for ``locator`` (decoded: the data URIs passed the page's CSP)."""
    import io

    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(locator.screenshot())).convert("RGB")).astype(int)


def _matrix_on_a_phone_in_the_dark(page) -> None:
    """At 375 px the matrix scrolls sideways in its own box, its caption in view, not the page;
    the dark theme recolours it."""
    page.set_viewport_size({"width": 375, "height": 800})
    page.click(".view-switch button[data-view='matrix']")
    box = page.locator(".matrix-scroll")
    assert box.evaluate("b => b.scrollWidth > b.clientWidth")
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    assert page.locator("table.matrix caption").is_visible()
    light = box.evaluate("b => getComputedStyle(b).backgroundColor")
    page.emulate_media(color_scheme="dark")
    assert box.evaluate("b => getComputedStyle(b).backgroundColor") != light
    page.emulate_media(color_scheme="light")
    page.click(".view-switch button[data-view='columns']")
    page.set_viewport_size({"width": 1280, "height": 900})
