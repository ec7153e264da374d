"""Benchmark 3: prediction latency, in process (1, 8 and 32 texts per call) and through the running app's HTTP API
with 8 concurrent clients. Uses a model kept by a study (default: trains a quick one on the demo sample).

    python bench/latency.py [--model DIR]
"""

from __future__ import annotations

import argparse
import csv
import statistics
import tempfile
import threading
import time
from pathlib import Path

from _common import machine, percentile, shared_data


def texts_of_at_most(tokenizer, n_tokens: int, limit: int = 200) -> list[str]:
    with open(Path(shared_data("sst2")) / "validation.csv", encoding="utf-8") as fh:
        rows = [r["text"] for r in csv.DictReader(fh)]
    return [t for t in rows if len(tokenizer(t)["input_ids"]) <= n_tokens][:limit]


def in_process(model_dir: str) -> list[str]:
    from textclf.predict import Predictor

    lines = []
    for precision in ("fp32", "auto"):
        p = Predictor.from_dir(model_dir, precision=precision)
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
            lines.append(f"in-process {precision:>4}, {size:>2} text(s) of <= 32 tokens: p50 {statistics.median(times):.2f} ms, "
                         f"p95 {percentile(times, 95):.2f} ms ({len(times)} calls)")
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

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TEXTCLF_STUDIES_DIR": studies_dir}
    server = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=ROOT, env=env,
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
        times: list[float] = []
        lock = threading.Lock()

        def client_loop(k: int) -> None:
            c = Client(url, verbose=False)
            c.predict(texts[0], api_name="/predict")  # warm: loads the model once
            for i in range(per_client):
                start = time.perf_counter()
                c.predict(texts[(i + k) % len(texts)], api_name="/predict")
                with lock:
                    times.append(1000 * (time.perf_counter() - start))

        threads = [threading.Thread(target=client_loop, args=(k,)) for k in range(clients)]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - start
        rest = rest_api(url, texts, clients, per_client)
    finally:
        server.terminate()
        server.wait(20)
    return (f"Gradio API (gradio_client), {clients} concurrent clients x {per_client}: p50 {statistics.median(times):.1f} ms, "
            f"p95 {percentile(times, 95):.1f} ms, {len(times) / wall:.1f} requests/s\n{rest}")


def rest_api(url: str, texts: list[str], clients: int, per_client: int) -> str:
    """POST /api/predict, the one-round-trip JSON endpoint, with plain HTTP clients."""
    import json
    import urllib.request

    def call(text: str) -> None:
        req = urllib.request.Request(url + "api/predict", data=json.dumps({"text": text}).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req) as r:
            r.read()

    call(texts[0])
    times: list[float] = []
    lock = threading.Lock()

    def loop(k: int) -> None:
        for i in range(per_client * 2):
            start = time.perf_counter()
            call(texts[(i + k) % len(texts)])
            with lock:
                times.append(1000 * (time.perf_counter() - start))

    threads = [threading.Thread(target=loop, args=(k,)) for k in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    return (f"REST POST /api/predict, {clients} concurrent clients x {per_client * 2}: p50 {statistics.median(times):.1f} ms, "
            f"p95 {percentile(times, 95):.1f} ms, {len(times) / wall:.1f} requests/s")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=None, help="a kept model folder; default: train one on the demo sample")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        studies = Path(tmp) / "studies"
        if args.model:
            from textclf.export import copy_model

            model_dir = str(copy_model(args.model, studies / "models" / "given" / "model"))
        else:
            from textclf.study import StudyConfig, run_study

            run_study(StudyConfig(study="latency", data="demo", backbones=["minilm"], trials=1, epochs=3,
                                  storage=f"sqlite:///{tmp}/l.db", models_dir=str(studies / "models" / "latency")),
                      progress=False, log=lambda _: None)
            model_dir = str(studies / "models" / "latency" / "minilm")
        for line in in_process(model_dir):
            print(line, flush=True)
        print(over_http(str(studies)))
    print("targets: p50 <= 8 ms in process for one text of <= 32 tokens; p50 <= 100 ms over HTTP")


if __name__ == "__main__":
    main()
