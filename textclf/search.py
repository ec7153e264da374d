"""What a study tries and what it stops: the recipe trials, TPE's suggestions and the pruners.

Every chosen backbone first gets one trial at its fine-tuning recipe's defaults (:func:`recipe_params`), so even a
small budget compares them all; then seeded TPE explores (:func:`suggest`) and a pruner stops hopeless trials from
their per-epoch evaluations (:func:`make_pruner`).
"""

from __future__ import annotations

import math
from typing import Any

from textclf.backbones import resolve_backbone
from textclf.config import MIN_STEPS, SearchSpace, StudyConfig, steps
from textclf.errors import ConfigError
from textclf.train import TRUNCATIONS


def _clip(value: float, bounds: tuple[float, float]) -> float:
    return min(max(value, bounds[0]), bounds[1])


def space_for(n_train: int) -> SearchSpace:
    """The default search space for ``n_train`` training rows (see :meth:`SearchSpace.filled`)."""
    return SearchSpace().filled(n_train)


# Metrics that weigh every class alike: a study selecting on one of them starts from balanced class weights.
PER_CLASS_METRICS = frozenset({"macro_f1"})


def recipe_params(backbone: str, cfg: StudyConfig, n_train: int, metric: str | None = None) -> dict[str, Any]:
    """The published recipe for ``backbone``: its family's learning rate, head ratio 10, weight decay 0.01, 10%
    warmup, batch 32 and 3 epochs, with the batch and epochs scaled so that small training sets still make
    ``MIN_STEPS`` steps; head+tail truncation where the study searches it (long texts); where it searches class
    weights (skewed labels), balanced ones if ``metric`` weighs every class alike, else none (balancing trades
    accuracy for the rare classes' recall; TPE still tries both); clipped into the search space so TPE can use it."""
    space = (cfg.space or SearchSpace()).filled(n_train)
    spec = resolve_backbone(backbone)
    batch = 32 if 32 in space.batch_sizes else max(space.batch_sizes)
    params: dict[str, Any] = {
        "backbone": backbone,
        "lr": _clip(spec.lr, space.lr),
        "head_lr_ratio": _clip(10.0, space.head_lr_ratio),
        "batch_size": batch,
        "weight_decay": _clip(0.01, space.weight_decay),
        "warmup_fraction": _clip(0.1, space.warmup_fraction),
    }
    if cfg.epochs is None:
        params["epochs"] = int(_clip(max(3, math.ceil(MIN_STEPS / steps(n_train, batch, 1))), space.epochs))
    if cfg.class_weight == "search":
        params["class_weight"] = "balanced" if (metric or cfg.metric) in PER_CLASS_METRICS else "none"
    if cfg.truncation == "search":
        params["truncation"] = "head_tail"
    return params


def evals_per_epoch(cfg: StudyConfig, epochs: int) -> int:
    """The configured evaluations per epoch, or enough for at least 4 per trial: a 1-epoch trial is then evaluated
    at 25/50/75/100% and the pruner can stop a hopeless one after a quarter of its cost, not at its end."""
    return cfg.evals_per_epoch or math.ceil(4 / epochs)


def suggest(trial: Any, backbones: list[str], cfg: StudyConfig) -> dict[str, Any]:
    space = cfg.space or SearchSpace()  # filled when the study was opened
    if space.batch_sizes is None or space.epochs is None:
        raise ConfigError("the search space's batch sizes and epochs are set when the study is opened; use run_study")
    params = {
        "backbone": trial.suggest_categorical("backbone", backbones),
        "lr": trial.suggest_float("lr", *space.lr, log=True),
        "head_lr_ratio": trial.suggest_float("head_lr_ratio", *space.head_lr_ratio, log=True),
        "batch_size": trial.suggest_categorical("batch_size", list(space.batch_sizes)),
        "weight_decay": trial.suggest_float("weight_decay", *space.weight_decay),
        "warmup_fraction": trial.suggest_float("warmup_fraction", *space.warmup_fraction),
    }
    params["epochs"] = cfg.epochs if cfg.epochs is not None else trial.suggest_int("epochs", *space.epochs)
    if cfg.class_weight == "search":
        params["class_weight"] = trial.suggest_categorical("class_weight", ["none", "balanced"])
    if cfg.truncation == "search":
        params["truncation"] = trial.suggest_categorical("truncation", list(TRUNCATIONS))
    return params


def few_steps_warning(n_train: int, cfg: StudyConfig) -> str | None:
    """A line when the given epochs and batch sizes leave a trial fewer than ``MIN_STEPS`` optimizer steps."""
    space = (cfg.space or SearchSpace()).filled(n_train)
    epochs = cfg.epochs if cfg.epochs is not None else space.epochs[1]
    most = max(steps(n_train, b, epochs) for b in space.batch_sizes)
    if most >= MIN_STEPS:
        return None
    fix = "drop --epochs or use a smaller batch" if cfg.epochs is not None else "use a smaller batch"
    return (f"{most} optimizer steps in all at most ({n_train} training rows, batch {min(space.batch_sizes)}, "
            f"{epochs} epoch(s)): expect an under-trained model; {fix}")


HOPELESS_SHARE = 0.5  # with one finished trial to judge by, a trial short of this share of its lead over chance stops


def make_pruner(name: str, n_startup_trials: int, chance: float | None = None) -> Any:
    """The study's pruner. ``chance`` (the metric of always predicting the training priors) lets the median
    pruner stop hopeless trials before it can judge: see :func:`_median_or_hopeless`."""
    import optuna

    if name == "median":
        # The median is over finished trials only. Judged against one (the recipe), every trial behind it at any
        # evaluation would be cut, nothing else would ever finish, and the search could not move past the recipe.
        # Two finished trials reporting at a step are needed before it prunes.
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
    first explored trial always runs in full, however close to chance it stays."""
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


def attach_search(study: Any, cfg: StudyConfig, n_backbones: int, chance: float | None, salt: int) -> None:
    """This process's pruner and sampler for ``study``. Seeded TPE: a sequential resume continues
    deterministically; workers running side by side pass distinct ``salt`` values, or they would all propose the same
    random start-up configurations (and constant liar keeps them off each other's running trials)."""
    import optuna

    study.pruner = make_pruner(cfg.pruner, n_startup_trials=n_backbones, chance=chance)  # cfg as _fill_defaults left it
    study.sampler = optuna.samplers.TPESampler(seed=cfg.seed + len(study.get_trials(deepcopy=False)) + salt,
                                               constant_liar=True)
