"""Benchmark 4: seconds from `python app.py` to the first page served (median of 3 cold starts).

    python bench/startup.py
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

from _common import ROOT, machine


def once(studies: str) -> float:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TEXTCLF_STUDIES_DIR": studies}
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as r:
                    if r.status == 200:
                        return time.perf_counter() - start
            except OSError:
                if proc.poll() is not None or time.perf_counter() - start > 120:
                    raise RuntimeError("the app did not start") from None
                time.sleep(0.05)
    finally:
        proc.terminate()
        proc.wait(20)


def main() -> None:
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        times = [once(tmp) for _ in range(3)]
    print(f"python app.py -> first page: {', '.join(f'{t:.2f}' for t in times)} s; median {statistics.median(times):.2f} s "
          "(target <= 5 s)")


if __name__ == "__main__":
    main()
