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


def wrk_table(results: dict[str, dict[str, float]], reference: str, share: str) -> None:
    """wrk's figures, a row per server, each rate also as a share of ``reference``'s (the column ``share``)."""
    width = max(len(label) for label in results) + 2
    print(f"{'':<{width}}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}{share:>9}")
    for label, got in results.items():
        print(f"{label:<{width}}{got['rps']:>10.0f}{got['p50_ms']:>10.2f}{got['p99_ms']:>10.2f}{got['errors']:>8.0f}"
              f"{got['rps'] / results[reference]['rps']:>9.2f}")
