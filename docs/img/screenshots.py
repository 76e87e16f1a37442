"""Screenshots of a running cxrlab app for docs/img/: the result page (matrix view and the
heatmap strip) and /compare (the case gallery), light and dark, 1280 and 375 px wide.

    python docs/img/screenshots.py --url http://127.0.0.1:8000 --image XRAY.png --out docs/img

Dataset images are never committed (README): the X-ray pixels are blurred in every shot
(the upload's plain image and the gallery's pictures); the heatmap layers, bars, numbers and
layout stay as served. The committed files were then re-encoded with Pillow (at most 1000 px
wide, quality 40-60) to stay under 200 KB each. Needs Playwright and /usr/bin/chromium
(requirements-dev.txt).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from playwright.sync_api import sync_playwright

CHROMIUM = "/usr/bin/chromium"
BLUR = ("#plain-image, .heatmap-strip image:not([href^='data:image/png']) { filter: blur(9px); }"
        " table.gallery img { filter: blur(7px); }")
LOAD_IMAGES = ("el => Promise.all([...el.querySelectorAll('img')].map(i => { i.loading = 'eager'; "
               "return i.complete ? 0 : new Promise(r => { i.onload = i.onerror = r; }); }))")
COMPARE_SECTION = "section.cases:has(h3:has-text('Viral Pneumonia'))"  # an output the models decide on
MAX_HEIGHT = 3000  # px kept of the section: its figures, shared errors and the first gallery rows
WIDTHS = {"desktop": (1280, 900), "375px": (375, 800)}


def shoot(page, path: Path, selector: str | None = None) -> None:
    page.add_style_tag(content=BLUR)
    page.wait_for_timeout(300)
    target = page.locator(selector).first if selector else None
    if target is not None and target.count():
        target.scroll_into_view_if_needed()
        target.evaluate(LOAD_IMAGES)  # the gallery's pictures load lazily
        # a gallery of every split case can outgrow a JPEG: clip it (page coordinates)
        box = target.evaluate("el => { const r = el.getBoundingClientRect(); return "
                              "{x: r.left + scrollX, y: r.top + scrollY, width: r.width, height: r.height}; }")
        page.screenshot(path=str(path), type="jpeg", quality=60, full_page=True,
                        clip={"x": box["x"], "y": box["y"], "width": box["width"],
                              "height": min(box["height"], MAX_HEIGHT)})
    else:
        page.screenshot(path=str(path), type="jpeg", quality=72, full_page=True)
    print(path, f"{path.stat().st_size // 1024} KB")


def result_page(page, url: str, image: Path) -> None:
    page.goto(url + "/")
    page.set_input_files("input[type=file]", str(image))
    page.click("button[type=submit]")
    page.wait_for_selector("section.model, section.gate", timeout=120_000)
    switch = page.locator(".view-switch button[data-view='matrix']")
    if switch.count() and switch.is_visible():
        switch.click()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--image", required=True, type=Path, help="an X-ray to upload")
    ap.add_argument("--out", default=Path("docs/img"), type=Path)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--headless"])
        for theme in ("light", "dark"):
            for name, (w, h) in WIDTHS.items():
                # bypass_csp: only so that the blur below can be injected (the app itself is untouched)
                page = browser.new_page(viewport={"width": w, "height": h}, color_scheme=theme, bypass_csp=True)
                result_page(page, args.url, args.image)
                shoot(page, args.out / f"result-{theme}-{name}.jpg", "main")
                page.goto(args.url + "/compare")
                # one output's case gallery (the whole page of eight outputs is too tall for a JPEG)
                shoot(page, args.out / f"compare-{theme}-{name}.jpg", COMPARE_SECTION)
                page.close()
        browser.close()


if __name__ == "__main__":
    main()
