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
