"""Trials side by side on one machine: ``StudyConfig.jobs`` workers, each its own process, share one study.

Why processes: eager training on a small CPU spends most of a step outside the matmuls (Python, the autograd
engine, small element-wise ops), where a second thread has nothing to do. Measured on 2 cores (MiniLM, 2,000 sst2
sentences, one epoch): one training on 2 threads 17.1-20.2 s; two trainings side by side on 1 thread each 25.0-30.6 s
both, so two trials take about 0.7x the time they take one after the other. Threads in one process would share one
interpreter lock and torch's global random generator (seeded trials would stop repeating); processes share neither.

The process that runs the study is worker 1; ``jobs - 1`` more are spawned (fresh interpreters: a fork would inherit
OpenMP's thread pool and the storage's open connections). Each takes an equal share of the trials from the same
storage, so the study's pruner and TPE (with constant liar) see every worker's trials. Each worker uses
``threads // workers still running`` threads, re-checked every training step, so the last one left gets them all.

Trials side by side are not repeatable run to run: which configuration TPE proposes depends on which trials have
finished when it is asked. ``jobs=1`` (the default) is.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
import time
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from textclf.backbones import SCRATCH_PREFIX, Backbone, register_backbone, registered
from textclf.config import StudyConfig
from textclf.errors import ConfigError
from textclf.runner import TrialRunner, load_study_data
from textclf.search import attach_search
from textclf.storage import open_storage


@dataclass
class _FixedPath:
    """A backbone's ``local_path`` as a value a spawned process can unpickle (the registry's are closures)."""

    path: Path | None

    def __call__(self) -> Path | None:
        return self.path


@dataclass
class WorkerJob:
    """What a spawned worker needs to join the study and run its share of the trials."""

    index: int
    trials: int
    cfg: StudyConfig  # with the study's stored settings adopted
    storage_url: str
    backbones: list[str]
    registry: list[Backbone]  # the backbones as resolved here: ones registered in this process exist there too
    metric: str
    models_dir: str
    chance: float | None
    deadline: float | None  # time.monotonic() is system-wide on one machine
    cores: int
    active: Any  # multiprocessing.Value: workers still running
    done: Any  # multiprocessing.Value: trials finished by all workers of this run


def _registered(names: list[str]) -> list[Backbone]:
    """The registry entries ``names`` use (folders and hub ids resolve anywhere), as values a spawned process can
    unpickle: the workers then know backbones registered in this process only."""
    out = {}
    for name in names:
        base = name.removeprefix(SCRATCH_PREFIX)
        spec = registered(base)
        if spec is not None:
            out[base] = replace(spec, local_path=_FixedPath(spec.local_path() if spec.local_path else None))
    return list(out.values())


def _bump(counter: Any) -> int:
    with counter.get_lock():
        counter.value += 1
        return int(counter.value)


def _leave(active: Any) -> None:
    with active.get_lock():
        active.value -= 1


def check_shareable(storage_url: str, jobs: int) -> None:
    """Workers in other processes must reach the same study: an in-memory database is one process's alone."""
    if jobs > 1 and storage_url.startswith("sqlite://") and (storage_url == "sqlite://" or ":memory:" in storage_url):
        raise ConfigError(f"jobs={jobs} needs a storage the workers can share, got the in-memory {storage_url!r}; "
                          "use a SQLite file (the default) or PostgreSQL, or jobs=1")


def optimize_side_by_side(study: Any, runner: TrialRunner, storage_url: str, chance: float | None) -> None:
    """Run ``runner.cfg.trials`` trials of ``study`` in ``runner.cfg.jobs`` processes, this one included; return
    when all have ended. An interrupt (Ctrl-C, the dashboard's Stop) stops them all; finished trials are kept."""
    import torch

    cfg = runner.cfg  # run_study has checked that the storage is one the workers can share
    jobs = min(cfg.jobs, cfg.trials)
    shares = [cfg.trials // jobs + (i < cfg.trials % jobs) for i in range(jobs)]
    ctx = multiprocessing.get_context("spawn")
    cores = torch.get_num_threads()
    active, done = ctx.Value("i", jobs), ctx.Value("i", 0)
    registry = _registered(runner.backbones)
    procs = [ctx.Process(target=_work, name=f"textclf-worker-{i}", args=(WorkerJob(
        i, share, cfg, storage_url, runner.backbones, registry, runner.metric, str(runner.models_dir), chance,
        runner.deadline, cores, active, done),)) for i, share in enumerate(shares[1:], start=2)]
    runner.log(f"running trials side by side: {jobs} workers sharing {cores} threads ({', '.join(map(str, shares))} "
               "trials each)")
    runner.share, runner.worker = (cores, active), 1
    try:
        with _main_script_hidden():
            for proc in procs:
                proc.start()
        try:
            runner.run_trials(study, shares[0], lambda: _bump(done))
        finally:
            _leave(active)  # the workers still running take this process's threads
        while alive := [proc for proc in procs if proc.is_alive()]:
            if runner.interrupted is not None and runner.interrupted():
                raise KeyboardInterrupt
            alive[0].join(0.2)
    finally:
        _stop(procs)
        runner.share = None
        torch.set_num_threads(cores)
    for proc in procs:
        if proc.exitcode not in (0, None):
            runner.log(f"worker {proc.name.rsplit('-', 1)[1]} ended with exit code {proc.exitcode}: its trials "
                       "that had not started were not run")


@contextlib.contextmanager
def _main_script_hidden() -> Iterator[None]:
    """Workers need textclf alone. Shown the caller's main script, spawn would run it again in each of them: slow,
    and a script without an ``if __name__ == "__main__"`` guard would start workers of its own and fail."""
    main = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        if main is not None:
            sys.modules["__main__"] = main


def _stop(procs: list[Any], grace_s: float = 30.0) -> None:
    """Interrupt workers still running (each fails its current trial, as Ctrl-C does), then wait for them."""
    for proc in procs:
        if proc.is_alive() and proc.pid is not None:
            os.kill(proc.pid, signal.SIGINT)
    deadline = time.monotonic() + grace_s
    for proc in procs:
        if proc.pid is not None:
            proc.join(max(deadline - time.monotonic(), 0.1))
        if proc.is_alive():
            proc.terminate()
            proc.join(5)


def _work(job: WorkerJob) -> None:
    """A spawned worker's life: join the study, run its trials, leave. Its lines go to stderr."""
    interrupted = [False]

    def on_sigint(signum: int, frame: Any) -> None:
        if not interrupted[0]:  # once: a second signal (Ctrl-C reaches the group, then the parent's stop) waits
            interrupted[0] = True
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_sigint)

    def log(msg: str) -> None:
        print(f"worker {job.index}: {msg}", file=sys.stderr, flush=True)

    try:
        _run_share(job, log, lambda: interrupted[0])
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # reported here, where it happened; the process that started it sees the exit code
        log(f"stopped: {type(exc).__name__}: {exc}")
        sys.exit(1)
    finally:
        _leave(job.active)


def _run_share(job: WorkerJob, log: Callable[[str], None], interrupted: Callable[[], bool]) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # as run_study: our own lines, no per-trial tracebacks
    for backbone in job.registry:
        register_backbone(backbone, overwrite=True)
    study = optuna.load_study(study_name=job.cfg.study, storage=open_storage(job.storage_url))
    attach_search(study, job.cfg, len(job.backbones), job.chance, salt=os.getpid())
    runner = TrialRunner(job.cfg, load_study_data(job.cfg), job.backbones, job.metric, Path(job.models_dir),
                     progress=False, log=log, deadline=job.deadline, interrupted=interrupted)
    runner.share, runner.worker = (job.cores, job.active), job.index
    runner.share_threads()  # before the first model is loaded and copied, not only once its training starts
    runner.run_trials(study, job.trials, lambda: _bump(job.done))
