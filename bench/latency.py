"""Benchmark 3: prediction latency, in process (1, 8 and 32 texts per call; PyTorch fp32, bf16 and compiled bf16, and
the ONNX fp32 and int8 exports, each through the parity gate) and through the running app's HTTP API with 8
concurrent clients. Uses a model kept by a study (default: trains one on 2,000 sst2 sentences, ~30 s): the
timed texts are sst2's, and a model unsure about them (one trained on other data) would take the bf16 path's fp32
re-check on most of them.

    python bench/latency.py [--model DIR]
"""

from __future__ import annotations

import argparse
import csv
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from _common import machine, percentile, shared_data


def texts_of_at_most(tokenizer, n_tokens: int, limit: int = 200) -> list[str]:
    with open(Path(shared_data("sst2")) / "validation.csv", encoding="utf-8") as fh:
        rows = [r["text"] for r in csv.DictReader(fh)]
    return [t for t in rows if len(tokenizer(t)["input_ids"]) <= n_tokens][:limit]


def onnx_folders(model_dir: str, into: Path) -> dict[str, str]:
    """ONNX fp32 and int8 exports of ``model_dir``, each through the parity gate on sst2's validation split."""
    from textclf.data import load_data
    from textclf.onnx_export import ExportRefused, export_onnx

    val = load_data(shared_data("sst2")).validation
    out = {}
    for quantize in (None, "int8"):
        name = f"onnx {quantize or 'fp32'}"
        try:
            report = export_onnx(model_dir, into / name.replace(" ", "-"), val.texts, val.labels, quantize=quantize)
            out[name] = str(into / name.replace(" ", "-"))
            fused = ", ".join(f"{k} x{n}" for k, n in report.fused.items()) or "none"
            print(f"{name}: fusions {fused}; gate passed: {report.line()}", flush=True)
        except ExportRefused as exc:
            print(f"{name}: refused: {exc}", flush=True)
    return out


def _rss_mb() -> float:
    with open("/proc/self/status", encoding="utf-8") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:")) / 1024


def _size_mb(folder: str) -> float:
    return sum(p.stat().st_size for p in Path(folder).iterdir() if p.suffix in (".safetensors", ".onnx")) / 1e6


def in_process(model_dir: str, onnx: dict[str, str]) -> list[str]:
    """PyTorch fp32, bf16 and compiled bf16, then the ONNX exports: the same texts and call sizes for each."""
    import numpy as np

    from textclf.predict import CLOSE_CALL, Predictor

    lines: list[str] = []
    reference: list[str] = []
    paths = [("fp32", model_dir, "fp32", False), ("auto", model_dir, "auto", False),
             ("auto compiled", model_dir, "auto", True)] + [(name, folder, "auto", False) for name, folder in onnx.items()]
    for path, folder, precision, compile in paths:
        start, rss = time.perf_counter(), _rss_mb()
        p = Predictor.from_dir(folder, precision=precision, compile=compile)
        if compile:
            if not p.wait_compiled(900):
                lines.append(f"compiling failed, skipped: {p.compile_error}")
                continue
            lines.append(f"compiled in the background in {time.perf_counter() - start:.1f} s (load included)")
        texts = texts_of_at_most(p.tokenizer, 32)
        for size in (1, 8, 32):
            batches = [texts[i:i + size] for i in range(0, len(texts) - size + 1, size)][:60]
            for b in batches[:5]:
                p.predict(b)
            times = []
            for b in batches:
                start = time.perf_counter()
                p.predict(b)
                times.append(1000 * (time.perf_counter() - start))
            lines.append(f"in-process {path:>13}, {size:>2} text(s) of <= 32 tokens: p50 {statistics.median(times):.2f} ms, "
                         f"p95 {percentile(times, 95):.2f} ms ({len(times)} calls)")
        labels = [r.label for r in p.predict(texts)]
        reference = reference or labels
        same = sum(a == b for a, b in zip(labels, reference, strict=True))
        lines.append(f"  same top label as fp32 on {same} of {len(texts)} texts; weights on disk {_size_mb(folder):.1f} "
                     f"MB; resident memory +{_rss_mb() - rss:.0f} MB for this path")
        if p.fast is not None and not compile:
            top2 = np.sort(p.predict_proba(texts), axis=1)[:, -2:]
            close = int((top2[:, 1] - top2[:, 0] < CLOSE_CALL).sum())
            lines.append(f"  bf16 path: {close} of {len(texts)} texts were close calls, recomputed in fp32")
    return lines


def over_http(studies_dir: str, clients: int = 8, per_client: int = 25) -> str:
    """The app in its own process (as deployed), clients in this one."""
    import os
    import socket
    import subprocess
    import sys
    import urllib.request

    from _common import ROOT
    from gradio_client import Client

    from textclf.dashboard import BEST

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TEXTCLF_STUDIES_DIR": studies_dir}
    # --no-compile: the app would compile the model in the background while the clients run, timing a mix of the
    # two paths and the compile's own CPU use; eager bf16 is the slower of them.
    server = subprocess.Popen([sys.executable, "app.py", "--port", str(port), "--no-compile"], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(url, timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        texts = ["a gripping , funny and moving film", "dull and far too long", "i did not care for any of it"]

        def gradio_client(k: int) -> Callable[[int], None]:
            c = Client(url, verbose=False)
            c.predict(texts[0], api_name="/predict")  # warm: loads the model once
            return lambda i: c.predict(texts[(i + k) % len(texts)], api_name="/predict")

        gradio = load(f"Gradio API (gradio_client), {clients} concurrent clients x {per_client}", gradio_client,
                      clients, per_client)

        # The same queue without gradio_client's own overhead: the two HTTP requests of Gradio's call API, as any
        # program makes them, each client in one session as a browser tab is (without one, Gradio builds a new
        # session, the config of every component of the page, for each request: ~20 ms here).
        def gradio_http(k: int) -> Callable[[int], None]:
            def call(i: int) -> None:
                event = post_json(url + "gradio_api/call/predict",
                                  {"data": [texts[(i + k) % len(texts)], BEST], "session_hash": f"bench-{k}"})
                with urllib.request.urlopen(f"{url}gradio_api/call/predict/{event['event_id']}") as r:
                    if b"event: complete" not in r.read():
                        raise RuntimeError("the Gradio call API did not complete")
            return call

        gradio += "\n" + load(f"Gradio call API (two HTTP requests), {clients} concurrent clients x {per_client}",
                               gradio_http, clients, per_client)

        # Concurrent requests are answered in shared batches: each answer must be the one a lone request gets.
        alone = {t: post_json(url + "api/predict", {"text": t})["label"] for t in texts}
        answers: list[bool] = []

        def rest_client(k: int) -> Callable[[int], None]:
            def call(i: int) -> None:
                text = texts[(i + k) % len(texts)]
                answers.append(post_json(url + "api/predict", {"text": text})["label"] == alone[text])
            return call

        rest = load(f"REST POST /api/predict, {clients} concurrent clients x {per_client * 2}", rest_client, clients,
                    per_client * 2)
        rest += f"\n  same label as a lone request on {sum(answers)} of {len(answers)} answers"
    finally:
        server.terminate()
        server.wait(20)
    return f"{gradio}\n{rest}"


def post_json(url: str, payload: dict) -> dict:
    import json
    import urllib.request

    req = urllib.request.Request(url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read())


def load(title: str, make_client: Callable[[int], Callable[[int], None]], clients: int, calls: int) -> str:
    """``clients`` threads, each making ``calls`` timed calls with its own client; p50/p95 and throughput."""
    times: list[float] = []
    lock = threading.Lock()

    def loop(k: int) -> None:
        call = make_client(k)
        for i in range(calls):
            start = time.perf_counter()
            call(i)
            with lock:
                times.append(1000 * (time.perf_counter() - start))

    threads = [threading.Thread(target=loop, args=(k,)) for k in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    return (f"{title}: p50 {statistics.median(times):.1f} ms, p95 {percentile(times, 95):.1f} ms, "
            f"{len(times) / wall:.1f} requests/s")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=None, help="a kept model folder; default: train one on sst2")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        studies = Path(tmp) / "studies"
        if args.model:
            from textclf.export import copy_model

            model_dir = str(copy_model(args.model, studies / "models" / "given" / "model"))
        else:
            from textclf.study import StudyConfig, run_study

            run_study(StudyConfig(study="latency", data=shared_data("sst2"), backbones=["minilm"], trials=1, epochs=1,
                                  max_train_samples=2000, max_length=64, storage=f"sqlite:///{tmp}/l.db",
                                  models_dir=str(studies / "models" / "latency")),
                      progress=False, log=lambda _: None)
            model_dir = str(studies / "models" / "latency" / "minilm")
        for line in in_process(model_dir, onnx_folders(model_dir, Path(tmp) / "onnx")):
            print(line, flush=True)
        print(over_http(str(studies)))
    print("targets: p50 <= 8 ms in process for one text of <= 32 tokens; p50 <= 100 ms over HTTP")


if __name__ == "__main__":
    main()
