"""Comparison charts. Each chart is a pure function of plain data (drawn with Plotly); :func:`study_data` is the one
function that reads an Optuna study into that data. Empty and one-trial studies draw a figure with a message instead
of failing. Optuna's own plots are reused where they already draw the right thing (history, parallel coordinates,
parameter importances)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from textclf.safety import plot_text

HEIGHT = 420
PALETTE = ["#4C78A8", "#F58518", "#54A24B", "#E45756", "#72B7B2", "#B279A2", "#FF9DA6", "#9D755D", "#BAB0AC"]


@dataclass
class TrialData:
    number: int
    state: str
    value: float | None
    backbone: str
    params: dict[str, Any]
    train_time_s: float | None = None
    curve: list[dict[str, float]] = field(default_factory=list)
    report: dict[str, Any] | None = None
    recipe: bool = False
    fail_reason: str | None = None
    progress: float | None = None
    duration_s: float | None = None
    seed_of: int | None = None
    stopped: str | None = None  # why a finished trial ended before its epochs did (the time budget)


@dataclass
class StudyData:
    name: str
    metric: str
    task: str | None
    label_names: list[str]
    baseline: float | None
    trials: list[TrialData]

    @property
    def finished(self) -> list[TrialData]:
        return [t for t in self.trials if t.state in ("COMPLETE", "PRUNED") and t.value is not None]

    @property
    def complete(self) -> list[TrialData]:
        """Completed trials that compete for "best" (seed re-runs only measure spread)."""
        return [t for t in self.trials if t.state == "COMPLETE" and t.value is not None and t.seed_of is None]

    def backbones(self) -> list[str]:
        return sorted({t.backbone for t in self.trials if t.backbone})

    def best_per_backbone(self) -> dict[str, TrialData]:
        best: dict[str, TrialData] = {}
        for t in self.complete:
            if t.backbone not in best or (t.value or 0) > (best[t.backbone].value or 0):
                best[t.backbone] = t
        return best


def study_data(study: Any) -> StudyData:
    """Read what the charts need from an Optuna study (the only function here that touches Optuna)."""
    from textclf.study import ATTR, fail_reason

    attrs = study.user_attrs.get(ATTR, {})
    trials = []
    stored = study.get_trials(deepcopy=False)
    for t in stored:
        ua = t.user_attrs
        trials.append(TrialData(
            number=t.number, state=t.state.name, value=t.value, backbone=t.params.get("backbone", ua.get("backbone", "")),
            params=dict(t.params), train_time_s=ua.get("train_time_s"), curve=list(ua.get("learning_curve", [])),
            report=ua.get("report"), recipe=bool(ua.get("recipe")), fail_reason=fail_reason(t, stored),
            progress=ua.get("progress"), duration_s=t.duration.total_seconds() if t.duration else None,
            seed_of=ua.get("seed_of"), stopped=ua.get("stopped")))
    baseline = attrs.get("baseline") or {}
    return StudyData(name=study.study_name, metric=attrs.get("metric", "value"), task=attrs.get("task"),
                     label_names=list(attrs.get("label_names", [])), baseline=baseline.get("value"), trials=trials)


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


def _colors(backbones: list[str]) -> dict[str, str]:
    return {b: PALETTE[i % len(PALETTE)] for i, b in enumerate(backbones)}


def _baseline_line(fig: Any, data: StudyData) -> None:
    if data.baseline is not None:
        fig.add_hline(y=data.baseline, line_dash="dash", line_color="#888",
                      annotation_text=f"TF-IDF + LR baseline {data.baseline:.3f}", annotation_position="bottom right")


# ------------------------------------------------------------------------------------------------------ charts
def score_by_backbone(data: StudyData) -> Any:
    """Every finished trial's score per backbone (box = spread, diamond = best), baseline as a reference line."""
    title = f"Validation {data.metric} by backbone"
    if not data.finished:
        return empty_figure(title, "No finished trial yet: start a study in the Study section.")
    go = _go()
    fig = go.Figure()
    colors = _colors(data.backbones())
    for backbone in data.backbones():
        rows = [t for t in data.finished if t.backbone == backbone]
        if not rows:
            continue
        values = [t.value for t in rows]
        fig.add_trace(go.Box(y=values, name=backbone, boxpoints="all", jitter=0.3, pointpos=0, marker_color=colors[backbone],
                             text=[f"trial {t.number} ({t.state.lower()})" for t in rows], hoverinfo="y+text",
                             showlegend=False))
        fig.add_trace(go.Scatter(x=[backbone], y=[max(values)], mode="markers", marker_symbol="diamond", marker_size=13,
                                 marker_color=colors[backbone], marker_line={"width": 1, "color": "black"},
                                 name=f"best {backbone}", hovertemplate=f"best {backbone}: %{{y:.4f}}<extra></extra>",
                                 showlegend=False))
    _baseline_line(fig, data)
    return _layout(fig, title, yaxis_title=f"{data.metric} (validation)")


def score_vs_param(data: StudyData, param: str, *, log: bool = True, label: str | None = None) -> Any:
    """Score against one hyperparameter, one colour per backbone; pruned trials hollow."""
    label = label or param
    title = f"Validation {data.metric} vs {label}"
    rows = [t for t in data.finished if param in t.params]
    if not rows:
        return empty_figure(title, "No finished trial yet.")
    go = _go()
    fig = go.Figure()
    colors = _colors(data.backbones())
    for backbone in data.backbones():
        sel = [t for t in rows if t.backbone == backbone]
        if not sel:
            continue
        fig.add_trace(go.Scatter(
            x=[t.params[param] for t in sel], y=[t.value for t in sel], mode="markers", name=backbone,
            marker={"size": 11, "color": [colors[backbone] if t.state == "COMPLETE" else "white" for t in sel],
                    "line": {"width": 2, "color": colors[backbone]}},
            text=[f"trial {t.number} ({t.state.lower()})" for t in sel],
            hovertemplate=f"{label}=%{{x:.3g}}<br>{data.metric}=%{{y:.4f}}<br>%{{text}}<extra>{backbone}</extra>"))
    _baseline_line(fig, data)
    fig.update_xaxes(type="log" if log else "linear", title=label)
    return _layout(fig, title, yaxis_title=data.metric)


def lr_ratio_map(data: StudyData) -> Any:
    """Encoder learning rate × head/encoder ratio, coloured by score, one panel per backbone."""
    title = f"Learning rate × head/encoder ratio ({data.metric})"
    rows = [t for t in data.finished if "lr" in t.params and "head_lr_ratio" in t.params]
    if not rows:
        return empty_figure(title, "No finished trial yet.")
    from plotly.subplots import make_subplots

    go = _go()
    backbones = [b for b in data.backbones() if any(t.backbone == b for t in rows)]
    fig = make_subplots(rows=1, cols=len(backbones), subplot_titles=backbones, shared_yaxes=True)
    values = [t.value for t in rows]
    lo, hi = min(values), max(values)
    for col, backbone in enumerate(backbones, start=1):
        sel = [t for t in rows if t.backbone == backbone]
        fig.add_trace(go.Scatter(
            x=[t.params["lr"] for t in sel], y=[t.params["head_lr_ratio"] for t in sel], mode="markers",
            marker={"size": 14, "color": [t.value for t in sel], "colorscale": "Viridis", "cmin": lo,
                    "cmax": hi if hi > lo else lo + 1e-9, "showscale": col == len(backbones),
                    "colorbar": {"title": data.metric}, "line": {"width": 1, "color": "#333"}},
            text=[f"trial {t.number}: {t.value:.4f}" for t in sel], name=backbone, showlegend=False,
            hovertemplate="lr=%{x:.2e}<br>ratio=%{y:.1f}<br>%{text}<extra></extra>"), row=1, col=col)
        fig.update_xaxes(type="log", title_text="encoder lr", row=1, col=col)
    fig.update_yaxes(type="log", title_text="head / encoder lr", row=1, col=1)
    return _layout(fig, title)


def learning_curves(data: StudyData) -> Any:
    """Validation score at every evaluation of every trial; pruned trials dashed and ended with a cross. Mid-epoch
    points of the first epoch may score the training rows since the previous point instead, each predicted before
    the model trained on it (progressive validation); their hover says so."""
    title = f"Learning curves (validation {data.metric})"
    rows = [t for t in data.trials if t.curve]
    if not rows:
        return empty_figure(title, "No evaluation reported yet.")
    go = _go()
    fig = go.Figure()
    colors = _colors(data.backbones())
    shown: set[str] = set()
    for t in rows:
        xs = [p["step"] / 100 for p in t.curve]
        ys = [p.get(data.metric) for p in t.curve]
        pruned = t.state == "PRUNED"
        sources = [f"<br>{p['rows']} training rows, each before it was learnt" if p.get("on") == "train" else ""
                   for p in t.curve]
        fig.add_trace(go.Scatter(
            x=xs, y=ys, text=sources, mode="lines+markers", name=t.backbone, legendgroup=t.backbone,
            showlegend=t.backbone not in shown,
            line={"color": colors.get(t.backbone, "#999"), "dash": "dash" if pruned else "solid", "width": 2},
            marker={"symbol": ["circle"] * (len(xs) - 1) + ["x" if pruned else "circle"],
                    "size": [6] * (len(xs) - 1) + [12 if pruned else 6]},
            hovertemplate=f"trial {t.number} ({t.state.lower()})<br>epoch %{{x:.2f}}: %{{y:.4f}}%{{text}}"
                          f"<extra>{t.backbone}</extra>"))
        shown.add(t.backbone)
    _baseline_line(fig, data)
    return _layout(fig, title, xaxis_title="epoch", yaxis_title=data.metric)


def score_vs_time(data: StudyData) -> Any:
    title = f"Validation {data.metric} vs training time"
    rows = [t for t in data.complete if t.train_time_s]
    if not rows:
        return empty_figure(title, "No completed trial yet.")
    go = _go()
    fig = go.Figure()
    colors = _colors(data.backbones())
    for backbone in data.backbones():
        sel = [t for t in rows if t.backbone == backbone]
        if sel:
            fig.add_trace(go.Scatter(x=[t.train_time_s for t in sel], y=[t.value for t in sel], mode="markers", name=backbone,
                                     marker={"size": 11, "color": colors[backbone]},
                                     text=[f"trial {t.number}" for t in sel],
                                     hovertemplate="%{x:.0f}s → %{y:.4f}<br>%{text}<extra></extra>"))
    _baseline_line(fig, data)
    return _layout(fig, title, xaxis_title="training time (s)", yaxis_title=data.metric)


def optimization_history(data: StudyData) -> Any:
    """Each finished trial's score in order, with the best so far."""
    title = "Optimisation history"
    rows = sorted(data.finished, key=lambda t: t.number)
    if not rows:
        return empty_figure(title, "No finished trial yet.")
    go = _go()
    fig = go.Figure()
    colors = _colors(data.backbones())
    fig.add_trace(go.Scatter(x=[t.number for t in rows], y=[t.value for t in rows], mode="markers", name="trial",
                             marker={"size": 10, "color": [colors.get(t.backbone, "#999") for t in rows]},
                             text=[f"{t.backbone} ({t.state.lower()})" for t in rows],
                             hovertemplate="trial %{x}: %{y:.4f}<br>%{text}<extra></extra>"))
    best, running = [], -math.inf
    for t in rows:
        running = max(running, t.value if t.state == "COMPLETE" and t.value is not None else -math.inf)
        best.append(running if running > -math.inf else None)
    fig.add_trace(go.Scatter(x=[t.number for t in rows], y=best, mode="lines", name="best so far",
                             line={"color": "#222", "shape": "hv"}))
    _baseline_line(fig, data)
    return _layout(fig, title, xaxis_title="trial", yaxis_title=data.metric)


def confusion_matrices(data: StudyData) -> Any:
    """Confusion matrix (single-label) of each backbone's best model on validation, side by side."""
    title = "Confusion matrix of each backbone's best model (validation)"
    best = {b: t for b, t in data.best_per_backbone().items() if t.report and "confusion_matrix" in t.report}
    if not best:
        msg = ("Multi-label studies have no confusion matrix; see per-class F1." if data.task == "multi_label"
               else "No completed trial yet.")
        return empty_figure(title, msg)
    from plotly.subplots import make_subplots

    go = _go()
    fig = make_subplots(rows=1, cols=len(best), subplot_titles=list(best), horizontal_spacing=0.08)
    for col, (backbone, t) in enumerate(best.items(), start=1):
        z = t.report["confusion_matrix"] if t.report else []
        names = [plot_text(n) for n in data.label_names] or [str(i) for i in range(len(z))]
        fig.add_trace(go.Heatmap(z=z, x=names, y=names, colorscale="Blues", text=z, texttemplate="%{text}",
                                 showscale=False, name=backbone,
                                 hovertemplate=f"{backbone}<br>true %{{y}}<br>predicted %{{x}}: %{{z}}<extra></extra>"),
                      row=1, col=col)
        fig.update_yaxes(autorange="reversed", row=1, col=col)
        fig.update_xaxes(title_text="predicted", row=1, col=col)
    fig.update_yaxes(title_text="true", row=1, col=1)
    return _layout(fig, title)


def seed_variance(data: StudyData) -> Any:
    """Mean ± standard deviation of each backbone's best configuration over seeds, with every run as a point; the
    title says when the spread does not support the ranking of the top two."""
    title = f"Seed variance of each backbone's best configuration ({data.metric}, validation)"
    best = data.best_per_backbone()
    runs = {b: [t.value] + [r.value for r in data.trials if r.seed_of == t.number and r.state == "COMPLETE"]
            for b, t in best.items()}
    runs = {b: [v for v in vals if v is not None] for b, vals in runs.items()}
    runs = {b: v for b, v in runs.items() if len(v) > 1}
    if not runs:
        return empty_figure(title, "Run the study with seeds (k > 0) to see how much the score moves with the seed.")
    import numpy as np

    go = _go()
    colors = _colors(data.backbones())
    stats = {b: (float(np.mean(v)), float(np.std(v, ddof=1))) for b, v in runs.items()}
    fig = go.Figure()
    for b, vals in runs.items():
        mean, std = stats[b]
        fig.add_trace(go.Scatter(x=[b], y=[mean], error_y={"type": "data", "array": [std], "visible": True},
                                 mode="markers", marker={"size": 16, "symbol": "diamond", "color": colors.get(b)},
                                 name=f"{b}: {mean:.4f} ± {std:.4f} (n={len(vals)})"))
        fig.add_trace(go.Scatter(x=[b] * len(vals), y=vals, mode="markers", marker={"size": 7, "color": colors.get(b),
                                 "opacity": 0.5}, showlegend=False, hovertemplate="%{y:.4f}<extra></extra>"))
    from textclf.study import ranking_supported

    if ranking_supported({b: {"mean": m, "std": s} for b, (m, s) in stats.items()}) is False:
        title += " — ranking NOT supported by the spread"
    _baseline_line(fig, data)
    return _layout(fig, title, yaxis_title=data.metric)


def per_class_f1(data: StudyData) -> Any:
    """Per-class F1 of each backbone's best model on validation."""
    title = "Per-class F1 of each backbone's best model (validation)"
    best = {b: t for b, t in data.best_per_backbone().items() if t.report}
    if not best:
        return empty_figure(title, "No completed trial yet.")
    go = _go()
    fig = go.Figure()
    colors = _colors(data.backbones())
    for backbone, t in best.items():
        per = t.report["per_class"] if t.report else {}
        fig.add_trace(go.Bar(x=[plot_text(n) for n in per], y=[v["f1"] for v in per.values()], name=backbone,
                             marker_color=colors.get(backbone)))
    return _layout(fig, title, barmode="group", yaxis_title="F1", yaxis_range=[0, 1.05])


def parallel_coordinates(study: Any) -> Any:
    """Optuna's parallel-coordinate plot (it handles the categorical backbone axis)."""
    import optuna

    title = "Parallel coordinates"
    if sum(t.state.name == "COMPLETE" for t in study.get_trials(deepcopy=False)) < 1:
        return empty_figure(title, "No completed trial yet.")
    fig = optuna.visualization.plot_parallel_coordinate(study)
    return _layout(fig, title)


def param_importances(study: Any) -> Any:
    """Optuna's fANOVA parameter importances (needs two completed trials with differing parameters)."""
    import optuna

    title = "Hyperparameter importances"
    complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    if len(complete) < 2:
        return empty_figure(title, "Needs at least two completed trials.")
    try:
        fig = optuna.visualization.plot_param_importances(study)
    except (RuntimeError, ValueError) as exc:  # e.g. every trial has identical parameters: nothing to attribute
        return empty_figure(title, f"Not computable yet: {exc}")
    return _layout(fig, title)


def all_charts(study: Any) -> dict[str, Any]:
    """Every Compare chart for ``study``, by name."""
    data = study_data(study)
    charts = {
        "score_by_backbone": score_by_backbone(data),
        "history": optimization_history(data),
        "score_vs_lr": score_vs_param(data, "lr", label="encoder learning rate"),
        "score_vs_ratio": score_vs_param(data, "head_lr_ratio", label="head / encoder learning-rate ratio"),
        "lr_ratio_map": lr_ratio_map(data),
        "parallel": parallel_coordinates(study),
        "importances": param_importances(study),
        "learning_curves": learning_curves(data),
        "score_vs_time": score_vs_time(data),
        "per_class_f1": per_class_f1(data),
        "seed_variance": seed_variance(data),
    }
    charts["confusion"] = confusion_matrices(data)
    return charts
