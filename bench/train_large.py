"""Benchmark: `segstream train` on 10 million generated customers; wall time and peak memory.

Run `.venv/bin/python bench/train_large.py` (options: --rows, --format csv|parquet, --k).
The table is generated once and cached under /tmp; the training runs as a subprocess of the
installed `segstream` program, timed here, with its peak resident memory taken from the
kernel's accounting of the finished child (getrusage(RUSAGE_CHILDREN).ru_maxrss). Figures are
printed and written to bench/results/train_large.json, one entry per file format.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from training.generate import generate_customers

REPO = Path(__file__).resolve().parent.parent
SEGSTREAM = Path(sys.executable).with_name("segstream")
CACHE = Path("/tmp/segstream-bench")
RESULTS = REPO / "bench" / "results" / "train_large.json"
CHUNK_ROWS = 1_000_000


def customer_table(rows: int, file_format: str, seed: int) -> Path:
    """Generate the table once (in 1M-row chunks with distinct ids) and reuse it afterwards."""
    path = CACHE / f"customers-{rows}-seed{seed}.{file_format}"
    if path.is_file():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    writer: pa_csv.CSVWriter | pq.ParquetWriter | None = None
    started = time.perf_counter()
    try:
        for first in range(0, rows, CHUNK_ROWS):
            size = min(CHUNK_ROWS, rows - first)
            chunk = pa.Table.from_pandas(
                generate_customers(size, seed + first // CHUNK_ROWS, first_id=first + 1),
                preserve_index=False,
            )
            if writer is None:
                writer = (
                    pa_csv.CSVWriter(partial, chunk.schema)
                    if file_format == "csv"
                    else pq.ParquetWriter(partial, chunk.schema)
                )
            writer.write_table(chunk)
            print(f"  generated {first + size:,} of {rows:,} rows", file=sys.stderr)
    finally:
        if writer is not None:
            writer.close()
    partial.rename(path)
    print(f"wrote {path} in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return path


def run_train(table: Path, k: str, out: Path) -> tuple[float, int, str, str]:
    """Run `segstream train` once; wall seconds, peak RSS in bytes, stdout and stderr."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [str(SEGSTREAM), "train", "--data", str(table), "--k", k, "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stdout, stderr = process.communicate()
    elapsed = time.perf_counter() - started
    # communicate() has reaped the child; its rusage is in RUSAGE_CHILDREN (kilobytes on
    # Linux), and this benchmark starts no other child that could be larger.
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if process.returncode != 0:
        raise SystemExit(f"segstream train failed ({process.returncode}):\n{stderr[-3000:]}")
    return elapsed, peak_kib * 1024, stdout, stderr


def main() -> None:
    """Generate (or reuse) the table, train on it, print and store the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--format", choices=("csv", "parquet"), default="csv")
    parser.add_argument("--k", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    table = customer_table(args.rows, args.format, args.seed)
    out = CACHE / "models"
    # The machine may be shared: the load around the run says how much of it was ours.
    load_before = os.getloadavg()[0]
    elapsed, peak, stdout, stderr = run_train(table, args.k, out)
    load_after = os.getloadavg()[0]
    model_dir = Path(stdout.strip().splitlines()[-1])
    manifest = json.loads((model_dir / "manifest.json").read_text())
    stability = manifest.get("stability") or {}
    result = {
        "rows": args.rows,
        "format": args.format,
        "file_mib": round(table.stat().st_size / 2**20, 1),
        "k": args.k,
        "chosen_k": len(manifest["segments"]),
        "segments": [s["id"] for s in manifest["segments"]],
        "seconds": round(elapsed, 1),
        "peak_rss_mib": round(peak / 2**20),
        "stability_mean": stability.get("mean_agreement"),
        "stability_sample_rows": stability.get("sample_rows"),
        "cpus": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "load_average_1min": [round(load_before, 2), round(load_after, 2)],
    }
    print(stderr.strip()[-2500:], file=sys.stderr)
    print(json.dumps(result, indent=2))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    # One entry per file format, so a CSV run and a Parquet run sit side by side.
    stored = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    stored[args.format] = result
    RESULTS.write_text(json.dumps(stored, indent=2) + "\n")
    print(
        f"{args.rows:,} customers ({args.format}, {result['file_mib']} MiB): "
        f"{elapsed:.1f} s, peak RSS {result['peak_rss_mib']:,} MiB",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
