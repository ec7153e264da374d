"""Optuna studies over backbones, learning rates and the head/encoder learning-rate ratio.

A study lives in an Optuna storage (by default one SQLite file in ``studies/``); running the same study name again
resumes it. Every chosen backbone first gets one trial at its fine-tuning recipe's defaults, so even a small budget
compares them all; then seeded TPE explores and a pruner stops hopeless trials from their per-epoch evaluations.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import math
import os
import re
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from textclf.backbones import check_available, head_prefixes, load_model, load_tokenizer, resolve_backbone
from textclf.config import (
    SearchSpace,
    StudyConfig,
    adopt_stored,
    check_resume,
    check_study_name,
    preset_keys,
)
from textclf.data import TextData, load_data
from textclf.errors import ConfigError, TextclfError
from textclf.export import META_FILE, ModelInfo, save_model
from textclf.metrics import default_metric, detailed_report
from textclf.train import Encoded, TrainConfig, encode, train

ATTR = "textclf"  # the study user attribute that records how the study was set up


# ------------------------------------------------------------------------------------------------------ storage
def studies_dir() -> Path:
    return Path(os.environ.get("TEXTCLF_STUDIES_DIR", "studies")).expanduser().resolve()


def load_preset(study: str) -> dict[str, Any]:
    """Settings kept in ``studies/<study>.toml`` (empty if there is none); command-line flags override them."""
    import tomllib

    path = studies_dir() / f"{check_study_name(study)}.toml"
    if not path.is_file():
        return {}
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read study preset {path}: {exc}; fix the TOML") from exc
    unknown = sorted(set(raw) - preset_keys())
    if unknown:
        raise ConfigError(f"study preset {path} has unknown keys {unknown}; allowed: {', '.join(sorted(preset_keys()))}")
    return raw


def resolve_storage(url: str | None = None) -> str:
    """``url``, else ``$TEXTCLF_STORAGE``, else the SQLite file ``studies/textclf.db``."""
    url = url or os.environ.get("TEXTCLF_STORAGE")
    if not url:
        folder = studies_dir()
        folder.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{folder / 'textclf.db'}"
    if not re.fullmatch(r"[a-z][a-z0-9+]*://.*", url):
        raise ConfigError(f"storage {redact(url)!r} is not a database URL: expected e.g. sqlite:///studies/textclf.db "
                          "or postgresql://user:password@host/db")
    if url.startswith("sqlite") and re.fullmatch(r"sqlite(\+\w+)?:///?(:memory:)?(\?.*)?", url):
        raise ConfigError(f"storage {url!r} is an in-memory SQLite database: a study there would vanish with the "
                          "process, and its heartbeat thread cannot see it; name a file, e.g. sqlite:///studies/textclf.db")
    return url


def redact(url: str) -> str:
    """The URL with any password replaced by ***, for printing."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def open_storage(url: Any = None) -> Any:
    """An Optuna RDB storage for ``url`` (see :func:`resolve_storage`); an already opened storage is returned as is,
    so long-lived callers (the dashboard) open one engine instead of one per call."""
    import optuna

    if isinstance(url, optuna.storages.BaseStorage):
        return url
    resolved = resolve_storage(url)
    # Heartbeats: a worker that dies mid-trial leaves a RUNNING trial; once its heartbeat is older than the grace
    # period, the next trial started on this storage (by any worker) marks it failed and enqueues a retry.
    interval = int(os.environ.get("TEXTCLF_HEARTBEAT_S", "30"))
    # SQLite takes one writer at a time and makes the others wait up to this long. Its default, 5 s, is too short
    # on a loaded machine while the dashboard reads the study every few seconds: a finished trial's commit fails.
    engine_kwargs = {"connect_args": {"timeout": 60}} if resolved.startswith("sqlite") else None
    attempt = 0
    while True:
        try:
            with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna: stderr stays for our own lines
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    resolved, heartbeat_interval=interval, grace_period=3 * interval, engine_kwargs=engine_kwargs,
                    heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=2))
        except ModuleNotFoundError as exc:
            raise ConfigError(f"storage {redact(resolved)!r} needs the Python package {exc.name!r}; pip install it") from exc
        except Exception as exc:  # SQLAlchemy raises many types for bad URLs and unreachable servers
            # Workers starting together on an empty database race to create its tables: the losers try again.
            if attempt < 2 and "refused" not in str(exc).lower() and "could not translate" not in str(exc).lower():
                attempt += 1
                time.sleep(float(attempt))
                continue
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(f"cannot open storage {redact(resolved)!r}: {reason[:300]}; check the URL and that the "
                              "database server is running") from exc


def load_study(name: str, storage: Any = None) -> Any:
    import optuna

    check_study_name(name)
    store = open_storage(storage)
    try:
        return optuna.load_study(study_name=name, storage=store)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(store)]
        where = redact(resolve_storage(storage)) if storage is None or isinstance(storage, str) else "this storage"
        raise ConfigError(f"no study named {name!r} in {where}; existing studies: {', '.join(names) or 'none'}") from None


def list_studies(storage: Any = None) -> list[str]:
    import optuna

    return [s.study_name for s in optuna.get_all_study_summaries(open_storage(storage))]


# ------------------------------------------------------------------------------------------------------ sampling
def _clip(value: float, bounds: tuple[float, float]) -> float:
    return min(max(value, bounds[0]), bounds[1])


def recipe_params(backbone: str, space: SearchSpace, fixed_epochs: int | None) -> dict[str, Any]:
    """The published recipe for ``backbone``: its family's learning rate, head ratio 10, batch 32, weight decay 0.01,
    10% warmup, 3 epochs; clipped into the search space so TPE can use it."""
    spec = resolve_backbone(backbone)
    params: dict[str, Any] = {
        "backbone": backbone,
        "lr": _clip(spec.lr, space.lr),
        "head_lr_ratio": _clip(10.0, space.head_lr_ratio),
        "batch_size": 32 if 32 in space.batch_sizes else space.batch_sizes[0],
        "weight_decay": _clip(0.01, space.weight_decay),
        "warmup_fraction": _clip(0.1, space.warmup_fraction),
    }
    if fixed_epochs is None:
        params["epochs"] = int(_clip(3, space.epochs))
    return params


def evals_per_epoch(cfg: StudyConfig, epochs: int) -> int:
    """The configured evaluations per epoch, or enough for at least 4 per trial: a 1-epoch trial is then evaluated
    at 25/50/75/100% and the pruner can stop a hopeless one after a quarter of its cost, not at its end."""
    return cfg.evals_per_epoch or math.ceil(4 / epochs)


def suggest(trial: Any, backbones: list[str], space: SearchSpace, fixed_epochs: int | None) -> dict[str, Any]:
    params = {
        "backbone": trial.suggest_categorical("backbone", backbones),
        "lr": trial.suggest_float("lr", *space.lr, log=True),
        "head_lr_ratio": trial.suggest_float("head_lr_ratio", *space.head_lr_ratio, log=True),
        "batch_size": trial.suggest_categorical("batch_size", list(space.batch_sizes)),
        "weight_decay": trial.suggest_float("weight_decay", *space.weight_decay),
        "warmup_fraction": trial.suggest_float("warmup_fraction", *space.warmup_fraction),
    }
    params["epochs"] = fixed_epochs if fixed_epochs is not None else trial.suggest_int("epochs", *space.epochs)
    return params


HOPELESS_SHARE = 0.5  # with one finished trial to judge by, a trial short of this share of its lead over chance stops


def make_pruner(name: str, n_startup_trials: int, chance: float | None = None) -> Any:
    """The study's pruner. ``chance`` (the metric of always predicting the training priors) lets the median
    pruner stop hopeless trials before it can judge: see :func:`_median_or_hopeless`."""
    import optuna

    if name == "median":
        # The median is over finished trials only. Judged against one (the recipe), every trial behind it at any
        # evaluation was cut, nothing else ever finished, and the search could not move past the recipe (sst2:
        # 15 of 15 explored trials pruned). Two finished trials reporting at a step are needed before it prunes.
        median = optuna.pruners.MedianPruner(n_startup_trials=n_startup_trials, n_warmup_steps=0, n_min_trials=2)
        return median if chance is None else _median_or_hopeless(median, chance)
    if name == "sha":
        return optuna.pruners.SuccessiveHalvingPruner()
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner()
    return optuna.pruners.NopPruner()


def _median_or_hopeless(median: Any, chance: float) -> Any:
    """The median rule, and, while only one finished trial has reached a point (too few for the median), a trial
    that has not come ``HOPELESS_SHARE`` of the way from chance to that trial there is stopped. Without it, the
    first explored trial always ran in full: benchmark 1's, at lr 1.5e-5, sat at 0.53-0.54 accuracy (chance
    0.51, the recipe 0.63-0.83 at the same points) for all 27 s of it."""
    import optuna

    class MedianOrHopeless(optuna.pruners.BasePruner):
        def prune(self, study: Any, trial: Any) -> bool:
            if median.prune(study, trial):
                return True
            step = trial.last_step
            if step is None:
                return False
            finished = [t.intermediate_values[step] for t in study.get_trials(
                deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)) if step in t.intermediate_values]
            if len(finished) != 1:  # nothing to judge by yet, or enough for the median rule
                return False
            lead = finished[0] - chance
            return lead > 0 and trial.intermediate_values[step] < chance + HOPELESS_SHARE * lead

    return MedianOrHopeless()


# ------------------------------------------------------------------------------------------------------ running
def _safe_dirname(backbone: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.\-]+", "_", backbone).strip("._") or "backbone"


def _n_params(model: Any) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def _latency_ms(model: Any, tokenizer: Any, texts: list[str], max_length: int) -> float:
    """Mean wall time (ms) of batch-1 predictions, tokenisation included, over a few validation texts."""
    import torch

    model.eval()
    times = []
    with torch.inference_mode():
        for text in texts[:16]:
            start = time.perf_counter()
            batch = tokenizer([text], truncation=True, max_length=max_length, return_tensors="pt")
            model(**batch)
            times.append(time.perf_counter() - start)
    return 1000 * sum(times) / len(times) if times else float("nan")


class _Runner:
    """Holds what every trial of one ``run`` shares: the data, its tokenised forms per tokenizer, and the config."""

    def __init__(self, cfg: StudyConfig, data: TextData, backbones: list[str], metric: str, models_dir: Path,
                 progress: bool, log: Callable[[str], None], deadline: float | None = None,
                 interrupted: Callable[[], bool] | None = None) -> None:
        self.cfg, self.data, self.backbones, self.metric = cfg, data, backbones, metric
        self.models_dir, self.progress, self.log = models_dir, progress, log
        self.deadline = deadline  # time.monotonic() at which the search's time budget ends
        self.interrupted = interrupted
        self._encoded: dict[str, tuple[Any, Encoded, Encoded]] = {}
        self._max_len: dict[str, int] = {}
        self._pristine: dict[str, Any] = {}
        # Trials run side by side (cfg.jobs > 1): (the CPU's threads, a shared count of workers still running).
        self.share: tuple[int, Any] | None = None
        self.worker = 1  # which of those workers this is (recorded on each trial)

    def share_threads(self) -> None:
        """Split the threads between the workers still running: 1 each for 2 workers on 2 cores, all of them once
        the others are done. Eager training on 2 cores leaves a core idle through most of its per-op overhead (two
        1-thread trainings side by side took 25-31 s against 17-20 s for one on 2 threads), but a worker left alone
        on 1 thread would run its last trial 1.4-1.7x slower (29 s)."""
        if self.share is None:
            return
        import torch

        cores, active = self.share
        want = max(1, cores // max(1, active.value))
        if torch.get_num_threads() != want:
            torch.set_num_threads(want)

    def run_trials(self, study: Any, n_trials: int, next_done: Callable[[], int]) -> None:
        """Run ``n_trials`` trials of ``study`` here, within the time budget, one log line each (numbered by
        ``next_done``)."""
        if self.deadline is not None and time.monotonic() >= self.deadline:
            self.log("the time budget ran out before a trial could start (setup used it up): no trial run; "
                     "give a longer time budget")
            return
        study.optimize(self.objective, n_trials=n_trials, timeout=time_left(self.deadline), catch=(Exception,),
                       callbacks=[trial_reporter(self.cfg.trials, self.metric, self.log, self.interrupted, next_done)],
                       show_progress_bar=False, gc_after_trial=True)

    def encoded(self, backbone: str) -> tuple[Any, Encoded, Encoded]:
        # Tokenise each split once per tokenizer and share it across trials: scratch:X reuses X's tokens.
        key = backbone.removeprefix("scratch:")
        if key not in self._encoded:
            spec = resolve_backbone(backbone)
            tok = load_tokenizer(spec)
            max_len = self.max_length(key, tok)
            self._encoded[key] = (tok, encode(tok, self.data.train.texts, self.data.train.labels, max_len),
                                  encode(tok, self.data.validation.texts, self.data.validation.labels, max_len))
        return self._encoded[key]

    def max_length(self, key: str, tok: Any) -> int:
        """The configured tokens per text, cut to what the tokenizer's model takes (its position embeddings end
        there: longer inputs fail inside the model), saying so once per tokenizer."""
        if key not in self._max_len:
            limit = getattr(tok, "model_max_length", None)
            limit = int(limit) if isinstance(limit, (int, float)) and 0 < limit < 1_000_000 else None
            self._max_len[key] = min(self.cfg.max_length, limit) if limit else self.cfg.max_length
            if self._max_len[key] < self.cfg.max_length:
                self.log(f"max_length {self.cfg.max_length} is more than {key} takes: texts are cut at {limit} tokens")
        return self._max_len[key]

    def fresh_model(self, backbone: str, pad_token_id: int | None, seed: int) -> Any:
        """A new model for a trial: a copy of one loaded (and seeded) once per run. Every trial would load the same
        weights and the same seeded head from disk; copying in memory saves that each time. Seed re-runs need a
        head initialised from their own seed, so they load afresh."""
        if seed != self.cfg.seed or backbone not in self._pristine:
            data = self.data
            model = load_model(
                resolve_backbone(backbone), num_labels=data.num_labels, multi_label=data.task == "multi_label",
                id2label=dict(enumerate(data.label_names)), pad_token_id=pad_token_id, seed=seed,
                dropout=self.cfg.dropout)
            if seed != self.cfg.seed:
                return model
            self._pristine[backbone] = model
        return copy.deepcopy(self._pristine[backbone])

    def objective(self, trial: Any) -> float:
        """One trial. Whatever makes it fail, before, inside or after training, is recorded as its fail_reason."""
        import optuna

        try:
            return self._objective(trial)
        except optuna.TrialPruned:
            raise
        except KeyboardInterrupt:
            _record_failure(trial, "interrupted (Stop or Ctrl-C)")
            raise
        except Exception as exc:
            _record_failure(trial, f"{type(exc).__name__}: {exc}")
            raise

    def _objective(self, trial: Any) -> float:
        import optuna

        params = suggest(trial, self.backbones, self.cfg.space, self.cfg.epochs)
        # Recipe trials and seed re-runs always finish: they are reference points, not candidates to cut short.
        protected = bool(trial.user_attrs.get("recipe")) or "seed_of" in trial.user_attrs
        seed = int(trial.user_attrs.get("seed", self.cfg.seed))
        spec = resolve_backbone(params["backbone"])
        tok, train_enc, val_enc = self.encoded(params["backbone"])
        data = self.data
        model = self.fresh_model(params["backbone"], tok.pad_token_id, seed)
        cfg = TrainConfig(lr=params["lr"], head_lr_ratio=params["head_lr_ratio"], batch_size=params["batch_size"],
                          epochs=params["epochs"], weight_decay=params["weight_decay"],
                          warmup_fraction=params["warmup_fraction"], layer_decay=self.cfg.layer_decay,
                          max_length=self.max_length(params["backbone"].removeprefix("scratch:"), tok),
                          evals_per_epoch=evals_per_epoch(self.cfg, params["epochs"]),
                          pruning_eval_rows=self.cfg.pruning_eval_rows, progressive_pruning=self.cfg.progressive_pruning,
                          seed=seed, precision=self.cfg.precision, metric=self.metric,
                          early_stopping_patience=self.cfg.early_stopping_patience,
                          threshold_mode=self.cfg.threshold_mode, class_weight=self.cfg.class_weight)
        curve: list[dict[str, float]] = []

        def on_eval(step: int, metrics: dict[str, float]) -> None:
            curve.append({"step": step, **metrics})
            trial.report(metrics[self.metric], step)
            if not protected and trial.should_prune():
                raise optuna.TrialPruned(f"pruned at {step / 100:.2f} epochs: {self.metric} {metrics[self.metric]:.4f}")

        last_write = [0.0]

        def on_step(step: int, total: int) -> None:
            if self.interrupted is not None and self.interrupted():
                raise KeyboardInterrupt  # an interrupt asked for earlier and lost on the way (see run_study)
            self.share_threads()
            # Live progress for the dashboard, written at most every 2 s: a storage write per step would cost.
            now = time.monotonic()
            if now - last_write[0] >= 2.0 or step == total:
                last_write[0] = now
                trial.set_user_attr("progress", round(step / total, 4))

        trial.set_user_attr("backbone", params["backbone"])
        trial.set_user_attr("n_params", _n_params(model))
        if self.share is not None:
            trial.set_user_attr("worker", self.worker)
            self.share_threads()
        try:
            # The time budget bounds the search; seed re-runs (asked for on top of it) always run in full.
            result = train(model, tok, train_enc, val_enc, cfg, task=data.task, head_prefixes=head_prefixes(model, spec),
                           on_eval=on_eval, on_step=on_step, progress=self.progress,
                           deadline=None if "seed_of" in trial.user_attrs else self.deadline)
        except optuna.TrialPruned:
            trial.set_user_attr("learning_curve", curve)
            raise
        except Exception as exc:
            trial.set_user_attr("learning_curve", curve)
            trial.set_user_attr("fail_reason", f"{type(exc).__name__}: {exc}"[:500])
            raise
        value = result.metrics[self.metric]
        threshold = result.metrics.get("threshold")
        trial.set_user_attr("learning_curve", curve)
        trial.set_user_attr("metrics", {k: [float(x) for x in v] if isinstance(v, list) else float(v)
                                        for k, v in result.metrics.items()})
        trial.set_user_attr("train_time_s", result.train_time_s)
        if result.out_of_time:  # its last evaluation is where it stopped
            trial.set_user_attr("stopped", f"time budget reached after {result.history[-1]['epoch']:.2f} of "
                                           f"{cfg.epochs} epochs")
        trial.set_user_attr("latency_ms", _latency_ms(model, tok, data.validation.texts, cfg.max_length))
        trial.set_user_attr("report", detailed_report(data.task, data.validation.labels, result.val_probs,
                                                      data.label_names, 0.5 if threshold is None else threshold))
        self._keep_if_best(trial, params, model, tok, result.metrics, value, threshold)
        return value

    def _keep_if_best(self, trial: Any, params: dict[str, Any], model: Any, tok: Any, metrics: dict[str, float],
                      value: float, threshold: float | list[float] | None) -> None:
        """Save the model only if it beats this backbone's best so far: disk is finite."""
        import optuna

        if "seed_of" in trial.user_attrs:
            return  # a seed re-run measures spread; selection (and the kept model) stays with the searched trials
        backbone = params["backbone"]
        others = [t.value for t in _selectable(trial.study.get_trials(deepcopy=False,
                                                                      states=(optuna.trial.TrialState.COMPLETE,)))
                  if t.params.get("backbone") == backbone and t.value is not None and t.number != trial.number]
        if others and value <= max(others):
            return
        out = self.models_dir / _safe_dirname(backbone)
        try:  # another worker sharing the folder may have kept a better model since the check above
            kept = ModelInfo.load(out).metrics.get("validation", {}).get(self.metric)
        except (TextclfError, OSError, ValueError):
            kept = None
        if kept is not None and value <= kept:
            return
        info = ModelInfo(label_names=self.data.label_names, task=self.data.task, backbone=backbone, threshold=threshold,
                         metrics={"validation": metrics}, params=params, data=self.data.describe(),
                         study=self.cfg.study, trial=trial.number, metric=self.metric)
        try:
            save_model(model, tok, out, info)
        except (OSError, TextclfError) as exc:
            # The trial itself finished: its result stays in the storage even if its model cannot be kept.
            trial.set_user_attr("model_save_error", f"{type(exc).__name__}: {exc}"[:300])
            self.log(f"trial {trial.number}: model not kept: {exc}")
            return
        trial.set_user_attr("model_dir", str(out))


def _record_failure(trial: Any, reason: str) -> None:
    """Keep the first reason recorded for a failed trial (the training loop records its own, with the curve)."""
    with contextlib.suppress(Exception):  # the storage itself may be what failed: the trial still ends as failed
        if "fail_reason" not in trial.user_attrs:
            trial.set_user_attr("fail_reason", reason[:500])


def fail_reason(trial: Any, trials: list[Any]) -> str | None:
    """Why a failed trial failed: its recorded reason, or, for one whose worker died (no reason could be written;
    Optuna failed it for its stale heartbeat and may have queued a retry), that."""
    reason = trial.user_attrs.get("fail_reason")
    if reason or trial.state.name != "FAIL":
        return reason
    retry = next((t.number for t in trials if trial.number in (t.system_attrs.get("retry_history") or [])), None)
    return "its process stopped answering (no heartbeat)" + (f"; retried as trial {retry}" if retry is not None else "")


def _stored_attrs(storage: Any, name: str, wait_s: float = 0.0) -> dict[str, Any]:
    """How the study was set up ({} if it does not exist). A study that exists without them is being set up by
    another worker: wait up to ``wait_s`` for it."""
    import optuna

    deadline = time.monotonic() + wait_s
    while True:
        summaries = {s.study_name: s for s in optuna.get_all_study_summaries(storage)}
        if name not in summaries:
            return {}
        attrs = summaries[name].user_attrs.get(ATTR)
        if attrs:
            return dict(attrs)
        if time.monotonic() >= deadline:
            if wait_s:
                raise ConfigError(f"study {name!r} exists but was not made by textclf (no setup recorded); "
                                  "use another --study name")
            return {}
        time.sleep(0.5)


def _setup_attrs(study: Any, cfg: StudyConfig, backbones: list[str], metric: str, models_dir: Path) -> dict[str, Any]:
    """What the new study records of its setup: the config's stored settings, with the backbones, metric and models
    folder as this run resolved them."""
    return cfg.stored() | {"backbones": backbones, "metric": metric, "models_dir": str(models_dir)}


def _fill_defaults(cfg: StudyConfig) -> None:
    """Defaults of the stored settings that neither this command nor the study it resumes or joins gave."""
    cfg.pruner = cfg.pruner or "median"
    cfg.threshold_mode = cfg.threshold_mode or "global"
    cfg.class_weight = cfg.class_weight or "none"


def load_study_data(cfg: StudyConfig) -> TextData:
    return load_data(cfg.data, text_column=cfg.text_column, label_column=cfg.label_column, task=cfg.task,  # type: ignore[arg-type]
                     max_train_samples=cfg.max_train_samples, seed=cfg.seed)


def attach_search(study: Any, cfg: StudyConfig, n_backbones: int, chance: float | None, salt: int) -> None:
    """This process's pruner and sampler for ``study``. Seeded TPE: a sequential resume continues
    deterministically; workers running side by side pass distinct ``salt`` values, or they would all propose the same
    random start-up configurations (and constant liar keeps them off each other's running trials)."""
    import optuna

    study.pruner = make_pruner(cfg.pruner, n_startup_trials=n_backbones, chance=chance)  # cfg as _fill_defaults left it
    study.sampler = optuna.samplers.TPESampler(seed=cfg.seed + len(study.get_trials(deepcopy=False)) + salt,
                                               constant_liar=True)


def time_left(deadline: float | None) -> float | None:
    return None if deadline is None else max(deadline - time.monotonic(), 1e-3)


def trial_reporter(total: int, metric: str, log: Callable[[str], None], interrupted: Callable[[], bool] | None,
                   next_done: Callable[[], int]) -> Callable[[Any, Any], None]:
    """The callback that logs one line per finished trial; ``next_done()`` numbers it (a count shared by the
    workers of one run when trials run side by side)."""

    def report(study: Any, trial: Any) -> None:
        if interrupted is not None and interrupted():
            raise KeyboardInterrupt
        backbone = trial.params.get("backbone", "?")
        value = f"{trial.value:.4f}" if trial.value is not None else "-"
        reason = trial.user_attrs.get("fail_reason") or trial.user_attrs.get("stopped", "")
        secs = trial.duration.total_seconds() if trial.duration else 0.0
        log(f"[{next_done()}/{total}] trial {trial.number} [{backbone}] {trial.state.name.lower()} "
            f"{metric}={value} in {secs:.0f}s "
            f"(lr={trial.params.get('lr', 0):.2e}, head_lr_ratio={trial.params.get('head_lr_ratio', 0):.1f})"
            + (f" — {reason}" if reason else ""))

    return report


def run_study(cfg: StudyConfig, *, progress: bool = True, log: Callable[[str], None] | None = None,
              interrupted: Callable[[], bool] | None = None) -> dict[str, Any]:
    """Create or resume ``cfg.study``, add ``cfg.trials`` trials and return :func:`summarize` of the study.

    ``interrupted()``, checked at every training step and after every trial, raises ``KeyboardInterrupt`` when true:
    Python prints and drops an exception raised while a garbage-collection callback runs (SQLAlchemy registers
    some, and trials end with a collection), so a Ctrl-C or the dashboard's Stop that lands there would be lost."""
    import optuna

    from textclf.baseline import chance_score, tfidf_baseline

    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    # The time budget counts from here (setup included) and also stops a trial still running when it ends.
    deadline = time.monotonic() + cfg.timeout if cfg.timeout else None
    # Our own one-line-per-trial log replaces Optuna's, which adds a traceback to every failed or interrupted trial.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    storage_url = resolve_storage(cfg.storage)
    if cfg.jobs > 1:
        from textclf.workers import check_shareable

        check_shareable(storage_url, cfg.jobs)
    storage = open_storage(storage_url)
    stored = _stored_attrs(storage, cfg.study)
    if stored:
        check_resume(stored, cfg, cfg.backbones, cfg.metric)
        adopt_stored(cfg, stored)
    cfg.space = cfg.space or SearchSpace()
    backbones = cfg.backbones or stored.get("backbones") or ["minilm"]
    for name in backbones:  # fail before any data is tokenised or any trial starts
        check_available(resolve_backbone(name))
    data = load_study_data(cfg)
    metric = cfg.metric or stored.get("metric") or default_metric(data.task)
    models_dir = Path(cfg.models_dir).resolve() if cfg.models_dir else Path(
        stored.get("models_dir") or studies_dir() / "models" / cfg.study)

    joined = False
    if stored:
        study = optuna.load_study(study_name=cfg.study, storage=storage)
    else:
        try:  # the one worker that creates the study sets it up; any other joins it
            study = optuna.create_study(study_name=cfg.study, storage=storage, direction="maximize")
        except optuna.exceptions.DuplicatedStudyError:
            joined = True
            stored = _stored_attrs(storage, cfg.study, wait_s=120)
            check_resume(stored, cfg, cfg.backbones, cfg.metric)
            adopt_stored(cfg, stored)
            study = optuna.load_study(study_name=cfg.study, storage=storage)
        else:
            _fill_defaults(cfg)
            stored = _setup_attrs(study, cfg, backbones, metric, models_dir)
            stored["label_names"], stored["task"] = data.label_names, data.task
            stored["data_summary"] = data.describe()
            study.set_user_attr(ATTR, stored)
            for name in backbones:
                study.enqueue_trial(recipe_params(name, cfg.space, cfg.epochs), user_attrs={"recipe": True},
                                    skip_if_exists=True)
    _fill_defaults(cfg)
    chance = chance_score(data, metric, cfg.threshold_mode)
    concurrent = joined or cfg.jobs > 1 or any(t.state.name == "RUNNING" for t in study.get_trials(deepcopy=False))
    attach_search(study, cfg, len(backbones), chance, salt=os.getpid() if concurrent else 0)
    if "baseline" not in stored:
        log("fitting the TF-IDF + logistic regression baseline...")
        stored["baseline"] = tfidf_baseline(data, metric, cfg.seed, cfg.threshold_mode)
    stored["runs"] = [*stored.get("runs", []), {"trials": cfg.trials, "started": time.time()}]
    study.set_user_attr(ATTR, stored)
    for note in data.notes:
        log(f"data: {note}")
    log(f"study {cfg.study!r} in {redact(storage_url)}: {len(study.trials)} trial(s) so far; adding {cfg.trials} "
        f"over {', '.join(backbones)} ({data.task}, {metric} on validation; baseline {stored['baseline']['value']:.4f})")

    runner = _Runner(cfg, data, backbones, metric, models_dir, progress, log, deadline, interrupted)
    if cfg.jobs > 1 and cfg.trials > 1:
        from textclf.workers import optimize_side_by_side

        optimize_side_by_side(study, runner, storage_url, chance)
    else:
        runner.run_trials(study, cfg.trials, itertools.count(1).__next__)
    if cfg.seeds:
        queued = enqueue_seed_reruns(study, cfg.seeds, cfg.seed)
        if queued:
            log(f"re-running each backbone's best configuration with {cfg.seeds} more seed(s): {queued} trial(s)")
            study.optimize(runner.objective, n_trials=queued, catch=(Exception,), gc_after_trial=True,
                           callbacks=[trial_reporter(queued, metric, log, interrupted, itertools.count(1).__next__)])
    if data.test is not None:
        score_test(study, data, metric, log)
    return summarize(study, storage_url)


def _selectable(trials: list[Any]) -> list[Any]:
    """Trials that compete for "best": seed re-runs measure spread and never select."""
    return [t for t in trials if "seed_of" not in t.user_attrs]


def _best_per_backbone(trials: list[Any]) -> dict[str, Any]:
    """Each backbone's best completed trial among those that compete for "best"."""
    import optuna

    best: dict[str, Any] = {}
    for t in _selectable(trials):
        if t.state != optuna.trial.TrialState.COMPLETE or t.value is None:
            continue
        b = t.params.get("backbone", "?")
        if b not in best or t.value > best[b].value:
            best[b] = t
    return best


def enqueue_seed_reruns(study: Any, k: int, base_seed: int) -> int:
    """Queue the best configuration of each backbone with seeds base+1..base+k (those not run yet)."""
    trials = study.get_trials(deepcopy=False)
    queued = 0
    for _, best in sorted(_best_per_backbone(trials).items()):
        done = {t.user_attrs.get("seed") for t in trials if t.user_attrs.get("seed_of") == best.number}
        for seed in range(base_seed + 1, base_seed + k + 1):
            if seed not in done:
                study.enqueue_trial(dict(best.params), user_attrs={"seed": seed, "seed_of": best.number})
                queued += 1
    return queued


def seed_spread(trials: list[Any]) -> dict[str, dict[str, Any]]:
    """Per backbone: the validation values of its best configuration over every seed it ran with."""
    import numpy as np
    import optuna

    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE and t.value is not None]
    out: dict[str, dict[str, Any]] = {}
    for backbone, best in sorted(_best_per_backbone(trials).items()):
        values = [float(best.value)] + [float(t.value) for t in complete if t.user_attrs.get("seed_of") == best.number]
        if len(values) > 1:
            out[backbone] = {"trial": best.number, "n": len(values), "values": values, "mean": float(np.mean(values)),
                             "std": float(np.std(values, ddof=1))}
    return out


def ranking_supported(spread: dict[str, dict[str, Any]]) -> bool | None:
    """False when the top two backbones' mean ± std intervals overlap: the spread does not support the order."""
    ranked = sorted(spread.values(), key=lambda s: -s["mean"])
    if len(ranked) < 2:
        return None
    first, second = ranked[0], ranked[1]
    return first["mean"] - first["std"] > second["mean"] + second["std"]


def score_test(study: Any, data: TextData, metric: str, log: Callable[[str], None]) -> dict[str, Any] | None:
    """Score the chosen model (best on validation) on the test split, once: a chosen model already scored is not
    scored again, and nothing is ever selected on these numbers."""
    from textclf.metrics import compute_metrics
    from textclf.predict import Predictor

    summary = summarize(study)
    if summary["best"] is None or data.test is None:
        return None
    attrs = dict(study.user_attrs.get(ATTR, {}))
    previous = attrs.get("test")
    if previous and previous.get("trial") == summary["best"]["trial"]:
        return previous
    try:
        folder = best_model_dir(study, summary["best"]["backbone"])
    except TextclfError as exc:  # kept on another machine: that machine scores it
        log(f"test split not scored here: {exc}")
        return None
    # The predictor users get: bf16 where the CPU has it, close calls recomputed in fp32, so every decision (all the
    # metrics are decisions) is the fp32 model's, at about half the time.
    predictor = Predictor.from_dir(folder)
    info = predictor.info
    if info.trial != summary["best"]["trial"]:
        return None  # the kept folder belongs to another trial (another worker is writing): score it next time
    metrics = compute_metrics(data.task, data.test.labels, predictor.predict_proba(data.test.texts),
                              threshold=info.threshold, metric=metric)
    test = {"trial": info.trial, "backbone": info.backbone, "split": "test", "metric": metric,
            "value": metrics[metric], "metrics": metrics, "n": len(data.test)}
    attrs["test"] = test
    study.set_user_attr(ATTR, attrs)
    log(f"test split, chosen model (trial {info.trial}, {info.backbone}), scored once: {metric}={metrics[metric]:.4f}")
    return test


# ------------------------------------------------------------------------------------------------------ summary
def summarize(study: Any, storage_url: str | None = None) -> dict[str, Any]:
    """A JSON-able summary: best trial, best value per backbone, the baseline and every trial."""
    import optuna

    ts = optuna.trial.TrialState
    attrs = study.user_attrs.get(ATTR, {})
    trials = study.get_trials(deepcopy=False)
    finished = [t for t in trials if t.state in (ts.COMPLETE, ts.PRUNED)]
    spread = seed_spread(trials)
    per_backbone = {b: float(t.value) for b, t in _best_per_backbone(trials).items()}
    best = max(_best_per_backbone(trials).values(), key=lambda t: t.value, default=None)
    baseline = attrs.get("baseline")
    return {
        "study": study.study_name,
        "storage": redact(storage_url) if storage_url else None,
        "metric": attrs.get("metric"),
        "split": "validation",
        "task": attrs.get("task"),
        "data": attrs.get("data"),
        "n_trials": len(finished),
        "n_failed": sum(t.state == ts.FAIL for t in trials),
        "best": None if best is None else {
            "value": float(best.value), "backbone": best.params.get("backbone"), "params": dict(best.params),
            "trial": best.number, "metrics": best.user_attrs.get("metrics", {})},
        "per_backbone": dict(sorted(per_backbone.items(), key=lambda kv: -kv[1])),
        "baseline": baseline["value"] if baseline else None,
        "test": attrs.get("test"),
        "baseline_test": baseline.get("test_value") if baseline else None,
        "seed_spread": spread,
        "ranking_supported": ranking_supported(spread),
        "trials": [{"number": t.number, "state": t.state.name, "value": t.value, "backbone": t.params.get("backbone"),
                    "params": dict(t.params), "train_time_s": t.user_attrs.get("train_time_s"),
                    "latency_ms": t.user_attrs.get("latency_ms"), "n_params": t.user_attrs.get("n_params"),
                    "fail_reason": fail_reason(t, trials), "stopped": t.user_attrs.get("stopped"),
                    "seed_of": t.user_attrs.get("seed_of")}
                   for t in trials],
    }


def best_model_dir(study: Any, backbone: str | None = None) -> Path:
    """The folder of the kept best model of ``backbone`` (default: the study's best backbone)."""
    summary = summarize(study)
    if summary["best"] is None:
        raise TextclfError(f"study {study.study_name!r} has no completed trial yet; run it first")
    backbone = backbone or summary["best"]["backbone"]
    if backbone not in summary["per_backbone"]:
        raise TextclfError(f"study {study.study_name!r} has no completed trial of backbone {backbone!r}; "
                           f"it has {', '.join(summary['per_backbone'])}")
    attrs = study.user_attrs.get(ATTR, {})
    folder = Path(attrs.get("models_dir", studies_dir() / "models" / study.study_name)) / _safe_dirname(backbone)
    if not (folder / META_FILE).is_file():
        raise TextclfError(f"the best {backbone!r} model of study {study.study_name!r} is not at {folder} "
                           "(models are kept on the machine that trained them); run export there")
    return folder
