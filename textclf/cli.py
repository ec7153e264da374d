"""``python -m textclf``: run / show / export / predict.

Bad input ends with a non-zero exit and one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

from textclf.errors import INTERRUPTED, TextclfError
from textclf.metrics import THRESHOLD_MODES
from textclf.train import CLASS_WEIGHTS

EXIT_USAGE = 2


def _csv_list(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def build_parser() -> argparse.ArgumentParser:
    # "textclf" when run as the console script `pip install .` makes, "python -m textclf" from a checkout.
    prog = "textclf" if os.path.basename(sys.argv[0] or "") == "textclf" else "python -m textclf"
    parser = argparse.ArgumentParser(prog=prog, description="Fine-tune and compare transformer text "
                                     "classifiers with Optuna studies.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="create or resume a study and add trials")
    run.add_argument("--study", required=True, help="study name (letters, digits, _ - .)")
    run.add_argument("--data", default=None,
                     help="file, folder, preset (demo, sst2, ...) or hub dataset id (required unless studies/STUDY.toml sets it)")
    run.add_argument("--backbones", type=_csv_list, default=None, help="comma-separated, e.g. minilm,scratch:minilm")
    run.add_argument("--trials", type=int, default=None, help="trials to add (default 10)")
    run.add_argument("--timeout", type=float, default=None,
                     help="time budget in seconds, setup included: no trial starts after it, and a trial still running "
                          "stops there with an evaluation of where it stands (seed re-runs come on top)")
    run.add_argument("--storage", default=None, help="Optuna storage URL (default $TEXTCLF_STORAGE or studies/textclf.db)")
    run.add_argument("--max-train-samples", type=int, default=None, help="stratified subsample of train")
    run.add_argument("--epochs", type=int, default=None, help="fix the number of epochs (default: searched)")
    run.add_argument("--metric", default=None, choices=["accuracy", "macro_f1", "micro_f1"])
    run.add_argument("--seed", type=int, default=None, help="default 42")
    run.add_argument("--pruner", default=None, choices=["median", "sha", "hyperband", "none"],
                     help="default median (a resumed study keeps its own)")
    run.add_argument("--lr-range", type=float, nargs=2, metavar=("LOW", "HIGH"), default=None)
    run.add_argument("--ratio-range", type=float, nargs=2, metavar=("LOW", "HIGH"), default=None,
                     help="head/encoder learning-rate ratio range")
    run.add_argument("--batch-sizes", type=lambda v: [int(x) for x in _csv_list(v)], default=None)
    run.add_argument("--max-length", type=int, default=None, help="tokens per text (default 128)")
    run.add_argument("--evals-per-epoch", type=int, default=None,
                     help="evaluations (and pruning chances) per epoch (default: 4 a trial: 4 an epoch for 1 epoch, 2 for 2-3)")
    run.add_argument("--pruning-eval-rows", type=int, default=None, metavar="N",
                     help="mid-epoch evaluations, which only feed the pruner, score a fixed sample of N validation rows "
                          "(default 512; 0 = all); epoch-end ones, which choose the model, always score all")
    run.add_argument("--no-progressive-pruning", dest="progressive_pruning", action="store_false", default=None,
                     help="score the first epoch's mid-epoch evaluations on the validation sample too, rather than "
                          "on the training rows since the last one as predicted before training on them (free)")
    run.add_argument("--dropout", type=float, default=None, help="dropout probability (default: the backbone's)")
    run.add_argument("--early-stopping", dest="early_stopping_patience", type=int, default=None, metavar="EVALS",
                     help="stop a trial after this many evaluations without improvement")
    run.add_argument("--jobs", type=int, default=None, metavar="N",
                     help="run N trials side by side, each in its own process, sharing the CPU's threads (default 1: "
                          "one at a time, repeatable run to run; on 2 cores, 2 ran benchmark 5's 12 trials in 6.1 min, not 7.5)")
    run.add_argument("--seeds", type=int, default=None, metavar="K",
                     help="re-run each backbone's best configuration with K more seeds: mean ± spread per backbone")
    run.add_argument("--thresholds", dest="threshold_mode", default=None, choices=list(THRESHOLD_MODES),
                     help="multi-label decision thresholds chosen on validation: one global, or one per class")
    run.add_argument("--class-weight", default=None, choices=list(CLASS_WEIGHTS),
                     help="balanced: weight the loss by inverse class frequency (imbalanced data)")
    run.add_argument("--text-column", default=None)
    run.add_argument("--label-column", default=None)
    run.add_argument("--task", default=None, choices=["single_label", "multi_label"])
    run.add_argument("--json", action="store_true", help="print the summary as one JSON line at the end of stdout")

    show = sub.add_parser("show", help="summarise a study")
    show.add_argument("--study", required=True)
    show.add_argument("--storage", default=None)
    show.add_argument("--json", action="store_true")

    export = sub.add_parser("export", help="write a study's best model as a save_pretrained folder")
    export.add_argument("--study", required=True)
    export.add_argument("--storage", default=None)
    export.add_argument("--backbone", default=None, help="default: the study's best backbone")
    export.add_argument("--out", required=True, help="a new folder (or an empty one)")
    export.add_argument("--force", action="store_true",
                        help="replace a model folder textclf exported there before (never a folder of other files)")

    predict = sub.add_parser("predict", help="classify texts with an exported model")
    predict.add_argument("--model", required=True)
    predict.add_argument("--json", action="store_true")
    predict.add_argument("texts", nargs="+", metavar="TEXT")
    return parser


def _print_summary(summary: dict[str, Any]) -> None:
    metric = summary["metric"]
    print(f"study {summary['study']} ({summary['task']}, {metric} on the validation split): "
          f"{summary['n_trials']} finished trial(s), {summary['n_failed']} failed")
    if summary["baseline"] is not None:
        print(f"  {'tfidf+logreg baseline':<28} {summary['baseline']:.4f}")
    for backbone, value in summary["per_backbone"].items():
        print(f"  {backbone:<28} {value:.4f}")
    for backbone, s in summary.get("seed_spread", {}).items():
        print(f"  {backbone:<28} {s['mean']:.4f} ± {s['std']:.4f} over {s['n']} seeds (trial {s['trial']}'s configuration)")
    if summary.get("ranking_supported") is False:
        print("  note: the top two backbones' mean ± std overlap: the spread does not support their ranking")
    test = summary.get("test")
    if test:
        base = summary.get("baseline_test")
        print(f"test split (the chosen model, trial {test['trial']} {test['backbone']}, scored once): "
              f"{metric}={test['value']:.4f}" + (f"; tfidf+logreg on test {base:.4f}" if base is not None else ""))
    best = summary["best"]
    if best:
        params = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in best["params"].items())
        print(f"best: trial {best['trial']} {best['backbone']} {metric}={best['value']:.4f} ({params})")


# Settings read straight from the merged options below: their defaults are StudyConfig's own.
RUN_DEFAULTED = ("trials", "seed", "max_length", "evals_per_epoch", "pruning_eval_rows", "progressive_pruning")


def _cmd_run(args: argparse.Namespace) -> dict[str, Any]:
    from dataclasses import fields

    from textclf.errors import ConfigError
    from textclf.study import SearchSpace, StudyConfig, load_preset, run_study

    preset = load_preset(args.study)
    given = {k: v for k, v in vars(args).items() if v is not None}
    defaults = {f.name: f.default for f in fields(StudyConfig) if f.name in RUN_DEFAULTED}
    opts = defaults | preset | given  # flags override the study's preset file, which overrides defaults
    if not opts.get("data"):
        raise ConfigError(f"--data is required: no studies/{args.study}.toml preset sets it; e.g. --data demo")
    if isinstance(opts.get("backbones"), str):
        opts["backbones"] = _csv_list(opts["backbones"])
    space_kwargs: dict[str, Any] = {}
    for opt, field in (("lr_range", "lr"), ("ratio_range", "head_lr_ratio"), ("batch_sizes", "batch_sizes")):
        if opts.get(opt) is not None:  # an empty list is the user's, and SearchSpace refuses it
            space_kwargs[field] = tuple(opts[opt])
    cfg = StudyConfig(study=args.study, data=opts["data"], backbones=opts.get("backbones"), trials=opts["trials"],
                      timeout=opts.get("timeout"), storage=opts.get("storage"),
                      max_train_samples=opts.get("max_train_samples"), epochs=opts.get("epochs"), metric=opts.get("metric"),
                      seed=opts["seed"], pruner=opts.get("pruner"), space=SearchSpace(**space_kwargs) if space_kwargs else None,
                      max_length=opts["max_length"], evals_per_epoch=opts["evals_per_epoch"],
                      pruning_eval_rows=opts["pruning_eval_rows"] or None, progressive_pruning=opts["progressive_pruning"],
                      text_column=opts.get("text_column"), label_column=opts.get("label_column"), task=opts.get("task"),
                      dropout=opts.get("dropout"), early_stopping_patience=opts.get("early_stopping_patience"),
                      seeds=opts.get("seeds") or 0, threshold_mode=opts.get("threshold_mode"),
                      class_weight=opts.get("class_weight"), jobs=opts.get("jobs", 1))
    progress = not args.json and sys.stderr.isatty()
    if threading.current_thread() is not threading.main_thread():  # signal handlers live in the main thread only
        return run_study(cfg, progress=progress)
    interrupt = _Interrupt()
    previous = signal.signal(signal.SIGINT, interrupt.handle)
    try:
        return run_study(cfg, progress=progress, interrupted=interrupt.requested)
    finally:
        signal.signal(signal.SIGINT, previous)


class _Interrupt:
    """Ctrl-C (and the dashboard's Stop, which sends SIGINT) during a study: KeyboardInterrupt at once, as Python's
    own handler does, and remembered, so run_study raises it again at the next training step if it was lost (Python
    drops an exception raised inside a garbage-collection callback; measured: a Stop landed in one of SQLAlchemy's
    and the study ran on to its end)."""

    def __init__(self) -> None:
        self._requested = False

    def handle(self, signum: int, frame: Any) -> None:
        self._requested = True
        raise KeyboardInterrupt

    def requested(self) -> bool:
        return self._requested


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        import datasets

        datasets.disable_progress_bars()  # our own progress lines go to stderr; datasets' bars are noise here
        if args.command == "run":
            summary = _cmd_run(args)
            _print_summary(summary) if not args.json else None
            if args.json:
                print(json.dumps({k: v for k, v in summary.items() if k != "trials"} | {"trials": summary["trials"]}))
        elif args.command == "show":
            from textclf.study import load_study, resolve_storage, summarize

            summary = summarize(load_study(args.study, args.storage), resolve_storage(args.storage))
            print(json.dumps(summary)) if args.json else _print_summary(summary)
        elif args.command == "export":
            from textclf.export import copy_model
            from textclf.study import best_model_dir, load_study

            out = copy_model(best_model_dir(load_study(args.study, args.storage), args.backbone), args.out,
                             force=args.force)
            print(f"exported to {out}")
        elif args.command == "predict":
            from textclf.predict import Predictor

            preds = Predictor.from_dir(args.model).predict(list(args.texts))
            if args.json:
                print(json.dumps([p.to_dict() for p in preds]))
            else:
                for p in preds:
                    top = ", ".join(f"{k} {v:.3f}" for k, v in list(p.probabilities.items())[:3])
                    print(f"{', '.join(p.labels) or '(no label)'}\t[{top}]\t{p.text}")
    except TextclfError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        return 130
    return 0
