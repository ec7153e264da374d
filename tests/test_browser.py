"""A real browser (Debian's chromium, driven by Playwright) runs the quick demo through the dashboard: comparison
chart, attention view, prediction, and HTML payloads that must not execute. Keeps a screenshot in artifacts/."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "artifacts"
XSS = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory: pytest.TempPathFactory):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does)")
    pytest.importorskip("playwright", reason="pip install playwright (in requirements-dev.txt)")
    studies = tmp_path_factory.mktemp("browser") / "studies"
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TEXTCLF_STUDIES_DIR": str(studies)}
    env.pop("TEXTCLF_STORAGE", None)
    proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            if proc.poll() is not None:
                raise AssertionError(f"app exited: {proc.stdout.read() if proc.stdout else ''}") from None
            time.sleep(0.5)
    yield url
    proc.terminate()
    proc.wait(20)
    shutil.rmtree(studies, ignore_errors=True)


def test_quick_demo_compare_attention_predict_in_a_real_browser(app_url: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        dialogs: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(app_url)

        page.get_by_role("tab", name="Data").click()
        page.get_by_role("button", name="Load data").click()
        expect(page.get_by_text("single-label, 3 labels")).to_be_visible(timeout=60_000)

        page.get_by_role("tab", name="Study").click()
        expect(page.get_by_text("minilm", exact=True).first).to_be_visible()
        page.get_by_role("button", name="Quick demo").click()
        expect(page.get_by_text("Study quick-demo started")).to_be_visible(timeout=30_000)
        # The quick demo: 4 trials of minilm vs scratch:minilm on the bundled sample.
        expect(page.get_by_text("4 finished")).to_be_visible(timeout=600_000)
        page.screenshot(path=str(ARTIFACTS / "study.png"), full_page=False)

        page.get_by_role("tab", name="Compare").click()
        expect(page.locator(".js-plotly-plot:visible").first).to_be_visible(timeout=60_000)
        expect(page.locator(".js-plotly-plot:visible")).to_have_count(12, timeout=60_000)
        expect(page.get_by_text("Validation accuracy by backbone")).to_be_visible()
        page.screenshot(path=str(ARTIFACTS / "compare.png"), full_page=False)

        page.get_by_role("tab", name="Attention").click()
        box = page.get_by_label("Sentence")
        box.fill(f"The kettle broke after a week {XSS}")
        page.get_by_role("button", name="Show attention").click()
        expect(page.locator(".textclf-model")).to_have_count(1, timeout=60_000)
        expect(page.get_by_text("attention rollout")).to_be_visible()
        page.screenshot(path=str(ARTIFACTS / "attention.png"), full_page=True)

        page.get_by_role("tab", name="Predict").click()
        page.get_by_label("Text").fill(f"Does the blender come with a warranty? {XSS}")
        page.get_by_role("button", name="Predict", exact=True).click()
        expect(page.locator("#pred-info")).to_contain_text(" ms", timeout=60_000)
        expect(page.locator("#pred-label")).to_contain_text(re.compile("question|complaint|praise"))
        page.screenshot(path=str(ARTIFACTS / "predict.png"), full_page=False)

        assert page.evaluate("window.__xss") is None, "an HTML payload executed"
        assert not dialogs
        browser.close()
