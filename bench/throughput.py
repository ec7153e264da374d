"""Benchmark 2: training throughput on real data (sst2; minilm unless ``--backbone`` names another) in bf16 autocast
and fp32, as samples/s and model FLOP/s, divided by the bf16 and fp32 matmul peaks measured in the same run; and
accuracy parity of the two.

Model FLOPs (the MFU of PaLM, Chowdhery et al. 2022: what the model needs per token, whatever the implementation
does) = 6 x (encoder parameters) per token + 12 x layers x hidden x padded length per token (attention scores and
weighted values) + 6 x (pooler and classifier parameters) per sentence, over the padded batches (forward and backward;
the embedding lookup counts nothing). The utilisation target is on these. Printed beside them, the FLOPs textclf
actually executes (hardware FLOPs): fewer, because it computes the encoder's last layer for the first token alone
(the classifier reads nothing else), keys and values excepted.

This machine's speed drifts by +-10% from minute to minute (other tenants of the host), so each precision trains
``--repeats`` times, each run against a matmul peak measured just before it; the median run is the figure.

    python bench/throughput.py [--train 2000] [--epochs 1] [--batch-size 32] [--repeats 3] [--precisions bf16,fp32]
                               [--backbone mpnet]
"""

from __future__ import annotations

import argparse
import random
import time

from _common import machine, matmul_peak, shared_data


def flops_per_epoch(model, lengths: list[int], batches: list[list[int]]) -> tuple[float, float, int]:
    """Model FLOPs and executed FLOPs of one training epoch over ``batches`` (forward + backward), and the padded
    token count."""
    from textclf.cpu_train import first_token_layer

    cfg = model.config
    last = first_token_layer(model)
    last_name = next((n for n, m in model.named_modules() if m is last), None)
    encoder = head = last_layer_once = 0  # parameters: per token, per sentence, and the part of the last layer
    for name, p in model.named_parameters():
        if "pooler" in name or "classifier" in name:
            head += p.numel()
        elif ".encoder." in name or name.startswith("encoder."):
            encoder += p.numel()
            if last_name and name.startswith(last_name + ".") and not any(f".self.{kv}." in name for kv in ("key", "value")):
                last_layer_once += p.numel()
    layers, hidden = cfg.num_hidden_layers, cfg.hidden_size
    model_flops = executed = 0.0
    padded = 0
    for batch in batches:
        length = max(lengths[i] for i in batch)
        tokens, sentences = len(batch) * length, len(batch)
        padded += tokens
        attention = 12 * hidden * length  # one layer, one query token
        full = tokens * (6 * encoder + layers * attention) + sentences * 6 * head
        model_flops += full
        executed += full if last is None else (tokens * (6 * (encoder - last_layer_once) + (layers - 1) * attention)
                                               + sentences * (6 * (head + last_layer_once) + attention))
    return model_flops, executed, padded


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="training runs per precision (the median counts)")
    parser.add_argument("--precisions", default="bf16,fp32", help="comma-separated: bf16, fp32 or both")
    parser.add_argument("--backbone", default="minilm", help="a registered backbone (mpnet: python -m textclf fetch mpnet)")
    args = parser.parse_args()
    from textclf.backbones import head_prefixes, load_model, load_tokenizer, resolve_backbone
    from textclf.cpu_train import fast_training
    from textclf.data import load_data
    from textclf.train import TrainConfig, encode, length_grouped_batches, predict_logits, train

    print(f"machine: {machine()}; backbone {args.backbone}")
    data = load_data(shared_data("sst2"), max_train_samples=args.train)
    spec = resolve_backbone(args.backbone)
    tok = load_tokenizer(spec)
    tr = encode(tok, data.train.texts, data.train.labels, args.max_length)
    va = encode(tok, data.validation.texts, data.validation.labels, args.max_length)

    # The batches train() builds (same seed, same length grouping), epoch after epoch.
    lengths = [len(f["input_ids"]) for f in tr.features]
    rng = random.Random(TrainConfig().seed)
    batches = [b for _ in range(args.epochs) for b in length_grouped_batches(lengths, args.batch_size, rng)]
    model = load_model(spec, num_labels=2, multi_label=False, seed=0)
    flops, executed, padded = flops_per_epoch(model, lengths, batches)
    per = len(tr) * args.epochs
    print(f"{len(tr)} sentences, {sum(lengths) / len(tr):.1f} tokens each ({padded / per:.1f} padded); "
          f"{flops / per / 1e9:.2f} model GFLOP per sentence, {executed / per / 1e9:.2f} executed")
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
            # Training time alone: subtract the evaluations, timed separately on the same model as train() runs
            # them (inside fast_training, which shortens the last layer in evaluation too).
            with fast_training(model):
                t0 = time.perf_counter()
                predict_logits(model, tok, va, precision=precision)
                eval_s = (time.perf_counter() - t0) * len(result.history)
            train_s = total - eval_s
            gflops, hw_gflops = flops / train_s / 1e9, executed / train_s / 1e9
            runs.append({"sps": per / train_s, "gflops": gflops, "hw_gflops": hw_gflops, **peaks,
                         "of_bf16": gflops / peaks["bf16"], "of_fp32": gflops / peaks["fp32"],
                         "hw_of_bf16": hw_gflops / peaks["bf16"]})
            accuracy[precision] = result.metrics["accuracy"]
            r = runs[-1]
            print(f"{precision} run {run + 1}: {r['sps']:.1f} samples/s; model FLOPs {gflops:.0f} GFLOP/s = "
                  f"{r['of_bf16']:.1%} of the bf16 peak ({peaks['bf16']:.0f}), {r['of_fp32']:.1%} of the fp32 peak "
                  f"({peaks['fp32']:.0f}); executed {hw_gflops:.0f} GFLOP/s = {r['hw_of_bf16']:.1%} of the bf16 peak; "
                  f"train {train_s:.1f} s, eval {eval_s:.1f} s; validation accuracy {accuracy[precision]:.4f}",
                  flush=True)
        figures[precision] = runs
    for precision, runs in figures.items():
        # One run's figures, all of them: the lower middle of an even count, not an average of two runs.
        middle = sorted(runs, key=lambda r: r["of_bf16"])[(len(runs) - 1) // 2]
        shares = ", ".join(f"{r['of_bf16']:.1%}" for r in runs)
        print(f"{precision} median run: {middle['sps']:.1f} samples/s; model FLOPs {middle['gflops']:.0f} GFLOP/s = "
              f"{middle['of_bf16']:.1%} of the bf16 peak, {middle['of_fp32']:.1%} of the fp32 peak; executed "
              f"{middle['hw_gflops']:.0f} GFLOP/s = {middle['hw_of_bf16']:.1%} of the bf16 peak (runs: {shares})")
    if accuracy.keys() == {"bf16", "fp32"}:
        print(f"bf16 vs fp32 accuracy: {accuracy['bf16'] - accuracy['fp32']:+.4f}")


if __name__ == "__main__":
    main()
