"""Benchmarks: scripts that print their figures beside a reference measured in the same run (python -m bench.<name>)."""

import atexit
import shutil
import statistics
import tempfile
from pathlib import Path


def scratch(prefix: str) -> Path:
    """A folder for one bench run's files (etcd data, logs, HAProxy state), removed when the run ends."""
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def spread(seconds: list[float]) -> str:
    """Timings' median, min and max in milliseconds, as the benches print them."""
    return f"median {statistics.median(seconds) * 1000:7.0f} ms  (min {min(seconds) * 1000:.0f}, max {max(seconds) * 1000:.0f})"
