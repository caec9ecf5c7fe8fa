"""The web viewer in headless Chromium (Playwright driving Debian's chromium): four views and an
overlay render, the overlay toggle changes the pixels, the probabilities are shown."""

from __future__ import annotations

import pytest

from tests.serve.conftest import TOKEN, need, study_uid, upload

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def open_browser(playwright):
    return playwright.chromium.launch(executable_path=need("chromium"), args=CHROMIUM_ARGS)


def canvas_sum(page, view: str) -> int:
    return page.evaluate("""(view) => {
        const c = document.querySelector(`canvas[data-view='${view}']`);
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let s = 0; for (let i = 0; i < d.length; i += 4) s += d[i] - d[i + 1];  // red minus green
        return s; }""", view)


def test_viewer_shows_views_overlays_and_scores(server, studies, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    study = studies[1]
    uid = study_uid(study)
    with server.client() as c:
        upload(c, study.values())
    s = server.wait_status(uid)
    with sync_api.sync_playwright() as p:
        browser = open_browser(p)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{server.url}/#token={TOKEN}")
            assert "RESEARCH USE ONLY" in page.inner_text("#banner")
            page.click(f"#studies tr[data-uid='{uid}']")
            page.wait_for_function("window.mammokit.drawn === 4 && window.mammokit.overlays === 4", timeout=20000)
            for view in ("R-CC", "L-CC", "R-MLO", "L-MLO"):
                assert page.get_attribute(f"canvas[data-view='{view}']", "data-drawn") == "1"
            with_overlay = canvas_sum(page, "L-CC")
            page.uncheck("#show-malignant")
            page.wait_for_function("window.mammokit.overlays === 0")
            without = canvas_sum(page, "L-CC")
            assert with_overlay > without  # the red malignant overlay went away
            page.check("#show-benign")
            page.wait_for_function("window.mammokit.overlays === 4")
            assert canvas_sum(page, "L-CC") < without  # green benign overlay
            p_r = s["probabilities"]["right_malignant"]
            assert page.inner_text("[data-side='right'] .p-malignant") == f"{p_r:.3f}"
            assert page.inner_text("[data-side='left'] .p-benign") == f"{s['probabilities']['left_benign']:.3f}"
            # layout: RCC | LCC on top, RMLO | LMLO below
            boxes = {v: page.locator(f"canvas[data-view='{v}']").bounding_box() for v in ("R-CC", "L-CC", "R-MLO")}
            assert boxes["R-CC"]["x"] < boxes["L-CC"]["x"] and boxes["R-CC"]["y"] < boxes["R-MLO"]["y"]
            # without the token the page asks for one
            page2 = browser.new_page()
            page2.goto(server.url + "/")
            page2.wait_for_selector("#login-form", state="visible")
            assert errors == []
        finally:
            browser.close()
