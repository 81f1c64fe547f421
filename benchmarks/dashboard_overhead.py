"""What attaching a live CausalDashboard costs a training loop, and how fresh its plane is.

Trains the paper's networks with the paper's loop (``causal_widgets.training.models``: bias-free
sigmoid MLPs, U(+-1/sqrt(fan_in)) init, SGD lr 0.01, ``MSELoss(reduction="sum")``, a
seeded shuffle per epoch):

* ``iris``: 4-5-5-3 on Iris (100 train examples, batch 10);
* ``digits``: 25-6-6-6-5 on the embedded 5x5 digits 0-4 (676 train examples, batch 50,
  as in ``causal_widgets.paper.reproduce``);

each for a fixed number of epochs, in two arms with identical work (same seed, same
data order):

* ``base``: per epoch ``evaluate`` (loss/accuracy, what a loop logs) + ``train_epoch``;
* ``dash``: the same plus ``dash.record(epoch, loss=..., accuracy=...)`` on a headless
  :class:`~causal_widgets.widgets.dashboard.CausalDashboard` with ``every=1, drop_stale=True``
  (the monitor's ``max_pending=2``), built before the timer starts.

Measured (``time.perf_counter``, seconds unless stated):

* **loop wall time**: the epoch loop only (not the dashboard's construction, not the final
  ``dash.wait()``); trials alternate the arm order (base first, then dash first, ...);
  the slowdown is ``median(dash) / median(base) - 1`` (the median of the per-trial
  paired ratios is printed too). The main thread's own CPU time (``time.thread_time``)
  is recorded as well: if it barely changes while the wall time grows, the training
  thread was *waiting* (for the GIL or for a core), not doing more work.
* **record() cost**: wall time of each ``dash.record`` call (ms; median and p90 over all
  calls of all trials).
* **record -> plane latency**: from just before ``dash.record(e, ...)`` to the moment the
  dashboard's synced ``plane`` trait holds epoch ``e`` for *every* layer (a traitlets
  observer on ``plane``; it runs in whichever thread assigns the trait). Only epochs that
  were measured count (dropped snapshots never appear). After the loop the dashboard is
  drained (``dash.wait()``, untimed) so the last snapshots' latencies are included. Split
  into *queued* (record -> the worker starts measuring that epoch), *measuring* (first
  layer starts -> last layer done, via a timing wrapper passed as ``measure_fn``) and
  *push* (last layer done -> trait assigned: the dashboard's coalesced refresh).

Settings of the measurement engine (``--settings``): ``default`` = the dashboard's own
defaults (``bins=8``, every metric, adaptive sample sizes; what ``CausalDashboard(model, x,
in_range=(0, 1))`` does), ``reproduce`` / ``quick`` = the fixed budgets of
``causal_widgets.paper.reproduce.engine_settings`` (2**17 / 2**14 whole-EI samples), ``smoke`` =
EI_parts only (exact; for the test suite).

Usage::

    python benchmarks/dashboard_overhead.py                  # 200 Iris / 30 digits epochs, 3 trials
    python benchmarks/dashboard_overhead.py --write-docs     # also rewrite the results block
                                                             # of docs/benchmarks.md
    python benchmarks/dashboard_overhead.py --json out.json --iris-epochs 5 --digits-epochs 2 \\
        --trials 1 --settings smoke                          # seconds; what the test runs
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gc
import json
import os
import platform
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.report import cpu_model, git_commit, replace_block  # noqa: E402

DOCS = ROOT / "docs" / "benchmarks.md"
BEGIN = "<!-- dashboard-overhead:begin -->"
END = "<!-- dashboard-overhead:end -->"
TARGET = 0.10  # the target: slowdown of the training loop under 10 %


@dataclass(frozen=True)
class Network:
    """One of the paper's training set-ups."""

    name: str
    sizes: tuple[int, ...]
    batch_size: int
    loader: Callable[[int], Any]


def _networks() -> dict[str, Network]:
    from causal_widgets.training.data import load_digits_data, load_iris_data

    return {
        "iris": Network("iris", (4, 5, 5, 3), 10, load_iris_data),
        "digits": Network("digits", (25, 6, 6, 6, 5), 50, load_digits_data),
    }


def engine_kwargs(settings: str) -> dict[str, Any]:
    """``measure_layer`` keyword arguments for a ``--settings`` name (see the module doc)."""
    if settings == "default":
        return {}
    if settings in ("reproduce", "quick"):
        from causal_widgets.paper.reproduce import engine_settings

        return engine_settings(settings == "quick", None)
    if settings == "smoke":
        return {"metrics": ["ei_parts"]}
    raise ValueError(
        f"settings={settings!r} is not one of default, reproduce, quick, smoke: pick one."
    )


def _pct(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (linear interpolation) or None for no values."""
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if values else None


def run_arm(
    net: Network,
    epochs: int,
    with_dash: bool,
    settings: str,
    seed: int = 0,
    drain_timeout: float = 600.0,
    executor: str | None = None,
) -> dict[str, Any]:
    """Train ``net`` for ``epochs`` epochs, with or without a dashboard; return the timings.

    The returned dict holds ``loop_s`` (wall), ``loop_thread_cpu_s`` (main thread CPU) and,
    for the dashboard arm, ``record_ms`` (per call), ``latency`` (per measured epoch:
    total/queued/measuring/push seconds), ``measured`` / ``dropped`` / ``errors`` counts
    and ``construct_s`` / ``drain_s``.
    """
    from causal_widgets.training.models import (
        evaluate,
        make_mlp,
        make_optimizer,
        one_hot,
        train_epoch,
    )

    ds = net.loader(seed)
    model = make_mlp(list(net.sizes), "sigmoid", seed=seed)
    optimizer = make_optimizer(model, lr=0.01)
    batches = torch.Generator().manual_seed(seed)
    targets = one_hot(ds.y_train, ds.n_classes)
    out: dict[str, Any] = {"net": net.name, "arm": "dash" if with_dash else "base",
                           "epochs": epochs}

    dash = None
    t_record: dict[int, float] = {}
    t_seen: dict[int, float] = {}
    spans: list[tuple[int | None, float, float]] = []  # (epoch, start, end) per layer
    record_ms: list[float] = []
    if with_dash:
        from causal_widgets.engine.layer_measure import measure_layer
        from causal_widgets.network.discovery import find_layers
        from causal_widgets.widgets.dashboard import CausalDashboard

        names = [lay.name for lay in find_layers(model, ds.x_train, in_range=(0.0, 1.0))]
        holder: dict[str, Any] = {}

        def timed_measure(layer: Any, **kwargs: Any) -> Any:
            # runs on the monitor's worker thread; the running epoch is the snapshot's
            mon = holder.get("monitor")
            ep = mon.status()["running_epoch"] if mon is not None else None
            t0 = time.perf_counter()
            try:
                return measure_layer(layer, **kwargs)
            finally:
                spans.append((ep, t0, time.perf_counter()))

        def on_plane(change: dict) -> None:
            now = time.perf_counter()
            plane = change["new"] or {}
            common: set[int] | None = None
            for name in names:
                eps = set(plane.get(name, {}).get("epoch", []))
                common = eps if common is None else common & eps
            for ep in common or ():
                t_seen.setdefault(int(ep), now)

        t0 = time.perf_counter()
        dash = CausalDashboard(
            model, ds.x_train, bins=8, every=1, drop_stale=True, in_range=(0.0, 1.0),
            # with an executor the measuring happens in another process: the timing
            # wrapper could not report back, so only the total latency is recorded
            measure_fn=timed_measure if executor is None else None, executor=executor,
            title=f"{net.name} overhead", **engine_kwargs(settings),
        )
        holder["monitor"] = dash.monitor
        dash.observe(on_plane, names="plane")
        out["construct_s"] = time.perf_counter() - t0

    gc.collect()
    out["failed"] = None
    c0 = time.thread_time()
    t0 = time.perf_counter()
    epoch = -1
    try:
        for epoch in range(epochs):
            loss, accuracy = evaluate(model, ds.x_train, ds.y_train)
            if dash is not None:
                r0 = time.perf_counter()
                t_record[epoch] = r0
                dash.record(epoch, loss=loss, accuracy=accuracy)
                record_ms.append((time.perf_counter() - r0) * 1e3)
            train_epoch(model, optimizer, ds.x_train, targets, net.batch_size, batches)
    except Exception as err:
        if dash is None:
            raise
        # the training thread itself failed with the dashboard attached (e.g. the worker's
        # torch.fx trace patching nn.Module.__call__ process-wide): report it, do not time it
        out["failed"] = f"epoch {epoch}: {type(err).__name__}: {err}"
        print(f"{net.name} dash arm: TRAINING FAILED at {out['failed']}", flush=True)
    out["loop_s"] = time.perf_counter() - t0
    out["loop_thread_cpu_s"] = time.thread_time() - c0

    if dash is not None:
        t0 = time.perf_counter()
        dash.wait(timeout=drain_timeout)
        out["drain_s"] = time.perf_counter() - t0
        hist = dash.history
        out["dropped"] = len(hist.dropped())
        out["errors"] = len(hist.errors())
        out["record_ms"] = record_ms
        by_epoch: dict[int, list[tuple[float, float]]] = {}
        for ep, a, b in list(spans):
            if ep is not None:
                by_epoch.setdefault(int(ep), []).append((a, b))
        lat = []
        for ep in sorted(t_seen):
            if ep not in t_record:
                continue
            entry = {"epoch": ep, "total_s": t_seen[ep] - t_record[ep]}
            if ep in by_epoch:
                start = min(a for a, _ in by_epoch[ep])
                end = max(b for _, b in by_epoch[ep])
                entry.update(queued_s=start - t_record[ep], measuring_s=end - start,
                             push_s=t_seen[ep] - end)
            lat.append(entry)
        out["latency"] = lat
        out["measured"] = len(lat)
        dash.close(widget=True)
        del dash
        gc.collect()
    return out


def _background(kind: str, stop: threading.Event) -> None:
    """A stand-in for the monitor's worker: lowered priority, then busy until ``stop``.

    ``python`` holds the GIL (pure-Python arithmetic, like the estimators' Python-level
    bookkeeping); ``torch`` runs 1000x25 matrix products (the GIL is released inside each
    op, like the layer evaluations); ``idle`` sleeps.
    """
    from causal_widgets.live.monitor import _set_thread_nice

    _set_thread_nice(10)
    x = torch.rand(1000, 25, generator=torch.Generator().manual_seed(0))
    while not stop.is_set():
        if kind == "python":
            sum(i * i for i in range(10_000))
        elif kind == "torch":
            float((x @ x.T).sum())
        else:
            stop.wait(0.05)


def diagnose(net: Network, epochs: int, trials: int) -> dict[str, list[dict[str, float]]]:
    """The base loop of ``net`` next to an idle, a pure-Python and a torch background thread.

    Separates the two ways a background measurement can slow training on a CPU: competing
    for the GIL (``python``) and competing for cores (``torch``).
    """
    out: dict[str, list[dict[str, float]]] = {}
    for trial in range(trials):
        for kind in ("idle", "python", "torch"):
            stop = threading.Event()
            th = threading.Thread(target=_background, args=(kind, stop), daemon=True)
            th.start()
            try:
                r = run_arm(net, epochs, False, "smoke")
            finally:
                stop.set()
                th.join()
            out.setdefault(kind, []).append(
                {"loop_s": r["loop_s"], "thread_cpu_s": r["loop_thread_cpu_s"]}
            )
            print(f"diagnose {net.name} trial {trial} background {kind}: loop "
                  f"{r['loop_s']:.3f} s, main-thread CPU {r['loop_thread_cpu_s']:.3f} s",
                  flush=True)
    return out


def summarize(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over trials per network: loop times, slowdown, record cost, latency."""
    summary: dict[str, Any] = {}
    for name in dict.fromkeys(r["net"] for r in results):
        base = [r for r in results if r["net"] == name and r["arm"] == "base"]
        all_dash = [r for r in results if r["net"] == name and r["arm"] == "dash"]
        failures = [r["failed"] for r in all_dash if r["failed"]]
        dash = [r for r in all_dash if not r["failed"]]
        if not dash:
            summary[name] = {"epochs": base[0]["epochs"], "trials": len(base),
                             "training_failures": failures}
            continue
        b = [r["loop_s"] for r in base]
        d = [r["loop_s"] for r in dash]
        paired = [
            rd["loop_s"] / rb["loop_s"] - 1.0
            for rb in base for rd in dash if rb["trial"] == rd["trial"]
        ]
        rec = [x for r in dash for x in r["record_ms"]]
        lat = [e for r in dash for e in r["latency"]]

        def lat_stat(key: str, q: float, lat: list = lat) -> float | None:
            return _pct([e[key] for e in lat if key in e], q)

        slowdown = float(np.median(d) / np.median(b) - 1.0)
        paired_median = float(np.median(paired)) if paired else slowdown
        summary[name] = {
            "epochs": base[0]["epochs"],
            "trials": len(b),
            "base_loop_s": float(np.median(b)),
            "dash_loop_s": float(np.median(d)),
            "base_loop_s_all": b,
            "dash_loop_s_all": d,
            "base_thread_cpu_s": float(np.median([r["loop_thread_cpu_s"] for r in base])),
            "dash_thread_cpu_s": float(np.median([r["loop_thread_cpu_s"] for r in dash])),
            "slowdown": slowdown,
            "slowdown_paired_median": paired_median,
            "slowdown_paired_all": paired,
            # met only if both estimates agree: under drifting load the ratio of medians
            # and the median of back-to-back paired ratios can differ by tens of percent
            "target_met": bool(max(slowdown, paired_median) < TARGET),
            "record_ms_median": _pct(rec, 50),
            "record_ms_p90": _pct(rec, 90),
            "snapshots": sum(r["epochs"] for r in dash),
            "measured": sum(r["measured"] for r in dash),
            "dropped": sum(r["dropped"] for r in dash),
            "errors": sum(r["errors"] for r in dash),
            "latency_s_median": lat_stat("total_s", 50),
            "latency_s_p90": lat_stat("total_s", 90),
            "queued_s_median": lat_stat("queued_s", 50),
            "measuring_s_median": lat_stat("measuring_s", 50),
            "push_s_median": lat_stat("push_s", 50),
            "construct_s_median": float(np.median([r["construct_s"] for r in dash])),
            "drain_s_median": float(np.median([r["drain_s"] for r in dash])),
            "training_failures": failures,
        }
    return summary


def machine_info() -> dict[str, Any]:
    """What the numbers depend on: CPU, cores, torch threads, versions, commit."""
    return {
        "cpu": cpu_model() or "unknown",
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "gil_switch_interval_ms": sys.getswitchinterval() * 1e3,
        "commit": git_commit() or None,
    }


def _fmt(v: float | None, spec: str) -> str:
    return "–" if v is None else format(v, spec)


def render(report: dict[str, Any]) -> str:
    """The Markdown results block (table + run details)."""
    s = report["summary"]
    a = report["args"]
    lines = [
        f"Run on {report['started']} (commit `{report['machine']['commit']}`), measuring in "
        f"a worker **{a.get('executor', 'thread')}**, engine settings "
        f"`{a['settings']}`, torch threads {report['machine'].get('torch_threads')}, "
        f"{a['trials']} trials per arm (alternating order), medians. Slowdown: ratio of the "
        "arms' medians, and in brackets the median of the per-trial (back-to-back) ratios; "
        "the target counts as met only if both are under 10 %.",
        "",
        "| network | epochs | loop without s | loop with s | slowdown | < 10 %? "
        "| record() ms (p90) | measured / dropped | record→plane s (p90) "
        "| queued / measuring / push s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in s.items():
        if "slowdown" not in r:
            lines.append(f"| {name} | {r['epochs']} | every dashboard trial failed: "
                         f"{r['training_failures'][0]} |||||||| ")
            continue
        met = "yes" if r["target_met"] else "**NO**"
        lines.append(
            f"| {name} {'-'.join(map(str, _networks()[name].sizes))} | {r['epochs']} "
            f"| {r['base_loop_s']:.3g} | {r['dash_loop_s']:.3g} "
            f"| {100 * r['slowdown']:+.0f} % (paired {100 * r['slowdown_paired_median']:+.0f} %) "
            f"| {met} "
            f"| {_fmt(r['record_ms_median'], '.3g')} ({_fmt(r['record_ms_p90'], '.3g')}) "
            f"| {r['measured']} / {r['dropped']} of {r['snapshots']} "
            f"| {_fmt(r['latency_s_median'], '.3g')} ({_fmt(r['latency_s_p90'], '.3g')}) "
            f"| {_fmt(r['queued_s_median'], '.2g')} / {_fmt(r['measuring_s_median'], '.3g')} "
            f"/ {_fmt(r['push_s_median'], '.2g')} |"
        )
    lines += [
        "",
        "Main-thread CPU time of the loop (`time.thread_time`, median s), without / with: "
        + ", ".join(
            f"{n} {r['base_thread_cpu_s']:.3g} / {r['dash_thread_cpu_s']:.3g}"
            for n, r in s.items()
        )
        + ". Per-trial slowdowns: "
        + "; ".join(
            f"{n} " + ", ".join(f"{100 * x:+.0f} %" for x in r["slowdown_paired_all"])
            for n, r in s.items()
        )
        + ".",
        "",
    ]
    failed = {n: r["training_failures"] for n, r in s.items() if r["training_failures"]}
    if failed:
        lines += [
            "**The training loop itself raised with the dashboard attached** (those trials "
            "are left out of the table): "
            + "; ".join(f"{n}: " + " | ".join(msgs) for n, msgs in failed.items()),
            "",
        ]
    diag = report.get("diagnose")
    if diag:
        lines += [
            f"Diagnosis (`--diagnose`): the Iris loop without a dashboard, next to a "
            f"background thread at nice 10 (median of {a['trials']}; wall s / main-thread "
            "CPU s): "
            + ", ".join(
                f"{kind} {np.median([x['loop_s'] for x in v]):.3g} / "
                f"{np.median([x['thread_cpu_s'] for x in v]):.3g}"
                for kind, v in diag.items()
            )
            + ".",
            "",
        ]
    lines += [
        "Machine:",
        "",
    ]
    lines += [f"- {k}: {v}" for k, v in report["machine"].items()]
    lines += [
        f"- load_avg_start: {[round(x, 2) for x in report['load_avg_start']]}",
        f"- load_avg_end: {[round(x, 2) for x in report['load_avg_end']]}",
        "",
        f"Command: `{report['command']}`",
    ]
    return "\n".join(lines)


def write_docs(block: str, path: Path = DOCS, executor: str = "thread") -> None:
    """Replace the text between the dashboard-overhead markers of ``path`` with ``block``
    (the ``dashboard-overhead-process`` markers for ``--executor process``)."""
    begin, end = BEGIN, END
    if executor != "thread":
        begin = BEGIN.replace("overhead:", f"overhead-{executor}:")
        end = END.replace("overhead:", f"overhead-{executor}:")
    replace_block(path, begin, end, block, "## Dashboard overhead")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--iris-epochs", type=int, default=200)
    p.add_argument("--digits-epochs", type=int, default=30)
    p.add_argument("--trials", type=int, default=3)
    p.add_argument("--settings", default="default",
                   choices=["default", "reproduce", "quick", "smoke"])
    p.add_argument("--networks", default="iris,digits", help="comma-separated: iris,digits")
    p.add_argument("--switch-interval", type=float, default=None,
                   help="sys.setswitchinterval (s) for the run: a GIL diagnostic")
    p.add_argument("--threads", type=int, default=None,
                   help="torch.set_num_threads for the run (process-global: training and "
                        "measurement); default: torch's own default")
    p.add_argument("--executor", choices=["thread", "process"], default="thread",
                   help="where the dashboard measures: its worker thread here (default) or "
                        "a local worker process (CausalDashboard(executor='process'))")
    p.add_argument("--diagnose", action="store_true",
                   help="also time the Iris loop next to an idle / pure-Python / torch "
                        "background thread (nice 10, like the monitor's worker)")
    p.add_argument("--json", type=Path, default=None, help="write the raw results here")
    p.add_argument("--write-docs", action="store_true",
                   help="rewrite the results block of docs/benchmarks.md")
    p.add_argument("--render", type=Path, default=None, metavar="JSON",
                   help="only re-render a saved --json report (with --write-docs: into the docs)")
    args = p.parse_args(argv)
    if args.render is not None:
        report = json.loads(args.render.read_text())
        report["summary"] = summarize(report["results"])
        block = render(report)
        print(block)
        if args.write_docs:
            write_docs(block, executor=report["args"].get("executor", "thread"))
        return report
    for flag in ("iris_epochs", "digits_epochs", "trials"):
        if getattr(args, flag) < 1:
            p.error(f"--{flag.replace('_', '-')} must be at least 1")
    engine_kwargs(args.settings)  # validates
    if args.switch_interval is not None:
        sys.setswitchinterval(args.switch_interval)
    if args.threads is not None:
        if args.threads < 1:
            p.error("--threads must be at least 1")
        torch.set_num_threads(args.threads)

    nets = _networks()
    chosen = [n.strip() for n in args.networks.split(",") if n.strip()]
    unknown = [n for n in chosen if n not in nets]
    if unknown:
        p.error(f"unknown networks {unknown}: choose from {sorted(nets)}")
    epochs = {"iris": args.iris_epochs, "digits": args.digits_epochs}

    import causal_widgets.engine.layer_measure  # noqa: F401
    import causal_widgets.network.measure  # noqa: F401 - imports paid before any timer
    import causal_widgets.widgets.dashboard  # noqa: F401

    report: dict[str, Any] = {
        "started": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": " ".join(
            ["python benchmarks/dashboard_overhead.py", *(sys.argv[1:] if argv is None else argv)]
        ),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine": machine_info(),
        "load_avg_start": list(os.getloadavg()),
    }
    results: list[dict[str, Any]] = []
    for name in chosen:
        run_arm(nets[name], min(3, epochs[name]), False, args.settings)  # warm-up, untimed
        executor = None if args.executor == "thread" else args.executor
        for trial in range(args.trials):
            order = (False, True) if trial % 2 == 0 else (True, False)
            for with_dash in order:
                r = run_arm(nets[name], epochs[name], with_dash, args.settings,
                            executor=executor)
                r["trial"] = trial
                results.append(r)
                print(f"{name} trial {trial} {r['arm']}: loop {r['loop_s']:.3f} s"
                      + (f", measured {r['measured']}, dropped {r['dropped']}"
                         if with_dash else ""), flush=True)
    if args.diagnose:
        report["diagnose"] = diagnose(nets["iris"], args.iris_epochs, args.trials)
    report["load_avg_end"] = list(os.getloadavg())
    report["results"] = results
    report["summary"] = summarize(results)
    block = render(report)
    print()
    print(block)
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=1))
    if args.write_docs:
        write_docs(block, executor=args.executor)
    return report


if __name__ == "__main__":
    threading.current_thread().name = "train"
    main()
