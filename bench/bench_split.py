"""Benchmark: splitting a large HiggsML-like Parquet file against plain copies of it.

    python bench/bench_split.py --rows 10000000 [--data var/bench/higgs-10M.parquet] [--jagged]

``--jagged`` adds a list column ``jet_pt`` (one to four jet momenta per event, as many as
``PRI_jet_num`` says, at least one) to every row of the file, as an ntuple's ``Jet_Pt[nJet]``
is stored: the split must keep the target with jagged columns too.

Methods, each run in its own child process (peak RSS = the child's ru_maxrss, read by the parent
with resource.getrusage(RUSAGE_CHILDREN) around a wrapper process per method):

  copy    pyarrow.parquet.read_table + write_table of the whole file (the baseline)
  stream  pyarrow row-group by row-group copy (ParquetFile -> ParquetWriter)
  split   splitter.split.split_file: read, assign, write train/test/solution as Parquet
  naive   pandas.read_parquet + boolean masks + three DataFrame.to_parquet calls

Prints each method's wall time, CPU time (user + system, all threads) and peak memory, and the
ratios to the copy. On a shared machine the CPU-time ratio is the steadier of the two: other
people's jobs lengthen wall times but not the work a method does. The load average is printed
before and after the runs.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SPEC = {"seed": 2027, "id_column": "EventId", "label_column": "Label",
        "weight_column": "Weight", "train": 0.5, "public_test": 0.2, "private_test": 0.3,
        "stratify": "Label", "reweight": True}


def run_method(method: str, data: Path, out: Path) -> float:
    """Do the work of one method in this process; return its wall time."""
    import numpy as np
    import pandas as pd
    import pyarrow.parquet as pq

    from splitter.split import SplitSpec, keyed_hash, split_file

    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if method == "copy":
        pq.write_table(pq.read_table(data), out / "copy.parquet")
    elif method == "stream":
        pf = pq.ParquetFile(data)
        with pq.ParquetWriter(out / "copy.parquet", pf.schema_arrow) as w:
            for i in range(pf.num_row_groups):
                w.write_table(pf.read_row_group(i))
    elif method == "split":
        split_file(data, out / "public", out / "hidden", SplitSpec(**SPEC))
    elif method == "naive":
        df = pd.read_parquet(data)
        u = (keyed_hash(df["EventId"].to_numpy(), 2027) >> np.uint64(11)).astype(float) / 2**53
        train, pub = u < 0.5, (u >= 0.5) & (u < 0.7)
        df[train].to_parquet(out / "train.parquet")
        df.loc[~train].drop(columns=["Label", "Weight"]).to_parquet(out / "test.parquet")
        sol = df.loc[~train, ["EventId", "Label", "Weight"]]
        sol["Usage"] = np.where(pub[~train], "Public", "Private")
        sol.to_parquet(out / "solution.parquet")
    else:
        raise SystemExit(f"unknown method {method}")
    return time.perf_counter() - t0


def add_jagged_column(flat: Path) -> Path:
    """``flat`` with a list column ``jet_pt`` per row, written next to it (once)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = flat.with_name(flat.stem + "-jagged.parquet")
    if out.exists():
        return out
    pf = pq.ParquetFile(flat)
    rng = np.random.default_rng(5)
    with pq.ParquetWriter(out, pf.schema_arrow.append(pa.field("jet_pt", pa.list_(pa.float64())))
                          ) as writer:
        for i in range(pf.num_row_groups):
            group = pf.read_row_group(i)
            counts = np.clip(group.column("PRI_jet_num").to_numpy(), 1, 4).astype(np.int32)
            offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
            values = pa.array(rng.exponential(40.0, int(offsets[-1])))
            jets = pa.ListArray.from_arrays(pa.array(offsets), values)
            writer.write_table(group.append_column("jet_pt", jets))
    print(f"added jet_pt lists -> {out} ({out.stat().st_size / 2**20:.0f} MiB)")
    return out


def measure(method: str, data: Path, workdir: Path) -> dict[str, float]:
    """Run ``method`` in a fresh wrapper process that runs it in a child and reports the child's
    time and peak RSS (RUSAGE_CHILDREN of the wrapper covers exactly that one child)."""
    out = subprocess.run(
        [sys.executable, __file__, "--wrap", method, "--data", str(data), "--out",
         str(workdir / method)], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--data", type=Path)
    ap.add_argument("--methods", default="copy,stream,split,naive")
    ap.add_argument("--jagged", action="store_true", help="add a list column jet_pt")
    ap.add_argument("--wrap")
    ap.add_argument("--run")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    if args.run:
        seconds = run_method(args.run, args.data, args.out)
        print(json.dumps({"seconds": seconds}))
        return
    if args.wrap:
        child = subprocess.run(
            [sys.executable, __file__, "--run", args.wrap, "--data", str(args.data), "--out",
             str(args.out)], check=True, capture_output=True, text=True)
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        result = json.loads(child.stdout.strip().splitlines()[-1])
        result["peak_mib"] = usage.ru_maxrss / 1024
        # Includes the interpreter start and imports (well under a second), as for every method.
        result["cpu_seconds"] = usage.ru_utime + usage.ru_stime
        print(json.dumps(result))
        return

    from splitter.generate import write_higgs

    data = args.data or Path("var/bench") / f"higgs-{args.rows}.parquet"
    if not data.exists():
        t0 = time.perf_counter()
        write_higgs(data, args.rows, seed=1)
        print(f"generated {args.rows} rows in {time.perf_counter() - t0:.1f} s -> {data} "
              f"({data.stat().st_size / 2**20:.0f} MiB)")
    if args.jagged:
        data = add_jagged_column(data)
    results: dict[str, dict[str, float]] = {}
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory(prefix="bench-split-", dir=data.parent) as tmp:
        for method in args.methods.split(","):
            results[method] = measure(method, data, Path(tmp))
            shutil.rmtree(Path(tmp) / method, ignore_errors=True)
            r = results[method]
            print(f"{method:7s} {r['seconds']:8.2f} s wall {r['cpu_seconds']:8.2f} s CPU   "
                  f"peak RSS {r['peak_mib']:8.0f} MiB")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if "copy" in results:
        base = results["copy"]
        for m in ("stream", "split", "naive"):
            if m in results:
                print(f"ratio {m}/copy = {results[m]['seconds'] / base['seconds']:.2f} wall, "
                      f"{results[m]['cpu_seconds'] / base['cpu_seconds']:.2f} CPU")
    if "split" in results:
        ok = results["split"]["peak_mib"] < 1024
        print(f"split peak memory {results['split']['peak_mib']:.0f} MiB "
              f"({'under' if ok else 'OVER'} the 1 GiB target)")


if __name__ == "__main__":
    main()
