"""The dashboard's callbacks as plain functions, background study workers, and a launched app over gradio_client."""

from __future__ import annotations

import csv
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest

from textclf.dashboard import BEST, Dashboard, DashboardConfig, StudyForm
from textclf.errors import ConfigError, DataError, TextclfError
from textclf.study import SearchSpace, StudyConfig, load_study, run_study


@pytest.fixture(scope="module")
def trained(tiny_models: dict, tmp_path_factory: pytest.TempPathFactory) -> Dashboard:
    """A studies folder holding one finished study with a kept tiny-bert model."""
    folder = tmp_path_factory.mktemp("dash") / "studies"
    folder.mkdir()
    storage = f"sqlite:///{folder / 'textclf.db'}"
    run_study(StudyConfig(study="done", data="demo", backbones=["tiny-bert"], trials=1, epochs=2, storage=storage,
                          models_dir=str(folder / "models" / "done"), space=SearchSpace(lr=(1e-3, 1e-3), batch_sizes=(16,))),
              progress=False, log=lambda _: None)
    uploads = folder.parent / "uploads"  # stands in for Gradio's upload folder: the only place files are read from
    uploads.mkdir()
    return Dashboard(DashboardConfig(storage=storage, studies_dir=folder, uploads=str(uploads)))


def wait_for(predicate, timeout: float = 180.0, every: float = 0.5) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(every)
    raise AssertionError("timed out waiting")


def test_data_section_describes_the_sample(trained: Dashboard) -> None:
    src = trained.resolve_data("demo", None, "")
    md, rows, fig = trained.describe_data(src)
    assert "single-label" in md and "3 labels" in md and "train 240" in md
    assert len(rows) == 20 and rows[0][1] in {"complaint", "praise", "question"}
    assert list(fig.data[0].x) == ["complaint", "praise", "question"] and sum(fig.data[0].y) == 240
    assert fig.layout.height and fig.layout.xaxis.title.text == "label" and fig.layout.yaxis.title.text == "training rows"


@pytest.mark.parametrize("hub", ["/etc/passwd", "../secrets", "a/b/c", "~/x"])
def test_typed_paths_are_not_accepted_as_data(trained: Dashboard, hub: str) -> None:
    with pytest.raises(DataError, match="not a Hugging Face dataset id"):
        trained.resolve_data(None, None, hub)


def test_upload_size_is_capped(trained: Dashboard, tmp_path: Path) -> None:
    big = tmp_path / "big.csv"
    big.write_bytes(b"text,label\n" + b"x" * 6_000_000)
    dash = Dashboard(DashboardConfig.from_env(studies_dir=tmp_path, public=True))
    dash.cfg.uploads = str(tmp_path)
    with pytest.raises(DataError, match="limit here is 5 MB"):
        dash.resolve_data(None, str(big), None)


def test_public_mode_caps_trials_and_studies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPACE_ID", "someone/textclf")
    cfg = DashboardConfig.from_env(studies_dir=tmp_path)
    assert cfg.public and cfg.max_trials == 8 and cfg.max_train_samples == 2000 and cfg.max_concurrent_studies == 1
    with pytest.raises(ConfigError, match="between 1 and 8"):
        Dashboard(cfg).start_study("x", StudyForm("demo", ["minilm"], trials=20))


def test_backbone_table_says_why_unavailable(trained: Dashboard) -> None:
    rows = {r[0]: r[2] for r in trained.backbone_table(["minilm", "no-such-model"])}
    assert rows["minilm"] == "available"
    assert rows["no-such-model"].startswith("unavailable: unknown backbone")


def test_backbone_boxes_offer_only_what_loads_and_keep_the_ticks_still_offered(trained: Dashboard) -> None:
    from app import _backbones_choice

    table = trained.backbone_table(["minilm", "scratch:minilm", "no-such-model"])
    table.append(["bert", "BERT", "downloads 440 MB from the Hugging Face Hub"])
    boxes = _backbones_choice(table, ["minilm", "no-such-model", "mpnet"])
    assert [c[1] for c in boxes.choices] == ["minilm", "scratch:minilm", "bert"]
    assert boxes.value == ["minilm"]


def test_study_status_and_models(trained: Dashboard) -> None:
    rows, line = trained.study_status("done")
    assert len(rows) == 1 and rows[0][1] == "tiny-bert" and rows[0][8].startswith("complete")  # tiny: may collapse
    assert rows[0][5] == 2 and rows[0][2] == "1.00e-03"  # the study's fixed epochs, shown on every row
    assert "**done** — ended" in line and "Trials: 1 complete, 0 pruned, 0 failed" in line
    assert "Best accuracy on validation: **tiny\\-bert**" in line and "← chosen" in line
    assert "Baselines: tfidf\\+logreg" in line and "majority class" in line
    assert "Test split (the chosen model, trial 0 tiny\\-bert, scored once): accuracy" in line
    assert "expected calibration error" in line and "temperature" in line
    assert list(trained.models.available()) == ["done / tiny-bert"]
    assert trained.models.best() == "done / tiny-bert"
    with pytest.raises(TextclfError, match="pick one from the list"):
        trained.models.get("../../etc / passwd")


def test_a_trial_in_full(trained: Dashboard) -> None:
    text, fig = trained.trial_detail("done", 0)
    assert text.startswith("**Trial 0** — tiny\\-bert, complete, accuracy ") and "| lr |" in text
    assert "| class | precision | recall | F1 | support |" in text and "| praise |" in text
    assert [t.type for t in fig.data] == ["scatter", "heatmap"] and len(fig.data[0].x) >= 2  # curve, confusion
    with pytest.raises(TextclfError, match="has no trial 7"):
        trained.trial_detail("done", 7)
    with pytest.raises(ConfigError, match="must be a number, got '0; drop table'"):
        trained.trial_detail("done", "0; drop table")
    with pytest.raises(ConfigError, match="whole number"):
        trained.trial_detail("done", 0.5)


def test_compare_charts_are_drawn_once_per_change_of_the_study(trained: Dashboard, monkeypatch) -> None:
    from textclf import charts

    drawn: list[int] = []
    stock = charts.charts_for
    monkeypatch.setattr(charts, "charts_for", lambda record: drawn.append(1) or stock(record))
    trained._charts.clear()
    _, first, key = trained.compare_charts("done")
    _, again, same = trained.compare_charts("done")
    assert again is first and same == key and drawn == [1]  # an unchanged study: no redraw
    assert charts.record_key(charts.read_study(load_study("done", trained.storage)))[2][0][:2] == (0, "COMPLETE")
    monkeypatch.setattr(charts, "record_key", lambda record: ("a trial moved on",))
    _, third, changed = trained.compare_charts("done")
    assert changed != key and third is not first and drawn == [1, 1]


def test_studies_compared_side_by_side_and_one_deleted_with_only_what_textclf_wrote(tiny_models: dict,
                                                                                   tmp_path: Path) -> None:
    folder = tmp_path / "studies"
    folder.mkdir()
    dash = Dashboard(DashboardConfig(storage=f"sqlite:///{folder / 'textclf.db'}", studies_dir=folder))
    for name in ("keep", "drop"):
        run_study(StudyConfig(study=name, data="demo", backbones=["tiny-bert", "tiny-roberta"], trials=2, epochs=1,
                              storage=dash.cfg.storage_url, models_dir=str(folder / "models" / name),
                              space=SearchSpace(lr=(1e-3, 1e-3), batch_sizes=(16,))), progress=False, log=lambda _: None)
    table = dash.compare_studies(["keep", "drop"])
    assert table.count("| accuracy |") == 2 and "| keep |" in table and "| drop |" in table
    foreign = folder / "models" / "drop" / "tiny-roberta" / "notes.txt"
    foreign.write_text("mine")
    with pytest.raises(ConfigError, match="type its name"):
        dash.delete_study("drop", "dro")
    msg = dash.delete_study("drop", "drop")
    assert "Deleted study **drop** and its 1 kept model(s)" in msg and "tiny\\-roberta" in msg
    assert dash.list_studies() == ["keep"] and foreign.read_text() == "mine"  # not textclf's: left in place
    assert not (folder / "models" / "drop" / "tiny-bert").exists()
    assert len(dash.models.available()) == 2 + 1  # keep's two, and drop's folder holding a foreign file
    public = Dashboard(replace(dash.cfg, public=True))
    with pytest.raises(ConfigError, match="switched off on a public app"):
        public.delete_study("keep", "keep")


def test_predict_and_batch_predict(trained: Dashboard, tmp_path: Path) -> None:
    probs, info = trained.predict("Is it waterproof?", BEST)
    assert set(probs) == {"complaint", "praise", "question"} and "ms" in info and "model done" in info
    upload = Path(trained.cfg.uploads) / "batch.csv"
    upload.write_text('text\nIs it waterproof?\n""\nBroke in a day\n', encoding="utf-8")
    out = trained.predict_file(str(upload), None)
    with open(out, encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["text"] for r in rows] == ["Is it waterproof?", "", "Broke in a day"]
    assert rows[0]["label"] in probs and rows[1]["label"] == ""  # an empty row is kept, not classified
    with pytest.raises(DataError, match="empty"):
        trained.predict("  ", BEST)


def test_model_downloads_as_pytorch_and_onnx_zips(trained: Dashboard, tmp_path: Path) -> None:
    import zipfile

    from textclf.predict import Predictor

    torch_zip = Path(trained.download_model(BEST, "pytorch"))
    assert trained.download_model("done / tiny-bert", "pytorch") == str(torch_zip)  # made once, then served again
    onnx_zip = Path(trained.download_model(BEST, "onnx"))
    for archive in (torch_zip, onnx_zip):
        with zipfile.ZipFile(archive) as zf:
            names = zf.namelist()
            assert len({n.split("/")[0] for n in names}) == 1 and "textclf.json" in {n.split("/")[1] for n in names}
            zf.extractall(tmp_path / archive.stem)
    (torch_dir,), (onnx_dir,) = (list((tmp_path / a.stem).iterdir()) for a in (torch_zip, onnx_zip))
    assert (torch_dir / "model.safetensors").is_file() and (onnx_dir / "model.onnx").is_file()
    text = "Is it waterproof?"
    assert Predictor.from_dir(onnx_dir).predict_one(text).label == Predictor.from_dir(torch_dir).predict_one(text).label
    assert not [p for p in torch_zip.parent.iterdir() if p.suffix != ".zip"]  # the ONNX folder went once zipped
    with pytest.raises(TextclfError, match="download format must be one of"):
        trained.download_model(BEST, "../../x")
    with pytest.raises(TextclfError, match="pick one from the list"):
        trained.download_model("../../etc / passwd", "pytorch")


def test_review_shows_reliability_and_browses_errors(trained: Dashboard) -> None:
    from textclf.data import load_data

    fig, table = trained.calibration_view("done")
    assert "| tiny\\-bert |" in table and "temperature" in table
    names = [t.name for t in fig.data]
    assert "perfectly calibrated" in names and any(n.startswith("tiny-bert before") for n in names)
    assert any(n.startswith("tiny-bert T=") for n in names)
    models, labels = trained.error_choices("done")
    assert models == ["tiny-bert"] and labels == ["complaint", "praise", "question"]
    val = load_data("demo").validation
    every = trained.error_view("done", "tiny-bert", "all", limit=1000)
    assert [r[0] for r in every] == list(range(len(val.texts))) and every[0][1] == val.texts[0]
    wrong = trained.error_view("done", "tiny-bert", "confident_wrong")
    assert all(r[2] != r[3] for r in wrong)
    assert [r[4] for r in wrong] == sorted((r[4] for r in wrong), reverse=True)
    ambiguous = trained.error_view("done", "tiny-bert", "ambiguous")
    assert [r[5] for r in ambiguous] == sorted(r[5] for r in ambiguous)
    cell = trained.error_view("done", "tiny-bert", "all", "praise", "praise", limit=1000)
    assert cell and all(r[2] == r[3] == "praise" for r in cell)
    assert all("e" in r[1].lower() for r in trained.error_view("done", "tiny-bert", "all", query="E", limit=1000))
    with pytest.raises(TextclfError, match="pick one of the study's kept models"):
        trained.error_view("done", "../../etc", "all")
    row = trained.error_view("done", "tiny-bert", "all", "praise", None, limit=1000)  # the matrix's praise row
    assert {r[2] for r in row} == {"praise"} and {r[0] for r in cell} <= {r[0] for r in row}
    column = trained.error_view("done", "tiny-bert", "all", None, "praise", limit=1000)
    assert {r[3] for r in column} == {"praise"}
    with pytest.raises(TextclfError, match="the true label '<b>nope</b>' is not one of this study's labels"):
        trained.error_view("done", "tiny-bert", "all", "<b>nope</b>", None)


def test_live_box_predictions_from_concurrent_sessions_share_forward_passes(trained: Dashboard,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Gradio runs up to 4 Predict events at once; they join the REST endpoint's shared batches."""
    import threading

    predictor = trained.models.get(BEST)
    batches: list[list[str]] = []
    gate = threading.Event()
    predict = predictor._coalescer._predict

    def recording(texts: list[str]) -> list:
        batches.append(list(texts))
        gate.wait(5)  # the first batch holds the worker while the other calls queue behind it
        return predict(texts)

    monkeypatch.setattr(predictor._coalescer, "_predict", recording)
    texts = ["Is it waterproof?", "Broke in a day", "Love it", "Where is my refund"]
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(trained.predict, texts[0], BEST)
        deadline = time.monotonic() + 5
        while not batches and time.monotonic() < deadline:
            time.sleep(0.001)
        rest = [pool.submit(trained.predict, t, BEST) for t in texts[1:]]
        while predictor._coalescer._queue.qsize() < 3 and time.monotonic() < deadline:
            time.sleep(0.001)
        gate.set()
        answers = [first.result(10)] + [f.result(10) for f in rest]
    assert batches[0] == texts[:1] and sorted(batches[1]) == sorted(texts[1:]) and len(batches) == 2
    assert [a[1].split(" · ")[0] for a in answers] == [trained.predict(t, BEST)[1].split(" · ")[0] for t in texts]


def test_the_app_compiles_the_live_boxs_model_but_not_the_attention_views(trained: Dashboard,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import textclf.predict as predict_mod
    from textclf.dashboard import ModelStore

    asked: list[tuple[str | None, bool]] = []
    real = predict_mod.Predictor.from_dir.__func__

    def from_dir(cls, folder, *, attn_implementation=None, precision="auto", compile=False):
        asked.append((attn_implementation, compile))
        return real(cls, folder, attn_implementation=attn_implementation, precision="fp32")

    monkeypatch.setattr(predict_mod.Predictor, "from_dir", classmethod(from_dir))
    store = ModelStore(trained.cfg.models_dir, compile=True)
    store.get(BEST)
    store.get(BEST, eager=True)
    assert asked == [(None, True), ("eager", False)]
    ModelStore(trained.cfg.models_dir).get(BEST)  # the library default (and the tests'): no compiling
    assert asked[-1] == (None, False)


def test_attention_callback_renders_escaped_html(trained: Dashboard) -> None:
    payload = "<script>alert(1)</script> broke"
    fig, html_out = trained.attention(payload, [BEST], layer=1, head=None)
    assert fig.data and "<script" not in html_out  # tiny-bert maps "<" to [UNK]; escaping itself: test_attention
    assert html_out.count("textclf-model") == 1 and "attention rollout" in html_out and "saliency" in html_out


def test_attention_for_two_models_draws_two_titled_heatmaps_in_their_own_ranges(trained: Dashboard) -> None:
    import json

    cfg = json.loads((trained.models.available()["done / tiny-bert"] / "config.json").read_text())
    assert trained.attention_shape(None) == (cfg["num_hidden_layers"], cfg["num_attention_heads"])
    fig, html_out = trained.attention("it broke", [BEST, "done / tiny-bert"], layer=7, head=None)
    assert [t.type for t in fig.data] == ["heatmap", "heatmap"]
    titles = [a.text for a in fig.layout.annotations]
    assert titles == [f"done / tiny-bert: layer {cfg['num_hidden_layers'] - 1}, mean of heads"] * 2
    assert html_out.count("textclf-model") == 2 and "showing layer" in html_out  # the clamp is said, not silent


def test_worker_process_runs_a_study_and_stop_keeps_finished_trials(trained: Dashboard, tiny_models: dict) -> None:
    bert = tiny_models["tiny-bert"]
    trained.cfg.backbones = [*trained.cfg.backbones, bert]  # a folder: offered only because the operator says so
    # A tiny model's trial takes well under a second: enough of them that the study still runs at the stop below.
    trained.start_study("bg", StudyForm("demo", [bert], 50, lr=(1e-3, 2e-3), head_lr_ratio=(1.0, 10.0), batch_sizes=[16],
                                         epochs=2, pruner="none"))
    with pytest.raises(ConfigError, match="already running"):
        trained.start_study("bg", StudyForm("demo", [bert], 1))

    def two_done() -> bool:
        try:
            return sum(r[8].startswith("complete") for r in trained.study_status("bg")[0]) >= 2
        except TextclfError:
            return False

    wait_for(two_done)
    assert trained.studies.stop("bg")
    worker = trained.studies.worker("bg")
    assert worker is not None and not worker.running
    states = [t.state.name for t in load_study("bg", trained.cfg.storage_url).trials]
    assert states.count("COMPLETE") >= 2 and "RUNNING" not in states  # the interrupted trial ended, none lost
    assert "interrupted" in worker.tail(3)

    # Resume the stopped study from the UI: one more trial, same data and search space.
    before = len(load_study("bg", trained.cfg.storage_url).trials)
    assert "resumed" in trained.resume_study("bg", 1)
    wait_for(lambda: not trained.studies.worker("bg").running, timeout=120)
    trials = load_study("bg", trained.cfg.storage_url).trials
    assert len(trials) == before + 1 and trials[-1].state.name == "COMPLETE"


def test_the_tabs_hold_nothing_but_tabs(trained: Dashboard) -> None:
    """A component made beside the tabs becomes a child of gr.Tabs and moves every later tab one place on in the
    browser's tab bar (a later tab then shows twice, another not at all)."""
    from app import build_demo

    cfg = build_demo(dashboard=trained).config
    kinds = {c["id"]: c["type"] for c in cfg["components"]}

    def tabs(node: dict) -> list[list[str]]:
        here = [[kinds[c["id"]] for c in node.get("children", [])]] if kinds.get(node["id"]) == "tabs" else []
        return here + [t for c in node.get("children", []) for t in tabs(c)]

    assert tabs(cfg["layout"]) == [["tabitem"] * 5]


def test_launched_app_serves_the_predict_api(trained: Dashboard) -> None:
    from gradio_client import Client

    from app import build_demo

    demo = build_demo(storage=trained.cfg.storage, studies_dir=str(trained.cfg.studies_dir), public=False)
    _, url, _ = demo.launch(prevent_thread_lock=True, server_port=None, quiet=True)
    try:
        client = Client(url, verbose=False)
        label, info = client.predict("Does it come with a warranty?", api_name="/predict")  # only the text
        assert label["label"] in {"complaint", "praise", "question"}
        assert len(label["confidences"]) == 3 and "ms" in info
        api = client.view_api(print_info=False, return_format="dict")
        assert "/predict" in api["named_endpoints"]
        params = api["named_endpoints"]["/predict"]["parameters"]
        assert params[0]["parameter_name"] == "text" and params[1]["parameter_has_default"]
    finally:
        demo.close()


def test_rest_predict_endpoint_beside_the_dashboard(trained: Dashboard) -> None:
    from fastapi.testclient import TestClient

    from app import build_app, build_demo

    app = build_app(trained, build_demo(dashboard=trained))
    with TestClient(app) as client:
        ok = client.post("/api/predict", json={"text": "Is it waterproof?"})
        assert ok.status_code == 200
        body = ok.json()
        assert body["label"] in {"complaint", "praise", "question"} and body["latency_ms"] > 0
        assert abs(sum(body["probabilities"].values()) - 1) < 1e-5
        bad = client.post("/api/predict", json={"text": "  "})
        assert bad.status_code == 422 and "empty" in bad.json()["error"]
        unknown = client.post("/api/predict", json={"text": "hi", "model": "../../etc"})
        assert unknown.status_code == 422 and "pick one from the list" in unknown.json()["error"]
        assert client.get("/").status_code == 200  # the dashboard itself


def test_study_form_hands_the_worker_the_config_it_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker gets the StudyConfig itself (run --config), not a command line rebuilt from it, and a
    studies/NAME.toml preset of the same name does not join in."""
    import json
    import subprocess

    from textclf.cli import _run_config, build_parser
    from textclf.config import StudyConfig

    dash = Dashboard(DashboardConfig.from_env(studies_dir=tmp_path))
    commands: list[list[str]] = []

    class Done:
        pid, returncode = 0, 0

        def __init__(self, cmd: list[str], **kwargs: object) -> None:
            commands.append(cmd)

        def poll(self) -> int:
            return 0

    monkeypatch.setattr(subprocess, "Popen", Done)
    (tmp_path / "ml.toml").write_text('data = "demo"\ntrials = 40\nepochs = 7\n', encoding="utf-8")
    dash.start_study("ml", StudyForm("demo-multilabel", ["minilm"], 2, lr=(1e-5, 1e-4), head_lr_ratio=(1, 10),
                                     batch_sizes=[16], threshold_mode="per_class", class_weight="balanced", jobs=2))
    cmd = commands[0]
    assert cmd[2:6] == ["textclf", "run", "--study", "ml"] and cmd[6] == "--config" and len(cmd) == 8
    handed = StudyConfig.from_dict(json.loads(Path(cmd[7]).read_text(encoding="utf-8")))
    assert (handed.threshold_mode, handed.class_weight, handed.jobs, handed.trials) == ("per_class", "balanced", 2, 2)
    assert handed.data == "demo-multilabel" and handed.epochs is None and handed.storage == dash.cfg.storage_url
    monkeypatch.setenv("TEXTCLF_STUDIES_DIR", str(tmp_path))
    assert _run_config(build_parser().parse_args(cmd[3:])) == handed  # the worker's config, the preset left out
    with pytest.raises(ConfigError, match="--config gives every setting; drop --trials"):
        _run_config(build_parser().parse_args([*cmd[3:], "--trials", "3"]))
    with pytest.raises(ConfigError, match="trials side by side must be between 1 and"):
        dash.start_study("ml", StudyForm("demo-multilabel", ["minilm"], 2, jobs=(os.cpu_count() or 1) + 1))
    with pytest.raises(ConfigError, match="threshold_mode must be one of global, per_class, got 'each'"):
        dash.start_study("ml", StudyForm("demo-multilabel", ["minilm"], 2, threshold_mode="each"))


def test_best_model_ranks_by_each_studys_metric_and_passes_over_a_broken_folder(tmp_path: Path) -> None:
    import json

    from textclf.dashboard import ModelStore

    def kept(study: str, metric: str | None, validation: dict) -> None:
        folder = tmp_path / study / "tiny-bert"
        folder.mkdir(parents=True)
        info = {"label_names": ["a", "b"], "task": "single_label", "backbone": "tiny-bert",
                "metrics": {"validation": validation}, "metric": metric}
        (folder / "textclf.json").write_text(json.dumps(info), encoding="utf-8")

    kept("by-f1", "macro_f1", {"accuracy": 0.95, "macro_f1": 0.60})  # chosen on F1: 0.60 is its score
    kept("by-acc", "accuracy", {"accuracy": 0.80, "macro_f1": 0.79})
    kept("old", None, {"accuracy": 0.70})  # kept before the metric was recorded: the task's default
    (tmp_path / "broken" / "tiny-bert").mkdir(parents=True)
    (tmp_path / "broken" / "tiny-bert" / "textclf.json").write_text("{not json", encoding="utf-8")
    store = ModelStore(tmp_path)
    assert len(store.available()) == 4 and store.best() == "by-acc / tiny-bert"
    with pytest.raises(TextclfError, match=r"textclf\.json cannot be read"):
        store.get("broken / tiny-bert")


def test_callbacks_wait_for_the_start_up_imports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two callbacks importing sklearn and plotly at once can deadlock on narwhals: the app imports them in one
    thread at start-up and every callback waits for that."""
    import sys
    import threading

    from app import guard

    (tmp_path / "slow_textclf_probe.py").write_text("import time\ntime.sleep(0.5)\nDONE = True\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    dash = Dashboard(DashboardConfig.from_env(studies_dir=tmp_path / "studies"))
    seen: list[bool] = []
    warming = dash.warm_up(("slow_textclf_probe",))
    done = lambda: getattr(sys.modules.get("slow_textclf_probe"), "DONE", False)  # noqa: E731  (set at its end)
    callback = threading.Thread(target=guard(dash)(lambda: seen.append(done())))
    callback.start()
    callback.join(10)
    warming.join(10)
    assert seen == [True]  # the callback ran only once the import had finished
    sys.modules.pop("slow_textclf_probe", None)
