"""Small, skewed and long data: the recipe's steps rule, skew-aware selection, collapse and baseline warnings, the
max length read off the texts, head+tail truncation and the traditional baselines."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest

from textclf.config import MIN_STEPS, SearchSpace, StudyConfig, steps
from textclf.search import few_steps_warning, recipe_params, space_for


def quiet(_: str) -> None:
    pass


# ------------------------------------------------------------------------------------------------------ steps
@pytest.mark.parametrize("rows", [120, 500, 800, 1000, 2000, 5000, 6920, 50_000])
def test_the_scaled_recipe_makes_enough_optimizer_steps(tiny_models: dict, rows: int) -> None:
    space = space_for(rows)
    params = recipe_params("tiny-bert", StudyConfig(study="r", data="demo", space=space), rows)
    made = steps(rows, params["batch_size"], params["epochs"])
    assert made >= MIN_STEPS or params["epochs"] == space.epochs[1]  # tiny sets: as many epochs as the space allows
    assert space.epochs[0] <= params["epochs"] <= space.epochs[1] and params["batch_size"] in space.batch_sizes
    # every trial of the space can make the steps: the largest batch at the fewest epochs
    assert steps(rows, max(space.batch_sizes), space.epochs[0]) >= MIN_STEPS or space.epochs[0] == 8


def test_large_sets_keep_the_bert_recipe() -> None:
    assert space_for(6920) == SearchSpace(batch_sizes=(16, 32), epochs=(2, 5))
    assert space_for(800).batch_sizes == (8, 16)


def test_a_fixed_schedule_with_too_few_steps_is_warned_about_and_kept() -> None:
    cfg = StudyConfig(study="w", data="demo", epochs=1, space=SearchSpace(batch_sizes=(32,)))
    warning = few_steps_warning(800, cfg)
    assert warning is not None and warning.startswith("25 optimizer steps") and "drop --epochs" in warning
    assert few_steps_warning(6920, StudyConfig(study="w", data="demo", epochs=3)) is None


# ------------------------------------------------------------------------------------------------------ skew
def test_skewed_labels_switch_the_default_metric_to_macro_f1() -> None:
    from textclf.metrics import choose_metric, label_skew

    names = ["good", "bad", "meh"]
    skewed = [0] * 66 + [1] * 20 + [2] * 14
    assert label_skew("single_label", skewed, names).startswith("labels are skewed: 'good' has 66%")
    metric, why = choose_metric("single_label", skewed, names)
    assert metric == "macro_f1" and "commonest class" in why
    assert choose_metric("single_label", [0] * 55 + [1] * 45, names[:2]) == ("accuracy", "labels are balanced")
    assert choose_metric("multi_label", [[0], [1]], names[:2])[0] == "macro_f1"


def _skewed_csv(folder: Path, rows: int = 90) -> Path:
    """A small review set, 2/3 of it one class, with words that tell the classes apart."""
    path = folder / "skewed.csv"
    words = {"fine": "fine okay decent works", "broken": "broken refund awful never", "slow": "slow late waiting days"}
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "label"])
        for i in range(rows):
            label = "fine" if i % 3 else ("broken" if i % 2 else "slow")
            w.writerow([f"{words[label]} item {i} arrived", label])
    return path


def test_a_study_on_skewed_labels_selects_on_macro_f1_and_searches_class_weights(
        tiny_models: dict, studies: Path, tmp_path: Path) -> None:
    from textclf.study import load_study, run_study

    lines: list[str] = []
    cfg = StudyConfig(study="skew", data=str(_skewed_csv(tmp_path)), backbones=["tiny-bert"], trials=2, epochs=1,
                      space=SearchSpace(lr=(5e-4, 3e-3), batch_sizes=(16,)))
    summary = run_study(cfg, progress=False, log=lines.append)
    assert summary["metric"] == "macro_f1" and "skewed" in summary["metric_reason"]
    assert any(line.startswith("metric: macro_f1 (labels are skewed") for line in lines)
    study = load_study("skew")
    assert study.trials[0].params["class_weight"] == "balanced"  # the recipe; TPE then searches none/balanced
    assert all("class_weight" in t.params for t in study.trials)
    assert summary["majority"] is not None and set(summary["baselines"]) == {
        "tfidf+logreg", "tfidf+linear_svm", "tfidf+complement_nb"}
    assert any("optimizer steps" in w for w in summary["warnings"])  # 1 epoch of 4 batches: said, and kept


# ------------------------------------------------------------------------------------------------------ collapse
def test_a_model_that_gives_one_answer_to_nearly_every_row_is_marked_collapsed() -> None:
    from textclf.metrics import concentration

    probs = np.array([[0.9, 0.1]] * 97 + [[0.1, 0.9]] * 3)
    out = concentration("single_label", [0] * 66 + [1] * 34, probs, label_names=["fine", "broken"])
    assert out == {"answer": "fine", "share": 0.97, "true_share": 0.66, "collapsed": True}
    assert not concentration("single_label", [0] * 97 + [1] * 3, probs)["collapsed"]  # right as often: not collapsed
    nothing = concentration("multi_label", [[0], [1]] * 10, np.full((20, 2), 0.2), 0.5, ["a", "b"])
    assert nothing["answer"] == "{}" and nothing["collapsed"]  # no label for anything


def _study(value: float, predictions: dict[str, Any] | None = None) -> Any:
    from textclf.storage import SETUP_ATTR

    study = optuna.create_study(direction="maximize", study_name="mem")
    study.set_user_attr(SETUP_ATTR, {"metric": "macro_f1", "task": "single_label", "label_names": ["fine", "broken"],
                                     "baseline": {"model": "tfidf+linear_svm", "value": 0.45},
                                     "majority": {"value": 0.40}})
    dist = {"backbone": optuna.distributions.CategoricalDistribution(["minilm"])}
    study.add_trial(optuna.trial.create_trial(params={"backbone": "minilm"}, distributions=dist, value=value,
                                              user_attrs={"predictions": predictions or {}}))
    return study


def test_the_summary_warns_when_the_chosen_model_does_not_beat_the_baselines() -> None:
    from textclf.summary import summarize

    collapsed = {"answer": "fine", "share": 0.99, "true_share": 0.66, "collapsed": True}
    summary = summarize(_study(0.39, collapsed))
    warnings = " | ".join(summary["warnings"])
    assert "not above the tfidf+linear_svm baseline (0.4500)" in warnings
    assert "not above always predicting the majority class (0.4000)" in warnings
    assert "collapsed: predicts fine for 99% of the validation rows (66% have it)" in warnings
    assert summary["trials"][0]["collapsed"] is True
    assert summarize(_study(0.80))["warnings"] == []


def test_the_cli_and_the_dashboard_show_the_warnings(monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from textclf.charts import score_by_backbone, study_data
    from textclf.cli import _print_summary
    from textclf.summary import summarize

    study = _study(0.39, {"answer": "fine", "share": 0.99, "true_share": 0.66, "collapsed": True})
    _print_summary(summarize(study))
    assert "WARNING: the chosen model (trial 0, minilm) scores macro_f1 0.3900, not above" in capsys.readouterr().out
    fig = score_by_backbone(study_data(study))
    assert "collapsed: predicts fine" in fig.data[0].text[0]  # the chart's hover marks the collapsed trial


# ------------------------------------------------------------------------------------------------------ long texts
def test_max_length_is_read_off_the_training_texts(tiny_models: dict) -> None:
    from textclf.backbones import load_tokenizer, resolve_backbone
    from textclf.runner import needed_length, token_lengths

    tok = load_tokenizer(resolve_backbone("tiny-bert"))
    texts = ["good"] * 95 + ["good " * 30] * 5
    lengths = token_lengths(tok, texts, seed=0)
    assert max(lengths) > 30 and needed_length(tok, texts, 0) == 16  # 95% are short: the long 5% are cut
    assert needed_length(tok, ["good " * 30] * 10, 0) == 8 * -(-max(lengths) // 8)


def test_head_tail_truncation_keeps_both_ends_and_the_special_tokens(tiny_models: dict) -> None:
    from textclf.backbones import load_tokenizer, resolve_backbone
    from textclf.train import tokenize

    for name in ("tiny-bert", "tiny-xlnet"):
        tok = load_tokenizer(resolve_backbone(name))
        full = tokenize(tok, ["good " * 10 + "bad " * 10 + "late " * 10], 1000)["input_ids"][0]
        cut = tokenize(tok, ["good " * 10 + "bad " * 10 + "late " * 10], 12, "head_tail")["input_ids"][0]
        specials = set(tok.all_special_ids)
        lead = next(i for i, t in enumerate(full) if t not in specials)
        trail = next(i for i, t in enumerate(reversed(full)) if t not in specials)
        budget = 12 - lead - trail
        assert len(cut) == 12 and cut[:lead + 2] == full[:lead + 2]  # the start (a quarter of the budget)
        assert cut[lead + 2:] == full[-(budget - 2) - trail:]  # and the end, special tokens where they were
        assert tokenize(tok, ["good bad"], 12, "head_tail") == tokenize(tok, ["good bad"], 12)  # short: unchanged


def test_the_predictor_cuts_texts_as_training_did(tiny_models: dict, tmp_path: Path) -> None:
    from textclf.backbones import load_model, load_tokenizer, resolve_backbone
    from textclf.export import ModelInfo, save_model
    from textclf.predict import Predictor
    from textclf.train import encode, predict_logits

    spec = resolve_backbone("tiny-bert")
    tok = load_tokenizer(spec)
    model = load_model(spec, num_labels=2, multi_label=False, pad_token_id=tok.pad_token_id, seed=0)
    info = ModelInfo(label_names=["a", "b"], task="single_label", backbone="tiny-bert", max_length=12,
                     truncation="head_tail")
    save_model(model, tok, tmp_path / "m", info)
    predictor = Predictor.from_dir(tmp_path / "m", precision="fp32")
    texts = ["good " * 40 + "late " * 40, "bad late", "good " * 3000 + " late" * 3000]  # the last one is pre-cut
    logits = predict_logits(predictor.model, predictor.tokenizer, encode(tok, texts, [0, 0, 0], 12, "head_tail"))
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(predictor.predict_proba(texts), expected, atol=1e-5)


# ------------------------------------------------------------------------------------------------------ baselines
def test_three_traditional_baselines_are_tuned_and_the_best_is_the_studys_baseline(tmp_path: Path) -> None:
    from textclf.baseline import GRIDS, majority_baseline, traditional_baselines
    from textclf.data import load_data

    data = load_data(str(_skewed_csv(tmp_path, rows=150)))
    result = traditional_baselines(data, "macro_f1")
    assert set(result["baselines"]) == set(GRIDS)
    for name, base in result["baselines"].items():
        param, grid = GRIDS[name]
        assert base["params"][param] in grid and 0 <= base["value"] <= 1
    assert result["value"] == max(b["value"] for b in result["baselines"].values())
    assert result["model"] in GRIDS and result["value"] > 0.9  # the words tell the classes apart
    majority = majority_baseline(data, "macro_f1")
    assert majority["value"] < 0.5  # one class of three right: macro-F1 well under the baselines'


def test_the_recipe_balances_class_weights_only_for_a_per_class_metric(tiny_models: dict) -> None:
    cfg = StudyConfig(study="r", data="demo", class_weight="search", space=SearchSpace(batch_sizes=(16,)))
    assert recipe_params("tiny-bert", cfg, 2000, "macro_f1")["class_weight"] == "balanced"
    assert recipe_params("tiny-bert", cfg, 2000, "accuracy")["class_weight"] == "none"  # balancing costs accuracy
    assert "class_weight" not in recipe_params("tiny-bert", StudyConfig(study="r", data="demo"), 2000, "macro_f1")
