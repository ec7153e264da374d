"""Studies end to end on tiny models: single- and multi-label, resume, kept models, export and pipeline()."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from textclf.errors import ConfigError
from textclf.study import SearchSpace, StudyConfig, best_model_dir, load_study, run_study

FAST = {"epochs": 2, "space": SearchSpace(lr=(5e-4, 3e-3), batch_sizes=(16,))}


def quiet(_: str) -> None:
    pass


def test_single_label_study_compares_backbones(tiny_models: dict, studies: Path) -> None:
    cfg = StudyConfig(study="s1", data="demo", backbones=["tiny-bert", "tiny-roberta"], trials=3, **FAST)
    summary = run_study(cfg, progress=False, log=quiet)
    assert summary["n_trials"] == 3 and summary["metric"] == "accuracy"
    assert set(summary["per_backbone"]) == {"tiny-bert", "tiny-roberta"}  # the enqueued recipe trial of each ran
    assert 0.0 <= summary["baseline"] <= 1.0
    study = load_study("s1")
    first = study.trials[:2]
    assert [t.params["backbone"] for t in first] == ["tiny-bert", "tiny-roberta"]
    assert all(t.user_attrs["recipe"] for t in first)
    t0 = study.trials[0]
    for key in ("metrics", "train_time_s", "n_params", "latency_ms", "learning_curve", "report"):
        assert key in t0.user_attrs
    steps = [p["step"] for p in t0.user_attrs["learning_curve"]]
    assert len(steps) == 4 and steps[1] == 100 and steps[3] == 200  # 4 evaluations a trial: 2 an epoch of 2
    assert len(t0.user_attrs["report"]["confusion_matrix"]) == 3
    for backbone in ("tiny-bert", "tiny-roberta"):
        assert (best_model_dir(study, backbone) / "model.safetensors").is_file()


def test_multi_label_study_and_prediction(tiny_models: dict, studies: Path) -> None:
    from textclf.export import copy_model
    from textclf.predict import Predictor

    cfg = StudyConfig(study="m1", data="demo-multilabel", backbones=["tiny-xlnet"], trials=1, **FAST)
    summary = run_study(cfg, progress=False, log=quiet)
    assert summary["task"] == "multi_label" and summary["metric"] == "macro_f1"
    metrics = summary["best"]["metrics"]
    assert {"micro_f1", "macro_f1", "subset_accuracy", "threshold"} <= set(metrics)
    out = copy_model(best_model_dir(load_study("m1")), studies / "exported")
    predictor = Predictor.from_dir(out)
    assert predictor.info.threshold == metrics["threshold"]
    [pred] = predictor.predict("About the lamp: shipping was fast, and good value for the money.")
    assert set(pred.probabilities) == {"delivery", "price", "quality", "service"}
    assert pred.labels == [n for n, p in pred.probabilities.items() if p >= metrics["threshold"]]


def test_resume_adds_trials_to_the_same_study(tiny_models: dict, studies: Path) -> None:
    storage = f"sqlite:///{studies / 'own.db'}"
    studies.mkdir(parents=True)
    cfg = dict(study="r1", data="demo", backbones=["tiny-bert"], storage=storage, trials=2, **FAST)
    assert run_study(StudyConfig(**cfg), progress=False, log=quiet)["n_trials"] == 2
    second = run_study(StudyConfig(**cfg), progress=False, log=quiet)
    assert second["n_trials"] == 4
    numbers = [t["number"] for t in second["trials"]]
    assert numbers == [0, 1, 2, 3]
    # Only the recipe trial was enqueued, once: the resumed run explored instead of repeating it.
    assert sum(load_study("r1", storage).trials[i].user_attrs.get("recipe", False) for i in range(4)) == 1


def test_an_interrupt_lost_on_the_way_is_raised_at_the_next_step(tiny_models: dict, studies: Path) -> None:
    # The CLI remembers a SIGINT that Python dropped (one raised inside a garbage-collection callback is printed and
    # ignored); run_study asks at every training step. The trial it stops ends failed, the finished one stays.
    cfg = dict(study="i1", data="demo", backbones=["tiny-bert"], trials=3, **FAST)
    steps = []

    def interrupted() -> bool:
        steps.append(1)
        return len(load_study("i1", None).trials) >= 2  # asked during the second trial

    with pytest.raises(KeyboardInterrupt):
        run_study(StudyConfig(**cfg), progress=False, log=quiet, interrupted=interrupted)
    states = [t.state.name for t in load_study("i1", None).trials]
    assert states == ["COMPLETE", "FAIL"] and steps


def test_resume_with_other_data_is_refused(tiny_models: dict, studies: Path) -> None:
    run_study(StudyConfig(study="r2", data="demo", backbones=["tiny-bert"], trials=1, **FAST), progress=False, log=quiet)
    with pytest.raises(ConfigError, match="data='demo'"):
        run_study(StudyConfig(study="r2", data="demo-multilabel", backbones=["tiny-bert"], trials=1, **FAST),
                  progress=False, log=quiet)


def test_export_loads_in_transformers_pipeline_with_the_same_top_label(tiny_models: dict, studies: Path) -> None:
    from transformers import pipeline

    from textclf.export import copy_model
    from textclf.predict import Predictor

    run_study(StudyConfig(study="e1", data="demo", backbones=["tiny-roberta"], trials=1, **FAST), progress=False,
              log=quiet)
    out = copy_model(best_model_dir(load_study("e1")), studies / "export")
    files = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "README.md", "textclf.json"} <= files
    card = (out / "README.md").read_text()
    assert "accuracy" in card and "tiny-roberta" in card and "head_lr_ratio" in card
    texts = ["Does the lamp come with a warranty?", "It broke after a day, terrible", "Lovely, works great"]
    clf = pipeline("text-classification", model=str(out))
    ours = Predictor.from_dir(out).predict(texts)
    theirs = clf(texts)
    assert [p.label for p in ours] == [r["label"] for r in theirs]
    # Our probabilities are temperature-scaled; the card's recipe turns pipeline()'s logits into the same ones.
    import json

    import numpy as np

    t = json.loads((out / "textclf.json").read_text())["temperature"]
    assert f"/ {t:.6f}" in card
    exact = Predictor.from_dir(out, precision="fp32").predict(texts)  # pipeline() runs fp32
    for p, scores in zip(exact, clf(texts, top_k=None, function_to_apply="none"), strict=True):
        z = np.array([s["score"] for s in scores]) / t
        probs = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
        assert dict(zip([s["label"] for s in scores], probs, strict=True)) == pytest.approx(p.probabilities, abs=1e-4)


def test_failed_trial_records_its_reason_and_the_study_goes_on(tiny_models: dict, studies: Path) -> None:
    space = SearchSpace(batch_sizes=(16,), epochs=(1, 1))
    space.lr = (1e6, 1e7)  # an absurd learning rate, set past the config's own check: the loss diverges
    summary = run_study(StudyConfig(study="f1", data="demo", backbones=["tiny-bert"], trials=2, epochs=1,
                                    space=space), progress=False, log=quiet)
    failed = [t for t in summary["trials"] if t["state"] == "FAIL"]
    assert failed and all("loss became" in (t["fail_reason"] or "") for t in failed)
    assert len(summary["trials"]) == 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"study": "../x"}, "not allowed"), ({"trials": 0}, "trials must be"), ({"backbones": []}, "backbones is empty"),
     ({"metric": "auc"}, "metric must be"), ({"pruner": "magic"}, "pruner must be"),
     ({"progressive_pruning": "no"}, "progressive_pruning must be true or false, got 'no'"),
     ({"jobs": 0}, "jobs must be between 1 and 64")],
)
def test_study_config_is_validated(kwargs: dict, message: str) -> None:
    base = {"study": "ok", "data": "demo"} | kwargs
    with pytest.raises(ConfigError, match=message):
        StudyConfig(**base)


@pytest.mark.parametrize(("kwargs", "message"), [({"lr": (1e-3, 1e-5)}, "low <= high"),
                                                 ({"head_lr_ratio": (0.0, 10.0)}, "positive")])
def test_search_space_is_validated(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SearchSpace(**kwargs)


def test_minilm_smoke(studies: Path) -> None:
    """The real pretrained backbone trains through the same path (a few steps on the demo sample)."""
    summary = run_study(StudyConfig(study="mini", data="demo", backbones=["minilm"], trials=1, epochs=1,
                                    max_train_samples=48), progress=False, log=quiet)
    assert summary["n_trials"] == 1 and summary["best"]["backbone"] == "minilm"
    assert summary["trials"][0]["n_params"] > 20_000_000


def test_bare_resume_keeps_the_studys_subsample_and_space(tiny_models: dict, studies: Path) -> None:
    first = StudyConfig(study="r3", data="demo", backbones=["tiny-bert"], trials=1, epochs=1, max_train_samples=60,
                        space=SearchSpace(lr=(5e-4, 3e-3), batch_sizes=(16,)))
    run_study(first, progress=False, log=quiet)
    lines: list[str] = []
    summary = run_study(StudyConfig(study="r3", data="demo", trials=1), progress=False, log=lines.append)
    assert summary["n_trials"] == 2
    assert any("stratified subsample of 60" in line for line in lines)
    resumed = load_study("r3").trials[1].params
    assert resumed["batch_size"] == 16 and 5e-4 <= resumed["lr"] <= 3e-3 and "epochs" not in resumed
    with pytest.raises(ConfigError, match="space="):
        run_study(StudyConfig(study="r3", data="demo", trials=1, space=SearchSpace(batch_sizes=(8,))), progress=False,
                  log=quiet)


def test_bf16_fast_path_keeps_the_fp32_decisions(tiny_models: dict, studies: Path) -> None:
    from textclf.data import load_data
    from textclf.export import copy_model
    from textclf.predict import Predictor

    run_study(StudyConfig(study="p1", data="demo", backbones=["tiny-bert"], trials=1, **FAST), progress=False, log=quiet)
    out = copy_model(best_model_dir(load_study("p1")), studies / "p1")
    texts = load_data("demo").validation.texts
    exact = Predictor.from_dir(out, precision="fp32")
    fast = Predictor.from_dir(out, precision="bf16")
    assert exact.fast is None and fast.fast is not None
    assert [p.label for p in fast.predict(texts)] == [p.label for p in exact.predict(texts)]


@pytest.mark.slow
def test_compiled_predictor_answers_once_ready_with_the_fp32_decisions(tiny_models: dict, studies: Path) -> None:
    from textclf.data import load_data
    from textclf.predict import Predictor

    run_study(StudyConfig(study="c1", data="demo", backbones=["tiny-bert"], trials=1, **FAST), progress=False, log=quiet)
    folder = best_model_dir(load_study("c1"))
    texts = load_data("demo").validation.texts
    exact = Predictor.from_dir(folder, precision="fp32")
    compiled = Predictor.from_dir(folder, precision="bf16", compile=True)
    assert compiled.wait_compiled(600), compiled.compile_error
    calls: list[int] = []
    real = compiled.compiled
    compiled.compiled = lambda **batch: calls.append(len(batch["input_ids"])) or real(**batch)
    assert [p.label for p in compiled.predict(texts)] == [p.label for p in exact.predict(texts)]
    assert [p.label for p in compiled.predict(texts[:1])] == [p.label for p in exact.predict(texts[:1])]
    assert calls and calls[-1] == 1  # the many-text path and the one-text path both went through the graph


def test_a_failed_compile_leaves_the_eager_predictor_answering(tiny_models: dict, studies: Path, monkeypatch) -> None:
    import torch

    from textclf.data import load_data
    from textclf.predict import Predictor

    def no_compiler(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("no C++ compiler found")

    monkeypatch.setattr(torch, "compile", no_compiler)
    run_study(StudyConfig(study="c2", data="demo", backbones=["tiny-bert"], trials=1, **FAST), progress=False, log=quiet)
    folder = best_model_dir(load_study("c2"))
    texts = load_data("demo").validation.texts
    predictor = Predictor.from_dir(folder, precision="bf16", compile=True)
    assert predictor.wait_compiled(60) is False
    assert predictor.compile_error == "RuntimeError: no C++ compiler found"
    exact = Predictor.from_dir(folder, precision="fp32")
    assert [p.label for p in predictor.predict(texts)] == [p.label for p in exact.predict(texts)]


def test_test_split_is_scored_once_for_the_chosen_model(tiny_models: dict, studies: Path, monkeypatch) -> None:
    cfg = dict(study="t1", data="demo", backbones=["tiny-bert"], trials=1, **FAST)
    summary = run_study(StudyConfig(**cfg), progress=False, log=quiet)
    test = summary["test"]
    assert test["split"] == "test" and test["n"] == 60 and test["trial"] == summary["best"]["trial"]
    assert 0 <= test["value"] <= 1 and summary["baseline_test"] is not None
    # While the chosen model stays the same, the test split is not scored again.
    import textclf.predict as predict_mod

    calls: list[int] = []
    monkeypatch.setattr(predict_mod.Predictor, "predict_proba", lambda self, texts, **kw: calls.append(len(texts)))
    from textclf.data import load_data
    from textclf.study import score_test

    study = load_study("t1")
    assert score_test(study, load_data("demo"), "accuracy", quiet) == test
    assert calls == []


def test_kept_models_carry_a_fitted_temperature_that_predictions_apply(tiny_models: dict, studies: Path) -> None:
    import json

    import numpy as np

    from textclf.calibration import rescale
    from textclf.data import load_data
    from textclf.export import META_FILE, PROBS_FILE, validation_probs
    from textclf.predict import Predictor

    summary = run_study(StudyConfig(study="cal", data="demo", backbones=["tiny-bert"], trials=1, **FAST),
                        progress=False, log=quiet)
    folder = best_model_dir(load_study("cal"))
    info = json.loads((folder / META_FILE).read_text())
    t = info["temperature"]
    assert t > 0 and t != 1.0 and set(info["calibration"]) == {"temperature", "validation_ece", "validation_ece_scaled"}
    assert info["calibration"]["validation_ece_scaled"] <= info["calibration"]["validation_ece"] + 1e-9
    assert PROBS_FILE in info["files"] and f"{t:.4f}" in (folder / "README.md").read_text()
    data = load_data("demo")
    val = data.validation
    kept = validation_probs(folder, len(val.texts), data.num_labels)
    assert kept is not None and validation_probs(folder, len(val.texts) + 1, data.num_labels) is None  # another split's: refused
    served = Predictor.from_dir(folder, precision="fp32")
    assert served.temperature == t
    raw = Predictor.from_dir(folder, precision="fp32")
    raw.temperature = 1.0
    texts = val.texts[:8]
    np.testing.assert_allclose(served.predict_proba(texts), rescale(raw.predict_proba(texts), t), atol=1e-5)
    assert [p.label for p in served.predict(texts)] == [p.label for p in raw.predict(texts)]
    cal = summary["test"]["calibration"]
    assert cal["temperature"] == t and 0 <= cal["ece_scaled"] <= 1 and 0 <= cal["ece"] <= 1 and cal["ece"] != cal["ece_scaled"]


def test_seed_reruns_give_mean_and_spread_without_changing_selection(tiny_models: dict, studies: Path) -> None:
    from textclf import charts

    cfg = StudyConfig(study="sd", data="demo", backbones=["tiny-bert", "tiny-roberta"], trials=2, seeds=2, **FAST)
    summary = run_study(cfg, progress=False, log=quiet)
    assert summary["n_trials"] == 6  # 2 searched + 2 seeds x 2 backbones
    spread = summary["seed_spread"]
    assert set(spread) == {"tiny-bert", "tiny-roberta"}
    for s in spread.values():
        assert s["n"] == 3 and len(s["values"]) == 3 and s["std"] >= 0
    reruns = [t for t in load_study("sd").trials if "seed_of" in t.user_attrs]
    assert sorted(t.user_attrs["seed"] for t in reruns) == [43, 43, 44, 44]
    assert all(t.params == load_study("sd").trials[t.user_attrs["seed_of"]].params for t in reruns)
    assert summary["best"]["trial"] in (0, 1)  # selection ignores the seed re-runs
    assert summary["ranking_supported"] in (True, False)
    fig = charts.seed_variance(charts.study_data(load_study("sd")))
    assert len(fig.data) == 4 and "±" in fig.data[0].name
    # Resuming with the same k adds no re-runs for configurations already re-run.
    again = run_study(StudyConfig(study="sd", data="demo", trials=1, seeds=2), progress=False, log=quiet)
    assert again["n_trials"] in (7, 9)  # 9 only if the new trial became a backbone's best and earned re-runs


def _train_on_demo(backbone: str, cfg: Any, **kwargs: Any) -> Any:
    """Fine-tune a fresh tiny model (seeded with ``cfg.seed``) on the bundled demo data; the TrainResult."""
    from textclf.backbones import head_prefixes, load_model, load_tokenizer, resolve_backbone
    from textclf.data import load_data
    from textclf.train import encode, train

    data = load_data("demo")
    spec = resolve_backbone(backbone)
    tok = load_tokenizer(spec)
    tr = encode(tok, data.train.texts, data.train.labels, 64)
    va = encode(tok, data.validation.texts, data.validation.labels, 64)
    model = load_model(spec, num_labels=3, multi_label=False, seed=cfg.seed)
    return train(model, tok, tr, va, cfg, task="single_label", head_prefixes=head_prefixes(model, spec), **kwargs)


def test_same_seed_gives_identical_metrics(tiny_models: dict) -> None:
    from textclf.train import TrainConfig

    runs = [_train_on_demo("tiny-roberta", TrainConfig(lr=1e-3, batch_size=16, epochs=2, seed=seed)).history
            for seed in (7, 7, 8)]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_a_better_model_kept_by_another_worker_is_not_overwritten(tiny_models: dict, studies: Path) -> None:
    import json

    import textclf.runner as runner_mod
    from textclf.backbones import load_tokenizer, resolve_backbone
    from textclf.data import load_data

    cfg = StudyConfig(study="w2", data="demo", backbones=["tiny-bert"], trials=1, **FAST)
    run_study(cfg, progress=False, log=quiet)
    folder = best_model_dir(load_study("w2"))
    meta = folder / "textclf.json"
    raw = json.loads(meta.read_text())
    raw["metrics"]["validation"]["accuracy"], raw["trial"] = 2.0, 99  # as if another worker kept a better one
    meta.write_text(json.dumps(raw))

    class FinishedTrial:  # a trial better than every one in the storage, but worse than the kept model
        number, user_attrs, study = 7, {}, load_study("w2")

        def set_user_attr(self, key: str, value: object) -> None:
            self.user_attrs[key] = value

    runner = runner_mod.TrialRunner(cfg, load_data("demo"), ["tiny-bert"], "accuracy", folder.parent, False, quiet)
    tok = load_tokenizer(resolve_backbone("tiny-bert"))
    model = runner.fresh_model("tiny-bert", tok.pad_token_id, cfg.seed)
    runner._keep_if_best(FinishedTrial(), {"backbone": "tiny-bert"}, model, tok, {"accuracy": 1.5}, 1.5, None)
    assert json.loads(meta.read_text())["trial"] == 99
    runner._keep_if_best(FinishedTrial(), {"backbone": "tiny-bert"}, model, tok, {"accuracy": 2.5}, 2.5, None)
    assert json.loads(meta.read_text())["trial"] == 7  # a better one does replace it


def test_multi_label_per_class_thresholds_travel_to_the_predictor(tiny_models: dict, studies: Path) -> None:
    from textclf.export import copy_model
    from textclf.predict import Predictor

    cfg = StudyConfig(study="pc", data="demo-multilabel", backbones=["tiny-bert"], trials=1, threshold_mode="per_class",
                      class_weight="balanced", **FAST)
    summary = run_study(cfg, progress=False, log=quiet)
    thresholds = summary["best"]["metrics"]["threshold"]
    assert isinstance(thresholds, list) and len(thresholds) == 4
    baseline = load_study("pc").user_attrs["textclf"]["baseline"]  # like for like: the baseline's thresholds too
    assert isinstance(baseline["metrics"]["threshold"], list) and len(baseline["metrics"]["threshold"]) == 4
    predictor = Predictor.from_dir(copy_model(best_model_dir(load_study("pc")), studies / "pc"))
    assert predictor.info.threshold == thresholds
    [pred] = predictor.predict("About the lamp: it arrived two days late.")
    names = predictor.info.label_names
    assert pred.labels == [n for n, p in pred.probabilities.items() if p >= thresholds[names.index(n)]]
    assert "own threshold" in (best_model_dir(load_study("pc")) / "README.md").read_text()
    # A bare resume keeps the study's thresholds mode and class weights; a conflicting one is refused.
    run_study(StudyConfig(study="pc", data="demo-multilabel", trials=1), progress=False, log=quiet)
    assert isinstance(load_study("pc").trials[-1].user_attrs["learning_curve"][0]["threshold"], list)
    with pytest.raises(ConfigError, match="threshold_mode="):
        run_study(StudyConfig(study="pc", data="demo-multilabel", trials=1, threshold_mode="global"), progress=False,
                  log=quiet)


def test_training_stops_at_its_deadline_with_an_evaluation(tiny_models: dict) -> None:
    import time

    from textclf.train import TrainConfig

    result = _train_on_demo("tiny-bert", TrainConfig(lr=1e-3, batch_size=8, epochs=50, seed=1), deadline=time.monotonic())
    assert result.out_of_time and result.stopped_early
    assert result.steps == 1 and len(result.history) == 1  # the one step taken, evaluated
    assert "accuracy" in result.metrics


def test_time_budget_ends_a_running_trial_with_its_result_kept(tiny_models: dict, studies: Path) -> None:
    import time

    cfg = StudyConfig(study="budget", data="demo", backbones=["tiny-bert"], trials=5, timeout=6, epochs=100_000,
                      space=SearchSpace(lr=(1e-3, 1e-3), batch_sizes=(8,)))
    start = time.monotonic()
    summary = run_study(cfg, progress=False, log=quiet)
    assert time.monotonic() - start < 6 + 30  # the budget, one evaluation and the test split: not 100,000 epochs
    [trial] = load_study("budget").trials
    assert trial.state.name == "COMPLETE"
    assert trial.user_attrs["stopped"].startswith("time budget reached after ")
    assert summary["best"]["trial"] == 0 and (best_model_dir(load_study("budget"), "tiny-bert") / "config.json").is_file()
    from textclf.dashboard import Dashboard, DashboardConfig

    rows, _ = Dashboard(DashboardConfig.from_env()).study_status("budget")
    assert rows[0][8].startswith("complete (time budget)")  # the live table says why it ended early


@pytest.mark.parametrize("backbone", ["tiny-bert", "tiny-xlnet"])  # XLNet pads on the left
def test_many_texts_batched_by_length_give_each_texts_own_probabilities(tiny_models: dict, studies: Path,
                                                                        backbone: str) -> None:
    import numpy as np

    from textclf.data import load_data
    from textclf.predict import Predictor

    run_study(StudyConfig(study=f"b-{backbone}", data="demo", backbones=[backbone], trials=1, **FAST), progress=False,
              log=quiet)
    predictor = Predictor.from_dir(best_model_dir(load_study(f"b-{backbone}")), precision="fp32")
    texts = [*load_data("demo").validation.texts[:20], "ok", "a much longer text " * 8]
    batched = predictor.predict_proba(texts, batch_size=4)  # sorted by length, so batches mix the original order
    one_by_one = np.concatenate([predictor.predict_proba([t]) for t in texts])
    assert batched.shape == (22, 3)
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)
    assert predictor.predict_proba([]).shape == (0, 3)
    # A folder saved before the padding side was written down still pads the way its family needs.
    import json

    folder = best_model_dir(load_study(f"b-{backbone}"))
    config = json.loads((folder / "tokenizer_config.json").read_text())
    assert config.pop("padding_side") == ("left" if backbone == "tiny-xlnet" else "right")
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    assert Predictor.from_dir(folder).tokenizer.padding_side == ("left" if backbone == "tiny-xlnet" else "right")


def test_median_pruner_waits_for_two_finished_trials_at_a_step() -> None:
    import optuna

    from textclf.study import make_pruner

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", pruner=make_pruner("median", n_startup_trials=1))

    def finished(value: float) -> None:
        trial = study.ask()
        trial.report(value, 50)
        study.tell(trial, value)

    def behind_at_half_an_epoch() -> bool:
        trial = study.ask()
        trial.report(0.5, 50)
        pruned = trial.should_prune()
        study.tell(trial, state=optuna.trial.TrialState.PRUNED if pruned else optuna.trial.TrialState.COMPLETE,
                   values=None if pruned else 0.5)
        return pruned

    finished(0.9)  # the recipe trial alone: one trial behind it at one evaluation must not be cut for that
    assert not behind_at_half_an_epoch()
    finished(0.9)
    assert behind_at_half_an_epoch()


def test_with_one_finished_trial_only_a_trial_short_of_half_its_lead_over_chance_is_cut() -> None:
    import optuna

    from textclf.study import make_pruner

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", pruner=make_pruner("median", n_startup_trials=1, chance=0.5))

    def pruned_at(value: float, step: int = 50) -> bool:
        trial = study.ask()
        trial.report(value, step)
        pruned = trial.should_prune()
        study.tell(trial, state=optuna.trial.TrialState.PRUNED if pruned else optuna.trial.TrialState.FAIL)
        return pruned

    assert not pruned_at(0.52)  # no finished trial: nothing to judge by
    first = study.ask()
    first.report(0.9, 50)
    study.tell(first, 0.9)
    assert pruned_at(0.69) and not pruned_at(0.71)  # halfway from chance (0.5) to the finished trial (0.9) is 0.7
    assert not pruned_at(0.52, step=25)  # the finished trial never reported there
    second = study.ask()
    second.report(0.6, 50)
    study.tell(second, 0.6)
    assert not pruned_at(0.76) and pruned_at(0.74)  # two finished: the median (0.75) rules alone


@pytest.mark.parametrize("task", ["single_label", "multi_label"])
def test_chance_is_the_score_of_predicting_the_training_priors(task: str) -> None:
    from textclf.baseline import chance_score
    from textclf.data import Split, TextData

    if task == "single_label":
        train_labels, val_labels = [0, 0, 0, 1, 2], [0, 1, 1, 2]
        expected = {"accuracy": 0.25}  # always the training majority, class 0
    else:
        train_labels, val_labels = [[0], [0, 1], [0], [1]], [[0], [1], [0, 1], []]
        # Label 0 (3 of 4 rows) is predicted everywhere and label 1 (2 of 4) too at the best threshold (<= 0.5).
        expected = {"macro_f1": (2 * 2 / 6 + 2 * 2 / 6) / 2}
    data = TextData(train=Split(["t"] * len(train_labels), train_labels),
                    validation=Split(["v"] * len(val_labels), val_labels), test=None, task=task, source="mem",
                    text_column="text", label_column="label",
                    label_names=["a", "b", "c"][: 3 if task == "single_label" else 2])
    for metric, value in expected.items():
        assert chance_score(data, metric) == pytest.approx(value)


def test_mid_epoch_evaluations_score_a_sample_and_only_full_ones_choose_the_weights(tiny_models: dict) -> None:
    from textclf.train import TrainConfig

    cfg = TrainConfig(lr=1e-3, batch_size=8, epochs=2, evals_per_epoch=2, pruning_eval_rows=5, seed=3,
                      early_stopping_patience=1, progressive_pruning=False)
    reported: list[tuple[int, int]] = []
    result = _train_on_demo("tiny-bert", cfg, on_eval=lambda step, m: reported.append((step, m["rows"])))
    partial = [row for row in result.history if "rows" in row]
    full = [row for row in result.history if "rows" not in row]
    assert [row["rows"] for row in partial] == [5, 5] and [row["epoch"] for row in full] == [1.0, 2.0]
    assert [rows for _, rows in reported] == [5, 60, 5, 60]  # the pruner hears every one, with its size
    # Weights are chosen, and patience counted, over full evaluations only: a partial one never stops training.
    assert len(result.history) == 4
    assert result.metrics["accuracy"] == max(row["accuracy"] for row in full)


@pytest.mark.parametrize("batch_size", [8, 13, 32])
def test_evaluations_are_reported_at_the_same_points_whatever_the_batch_size(tiny_models: dict,
                                                                              batch_size: int) -> None:
    from textclf.train import TrainConfig

    # Steps per epoch that do not divide by 4 (240 rows at batch 13: 19; the evaluations land on steps 5, 10, 14 and
    # 19, at 26, 53, 74 and 100% of the epoch) still report at 25/50/75/100: the pruner compares trials only at
    # equal points.
    cfg = TrainConfig(lr=1e-3, batch_size=batch_size, epochs=2, evals_per_epoch=4, pruning_eval_rows=5, seed=3)
    reported: list[int] = []
    _train_on_demo("tiny-bert", cfg, on_eval=lambda step, m: reported.append(step))
    assert reported == [25, 50, 75, 100, 125, 150, 175, 200]


def test_first_epoch_pruning_evaluations_score_the_training_rows_as_predicted_before_training_on_them(
        tiny_models: dict) -> None:
    import random

    import torch

    from textclf.backbones import head_prefixes, load_model, load_tokenizer, resolve_backbone
    from textclf.data import load_data
    from textclf.metrics import compute_metrics, softmax_or_sigmoid
    from textclf.train import Encoded, TrainConfig, encode, length_grouped_batches, predict_logits, train

    data = load_data("demo")
    spec = resolve_backbone("tiny-bert")
    tok = load_tokenizer(spec)
    train_enc = encode(tok, data.train.texts, data.train.labels, 64)
    val_enc = encode(tok, data.validation.texts, data.validation.labels, 64)
    model = load_model(spec, num_labels=3, multi_label=False, seed=3, dropout=0.0)
    with torch.no_grad():  # a head whose decisions vary from row to row, so the score depends on which rows
        model.classifier.weight.mul_(200.0)
    start = load_model(spec, num_labels=3, multi_label=False, seed=3, dropout=0.0)
    start.load_state_dict(model.state_dict())
    # A learning rate too small to move the weights and no dropout: the model that predicted each row before
    # training on it is the starting one, so the first score must be its score on the first half's rows.
    cfg = TrainConfig(lr=1e-12, head_lr_ratio=1.0, batch_size=8, epochs=2, evals_per_epoch=2, pruning_eval_rows=5,
                      seed=3, precision="fp32")
    reported: list[dict] = []
    result = train(model, tok, train_enc, val_enc, cfg, task="single_label", head_prefixes=head_prefixes(model, spec),
                   on_eval=lambda step, m: reported.append({"step": step, **m}))
    assert [(r["step"], r["rows"], r.get("on")) for r in reported] == [
        (50, 120, "train"), (100, 60, None), (150, 5, None), (200, 60, None)]  # epoch 2: the validation sample
    assert [row.get("on") for row in result.history] == ["train", None, None, None]

    batches = length_grouped_batches([len(f["input_ids"]) for f in train_enc.features], 8, random.Random(3))
    rows = [i for batch in batches[:15] for i in batch]  # 30 steps an epoch: the first evaluation follows step 15
    other = sorted(set(range(len(train_enc))) - set(rows))
    for part, expect_equal in ((rows, True), (other, False)):
        enc = Encoded([train_enc.features[i] for i in part], [train_enc.labels[i] for i in part])
        probs = softmax_or_sigmoid(predict_logits(start, tok, enc), "single_label")
        score = compute_metrics("single_label", enc.labels, probs, metric="macro_f1")["macro_f1"]
        assert (reported[0]["macro_f1"] == pytest.approx(score, abs=1e-9)) is expect_equal


def test_trials_side_by_side_share_one_study(tiny_models: dict, studies: Path) -> None:
    lines: list[str] = []
    cfg = StudyConfig(study="par", data="demo", backbones=["tiny-bert", "tiny-roberta"], trials=4, jobs=2, **FAST)
    summary = run_study(cfg, progress=False, log=lines.append)
    assert summary["n_trials"] == 4
    study = load_study("par")
    assert all(t.state.name in ("COMPLETE", "PRUNED") for t in study.trials), [t.state for t in study.trials]
    # The spawned worker knew the backbones registered in this process only, and ran its share.
    assert sorted(t.user_attrs["worker"] for t in study.trials) == [1, 1, 2, 2]
    assert any("2 workers sharing" in line for line in lines)
    counts = sorted(int(line[1:line.index("/")]) for line in lines if line.startswith("["))
    assert len(counts) == 2 and set(counts) <= {1, 2, 3, 4}  # numbered among all four trials
    assert not any("exit code" in line for line in lines)


def test_workers_split_the_threads_and_the_last_one_left_takes_them_all() -> None:
    import multiprocessing

    import torch

    from textclf.runner import TrialRunner

    before = torch.get_num_threads()
    runner = TrialRunner(StudyConfig(study="t", data="demo"), None, [], "accuracy", Path("."), False, quiet)  # type: ignore[arg-type]
    active = multiprocessing.get_context("spawn").Value("i", 2)
    runner.share = (4, active)
    try:
        runner.share_threads()
        assert torch.get_num_threads() == 2
        active.value = 1
        runner.share_threads()
        assert torch.get_num_threads() == 4
        runner.share = (1, active)
        active.value = 3
        runner.share_threads()
        assert torch.get_num_threads() == 1  # never fewer than one
    finally:
        torch.set_num_threads(before)


def test_side_by_side_needs_a_storage_the_workers_share(studies: Path) -> None:
    cfg = StudyConfig(study="mem", data="demo", storage="sqlite:///:memory:", trials=2, jobs=2)
    with pytest.raises(ConfigError, match="in-memory"):
        run_study(cfg, progress=False, log=quiet)
