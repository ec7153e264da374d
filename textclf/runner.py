"""The trial runner: what one ``run`` shares across its trials, and one trial from suggestion to kept model."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np

from textclf.backbones import SCRATCH_PREFIX, head_prefixes, load_model, load_tokenizer, resolve_backbone
from textclf.calibration import calibrate
from textclf.config import StudyConfig
from textclf.data import TextData, load_data
from textclf.errors import TextclfError
from textclf.export import ModelInfo, save_model
from textclf.metrics import concentration, detailed_report
from textclf.search import evals_per_epoch, suggest
from textclf.storage import (
    TrialWriter,
    is_protected,
    is_seed_rerun,
    model_folder,
    read_study,
    trial_seed,
)
from textclf.train import Encoded, TrainConfig, encode, train


def validation_of(study: Any) -> Any:
    """The validation split of ``study``'s data, loaded as the study loaded it (its stored settings)."""
    from textclf.storage import setup_of

    setup = setup_of(study)
    known = {f.name for f in fields(StudyConfig)}
    cfg = StudyConfig.from_dict({k: v for k, v in setup.items() if k in known} | {"study": study.study_name})
    return load_study_data(cfg).validation


def load_study_data(cfg: StudyConfig) -> TextData:
    return load_data(cfg.data, text_column=cfg.text_column, label_column=cfg.label_column, task=cfg.task,  # type: ignore[arg-type]
                     max_train_samples=cfg.max_train_samples, seed=cfg.seed)


def train_config(cfg: StudyConfig, params: dict[str, Any], **overrides: Any) -> TrainConfig:
    """A trial's training settings: the study's settings that training shares by name (layer_decay, precision,
    pruning_eval_rows, ...), then the trial's sampled parameters, then ``overrides``. A training setting added to
    both dataclasses under one name reaches every trial without further code."""
    names = {f.name for f in fields(TrainConfig)}
    shared = {name: getattr(cfg, name) for name in names & {f.name for f in fields(StudyConfig)}}
    sampled = {k: v for k, v in params.items() if k in names}
    values = {k: v for k, v in (shared | sampled).items() if v is not None} | overrides
    return TrainConfig(**values)


def model_limit(tok: Any) -> int | None:
    """The tokens the tokenizer's model takes (None when the tokenizer does not say)."""
    limit = getattr(tok, "model_max_length", None)
    return int(limit) if isinstance(limit, (int, float)) and 0 < limit < 1_000_000 else None


def token_lengths(tok: Any, texts: list[str], seed: int, sample: int = 2000) -> list[int]:
    """Token counts, special tokens included, of a seeded sample of ``texts`` (all of them if there are fewer)."""
    import random

    chosen = texts if len(texts) <= sample else random.Random(seed).sample(texts, sample)
    return [len(ids) for ids in tok(chosen, truncation=False, verbose=False)["input_ids"]]


def needed_length(tok: Any, texts: list[str], seed: int) -> int:
    """What 95% of ``texts`` need, rounded up to a multiple of 8 (at least 16)."""
    import math

    import numpy as np

    lengths = token_lengths(tok, texts, seed)
    p95 = float(np.percentile(lengths, 95)) if lengths else 16.0
    return max(16, 8 * math.ceil(p95 / 8))


LONG_SHARE = 0.05  # texts are long when more than this share of the training texts are cut


def long_texts(cfg: StudyConfig, data: TextData, backbone: str) -> bool:
    """Whether more than ``LONG_SHARE`` of the training texts are longer than ``backbone``'s model takes (or than the
    configured max_length): then how they are cut matters, and head+tail truncation is worth searching."""
    tok = load_tokenizer(resolve_backbone(backbone))
    limit = model_limit(tok) or 512
    cut = min(cfg.max_length or limit, limit)
    lengths = token_lengths(tok, data.train.texts, cfg.seed)
    return bool(lengths) and sum(n > cut for n in lengths) > LONG_SHARE * len(lengths)


def n_params(model: Any) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def latency_ms(model: Any, tokenizer: Any, texts: list[str], max_length: int) -> float:
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


class _TrialMonitor:
    """A running trial's hooks into training: each evaluation goes onto its learning curve and to the pruner, and
    each step checks for an interrupt, rebalances threads and writes live progress for the dashboard."""

    def __init__(self, trial: Any, runner: TrialRunner) -> None:
        self.trial, self.runner = trial, runner
        self.writer = TrialWriter(trial)
        self.protected = is_protected(trial)
        self.curve: list[dict[str, float]] = []
        self.last_write = 0.0

    def on_eval(self, step: int, metrics: dict[str, float]) -> None:
        import optuna

        metric = self.runner.metric
        self.curve.append({"step": step, **metrics})
        self.writer.curve(self.curve)  # the running trial's curve so far, for the live charts (a few writes a trial)
        self.trial.report(metrics[metric], step)
        if not self.protected and self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at {step / 100:.2f} epochs: {metric} {metrics[metric]:.4f}")

    def on_step(self, step: int, total: int) -> None:
        interrupted = self.runner.interrupted
        if interrupted is not None and interrupted():
            raise KeyboardInterrupt  # an interrupt asked for earlier and lost on the way (see run_study)
        self.runner.share_threads()
        # Written at most every 2 s: a storage write per step would cost.
        now = time.monotonic()
        if now - self.last_write >= 2.0 or step == total:
            self.last_write = now
            self.writer.progress(step / total)


class TrialRunner:
    """Holds what every trial of one ``run`` shares: the data, its tokenised forms per tokenizer, and the config."""

    def __init__(self, cfg: StudyConfig, data: TextData, backbones: list[str], metric: str, models_dir: Path,
                 progress: bool, log: Callable[[str], None], deadline: float | None = None,
                 interrupted: Callable[[], bool] | None = None) -> None:
        self.cfg, self.data, self.backbones, self.metric = cfg, data, backbones, metric
        self.models_dir, self.progress, self.log = models_dir, progress, log
        self.deadline = deadline  # time.monotonic() at which the search's time budget ends
        self.interrupted = interrupted
        self._encoded: dict[tuple[str, str], tuple[Any, Encoded, Encoded]] = {}
        self._tokenizers: dict[str, Any] = {}
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

    def run_trials(self, study: Any, n_trials: int, next_done: Callable[[], int], *, budgeted: bool = True) -> None:
        """Run ``n_trials`` trials of ``study`` here, one log line each (numbered by ``next_done``); within the time
        budget unless ``budgeted`` is false (seed re-runs, asked for on top of it, always run in full)."""
        deadline = self.deadline if budgeted else None
        if deadline is not None and time.monotonic() >= deadline:
            self.log("the time budget ran out before a trial could start (setup used it up): no trial run; "
                     "give a longer time budget")
            return
        study.optimize(self.objective, n_trials=n_trials, timeout=time_left(deadline), catch=(Exception,),
                       callbacks=[trial_reporter(n_trials if not budgeted else self.cfg.trials, self.metric, self.log,
                                                 self.interrupted, next_done)],
                       show_progress_bar=False, gc_after_trial=True)

    def encoded(self, backbone: str, truncation: str = "head") -> tuple[Any, Encoded, Encoded]:
        # Tokenise each split once per tokenizer and truncation, shared across trials: scratch:X reuses X's tokens.
        key = backbone.removeprefix(SCRATCH_PREFIX)
        if (key, truncation) not in self._encoded:
            tok = self._tokenizers.get(key) or load_tokenizer(resolve_backbone(backbone))
            self._tokenizers[key] = tok
            n = self.max_length(key, tok)
            train, val = self.data.train, self.data.validation
            self._encoded[key, truncation] = (tok, encode(tok, train.texts, train.labels, n, truncation),
                                              encode(tok, val.texts, val.labels, n, truncation))
        return self._encoded[key, truncation]

    def max_length(self, key: str, tok: Any) -> int:
        """Tokens per text for tokenizer ``key``: the configured number, or what 95% of the training texts need
        (rounded up to a multiple of 8); at most what the tokenizer's model takes (its position embeddings end
        there: longer inputs fail inside the model). Said once per tokenizer."""
        if key not in self._max_len:
            limit = model_limit(tok)
            wanted = self.cfg.max_length or needed_length(tok, self.data.train.texts, self.cfg.seed)
            self._max_len[key] = min(wanted, limit) if limit else wanted
            if self.cfg.max_length is None:
                self.log(f"max_length {self._max_len[key]} for {key}: what 95% of the training texts need"
                         + (f" is more than it takes ({limit})" if limit and wanted > limit else ""))
            elif self._max_len[key] < self.cfg.max_length:
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
            TrialWriter(trial).failed("interrupted (Stop or Ctrl-C)")
            raise
        except Exception as exc:
            TrialWriter(trial).failed(f"{type(exc).__name__}: {exc}")
            raise

    def _objective(self, trial: Any) -> float:
        params = suggest(trial, self.backbones, self.cfg)
        backbone, seed = params["backbone"], trial_seed(trial, self.cfg.seed)
        truncation = params.get("truncation") or self.cfg.truncation or "head"
        tok, train_enc, val_enc = self.encoded(backbone, truncation)
        model = self.fresh_model(backbone, tok.pad_token_id, seed)
        cfg = train_config(self.cfg, params, seed=seed, metric=self.metric,
                           max_length=self.max_length(backbone.removeprefix(SCRATCH_PREFIX), tok),
                           evals_per_epoch=evals_per_epoch(self.cfg, params["epochs"]))
        monitor = _TrialMonitor(trial, self)
        monitor.writer.started(backbone, n_params(model), self.worker if self.share is not None else None,
                               cfg.max_length)
        self.share_threads()
        try:
            result = train(model, tok, train_enc, val_enc, cfg, task=self.data.task,
                           head_prefixes=head_prefixes(model, resolve_backbone(backbone)),
                           on_eval=monitor.on_eval, on_step=monitor.on_step, progress=self.progress,
                           deadline=None if is_seed_rerun(trial) else self.deadline)
        except Exception:  # pruned and failed trials keep their curve too
            monitor.writer.curve(monitor.curve)
            raise
        monitor.writer.curve(monitor.curve)
        threshold = result.metrics.get("threshold")
        stopped = (f"time budget reached after {result.history[-1]['epoch']:.2f} of {cfg.epochs} epochs"
                   if result.out_of_time else None)  # its last evaluation is where it stopped
        val = self.data.validation
        cut = 0.5 if threshold is None else threshold
        report = detailed_report(self.data.task, val.labels, result.val_probs, self.data.label_names, cut)
        predictions = concentration(self.data.task, val.labels, result.val_probs, cut, self.data.label_names)
        monitor.writer.result(result.metrics, result.train_time_s, stopped,
                              latency_ms(model, tok, val.texts, cfg.max_length), report, predictions)
        value = result.metrics[self.metric]
        self._keep_if_best(trial, params, model, tok, result.metrics, value, threshold, result.val_probs)
        return value

    def _keep_if_best(self, trial: Any, params: dict[str, Any], model: Any, tok: Any, metrics: dict[str, float],
                      value: float, threshold: float | list[float] | None, val_probs: Any = None) -> None:
        """Save the model only if it beats this backbone's best so far: disk is finite."""
        if is_seed_rerun(trial):
            return  # a seed re-run measures spread; selection (and the kept model) stays with the searched trials
        backbone = params["backbone"]
        others = [t.value for t in read_study(trial.study).complete
                  if t.backbone == backbone and t.value is not None and t.number != trial.number]
        if others and value <= max(others):
            return
        out = model_folder(self.models_dir, backbone)
        try:  # another worker sharing the folder may have kept a better model since the check above
            kept = ModelInfo.load(out).metrics.get("validation", {}).get(self.metric)
        except (TextclfError, OSError, ValueError):
            kept = None
        if kept is not None and value <= kept:
            return
        info = ModelInfo(label_names=self.data.label_names, task=self.data.task, backbone=backbone, threshold=threshold,
                         metrics={"validation": metrics}, params=params, data=self.data.describe(),
                         study=self.cfg.study, trial=trial.number, metric=self.metric,
                         max_length=self.max_length(backbone.removeprefix(SCRATCH_PREFIX), tok),
                         truncation=params.get("truncation") or self.cfg.truncation or "head")
        # Multi-label keeps per-label sigmoids with thresholds chosen on validation; a diverged model (NaN) none.
        if val_probs is not None and self.data.task != "multi_label" and np.isfinite(val_probs).all():
            cal = calibrate(val_probs, np.asarray(self.data.validation.labels))
            info.temperature, info.calibration = cal.temperature, cal.as_dict()
        writer = TrialWriter(trial)
        try:
            save_model(model, tok, out, info, validation_probs=val_probs)
        except (OSError, TextclfError) as exc:
            # The trial itself finished: its result stays in the storage even if its model cannot be kept.
            writer.model_not_kept(f"{type(exc).__name__}: {exc}")
            self.log(f"trial {trial.number}: model not kept: {exc}")
            return
        writer.model_kept(out)
