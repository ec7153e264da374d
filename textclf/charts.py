"""Comparison charts, split as Optuna splits its own plots: for every chart a pure ``extract_*`` function reads what
it shows from a :class:`~textclf.storage.StudyRecord` into plain data, and a pure ``draw_*`` function draws that data
with Plotly; the chart's own name (``score_by_backbone(record)``) does both. Only :func:`study_data` (the storage's
reader) touches Optuna's storage. Data with nothing to show yet carries a message, drawn as an empty figure that says
why, so empty and one-trial studies never fail.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from textclf.safety import plot_text
from textclf.storage import StudyRecord, TrialRecord, read_study
from textclf.summary import ranking_supported

HEIGHT = 420
PALETTE = ["#4C78A8", "#F58518", "#54A24B", "#E45756", "#72B7B2", "#B279A2", "#FF9DA6", "#9D755D", "#BAB0AC"]
# Below this many completed trials, fANOVA's importances are noise: with 2-4 trials a decisive choice came last.
MIN_IMPORTANCE_TRIALS = 10
LOG_PARAMS = ("lr", "head_lr_ratio")  # sampled on a log scale: drawn on one

study_data = read_study  # the Compare tab's one read of the storage


# ------------------------------------------------------------------------------------------------------ plain data
@dataclass
class Point:
    trial: int
    state: str
    value: float
    x: Any = None
    y: Any = None
    note: str = ""  # e.g. that the trial collapsed onto one answer

    def hover(self) -> str:
        return f"trial {self.trial} ({self.state.lower()})" + (f"<br>{plot_text(self.note)}" if self.note else "")


@dataclass
class Scatter:
    """Trials as points per backbone (the data of most charts)."""

    title: str
    metric: str
    baseline: float | None
    series: dict[str, list[Point]]
    colors: dict[str, str]
    message: str | None = None  # why there is nothing to draw yet
    x_label: str = ""
    baseline_name: str = "tfidf+logreg"


@dataclass
class Curves:
    title: str
    metric: str
    baseline: float | None
    trials: list[tuple[TrialRecord, list[float], list[float | None], list[str]]]  # trial, epochs, scores, hover notes
    colors: dict[str, str]
    message: str | None = None
    baseline_name: str = "tfidf+logreg"


@dataclass
class PerBackbone:
    """One value per backbone's best model: a confusion matrix, per-class F1, or every seed's score."""

    title: str
    metric: str
    values: dict[str, Any]
    colors: dict[str, str]
    label_names: list[str] = field(default_factory=list)
    baseline: float | None = None
    message: str | None = None
    baseline_name: str = "tfidf+logreg"


@dataclass
class Dimension:
    label: str
    values: list[float]
    log: bool = False
    ticks: list[str] | None = None  # a categorical axis's names, at positions 0, 1, ...


@dataclass
class Parallel:
    title: str
    metric: str
    dimensions: list[Dimension]
    scores: list[float]
    message: str | None = None


@dataclass
class Importances:
    title: str
    values: dict[str, float]  # parameter -> share of the score's variance, largest first
    message: str | None = None


# ------------------------------------------------------------------------------------------------------ helpers
def _go() -> Any:
    import plotly.graph_objects as go

    return go


def _layout(fig: Any, title: str, **kwargs: Any) -> Any:
    fig.update_layout(title={"text": title, "x": 0.01}, height=kwargs.pop("height", HEIGHT), template="plotly_white",
                      margin={"l": 60, "r": 20, "t": 60, "b": 50}, legend={"orientation": "h", "y": -0.2}, **kwargs)
    return fig


def empty_figure(title: str, message: str) -> Any:
    """A figure that says why there is nothing to draw yet."""
    go = _go()
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, font={"size": 15, "color": "#666"}, x=0.5, y=0.5,
                       xref="paper", yref="paper")
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _layout(fig, title)


def colors(data: StudyRecord) -> dict[str, str]:
    return {b: PALETTE[i % len(PALETTE)] for i, b in enumerate(data.backbones())}


def _baseline_line(fig: Any, info: Scatter | Curves | PerBackbone) -> None:
    """The best traditional baseline as a dashed reference line."""
    if info.baseline is not None:
        fig.add_hline(y=info.baseline, line_dash="dash", line_color="#888", annotation_position="bottom right",
                      annotation_text=f"baseline ({plot_text(info.baseline_name)}) {info.baseline:.3f}")


def _points(data: StudyRecord, rows: list[TrialRecord], x: Any = None, y: Any = None) -> dict[str, list[Point]]:
    """``rows`` as points per backbone, in the study's backbone order; ``x``/``y`` read a point's coordinates."""
    out: dict[str, list[Point]] = {}
    for backbone in data.backbones():
        sel = [Point(t.number, t.state, float(t.value), x(t) if x else None, y(t) if y else None,  # type: ignore[arg-type]
                     t.collapse_note()) for t in rows if t.backbone == backbone]
        if sel:
            out[backbone] = sel
    return out


def _scatter(data: StudyRecord, title: str, rows: list[TrialRecord], empty: str, **kwargs: Any) -> Scatter:
    series = _points(data, rows, kwargs.pop("x", None), kwargs.pop("y", None))
    return Scatter(title, data.metric, data.baseline, series, colors(data), None if series else empty,
                   baseline_name=data.baseline_model, **kwargs)


# ------------------------------------------------------------------------------------------------------ score by backbone
def extract_score_by_backbone(data: StudyRecord) -> Scatter:
    return _scatter(data, f"Validation {data.metric} by backbone", data.finished,
                    "No finished trial yet: start a study in the Study section.")


def draw_score_by_backbone(info: Scatter) -> Any:
    """Every finished trial's score per backbone (box = spread, diamond = best), baseline as a reference line."""
    if info.message:
        return empty_figure(info.title, info.message)
    go = _go()
    fig = go.Figure()
    for backbone, points in info.series.items():
        values, color = [p.value for p in points], info.colors[backbone]
        fig.add_trace(go.Box(y=values, name=backbone, boxpoints="all", jitter=0.3, pointpos=0, marker_color=color,
                             text=[p.hover() for p in points], hoverinfo="y+text",
                             showlegend=False))
        fig.add_trace(go.Scatter(x=[backbone], y=[max(values)], mode="markers", marker_symbol="diamond", marker_size=13,
                                 marker_color=color, marker_line={"width": 1, "color": "black"},
                                 name=f"best {backbone}", hovertemplate=f"best {backbone}: %{{y:.4f}}<extra></extra>",
                                 showlegend=False))
    _baseline_line(fig, info)
    return _layout(fig, info.title, yaxis_title=f"{info.metric} (validation)")


# ------------------------------------------------------------------------------------------------------ score vs a parameter
def extract_score_vs_param(data: StudyRecord, param: str, label: str | None = None) -> Scatter:
    label = label or param
    rows = [t for t in data.finished if param in t.params]
    return _scatter(data, f"Validation {data.metric} vs {label}", rows, "No finished trial yet.",
                    x=lambda t: t.params[param], x_label=label)


def draw_score_vs_param(info: Scatter, *, log: bool = True) -> Any:
    """Score against one hyperparameter, one colour per backbone; pruned trials hollow."""
    if info.message:
        return empty_figure(info.title, info.message)
    go = _go()
    fig = go.Figure()
    for backbone, points in info.series.items():
        color = info.colors[backbone]
        fig.add_trace(go.Scatter(
            x=[p.x for p in points], y=[p.value for p in points], mode="markers", name=backbone,
            marker={"size": 11, "color": [color if p.state == "COMPLETE" else "white" for p in points],
                    "line": {"width": 2, "color": color}},
            text=[p.hover() for p in points],
            hovertemplate=f"{info.x_label}=%{{x:.3g}}<br>{info.metric}=%{{y:.4f}}<br>%{{text}}<extra>{backbone}</extra>"))
    _baseline_line(fig, info)
    fig.update_xaxes(type="log" if log else "linear", title=info.x_label)
    return _layout(fig, info.title, yaxis_title=info.metric)


def score_vs_param(data: StudyRecord, param: str, *, log: bool = True, label: str | None = None) -> Any:
    return draw_score_vs_param(extract_score_vs_param(data, param, label), log=log)


# ------------------------------------------------------------------------------------------------------ lr × ratio
def extract_lr_ratio_map(data: StudyRecord) -> Scatter:
    rows = [t for t in data.finished if "lr" in t.params and "head_lr_ratio" in t.params]
    return _scatter(data, f"Learning rate × head/encoder ratio ({data.metric})", rows, "No finished trial yet.",
                    x=lambda t: t.params["lr"], y=lambda t: t.params["head_lr_ratio"])


def draw_lr_ratio_map(info: Scatter) -> Any:
    """Encoder learning rate × head/encoder ratio, coloured by score, one panel per backbone."""
    if info.message:
        return empty_figure(info.title, info.message)
    from plotly.subplots import make_subplots

    go = _go()
    backbones = list(info.series)
    # One x range for every panel (shared_xaxes only links the axes of one column): the panels compare as drawn.
    fig = make_subplots(rows=1, cols=len(backbones), subplot_titles=[plot_text(b) for b in backbones],
                        shared_yaxes=True)
    lrs = [p.x for points in info.series.values() for p in points if isinstance(p.x, (int, float)) and p.x > 0]
    x_range = [math.log10(min(lrs)) - 0.1, math.log10(max(lrs)) + 0.1] if lrs else None
    values = [p.value for points in info.series.values() for p in points]
    lo, hi = min(values), max(values)
    for col, (backbone, points) in enumerate(info.series.items(), start=1):
        fig.add_trace(go.Scatter(
            x=[p.x for p in points], y=[p.y for p in points], mode="markers",
            marker={"size": 14, "color": [p.value for p in points], "colorscale": "Viridis", "cmin": lo,
                    "cmax": hi if hi > lo else lo + 1e-9, "showscale": col == len(backbones),
                    "colorbar": {"title": info.metric}, "line": {"width": 1, "color": "#333"}},
            text=[f"trial {p.trial}: {p.value:.4f}" for p in points], name=backbone, showlegend=False,
            hovertemplate="lr=%{x:.2e}<br>ratio=%{y:.1f}<br>%{text}<extra></extra>"), row=1, col=col)
        fig.update_xaxes(type="log", title_text="encoder lr", range=x_range, row=1, col=col)
    fig.update_yaxes(type="log", title_text="head / encoder lr", row=1, col=1)
    return _layout(fig, info.title)


# ------------------------------------------------------------------------------------------------------ learning curves
def extract_learning_curves(data: StudyRecord) -> Curves:
    """Each trial's evaluations as (epoch, score). Mid-epoch points of the first epoch may score the training rows
    since the previous point instead, each predicted before the model trained on it (progressive validation): their
    note says so."""
    rows = [(t, [p["step"] / 100 for p in t.curve], [p.get(data.metric) for p in t.curve],
             [f"<br>{p['rows']} training rows, each before it was learnt" if p.get("on") == "train" else ""
              for p in t.curve]) for t in data.trials if t.curve]
    return Curves(f"Learning curves (validation {data.metric})", data.metric, data.baseline, rows, colors(data),
                  None if rows else "No evaluation reported yet.", data.baseline_model)


def draw_learning_curves(info: Curves) -> Any:
    """Validation score at every evaluation of every trial; pruned trials dashed and ended with a cross."""
    if info.message:
        return empty_figure(info.title, info.message)
    go = _go()
    fig = go.Figure()
    shown: set[str] = set()
    for t, xs, ys, notes in info.trials:
        pruned = t.state == "PRUNED"
        fig.add_trace(go.Scatter(
            x=xs, y=ys, text=notes, mode="lines+markers", name=t.backbone, legendgroup=t.backbone,
            showlegend=t.backbone not in shown,
            line={"color": info.colors.get(t.backbone, "#999"), "dash": "dash" if pruned else "solid", "width": 2},
            marker={"symbol": ["circle"] * (len(xs) - 1) + ["x" if pruned else "circle"],
                    "size": [6] * (len(xs) - 1) + [12 if pruned else 6]},
            hovertemplate=f"trial {t.number} ({t.state.lower()})<br>epoch %{{x:.2f}}: %{{y:.4f}}%{{text}}"
                          f"<extra>{t.backbone}</extra>"))
        shown.add(t.backbone)
    _baseline_line(fig, info)
    return _layout(fig, info.title, xaxis_title="epoch", yaxis_title=info.metric)


# ------------------------------------------------------------------------------------------------------ score vs time
def extract_score_vs_time(data: StudyRecord) -> Scatter:
    rows = [t for t in data.complete if t.train_time_s]
    return _scatter(data, f"Validation {data.metric} vs training time", rows, "No completed trial yet.",
                    x=lambda t: t.train_time_s, x_label="training time (s)")


def draw_score_vs_time(info: Scatter) -> Any:
    if info.message:
        return empty_figure(info.title, info.message)
    go = _go()
    fig = go.Figure()
    for backbone, points in info.series.items():
        fig.add_trace(go.Scatter(x=[p.x for p in points], y=[p.value for p in points], mode="markers", name=backbone,
                                 marker={"size": 11, "color": info.colors[backbone]},
                                 text=[f"trial {p.trial}" for p in points],
                                 hovertemplate="%{x:.0f}s → %{y:.4f}<br>%{text}<extra></extra>"))
    _baseline_line(fig, info)
    return _layout(fig, info.title, xaxis_title=info.x_label, yaxis_title=info.metric)


# ------------------------------------------------------------------------------------------------------ history
def extract_optimization_history(data: StudyRecord) -> Scatter:
    """Finished trials in order (x: trial number), each point's ``y`` the best completed score so far."""
    rows = sorted(data.finished, key=lambda t: t.number)
    info = _scatter(data, "Optimisation history", rows, "No finished trial yet.", x=lambda t: t.number)
    running = -math.inf
    for p in sorted((p for points in info.series.values() for p in points), key=lambda p: p.trial):
        running = max(running, p.value if p.state == "COMPLETE" else -math.inf)
        p.y = running if running > -math.inf else None
    return info


def draw_optimization_history(info: Scatter) -> Any:
    """Each finished trial's score in order, with the best so far."""
    if info.message:
        return empty_figure(info.title, info.message)
    go = _go()
    fig = go.Figure()
    rows = sorted(((b, p) for b, points in info.series.items() for p in points), key=lambda bp: bp[1].trial)
    fig.add_trace(go.Scatter(x=[p.trial for _, p in rows], y=[p.value for _, p in rows], mode="markers", name="trial",
                             marker={"size": 10, "color": [info.colors.get(b, "#999") for b, _ in rows]},
                             text=[f"{b} ({p.state.lower()})" for b, p in rows],
                             hovertemplate="trial %{x}: %{y:.4f}<br>%{text}<extra></extra>"))
    fig.add_trace(go.Scatter(x=[p.trial for _, p in rows], y=[p.y for _, p in rows], mode="lines", name="best so far",
                             line={"color": "#222", "shape": "hv"}))
    _baseline_line(fig, info)
    # Trials are whole numbers: ticks at whole steps, at most ~10 of them.
    return _layout(fig, info.title, xaxis_title="trial", yaxis_title=info.metric, xaxis_tickformat="d",
                   xaxis_dtick=max(1, math.ceil(len(rows) / 10)))


# ------------------------------------------------------------------------------------------------------ best models
def extract_confusion_matrices(data: StudyRecord) -> PerBackbone:
    best = {b: t.report["confusion_matrix"] for b, t in data.best_per_backbone().items()
            if t.report and "confusion_matrix" in t.report}
    message = None if best else ("Multi-label studies have no confusion matrix; see per-class F1."
                                 if data.task == "multi_label" else "No completed trial yet.")
    return PerBackbone("Confusion matrix of each backbone's best model (validation)", data.metric, best, colors(data),
                       data.label_names, message=message)


def draw_confusion_matrices(info: PerBackbone) -> Any:
    """Confusion matrix (single-label) of each backbone's best model on validation, side by side."""
    if info.message:
        return empty_figure(info.title, info.message)
    from plotly.subplots import make_subplots

    go = _go()
    # The true labels are named once, left of the first panel: the panels share them, and a second copy would run
    # into the neighbouring matrix.
    fig = make_subplots(rows=1, cols=len(info.values), subplot_titles=[plot_text(b) for b in info.values],
                        horizontal_spacing=0.04, shared_yaxes=True)
    for col, (backbone, z) in enumerate(info.values.items(), start=1):
        names = [plot_text(n) for n in info.label_names] or [str(i) for i in range(len(z))]
        fig.add_trace(go.Heatmap(z=z, x=names, y=names, colorscale="Blues", text=z, texttemplate="%{text}",
                                 showscale=False, name=plot_text(backbone),
                                 hovertemplate=f"{plot_text(backbone)}<br>true %{{y}}<br>predicted %{{x}}: "
                                               "%{z}<extra></extra>"),
                      row=1, col=col)
        fig.update_yaxes(autorange="reversed", showticklabels=col == 1, row=1, col=col)
        fig.update_xaxes(title_text="predicted", tickangle=-45, row=1, col=col)
    fig.update_yaxes(title_text="true", row=1, col=1)
    return _layout(fig, info.title, height=max(HEIGHT, 120 + 28 * len(info.label_names)))


def extract_per_class_f1(data: StudyRecord) -> PerBackbone:
    best = {b: {name: v["f1"] for name, v in t.report["per_class"].items()}
            for b, t in data.best_per_backbone().items() if t.report}
    return PerBackbone("Per-class F1 of each backbone's best model (validation)", data.metric, best, colors(data),
                       message=None if best else "No completed trial yet.")


def draw_per_class_f1(info: PerBackbone) -> Any:
    """Per-class F1 of each backbone's best model on validation."""
    if info.message:
        return empty_figure(info.title, info.message)
    go = _go()
    fig = go.Figure()
    for backbone, per in info.values.items():
        fig.add_trace(go.Bar(x=[plot_text(n) for n in per], y=list(per.values()), name=backbone,
                             marker_color=info.colors.get(backbone)))
    return _layout(fig, info.title, barmode="group", yaxis_title="F1", yaxis_range=[0, 1.05])


def extract_seed_variance(data: StudyRecord) -> PerBackbone:
    """Every seed's score of each backbone's best configuration (backbones run with one seed left out); the title
    says when the spread does not support the ranking of the top two."""
    import numpy as np

    title = f"Seed variance of each backbone's best configuration ({data.metric}, validation)"
    runs = {b: [t.value] + [r.value for r in data.trials if r.seed_of == t.number and r.state == "COMPLETE"]
            for b, t in data.best_per_backbone().items()}
    runs = {b: [v for v in vals if v is not None] for b, vals in runs.items()}
    runs = {b: v for b, v in runs.items() if len(v) > 1}
    stats = {b: {"mean": float(np.mean(v)), "std": float(np.std(v, ddof=1))} for b, v in runs.items()}
    if ranking_supported(stats) is False:
        title += " — ranking NOT supported by the spread"
    return PerBackbone(title, data.metric, runs, colors(data), baseline=data.baseline, message=None if runs else
                       "Run the study with seeds (k > 0) to see how much the score moves with the seed.",
                       baseline_name=data.baseline_model)


def draw_seed_variance(info: PerBackbone) -> Any:
    """Mean ± standard deviation per backbone, with every run as a point."""
    if info.message:
        return empty_figure(info.title, info.message)
    import numpy as np

    go = _go()
    fig = go.Figure()
    for b, vals in info.values.items():
        mean, std = float(np.mean(vals)), float(np.std(vals, ddof=1))
        fig.add_trace(go.Scatter(x=[b], y=[mean], error_y={"type": "data", "array": [std], "visible": True},
                                 mode="markers", marker={"size": 16, "symbol": "diamond", "color": info.colors.get(b)},
                                 name=f"{b}: {mean:.4f} ± {std:.4f} (n={len(vals)})"))
        fig.add_trace(go.Scatter(x=[b] * len(vals), y=vals, mode="markers", marker={"size": 7,
                                 "color": info.colors.get(b), "opacity": 0.5}, showlegend=False,
                                 hovertemplate="%{y:.4f}<extra></extra>"))
    _baseline_line(fig, info)
    return _layout(fig, info.title, yaxis_title=info.metric)


# ------------------------------------------------------------------------------------------------------ parameters
def _searched(rows: list[TrialRecord]) -> list[str]:
    """The parameters the trials were sampled over, in their first appearance's order."""
    names: list[str] = []
    for t in rows:
        names += [p for p in t.params if p not in names]
    return names


def extract_parallel_coordinates(data: StudyRecord) -> Parallel:
    """One axis per searched parameter (a categorical one numbered, its names as ticks) and the score."""
    title = "Parallel coordinates"
    rows = [t for t in data.trials if t.state == "COMPLETE" and t.value is not None]
    if not rows:
        return Parallel(title, data.metric, [], [], "No completed trial yet.")
    dims = []
    for name in _searched(rows):
        present = [t for t in rows if name in t.params]
        if len(present) < len(rows):
            continue  # an axis needs a value from every line
        values = [t.params[name] for t in rows]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            dims.append(Dimension(name, [float(v) for v in values], log=name in LOG_PARAMS))
        else:
            ticks = sorted({str(v) for v in values})
            dims.append(Dimension(name, [float(ticks.index(str(v))) for v in values], ticks=ticks))
    return Parallel(title, data.metric, dims, [float(t.value) for t in rows])  # type: ignore[arg-type]


def draw_parallel_coordinates(info: Parallel) -> Any:
    if info.message:
        return empty_figure(info.title, info.message)
    go = _go()
    dims = []
    for d in info.dimensions:
        if d.ticks is not None:
            dims.append({"label": d.label, "values": d.values, "tickvals": list(range(len(d.ticks))),
                         "ticktext": [plot_text(t) for t in d.ticks]})
        elif d.log and min(d.values) > 0:  # Parcoords has no log axis: draw log10 with the real values as ticks
            logs = [math.log10(v) for v in d.values]
            distinct = sorted(set(d.values))  # at most 6 ticks, spread over the range: more overlap
            ticks = [distinct[round(i * (len(distinct) - 1) / 5)] for i in range(6)] if len(distinct) > 6 else distinct
            ticks = sorted(set(ticks))
            dims.append({"label": d.label, "values": logs, "tickvals": [math.log10(v) for v in ticks],
                         "ticktext": [f"{v:.3g}" for v in ticks]})
        else:
            dims.append({"label": d.label, "values": d.values})
    dims.append({"label": info.metric, "values": info.scores})
    fig = go.Figure(go.Parcoords(dimensions=dims, line={"color": info.scores, "colorscale": "Viridis",
                                                        "showscale": True, "colorbar": {"title": info.metric}}))
    return _layout(fig, info.title)


def extract_param_importances(data: StudyRecord) -> Importances:
    """Optuna's fANOVA importances of the searched parameters, computed on an in-memory copy of the completed trials
    (at least ``MIN_IMPORTANCE_TRIALS`` of them, with differing parameters)."""
    import optuna

    title = "Hyperparameter importances"
    rows = [t for t in data.trials if t.state == "COMPLETE" and t.value is not None and t.distributions]
    if len(rows) < MIN_IMPORTANCE_TRIALS:
        return Importances(title, {}, f"Needs at least {MIN_IMPORTANCE_TRIALS} completed trials to mean anything "
                                      f"(fANOVA fits a random forest to them); {len(rows)} so far.")
    copy = optuna.create_study(direction="maximize")
    for t in rows:
        copy.add_trial(optuna.trial.create_trial(params=t.params, distributions=t.distributions, value=t.value))
    try:
        values = optuna.importance.get_param_importances(copy)
    except (RuntimeError, ValueError) as exc:  # e.g. every trial has identical parameters: nothing to attribute
        return Importances(title, {}, f"Not computable yet: {exc}")
    return Importances(title, {k: float(v) for k, v in values.items()})


def draw_param_importances(info: Importances) -> Any:
    if info.message:
        return empty_figure(info.title, info.message)
    go = _go()
    names = list(info.values)[::-1]  # largest at the top
    fig = go.Figure(go.Bar(x=[info.values[n] for n in names], y=names, orientation="h", marker_color=PALETTE[0],
                           hovertemplate="%{y}: %{x:.3f}<extra></extra>"))
    return _layout(fig, info.title, xaxis_title="share of the score's variance (fANOVA)")


# ------------------------------------------------------------------------------------------------------ each chart
def _chart(extract: Callable[[StudyRecord], Any], draw: Callable[[Any], Any]) -> Callable[[StudyRecord], Any]:
    """The chart ``draw(extract(record))``."""

    def chart(data: StudyRecord) -> Any:
        return draw(extract(data))

    chart.__doc__ = draw.__doc__
    return chart


score_by_backbone = _chart(extract_score_by_backbone, draw_score_by_backbone)
lr_ratio_map = _chart(extract_lr_ratio_map, draw_lr_ratio_map)
learning_curves = _chart(extract_learning_curves, draw_learning_curves)
score_vs_time = _chart(extract_score_vs_time, draw_score_vs_time)
optimization_history = _chart(extract_optimization_history, draw_optimization_history)
confusion_matrices = _chart(extract_confusion_matrices, draw_confusion_matrices)
per_class_f1 = _chart(extract_per_class_f1, draw_per_class_f1)
seed_variance = _chart(extract_seed_variance, draw_seed_variance)
parallel_coordinates = _chart(extract_parallel_coordinates, draw_parallel_coordinates)
param_importances = _chart(extract_param_importances, draw_param_importances)


def record_key(data: StudyRecord) -> tuple[Any, ...]:
    """What the charts are drawn from, summed up: equal keys draw equal charts (the live view redraws only when it
    changes). Per trial: its state, value, evaluations so far and report; the baseline."""
    return (data.metric, data.baseline, tuple((t.number, t.state, t.value, len(t.curve), t.report is not None)
                                              for t in data.trials))


def all_charts(study: Any) -> dict[str, Any]:
    """Every Compare chart for ``study``, by name (one read of the storage)."""
    return charts_for(study_data(study))


def charts_for(data: StudyRecord) -> dict[str, Any]:
    """Every Compare chart of a study's record, by name."""
    return {
        "score_by_backbone": score_by_backbone(data),
        "history": optimization_history(data),
        "score_vs_lr": score_vs_param(data, "lr", label="encoder learning rate"),
        "score_vs_ratio": score_vs_param(data, "head_lr_ratio", label="head / encoder learning-rate ratio"),
        "lr_ratio_map": lr_ratio_map(data),
        "parallel": parallel_coordinates(data),
        "importances": param_importances(data),
        "learning_curves": learning_curves(data),
        "score_vs_time": score_vs_time(data),
        "per_class_f1": per_class_f1(data),
        "seed_variance": seed_variance(data),
        "confusion": confusion_matrices(data),
    }


# ------------------------------------------------------------------------------------------------------ calibration
@dataclass
class Calibrations:
    """Per backbone's best model: its reliability bins before and after temperature scaling, and the temperature."""

    title: str
    values: dict[str, tuple[Any, Any, float]]  # backbone -> (Reliability before, Reliability after, temperature)
    colors: dict[str, str]
    message: str | None = None


def extract_reliability(models: dict[str, tuple[Any, Any, float]], colors: dict[str, str]) -> Calibrations:
    """``models``: backbone -> (validation probabilities before scaling, gold labels, temperature)."""
    from textclf.calibration import reliability, rescale

    values = {b: (reliability(p, y), reliability(rescale(p, t), y), t) for b, (p, y, t) in models.items()}
    return Calibrations("Reliability of each backbone's best model (validation)", values, colors,
                        message=None if values else "No kept single-label model with validation answers yet.")


def draw_reliability(info: Calibrations) -> Any:
    """Accuracy against confidence per bin: on the diagonal, a confidence means what it says. Dashed: the model's own
    probabilities; solid: after temperature scaling (what textclf serves)."""
    if info.message:
        return empty_figure(info.title, info.message)
    go = _go()
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfectly calibrated",
                             line={"color": "#999", "dash": "dot"}))
    for backbone, (before, after, t) in info.values.items():
        color = info.colors.get(backbone)
        for rel, label, dash in ((before, "before", "dash"), (after, f"T={t:.2f}", "solid")):
            fig.add_trace(go.Scatter(
                x=rel.confidence, y=rel.accuracy, mode="lines+markers", line={"color": color, "dash": dash},
                name=f"{plot_text(backbone)} {label} (ECE {rel.ece:.3f})", customdata=rel.count,
                hovertemplate="confidence %{x:.2f}<br>accuracy %{y:.2f}<br>%{customdata:.0f} rows<extra></extra>"))
    return _layout(fig, info.title, xaxis_title="confidence (top probability)", yaxis_title="accuracy",
                   xaxis_range=[0, 1.02], yaxis_range=[0, 1.02])


# ------------------------------------------------------------------------------------------------------ one trial
@dataclass
class TrialView:
    """One trial, for the drill-down: its record, the study's metric and label names."""

    title: str
    metric: str
    trial: TrialRecord | None
    label_names: list[str]
    color: str = "#4C78A8"
    message: str | None = None


def extract_trial(data: StudyRecord, number: int) -> TrialView:
    trial = next((t for t in data.trials if t.number == number), None)
    return TrialView(f"Trial {number}", data.metric, trial, data.label_names,
                     colors(data).get(trial.backbone, "#4C78A8") if trial else "#4C78A8",
                     None if trial else f"Trial {number} is not in this study.")


def draw_trial(info: TrialView) -> Any:
    """The trial's learning curve (validation metric at each evaluation, the running trial's so far) and, once it
    has finished, its confusion matrix on validation."""
    if info.message or info.trial is None:
        return empty_figure(info.title, info.message or "")
    from plotly.subplots import make_subplots

    go = _go()
    t = info.trial
    matrix = (t.report or {}).get("confusion_matrix")
    # The matrix's true labels sit in the gap between the panels: it widens with the longest of them.
    longest = max((len(n) for n in info.label_names), default=4)
    fig = make_subplots(rows=1, cols=2 if matrix else 1, horizontal_spacing=min(0.45, 0.08 + 0.012 * longest),
                        subplot_titles=[f"validation {info.metric}", *(["confusion matrix"] if matrix else [])])
    xs, ys = [p["step"] / 100 for p in t.curve], [p.get(info.metric) for p in t.curve]
    fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", line={"color": info.color}, name=plot_text(t.backbone),
                             hovertemplate="epoch %{x:.2f}: %{y:.4f}<extra></extra>"), row=1, col=1)
    fig.update_xaxes(title_text="epoch", row=1, col=1)
    if matrix:
        names = [plot_text(n) for n in info.label_names] or [str(i) for i in range(len(matrix))]
        fig.add_trace(go.Heatmap(z=matrix, x=names, y=names, colorscale="Blues", text=matrix, texttemplate="%{text}",
                                 showscale=False, hovertemplate="true %{y}<br>predicted %{x}: %{z}<extra></extra>"),
                      row=1, col=2)
        fig.update_yaxes(autorange="reversed", title_text="true", row=1, col=2)
        fig.update_xaxes(title_text="predicted", tickangle=-45, row=1, col=2)
    return _layout(fig, f"{info.title}: {plot_text(t.backbone)} ({t.state.lower()})", showlegend=False)
