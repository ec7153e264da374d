"""Benchmark 5: a full study, 12 trials on the whole sst2 training split (6,920 sentences) with minilm and pruning
on (median pruner, four evaluations an epoch), reporting wall time and best validation accuracy.

    python bench/full_study.py [--trials 12] [--jobs 1]
"""

from __future__ import annotations

import argparse
import tempfile
import time

from _common import machine, shared_data


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--evals-per-epoch", type=int, default=4)
    parser.add_argument("--jobs", type=int, default=1, help="trials side by side (StudyConfig.jobs)")
    args = parser.parse_args()
    from textclf.study import SearchSpace, StudyConfig, run_study

    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        cfg = StudyConfig(study="full", data=shared_data("sst2"), backbones=["minilm"], trials=args.trials,
                          max_length=64, evals_per_epoch=args.evals_per_epoch, pruner="median",
                          space=SearchSpace(lr=(2e-5, 3e-4), epochs=(1, 3)),
                          storage=f"sqlite:///{tmp}/full.db", models_dir=f"{tmp}/models", jobs=args.jobs)
        start = time.perf_counter()
        summary = run_study(cfg, progress=False, log=lambda msg: print(" ", msg, flush=True))
        wall = time.perf_counter() - start
    states = [t["state"] for t in summary["trials"]]
    print(f"{len(states)} trials ({states.count('COMPLETE')} complete, {states.count('PRUNED')} pruned) in "
          f"{wall / 60:.1f} min with {args.jobs} job(s) (target <= 15 min); "
          f"best validation accuracy {summary['best']['value']:.4f}; "
          f"TF-IDF baseline {summary['baseline']:.4f}")


if __name__ == "__main__":
    main()
