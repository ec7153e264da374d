"""Shared helpers of the benchmarks: the real data beside the repo, the machine line, and matmul peaks."""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _tune() -> None:
    # Before the matmul peaks, the first matmuls of a benchmark: oneDNN sizes its kernel cache then, as textclf sets it.
    from textclf.train import tune_runtime

    tune_runtime()


_tune()


def shared_data(name: str) -> str:
    path = SHARED / name
    if not path.is_dir():
        sys.exit(f"skipped: {path} is missing (../shared/data sits beside the repo on dev machines)")
    return str(path)


def machine() -> str:
    import torch

    from textclf.train import cpu_bf16_unit

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            cpu = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), cpu)
    except OSError:
        pass
    # The bf16 matmul unit sets the peak training is measured against: 2 cores of AVX512-BF16 (AMD EPYC) measured
    # 368-420 GFLOP/s, 2 cores with AMX (Intel Xeon) 542-1,053, and the work around the matmuls is no faster with AMX.
    bf16 = cpu_bf16_unit() or "no native bf16"
    return f"{cpu} ({bf16}), {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads)"


def matmul_peak(dtype_name: str, n: int = 2048, seconds: float = 3.0) -> float:
    """GFLOP/s of an n x n matmul in this process (the ceiling training is measured against)."""
    import torch

    dtype = getattr(torch, dtype_name)
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    for _ in range(3):
        a @ b
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        count += 1
    return 2 * n**3 * count / (time.perf_counter() - start) / 1e9


def percentile(values: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(np.asarray(values), q))
