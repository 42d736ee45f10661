"""Encode/decode throughput of the columnar Avro batch against a naive row-per-value record.

Run: ``.venv/bin/python bench/codec.py [--values N] [--batches B] [--repeat R] [--out PATH]``.

Single process, pinned to one core where the OS allows it. The columnar figures include the whole
codec path (framing, fastavro, numpy conversion), for the current schema (v3: timestamps and
values packed as little-endian buffers) and for v2 (the same columns as Avro arrays); the
row-per-value figures are one Avro message per value, as a naive producer would send them,
decoded to dicts only (generous to that design: it builds no arrays).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from fastavro import parse_schema, schemaless_reader, schemaless_writer

from shared.batch import PointBatch
from shared.codec import BatchCodec

ROW_SCHEMA = parse_schema(
    {
        "type": "record",
        "name": "DataPoint",
        "namespace": "io.histfill.bench",
        "fields": [
            {"name": "source_address", "type": "string"},
            {"name": "ts", "type": "long"},
            {"name": "value", "type": "double"},
            {"name": "quality", "type": "int"},
        ],
    }
)


def make_batches(values: int, batches: int, seed: int = 42) -> list[PointBatch]:
    """Realistic slices: 1 s sampling, a noisy signal, a few non-good quality flags."""
    rng = np.random.default_rng(seed)
    per = max(1, values // batches)
    out = []
    for i in range(batches):
        start = 1_700_000_000_000_000 + i * per * 1_000_000
        ts = start + np.arange(per, dtype=np.int64) * 1_000_000
        vals = 50 + 10 * np.sin(np.arange(per) / 300) + rng.normal(0, 0.5, per)
        quality = np.where(rng.random(per) < 0.01, 2, 0).astype(np.uint8)
        out.append(PointBatch(f"\\\\PI-SRV\\Plant.Unit{i}.Temp", "pi", ts, vals, quality))
    return out


def best_of(repeat: int, work: Callable[[], object]) -> float:
    """The shortest wall time of ``repeat`` runs (least disturbed by the rest of the machine)."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - start)
    return best


def bench_columnar(
    batches: list[PointBatch], repeat: int, writer_version: int | None = None
) -> dict[str, float]:
    codec = BatchCodec(writer_version=writer_version)
    messages = [codec.encode(b) for b in batches]
    total = sum(len(b) for b in batches)
    if [codec.decode(m) for m in messages] != batches:
        raise SystemExit("columnar round trip is not lossless")
    enc = best_of(repeat, lambda: [codec.encode(b) for b in batches])
    dec = best_of(repeat, lambda: [codec.decode(m) for m in messages])
    return {
        "encode_values_per_s": total / enc,
        "decode_values_per_s": total / dec,
        "bytes_per_value": sum(map(len, messages)) / total,
        "messages": len(messages),
    }


def _rows(batches: list[PointBatch]) -> list[dict[str, Any]]:
    return [
        {"source_address": b.source_address, "ts": t, "value": v, "quality": q}
        for b in batches
        for t, v, q in zip(
            b.timestamps_us.tolist(), b.values.tolist(), b.quality.tolist(), strict=True
        )
    ]


def _encode_rows(rows: list[dict[str, Any]]) -> list[bytes]:
    out = []
    for row in rows:
        buf = io.BytesIO()
        schemaless_writer(buf, ROW_SCHEMA, row)
        out.append(buf.getvalue())
    return out


def bench_row_per_value(batches: list[PointBatch], repeat: int) -> dict[str, float]:
    rows = _rows(batches)  # building the dicts is not charged to the encoder
    messages = _encode_rows(rows)
    enc = best_of(repeat, lambda: _encode_rows(rows))
    dec = best_of(repeat, lambda: [schemaless_reader(io.BytesIO(m), ROW_SCHEMA) for m in messages])
    return {
        "encode_values_per_s": len(rows) / enc,
        "decode_values_per_s": len(rows) / dec,
        "bytes_per_value": sum(map(len, messages)) / len(rows),
        "messages": len(messages),
    }


def machine() -> dict[str, Any]:
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"cpu": model, "cores": os.cpu_count(), "system": platform.platform()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--values", type=int, default=2_000_000, help="values in total")
    parser.add_argument("--batches", type=int, default=200, help="batches (one point each)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure; best is kept")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parent / "results" / "codec.json"
    )
    args = parser.parse_args()

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, as promised

    batches = make_batches(args.values, args.batches)
    values = sum(len(b) for b in batches)
    columnar = bench_columnar(batches, args.repeat)
    arrays = bench_columnar(batches, args.repeat, writer_version=2)
    rows = bench_row_per_value(batches, max(1, args.repeat - 2))
    result = {
        "columnar": columnar,
        "columnar_v2_arrays": arrays,
        "row_per_value": rows,
        "decode_speedup": columnar["decode_values_per_s"] / rows["decode_values_per_s"],
        "encode_speedup": columnar["encode_values_per_s"] / rows["encode_values_per_s"],
        "values": values,
        "batches": len(batches),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "fastavro": __import__("fastavro").__version__,
        "machine": machine(),
    }

    print(f"{values:,} values in {len(batches)} batches, one core, best of {args.repeat}")
    print(f"{'format':<15}{'encode M val/s':>16}{'decode M val/s':>16}{'bytes/value':>13}")
    for name, fig in (("packed (v3)", columnar), ("arrays (v2)", arrays), ("row-per-value", rows)):
        print(
            f"{name:<15}{fig['encode_values_per_s'] / 1e6:>16.2f}"
            f"{fig['decode_values_per_s'] / 1e6:>16.2f}{fig['bytes_per_value']:>13.1f}"
        )
    print(
        f"speedup: decode x{result['decode_speedup']:.1f}, encode x{result['encode_speedup']:.1f}"
    )

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
