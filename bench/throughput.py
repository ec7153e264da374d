"""Benchmark 2: training throughput on real data (sst2, minilm) in bf16 autocast and fp32, as samples/s and model
FLOP/s, divided by the bf16 and fp32 matmul peaks measured in the same run; and accuracy parity of the two.

Model FLOPs per token = 6 x (non-embedding parameters) + 12 x layers x hidden x sequence length (attention scores
and weighted values), counted over the padded batches actually computed.

    python bench/throughput.py [--train 2000] [--epochs 1]
"""

from __future__ import annotations

import argparse
import time

from _common import machine, matmul_peak, shared_data


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=64)
    args = parser.parse_args()
    from textclf.backbones import head_prefixes, load_model, load_tokenizer, resolve_backbone
    from textclf.data import load_data
    from textclf.train import TrainConfig, encode, length_grouped_batches, train

    print(f"machine: {machine()}")
    peaks = {"bf16": matmul_peak("bfloat16"), "fp32": matmul_peak("float32")}
    print(f"matmul peak (2048x2048): bf16 {peaks['bf16']:.0f} GFLOP/s, fp32 {peaks['fp32']:.0f} GFLOP/s")
    data = load_data(shared_data("sst2"), max_train_samples=args.train)
    spec = resolve_backbone("minilm")
    tok = load_tokenizer(spec)
    tr = encode(tok, data.train.texts, data.train.labels, args.max_length)
    va = encode(tok, data.validation.texts, data.validation.labels, args.max_length)
    import random

    # The padded tokens one epoch computes, with the same length-grouped batches the loop builds.
    lengths = [len(f["input_ids"]) for f in tr.features]
    batches = length_grouped_batches(lengths, args.batch_size, random.Random(42))
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    real = sum(lengths)
    model = load_model(spec, num_labels=2, multi_label=False, seed=0)
    cfgm = model.config
    non_embed = sum(p.numel() for n, p in model.named_parameters() if "embeddings" not in n)
    mean_len = padded / len(tr)
    flops_per_token = 6 * non_embed + 12 * cfgm.num_hidden_layers * cfgm.hidden_size * mean_len
    print(f"{len(tr)} sentences, {real / len(tr):.1f} tokens each ({mean_len:.1f} padded); "
          f"{non_embed / 1e6:.1f}M non-embedding parameters; {flops_per_token / 1e6:.0f} MFLOP per token")
    results = {}
    for precision in ("bf16", "fp32"):
        model = load_model(spec, num_labels=2, multi_label=False, seed=0)
        cfg = TrainConfig(lr=1e-4, head_lr_ratio=10, batch_size=args.batch_size, epochs=args.epochs,
                          max_length=args.max_length, precision=precision, evals_per_epoch=1)
        start = time.perf_counter()
        result = train(model, tok, tr, va, cfg, task="single_label", head_prefixes=head_prefixes(model, spec))
        total = time.perf_counter() - start
        # Training time alone: subtract the evaluations, timed separately on the same model.
        from textclf.train import predict_logits

        t0 = time.perf_counter()
        predict_logits(model, tok, va, precision=precision)
        eval_s = (time.perf_counter() - t0) * len(result.history)
        train_s = total - eval_s
        sps = len(tr) * args.epochs / train_s
        flops = flops_per_token * padded * args.epochs / train_s / 1e9
        results[precision] = result.metrics["accuracy"]
        print(f"{precision}: {sps:.1f} samples/s, {flops:.0f} GFLOP/s = {flops / peaks['bf16']:.0%} of the bf16 peak, "
              f"{flops / peaks['fp32']:.0%} of the fp32 peak; validation accuracy {result.metrics['accuracy']:.4f} "
              f"(train {train_s:.1f} s, eval {eval_s:.1f} s)")
    print(f"bf16 vs fp32 accuracy: {results['bf16'] - results['fp32']:+.4f}")


if __name__ == "__main__":
    main()
