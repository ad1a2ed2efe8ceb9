"""report.html (and compare.html) in a real headless browser: Debian's chromium driven by Playwright.

Skips with a reason where chromium or Playwright is missing, except on CI (``CI=true``), where
``.ci/run`` installs chromium and a missing browser is a failure.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from compliance.io import atomic_write_text
from compliance.report.render import render_html
from report_example import example_report

CHROMIUM = os.environ.get("COMPLIANCE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _unavailable() -> str | None:
    if not Path(CHROMIUM).is_file():
        return f"chromium not found at {CHROMIUM} (apt-get install -y chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed (pip install -e '.[test]')"
    return None


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    reason = _unavailable()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the browser test: {reason}")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            yield context
        finally:
            context.close()


def _open(context, path: Path):
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda msg: problems.append(f"console {msg.type}: {msg.text}")
            if msg.type in ("error", "warning") else None)
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on("requestfailed", lambda req: problems.append(f"request failed: {req.url}"))
    page.goto(path.as_uri(), wait_until="load")
    return page, problems


def test_report_html_renders_with_chart(browser, tmp_path):
    report = example_report()
    report.setdefault("disagreement", None)  # newer optional field; older examples lack it
    html = atomic_write_text(tmp_path / "report.html", render_html(report))
    page, problems = _open(browser, html)
    assert page.title().startswith("Safety re-evaluation")
    assert report["summary"]["model"] in page.inner_text("body")
    svg = page.locator("svg").first
    assert svg.count() == 1 and svg.is_visible()
    box = svg.bounding_box()
    assert box and box["width"] > 100 and box["height"] > 50, box
    assert page.locator("svg [id^=finding-row-]").count() > 0  # the points were drawn
    assert problems == []
    page.close()


def test_compare_html_renders(browser, tmp_path):
    from compliance.compare import compare_reports
    from compliance.io import atomic_write_json

    atomic_write_json(tmp_path / "a" / "report.json", example_report())
    result = compare_reports([tmp_path / "a"], out_dir=tmp_path / "out", pdf=False)
    page, problems = _open(browser, result.files["html"])
    assert "not verified" in page.inner_text("body").lower()
    assert page.locator("table.compare-metrics tbody tr").count() > 0
    assert problems == []
    page.close()


def test_audit_sheet_labels_by_keyboard_undoes_saves_and_folds_back(browser, tmp_path):
    import json

    from compliance.audit import draw_audit, fold_labels
    from compliance.io import atomic_write_json

    folder = tmp_path / "report"
    atomic_write_json(folder / "report.json", example_report())
    sheet = draw_audit(folder, size=32)
    page, problems = _open(browser, sheet.html_path)
    assert page.inner_text("#progress") == "0 of 32 labelled"
    pressed = []
    for _ in range(3):
        unit = page.evaluate("document.body.dataset.unit")
        key = page.locator("#options button").first.get_attribute("data-key")
        label = page.locator("#options button").first.get_attribute("data-label")
        page.keyboard.press(key)
        pressed.append((unit, label))
    assert page.inner_text("#progress") == "3 of 32 labelled"
    page.keyboard.press("u")
    assert page.inner_text("#progress") == "2 of 32 labelled"
    assert page.evaluate("document.body.dataset.unit") == pressed[2][0]  # back on the undone reply
    page.fill("#auditor", "Pat Browser")
    page.keyboard.press("h")  # typed into the name field: neither a label ...
    page.keyboard.press("Backspace")  # ... nor an undo
    page.evaluate("document.activeElement.blur()")
    assert page.inner_text("#progress") == "2 of 32 labelled"
    with page.expect_download() as download:
        page.keyboard.press("s")
    saved = tmp_path / "audit-labels.json"
    download.value.save_as(saved)
    doc = json.loads(saved.read_text())
    assert doc["auditor"] == "Pat Browser" and doc["sample_sha256"] == sheet.sample.sha256
    assert {(e["unit"], e["label"]) for e in doc["labels"]} == set(pressed[:2])
    # Reopened, the page restores what this browser kept.
    again, more = _open(browser, sheet.html_path)
    assert again.inner_text("#progress") == "2 of 32 labelled"
    result = fold_labels(folder, saved, partial=True)
    assert result.audit["labels"]["n_labelled"] == 2 and result.audit["auditor"] == "Pat Browser"
    assert problems == [] and more == []
    page.close()
    again.close()
