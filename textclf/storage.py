"""Where studies live and what they record: the one module that knows the storage's schema.

A study is an Optuna study in an RDB storage (by default the SQLite file ``studies/textclf.db``). textclf keeps

* on the study, one user attribute, ``textclf`` (:data:`SETUP_ATTR`): the setup record, a dict of the config's
  stored settings (see :meth:`textclf.config.StudyConfig.stored`) plus ``backbones``, ``metric``, ``models_dir``,
  ``label_names``, ``task``, ``data_summary``, ``baseline`` (the best traditional baseline, with every one under
  ``baselines``), ``majority`` (the majority class's scores), ``runs`` and ``test`` (the
  chosen model's one test score);
* on each trial, the user attributes written by :class:`TrialWriter` and read back as a :class:`TrialRecord`.

Everything else reads studies through :func:`read_study`, never through attribute names of its own.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from textclf.config import check_study_name, studies_dir
from textclf.errors import ConfigError

SETUP_ATTR = "textclf"  # the study user attribute holding the setup record


# ------------------------------------------------------------------------------------------------------ location
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


def _reachable(url: str, engine_kwargs: dict[str, Any] | None) -> bool:
    """Whether a plain connection to the database opens: if it does, what failed was setting up the schema."""
    import sqlalchemy

    try:
        engine = sqlalchemy.create_engine(url, **(engine_kwargs or {}))
        try:
            with engine.connect():
                return True
        finally:
            engine.dispose()
    except Exception:  # any driver's "cannot connect": the caller reports the original error
        return False


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
            # Workers starting together on an empty database race to create its tables: the losers find the
            # database reachable and try again. An unreachable one is reported at once.
            if attempt < 2 and _reachable(resolved, engine_kwargs):
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


def safe_name(text: str, fallback: str) -> str:
    """``text`` as a file name: letters, digits, ``_ . -`` only, no leading dot (``fallback`` if nothing is left)."""
    return re.sub(r"[^A-Za-z0-9_.\-]+", "_", text).strip("._") or fallback


def model_folder(models_dir: Path | str, backbone: str) -> Path:
    """Where a study keeps the best model of ``backbone``: one folder per backbone, named safely."""
    return Path(models_dir) / safe_name(backbone, "backbone")


# ------------------------------------------------------------------------------------------------------ setup record
def setup_of(study: Any) -> dict[str, Any]:
    """A copy of the study's setup record ({} for a study textclf did not make)."""
    return dict(study.user_attrs.get(SETUP_ATTR) or {})


def write_setup(study: Any, setup: dict[str, Any]) -> None:
    study.set_user_attr(SETUP_ATTR, setup)


def stored_setup(storage: Any, name: str, wait_s: float = 0.0) -> dict[str, Any]:
    """The setup record of study ``name`` ({} if the study does not exist). A study that exists without one is being
    set up by another worker: wait up to ``wait_s`` for it."""
    import optuna

    deadline = time.monotonic() + wait_s
    while True:
        summaries = {s.study_name: s for s in optuna.get_all_study_summaries(storage)}
        if name not in summaries:
            return {}
        attrs = summaries[name].user_attrs.get(SETUP_ATTR)
        if attrs:
            return dict(attrs)
        if time.monotonic() >= deadline:
            if wait_s:
                raise ConfigError(f"study {name!r} exists but was not made by textclf (no setup recorded); "
                                  "use another --study name")
            return {}
        time.sleep(0.5)


# ------------------------------------------------------------------------------------------------------ trial record
def recipe_attrs() -> dict[str, Any]:
    """The user attributes of a queued recipe trial (a backbone's published defaults)."""
    return {"recipe": True}


def seed_attrs(seed: int, seed_of: int) -> dict[str, Any]:
    """The user attributes of a queued seed re-run of trial ``seed_of``."""
    return {"seed": seed, "seed_of": seed_of}


def is_seed_rerun(trial: Any) -> bool:
    return "seed_of" in trial.user_attrs


def is_protected(trial: Any) -> bool:
    """Recipe trials and seed re-runs always finish: they are reference points, not candidates to cut short."""
    return bool(trial.user_attrs.get("recipe")) or is_seed_rerun(trial)


def trial_seed(trial: Any, default: int) -> int:
    return int(trial.user_attrs.get("seed", default))


class TrialWriter:
    """What a running trial records, written onto its Optuna trial."""

    def __init__(self, trial: Any) -> None:
        self.trial = trial

    def started(self, backbone: str, n_params: int, worker: int | None, max_length: int) -> None:
        self.trial.set_user_attr("backbone", backbone)
        self.trial.set_user_attr("n_params", n_params)
        self.trial.set_user_attr("max_length", max_length)
        if worker is not None:
            self.trial.set_user_attr("worker", worker)

    def progress(self, fraction: float) -> None:
        self.trial.set_user_attr("progress", round(fraction, 4))

    def curve(self, points: list[dict[str, float]]) -> None:
        self.trial.set_user_attr("learning_curve", points)

    def result(self, metrics: dict[str, Any], train_time_s: float, stopped: str | None, latency_ms: float,
               report: dict[str, Any], predictions: dict[str, Any]) -> None:
        self.trial.set_user_attr("metrics", {k: [float(x) for x in v] if isinstance(v, list) else float(v)
                                             for k, v in metrics.items()})
        self.trial.set_user_attr("train_time_s", train_time_s)
        if stopped:
            self.trial.set_user_attr("stopped", stopped)
        self.trial.set_user_attr("latency_ms", latency_ms)
        self.trial.set_user_attr("report", report)
        self.trial.set_user_attr("predictions", predictions)  # how concentrated (see metrics.concentration)

    def model_kept(self, folder: Path) -> None:
        self.trial.set_user_attr("model_dir", str(folder))

    def model_not_kept(self, reason: str) -> None:
        self.trial.set_user_attr("model_save_error", reason[:300])

    def failed(self, reason: str) -> None:
        """Keep the first reason recorded for a failed trial (the training loop records its own, with the curve)."""
        with contextlib.suppress(Exception):  # the storage itself may be what failed: the trial still ends as failed
            if "fail_reason" not in self.trial.user_attrs:
                self.trial.set_user_attr("fail_reason", reason[:500])


def fail_reason(trial: Any, trials: list[Any]) -> str | None:
    """Why a failed trial failed: its recorded reason, or, for one whose worker died (no reason could be written;
    Optuna failed it for its stale heartbeat and may have queued a retry), that."""
    reason = trial.user_attrs.get("fail_reason")
    if reason or trial.state.name != "FAIL":
        return reason
    retry = next((t.number for t in trials if trial.number in (t.system_attrs.get("retry_history") or [])), None)
    return "its process stopped answering (no heartbeat)" + (f"; retried as trial {retry}" if retry is not None else "")


@dataclass
class TrialRecord:
    """One trial as textclf recorded it."""

    number: int
    state: str  # Optuna's state name: COMPLETE, PRUNED, FAIL, RUNNING, WAITING
    value: float | None
    backbone: str
    params: dict[str, Any]
    train_time_s: float | None = None
    curve: list[dict[str, float]] = field(default_factory=list)
    report: dict[str, Any] | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    recipe: bool = False
    fail_reason: str | None = None
    progress: float | None = None
    duration_s: float | None = None
    seed: int | None = None
    seed_of: int | None = None
    stopped: str | None = None  # why a finished trial ended before its epochs did (the time budget)
    latency_ms: float | None = None
    n_params: int | None = None
    model_dir: str | None = None
    model_save_error: str | None = None
    worker: int | None = None
    distributions: dict[str, Any] = field(default_factory=dict)  # what each parameter was sampled from (Optuna's)
    predictions: dict[str, Any] = field(default_factory=dict)  # its most frequent answer on validation, and shares
    max_length: int | None = None  # the tokens per text it was trained on
    started: float | None = None  # when it started (seconds since the epoch)

    @property
    def collapsed(self) -> bool:
        """It gives one answer to nearly every validation row (see :func:`textclf.metrics.concentration`)."""
        return bool(self.predictions.get("collapsed"))

    def collapse_note(self) -> str:
        p = self.predictions
        return (f"collapsed: predicts {p.get('answer')} for {p.get('share', 0):.0%} of the validation rows "
                f"({p.get('true_share', 0):.0%} have it)") if self.collapsed else ""


def trial_record(t: Any, trials: list[Any]) -> TrialRecord:
    """Read one Optuna (frozen) trial; ``trials`` are the study's, to find a dead worker's retry."""
    ua = t.user_attrs
    return TrialRecord(
        number=t.number, state=t.state.name, value=t.value, backbone=t.params.get("backbone", ua.get("backbone", "")),
        params=dict(t.params), train_time_s=ua.get("train_time_s"), curve=list(ua.get("learning_curve", [])),
        report=ua.get("report"), metrics=dict(ua.get("metrics", {})), recipe=bool(ua.get("recipe")),
        fail_reason=fail_reason(t, trials), progress=ua.get("progress"),
        duration_s=t.duration.total_seconds() if t.duration else None, seed=ua.get("seed"), seed_of=ua.get("seed_of"),
        stopped=ua.get("stopped"), latency_ms=ua.get("latency_ms"), n_params=ua.get("n_params"),
        model_dir=ua.get("model_dir"), model_save_error=ua.get("model_save_error"), worker=ua.get("worker"),
        distributions=dict(t.distributions), predictions=dict(ua.get("predictions") or {}),
        max_length=ua.get("max_length"), started=t.datetime_start.timestamp() if t.datetime_start else None)


@dataclass
class StudyRecord:
    """A study as textclf recorded it: its setup and its trials."""

    name: str
    metric: str
    task: str | None
    label_names: list[str]
    baseline: float | None
    trials: list[TrialRecord]
    setup: dict[str, Any] = field(default_factory=dict)
    baseline_model: str = "tfidf+logreg"

    @property
    def finished(self) -> list[TrialRecord]:
        return [t for t in self.trials if t.state in ("COMPLETE", "PRUNED") and t.value is not None]

    @property
    def complete(self) -> list[TrialRecord]:
        """Completed trials that compete for "best" (seed re-runs only measure spread)."""
        return [t for t in self.trials if t.state == "COMPLETE" and t.value is not None and t.seed_of is None]

    def backbones(self) -> list[str]:
        return sorted({t.backbone for t in self.trials if t.backbone})

    def best_per_backbone(self) -> dict[str, TrialRecord]:
        """Each backbone's best completed trial among those that compete for "best"."""
        best: dict[str, TrialRecord] = {}
        for t in self.complete:
            if t.backbone not in best or (t.value or 0) > (best[t.backbone].value or 0):
                best[t.backbone] = t
        return best

    def best(self) -> TrialRecord | None:
        return max(self.best_per_backbone().values(), key=lambda t: t.value or 0, default=None)

    def models_dir(self) -> Path:
        return Path(self.setup.get("models_dir") or studies_dir() / "models" / self.name)


def read_study(study: Any) -> StudyRecord:
    """Read an Optuna study into a :class:`StudyRecord` (the one reader of the storage's schema)."""
    setup = setup_of(study)
    stored = study.get_trials(deepcopy=False)
    baseline = setup.get("baseline") or {}
    return StudyRecord(name=study.study_name, metric=setup.get("metric", "value"), task=setup.get("task"),
                       label_names=list(setup.get("label_names", [])), baseline=baseline.get("value"),
                       trials=[trial_record(t, stored) for t in stored], setup=setup,
                       baseline_model=baseline.get("model", "tfidf+logreg"))
