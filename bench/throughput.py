"""Benchmark 2: training throughput on real data (sst2, minilm) in bf16 autocast and fp32, as samples/s and model
FLOP/s, divided by the bf16 and fp32 matmul peaks measured in the same run; and accuracy parity of the two.

Model FLOPs = 6 x (encoder parameters) per token + 12 x layers x hidden x padded length per token (attention scores
and weighted values) + 6 x (pooler and classifier parameters) per sentence, counted over the padded batches actually
computed (forward and backward; the embedding lookup counts nothing).

This machine's speed drifts by +-10% from minute to minute (other tenants of the host), so each precision trains
``--repeats`` times, each run against a matmul peak measured just before it; the median run is the figure.

    python bench/throughput.py [--train 2000] [--epochs 1] [--batch-size 32] [--repeats 3] [--precisions bf16,fp32]
"""

from __future__ import annotations

import argparse
import random
import time

from _common import machine, matmul_peak, shared_data


def model_flops_per_epoch(model, lengths: list[int], batches: list[list[int]]) -> tuple[float, int]:
    """FLOPs of one training epoch over ``batches`` (forward + backward) and the padded token count."""
    cfg = model.config
    encoder = sum(p.numel() for n, p in model.named_parameters() if ".encoder." in n or n.startswith("encoder."))
    per_sentence = sum(p.numel() for n, p in model.named_parameters() if "pooler" in n or "classifier" in n)
    flops, padded = 0.0, 0
    for batch in batches:
        length = max(lengths[i] for i in batch)
        tokens = len(batch) * length
        padded += tokens
        flops += tokens * (6 * encoder + 12 * cfg.num_hidden_layers * cfg.hidden_size * length)
        flops += len(batch) * 6 * per_sentence
    return flops, padded


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="training runs per precision (the median counts)")
    parser.add_argument("--precisions", default="bf16,fp32", help="comma-separated: bf16, fp32 or both")
    args = parser.parse_args()
    from textclf.backbones import head_prefixes, load_model, load_tokenizer, resolve_backbone
    from textclf.data import load_data
    from textclf.train import TrainConfig, encode, length_grouped_batches, predict_logits, train

    print(f"machine: {machine()}")
    data = load_data(shared_data("sst2"), max_train_samples=args.train)
    spec = resolve_backbone("minilm")
    tok = load_tokenizer(spec)
    tr = encode(tok, data.train.texts, data.train.labels, args.max_length)
    va = encode(tok, data.validation.texts, data.validation.labels, args.max_length)

    # The batches train() builds (same seed, same length grouping), epoch after epoch.
    lengths = [len(f["input_ids"]) for f in tr.features]
    rng = random.Random(TrainConfig().seed)
    batches = [b for _ in range(args.epochs) for b in length_grouped_batches(lengths, args.batch_size, rng)]
    model = load_model(spec, num_labels=2, multi_label=False, seed=0)
    flops, padded = model_flops_per_epoch(model, lengths, batches)
    print(f"{len(tr)} sentences, {sum(lengths) / len(tr):.1f} tokens each ({padded / len(tr) / args.epochs:.1f} "
          f"padded); {flops / len(tr) / args.epochs / 1e9:.2f} GFLOP per sentence")
    accuracy, figures = {}, {}
    for precision in args.precisions.split(","):
        runs = []
        for run in range(args.repeats):
            peaks = {"bf16": matmul_peak("bfloat16", seconds=1.5), "fp32": matmul_peak("float32", seconds=1.5)}
            model = load_model(spec, num_labels=2, multi_label=False, seed=0)
            cfg = TrainConfig(lr=1e-4, head_lr_ratio=10, batch_size=args.batch_size, epochs=args.epochs,
                              max_length=args.max_length, precision=precision, evals_per_epoch=1)
            start = time.perf_counter()
            result = train(model, tok, tr, va, cfg, task="single_label", head_prefixes=head_prefixes(model, spec))
            total = time.perf_counter() - start
            # Training time alone: subtract the evaluations, timed separately on the same model.
            t0 = time.perf_counter()
            predict_logits(model, tok, va, precision=precision)
            eval_s = (time.perf_counter() - t0) * len(result.history)
            train_s = total - eval_s
            gflops = flops / train_s / 1e9
            runs.append({"sps": len(tr) * args.epochs / train_s, "gflops": gflops, **peaks,
                         "of_bf16": gflops / peaks["bf16"], "of_fp32": gflops / peaks["fp32"]})
            accuracy[precision] = result.metrics["accuracy"]
            r = runs[-1]
            print(f"{precision} run {run + 1}: {r['sps']:.1f} samples/s, {gflops:.0f} GFLOP/s = {r['of_bf16']:.1%} of "
                  f"the bf16 peak ({peaks['bf16']:.0f}), {r['of_fp32']:.1%} of the fp32 peak ({peaks['fp32']:.0f}); "
                  f"train {train_s:.1f} s, eval {eval_s:.1f} s; validation accuracy {accuracy[precision]:.4f}",
                  flush=True)
        figures[precision] = runs
    for precision, runs in figures.items():
        # One run's figures, all of them: the lower middle of an even count, not an average of two runs.
        middle = sorted(runs, key=lambda r: r["of_bf16"])[(len(runs) - 1) // 2]
        shares = ", ".join(f"{r['of_bf16']:.1%}" for r in runs)
        print(f"{precision} median run: {middle['sps']:.1f} samples/s, {middle['gflops']:.0f} GFLOP/s = "
              f"{middle['of_bf16']:.1%} of the bf16 peak, {middle['of_fp32']:.1%} of the fp32 peak "
              f"(runs: {shares})")
    if accuracy.keys() == {"bf16", "fp32"}:
        print(f"bf16 vs fp32 accuracy: {accuracy['bf16'] - accuracy['fp32']:+.4f}")


if __name__ == "__main__":
    main()
