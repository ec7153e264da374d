"""textclf dashboard: Data, Study, Compare, Attention, Predict.

    python app.py [--storage URL] [--studies-dir DIR] [--public] [--port 7860]

The layout only: every callback is a small function over ``textclf.dashboard.Dashboard``.
"""

from __future__ import annotations

import argparse
import functools
import os
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from textclf.config import PRUNERS
from textclf.dashboard import BEST, DATA_CHOICES, Dashboard, DashboardConfig, StudyForm
from textclf.errors import TextclfError
from textclf.gradio_guard import GradioGuard
from textclf.gradio_import import without_stub_regeneration
from textclf.gradio_uploads import refuse_files_not_uploaded
from textclf.metrics import THRESHOLD_MODES
from textclf.model_zip import FORMATS
from textclf.safety import MAX_REQUEST_BYTES, MAX_TEXT_CHARS, BodyLimit, check_text_length, md, toast, upload_dir
from textclf.train import CLASS_WEIGHTS

with without_stub_regeneration():  # gradio rewrites its own type stubs on import: ~2 s of start-up (see the module)
    import gradio as gr

DEFAULT_DATA = "demo-banking"  # the bundled sample the Data section opens with
# The same settings as studies/quick-demo.toml, so `python -m textclf run --study quick-demo` repeats it.
QUICK_DEMO = {"study": "quick-demo", "data": "demo-banking", "backbones": ["minilm", "scratch:minilm"], "trials": 4}
ERROR_HEADERS = ["row", "text", "true", "predicted", "confidence", "margin"]
TRIAL_HEADERS = ["#", "backbone", "lr", "head/enc", "batch", "epochs", "weight decay", "warmup", "state", "score",
                 "seconds"]
CHARTS = [("score_by_backbone", "Score by backbone"), ("history", "Optimisation history"),
          ("score_vs_lr", "Score vs encoder LR"), ("score_vs_ratio", "Score vs head/encoder ratio"),
          ("lr_ratio_map", "LR × ratio map"), ("learning_curves", "Learning curves"),
          ("parallel", "Parallel coordinates"), ("importances", "Importances"), ("score_vs_time", "Score vs time"),
          ("confusion", "Confusion matrix"), ("per_class_f1", "Per-class F1"), ("seed_variance", "Seed variance")]
CSS = """
.textclf-header h1 { margin-bottom: 0 }
.textclf-attn { margin: 6px 0 10px }
"""


class PredictRequest(BaseModel):
    """Body of POST /api/predict (module level: FastAPI resolves annotations from module globals)."""

    text: str
    model: str | None = None


def guard(dash: Dashboard) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Callbacks wrapped so that bad input becomes one escaped line in the visitor's toast, without server paths,
    and one line in the server log, never a traceback."""

    def guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            dash.wait_ready()  # the start-up imports (see Dashboard.warm_up)
            try:
                return fn(*args, **kwargs)
            except TextclfError as exc:
                raise gr.Error(toast(dash.refused(fn.__name__, exc)), print_exception=False) from None

        return wrapper

    return guarded


def _session(request: gr.Request | None) -> str | None:
    """The visitor's browser session (a page load), which owns the studies it starts."""
    return getattr(request, "session_hash", None)


def build_demo(storage: str | None = None, studies_dir: str | None = None, public: bool | None = None,
               dashboard: Dashboard | None = None) -> gr.Blocks:
    """The five sections, each built (layout and wiring) by its own function over one ``Dashboard``."""
    dash = dashboard or Dashboard(DashboardConfig.from_env(storage, studies_dir, public))
    cfg = dash.cfg
    hourly = (3600, int(cfg.cache_hours * 3600)) if cfg.cache_hours else None  # visitors' uploads fill no disk
    with gr.Blocks(title="textclf", delete_cache=hourly) as demo:
        caps = (f"\n\n*Public mode: at most {cfg.max_trials} trials, {cfg.max_train_samples} training rows, "
                f"{cfg.max_timeout_min:g} minutes and one study at a time, {cfg.max_upload_mb:g} MB uploads, "
                f"{MAX_TEXT_CHARS:,} characters a text.*") if cfg.public else ""
        gr.Markdown("# textclf\nFine-tune and compare transformer text classifiers: pretrained vs scratch vs TF-IDF, "
                    "learning rates and the head/encoder learning-rate ratio." + caps, elem_classes="textclf-header")
        source = gr.State(DEFAULT_DATA)  # the data chosen in Data, which Study trains on
        with gr.Tabs():
            _data_section(dash, source, demo)
            backbone_tbl, backbone_pick, existing = _study_section(dash, source)
            _compare_section(dash, existing)
            attn_models = _attention_section(dash)
            pred_model = _predict_section(dash)

        @guard(dash)
        def initial(ticked: list[str] | None) -> tuple[Any, ...]:
            table = dash.backbone_table()
            return (table, _backbones_choice(table, ticked), _studies_update(dash), _model_choice(dash),
                    _models_choice(dash))

        demo.load(initial, backbone_pick, [backbone_tbl, backbone_pick, existing, pred_model, attn_models],
                  api_visibility="private")
    demo.queue(default_concurrency_limit=4, max_size=64 if cfg.public else None)
    return demo


def _studies_update(dash: Dashboard, selected: str | None = None) -> Any:
    names = dash.list_studies()
    return gr.Dropdown(choices=names, value=selected if selected in names else (names[-1] if names else None))


def _backbones_choice(table: list[list[str]], ticked: list[str] | None) -> Any:
    """The backbone boxes offer only what loads here or downloads (the table above says why the others don't); a
    visitor's ticks are kept where still offered. Start checks the names again: a client need not load the page."""
    offered = [row[0] for row in table if not str(row[2]).startswith("unavailable")]
    return gr.CheckboxGroup(choices=offered, value=[b for b in ticked or [] if b in offered])


def _model_choice(dash: Dashboard) -> Any:
    # allow_custom_value: API clients that never loaded the page may name any trained model; the store checks it.
    return gr.Dropdown(choices=[BEST, *dash.models.available()], value=BEST, allow_custom_value=True)


def _models_choice(dash: Dashboard) -> Any:
    return gr.Dropdown(choices=list(dash.models.available()), value=[], allow_custom_value=True)


def _data_section(dash: Dashboard, source: gr.State, demo: gr.Blocks) -> None:
    with gr.Tab("Data", id="data"):
        with gr.Row():
            preset = gr.Dropdown(DATA_CHOICES, value=DEFAULT_DATA, label="Preset",
                                 info="Used unless a file is uploaded or a hub id typed (an upload wins over a hub id)")
            upload = gr.File(label="…or upload a file (.csv .tsv .json .jsonl .parquet)",
                             file_types=[".csv", ".tsv", ".json", ".jsonl", ".parquet"], type="filepath")
            hub_id = gr.Textbox(label="…or a Hugging Face dataset id (online)", placeholder="owner/name", max_length=200)
        load_btn = gr.Button("Load data", variant="primary")
        data_md = gr.Markdown()
        with gr.Row():
            # Wrapped, with the labels column kept in view: long texts would otherwise push it out of sight.
            preview = gr.Dataframe(headers=["text", "label(s)"], label="Preview (train)", max_height=360, wrap=True,
                                   column_widths=["70%", "30%"], elem_id="data-preview")
            dist = gr.Plot(label="Label distribution")

    @guard(dash)
    def load_data(p: str, up: str | None, hub: str) -> tuple[Any, ...]:
        try:
            src = dash.resolve_data(p, up, hub)
            md, rows, fig = dash.describe_data(src)
        except TextclfError as exc:
            # A toast, and everything shown stays as it was: the data a study will use is the data on screen.
            gr.Warning(toast(f"{dash.refused('load_data', exc)} (the data shown is unchanged)"))
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        return src, md, rows, fig

    outputs = [source, data_md, preview, dist]
    load_btn.click(load_data, [preset, upload, hub_id], outputs, api_visibility="private")
    preset.input(load_data, [preset, upload, hub_id], outputs, api_visibility="private")
    demo.load(load_data, [preset, upload, hub_id], outputs, api_visibility="private")  # the preselected sample


def _read_form(form: dict[str, Any], values: dict[Any, Any]) -> StudyForm:
    """The StudyForm a visitor sent: each field's value from its component (a pair of them for a range)."""
    read = {key: tuple(values[c] for c in comp) if isinstance(comp, tuple) else values[comp]
            for key, comp in form.items()}
    read["backbones"] = list(read["backbones"] or [])
    read["batch_sizes"] = list(read["batch_sizes"] or [])
    return StudyForm(**read)


def _study_section(dash: Dashboard, source: gr.State) -> tuple[gr.Dataframe, gr.CheckboxGroup, gr.Dropdown]:
    cfg = dash.cfg
    with gr.Tab("Study", id="study"):
        backbone_tbl = gr.Dataframe(headers=["backbone", "model", "status"], label="Backbones", max_height=320,
                                    wrap=True, column_widths=["14%", "36%", "50%"])  # the status says why, in full
        with gr.Row():
            study_name = gr.Textbox(value="my-study", label="Study name")
            backbones = gr.CheckboxGroup(cfg.backbones, value=[b for b in ("minilm", "scratch:minilm") if b in cfg.backbones],
                                         label="Backbones (those that load here; the table says why others don't)")
        default = StudyForm(data=DEFAULT_DATA, backbones=[])
        with gr.Row():
            trials = gr.Slider(1, cfg.max_trials, value=min(int(default.trials), cfg.max_trials), step=1,
                               label="Trials to add")
            timeout = gr.Number(value=0, label="Time budget (minutes, 0 = none)")
            pruner = gr.Dropdown(list(PRUNERS), value=default.pruner, label="Pruner")
        with gr.Accordion("Search space", open=False):
            with gr.Row():
                lr_lo = gr.Number(value=default.lr[0], label="encoder LR from")
                lr_hi = gr.Number(value=default.lr[1], label="encoder LR to")
                ratio_lo = gr.Number(value=default.head_lr_ratio[0], label="head/encoder ratio from")
                ratio_hi = gr.Number(value=default.head_lr_ratio[1], label="head/encoder ratio to")
            with gr.Row():
                batch_sizes = gr.CheckboxGroup([8, 16, 32, 64], value=default.batch_sizes,
                                               label="Batch sizes (none ticked: scaled to the training rows)")
                epochs = gr.Slider(0, 8, value=0, step=1, label="Epochs (0 = searched, scaled to the training rows)")
                seeds = gr.Slider(0, 5, value=default.seeds, step=1,
                                  label="Seeds: re-run each backbone's best config k times")
                jobs = gr.Slider(1, max(2, os.cpu_count() or 1), value=default.jobs, step=1,
                                 label="Trials side by side (processes sharing the cores; 1 = repeatable)")
            with gr.Row():
                thresholds = gr.Dropdown(list(THRESHOLD_MODES), value=default.threshold_mode,
                                         label="Multi-label thresholds (chosen on validation)")
                class_weight = gr.Dropdown(["auto", *CLASS_WEIGHTS, "search"], value=default.class_weight,
                                           label="Class weights (auto: searched for skewed labels, else none)")
        with gr.Row():
            quick_btn = gr.Button(f"Quick demo ({QUICK_DEMO['trials']} trials, minilm vs random weights, "
                                  f"{QUICK_DEMO['data']})", variant="secondary")
            start_btn = gr.Button("Start", variant="primary")
            resume_btn = gr.Button("Resume selected")
            stop_btn = gr.Button("Stop", variant="stop")
        with gr.Row():
            # Custom values: the choices are filled per session; the callbacks check the name against the storage.
            existing = gr.Dropdown([], label="Open a study in the storage", allow_custom_value=True)
            refresh_btn = gr.Button("↻", scale=0, min_width=60)
        study_msg = gr.Markdown()
        msg_for = gr.State(None)  # the study that study_msg's "started" line is about: cleared when it ends
        status_md = gr.Markdown("No study selected.", elem_id="study-summary")
        trial_tbl = gr.Dataframe(headers=TRIAL_HEADERS, label="Trials (live): click a row for the trial in full",
                                 max_height=420, interactive=False, elem_id="trial-table")
        picked = gr.State(None)  # the trial number whose details are shown (refreshed while it runs)
        with gr.Row():
            trial_md = gr.Markdown(elem_id="trial-detail")
            trial_plot = gr.Plot(label="The trial")
        with gr.Accordion("Manage studies", open=False):
            compare_pick = gr.Dropdown([], multiselect=True, label="Compare studies' best results",
                                       allow_custom_value=True)
            compare_out = gr.Markdown()
            if not dash.cfg.public:  # a public app never deletes
                with gr.Row():
                    confirm = gr.Textbox(label="Delete the selected study: type its name to confirm", max_length=120)
                    delete_btn = gr.Button("Delete study and its models", variant="stop")
        ticker = gr.Timer(2.0)

    guarded = guard(dash)

    # Each StudyForm field and the component(s) it is read from: the start callback takes them as one dict.
    form: dict[str, Any] = {"data": source, "backbones": backbones, "trials": trials, "timeout_min": timeout,
                            "pruner": pruner, "lr": (lr_lo, lr_hi), "head_lr_ratio": (ratio_lo, ratio_hi),
                            "batch_sizes": batch_sizes, "epochs": epochs, "seeds": seeds, "threshold_mode": thresholds,
                            "class_weight": class_weight, "jobs": jobs}

    @guarded
    def start(values: dict[Any, Any], request: gr.Request) -> tuple[str, Any, str]:
        name = (values[study_name] or "").strip()
        msg = dash.start_study(name, _read_form(form, values), owner=_session(request))
        return msg, gr.Dropdown(choices=sorted({*dash.list_studies(), name}), value=name), name

    components = {study_name} | {c for v in form.values() for c in (v if isinstance(v, tuple) else (v,))}
    start_btn.click(start, components, [study_msg, existing, msg_for], api_visibility="private")

    @guarded
    def quick(request: gr.Request) -> tuple[str, Any, str, str]:
        demo = StudyForm(data=QUICK_DEMO["data"], backbones=QUICK_DEMO["backbones"], trials=QUICK_DEMO["trials"])
        msg = dash.start_study(QUICK_DEMO["study"], demo, owner=_session(request))
        names = sorted({*dash.list_studies(), QUICK_DEMO["study"]})
        return msg, gr.Dropdown(choices=names, value=QUICK_DEMO["study"]), QUICK_DEMO["study"], QUICK_DEMO["study"]

    # The backbone boxes are left as they are (the message names the quick demo's backbones).
    quick_btn.click(quick, None, [study_msg, existing, study_name, msg_for], api_visibility="private")

    @guarded
    def stop(name: str | None, request: gr.Request) -> str:
        return dash.stop_study(name, owner=_session(request))

    stop_btn.click(stop, existing, study_msg, api_visibility="private")

    @guarded
    def resume(name: str | None, n: float, tmo: float | None, request: gr.Request) -> tuple[str, str | None]:
        return dash.resume_study(name, n, tmo, owner=_session(request)), name

    resume_btn.click(resume, [existing, trials, timeout], [study_msg, msg_for], api_visibility="private")
    refresh_btn.click(guarded(lambda s: _studies_update(dash, s)), existing, existing, api_visibility="private")

    @guarded
    def status(name: str | None) -> tuple[list, str]:
        return dash.study_status(name)

    existing.change(status, existing, [trial_tbl, status_md], api_visibility="private")
    ticker.tick(status, existing, [trial_tbl, status_md], api_visibility="private")

    @guarded
    def clear_started(about: str | None) -> tuple[Any, Any]:
        """The "Study … started" line goes once that study's worker has ended: the summary says how it ended."""
        worker = dash.studies.worker(about) if isinstance(about, str) else None
        if about is None or (worker is not None and worker.running):
            return gr.skip(), gr.skip()
        return "", None

    ticker.tick(clear_started, msg_for, [study_msg, msg_for], api_visibility="private")

    @guarded
    def pick_trial(name: str | None, evt: gr.SelectData) -> tuple[Any, str, Any]:
        row = evt.row_value if isinstance(evt.row_value, list) else []
        if not row:
            raise TextclfError("pick a row of the trial table")
        return (row[0], *dash.trial_detail(name, row[0]))  # the row's first cell: the trial number

    trial_tbl.select(pick_trial, existing, [picked, trial_md, trial_plot], api_visibility="private")

    @guarded
    def trial_live(name: str | None, number: Any) -> tuple[Any, Any]:
        worker = dash.studies.worker(name or "")
        if number is None or worker is None or not worker.running:
            return gr.skip(), gr.skip()  # nothing changes: don't redraw
        return dash.trial_detail(name, number)

    ticker.tick(trial_live, [existing, picked], [trial_md, trial_plot], api_visibility="private")

    compare_pick.focus(guarded(lambda: gr.Dropdown(choices=dash.list_studies())), None, compare_pick,
                       api_visibility="private")
    compare_pick.input(guarded(dash.compare_studies), compare_pick, compare_out, api_visibility="private")
    if not dash.cfg.public:
        @guarded
        def delete(name: str | None, typed: str | None, request: gr.Request) -> tuple[str, Any, str]:
            msg = dash.delete_study(name, typed, owner=_session(request))
            return msg, _studies_update(dash), ""

        delete_btn.click(delete, [existing, confirm], [study_msg, existing, confirm], api_visibility="private")
    existing.change(lambda _: (None, "", None), existing, [picked, trial_md, trial_plot], api_visibility="private")
    return backbone_tbl, backbones, existing


def _compare_section(dash: Dashboard, existing: gr.Dropdown) -> None:
    with gr.Tab("Compare", id="compare") as compare_tab:
        compare_md = gr.Markdown("Open a study in the Study section; charts update while it runs.")
        plots = {}
        for i in range(0, len(CHARTS), 2):
            with gr.Row():
                for key, label in CHARTS[i:i + 2]:
                    plots[key] = gr.Plot(label=label, show_label=False)  # each figure carries its own title
        compare_ticker = gr.Timer(6.0)
        # Made inside the tab like every component: one made beside the tabs becomes a child of gr.Tabs, which
        # moves every later tab one place on in the browser (Attention then took Predict's place in the tab bar).
        drawn = gr.State(None)  # the key of the charts this page shows (see Dashboard.compare_charts)
        with gr.Accordion("What the best models get wrong, and how far to trust them", open=False) as review_box:
            with gr.Row():
                reliability_plot = gr.Plot(label="Reliability")
                calibration_md = gr.Markdown(elem_id="calibration-md")
            with gr.Row():
                err_model = gr.Dropdown([], label="Best model of", elem_id="err-model")
                err_kind = gr.Radio([("most confidently wrong", "confident_wrong"), ("most ambiguous", "ambiguous"),
                                     ("all", "all")], value="confident_wrong", label="Rows")
            with gr.Row():
                err_gold = gr.Dropdown([], label="Confusion cell: true label", elem_id="err-gold")
                err_pred = gr.Dropdown([], label="predicted label", elem_id="err-pred")
                err_query = gr.Textbox(label="Text contains", max_length=200)
            err_table = gr.Dataframe(headers=ERROR_HEADERS, label="Validation rows", max_height=420,
                                     elem_id="err-table")

    guarded = guard(dash)

    @guarded
    def compare(name: str | None) -> tuple[Any, ...]:
        import time

        from textclf.summary import study_overview, study_warnings

        if not name:
            return (None, "Open a study in the Study section; charts update while it runs.", *[None] * len(plots))
        record, figs, key = dash.compare_charts(name)
        worker = dash.studies.worker(name)
        overview = study_overview(record, running=worker is not None and worker.running, now=time.time())
        warnings = "".join(f"\n\n**Warning:** {md(w)}" for w in study_warnings(record))
        return (key, "\n\n".join([f"Study **{md(name)}** — the charts' scores are on the validation split.",
                                   *overview]) + warnings, *[figs[k] for k in plots])

    compare_outputs = [drawn, compare_md, *plots.values()]
    compare_tab.select(compare, existing, compare_outputs, api_visibility="private")
    existing.change(compare, existing, compare_outputs, api_visibility="private")

    @guarded
    def compare_live(name: str | None, shown: Any) -> tuple[Any, ...]:
        worker = dash.studies.worker(name or "")
        if worker is None or not worker.running:
            return tuple(gr.skip() for _ in compare_outputs)  # nothing changes: don't redraw
        out = compare(name)
        if out[0] == shown:  # the same charts as on screen: only the summary (elapsed, time left) moves
            return (gr.skip(), out[1], *[gr.skip() for _ in plots])
        return out

    compare_ticker.tick(compare_live, [existing, drawn], compare_outputs, api_visibility="private")

    @guarded
    def review(name: str | None) -> tuple[Any, ...]:
        if not name:
            return None, "Open a study in the Study section.", gr.update(choices=[]), gr.update(choices=[]), \
                gr.update(choices=[]), []
        fig, table = dash.calibration_view(name)
        models, labels = dash.error_choices(name)
        first = models[0] if models else None
        rows = dash.error_view(name, first) if first else []
        cells = [("(any)", "")] + [(n, n) for n in labels]
        return (fig, table, gr.update(choices=models, value=first), gr.update(choices=cells, value=""),
                gr.update(choices=cells, value=""), rows)

    review_outputs = [reliability_plot, calibration_md, err_model, err_gold, err_pred, err_table]
    review_box.expand(review, existing, review_outputs, api_visibility="private")

    @guarded
    def browse(name: str | None, model: str | None, kind: str, gold: str | None, predicted: str | None,
               query: str | None) -> list[list[Any]]:
        return dash.error_view(name, model, kind, gold or None, predicted or None, query=query or None)

    browse_inputs = [existing, err_model, err_kind, err_gold, err_pred, err_query]
    for control in (err_model, err_kind, err_gold, err_pred):
        control.input(browse, browse_inputs, err_table, api_visibility="private")
    err_query.submit(browse, browse_inputs, err_table, api_visibility="private")


def _attention_section(dash: Dashboard) -> gr.Dropdown:
    with gr.Tab("Attention", id="attention") as attention_tab:
        attn_text = gr.Textbox(value="The headphones broke after two days and support never replied.",
                               label="Sentence", lines=2, max_length=MAX_TEXT_CHARS)
        with gr.Row():
            attn_models = gr.Dropdown([], multiselect=True, label="Models (side by side; default: the best)",
                                      allow_custom_value=True)  # filled per session; the store checks names
            layer = gr.Slider(0, 11, value=0, step=1, label="Layer")
            head = gr.Slider(-1, 15, value=-1, step=1, label="Head (-1 = mean of heads)")
        attn_btn = gr.Button("Show attention", variant="primary")
        attn_plot = gr.Plot(label="tokens × tokens")
        attn_html = gr.HTML()

    guarded = guard(dash)

    @guarded
    def show_attention(text: str, models: list[str] | None, lay: float, hd: float) -> tuple[Any, str]:
        return dash.attention(text, models, int(lay), None if hd < 0 else int(hd))

    attention_tab.select(guarded(lambda: _models_choice(dash)), None, attn_models, api_visibility="private")

    @guarded
    def ranges(models: list[str] | None, lay: float, hd: float) -> tuple[Any, Any]:
        """The sliders offer the layers and heads the chosen models have."""
        try:
            n_layers, n_heads = dash.attention_shape(models)
        except TextclfError:
            return gr.skip(), gr.skip()  # no model yet: the sliders stay as they are until one is trained
        return (gr.update(maximum=n_layers - 1, value=min(int(lay), n_layers - 1)),
                gr.update(maximum=n_heads - 1, value=min(int(hd), n_heads - 1)))

    attn_models.change(ranges, [attn_models, layer, head], [layer, head], api_visibility="private")
    attn_btn.click(show_attention, [attn_text, attn_models, layer, head], [attn_plot, attn_html],
                   api_visibility="private")
    return attn_models


def _predict_section(dash: Dashboard) -> gr.Dropdown:
    with gr.Tab("Predict", id="predict") as predict_tab:
        with gr.Row():
            pred_text = gr.Textbox(label="Text", lines=1, max_lines=6, placeholder="Type a sentence: it is classified "
                                   "as you type (Enter too)", max_length=MAX_TEXT_CHARS)
            pred_model = gr.Dropdown([BEST], value=BEST, label="Model", allow_custom_value=True)
        pred_btn = gr.Button("Predict", variant="primary")
        with gr.Row():
            pred_label = gr.Label(label="Probabilities", num_top_classes=10, elem_id="pred-label")
            pred_info = gr.Markdown(elem_id="pred-info")
        with gr.Row():
            batch_file = gr.File(label="Batch: a file with a text column", type="filepath",
                                 file_types=[".csv", ".tsv", ".json", ".jsonl", ".parquet"])
            batch_out = gr.File(label="Predictions (CSV)")
        batch_btn = gr.Button("Predict file")
        with gr.Accordion("Download the model", open=False):
            zip_format = gr.Radio([(label, key) for key, (label, _) in FORMATS.items()], value="pytorch",
                                  label="Format",
                                  info="ONNX is exported on request, and only if it agrees with the PyTorch model on "
                                       "the study's validation split (≥ 99.5% of top labels, metric within 0.5 points)")
            zip_btn = gr.Button("Prepare the zip")
            zip_out = gr.File(label="Model (zip)")

    guarded = guard(dash)

    @guarded
    def predict(text: str, model: str | None = BEST) -> tuple[dict[str, float], str]:
        """Classify one text. `model` is optional: by default the best trained model available."""
        return dash.predict(text, model)

    predict_tab.select(guarded(lambda: _model_choice(dash)), None, pred_model, api_visibility="private")
    pred_btn.click(predict, [pred_text, pred_model], [pred_label, pred_info], api_name="predict",
                   api_description="Classify one text: returns per-label probabilities and the predicted label(s) "
                                   "with latency. `model` is optional (default: the best trained model).")
    pred_text.submit(predict, [pred_text, pred_model], [pred_label, pred_info], api_visibility="private")

    @guarded
    def predict_live(text: str, model: str | None) -> tuple[Any, str]:
        """As you type: an empty box clears the answer; a refusal clears it too and says why in the info line (not
        in a toast at every keystroke), rather than leave a stale answer on screen."""
        if not isinstance(text, str) or not text.strip():
            return None, ""
        try:
            return dash.predict(text, model)
        except TextclfError as exc:
            return None, md(dash.refused("predict_live", exc), limit=300)

    pred_text.input(predict_live, [pred_text, pred_model], [pred_label, pred_info], api_visibility="private",
                    trigger_mode="always_last", show_progress="hidden")

    @guarded
    def predict_batch(path: str | None, model: str | None) -> str:
        return dash.predict_file(path or "", model)

    batch_btn.click(predict_batch, [batch_file, pred_model], batch_out, api_visibility="private")

    @guarded
    def download_model(model: str | None, fmt: str) -> str:
        return dash.download_model(model, fmt)

    zip_btn.click(download_model, [pred_model, zip_format], zip_out, api_visibility="private")
    return pred_model


def build_app(dash: Dashboard, demo: gr.Blocks) -> Any:
    """The served app: the dashboard at / plus a plain JSON endpoint, POST /api/predict {"text", "model"?}, for
    programs that want one round trip instead of Gradio's queue protocol (same models, same answers). Request bodies
    are capped (uploads by Gradio's own limit), and the Blocks refuse any file that was not uploaded here."""
    from fastapi import FastAPI, Request
    from fastapi.concurrency import run_in_threadpool
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    api = FastAPI(title="textclf", docs_url="/api/docs", openapi_url="/api/openapi.json")

    @api.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @api.exception_handler(RequestValidationError)
    async def bad_body(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
        return JSONResponse({"error": f"{where}: {first.get('msg', 'invalid')}: expected a JSON object "
                                      '{"text": "...", "model": "..." (optional)}'}, status_code=422)

    @api.post("/api/predict")
    async def predict(req: PredictRequest) -> Any:
        def run() -> dict[str, Any]:
            import time

            check_text_length(req.text)
            dash.wait_ready()
            predictor = dash.models.get(req.model)
            start = time.perf_counter()
            pred = predictor.predict_one(req.text)  # concurrent requests share one forward pass
            return pred.to_dict() | {"latency_ms": 1000 * (time.perf_counter() - start)}

        try:
            return await run_in_threadpool(run)
        except TextclfError as exc:
            return JSONResponse({"error": dash.refused("/api/predict", exc)}, status_code=422)

    # Outermost last: bodies are capped before the guard reads them.
    api.add_middleware(GradioGuard, demo=demo, uploads=dash.cfg.uploads or upload_dir(),
                       uploads_cap_mb=dash.cfg.max_uploads_mb)
    api.add_middleware(BodyLimit, limit=MAX_REQUEST_BYTES, exempt=("/gradio_api/upload",))
    # show_error=False: an unexpected exception's text (which may hold a server path) stays in the log; the
    # visitor's one-line messages are gr.Error, which Gradio shows either way.
    app = gr.mount_gradio_app(api, demo, path="/", theme=gr.themes.Soft(), css=CSS, show_error=False,
                              max_file_size=f"{int(dash.cfg.max_upload_mb)}mb")
    refuse_files_not_uploaded(demo)
    dash.warm_up()
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="textclf dashboard")
    parser.add_argument("--storage", default=None, help="Optuna storage URL (default $TEXTCLF_STORAGE or studies/textclf.db)")
    parser.add_argument("--studies-dir", default=None, help="folder of the default storage and kept models (studies/)")
    parser.add_argument("--public", action="store_true", default=None, help="cap trials, rows, uploads and studies")
    # Hugging Face Spaces sets GRADIO_SERVER_NAME/PORT; locally the app listens on loopback only.
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    parser.add_argument("--no-compile", action="store_true",
                        help="don't compile loaded models in the background (batch-1 predictions ~25%% slower)")
    args = parser.parse_args(argv)
    import uvicorn

    cfg = DashboardConfig.from_env(args.storage, args.studies_dir, args.public)
    cfg.compile_models = not args.no_compile
    dash = Dashboard(cfg)
    app = build_app(dash, build_demo(dashboard=dash))
    print(f"textclf dashboard on http://{args.host}:{args.port}/", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
