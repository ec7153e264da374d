"""The dashboard's logic, free of Gradio: configuration, background study workers, the model store and every callback
as a plain function. ``app.py`` only lays these out. Nothing here is module-level mutable state: the app creates one
:class:`Dashboard` and its callbacks close over it.

Studies run in separate worker processes (``python -m textclf run``) on the same storage as the CLI: the UI stays
responsive and a crash in training cannot take the app down.
"""

from __future__ import annotations

import contextlib
import csv
import html
import logging
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from textclf.config import studies_dir as default_studies_dir
from textclf.data import HUB_PREFIX, check_hub_id
from textclf.errors import ConfigError, DataError, TextclfError
from textclf.model_zip import ModelZips
from textclf.safety import (
    check_text_length,
    check_uploaded,
    csv_cell,
    md,
    plot_text,
    scrub_paths,
    server_roots,
    upload_dir,
)

logger = logging.getLogger(__name__)

ALL_BACKBONES = ["minilm", "scratch:minilm", "mpnet", "bert", "roberta", "xlnet", "distilbert", "distilroberta"]
DATA_CHOICES = ["demo-banking", "demo", "demo-multilabel", "sst2", "trec", "emotion", "ag_news", "banking77", "sms_spam",
                "go_emotions"]
BEST = "(best available)"
# The stored settings that decide a study's validation split (what validation_of loads).
SPLIT_KEYS = ("data", "text_column", "label_column", "task", "max_train_samples", "seed")
ERROR_TEXT_CHARS = 500  # of each text the error browser shows
# What the callbacks import on first use, imported once in one background thread as the app starts (see
# Dashboard.warm_up): two callbacks importing them at once from two threads can deadlock on a module both need
# (sklearn and plotly both import narwhals; Python then raises _DeadlockError in one of them).
WARM_MODULES = ("pandas", "sklearn.model_selection", "sklearn.metrics", "plotly.graph_objects", "plotly.subplots",
                "optuna", "optuna.visualization", "datasets", "torch", "transformers")
# Public mode (a Space): what one visitor may use of a shared free CPU, its disk and its network.
PUBLIC_LIMITS: dict[str, Any] = {
    "max_trials": 8, "max_train_samples": 2000, "max_upload_mb": 5.0, "max_concurrent_studies": 1,
    "max_timeout_min": 30.0, "max_jobs": 1, "max_batch_rows": 5000, "max_studies": 50, "cache_hours": 6.0,
    "max_uploads_mb": 2000.0, "max_hub_dataset_mb": 200.0}


@dataclass
class StudyForm:
    """The Study tab's settings as a visitor sent them; :meth:`Dashboard.start_study` checks each one. The defaults
    are the form's own (app.py shows them)."""

    data: str
    backbones: list[str]
    trials: float = 6
    timeout_min: float | None = None  # None or 0: no time budget
    lr: tuple[float, float] = (1e-5, 3e-4)
    head_lr_ratio: tuple[float, float] = (1.0, 100.0)
    batch_sizes: list[int] = field(default_factory=list)  # none ticked: scaled to the training rows
    epochs: float | None = None  # None or 0: searched, in a range scaled to the training rows
    pruner: str = "median"
    max_train_samples: int | None = None
    seeds: float = 0
    threshold_mode: str = "global"
    class_weight: str = "auto"  # auto: the study's default (searched for skewed labels, else none)
    jobs: float = 1


@dataclass
class DashboardConfig:
    """Where studies live and, in public mode, how much one visitor may use."""

    storage: str | None = None
    studies_dir: Path = field(default_factory=default_studies_dir)
    public: bool = False
    max_trials: int = 50
    max_train_samples: int | None = None
    max_upload_mb: float = 50.0
    max_concurrent_studies: int = 4
    max_timeout_min: float | None = None  # a study's time budget at most (and by default), in minutes
    max_jobs: int | None = None  # trials side by side at most (None: the machine's cores)
    max_batch_rows: int | None = None  # rows of one batch-prediction file
    max_studies: int | None = None  # studies in the storage: each keeps a model per backbone on disk
    cache_hours: float | None = None  # uploads and result files older than this are deleted (hourly)
    max_uploads_mb: float | None = None  # the upload folder, all visitors together
    max_hub_dataset_mb: float | None = None  # a hub dataset the app downloads for a visitor
    # The backbones a visitor may pick: names only, so nobody can point the app at a folder on the server.
    backbones: list[str] = field(default_factory=lambda: list(ALL_BACKBONES))
    # Where files handed to the callbacks must lie: Gradio's upload folder (None: anywhere, for library use).
    uploads: str | None = field(default_factory=upload_dir)
    # Compile each loaded model for the live box in the background (see Predictor): the app turns it on.
    compile_models: bool = False

    @classmethod
    def from_env(cls, storage: str | None = None, studies_dir: str | Path | None = None,
                 public: bool | None = None) -> DashboardConfig:
        """Public mode is on on Hugging Face Spaces (SPACE_ID is set) or with TEXTCLF_PUBLIC=1."""
        if public is None:
            public = bool(os.environ.get("SPACE_ID")) or os.environ.get("TEXTCLF_PUBLIC", "") in ("1", "true", "yes")
        folder = Path(studies_dir).expanduser().resolve() if studies_dir else default_studies_dir()
        cfg = cls(storage=storage or os.environ.get("TEXTCLF_STORAGE"), studies_dir=folder, public=public)
        return replace(cfg, **PUBLIC_LIMITS) if public else cfg

    def roots(self) -> list[str]:
        """Folders whose paths a visitor is never shown."""
        return server_roots(self.studies_dir, self.uploads)

    @property
    def storage_url(self) -> str:
        from textclf.storage import resolve_storage

        if self.storage:
            return resolve_storage(self.storage)
        self.studies_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{self.studies_dir / 'textclf.db'}"

    @property
    def models_dir(self) -> Path:
        return self.studies_dir / "models"


def _download_note(worker: Worker) -> str:
    now = worker.download()
    return f"\n\nDownloading from the Hugging Face Hub: {md(now, limit=200)}" if now else ""


# ------------------------------------------------------------------------------------------------------ workers
# A hub download's tqdm bar: "model.safetensors:  45%|####5     | 197M/438M [00:05<00:06, 39.4MB/s]".
DOWNLOAD_BAR = re.compile(r"^(?P<file>[^|:]{1,160}):\s+(?P<pct>\d{1,3})%\|[^|]*\|\s*(?P<done>[\d.]+\s?[kMGTP]?B?)/"
                          r"(?P<total>[\d.]+\s?[kMGTP]?B?)")


@dataclass
class Worker:
    study: str
    process: subprocess.Popen
    log_path: Path
    started: float
    owner: str | None = None  # the browser session that started it (public mode: the only one that may stop it)

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def download(self) -> str | None:
        """The hub download the worker is in the middle of, from its log's last progress bar ("model.safetensors
        45% (197M/438M)"), or None."""
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(max(0, fh.seek(0, os.SEEK_END) - 4096))
                end = fh.read().decode("utf-8", errors="replace")
        except OSError:
            return None
        bars = [seg for seg in re.split(r"[\r\n]+", end) if seg.strip()]
        match = DOWNLOAD_BAR.search(bars[-1]) if bars else None
        if match is None or match["pct"] == "100":
            return None
        return f"{match['file'].strip()} {match['pct']}% ({match['done']}/{match['total']})"

    def tail(self, lines: int = 6) -> str:
        try:
            return "\n".join(self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def failure(self) -> str:
        """The worker's own one-line reason for exiting (its last ``error:`` line), else its last line."""
        lines = self.tail(40).splitlines()
        errors = [ln for ln in lines if ln.startswith("error:")]
        return (errors or lines or [""])[-1].removeprefix("error:").strip()


class StudyManager:
    """Starts, stops and watches study worker processes."""

    def __init__(self, cfg: DashboardConfig) -> None:
        self.cfg = cfg
        self._workers: dict[str, Worker] = {}
        self._lock = threading.Lock()

    def running(self) -> list[str]:
        with self._lock:
            return [name for name, w in self._workers.items() if w.running]

    def worker(self, study: str) -> Worker | None:
        return self._workers.get(study)

    def start(self, cfg: Any, owner: str | None = None) -> Worker:
        """Run ``cfg`` (a StudyConfig) in a worker process on this app's storage. The worker is handed the config
        itself (``run --config``), so it trains exactly what was checked here, and no studies/NAME.toml joins in."""
        import json

        study = cfg.study
        with self._lock:
            if study in self._workers and self._workers[study].running:
                raise ConfigError(f"study {study!r} is already running; stop it first or open it to watch")
            active = [n for n, w in self._workers.items() if w.running]
            if len(active) >= self.cfg.max_concurrent_studies:
                raise ConfigError(f"{len(active)} studies are running ({', '.join(active)}), the limit here is "
                                  f"{self.cfg.max_concurrent_studies}; stop one or wait for it to finish")
            logs = self.cfg.studies_dir / "logs"
            logs.mkdir(parents=True, exist_ok=True)
            log_path, config_path = logs / f"{study}.log", logs / f"{study}.config.json"
            config_path.write_text(json.dumps(replace(cfg, storage=self.cfg.storage_url).to_dict(), indent=1),
                                   encoding="utf-8")
            # TQDM_POSITION=-1: the hub's download bars also when stderr is not a terminal (huggingface_hub's own
            # switch), so the Study section can show a download's progress from the log.
            env = {**os.environ, "TEXTCLF_STUDIES_DIR": str(self.cfg.studies_dir), "PYTHONUNBUFFERED": "1",
                   "TQDM_POSITION": "-1"}
            cmd = [sys.executable, "-m", "textclf", "run", "--study", study, "--config", str(config_path)]
            with open(log_path, "w", encoding="utf-8") as log:
                # A new session: Stop signals the worker's whole group, never the app.
                proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                        cwd=str(Path(__file__).resolve().parents[1]))
            worker = Worker(study, proc, log_path, time.time(), owner)
            self._workers[study] = worker
            return worker

    def stop(self, study: str, timeout: float = 20.0, owner: str | None = None) -> bool:
        """Interrupt the worker (its running trial is marked failed; finished trials stay); kill if it hangs. In
        public mode only the session that started it may (``owner``)."""
        worker = self._workers.get(study)
        if worker is None or not worker.running:
            return False
        if self.cfg.public and worker.owner != owner:
            raise ConfigError(f"study {study!r} was started by another visitor: only they can stop it; "
                              "it ends by itself within its trial and time limits")
        os.killpg(worker.process.pid, signal.SIGINT)
        try:
            worker.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(worker.process.pid, signal.SIGKILL)
            worker.process.wait(5)
        return True

    def stop_all(self) -> None:
        for name, worker in list(self._workers.items()):
            self.stop(name, timeout=5, owner=worker.owner)


# ------------------------------------------------------------------------------------------------------ models
class ModelStore:
    """The kept best models under ``studies/models/<study>/<backbone>/``, loaded on demand and cached (a few)."""

    def __init__(self, root: Path, capacity: int = 4, compile: bool = False) -> None:
        self.root = root
        self.capacity = capacity
        self.compile = compile
        self._cache: OrderedDict[str, Any] = OrderedDict()
        self._names: dict[Path, tuple[int, str]] = {}  # textclf.json -> (its mtime, the backbone's display name)
        self._lock = threading.Lock()
        self._loading = threading.Lock()  # one load at a time: a burst of first requests must not load N copies

    def available(self) -> dict[str, Path]:
        """Display name -> folder. Names come only from this scan, so the UI can never point at another path."""
        out: dict[str, Path] = {}
        if not self.root.is_dir():
            return out
        for meta in sorted(self.root.glob("*/*/textclf.json")):
            folder = meta.parent
            if folder.name.startswith(".") or folder.parent.name.startswith("."):
                continue  # a model being written (".name.tmp-…") or moved aside
            out[f"{folder.parent.name} / {self._backbone_name(meta)}"] = folder
        return out

    def _backbone_name(self, meta: Path) -> str:
        """:func:`_backbone_name`, read once per version of the folder's textclf.json: the scan runs on every
        prediction."""
        try:
            version = meta.stat().st_mtime_ns
        except OSError:
            return meta.parent.name
        with self._lock:
            known = self._names.get(meta)
        if known is not None and known[0] == version:
            return known[1]
        name = _backbone_name(meta)
        with self._lock:
            self._names[meta] = (version, name)
        return name

    def best(self) -> str | None:
        """The model with the highest validation score, each by its own study's metric (folders kept before the
        metric was recorded: the task's default), on disk. A folder that cannot be read is passed over."""
        from textclf.export import ModelInfo
        from textclf.metrics import default_metric

        scored = []
        for name, folder in self.available().items():
            try:
                info = ModelInfo.load(folder)
            except TextclfError as exc:
                logger.warning("textclf: model %s passed over: %s", name, exc)
                continue
            value = info.metrics.get("validation", {}).get(info.metric or default_metric(info.task))
            if isinstance(value, (int, float)):
                scored.append((float(value), name))
        return max(scored)[1] if scored else None

    def _cached(self, key: str) -> Any:
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        return None

    def folder(self, name: str | None) -> tuple[str, Path]:
        """The display name and folder of the model a visitor picked (:data:`BEST`: the best one)."""
        choice = name if name and name != BEST else self.best()
        models = self.available()
        if choice is None:
            raise TextclfError("no trained model yet: run a study in the Study section (the quick demo takes minutes)")
        if choice not in models:
            raise TextclfError(f"model {choice[:100]!r} is not among the {len(models)} trained model(s) here; "
                               "pick one from the list")
        return choice, models[choice]

    def get(self, name: str | None, *, eager: bool = False) -> Any:
        return self.named(name, eager=eager)[1]

    def named(self, name: str | None, *, eager: bool = False) -> tuple[str, Any]:
        """The display name and the loaded Predictor of the model a visitor picked (one scan of the folder)."""
        from textclf.predict import Predictor

        choice, folder = self.folder(name)
        key = f"{choice}|{'eager' if eager else 'default'}|{folder.stat().st_mtime}"
        cached = self._cached(key)
        if cached is not None:
            return choice, cached
        with self._loading:
            cached = self._cached(key)  # loaded by the request we waited for
            if cached is not None:
                return choice, cached
            # The attention view's eager copy only serves clicks: compiling it would not pay.
            predictor = Predictor.from_dir(folder, attn_implementation="eager" if eager else None,
                                           compile=self.compile and not eager)
            with self._lock:
                self._cache[key] = predictor
                while len(self._cache) > self.capacity:
                    self._cache.popitem(last=False)
            return choice, predictor


# ------------------------------------------------------------------------------------------------------ the app
class Dashboard:
    """Everything the UI callbacks share."""

    def __init__(self, cfg: DashboardConfig) -> None:
        self.cfg = cfg
        self.studies = StudyManager(cfg)
        self.models = ModelStore(cfg.models_dir, compile=cfg.compile_models)
        self._storage: Any = None
        self.zips = ModelZips()
        self._splits: OrderedDict[tuple[str, str], Any] = OrderedDict()  # (study, data settings) -> validation split
        self._splits_lock = threading.Lock()
        self._charts: OrderedDict[tuple[Any, ...], dict[str, Any]] = OrderedDict()  # (study, record key) -> figures
        self._charts_lock = threading.Lock()
        self._ready = threading.Event()
        self._ready.set()

    def warm_up(self, modules: tuple[str, ...] = WARM_MODULES) -> threading.Thread:
        """Import ``modules`` in one background thread; :meth:`wait_ready` holds callbacks until it is done, so no
        two threads ever import them at once. The first page does not wait for it."""
        import importlib

        self._ready.clear()

        def run() -> None:
            try:
                for name in modules:
                    importlib.import_module(name)
            except Exception as exc:  # a missing optional library: the callback that needs it says so itself
                logger.warning("textclf: warming up imports stopped at %s", exc)
            finally:
                self._ready.set()

        thread = threading.Thread(target=run, name="textclf-warm-up", daemon=True)
        thread.start()
        return thread

    def wait_ready(self, timeout: float = 300.0) -> None:
        self._ready.wait(timeout)

    @property
    def storage(self) -> Any:
        """One opened storage for the app's lifetime: the live views poll it every few seconds."""
        if self._storage is None:
            from textclf.storage import open_storage

            self._storage = open_storage(self.cfg.storage_url)
        return self._storage

    def visible(self, message: str) -> str:
        """An error line as a visitor may see it: no server paths."""
        return scrub_paths(message, self.cfg.roots())

    def refused(self, where: str, exc: Exception) -> str:
        """The visitor's line for a refused input (as :meth:`visible`), and the server log's one line for it."""
        message = self.visible(str(exc))
        logger.warning("textclf: refused (%s): %s", where, message[:300])
        return message

    def _uploaded(self, path: str) -> str:
        """An uploaded file's path, once it is known to lie in the upload folder and within the size limit."""
        if self.cfg.uploads is not None:
            path = str(check_uploaded(path, self.cfg.uploads))
        size_mb = Path(path).stat().st_size / 1e6
        if size_mb > self.cfg.max_upload_mb:
            raise DataError(f"the upload is {size_mb:.1f} MB, the limit here is {self.cfg.max_upload_mb:g} MB; "
                            "upload a smaller sample")
        return path

    # ---------------------------------------------------------------- Data
    def resolve_data(self, preset: str | None, upload: str | None, hub_id: str | None) -> str:
        """The data source the user picked: an uploaded file, a hub id (as ``hub:<id>``, which nothing reads as a
        path), or a preset. Typed paths are never accepted: the web UI must not read files on the server."""
        if upload:
            return self._uploaded(upload)
        if hub_id and hub_id.strip():
            return HUB_PREFIX + check_hub_id(hub_id.strip())
        if preset in DATA_CHOICES:
            return preset
        raise DataError(f"pick a dataset: one of {', '.join(DATA_CHOICES)}, an uploaded file or a hub id")

    def describe_data(self, source: str) -> tuple[str, list[list[Any]], Any]:
        """Markdown summary, preview rows and a label-distribution chart of ``source`` (every name escaped)."""
        import plotly.graph_objects as go

        from textclf.data import hub_dataset_mb, load_data

        hub_id = source.removeprefix(HUB_PREFIX) if source.startswith(HUB_PREFIX) else None
        cap = self.cfg.max_hub_dataset_mb
        if cap is not None and hub_id is not None:
            size = hub_dataset_mb(hub_id)
            if size is not None and size > cap:
                raise DataError(f"dataset {hub_id!r} is {size:,.0f} MB on the hub, the limit here is {cap:,.0f} MB: "
                                "upload a sample of it as a file instead")
        data = load_data(source, max_train_samples=self.cfg.max_train_samples)
        d = data.describe()
        counts = [0] * data.num_labels
        for lab in data.train.labels:
            for i in (lab if isinstance(lab, list) else [lab]):
                counts[i] += 1
        name = hub_id or (Path(source).name if os.sep in source else source)
        lines = [f"**{md(name)}** — {'multi-label' if data.task == 'multi_label' else 'single-label'}, "
                 f"{data.num_labels} labels; text column “{md(d['text_column'])}”, "
                 f"label column “{md(d['label_column'])}”",
                 f"train {d['sizes']['train']} · validation {d['sizes']['validation']}"
                 f"{' (carved from train)' if d['validation_from_train'] else ''} · test {d['sizes']['test']}"]
        lines += [f"- {md(self.visible(n), limit=500)}" for n in data.notes]
        rows = [[t, ", ".join(data.label_names[i] for i in (lab if isinstance(lab, list) else [lab]))]
                for t, lab in zip(data.train.texts[:20], data.train.labels[:20], strict=False)]
        fig = go.Figure(go.Bar(x=[plot_text(n) for n in data.label_names], y=counts, marker_color="#4C78A8"))
        fig.update_layout(title={"text": "Label distribution (train)", "x": 0.01}, height=340, template="plotly_white",
                          margin={"l": 60, "r": 20, "t": 50, "b": 80}, xaxis_title="label",
                          yaxis_title="training rows" if data.task != "multi_label" else "training rows with it")
        return "\n".join(lines), rows, fig

    # ---------------------------------------------------------------- Study
    def backbone_table(self, names: list[str] | None = None) -> list[list[str]]:
        """Name, description and whether it loads here: available, downloadable from the hub (its size), or why
        not. The hub is asked about all of them at once, within ``hub.PROBE_S`` seconds."""
        from textclf.backbones import describe_availability, resolve_backbone

        names = names or self.cfg.backbones
        status = describe_availability(names)
        rows = []
        for n in names:
            word = status[n]
            rows.append([n, resolve_backbone(n).description if "unknown backbone" not in word else "",
                         self.visible(word)])
        return rows

    def _caps(self, trials: Any, timeout_min: Any, seeds: int, n_backbones: int) -> tuple[int, float | None]:
        """The trial count and time budget (seconds) a visitor asked for, checked against this app's limits."""
        trials = _whole(trials, "trials")
        if trials < 1 or trials > self.cfg.max_trials:
            raise ConfigError(f"trials must be between 1 and {self.cfg.max_trials} here, got {trials}")
        if seeds and trials + seeds * n_backbones > self.cfg.max_trials:
            raise ConfigError(f"{trials} trials plus {seeds} seed re-run(s) of each of {n_backbones} backbone(s) make "
                              f"{trials + seeds * n_backbones}, the limit here is {self.cfg.max_trials}; ask for fewer")
        minutes = None if timeout_min in (None, "") else _number(timeout_min, "the time budget")
        if minutes is not None and (not math.isfinite(minutes) or minutes < 0):
            raise ConfigError(f"the time budget must be a positive number of minutes (0 = none), got {timeout_min}")
        cap = self.cfg.max_timeout_min
        if cap is not None and (not minutes or minutes > cap):
            minutes = cap  # public mode: every study ends
        return trials, minutes * 60 if minutes else None

    def start_study(self, study: str, form: StudyForm, owner: str | None = None) -> str:
        """Check every setting of ``form`` here, where the visitor sees the answer, then start a worker process."""
        from textclf.backbones import check_available, resolve_backbone
        from textclf.config import SearchSpace, StudyConfig

        backbones = list(form.backbones or [])
        if not backbones:
            raise ConfigError("choose at least one backbone")
        unknown = [b for b in backbones if b not in self.cfg.backbones]
        if unknown:
            raise ConfigError(f"backbone {str(unknown[0])[:100]!r} is not offered here: pick from "
                              f"{', '.join(self.cfg.backbones)}")
        for name in backbones:
            check_available(resolve_backbone(name))
        self._check_room(study)
        seeds, jobs = _whole(form.seeds, "seeds"), _whole(form.jobs, "trials side by side")
        trials, timeout = self._caps(form.trials, form.timeout_min, seeds, len(backbones))
        epochs = _whole(form.epochs, "epochs") if form.epochs else None  # 0 or empty: searched
        cores = self.cfg.max_jobs or os.cpu_count() or 1
        if not 1 <= jobs <= cores:
            raise ConfigError(f"trials side by side must be between 1 and {cores} here, got {jobs}")
        space = SearchSpace(lr=(_number(form.lr[0], "encoder LR from"), _number(form.lr[1], "encoder LR to")),
                            head_lr_ratio=(_number(form.head_lr_ratio[0], "head/encoder ratio from"),
                                           _number(form.head_lr_ratio[1], "head/encoder ratio to")),
                            batch_sizes=tuple(_whole(b, "batch size") for b in form.batch_sizes) or None)
        cap, asked = self.cfg.max_train_samples, form.max_train_samples
        n_train = min(v for v in (asked, cap) if v) if (asked or cap) else None
        cfg = StudyConfig(study=study, data=form.data, backbones=backbones, trials=trials, timeout=timeout,
                          max_train_samples=n_train, epochs=epochs, pruner=form.pruner, space=space, seeds=seeds,
                          threshold_mode=form.threshold_mode, jobs=jobs,
                          class_weight=None if form.class_weight == "auto" else form.class_weight)
        self.studies.start(cfg, owner)
        budget = f", time budget {timeout / 60:g} min" if timeout else ""
        return f"Study **{md(study)}** started: {trials} trial(s) over {md(', '.join(backbones))}{budget}."

    def _check_room(self, study: str) -> None:
        """A new study must fit under the storage's study limit (public mode: each keeps models on disk)."""
        from textclf.config import check_study_name

        check_study_name(study)
        cap = self.cfg.max_studies
        if cap is not None:
            names = self.list_studies()
            if study not in names and len(names) >= cap:
                raise ConfigError(f"the storage holds {len(names)} studies, the limit here is {cap}: resume one of "
                                  "them (open it under 'Open a study in the storage'), or ask the operator to clear some")

    def resume_study(self, study: str | None, trials: int, timeout_min: float | None = None,
                     owner: str | None = None) -> str:
        """Add ``trials`` to an existing study with its stored data, backbones and search space, within this app's
        limits: a study set up with more training rows than they allow is not resumed here."""
        from textclf.config import StudyConfig
        from textclf.storage import load_study, setup_of

        if not study:
            raise ConfigError("open a study first (the list under 'Open a study in the storage')")
        attrs = setup_of(load_study(study, self.storage))
        if not attrs.get("data"):
            raise ConfigError(f"study {study!r} was not made by textclf (no data recorded); start a new study instead")
        trials, timeout = self._caps(trials, timeout_min, 0, len(attrs.get("backbones", [])))
        cap = self.cfg.max_train_samples
        rows = attrs.get("max_train_samples") or attrs.get("data_summary", {}).get("sizes", {}).get("train")
        if cap is not None and (rows is None or rows > cap):
            raise ConfigError(f"study {study!r} trains on {rows or 'all the'} rows, the limit here is {cap}; "
                              "start a new study instead (it samples within the limit)")
        self.studies.start(StudyConfig(study=study, data=attrs["data"], trials=trials, timeout=timeout), owner)
        return (f"Study **{md(study)}** resumed: {trials} more trial(s) over "
                f"{md(', '.join(attrs.get('backbones', [])))}.")

    def stop_study(self, study: str | None, owner: str | None = None) -> str:
        target = study or ""
        if self.studies.stop(target, owner=owner):
            return f"Stopped **{md(target)}**: finished trials are kept; the interrupted one is marked failed."
        return f"**{md(target or 'nothing')}** is not running here."

    def list_studies(self) -> list[str]:
        from textclf.storage import list_studies

        return list_studies(self.storage)

    def compare_studies(self, names: list[str] | None) -> str:
        """A Markdown table of the chosen studies' best results side by side: metric, best validation score and
        backbone, the chosen model's test score, the best baseline, trials."""
        from textclf.storage import load_study, read_study

        chosen = [n for n in (names or []) if n][:12]
        if not chosen:
            raise TextclfError("pick one or more studies to compare")
        lines = ["| study | metric | best validation | backbone | test (chosen model) | best baseline | trials |",
                 "| --- | --- | --- | --- | --- | --- | --- |"]
        for name in chosen:
            record = read_study(load_study(name, self.storage))
            best, test = record.best(), record.setup.get("test") or {}
            cells = [md(name), md(record.metric)]
            cells += ([f"{best.value:.4f}", md(best.backbone)] if best is not None and best.value is not None
                      else ["-", "-"])
            cells.append(f"{test['value']:.4f}" if isinstance(test.get("value"), float) else "-")
            cells.append(f"{md(record.baseline_model)} {record.baseline:.4f}" if record.baseline is not None else "-")
            cells.append(str(len(record.finished)))
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def delete_study(self, name: str | None, confirm: str | None, owner: str | None = None) -> str:
        """Delete a study from the storage, the model folders textclf kept for it, and its worker's log. Refused in
        public mode, while it runs, and unless ``confirm`` repeats its name. A folder holding anything textclf did
        not write is left where it is, and said so."""
        import optuna

        from textclf.export import is_model_folder
        from textclf.storage import load_study, read_study

        if self.cfg.public:
            raise ConfigError("deleting studies is switched off on a public app")
        if not name:
            raise ConfigError("pick the study to delete")
        if confirm != name:
            raise ConfigError(f"to delete study {name[:100]!r}, type its name in the confirmation box")
        worker = self.studies.worker(name)
        if worker is not None and worker.running:
            raise ConfigError(f"study {name[:100]!r} is running; stop it first")
        record = read_study(load_study(name, self.storage))
        models = record.models_dir()
        kept = [f for f in self.models.available().values() if f.parent.resolve() == models.resolve()]
        optuna.delete_study(study_name=name, storage=self.storage)
        left = []
        for folder in kept:
            if is_model_folder(folder):
                shutil.rmtree(folder)  # every file in it is one textclf wrote (its textclf.json lists them)
            else:
                left.append(folder.name)
        with contextlib.suppress(OSError):
            models.rmdir()  # only if nothing else is left in it
        for log in (self.cfg.studies_dir / "logs" / f"{name}.log", self.cfg.studies_dir / "logs" / f"{name}.config.json"):
            log.unlink(missing_ok=True)
        note = (f"; left in place, holding files textclf did not write: {', '.join(md(n) for n in left)}"
                if left else "")
        return f"Deleted study **{md(name)}** and its {len(kept) - len(left)} kept model(s){note}."

    def study_status(self, study: str | None) -> tuple[list[list[Any]], str]:
        """The live trial table and a progress line for ``study``; a worker that failed before its study existed
        says why."""
        from textclf.storage import load_study, read_study
        from textclf.summary import study_overview, study_warnings

        if not study:
            return [], "No study selected."
        worker = self.studies.worker(study)
        try:
            data = read_study(load_study(study, self.storage))
        except ConfigError:
            if worker is None:
                raise
            if worker.running:
                return [], f"**{md(study)}** — starting…" + _download_note(worker)
            return [], (f"**{md(study)}** — the study did not start (exit {worker.process.returncode}): "
                        f"{md(self.visible(worker.failure()), limit=400)}")
        rows = [trial_row(t, data.setup.get("epochs")) for t in data.trials]
        running = worker is not None and worker.running
        ended = " — running" + _download_note(worker) if running else (" — ended" if data.trials else "")
        line = "\n\n".join([f"**{md(study)}**{ended}", *study_overview(data, running=running, now=time.time())])
        if data.setup.get("metric_reason"):
            line += f"\n\nSelected on {md(data.metric)}: {md(data.setup['metric_reason'])}."
        for warning in study_warnings(data):
            line += f"\n\n**Warning:** {md(warning)}"
        current = next((t for t in data.trials if t.state == "RUNNING"), None)
        if current is not None:
            line += f"\n\nRunning trial {current.number} ({md(current.backbone)}): {(current.progress or 0):.0%}"
        if worker is not None and not running and worker.process.returncode not in (0, None):
            line += (f"\n\nWorker stopped (exit {worker.process.returncode}): "
                     f"{md(self.visible(worker.failure()), limit=400)}")
        return rows, line

    def trial_detail(self, study: str | None, number: Any) -> tuple[str, Any]:
        """One trial in full: every parameter, state, time, failure reason, metrics per class (Markdown), and its
        learning curve and confusion matrix (a figure)."""
        from textclf.charts import draw_trial, extract_trial
        from textclf.storage import load_study, read_study

        if not study:
            raise TextclfError("open a study first, then pick a trial in its table")
        n = _whole(number, "the trial number")
        data = read_study(load_study(study, self.storage))
        view = extract_trial(data, n)
        t = view.trial
        if t is None:
            raise TextclfError(f"study {study[:100]!r} has no trial {n}; pick a row of its table")
        lines = [f"**Trial {t.number}** — {md(t.backbone)}, {t.state.lower()}"
                 + ("" if t.value is None else f", {md(data.metric)} {t.value:.4f} on validation")
                 + ("" if t.duration_s is None else f", {t.duration_s:.1f} s")
                 + (" (the backbone's recipe)" if t.recipe else "") + (f", seed re-run of trial {t.seed_of}"
                                                                       if t.seed_of is not None else "")]
        for note in (t.fail_reason, t.stopped, t.collapse_note() or None, t.model_save_error):
            if note:
                lines.append(f"- {md(self.visible(note), limit=400)}")
        lines += ["", "| parameter | value |", "| --- | --- |"]
        lines += [f"| {md(k)} | {md(f'{v:.4g}' if isinstance(v, float) else v)} |" for k, v in t.params.items()]
        if t.max_length:
            lines.append(f"| tokens per text | {t.max_length} |")
        per_class = (t.report or {}).get("per_class") or {}
        if per_class:
            lines += ["", "| class | precision | recall | F1 | support |", "| --- | --- | --- | --- | --- |"]
            lines += [f"| {md(name)} | {v['precision']:.3f} | {v['recall']:.3f} | {v['f1']:.3f} | {v['support']} |"
                      for name, v in per_class.items()]
        return "\n".join(lines), draw_trial(view)

    # ---------------------------------------------------------------- Predict
    def predict(self, text: str, model: str | None) -> tuple[dict[str, float], str]:
        if not isinstance(text, str):
            raise DataError("expected a text to classify; type a sentence")
        check_text_length(text)
        name, predictor = self.models.named(model)
        start = time.perf_counter()
        pred = predictor.predict_one(text)  # concurrent requests share one forward pass
        ms = 1000 * (time.perf_counter() - start)
        labels = ", ".join(md(label) for label in pred.labels) or "(none above the threshold)"
        return pred.probabilities, f"{labels} · {ms:.1f} ms · model {md(name)}"

    def predict_file(self, upload: str, model: str | None) -> str:
        """Classify every text of an uploaded file; returns the path of a CSV with the results."""
        from textclf.data import read_texts

        if not upload:
            raise DataError("upload a .csv/.tsv/.json/.jsonl/.parquet file with a text column")
        texts = read_texts(self._uploaded(upload))
        if self.cfg.max_batch_rows is not None and len(texts) > self.cfg.max_batch_rows:
            raise DataError(f"the file has {len(texts):,} rows, the limit here is {self.cfg.max_batch_rows:,}; "
                            "split it into smaller files")
        for i, text in enumerate(texts):
            check_text_length(text, f"row {i + 1}")
        predictor = self.models.get(model)
        keep = [i for i, t in enumerate(texts) if t.strip()]
        probs = predictor.predict_proba([texts[i] for i in keep])
        # Label names can come from another visitor's data: no cell may start a spreadsheet formula.
        names = [csv_cell(n) for n in predictor.info.label_names]
        out = Path(tempfile.mkdtemp(prefix="textclf-")) / "predictions.csv"
        with open(out, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["text", "label", *names])
            by_row = dict(zip(keep, probs, strict=True))
            for i, text in enumerate(texts):
                p = by_row.get(i)
                writer.writerow([text, "" if p is None else names[int(p.argmax())],
                                 *([""] * len(names) if p is None else [f"{v:.4f}" for v in p])])
        return str(out)

    def download_model(self, name: str | None, fmt: str) -> str:
        """The path of a zip of the model ``name`` in ``fmt`` (see :data:`textclf.model_zip.FORMATS`)."""
        _, folder = self.models.folder(name)

        def validation(study_name: str | None) -> Any:
            from textclf.storage import load_study

            try:
                study = load_study(study_name or "", self.storage)
            except ConfigError as exc:
                raise TextclfError(f"{exc}; the ONNX export's parity gate needs the study's validation split: "
                                   "download the PyTorch format") from None
            return self._validation(study.study_name, study)

        return str(self.zips.get(folder, fmt, validation))

    # ---------------------------------------------------------------- Compare
    def compare_charts(self, name: str) -> tuple[Any, dict[str, Any], tuple[Any, ...]]:
        """The study's record, every Compare chart, and the key they were drawn from: drawn again only when the
        key changes (:func:`textclf.charts.record_key`), so the live view's polls of an idle study cost one read."""
        from textclf.charts import charts_for, record_key
        from textclf.storage import load_study, read_study

        record = read_study(load_study(name, self.storage))
        key = (name, record_key(record))
        with self._charts_lock:
            cached = self._charts.get(key)
            if cached is not None:
                self._charts.move_to_end(key)
                return record, cached, key
        figs = charts_for(record)
        with self._charts_lock:
            self._charts[key] = figs
            while len(self._charts) > 8:
                self._charts.popitem(last=False)
        return record, figs, key

    # ---------------------------------------------------------------- Review: errors and calibration
    def _validation(self, name: str, study: Any) -> Any:
        """The validation split of ``study`` (named ``name``), loaded once per data settings and kept for the next
        call (the error browser's filters, the parity gate of a download)."""
        from textclf.runner import validation_of
        from textclf.storage import setup_of

        key = (name, repr(sorted((k, str(v)) for k, v in setup_of(study).items() if k in SPLIT_KEYS)))
        with self._splits_lock:
            split = self._splits.get(key)
        if split is None:
            split = validation_of(study)
            with self._splits_lock:
                self._splits[key] = split
                while len(self._splits) > 4:
                    self._splits.popitem(last=False)
        return split

    def _review(self, name: str | None) -> tuple[Any, dict[str, Any], Any]:
        """The validation split of study ``name``, its kept best models (backbone -> KeptModel: only folders the
        model scan lists, so nothing is read from a path the storage alone names) and its record."""
        from textclf.review import kept_models
        from textclf.storage import load_study, model_folder, read_study

        if not name:
            raise TextclfError("open a study first (Study section)")
        study = load_study(name, self.storage)
        record = read_study(study)
        root = record.models_dir().resolve()
        listed = {folder.resolve() for folder in self.models.available().values()}
        folders = {b: model_folder(root, b) for b in record.best_per_backbone()}
        folders = {b: f for b, f in folders.items() if f.resolve() in listed}
        split = self._validation(name, study)
        num_labels = len(record.label_names) or (max(split.labels) + 1 if split.labels else 0)
        return split, kept_models(folders, split.texts, num_labels), record

    def calibration_view(self, name: str | None) -> tuple[Any, str]:
        """The reliability diagram of each backbone's best model and a table of temperature and ECE before/after."""
        from textclf.charts import Calibrations, colors, draw_reliability, extract_reliability
        from textclf.review import calibration_rows

        split, models, record = self._review(name)
        single = {b: m for b, m in models.items() if m.info.task != "multi_label"}
        if not single:
            why = ("multi-label models keep per-label sigmoid probabilities with thresholds chosen on validation; "
                   "they are not temperature-scaled" if models else "no kept model with stored validation answers yet")
            return draw_reliability(Calibrations("Reliability", {}, {}, message=why[0].upper() + why[1:] + ".")), ""
        fig = draw_reliability(extract_reliability({b: (m.probs, split.labels, m.temperature)
                                                    for b, m in single.items()}, colors(record)))
        lines = ["| best model of | temperature | validation ECE before | after |", "| --- | --- | --- | --- |"]
        lines += [f"| {md(r['backbone'])} | {r['temperature']:.3f} | {r['ece']:.4f} | {r['ece_scaled']:.4f} |"
                  for r in calibration_rows(single, split.labels)]
        lines.append("\nThe temperature is fitted on these validation rows; the study summary's test ECE is the "
                     "unbiased check. Predict, the REST endpoint, `predict` and exports all apply it.")
        return fig, "\n".join(lines)

    def error_choices(self, name: str | None) -> tuple[list[str], list[str]]:
        """The backbones whose best model the error browser can read, and the study's label names."""
        _, models, _ = self._review(name)
        single = [b for b, m in models.items() if m.info.task != "multi_label"]
        labels = next(iter(models.values())).info.label_names if models else []
        return single, list(labels)

    def error_view(self, name: str | None, backbone: str | None, kind: str = "confident_wrong",
                   gold: str | None = None, predicted: str | None = None, label: str | None = None,
                   query: str | None = None, limit: int = 50) -> list[list[Any]]:
        """Validation rows of ``backbone``'s best model: text, gold, prediction, confidence, margin (see
        :func:`textclf.analysis.error_rows`); ``gold`` and ``predicted`` together pick one confusion-matrix cell,
        one of them alone its row (a true label) or column (a predicted one)."""
        from textclf.review import errors

        split, models, _ = self._review(name)
        if not backbone or backbone not in models:
            raise TextclfError(f"pick one of the study's kept models ({', '.join(models) or 'none yet'})")
        if query is not None:
            check_text_length(query, "the search text")
        rows = errors(models[backbone], split.texts, split.labels, kind=kind, label=label or None,
                      cell=(gold, predicted) if gold or predicted else None, query=query or None, limit=limit)
        return [[r.index, r.text[:ERROR_TEXT_CHARS], r.gold, r.predicted, round(r.confidence, 4), round(r.margin, 4)]
                for r in rows]

    # ---------------------------------------------------------------- Attention
    def attention(self, text: str, models: list[str] | None, layer: int, head: int | None, max_length: int = 128
                  ) -> tuple[Any, str]:
        """The heatmap of the first model, and for every chosen model: what the classification token attends to,
        the rollout, and gradient × input saliency, side by side."""
        from textclf.attention import attention_view, heatmaps, rollout, saliency, special_positions, text_html

        if not isinstance(text, str) or not text.strip():
            raise DataError("expected a sentence to look at; type one")
        check_text_length(text)
        chosen = [m for m in (models or []) if m] or [self.models.best() or BEST]
        views, blocks = [], []
        for name in chosen[:4]:
            name, predictor = self.models.named(name, eager=True)
            info = predictor.info
            view = attention_view(predictor.model, predictor.tokenizer, text, info.label_names,
                                  multi_label=info.task == "multi_label", max_length=max_length)
            lay = min(max(int(layer), 0), view.n_layers - 1)
            hd = None if head is None or int(head) < 0 else min(int(head), view.n_heads - 1)
            views.append((name, view, lay, hd))
            clamped = (f"<div style='color:#b45309'>This model has {view.n_layers} layers and {view.n_heads} heads: "
                       f"showing layer {lay}{'' if hd is None else f', head {hd}'}.</div>"
                       if lay != int(layer) or (hd is not None and hd != int(head or 0)) else "")
            skip = special_positions(predictor.tokenizer, view.tokens)
            summary = view.summary_index
            att = view.attentions[lay].mean(0) if hd is None else view.attentions[lay, hd]
            target = info.label_names.index(view.label)
            sal = saliency(predictor.model, predictor.tokenizer, text, target, max_length=max_length)
            title = f"{name} → {view.label} ({view.probabilities[view.label]:.2f})"
            note = (f"<div style='color:#b45309'>Truncated: showing {len(view.tokens)} of {view.n_tokens} tokens."
                    "</div>") if view.truncated else ""
            pos = "last" if summary == len(view.tokens) - 1 else "first"
            blocks.append("<div class='textclf-model' style='flex:1; min-width:280px; padding:8px; "
                          "border:1px solid #ddd; border-radius:8px'>"
                          f"<div style='font-weight:700; margin-bottom:6px'>{html.escape(title)}</div>"
                          + note + clamped
                          + text_html(view.tokens, att[summary], title=f"classification token ({pos}) attends to, "
                                      f"layer {lay}", skip=skip)
                          + text_html(view.tokens, rollout(view.attentions)[summary], title="attention rollout",
                                      color="245,133,24", skip=skip)
                          + text_html(view.tokens, sal, title="gradient × input saliency", color="84,162,75", skip=skip)
                          + "</div>")
        return heatmaps(views), "<div style='display:flex; gap:12px; flex-wrap:wrap'>" + "".join(blocks) + "</div>"

    def attention_shape(self, models: list[str] | None) -> tuple[int, int]:
        """The layers and heads every chosen model has (the fewest of each), from their configs: the sliders'
        ranges."""
        import json

        from textclf.export import ModelInfo

        chosen = [m for m in (models or []) if m] or [self.models.best() or BEST]
        layers, heads = [], []
        for name in chosen[:4]:
            _, folder = self.models.folder(name)
            ModelInfo.load(folder)  # a folder textclf wrote
            cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
            layers.append(int(cfg.get("num_hidden_layers") or cfg.get("n_layer") or 12))
            heads.append(int(cfg.get("num_attention_heads") or cfg.get("n_head") or 12))
        return min(layers), min(heads)


def _backbone_name(meta: Path) -> str:
    """A kept model's backbone as the rest of the app spells it (``scratch:minilm``), where its folder's name
    (``scratch_minilm``, made file-safe) comes from it; otherwise the folder's name."""
    import json

    from textclf.storage import safe_name

    try:
        backbone = json.loads(meta.read_text(encoding="utf-8")).get("backbone")
    except (OSError, ValueError, AttributeError):
        backbone = None
    folder = meta.parent.name
    return backbone if isinstance(backbone, str) and safe_name(backbone, "backbone") == folder else folder


def trial_row(t: Any, epochs: int | None = None) -> list[Any]:
    """One row of the live trial table (see app.TRIAL_HEADERS); a parameter not sampled yet is blank, and epochs
    fixed for the whole study (``epochs``) are shown for every trial."""
    p = t.params

    def num(key: str, fmt: str) -> str:
        return format(p[key], fmt) if isinstance(p.get(key), (int, float)) else ""

    state = t.state.lower() + (f" ({(t.progress or 0):.0%})" if t.state == "RUNNING" else
                               " (time budget)" if t.stopped else "") + (" (collapsed)" if t.collapsed else "")
    return [t.number, t.backbone, num("lr", ".2e"), num("head_lr_ratio", ".1f"), p.get("batch_size", ""),
            p.get("epochs", epochs if epochs is not None else ""), num("weight_decay", ".3f"),
            num("warmup_fraction", ".2f"), state, "" if t.value is None else round(t.value, 4),
            "" if t.duration_s is None else round(t.duration_s, 1)]


def _number(value: Any, what: str) -> float:
    """A number from a form field, or a ConfigError saying which field is not one."""
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be a number, got {str(value)[:40]!r}") from None


def _whole(value: Any, what: str) -> int:
    """A count from a form field: a whole number, or a ConfigError saying which field is not."""
    number = _number(value, what)
    if not math.isfinite(number) or number != int(number):
        raise ConfigError(f"{what} must be a whole number, got {value}")
    return int(number)
