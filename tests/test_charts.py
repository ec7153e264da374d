"""Chart builders on small in-memory studies: figure structure, empty and one-trial studies."""

from __future__ import annotations

import math
from typing import Any

import optuna
import pytest

from textclf import charts
from textclf.storage import SETUP_ATTR as ATTR

DISTS = {
    "backbone": optuna.distributions.CategoricalDistribution(["minilm", "scratch:minilm"]),
    "lr": optuna.distributions.FloatDistribution(1e-5, 1e-3, log=True),
    "head_lr_ratio": optuna.distributions.FloatDistribution(1, 100, log=True),
    "batch_size": optuna.distributions.CategoricalDistribution([16, 32]),
}


def make_study(rows: list[tuple[str, float, float, float, str]]) -> Any:
    study = optuna.create_study(direction="maximize", study_name="mem")
    study.set_user_attr(ATTR, {"metric": "accuracy", "task": "single_label", "label_names": ["neg", "pos"],
                               "baseline": {"value": 0.7}})
    for backbone, lr, ratio, value, state in rows:
        curve = [{"step": 100, "accuracy": value - 0.05}, {"step": 200, "accuracy": value}]
        attrs = {"learning_curve": curve if state == "COMPLETE" else curve[:1], "train_time_s": 10 * lr * 1e4,
                 "report": {"per_class": {"neg": {"f1": value}, "pos": {"f1": value - 0.1}},
                            "confusion_matrix": [[5, 1], [2, 4]]}}
        study.add_trial(optuna.trial.create_trial(
            params={"backbone": backbone, "lr": lr, "head_lr_ratio": ratio, "batch_size": 32}, distributions=DISTS,
            value=value, user_attrs=attrs, intermediate_values={100: value - 0.05},
            state=optuna.trial.TrialState[state]))
    return study


FULL = [("minilm", 1e-4, 10, 0.85, "COMPLETE"), ("scratch:minilm", 1e-4, 10, 0.63, "COMPLETE"),
        ("minilm", 3e-5, 40, 0.82, "COMPLETE"), ("scratch:minilm", 2e-4, 5, 0.55, "PRUNED")]


def test_score_by_backbone_has_a_box_per_backbone_and_the_baseline() -> None:
    fig = charts.score_by_backbone(charts.study_data(make_study(FULL)))
    boxes = [t for t in fig.data if t.type == "box"]
    assert [b.name for b in boxes] == ["minilm", "scratch:minilm"]
    assert sorted(boxes[0].y) == [0.82, 0.85] and sorted(boxes[1].y) == [0.55, 0.63]  # pruned trials count too
    assert any(s.y0 == 0.7 for s in fig.layout.shapes)  # the TF-IDF reference line
    assert fig.layout.height == charts.HEIGHT


def test_score_vs_lr_is_log_scaled_and_coloured_by_backbone() -> None:
    fig = charts.score_vs_param(charts.study_data(make_study(FULL)), "lr")
    assert fig.layout.xaxis.type == "log"
    assert {t.name for t in fig.data} == {"minilm", "scratch:minilm"}
    scratch = next(t for t in fig.data if t.name == "scratch:minilm")
    assert list(scratch.marker.color).count("white") == 1  # the pruned trial is hollow


def test_lr_ratio_map_has_one_panel_per_backbone() -> None:
    fig = charts.lr_ratio_map(charts.study_data(make_study(FULL)))
    assert len(fig.data) == 2
    assert fig.layout.xaxis.type == "log" and fig.layout.yaxis.type == "log"
    # Both panels on one lr range (minilm's trials span 3e-5..1e-4, scratch's 1e-4..2e-4): comparable as drawn.
    assert fig.layout.xaxis.range == fig.layout.xaxis2.range
    assert fig.layout.xaxis.range[0] < math.log10(3e-5) and fig.layout.xaxis.range[1] > math.log10(2e-4)


def test_learning_curves_mark_pruned_trials() -> None:
    fig = charts.learning_curves(charts.study_data(make_study(FULL)))
    assert len(fig.data) == 4
    pruned = fig.data[3]
    assert pruned.line.dash == "dash" and list(pruned.marker.symbol)[-1] == "x"
    assert fig.data[0].line.dash == "solid"


def test_learning_curve_hover_says_which_points_scored_training_rows() -> None:
    study = make_study([])
    curve = [{"step": 50, "accuracy": 0.7, "rows": 500, "on": "train"}, {"step": 100, "accuracy": 0.8, "rows": 872}]
    study.add_trial(optuna.trial.create_trial(
        params={"backbone": "minilm", "lr": 1e-4, "head_lr_ratio": 10, "batch_size": 32}, distributions=DISTS,
        value=0.8, user_attrs={"learning_curve": curve}, intermediate_values={50: 0.7, 100: 0.8}))
    fig = charts.learning_curves(charts.study_data(study))
    assert list(fig.data[0].text) == ["<br>500 training rows, each before it was learnt", ""]
    assert "%{text}" in fig.data[0].hovertemplate


def test_history_tracks_the_best_so_far() -> None:
    fig = charts.optimization_history(charts.study_data(make_study(FULL)))
    assert list(fig.data[1].y) == [0.85, 0.85, 0.85, 0.85]


def test_confusion_and_per_class_use_each_backbones_best_trial() -> None:
    data = charts.study_data(make_study(FULL))
    fig = charts.confusion_matrices(data)
    assert [t.name for t in fig.data] == ["minilm", "scratch:minilm"]  # one panel per backbone
    assert [list(r) for r in fig.data[0].z] == [[5, 1], [2, 4]]
    assert list(fig.data[0].x) == ["neg", "pos"]
    # The true labels once, left of the first panel: a second copy would run into the first matrix.
    assert fig.layout.yaxis.showticklabels is True and fig.layout.yaxis2.showticklabels is False
    bars = charts.per_class_f1(data)
    assert {b.name for b in bars.data} == {"minilm", "scratch:minilm"}
    assert list(next(b for b in bars.data if b.name == "minilm").y) == pytest.approx([0.85, 0.75])


@pytest.mark.parametrize("rows", [[], [FULL[0]]], ids=["empty", "one-trial"])
def test_every_chart_handles_empty_and_one_trial_studies(rows: list) -> None:
    figs = charts.all_charts(make_study(rows))
    assert set(figs) >= {"score_by_backbone", "history", "score_vs_lr", "score_vs_ratio", "lr_ratio_map", "parallel",
                         "importances", "learning_curves", "score_vs_time", "per_class_f1", "confusion"}
    for name, fig in figs.items():
        assert fig.layout.height, name
    if not rows:
        assert figs["score_by_backbone"].layout.annotations[0].text.startswith("No finished trial")
    else:
        assert len(figs["score_by_backbone"].data) == 2
        assert "at least 10 completed trials" in figs["importances"].layout.annotations[0].text


def test_parallel_coordinates_name_the_categorical_backbone_and_log_scale_the_rates() -> None:
    info = charts.extract_parallel_coordinates(charts.study_data(make_study(FULL)))
    dims = {d.label: d for d in info.dimensions}
    assert set(dims) == {"backbone", "lr", "head_lr_ratio", "batch_size"}
    assert dims["backbone"].ticks == ["minilm", "scratch:minilm"]
    assert info.scores == [0.85, 0.63, 0.82]  # completed trials only: the pruned one has no final score
    fig = charts.draw_parallel_coordinates(info)
    axes = {d.label: d for d in fig.data[0].dimensions}
    assert list(axes["backbone"].ticktext) == ["minilm", "scratch:minilm"] and list(axes["backbone"].values) == [0, 1, 0]
    assert list(axes["lr"].values) == pytest.approx([-4, -4, math.log10(3e-5)])  # drawn as log10, ticks the real rates
    assert list(axes["accuracy"].values) == [0.85, 0.63, 0.82]


def test_importances_wait_for_enough_trials_then_are_drawn_largest_first() -> None:
    few = charts.extract_param_importances(charts.study_data(make_study(FULL)))
    assert few.values == {} and "3 so far" in few.message
    # The learning rate decides the score here; the backbone barely matters.
    many = [(b, lr, 10 + i, 0.6 + 300 * lr + 0.001 * (b == "minilm"), "COMPLETE")
            for i, (b, lr) in enumerate((b, lr) for lr in (1e-5, 3e-5, 1e-4, 2e-4, 4e-4, 8e-4)
                                        for b in ("minilm", "scratch:minilm"))]
    info = charts.extract_param_importances(charts.study_data(make_study(many)))
    assert max(info.values, key=info.values.get) == "lr"
    assert info.message is None and set(info.values) <= {"backbone", "lr", "head_lr_ratio", "batch_size"}
    assert sum(info.values.values()) == pytest.approx(1.0)
    bars = charts.draw_param_importances(info).data[0]
    assert list(bars.y)[-1] == max(info.values, key=info.values.get)


def test_extracted_chart_data_is_plain_and_drawn_without_the_study() -> None:
    data = charts.study_data(make_study(FULL))
    info = charts.extract_score_by_backbone(data)
    assert {b: [p.value for p in points] for b, points in info.series.items()} == {
        "minilm": [0.85, 0.82], "scratch:minilm": [0.63, 0.55]}
    history = charts.extract_optimization_history(data)
    assert [p.y for points in history.series.values() for p in points] == [0.85, 0.85, 0.85, 0.85]
    assert charts.draw_score_by_backbone(info).to_dict() == charts.score_by_backbone(data).to_dict()
