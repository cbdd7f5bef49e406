"""The report as a reader sees it: opened in a real browser (Debian's headless Chromium driven by
Playwright), every image loads and the cluster and candidate tables (or their 'none' lines) are there."""

from __future__ import annotations

import shutil

import pytest

from pseudohealthy.detect.run import detect

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium: install it with `apt-get install chromium` "
                                             "(.ci/run does) to check the report in a browser")
def test_report_renders_in_a_browser(trained, tiny_bids, tiny_phantom, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install -e '.[test]' installs playwright")
    patient = next(s["participant_id"] for s in tiny_phantom["subjects"] if s["group"] == "fcd")
    out = tmp_path / "derivatives"
    detect(tiny_bids, out, trained, [patient])
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto((out / f"{patient}.html").as_uri())
        page.wait_for_load_state("load")
        images = page.eval_on_selector_all("img", "els => els.map(e => [e.getAttribute('src'), e.naturalWidth])")
        assert len(images) >= 2 and all(width > 0 for _, width in images), images
        assert page.locator("h1").inner_text().startswith(patient)
        content = page.content()
        assert "Candidates below the threshold" in content and "Quality control" in content
        tables = page.locator("table")  # clusters, candidates: a table each, or the line saying there is none
        assert tables.count() + ("No cluster above the threshold" in content) + ("No candidate" in content) == 2
        for i in range(tables.count()):
            header = tables.nth(i).locator("tr").first.inner_text()
            assert "confidence" in header and "MNI152" in header and "peak / threshold" in header
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        page.goto((out / "index.html").as_uri())
        assert page.locator(f"a[href='{patient}.html']").count() == 1
        browser.close()
    assert (tmp_path / "report.png").stat().st_size > 20_000
