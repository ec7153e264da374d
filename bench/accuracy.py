"""Real-data accuracy: a study per dataset under a fixed time budget (minilm, or ``--backbones``, compared in one
study), printing the best validation score, the
test score of the chosen model (scored once), the best traditional baseline on the same splits, and wall time.

    python bench/accuracy.py [--datasets sst2,trec6,emotion,banking77,goemotions] [--budget-min 20]

With ``--max-train-samples N`` (the low-data table: ``--max-train-samples 1000 --budget-min 5 --datasets
sst2,emotion,banking77,ag_news,trec6``) the studies run on a stratified sample of N training rows with textclf's
defaults alone (no per-dataset levers), and the table reports the chosen model's test accuracy, macro-F1 and
weighted F1 beside published figures at 1,000 training rows (weighted F1, MinishLab model2vec's results table;
a fixed-recipe protocol on other splits than ours). ``--backbones minilm,mpnet,scratch:minilm`` runs one study per
backbone under the same budget, with the mean training time of a trial: what a bigger model buys on this machine.

Data: ../shared/data (sst2: Socher et al. 2013 / GLUE; trec6: Li & Roth 2002; emotion: Saravia et al. 2018;
banking77: Casanueva et al. 2020; goemotions: Demszky et al. 2020).
"""

from __future__ import annotations

import argparse
import tempfile
import time

from _common import machine, shared_data

TARGETS = {"sst2": ("validation", 0.90), "trec6": ("test", 0.96), "emotion": ("test", 0.92),
           "banking77": ("test", 0.90), "goemotions": ("test", 0.46)}

# The levers chosen per dataset (everything else is textclf's default). Short texts get a shorter max length (less
# padding, faster steps); 77 intents need more epochs and a faster head; the 28 rare-skewed GoEmotions labels get a
# loss weighted towards rare labels and one decision threshold per label, both chosen on validation only. The
# single-label sets are selected on accuracy, their targets' metric (textclf's default for skewed labels is macro-F1).
LEVERS: dict[str, dict] = {
    "sst2": {"metric": "accuracy", "max_length": 64, "evals_per_epoch": 2,
             "space": {"lr": (3e-5, 2e-4), "head_lr_ratio": (1.0, 30.0), "epochs": (2, 4)}},
    "trec6": {"metric": "accuracy", "max_length": 128, "evals_per_epoch": 2, "space": {"lr": (3e-5, 3e-4), "epochs": (2, 5)}},
    "emotion": {"metric": "accuracy", "max_length": 128, "evals_per_epoch": 2, "space": {"lr": (3e-5, 3e-4), "epochs": (2, 5)}},
    "banking77": {"metric": "accuracy", "max_length": 64, "evals_per_epoch": 1,
                  "space": {"lr": (5e-5, 5e-4), "head_lr_ratio": (3.0, 30.0), "epochs": (5, 10)}},
    "goemotions": {"max_length": 64, "evals_per_epoch": 2, "threshold_mode": "per_class", "class_weight": "balanced",
                   "space": {"lr": (5e-5, 3e-4), "epochs": (2, 4)}},
}


# Weighted F1 at 1,000 training rows: MiniLM fine-tuned, SetFit with MiniLM, TF-IDF (model2vec's results table).
PUBLISHED_1K = {"sst2": (82.3, 82.8, 72.2), "emotion": (81.2, 60.7, 61.9), "banking77": (48.7, 56.4, 69.6),
                "ag_news": (88.0, 87.7, 82.9), "trec6": (73.6, 57.8, 67.7)}


def _ece(test: dict | None) -> str:
    """The chosen model's test ECE before and after its temperature (single-label), or '-'."""
    cal = (test or {}).get("calibration")
    return f"{cal['ece']:.4f} / {cal['ece_scaled']:.4f} (T={cal['temperature']:.2f})" if cal else "-"


def low_data(names: list[str], rows: int, budget_min: float, trials: int, backbones: list[str]) -> None:
    """Defaults only, on ``rows`` training rows, one study per backbone under the same budget: test accuracy,
    macro-F1 and weighted F1 of the chosen model, and the mean training time of a finished trial."""
    from textclf.study import StudyConfig, run_study

    table = []
    for name in names:
        for backbone in backbones:
            with tempfile.TemporaryDirectory() as tmp:
                cfg = StudyConfig(study=name, data=shared_data(name), backbones=[backbone], trials=trials,
                                  timeout=budget_min * 60, max_train_samples=rows, storage=f"sqlite:///{tmp}/a.db",
                                  models_dir=f"{tmp}/models")
                start = time.perf_counter()
                s = run_study(cfg, progress=False, log=lambda msg, n=f"{name}/{backbone}": print(f"  {n}: {msg}", flush=True))
                wall = time.perf_counter() - start
            test = (s["test"] or {}).get("metrics", {})
            times = [t["train_time_s"] for t in s["trials"] if t["state"] == "COMPLETE" and t["train_time_s"]]
            per_trial = sum(times) / len(times) if times else float("nan")
            table.append((name, backbone, s["metric"], s["best"]["value"], test, s["baseline_model"],
                          s["baseline_test"], s["warnings"], wall / 60, len(s["trials"]), per_trial,
                          _ece(s["test"])))
    print(f"\n| dataset ({rows} rows) | backbone | selected on | validation | test accuracy | test macro-F1 | "
          "test weighted F1 | best baseline, test | published weighted F1: MiniLM / SetFit / TF-IDF | "
          "minutes, trials | s per trial | test ECE before / after scaling |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, backbone, metric, val, test, base, btest, warnings, minutes, n, per_trial, ece in table:
        ref = " / ".join(f"{v:.1f}" for v in PUBLISHED_1K.get(name, ())) or "-"
        flag = " (warned)" if warnings else ""
        print(f"| {name} | {backbone} | {metric} | {val:.4f} | {test.get('accuracy', float('nan')):.4f} | "
              f"{test.get('macro_f1', float('nan')):.4f} | {test.get('weighted_f1', float('nan')):.4f} | "
              f"{base} {btest if btest is None else f'{btest:.4f}'}{flag} | {ref} | {minutes:.1f}, {n} | "
              f"{per_trial:.0f} | {ece} |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--datasets", default=",".join(TARGETS))
    parser.add_argument("--budget-min", type=float, default=20.0, help="time budget per dataset (minutes)")
    parser.add_argument("--trials", type=int, default=50, help="upper bound; the budget usually ends the study first")
    parser.add_argument("--max-train-samples", type=int, default=None,
                        help="the low-data table: N training rows, textclf's defaults alone")
    parser.add_argument("--backbones", default="minilm",
                        help="the backbones, e.g. minilm,mpnet,scratch:minilm (mpnet: python -m textclf fetch "
                             "mpnet); full data: compared in one study, low-data table: one study per backbone")
    args = parser.parse_args()
    from textclf.study import SearchSpace, StudyConfig, run_study

    print(f"machine: {machine()}")
    if args.max_train_samples:
        low_data(args.datasets.split(","), args.max_train_samples, args.budget_min, args.trials,
                 args.backbones.split(","))
        return
    rows = []
    for name in args.datasets.split(","):
        path = shared_data(name)
        with tempfile.TemporaryDirectory() as tmp:
            levers = dict(LEVERS.get(name, {"space": {}}))
            space = SearchSpace(**levers.pop("space"))
            print(f"{name}: levers {levers}, search space {space}", flush=True)
            cfg = StudyConfig(study=name, data=path, backbones=args.backbones.split(","), trials=args.trials,
                              timeout=args.budget_min * 60, space=space, storage=f"sqlite:///{tmp}/a.db",
                              models_dir=f"{tmp}/models", **levers)
            start = time.perf_counter()
            s = run_study(cfg, progress=False, log=lambda msg, n=name: print(f"  {n}: {msg}", flush=True))
            wall = time.perf_counter() - start
        split, target = TARGETS.get(name, ("test", None))
        score = s["best"]["value"] if split == "validation" else (s["test"] or {}).get("value")
        done = [t for t in s["trials"] if t["state"] == "COMPLETE" and t["train_time_s"]]
        per_trial = sum(t["train_time_s"] for t in done) / len(done) if done else float("nan")
        rows.append((name, s["best"]["backbone"], s["metric"], s["best"]["value"],
                     (s["test"] or {}).get("value"), s["baseline"], s["baseline_test"], wall / 60, len(s["trials"]),
                     per_trial, split, target, score, _ece(s["test"])))
    print("\n| dataset | chosen backbone | metric | best validation | test (chosen model, once) | baseline val / test | "
          "minutes, trials | s per trial | test ECE before / after scaling | target |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, backbone, metric, val, test, bval, btest, minutes, n, per_trial, split, target, score, ece in rows:
        hit = "" if target is None or score is None else (" ✓" if score >= target else " ✗")
        print(f"| {name} | {backbone} | {metric} | {val:.4f} | {test if test is None else f'{test:.4f}'} | {bval:.4f} / "
              f"{btest if btest is None else f'{btest:.4f}'} | {minutes:.1f}, {n} | {per_trial:.0f} | {ece} | "
              f"{split} ≥ {target}{hit} |")


if __name__ == "__main__":
    main()
