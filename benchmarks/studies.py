"""The same 8-run study sequentially, on the local process pool and on a local Ray cluster.

The study: Iris 4-5-5-3 (the paper's network and loop), ``label_noise`` in {0, 1} x
``dropout`` in {0, 0.2} x ``seed`` in {0, 1} = 8 runs, each trained ``--epochs`` epochs
and measured every ``--every`` (bins 8, exact EI_parts and sensitivity, whole EI from
``--samples`` evaluations). Three ways, each into a fresh folder, in one process:

* ``sequential``: ``sweep(..., executor="serial")``, one run after another in this process;
* ``local pool``: ``sweep(..., executor=ProcessExecutor(W))``, W spawned worker processes;
* ``ray``: a Ray cluster started here with ``ray start --head`` on 127.0.0.1 (W CPUs;
  :class:`causal_widgets.live.executors.LocalRayCluster`), ``sweep(..., executor=RayExecutor(
  address))``; starting the cluster is timed separately, not in the sweep.

Every run uses one torch thread. Reported: the sweep's wall time, the speed-up over
sequential, the summed in-task run time (from ``sweep_log.jsonl``: each run's own seconds
inside its worker), the **per-run overhead** = (wall x W - summed run time) / runs (time a
worker slot spent not running a run: start-up, imports, scheduling, idle at the end),
and the **per-task overhead** of each executor on an empty task: round trip of one no-op
task (``os.getpid``) submitted and awaited alone (median of 50), and the cost per task
when 400 are submitted at once (wall / 400). The three sweeps must give the same numbers (checked).

Usage::

    python benchmarks/studies.py                 # 600 epochs, every 50; ~5 min on 2 cores
    python benchmarks/studies.py --write-docs    # also rewrite the block in docs/benchmarks.md
    python benchmarks/studies.py --epochs 20 --every 10 --samples 512 --tasks 20 \\
        --json /tmp/s.json                       # seconds; what the test runs
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from benchmarks.report import git_commit, replace_block  # noqa: E402

DOCS = REPO / "docs" / "benchmarks.md"
BEGIN = "<!-- studies:begin -->"
END = "<!-- studies:end -->"


def study(epochs: int, every: int, samples: int):
    from causal_widgets.studies.spec import Study

    return Study(
        "bench8", grid={"label_noise": [0.0, 1.0], "dropout": [0.0, 0.2], "seed": [0, 1]},
        settings={"dataset": "iris", "epochs": epochs, "every": every, "samples": samples},
    )


def task_overhead(ex: Any, n_single: int, n_bulk: int) -> dict[str, float]:
    """Round trip of one no-op task (median, ms) and amortised cost per task in a batch (ms)."""
    # the empty task is os.getpid: importable everywhere, so every executor ships it by name
    ex.submit(os.getpid).result(timeout=300)  # warm: workers started
    single = []
    for _ in range(n_single):
        t = time.perf_counter()
        ex.submit(os.getpid).result(timeout=300)
        single.append(time.perf_counter() - t)
    t = time.perf_counter()
    futs = [ex.submit(os.getpid) for _ in range(n_bulk)]
    for f in futs:
        f.result(timeout=600)
    bulk = time.perf_counter() - t
    return {"single_ms": 1e3 * float(np.median(single)), "bulk_ms": 1e3 * bulk / n_bulk}


def run_sweep(name: str, make_executor: Callable[[], Any], st: Any, root: Path,
              workers: int) -> tuple[dict[str, Any], Any]:
    from causal_widgets.studies.sweeps import sweep

    out = root / name.replace(" ", "_")
    ex = make_executor()
    t = time.perf_counter()
    data = sweep(st, out, executor=ex, figures=False, log=lambda s: None)
    wall = time.perf_counter() - t
    log = [json.loads(x) for x in (out / "sweep_log.jsonl").read_text().splitlines()]
    run_s = [e["seconds"] for e in log if e["event"] == "finished"]
    n = len(run_s)
    row = {
        "mode": name, "workers": workers, "runs": n, "wall_s": wall,
        "run_s_sum": float(np.sum(run_s)), "run_s_mean": float(np.mean(run_s)),
        "overhead_per_run_s": (wall * workers - float(np.sum(run_s))) / n,
    }
    return row, (ex, data)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=600)
    p.add_argument("--every", type=int, default=50)
    p.add_argument("--samples", type=int, default=2**14)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    p.add_argument("--tasks", type=int, default=400, help="no-op tasks in the bulk test")
    p.add_argument("--no-ray", action="store_true", help="skip the Ray cluster")
    p.add_argument("--json", type=Path, default=REPO / "benchmarks" / "studies.json")
    p.add_argument("--write-docs", action="store_true")
    args = p.parse_args(argv)

    import torch

    from causal_widgets.live.executors import (
        LocalRayCluster,
        ProcessExecutor,
        RayExecutor,
        SerialExecutor,
    )

    torch.set_num_threads(1)
    st = study(args.epochs, args.every, args.samples)
    w = int(args.workers)
    rows, overhead, frames = [], {}, {}
    load_start = list(os.getloadavg())
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        row, (ex, data) = run_sweep("sequential", SerialExecutor, st, root, 1)
        rows.append(row)
        frames["sequential"] = data.results
        overhead["sequential"] = task_overhead(ex, 50, args.tasks)
        print(f"sequential: {row['wall_s']:.1f} s", flush=True)

        row, (ex, data) = run_sweep("local pool", lambda: ProcessExecutor(w), st, root, w)
        rows.append(row)
        frames["local pool"] = data.results
        with ProcessExecutor(w) as pool:
            overhead["local pool"] = task_overhead(pool, 50, args.tasks)
        print(f"local pool: {row['wall_s']:.1f} s", flush=True)

        if not args.no_ray:
            t = time.perf_counter()
            with LocalRayCluster(num_cpus=w) as address:
                ray_ex = RayExecutor(address=address)
                start_s = time.perf_counter() - t
                row, (ex, data) = run_sweep("ray", lambda: ray_ex, st, root, w)
                row["cluster_start_s"] = start_s
                rows.append(row)
                frames["ray"] = data.results
                overhead["ray"] = task_overhead(ray_ex, 50, args.tasks)
            print(f"ray: {row['wall_s']:.1f} s (+{start_s:.1f} s to start the cluster)",
                  flush=True)

    key = ["run_id", "epoch", "layer", "metric"]
    base = frames["sequential"].sort_values(key).reset_index(drop=True)
    same = {}
    for name, df in frames.items():
        df = df.sort_values(key).reset_index(drop=True)
        same[name] = bool(df[key].equals(base[key])) and float(
            np.nanmax(np.abs(df.value.to_numpy(float) - base.value.to_numpy(float)))) == 0.0
    seq = rows[0]["wall_s"]
    for r in rows:
        r["speedup"] = seq / r["wall_s"]
    report = {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "commit": git_commit() or "unknown",
        "study": st.to_dict(),
        "rows": rows,
        "task_overhead": overhead,
        "identical_results": same,
        "machine": {"logical_cpus": os.cpu_count(), "torch": torch.__version__,
                    "python": platform.python_version(), "load_avg_start": load_start,
                    "load_avg_end": list(os.getloadavg())},
        "command": "python benchmarks/studies.py" + (" " + " ".join(argv) if argv else
                                                     " " + " ".join(sys.argv[1:])).rstrip(),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1))
    block = render(report)
    print(block)
    if args.write_docs:
        write_docs(block)
    return report


def render(report: dict[str, Any]) -> str:
    st = report["study"]
    s = st["settings"]
    lines = [
        f"Run on {report['date']} (commit `{report['commit']}`): 8 runs of Iris 4-5-5-3 "
        f"({s['epochs']} epochs, measured every {s['every']}, whole EI from {s['samples']} "
        "samples), one torch thread per run.",
        "",
        "| mode | workers | sweep wall s | speed-up | mean run s (in task) | per-run overhead s "
        "| no-op task round trip ms | no-op task in a batch ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        o = report["task_overhead"].get(r["mode"], {})
        start = f" (+{r['cluster_start_s']:.1f} s cluster start)" if "cluster_start_s" in r \
            else ""
        lines.append(
            f"| {r['mode']} | {r['workers']} | {r['wall_s']:.1f}{start} | "
            f"{r['speedup']:.2f}x | {r['run_s_mean']:.2f} | {r['overhead_per_run_s']:.2f} | "
            f"{o.get('single_ms', float('nan')):.2f} | {o.get('bulk_ms', float('nan')):.3f} |")
    same = ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in
                     report["identical_results"].items())
    m = report["machine"]
    lines += [
        "",
        f"Identical results to the sequential sweep (every value, bit for bit): {same}.",
        f"Machine: {m['logical_cpus']} logical CPUs, torch {m['torch']}, Python "
        f"{m['python']}; load average at start {m['load_avg_start']}, at end "
        f"{m['load_avg_end']}.",
        "",
        f"Command: `{report['command']}`",
    ]
    return "\n".join(lines)


def write_docs(block: str, path: Path = DOCS) -> None:
    """Replace the text between the studies markers of ``path`` with ``block``."""
    replace_block(path, BEGIN, END, block, "## Studies: sequential vs local pool vs Ray")


if __name__ == "__main__":
    main()
