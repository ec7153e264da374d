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
# What the HTML label names of test_security's model would put on the page if they rendered as markup.
INJECTED = "img[src*='127.0.0.1:9'], a[href*='127.0.0.1:9'], h1:has-text('SESSION EXPIRED')"

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory: pytest.TempPathFactory, tiny_models: dict):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does)")
    pytest.importorskip("playwright", reason="pip install playwright (in requirements-dev.txt)")
    from test_security import html_labelled_csv

    from textclf.study import SearchSpace, StudyConfig, run_study

    studies = tmp_path_factory.mktemp("browser") / "studies"
    studies.mkdir()
    # A model whose label names are HTML and Markdown payloads, kept where the app finds its models.
    run_study(StudyConfig(study="html", data=str(html_labelled_csv(studies.parent / "html-labels.csv")),
                          backbones=["tiny-bert"], trials=1, epochs=1, storage=f"sqlite:///{studies / 'textclf.db'}",
                          models_dir=str(studies / "models" / "html"),
                          space=SearchSpace(lr=(1e-3, 1e-3), batch_sizes=(16,))), progress=False, log=lambda _: None)
    port = free_port()
    # Its own upload folder: another app on this machine writing the same upload path cannot race it.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TEXTCLF_STUDIES_DIR": str(studies),
           "GRADIO_TEMP_DIR": str(studies.parent / "uploads")}
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
    yield {"url": url, "csv": str(studies.parent / "html-labels.csv")}
    proc.terminate()
    proc.wait(20)
    shutil.rmtree(studies, ignore_errors=True)


def test_quick_demo_compare_attention_predict_in_a_real_browser(app_url: dict) -> None:
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        dialogs: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        app = app_url
        page.goto(app["url"])

        page.get_by_role("tab", name="Data").click()
        # The preselected bundled sample is described as the page opens, without pressing Load data.
        expect(page.get_by_text("single-label, 8 labels")).to_be_visible(timeout=90_000)
        # A multi-label preset: the preview shows each row's labels beside its text.
        page.get_by_label("Preset").click()
        page.get_by_role("option", name="demo-multilabel", exact=True).click()
        expect(page.get_by_text("multi-label, 4 labels")).to_be_visible(timeout=60_000)
        labels_cell = page.locator("#data-preview [data-testid=cell-0-1]")  # row 0, the labels column
        expect(labels_cell).to_contain_text(re.compile("delivery|price|quality|service"))
        expect(labels_cell).to_be_in_viewport()
        page.locator("input[type=file]").first.set_input_files(app["csv"])
        page.get_by_role("button", name="Load data").click()
        expect(page.get_by_text("single-label, 3 labels")).to_be_visible(timeout=60_000)
        expect(page.get_by_text("html-labels.csv")).to_be_visible()
        expect(page.locator(".js-plotly-plot:visible").first).to_be_visible(timeout=30_000)
        expect(page.get_by_text("SESSION EXPIRED").first).to_be_visible()  # the label, as text, in the preview
        assert page.locator(INJECTED).count() == 0, "a label name rendered as HTML in the Data section"
        page.screenshot(path=str(ARTIFACTS / "data-html-labels.png"), full_page=True)

        page.get_by_role("tab", name="Study").click()
        expect(page.get_by_text("minilm", exact=True).first).to_be_visible()
        page.get_by_role("button", name="Quick demo").click()
        expect(page.get_by_text("Study quick-demo started")).to_be_visible(timeout=30_000)
        # The quick demo: 4 trials of minilm vs scratch:minilm on the bundled BANKING77 sample; the summary is live.
        expect(page.get_by_text(re.compile(r"running for .*(left)?"))).to_be_visible(timeout=120_000)
        expect(page.get_by_text(re.compile(r"quick-demo — ended"))).to_be_visible(timeout=600_000)
        expect(page.get_by_text(re.compile(r"Trials: \d complete, \d pruned, 0 failed"))).to_be_visible()
        expect(page.get_by_text(re.compile(r"Test split \(the chosen model"))).to_be_visible()
        # The "started" line goes once the study has ended: the summary says how it ended.
        expect(page.get_by_text("Study quick-demo started")).to_have_count(0, timeout=10_000)
        page.screenshot(path=str(ARTIFACTS / "study.png"), full_page=False)
        page.locator("#study-summary").screenshot(path=str(ARTIFACTS / "study-summary.png"))
        # Drill into a trial: click its row (the grid's cells; its <table> is a hidden one for measuring).
        page.locator("#trial-table [data-testid=cell-0-1]").click()
        expect(page.locator("#trial-detail")).to_contain_text(re.compile(r"Trial \d+ — "), timeout=30_000)
        expect(page.locator("#trial-detail")).to_contain_text("parameter")
        page.screenshot(path=str(ARTIFACTS / "trial.png"), full_page=True)

        page.get_by_role("tab", name="Compare").click()
        expect(page.locator(".js-plotly-plot:visible").first).to_be_visible(timeout=60_000)
        expect(page.locator(".js-plotly-plot:visible")).to_have_count(12, timeout=60_000)
        expect(page.get_by_text("Validation accuracy by backbone")).to_be_visible()
        page.screenshot(path=str(ARTIFACTS / "compare.png"), full_page=False)
        page.get_by_text("What the best models get wrong, and how far to trust them").click()
        expect(page.locator("#calibration-md")).to_contain_text("temperature", timeout=60_000)
        expect(page.locator(".js-plotly-plot:visible text", has_text="Reliability of each backbone").first).to_be_visible()
        expect(page.locator("#err-table")).to_contain_text(re.compile("card|compromised"), timeout=60_000)
        page.screenshot(path=str(ARTIFACTS / "review.png"), full_page=False)
        # One confusion-matrix cell (the diagonal one, which every model that learned anything fills), all rows.
        page.get_by_label("all", exact=True).check()
        for box in ("Confusion cell: true label", "predicted label"):
            page.get_by_label(box, exact=True).click()
            page.get_by_role("option", name="card_arrival", exact=True).click()
        gold = page.locator("#err-table [role=gridcell][data-col='2']")  # columns: row, text, true, predicted, …
        predicted = page.locator("#err-table [role=gridcell][data-col='3']")
        expect(predicted.first).to_have_text("card_arrival", timeout=30_000)
        expect(gold.first).to_have_text("card_arrival")
        shown = {t.strip() for t in gold.all_inner_texts() + predicted.all_inner_texts()}
        assert gold.count() > 1 and shown == {"card_arrival"}, shown

        # Attention for two models, then Predict: the tab bar keeps all five tabs whichever opens first.
        page.get_by_role("tab", name="Attention").click()
        box = page.get_by_label("Sentence")
        box.fill(f"The kettle broke after a week {XSS}")
        models = page.get_by_label("Models (side by side; default: the best)")
        for name in ("quick-demo / minilm", "quick-demo / scratch:minilm"):
            models.click()
            page.get_by_role("option", name=name, exact=True).click()
        page.get_by_role("button", name="Show attention").click()
        expect(page.locator(".textclf-model")).to_have_count(2, timeout=60_000)
        expect(page.get_by_text("attention rollout").first).to_be_visible()
        heatmaps = page.locator(".js-plotly-plot:visible")
        expect(heatmaps).to_have_count(1)  # one figure, a titled heatmap per model in it
        expect(heatmaps.locator("text", has_text="scratch:minilm").first).to_be_visible()
        page.screenshot(path=str(ARTIFACTS / "attention.png"), full_page=True)

        page.get_by_role("tab", name="Predict").click()
        page.get_by_label("Text", exact=True).fill(f"My new card still has not arrived {XSS}")
        page.get_by_label("Text", exact=True).press("Enter")  # answers as you type, and on Enter: no button
        expect(page.locator("#pred-info")).to_contain_text(" ms", timeout=60_000)
        expect(page.locator("#pred-info")).to_contain_text(re.compile(r"model \S+ / \S+"))  # names its model
        expect(page.locator("#pred-label")).to_contain_text(re.compile("card|compromised|question|complaint|praise"))
        page.screenshot(path=str(ARTIFACTS / "predict.png"), full_page=False)

        # The model trained on HTML label names: its labels show as text in the Label and the info line.
        model = page.get_by_label("Model", exact=True)
        model.click()
        page.get_by_role("option", name="html / tiny-bert").click()
        page.get_by_label("Text", exact=True).fill("Is it waterproof?")
        page.get_by_role("button", name="Predict", exact=True).click()
        expect(page.locator("#pred-info")).to_contain_text(re.compile("SESSION EXPIRED|claim|img src"), timeout=60_000)
        expect(page.locator("#pred-label")).to_contain_text(re.compile("SESSION EXPIRED|claim|img src"))
        assert page.locator(INJECTED).count() == 0, "a label name rendered as HTML in the Predict section"
        page.screenshot(path=str(ARTIFACTS / "predict-html-labels.png"), full_page=False)

        # That model's study in Compare: the confusion matrix and per-class F1 name its labels, as text.
        page.get_by_role("tab", name="Study").click()
        page.get_by_label("Open a study in the storage").click()
        page.get_by_role("option", name="html", exact=True).click()
        page.get_by_role("tab", name="Compare").click()
        expect(page.get_by_text("Study html")).to_be_visible(timeout=60_000)
        expect(page.locator(".js-plotly-plot:visible text", has_text="SESSION EXPIRED").first).to_be_visible(
            timeout=60_000)
        assert page.locator(INJECTED).count() == 0, "a label name rendered as HTML in a chart"
        page.screenshot(path=str(ARTIFACTS / "compare-html-labels.png"), full_page=True)

        tabs = page.get_by_role("tab").all_inner_texts()
        assert [t.strip() for t in tabs] == ["Data", "Study", "Compare", "Attention", "Predict"], tabs
        assert page.evaluate("window.__xss") is None, "an HTML payload executed"
        assert not dialogs
        browser.close()
