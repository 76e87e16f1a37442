"""End to end in headless Chromium: upload an X-ray, see every model's column and heatmap."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.app.servers import thread_server
from tests.helpers.images import write_image

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
SCREENSHOT = Path(os.environ.get("CXRLAB_SCREENSHOT", "/tmp/cxrlab-result.png"))


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_upload_in_browser_shows_models_and_heatmaps(make_app, bank, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    image = write_image(tmp_path / "chest.png", "L", 256, 220, seed=7)
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
                column = columns.nth(i)
                assert column.get_attribute("data-model") == m.name
                assert column.locator("td.prob").count() == len(m.outputs)
                heat = column.locator("figure.heatmap img")
                # Rendered, not just present: the data URI decoded under the page's CSP.
                assert heat.evaluate("img => img.complete && img.naturalWidth") == m.card["input_size"]
            assert not [e for e in errors if "Content Security Policy" in e], errors
            page.screenshot(path=str(SCREENSHOT), full_page=True)
        finally:
            browser.close()
