"""Run a study: create or resume it, run its trials (here, or side by side), re-run the best with more seeds, and
score the chosen model on the test split once.

A study lives in an Optuna storage (see :mod:`textclf.storage`); running the same study name again resumes it. What
it tries and prunes is :mod:`textclf.search`, one trial is :mod:`textclf.runner`, and what it found is
:mod:`textclf.summary`. The names most callers need are re-exported here.
"""

from __future__ import annotations

import itertools
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textclf import hub
from textclf.backbones import SCRATCH_PREFIX, download_size, resolve_backbone
from textclf.config import SearchSpace, StudyConfig, adopt_stored, check_resume, load_preset, studies_dir
from textclf.data import TextData
from textclf.errors import TextclfError
from textclf.metrics import choose_metric, label_skew
from textclf.runner import TrialRunner, load_study_data, long_texts
from textclf.search import attach_search, few_steps_warning, make_pruner, recipe_params
from textclf.storage import (
    list_studies,
    load_study,
    open_storage,
    read_study,
    recipe_attrs,
    redact,
    resolve_storage,
    seed_attrs,
    setup_of,
    stored_setup,
    write_setup,
)
from textclf.summary import best_model_dir, summarize
from textclf.workers import check_shareable, optimize_side_by_side

__all__ = ["SearchSpace", "StudyConfig", "best_model_dir", "enqueue_seed_reruns", "list_studies", "load_preset",
           "load_study", "make_pruner", "open_storage", "resolve_storage", "run_study", "score_test", "studies_dir",
           "summarize"]


@dataclass
class _Opened:
    """A study ready for this run's trials, with what this run resolved of its setup."""

    study: Any
    setup: dict[str, Any]
    data: TextData
    backbones: list[str]
    metric: str
    models_dir: Path
    joined: bool  # another worker created it while this one started
    downloads: dict[str, int | None]  # backbone -> bytes its weights will take from the hub (None: it does not say)


def _fill_defaults(cfg: StudyConfig, data: TextData) -> None:
    """Defaults of the stored settings that neither this command nor the study it resumes or joins gave."""
    cfg.pruner = cfg.pruner or "median"
    cfg.threshold_mode = cfg.threshold_mode or "global"
    skewed = label_skew(data.task, data.train.labels, data.label_names) is not None
    cfg.class_weight = cfg.class_weight or ("search" if skewed else "none")
    cfg.truncation = cfg.truncation or "head"  # a new study decides on its texts first (see _open)


def _adopt(cfg: StudyConfig, stored: dict[str, Any]) -> None:
    check_resume(stored, cfg, cfg.backbones, cfg.metric)
    adopt_stored(cfg, stored)


def _open(cfg: StudyConfig, storage: Any) -> _Opened:
    """Resume ``cfg.study``, join it (another worker is creating it), or create it with its recipe trials."""
    import optuna

    stored = stored_setup(storage, cfg.study)
    if stored:
        _adopt(cfg, stored)
    backbones = cfg.backbones or stored.get("backbones") or ["minilm"]
    # Fail before any data is tokenised or any trial starts; note what the hub will send.
    sizes = {name: download_size(resolve_backbone(name)) for name in backbones}
    downloads = {name: size for name, size in sizes.items() if size != 0}
    data = load_study_data(cfg)
    cfg.space = (cfg.space or SearchSpace()).filled(len(data.train))  # resumed: the stored space; given: the user's
    metric, reason = choose_metric(data.task, data.train.labels, data.label_names)
    if cfg.metric or stored.get("metric"):
        metric, reason = cfg.metric or stored["metric"], "asked for" if cfg.metric else stored.get("metric_reason", "")
    models_dir = Path(cfg.models_dir).resolve() if cfg.models_dir else Path(
        stored.get("models_dir") or studies_dir() / "models" / cfg.study)
    if stored:
        study = optuna.load_study(study_name=cfg.study, storage=storage)
        return _Opened(study, stored, data, backbones, metric, models_dir, joined=False, downloads=downloads)
    try:  # the one worker that creates the study sets it up; any other joins it
        study = optuna.create_study(study_name=cfg.study, storage=storage, direction="maximize")
    except optuna.exceptions.DuplicatedStudyError:
        stored = stored_setup(storage, cfg.study, wait_s=120)
        _adopt(cfg, stored)
        study = optuna.load_study(study_name=cfg.study, storage=storage)
        return _Opened(study, stored, data, backbones, metric, models_dir, joined=True, downloads=downloads)
    if cfg.truncation is None:
        long = long_texts(cfg, data, backbones[0].removeprefix(SCRATCH_PREFIX))
        cfg.truncation = "search" if long else "head"
    _fill_defaults(cfg, data)
    few = few_steps_warning(len(data.train), cfg)
    stored = cfg.stored() | {"backbones": backbones, "metric": metric, "metric_reason": reason,
                             "warnings": [few] if few else [],
                             "models_dir": str(models_dir),
                             "label_names": data.label_names, "task": data.task, "data_summary": data.describe()}
    write_setup(study, stored)
    for name in backbones:
        study.enqueue_trial(recipe_params(name, cfg, len(data.train), metric), user_attrs=recipe_attrs(),
                            skip_if_exists=True)
    return _Opened(study, stored, data, backbones, metric, models_dir, joined=False, downloads=downloads)


def run_study(cfg: StudyConfig, *, progress: bool = True, log: Callable[[str], None] | None = None,
              interrupted: Callable[[], bool] | None = None) -> dict[str, Any]:
    """Create or resume ``cfg.study``, add ``cfg.trials`` trials and return :func:`summarize` of the study.

    ``interrupted()``, checked at every training step and after every trial, raises ``KeyboardInterrupt`` when true:
    Python prints and drops an exception raised while a garbage-collection callback runs (SQLAlchemy registers
    some, and trials end with a collection), so a Ctrl-C or the dashboard's Stop that lands there would be lost."""
    import optuna

    from textclf.baseline import chance_score, majority_baseline, traditional_baselines

    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    # The time budget counts from here (setup included) and also stops a trial still running when it ends.
    deadline = time.monotonic() + cfg.timeout if cfg.timeout else None
    # Our own one-line-per-trial log replaces Optuna's, which adds a traceback to every failed or interrupted trial.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    storage_url = resolve_storage(cfg.storage)
    check_shareable(storage_url, cfg.jobs)
    opened = _open(cfg, open_storage(storage_url))
    study, stored, data, metric = opened.study, opened.setup, opened.data, opened.metric
    _fill_defaults(cfg, data)
    chance = chance_score(data, metric, cfg.threshold_mode)  # type: ignore[arg-type]
    concurrent = opened.joined or cfg.jobs > 1 or any(t.state.name == "RUNNING" for t in study.get_trials(deepcopy=False))
    attach_search(study, cfg, len(opened.backbones), chance, salt=os.getpid() if concurrent else 0)
    if "baseline" not in stored:
        log("fitting the traditional baselines (TF-IDF with logistic regression, a linear SVM, complement naive "
            "Bayes)...")
        stored["baseline"] = traditional_baselines(data, metric, cfg.seed, cfg.threshold_mode)  # type: ignore[arg-type]
    if "majority" not in stored:
        stored["majority"] = majority_baseline(data, metric, cfg.threshold_mode)
    stored["runs"] = [*stored.get("runs", []), {"trials": cfg.trials, "started": time.time(), "timeout": cfg.timeout}]
    write_setup(study, stored)
    for note in data.notes:
        log(f"data: {note}")
    for name, size in opened.downloads.items():
        log(f"{name}: downloading {f'{size / 1e6:,.1f} MB' if size else 'its weights'} from the Hugging Face Hub "
            f"({hub.endpoint()}) at its first trial; later runs use the cache")
    for warning in stored.get("warnings", []):
        log(f"warning: {warning}")
    log(f"metric: {metric}" + (f" ({stored['metric_reason']})" if stored.get("metric_reason") else ""))
    log(f"study {cfg.study!r} in {redact(storage_url)}: {len(study.trials)} trial(s) so far; adding {cfg.trials} "
        f"over {', '.join(opened.backbones)} ({data.task}, {metric} on validation; baseline "
        f"{stored['baseline']['model']} {stored['baseline']['value']:.4f}, majority class "
        f"{stored['majority']['value']:.4f})")

    before = {t.number for t in study.get_trials(deepcopy=False) if t.state.name != "WAITING"}  # queued: this run's
    runner = TrialRunner(cfg, data, opened.backbones, metric, opened.models_dir, progress, log, deadline, interrupted)
    if cfg.jobs > 1 and cfg.trials > 1:
        optimize_side_by_side(study, runner, storage_url, chance)
    else:
        runner.run_trials(study, cfg.trials, itertools.count(1).__next__)
    if cfg.seeds:
        queued = enqueue_seed_reruns(study, cfg.seeds, cfg.seed)
        if queued:
            log(f"re-running each backbone's best configuration with {cfg.seeds} more seed(s): {queued} trial(s)")
            runner.run_trials(study, queued, itertools.count(1).__next__, budgeted=False)
    if data.test is not None:
        score_test(study, data, metric, log)
    summary = summarize(study, storage_url)
    mine = [t for t in summary["trials"] if t["number"] not in before]
    failed = [t for t in mine if t["state"] == "FAIL"]
    summary["run"] = {"finished": sum(t["state"] in ("COMPLETE", "PRUNED") for t in mine), "failed": len(failed),
                      "fail_reason": failed[0]["fail_reason"] if failed else None}
    return summary


def enqueue_seed_reruns(study: Any, k: int, base_seed: int) -> int:
    """Queue the best configuration of each backbone with seeds base+1..base+k (those not run yet)."""
    record = read_study(study)
    queued = 0
    for _, best in sorted(record.best_per_backbone().items()):
        done = {t.seed for t in record.trials if t.seed_of == best.number}
        for seed in range(base_seed + 1, base_seed + k + 1):
            if seed not in done:
                study.enqueue_trial(dict(best.params), user_attrs=seed_attrs(seed, best.number))
                queued += 1
    return queued


def test_calibration(probs: Any, labels: list[int], temperature: float) -> dict[str, float]:
    """Expected calibration error on test of the probabilities served (scaled by ``temperature``) and of the
    model's own (the scaling undone): the honest check of a temperature fitted on validation."""
    import numpy as np

    from textclf.calibration import ece, rescale

    y = np.asarray(labels)
    return {"temperature": temperature, "ece_scaled": ece(probs, y), "ece": ece(rescale(probs, 1.0 / temperature), y)}


def score_test(study: Any, data: TextData, metric: str, log: Callable[[str], None]) -> dict[str, Any] | None:
    """Score the chosen model (best on validation) on the test split, once: a chosen model already scored is not
    scored again, and nothing is ever selected on these numbers."""
    from textclf.metrics import compute_metrics
    from textclf.predict import Predictor

    best = read_study(study).best()
    if best is None or data.test is None:
        return None
    setup = setup_of(study)
    previous = setup.get("test")
    if previous and previous.get("trial") == best.number:
        return previous
    try:
        folder = best_model_dir(study, best.backbone)
    except TextclfError as exc:  # kept on another machine: that machine scores it
        log(f"test split not scored here: {exc}")
        return None
    # The predictor users get: bf16 where the CPU has it, close calls recomputed in fp32, so every decision (all the
    # metrics are decisions) is the fp32 model's, at about half the time.
    predictor = Predictor.from_dir(folder)
    info = predictor.info
    if info.trial != best.number:
        return None  # the kept folder belongs to another trial (another worker is writing): score it next time
    probs = predictor.predict_proba(data.test.texts)
    metrics = compute_metrics(data.task, data.test.labels, probs, threshold=info.threshold, metric=metric)
    test = {"trial": info.trial, "backbone": info.backbone, "split": "test", "metric": metric,
            "value": metrics[metric], "metrics": metrics, "n": len(data.test)}
    if data.task != "multi_label":
        test["calibration"] = test_calibration(probs, data.test.labels, predictor.temperature)
    setup["test"] = test
    write_setup(study, setup)
    log(f"test split, chosen model (trial {info.trial}, {info.backbone}), scored once: {metric}={metrics[metric]:.4f}")
    return test
