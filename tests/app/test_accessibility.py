"""Accessibility in headless Chromium: axe-core finds no serious or critical violation on the
index, result, compare (with the case gallery) and model pages, in the light and the dark theme;
no page scrolls sideways at 375 px; /compare's metric tables fit their cells at 1500 px; the
dark-theme toggle persists across a reload; the upload form shows that it is busy."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.app.servers import thread_server
from tests.app.test_browser import ARGS, CHROMIUM
from tests.helpers.images import write_xray
from tests.helpers.tools import unavailable
from tests.training.evaluation.conftest import make_kermany, save_tiny

PAGES = ("index", "result", "compare", "model")
SERIOUS = ("serious", "critical")
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def compare_dir(tmp_path_factory) -> Path:
    """Two tiny pneumonia models compared on one split: compare.json, figures and the gallery."""
    from training.data.formats import load_datasets
    from training.data.spec import DataSpec
    from training.data.splits import make_split, save_split
    from training.data.tasks import get_task
    from training.evaluation.compare import compare_models

    root = tmp_path_factory.mktemp("a11y")
    data = str(make_kermany(root / "kermany", 24))
    split = save_split(make_split(load_datasets(DataSpec(data)), get_task("pneumonia"), parts=(0.5, 0.25, 0.25),
                                  seed=0), root / "split.csv")
    models = [save_tiny(root / "models", name, "single", ["Normal", "Pneumonia"], "pneumonia", split,
                        ["kermany"], [data], gain=gain) for name, gain in (("good", 4.0), ("inverted", -2.0))]
    compare_models(models, [data], str(split), out_dir=root / "compare", n_boot=20)
    return root / "compare"


@pytest.fixture(scope="module")
def chromium() -> Iterator:
    try:
        from playwright import sync_api
    except ImportError:
        unavailable("playwright is not installed (pip install -r requirements-dev.txt)")
    if not CHROMIUM.exists():
        unavailable(f"{CHROMIUM} is missing (Debian: apt-get install chromium)")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def site(make_app, compare_dir, tmp_path) -> Iterator[dict]:
    """The app on loopback with a comparison to show, and an X-ray to upload."""
    image = write_xray(tmp_path / "chest.png", "L", 256, 220, seed=7)
    with thread_server(make_app(COMPARE_DIR=str(compare_dir))) as url:
        yield {"url": url, "image": image}


def open_page(page, site: dict, which: str, model: str) -> None:
    """Go to one of PAGES (the result page by uploading through the form)."""
    url = site["url"]
    if which == "result":
        page.goto(url + "/")
        page.set_input_files("input[type=file]", str(site["image"]))
        page.click("form.upload button[type=submit]")
        page.wait_for_selector("section.model", timeout=60_000)
    else:
        page.goto(url + {"index": "/", "compare": "/compare", "model": f"/models/{model}"}[which])
    if which == "compare":
        assert page.locator("table.gallery img").count(), "the compare page shows no gallery"


def serious_violations(page) -> list[str]:
    from axe_playwright_python.sync_playwright import Axe

    found = Axe().run(page).response["violations"]
    return [f"{v['id']} ({v['impact']}): {v['help']}; " + ", ".join(str(n["target"]) for n in v["nodes"][:5])
            for v in found if v["impact"] in SERIOUS]


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_no_serious_axe_violations_in_either_theme(chromium, site, bank, scheme):
    context = chromium.new_context(color_scheme=scheme, viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        for which in PAGES:
            open_page(page, site, which, next(iter(bank)).name)
            shown = page.evaluate("getComputedStyle(document.documentElement).colorScheme")
            assert shown == scheme, which                  # the system's theme is the one shown
            assert serious_violations(page) == [], which
    finally:
        context.close()


def test_greyed_rows_and_small_print_pass_under_an_explicit_theme(chromium, site, bank):
    """The text that was too faint: greyed outputs (the tiny models have no transfer evidence)
    and the CIs' small print, with the theme chosen by the toggle instead of the system."""
    context = chromium.new_context(color_scheme="light")
    try:
        page = context.new_page()
        for which, faint in (("result", "tr.greyed"), ("compare", ".ci")):
            open_page(page, site, which, next(iter(bank)).name)
            assert page.locator(faint).count(), which
            for theme in ("dark", "light"):
                page.evaluate(f"document.documentElement.dataset.theme = '{theme}'")
                assert serious_violations(page) == [], (which, theme)
    finally:
        context.close()


def test_every_page_fits_a_375_px_phone(chromium, site, bank):
    context = chromium.new_context(viewport={"width": 375, "height": 800})
    try:
        page = context.new_page()
        for which in PAGES:
            open_page(page, site, which, next(iter(bank)).name)
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 375, f"{which}: the page is {width} px wide at 375 px"
    finally:
        context.close()


def test_compare_metric_tables_fit_their_cells_at_1500_px(chromium, site, bank):
    context = chromium.new_context(viewport={"width": 1500, "height": 900})
    try:
        page = context.new_page()
        open_page(page, site, "compare", next(iter(bank)).name)
        boxes = page.locator("section.output .scroll")
        assert boxes.count()
        for i in range(boxes.count()):
            over = boxes.nth(i).evaluate("box => box.scrollWidth - box.clientWidth")
            assert over <= 0, f"a per-output table overflows its cell by {over} px"
    finally:
        context.close()


def test_dark_theme_toggle_flips_and_persists(chromium, site):
    context = chromium.new_context(color_scheme="light")
    try:
        page = context.new_page()
        page.goto(site["url"] + "/")
        toggle = page.locator("header button.theme")
        background = "getComputedStyle(document.body).backgroundColor"
        light = page.evaluate(background)
        assert toggle.is_visible() and toggle.get_attribute("aria-pressed") == "false"
        assert page.evaluate("document.documentElement.dataset.theme") is None
        toggle.click()
        assert page.evaluate("document.documentElement.dataset.theme") == "dark"
        assert toggle.get_attribute("aria-pressed") == "true" and page.evaluate(background) != light
        page.reload()                                   # the choice beats the light system theme
        assert page.evaluate("document.documentElement.dataset.theme") == "dark"
        assert page.locator("header button.theme").get_attribute("aria-pressed") == "true"
        page.goto(site["url"] + "/compare")             # and holds on every page
        assert page.evaluate("getComputedStyle(document.documentElement).colorScheme") == "dark"
        page.locator("header button.theme").click()
        assert page.evaluate("document.documentElement.dataset.theme") == "light"
        assert page.evaluate(background) == light
    finally:
        context.close()


def test_dark_system_theme_shows_the_toggle_pressed(chromium, site):
    context = chromium.new_context(color_scheme="dark")
    try:
        page = context.new_page()
        page.goto(site["url"] + "/")
        assert page.locator("header button.theme").get_attribute("aria-pressed") == "true"
    finally:
        context.close()


def test_upload_form_is_busy_on_submit_and_idle_after_back(chromium, site, bank):
    context = chromium.new_context()
    try:
        page = context.new_page()
        page.goto(site["url"] + "/")
        button = page.locator("form.upload button[type=submit]")
        idle = button.inner_text()
        page.set_input_files("input[type=file]", str(site["image"]))
        # Held on this page (a later listener cancels the navigation) to look at the busy state.
        page.evaluate("document.querySelector('form.upload')"
                      ".addEventListener('submit', e => e.preventDefault())")
        button.click()
        assert button.is_disabled() and button.inner_text() == f"Running {len(bank)} models…"
        assert page.get_attribute("form.upload", "aria-busy") == "true"
        assert f"Running {len(bank)} models" in page.inner_text("form.upload [role=status]")
        # A real run: the result page, then back: the form works again.
        page.reload()
        page.set_input_files("input[type=file]", str(site["image"]))
        page.click("form.upload button[type=submit]")
        page.wait_for_selector("section.model", timeout=60_000)
        page.go_back()
        page.wait_for_selector("form.upload")
        assert button.is_enabled() and button.inner_text() == idle
        assert page.get_attribute("form.upload", "aria-busy") == "false"
    finally:
        context.close()
