"""The paper's per-layer measurement at every size from 1x1 to 25x6, side by side with
deep-ei 0.7.0, at the paper's initialisation and at trained-like weights (issue 10).

Same rules as ``benchmarks/run.py`` benchmark (1): EI + EI_parts + sensitivity of
``Sequential(Linear(n, m, bias=False), Sigmoid())`` at 8 bins; deep-ei's
``vector_and_pairwise_ei`` + ``sensitivity`` at its fastest batch size; ours with the plan
``measure_layer`` uses for a fixed budget of 10^5 whole-EI evaluations; one torch thread,
CPU time, ours the minimum of 3 runs. Paper initialisation: ``U(-1/sqrt(n), 1/sqrt(n))``
(PyTorch's default, the paper's); trained-like: ``N(0, (4/sqrt(n))^2)``.

    python benchmarks/sizes.py            # 10^6 deep-ei samples; writes benchmarks/sizes.json
    python benchmarks/sizes.py --quick    # 10^5, fewer sizes: a smoke run
    python benchmarks/sizes.py --write-docs   # also rewrites its block of docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: make `benchmarks` and the package importable
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from benchmarks import deepei_shim, run  # noqa: E402

SIZES = ((1, 1), (2, 2), (3, 3), (4, 4), (4, 5), (5, 3), (5, 5), (10, 10), (25, 6))
QUICK_SIZES = ((1, 1), (3, 3), (4, 5))
BEGIN, END = "<!-- sizes:begin -->", "<!-- sizes:end -->"


def paper_init_layer(n_in: int, n_out: int, seed: int = 0) -> nn.Sequential:
    """The paper's initialisation: ``U(-1/sqrt(n_in), 1/sqrt(n_in))``, seeded, no bias."""
    gen = torch.Generator().manual_seed(7000 * n_in + n_out + seed)
    lin = nn.Linear(n_in, n_out, bias=False)
    bound = 1.0 / math.sqrt(n_in)
    with torch.no_grad():
        lin.weight.copy_((torch.rand((n_out, n_in), generator=gen) * 2 - 1) * bound)
    return nn.Sequential(lin, nn.Sigmoid())


def measure_size(n: int, m: int, init: str, cfg: run.Config, batch_sizes: tuple[int, ...]
                 ) -> dict[str, Any]:
    net = paper_init_layer(n, m) if init == "paper" else run.make_layer(n, m)
    ours, _ = run._ours_paper(net, cfg, cfg.paper_ours_samples, cfg.repeats)
    deep = {}
    for k, bs in enumerate(batch_sizes):
        t, vals = run.timed(
            lambda s, bs=bs: deepei_shim.paper_measurement(
                net, samples=cfg.samples, sensitivity_samples=cfg.sensitivity_samples,
                bins=cfg.bins, batch_size=bs, seed=s),
            cfg.deep_repeats, seed0=100 * k)
        deep[str(bs)] = {"cpu_s": t.cpu_s, "values": vals[0]}
    best = min(deep, key=lambda b: deep[b]["cpu_s"])
    return {"n_in": n, "n_out": m, "init": init, "ours_cpu_s": ours["cpu_s"],
            "ours_values": ours["values"][0], "deep": deep, "deep_best_batch": int(best),
            "deep_cpu_s": deep[best]["cpu_s"], "ratio": deep[best]["cpu_s"] / ours["cpu_s"]}


def render(res: dict[str, Any]) -> str:
    rows = ["| layer | init | deep-ei CPU s (batch) | ours CPU s | ratio | >= 100x |",
            "|---|---|---|---|---|---|"]
    for r in res["rows"]:
        rows.append(f"| {r['n_in']}x{r['n_out']} | {r['init']} | {r['deep_cpu_s']:.3g} "
                    f"({r['deep_best_batch']}) | {r['ours_cpu_s']:.3g} | {r['ratio']:.0f}x | "
                    f"{'yes' if r['ratio'] >= 100 else '**NO**'} |")
    m = res["machine"]
    head = (f"Run `{res['config']}` on {m['date']} (commit `{m['git_commit']}`), deep-ei at "
            f"{res['samples']:.0e} samples, ours at {res['ours_samples']:.0e} whole-EI "
            f"evaluations; load average {m['load_avg_start']} at start.")
    return "\n".join([head, "", *rows, "", f"Command: `{res['command']}`"])


def write_docs(text: str, path: Path = run.DOCS) -> None:
    doc = path.read_text(encoding="utf-8")
    block = f"{BEGIN}\n{text}\n{END}"
    if BEGIN in doc and END in doc:
        doc = doc[: doc.index(BEGIN)] + block + doc[doc.index(END) + len(END):]
    else:
        doc += (f"\n## Every size from 1x1 to 25x6 (`benchmarks/sizes.py`)\n\n{block}\n")
    path.write_text(doc, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="10^5 deep-ei samples, 3 sizes")
    ap.add_argument("--out", type=Path, help="results JSON (default benchmarks/sizes*.json)")
    ap.add_argument("--write-docs", action="store_true", help="rewrite the docs block")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    cfg = run.CONFIGS["quick" if args.quick else "full"]
    sizes = QUICK_SIZES if args.quick else SIZES
    batch_sizes = (1000, 10**5)
    machine = run.machine_info()
    machine["load_avg_start"] = list(os.getloadavg())
    rows = []
    for n, m in sizes:
        for init in ("paper", "trained-like"):
            r = measure_size(n, m, init, cfg, batch_sizes)
            print(f"{n}x{m} {init:12} deep-ei {r['deep_cpu_s']:.3f}s  ours {r['ours_cpu_s']:.4f}s"
                  f"  {r['ratio']:.0f}x", flush=True)
            rows.append(r)
    res = {"config": "quick" if args.quick else "full", "samples": cfg.samples,
           "ours_samples": cfg.paper_ours_samples, "machine": machine, "rows": rows,
           "command": "python benchmarks/sizes.py" + (" --quick" if args.quick else "")}
    out = args.out or REPO / "benchmarks" / ("sizes-quick.json" if args.quick else "sizes.json")
    out.write_text(json.dumps(run.to_jsonable(res), indent=1), encoding="utf-8")
    print(f"wrote {out}")
    if args.write_docs:
        write_docs(render(res))
        print(f"updated {run.DOCS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
