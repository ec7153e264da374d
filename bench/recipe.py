"""The evidence for the recipe that scales with the data (textclf.search.space_for / recipe_params): the recipe trial
as it was (batch 32, 3 epochs whatever the data) against the scaled one, on small training sets of real data.

    python bench/recipe.py [--datasets sst2,emotion,banking77] [--rows 500,1000,5000]

For each dataset and size: a stratified sample of the training split (seeded), minilm at its recipe's learning rate
and head ratio, validation accuracy and macro-F1 of each recipe, its optimizer steps and time, and the best TF-IDF
baseline on the same rows for reference.
"""

from __future__ import annotations

import argparse
import time

from _common import machine, shared_data


def run(data: object, batch: int, epochs: int, class_weight: str) -> dict:
    from textclf.backbones import head_prefixes, load_model, load_tokenizer, resolve_backbone
    from textclf.runner import needed_length
    from textclf.train import TrainConfig, encode, train

    spec = resolve_backbone("minilm")
    tok = load_tokenizer(spec)
    n = needed_length(tok, data.train.texts, 42)
    model = load_model(spec, num_labels=data.num_labels, multi_label=False, pad_token_id=tok.pad_token_id, seed=42)
    cfg = TrainConfig(lr=spec.lr, head_lr_ratio=10.0, batch_size=batch, epochs=epochs, max_length=n,
                      metric="macro_f1", class_weight=class_weight, evals_per_epoch=1)
    start = time.perf_counter()
    result = train(model, tok, encode(tok, data.train.texts, data.train.labels, n),
                   encode(tok, data.validation.texts, data.validation.labels, n), cfg, task=data.task,
                   head_prefixes=head_prefixes(model, spec))
    return {"accuracy": result.metrics["accuracy"], "macro_f1": result.metrics["macro_f1"], "steps": result.steps,
            "seconds": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--datasets", default="sst2,emotion,banking77")
    parser.add_argument("--rows", default="500,1000,5000")
    args = parser.parse_args()
    from textclf.baseline import traditional_baselines
    from textclf.config import StudyConfig
    from textclf.data import load_data
    from textclf.metrics import label_skew
    from textclf.search import recipe_params, space_for

    print(f"machine: {machine()}")
    print("| dataset | rows | recipe | batch × epochs | steps | val accuracy | val macro-F1 | s | TF-IDF macro-F1 |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in args.datasets.split(","):
        path = shared_data(name)
        for rows in (int(r) for r in args.rows.split(",")):
            data = load_data(path, max_train_samples=rows, seed=42)
            base = traditional_baselines(data, "macro_f1")["value"]
            skewed = label_skew(data.task, data.train.labels, data.label_names) is not None
            cfg = StudyConfig(study="r", data=path, space=space_for(len(data.train)),
                              class_weight="search" if skewed else "none")
            scaled = recipe_params("minilm", cfg, len(data.train), "macro_f1")
            recipes = {"fixed (batch 32, 3 epochs)": (32, 3, "none"),
                       "scaled": (scaled["batch_size"], scaled["epochs"], scaled.get("class_weight", "none"))}
            if recipes["scaled"] == recipes["fixed (batch 32, 3 epochs)"]:
                del recipes["scaled"]  # large enough: the scaled recipe is the fixed one
            for label, (batch, epochs, weight) in recipes.items():
                r = run(data, batch, epochs, weight)
                print(f"| {name} | {len(data.train)} | {label}{' balanced' if weight == 'balanced' else ''} | "
                      f"{batch} × {epochs} | {r['steps']} | {r['accuracy']:.4f} | {r['macro_f1']:.4f} | "
                      f"{r['seconds']:.0f} | {base:.4f} |", flush=True)


if __name__ == "__main__":
    main()
