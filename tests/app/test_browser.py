"""End to end in headless Chromium: upload an X-ray, see every model's column, the agreement,
the per-pathology heatmap toggle, download the PDF report; a refused upload shows why."""
from __future__ import annotations

import os
from pathlib import Path

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
                column = columns.nth(i)
                assert column.get_attribute("data-model") == m.name
                assert column.locator("td.prob").count() == len(m.outputs)
                # One map visible at a time, drawn at the upload's resolution (220 px wide);
                # rendered, not just present: the data URI decoded under the page's CSP.
                shown = column.locator("figure.heatmap:visible")
                assert shown.count() == 1
                first = shown.get_attribute("data-output")
                other = next(o for o in m.outputs if o != first)
                column.locator(f".toggle button[data-output='{other}']").click()
                assert column.locator("figure.heatmap:visible").get_attribute("data-output") == other
                img = column.locator(f"figure.heatmap[data-output='{other}'] img")
                if img.count():
                    assert img.evaluate("img => img.complete && img.naturalWidth") == 220
            assert page.locator("table.agreement tbody tr").count() == len({o for m in bank for o in m.outputs})
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
