"""What a study found, read from its records: the best trial, each backbone's best, the seed spread and whether it
supports the ranking, and where the kept models are."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textclf.errors import TextclfError
from textclf.export import META_FILE
from textclf.storage import StudyRecord, model_folder, read_study, redact


def seed_spread(record: StudyRecord) -> dict[str, dict[str, Any]]:
    """Per backbone: the validation values of its best configuration over every seed it ran with."""
    import numpy as np

    out: dict[str, dict[str, Any]] = {}
    for backbone, best in sorted(record.best_per_backbone().items()):
        values = [float(best.value)] + [float(t.value) for t in record.trials  # type: ignore[arg-type]
                                        if t.seed_of == best.number and t.state == "COMPLETE" and t.value is not None]
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


def study_warnings(record: StudyRecord) -> list[str]:
    """What a user must know before trusting the study's choice: a chosen model that does not beat the best
    traditional baseline or the majority class on the study's metric, or that has collapsed onto one answer; and
    settings that left too few optimizer steps."""
    setup, best = record.setup, record.best()
    out = list(setup.get("warnings", []))
    if best is None or best.value is None:
        return out
    chosen = f"the chosen model (trial {best.number}, {best.backbone}) scores {record.metric} {best.value:.4f}"
    base, majority = setup.get("baseline") or {}, setup.get("majority") or {}
    if base.get("value") is not None and best.value <= base["value"]:
        out.append(f"{chosen}, not above the {base.get('model', 'tfidf+logreg')} baseline ({base['value']:.4f}): "
                   "a traditional classifier does as well here; add trials or training rows, or use the baseline")
    if majority.get("value") is not None and best.value <= majority["value"]:
        out.append(f"{chosen}, not above always predicting the majority class ({majority['value']:.4f})")
    if best.collapsed:
        out.append(f"{chosen} but has {best.collapse_note()}")
    return out


def summarize(study: Any, storage_url: str | None = None) -> dict[str, Any]:
    """A JSON-able summary: best trial, best value per backbone, the baseline and every trial."""
    record = read_study(study)
    setup = record.setup
    spread = seed_spread(record)
    best = record.best()
    per_backbone = {b: float(t.value) for b, t in record.best_per_backbone().items()}  # type: ignore[arg-type]
    baseline, majority = setup.get("baseline"), setup.get("majority") or {}
    return {
        "study": record.name,
        "storage": redact(storage_url) if storage_url else None,
        "metric": setup.get("metric"),
        "split": "validation",
        "task": setup.get("task"),
        "data": setup.get("data"),
        "n_trials": sum(t.state in ("COMPLETE", "PRUNED") for t in record.trials),
        "n_failed": sum(t.state == "FAIL" for t in record.trials),
        "best": None if best is None else {
            "value": float(best.value), "backbone": best.backbone, "params": dict(best.params),  # type: ignore[arg-type]
            "trial": best.number, "metrics": best.metrics},
        "per_backbone": dict(sorted(per_backbone.items(), key=lambda kv: -kv[1])),
        "baseline": baseline["value"] if baseline else None,
        "baseline_model": baseline.get("model", "tfidf+logreg") if baseline else None,
        "baselines": baseline.get("baselines", {}) if baseline else {},
        "majority": majority.get("value"),
        "test": setup.get("test"),
        "baseline_test": baseline.get("test_value") if baseline else None,
        "majority_test": majority.get("test_value"),
        "metric_reason": setup.get("metric_reason"),
        "max_length": {b: t.max_length for b, t in record.best_per_backbone().items() if t.max_length},
        "truncation": setup.get("truncation"),
        "warnings": study_warnings(record),
        "seed_spread": spread,
        "ranking_supported": ranking_supported(spread),
        "trials": [{"number": t.number, "state": t.state, "value": t.value, "backbone": t.params.get("backbone"),
                    "params": dict(t.params), "train_time_s": t.train_time_s, "latency_ms": t.latency_ms,
                    "n_params": t.n_params, "fail_reason": t.fail_reason, "stopped": t.stopped, "seed_of": t.seed_of,
                    "collapsed": t.collapsed, "predictions": t.predictions or None}
                   for t in record.trials],
    }


def best_model_dir(study: Any, backbone: str | None = None) -> Path:
    """The folder of the kept best model of ``backbone`` (default: the study's best backbone)."""
    record = read_study(study)
    best, per_backbone = record.best(), record.best_per_backbone()
    if best is None:
        raise TextclfError(f"study {record.name!r} has no completed trial yet; run it first")
    backbone = backbone or best.backbone
    if backbone not in per_backbone:
        raise TextclfError(f"study {record.name!r} has no completed trial of backbone {backbone!r}; "
                           f"it has {', '.join(sorted(per_backbone, key=lambda b: -(per_backbone[b].value or 0)))}")
    folder = model_folder(record.models_dir(), backbone)
    if not (folder / META_FILE).is_file():
        raise TextclfError(f"the best {backbone!r} model of study {record.name!r} is not at {folder} "
                           "(models are kept on the machine that trained them); run export there")
    return folder


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def study_overview(record: StudyRecord, *, running: bool, now: float) -> list[str]:
    """The study at a glance, as Markdown lines (every name escaped): each backbone's best validation score (± its
    seed spread), the baselines, the trials by state, time spent and, while it runs, an estimate of time left; once
    it has ended, the chosen model's test score and calibration."""
    from textclf.analysis import remaining_s
    from textclf.safety import md

    metric, setup = md(record.metric), record.setup
    spread = seed_spread(record)
    best = record.best()
    scores = []
    for backbone, t in sorted(record.best_per_backbone().items(), key=lambda kv: -(kv[1].value or 0)):
        s = spread.get(backbone)
        extra = f" (mean {s['mean']:.4f} ± {s['std']:.4f} over {s['n']} seeds)" if s else ""
        chosen = " ← chosen" if best is not None and t.number == best.number else ""
        scores.append(f"**{md(backbone)}** {t.value:.4f}{extra}{chosen}")
    lines = [f"Best {metric} on validation: " + (" · ".join(scores) if scores else "no finished trial yet")]
    base = setup.get("baseline") or {}
    others = [f"{md(name)} {v['value']:.4f}" for name, v in (base.get("baselines") or {}).items()
              if isinstance(v, dict) and isinstance(v.get("value"), (int, float))]
    majority = (setup.get("majority") or {}).get("value")
    if others or majority is not None:
        lines.append("Baselines: " + " · ".join(others + ([f"majority class {majority:.4f}"] if majority is not None
                                                          else [])))
    states = {state: sum(t.state == state for t in record.trials) for state in ("COMPLETE", "PRUNED", "FAIL")}
    counts = f"Trials: {states['COMPLETE']} complete, {states['PRUNED']} pruned, {states['FAIL']} failed"
    run = (setup.get("runs") or [{}])[-1]
    this_run = [t for t in record.trials if t.started is not None and t.started >= run.get("started", 0) - 1]
    if running and run.get("started"):
        elapsed = now - run["started"]
        done = [t.duration_s for t in this_run if t.state in ("COMPLETE", "PRUNED") and t.duration_s]
        current = next((t for t in this_run if t.state == "RUNNING"), None)
        left_trials = max(0, int(run.get("trials") or 0) - sum(t.state != "RUNNING" for t in this_run))
        budget = run.get("timeout")
        eta = remaining_s(done, left_trials, None if budget is None else budget - elapsed,
                          now - current.started if current is not None and current.started else 0.0)
        counts += f"; running for {_minutes(elapsed)}" + ("" if eta is None else f", about {_minutes(eta)} left")
    else:
        spent = sum(t.duration_s or 0 for t in record.trials)
        counts += f"; {_minutes(spent)} of training in all" if spent else ""
    lines.append(counts)
    test = setup.get("test")
    if not running and test:
        line = (f"Test split (the chosen model, trial {test['trial']} {md(test['backbone'])}, scored once): "
                f"{md(test['metric'])} {test['value']:.4f}")
        if base.get("test_value") is not None:
            line += f"; {md(base.get('model', 'baseline'))} on test {base['test_value']:.4f}"
        cal = test.get("calibration")
        if cal:
            line += (f"; expected calibration error {cal['ece']:.4f} → {cal['ece_scaled']:.4f} with temperature "
                     f"{cal['temperature']:.2f}")
        lines.append(line)
    return lines
