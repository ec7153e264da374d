"""Every setting of a study, in one place: :class:`StudyConfig` and its :class:`SearchSpace`.

Each field documents itself in its metadata (help text, choices, command-line flag), and says where it goes: onto
the command line, into a ``studies/<name>.toml`` preset, into the study's stored setup, and what a resume does with
it (``match``: a different value is refused, since the trials would stop being comparable; ``adopt``: a value not
given again is the study's own). The CLI parser, the preset keys, the stored setup and the resume rules are all
read off these fields, so a new setting is one new field here (and its use).
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import re
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from textclf.data import TASKS
from textclf.errors import ConfigError
from textclf.metrics import METRICS, THRESHOLD_MODES
from textclf.train import CLASS_WEIGHTS, TRUNCATIONS

PRUNERS = ("median", "sha", "hyperband", "none")
STUDY_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")
MAX_STUDY_NAME = 100
MIN_MAX_LENGTH = 4  # tokens per text, special tokens included: room for at least a word or two


def option(default: Any = MISSING, help: str = "", *, flag: str | None = None, choices: tuple[str, ...] | None = None,
           metavar: str | tuple[str, ...] | None = None, cli: bool = True, preset: bool = True, stored: bool = False,
           resume: str = "") -> Any:
    """A config field with what the CLI, presets, the stored setup and resumes need to know about it."""
    meta = {"help": help, "flag": flag, "choices": choices, "metavar": metavar, "cli": cli, "preset": preset,
            "stored": stored, "resume": resume}
    return field(default=default, metadata=meta)


# Optimizer steps a trial should make at least to fine-tune: below ~250, small training sets gave under-trained models
# that lost to the TF-IDF baseline (the measurements are in docs/benchmarks.md, "Recipes that scale with the data").
MIN_STEPS = 250
BATCH_SIZES = (8, 16, 32)


def steps(n_train: int, batch_size: int, epochs: int) -> int:
    """Optimizer steps of a trial: one per batch, the last one of an epoch possibly short."""
    return math.ceil(n_train / batch_size) * epochs


@dataclass
class SearchSpace:
    """Ranges searched by TPE. Defaults follow the BERT/RoBERTa fine-tuning recipes (lr 1e-5..1e-4, weight decay
    0.01, warmup 6-10%), widened upwards for small models such as MiniLM; batch sizes and epochs left unset are scaled
    to the training rows (:meth:`filled`): batch 16/32 and 2-5 epochs for a few thousand rows and more."""

    lr: tuple[float, float] = option((1e-5, 3e-4), "encoder learning-rate range (log scale)", flag="--lr-range",
                                     metavar=("LOW", "HIGH"))
    head_lr_ratio: tuple[float, float] = option((1.0, 100.0), "head/encoder learning-rate ratio range",
                                                flag="--ratio-range", metavar=("LOW", "HIGH"))
    batch_sizes: tuple[int, ...] | None = option(None, "batch sizes to search, comma-separated (default: scaled to "
                                                       "the training rows)", flag="--batch-sizes")
    weight_decay: tuple[float, float] = option((0.0, 0.1), "weight-decay range", cli=False, preset=False)
    warmup_fraction: tuple[float, float] = option((0.0, 0.2), "warmup fraction range", cli=False, preset=False)
    epochs: tuple[int, int] | None = option(None, "epochs range when epochs are searched (default: scaled to the "
                                                  "training rows)", cli=False, preset=False)

    def __post_init__(self) -> None:
        for name in ("lr", "head_lr_ratio", "weight_decay", "warmup_fraction", "epochs"):
            if getattr(self, name) is None:
                continue
            low, high = getattr(self, name)
            if not (math.isfinite(low) and math.isfinite(high)) or low > high:
                raise ConfigError(f"{name} range must be low <= high, got ({low}, {high}); swap the bounds")
        for name in ("lr", "head_lr_ratio"):
            if getattr(self, name)[0] <= 0:
                raise ConfigError(f"{name} range must be positive (it is searched on a log scale), got {getattr(self, name)}")
        if self.lr[1] > 1:
            raise ConfigError(f"lr range must lie within (0, 1], got {self.lr}: fine-tuning learning rates are "
                              "around 1e-5 to 3e-4; did you mean those?")
        if self.epochs is not None and self.epochs[0] < 1:
            raise ConfigError(f"epochs range must start at 1 or more, got {self.epochs}")
        if self.batch_sizes is not None and (not self.batch_sizes or any(int(b) < 1 for b in self.batch_sizes)):
            raise ConfigError(f"batch_sizes must be positive integers, got {self.batch_sizes}")
        if not (self.warmup_fraction[0] >= 0 and self.warmup_fraction[1] < 1):
            raise ConfigError(f"warmup_fraction range must lie in [0, 1), got {self.warmup_fraction}")

    def filled(self, n_train: int) -> SearchSpace:
        """This space with unset batch sizes and epochs scaled to ``n_train`` rows: the two largest of 8/16/32 that
        still make ``MIN_STEPS`` in 5 epochs, and epochs from what the larger of them needs for ``MIN_STEPS`` (at
        least 2) to two more (at least 5)."""
        sizes = self.batch_sizes or tuple(b for b in BATCH_SIZES if steps(n_train, b, 5) >= MIN_STEPS)[-2:] \
            or BATCH_SIZES[:1]
        low = min(max(2, math.ceil(MIN_STEPS / steps(n_train, max(sizes), 1))), 8)
        out = copy.copy(self)  # the ranges as they are: they were checked when the space was made
        out.batch_sizes, out.epochs = tuple(sizes), self.epochs or (low, max(5, low + 2))
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> SearchSpace:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able, as the study stores it: lists, not tuples."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


# The preset keys of the space's command-line ranges (lr_range = [1e-5, 1e-4] in studies/NAME.toml).
SPACE_KEYS = {"lr_range": "lr", "ratio_range": "head_lr_ratio", "batch_sizes": "batch_sizes"}


@dataclass
class StudyConfig:
    """One ``run``: which study, on which data, over which backbones, with how much budget."""

    study: str = option(help="study name (letters, digits, _ - .)", preset=False)
    data: str = option(help="file, folder, preset (demo, sst2, ...) or hub dataset id (required unless "
                            "studies/STUDY.toml sets it)", stored=True, resume="match")
    backbones: list[str] | None = option(None, "comma-separated, e.g. minilm,scratch:minilm", stored=True,
                                         resume="match")
    trials: int = option(10, "trials to add (default 10)")
    timeout: float | None = option(None, "time budget in seconds, setup included: no trial starts after it, and a "
                                         "trial still running stops there with an evaluation of where it stands "
                                         "(seed re-runs come on top)")
    storage: str | None = option(None, "Optuna storage URL (default $TEXTCLF_STORAGE or studies/textclf.db)")
    max_train_samples: int | None = option(None, "stratified subsample of train", stored=True, resume="match adopt")
    epochs: int | None = option(None, "fix the number of epochs (default: searched)", stored=True, resume="match adopt")
    metric: str | None = option(None, "the metric trials are selected on (default: accuracy for balanced labels, "
                                      "macro_f1 for skewed ones and for multi-label)", choices=tuple(METRICS),
                                stored=True, resume="match")
    seed: int = option(42, "default 42", stored=True, resume="match")
    pruner: str | None = option(None, "default median (a resumed study keeps its own)", choices=PRUNERS, stored=True,
                                resume="adopt")
    # None: the stored study's space when resuming, else the defaults. Its ranges have flags of their own.
    space: SearchSpace | None = option(None, cli=False, preset=False, stored=True, resume="match adopt")
    max_length: int | None = option(None, "tokens per text (default: what 95% of the training texts need, at "
                                          "most what the backbone's model takes)", stored=True)
    truncation: str | None = option(None, "how a text longer than max_length is cut: head (its first tokens), "
                                          "head_tail (its first quarter and last three quarters), or search (both; "
                                          "the default when many training texts are longer than the model takes, "
                                          "else head)", choices=(*TRUNCATIONS, "search"), stored=True,
                                    resume="match adopt")
    evals_per_epoch: int | None = option(None, "evaluations (and pruning chances) per epoch (default: 4 a trial: "
                                               "4 an epoch for 1 epoch, 2 for 2-3)")
    pruning_eval_rows: int | None = option(512, "mid-epoch evaluations, which only feed the pruner, score a fixed "
                                                "sample of N validation rows (default 512; 0 = all); epoch-end ones, "
                                                "which choose the model, always score all", metavar="N")
    progressive_pruning: bool = option(True, "score the first epoch's mid-epoch evaluations on the validation "
                                             "sample too, rather than on the training rows since the last one as "
                                             "predicted before training on them (free)",
                                       flag="--no-progressive-pruning")
    layer_decay: float = option(1.0, "learning-rate decay per layer down from the head", cli=False, preset=False)
    dropout: float | None = option(None, "dropout probability (default: the backbone's)")
    early_stopping_patience: int | None = option(None, "stop a trial after this many evaluations without improvement",
                                                 flag="--early-stopping", metavar="EVALS")
    text_column: str | None = option(None, "the text column (default: found by name)", stored=True, resume="adopt")
    label_column: str | None = option(None, "the label column (default: found by name)", stored=True, resume="adopt")
    task: str | None = option(None, "default: found from the labels", choices=TASKS, stored=True, resume="adopt")
    models_dir: str | None = option(None, "where the best models are kept (default studies/models/STUDY)", cli=False,
                                    preset=False)
    precision: str = option("auto", "training precision", cli=False, preset=False)
    seeds: int = option(0, "re-run each backbone's best configuration with K more seeds: mean ± spread per backbone",
                        metavar="K")
    threshold_mode: str | None = option(None, "multi-label decision thresholds chosen on validation: one global "
                                              "(default), or one per class (each the mean of its best cut over "
                                              "bootstrap resamples of validation)", flag="--thresholds",
                                        choices=tuple(THRESHOLD_MODES), stored=True, resume="match adopt")
    class_weight: str | None = option(None, "balanced: weight the loss by inverse class frequency; search: a "
                                            "searched choice of none and balanced (default: search for skewed "
                                            "labels, else none)", choices=(*CLASS_WEIGHTS, "search"), stored=True,
                                      resume="match adopt")
    jobs: int = option(1, "run N trials side by side, each in its own process, sharing the CPU's threads (default 1: "
                          "one at a time, repeatable run to run; more finish a study sooner where one training "
                          "leaves cores idle)", metavar="N")

    def __post_init__(self) -> None:
        check_study_name(self.study)
        if not isinstance(self.data, str) or not self.data:
            raise ConfigError("data is required: a file, a folder, a preset (e.g. demo) or a hub dataset id")
        for name in ("trials", "max_length", "seed", "jobs", "seeds", "epochs", "max_train_samples", "evals_per_epoch",
                     "pruning_eval_rows", "early_stopping_patience"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise ConfigError(f"{name} must be a whole number, got {value!r}")
        if self.trials < 1:
            raise ConfigError(f"trials must be at least 1, got {self.trials}")
        if self.timeout is not None and (isinstance(self.timeout, bool) or not isinstance(self.timeout, (int, float))
                                         or not math.isfinite(self.timeout) or self.timeout <= 0):
            raise ConfigError(f"timeout must be a positive, finite number of seconds, got {self.timeout!r}")
        if self.max_length is not None and self.max_length < MIN_MAX_LENGTH:
            raise ConfigError(f"max_length must be at least {MIN_MAX_LENGTH} tokens (special tokens included), "
                              f"got {self.max_length}")
        if self.epochs is not None and self.epochs < 1:
            raise ConfigError(f"epochs must be at least 1, got {self.epochs}")
        if self.dropout is not None and not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.pruning_eval_rows is not None and self.pruning_eval_rows < 1:
            raise ConfigError(f"pruning_eval_rows must be at least 1 (or None for all rows), got {self.pruning_eval_rows}")
        if not isinstance(self.progressive_pruning, bool):
            raise ConfigError(f"progressive_pruning must be true or false, got {self.progressive_pruning!r}")
        if self.evals_per_epoch is not None and self.evals_per_epoch < 1:
            raise ConfigError(f"evals_per_epoch must be at least 1, got {self.evals_per_epoch}")
        if self.early_stopping_patience is not None and self.early_stopping_patience < 1:
            raise ConfigError(f"early_stopping_patience must be at least 1, got {self.early_stopping_patience}")
        if not 1 <= self.jobs <= 64:
            raise ConfigError(f"jobs must be between 1 and 64 (trials run side by side), got {self.jobs}")
        if not 0 <= self.seeds <= 20:
            raise ConfigError(f"seeds must be between 0 and 20, got {self.seeds}")
        for f in fields(self):
            choices, value = f.metadata.get("choices"), getattr(self, f.name)
            if choices and value is not None and value not in choices:
                raise ConfigError(f"{f.name} must be one of {', '.join(choices)}, got {value!r}")
        if self.backbones is not None:
            self.backbones = [b.strip() for b in self.backbones if b.strip()]
            if not self.backbones:
                raise ConfigError("backbones is empty; name at least one, e.g. minilm")
            if len(set(self.backbones)) != len(self.backbones):
                raise ConfigError(f"backbones lists a name twice: {self.backbones}")

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        """JSON-able: what a worker process is handed (``run --config FILE``)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["space"] = self.space.to_dict() if self.space is not None else None
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> StudyConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ConfigError(f"unknown settings {unknown}; allowed: {', '.join(sorted(known))}")
        values = dict(raw)
        if isinstance(values.get("space"), dict):
            values["space"] = SearchSpace.from_dict(values["space"])
        return cls(**values)

    # ------------------------------------------------------------------ the stored setup and resumes
    def stored(self) -> dict[str, Any]:
        """The settings a study records when it is created (see :func:`check_resume` and :func:`adopt_stored`)."""
        stored = {f.name for f in fields(self) if f.metadata.get("stored")}
        return {k: v for k, v in self.to_dict().items() if k in stored}


def check_study_name(name: str) -> str:
    if isinstance(name, str) and len(name) > MAX_STUDY_NAME:
        raise ConfigError(f"study name is {len(name)} characters long, at most {MAX_STUDY_NAME} are allowed; "
                          "choose a shorter name")
    if not isinstance(name, str) or not STUDY_NAME_RE.fullmatch(name) or ".." in name:
        raise ConfigError(f"study name {name!r} is not allowed: use letters, digits, '_', '-' and '.', "
                          "starting with a letter or digit (no paths)")
    return name


def _resumed(rule: str) -> list[str]:
    return [f.name for f in fields(StudyConfig) if rule in f.metadata.get("resume", "").split()]


def check_resume(stored: dict[str, Any], cfg: StudyConfig, backbones: list[str] | None, metric: str | None) -> None:
    """A resumed study must keep its data, backbones, metric and the other ``match`` settings, or its trials stop
    being comparable. ``backbones`` and ``metric`` are those this run asks for (None: not asked)."""
    wanted = {name: getattr(cfg, name) for name in _resumed("match")} | {"backbones": backbones, "metric": metric}
    if wanted.get("space") is not None:  # the ranges given; unset ones were scaled to the data when it was created
        given = {k: v for k, v in wanted["space"].to_dict().items() if v is not None}
        wanted["space"] = {**stored.get("space", {}), **given}
    for key, value in wanted.items():
        if value is not None and key in stored and stored[key] != value:
            raise ConfigError(f"study {cfg.study!r} was created with {key}={stored[key]!r} but this run asks for "
                              f"{key}={value!r}; rerun with the study's settings or use a new --study name")


def adopt_stored(cfg: StudyConfig, stored: dict[str, Any]) -> None:
    """Settings not given again are the study's own, so a bare resume samples the same data, space and loss."""
    for name in _resumed("adopt"):
        if getattr(cfg, name) is None and stored.get(name) is not None:
            value = stored[name]
            setattr(cfg, name, SearchSpace.from_dict(value) if name == "space" else value)


# ---------------------------------------------------------------------------------------------------- presets, CLI
def studies_dir() -> Path:
    """The folder of presets, the default SQLite storage and kept models: ``$TEXTCLF_STUDIES_DIR`` or ``studies``."""
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


def preset_keys() -> set[str]:
    """The keys a ``studies/NAME.toml`` preset may set."""
    return {f.name for f in fields(StudyConfig) if f.metadata.get("preset")} | set(SPACE_KEYS)


def from_options(study: str, options: dict[str, Any]) -> StudyConfig:
    """A config from preset keys and flag values (the CLI's merged options): unknown keys are refused, the space's
    ranges become a SearchSpace, and ``pruning_eval_rows = 0`` means all rows."""
    unknown = sorted(set(options) - preset_keys())
    if unknown:
        raise ConfigError(f"unknown settings {unknown}; allowed: {', '.join(sorted(preset_keys()))}")
    values = {k: v for k, v in options.items() if k not in SPACE_KEYS}
    space = {SPACE_KEYS[k]: tuple(v) for k, v in options.items() if k in SPACE_KEYS and v is not None}
    if space:
        values["space"] = SearchSpace(**space)
    if isinstance(values.get("backbones"), str):
        values["backbones"] = _csv_list(values["backbones"])
    if values.get("pruning_eval_rows") == 0:
        values["pruning_eval_rows"] = None
    if not values.get("data"):
        raise ConfigError(f"--data is required: no studies/{study}.toml preset sets it; e.g. --data demo")
    return StudyConfig(study=study, **values)


def _csv_list(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _csv_ints(value: str) -> list[int]:
    try:
        return [int(x) for x in _csv_list(value)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected whole numbers separated by commas, got {value!r}") from None


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``run`` command's settings, one flag per field (defaults None: a flag not given leaves the preset's or
    the config's own default)."""
    for cls in (StudyConfig, SearchSpace):
        hints = typing.get_type_hints(cls)  # per class: both have an ``epochs``
        for f in fields(cls):
            meta = f.metadata
            if not meta.get("cli"):
                continue
            flag = meta.get("flag") or "--" + f.name.replace("_", "-")
            kwargs: dict[str, Any] = {"dest": _dest(cls, f.name), "default": None, "help": meta.get("help") or None}
            kind = hints[f.name]
            if kind is bool:
                kwargs |= {"action": "store_false" if f.default else "store_true"}
            elif cls is SearchSpace and f.name == "batch_sizes":
                kwargs |= {"type": _csv_ints}
            elif cls is SearchSpace:
                kwargs |= {"type": float, "nargs": 2, "metavar": meta.get("metavar")}
            elif f.name == "backbones":
                kwargs |= {"type": _csv_list}
            else:
                base = next(t for t in typing.get_args(kind) or (kind,) if t is not type(None))
                kwargs |= {"type": base, "choices": list(meta["choices"]) if meta.get("choices") else None,
                           "metavar": meta.get("metavar")}
            if f.name == "study":
                kwargs |= {"required": True}
                del kwargs["default"]
            parser.add_argument(flag, **{k: v for k, v in kwargs.items() if v is not None or k == "default"})


def _dest(cls: type, name: str) -> str:
    """The argparse dest of a field: its own name, or its preset key for the space's ranges."""
    if cls is SearchSpace:
        return next(key for key, field_name in SPACE_KEYS.items() if field_name == name)
    return name
