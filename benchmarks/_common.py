"""What every benchmark script records beside its numbers."""
from __future__ import annotations

import json
import os
import platform
import time
from datetime import datetime, timezone
from typing import Any

import numpy as np

import hashindex


def timed(fn) -> float:
    """Seconds one call of fn takes."""
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def machine(**versions: Any) -> dict[str, Any]:
    """The machine and library versions a result was measured with."""
    return {
        "platform": platform.platform(), "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(), "simd_level": hashindex.simd_level(), "numpy": np.__version__,
        "hashindex": hashindex.__version__, **versions,
    }


def write_json(result: dict[str, Any], prefix: str, path: str | None) -> str:
    """Writes the record (default benchmarks/results/<prefix>-<time>.json) and prints where."""
    result["when"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    path = path or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                f"{prefix}-{datetime.now():%Y%m%d-%H%M%S}.json")
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
    print(f"JSON record: {path}")
    return path
