"""What one checkpoint of a real model costs to measure, next to one epoch of training it.

For the PyTorch tutorial CIFAR-10 net, an MLP 784-256-128-10 (ReLU) and an MLP block
Linear-LayerNorm-GELU-Linear, this script

* trains the model for one epoch on 10,000 random inputs (seeded; the CIFAR tutorial's
  settings: SGD lr 0.001, momentum 0.9, batch 4, cross-entropy on random labels) and
  records the CPU time (``time.process_time``) of that epoch;
* measures the trained checkpoint with ``cw.measure``'s code path at default settings
  (``find_layers`` once, then ``measure_layer`` per layer with the same checked settings,
  exactly what ``measure_layers`` does) and records the CPU time per layer;
* profiles a second measurement (cProfile) and splits its time into phases (drawing the
  interventions, forward passes, binning, row codes, the estimators, the exact engine);
* checks values against truths where they exist (a 2x2 max pool's EI, EI_parts and
  sensitivity by enumeration of its bins; a dense layer's exact EI_parts inside a sampled
  interval).

One torch thread; CPU time is the primary measure (the machine may be shared: the load
average is recorded at start and end).

    .venv/bin/python benchmarks/real_models.py            # full: benchmarks/real_models.json
    .venv/bin/python benchmarks/real_models.py --quick    # max_samples 2**16, 2,000 images
    .venv/bin/python benchmarks/real_models.py --models cifar --no-profile

``--quick`` trains on 2,000 images and scales that epoch's CPU time by 5 for the ratio; it
measures at ``max_samples=2**16`` (the default cap is 2**20), so its ratio is not the
target's.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as _dt
import itertools
import json
import math
import os
import platform
import pstats
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: make `benchmarks` and the package importable
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from benchmarks import report  # noqa: E402

TRAIN_IMAGES = 10_000
TRAIN = {"optimizer": "SGD", "lr": 0.001, "momentum": 0.9, "batch": 4,
         "loss": "cross-entropy", "labels": "random, 10 classes"}  # fmt: skip


# ------------------------------------------------------------------------ models


class TutorialNet(nn.Module):
    """The PyTorch "Training a classifier" CIFAR-10 net, as the tutorial writes it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


def mlp_784() -> nn.Module:
    """MLP 784-256-128-10 with ReLU (the MNIST-tutorial shape)."""
    return nn.Sequential(
        nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
        nn.Linear(128, 10),
    )  # fmt: skip


def mlp_block(d: int = 64, hidden: int = 256) -> nn.Module:
    """A transformer-style MLP block: Linear(d, 4d) - LayerNorm - GELU - Linear(4d, d)."""
    return nn.Sequential(nn.Linear(d, hidden), nn.LayerNorm(hidden), nn.GELU(),
                         nn.Linear(hidden, d))  # fmt: skip


#: name -> (constructor, one input's shape, intervention range, what it is)
MODELS: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...], tuple[float, float], str]] = {
    "cifar": (TutorialNet, (3, 32, 32), (-1.0, 1.0),
              "PyTorch tutorial CIFAR-10 net (conv-pool-conv-pool-fc120-fc84-fc10)"),
    "mlp": (mlp_784, (1, 28, 28), (0.0, 1.0), "MLP 784-256-128-10, ReLU"),
    "block": (mlp_block, (64,), (-1.0, 1.0),
              "MLP block Linear(64,256)-LayerNorm-GELU-Linear(256,64)"),
}  # fmt: skip


# ------------------------------------------------------------------------ training


def train_one_epoch(model: nn.Module, shape: tuple[int, ...], in_range: tuple[float, float],
                    images: int, seed: int) -> dict[str, Any]:  # fmt: skip
    """One epoch of the tutorial's SGD on ``images`` random inputs; its CPU and wall time."""
    gen = torch.Generator().manual_seed(seed)
    lo, hi = in_range
    x = lo + (hi - lo) * torch.rand((images, *shape), generator=gen)
    n_classes = 10
    y = torch.randint(0, n_classes, (images,), generator=gen)
    opt = torch.optim.SGD(model.parameters(), lr=TRAIN["lr"], momentum=TRAIN["momentum"])
    loss_fn = nn.CrossEntropyLoss()
    order = torch.randperm(images, generator=gen)
    batch = TRAIN["batch"]
    model.train()
    c0, w0 = time.process_time(), time.perf_counter()
    for s in range(0, images, batch):
        idx = order[s : s + batch]
        opt.zero_grad()
        out = model(x[idx])
        loss = loss_fn(out[:, :n_classes], y[idx])
        loss.backward()
        opt.step()
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    model.eval()
    return {"images": images, "cpu_s": cpu, "wall_s": wall, "final_loss": float(loss.detach())}


# ------------------------------------------------------------------------ measuring


def measure_checkpoint(model: nn.Module, example: torch.Tensor, in_range: tuple[float, float],
                       settings: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """``measure_layers``' code path with per-layer CPU times: discovery, then each layer."""
    from causal_widgets.engine.layer_measure import measure_layer
    from causal_widgets.engine.settings import check_measure_keywords
    from causal_widgets.network.discovery import find_layers

    c0 = time.process_time()
    checked = check_measure_keywords(dict(settings), where="measure()")
    layers = find_layers(model, example, in_range=in_range)
    discovery = time.process_time() - c0
    rows, results = [], {}
    for lyr in layers:
        c1, w1 = time.process_time(), time.perf_counter()
        r = measure_layer(lyr, settings=checked)
        rows.append({
            "layer": lyr.name, "n_in": r.n_in, "n_out": r.n_out,
            "cpu_s": time.process_time() - c1, "wall_s": time.perf_counter() - w1,
            "method": dict(r.method), "samples": dict(r.samples),
            "values": r.metrics(), "ci": {k: list(v) for k, v in r.ci.items()},
            "whole_ei": {k: r.settings["whole_ei"].get(k) for k in
                         ("cells", "n_cells", "points_per_cell", "samples")},
            "warnings": len(r.warnings),
        })  # fmt: skip
        results[lyr.name] = (lyr, r)
    total = time.process_time() - c0
    return {"cpu_s": total, "discovery_cpu_s": discovery, "layers": rows}, results


#: phases of a profile: (name, [(file suffix, function name, "cum" | "tot"), ...])
PHASES: list[tuple[str, list[tuple[str, str, str]]]] = [
    ("discovery (tracing, ranges)", [("network/discovery.py", "find_layers", "cum")]),
    ("draw interventions (torch.rand/randint)",
     [("layer_measure.py", "uniform", "cum"), ("~", "<built-in method torch.randint>", "tot")]),
    ("build inputs (sampler glue)", [("layer_measure.py", "cells", "tot"),
                                     ("layer_measure.py", "pairs", "tot"),
                                     ("layer_measure.py", "single", "tot")]),
    ("forward pass", [("engine/layer.py", "forward_flat", "cum")]),
    ("binning", [("engine/binning.py", "bin_index", "cum")]),
    ("output-tuple codes", [("engine/information.py", "encode_rows", "cum"),
                            ("engine/tallies.py", "codes", "cum")]),
    ("whole-EI accumulate (minus codes)", [("engine/whole_ei.py", "update", "cum")]),
    ("whole-EI compute", [("engine/whole_ei.py", "compute", "cum")]),
    ("exact engine", [("engine/exact.py", "exact_pair_mi", "cum")]),
    ("sampled pairwise", [("engine/pairwise.py", "update", "cum"),
                          ("engine/pairwise.py", "update_single", "cum"),
                          ("engine/pairwise.py", "compute", "cum")]),
]  # fmt: skip


def phase_split(stats: pstats.Stats) -> dict[str, float]:
    """CPU seconds per phase of a profile (see :data:`PHASES`); "other" is the rest."""
    raw = stats.stats  # type: ignore[attr-defined]
    total = max(v[3] for v in raw.values())  # the outermost call's cumulative time

    def pick(file_suffix: str, func: str, kind: str) -> float:
        out = 0.0
        for (fname, _line, fn), (_cc, _nc, tt, ct, _callers) in raw.items():
            if fn == func and (fname.endswith(file_suffix) or fname == file_suffix):
                out += ct if kind == "cum" else tt
        return out

    out = {name: sum(pick(*spec) for spec in specs) for name, specs in PHASES}
    # the row codes are called inside WholeEI.update: report them once
    out["whole-EI accumulate (minus codes)"] -= out["output-tuple codes"]
    out["other"] = total - sum(out.values())
    out["total (profiled)"] = total
    return out


def profile_measure(fn: Callable[[], Any], top: int = 12) -> tuple[dict[str, float], list[str]]:
    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    stats = pstats.Stats(prof)
    raw = stats.stats  # type: ignore[attr-defined]
    heavy = sorted(raw.items(), key=lambda kv: -kv[1][2])[:top]
    lines = [f"{v[2]:8.3f} s tottime  {k[2]} ({Path(k[0]).name}:{k[1]})" for k, v in heavy]
    return phase_split(stats), lines


# ------------------------------------------------------------------------ truths


def _entropy_bits(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


def maxpool_truth(k: int, bins: int, held_bin: int | None) -> dict[str, float]:
    """EI, EI_parts, sensitivity of ``Y = max(X_1..X_k)`` over ``bins`` equal bins of one
    shared range, by enumeration: the bin of the max is the max of the bins, and each
    input's bin is uniform. ``held_bin``: the bin of 0 (sensitivity holds the others at 0;
    None when 0 is outside the range)."""
    states = np.array(list(itertools.product(range(bins), repeat=k)))
    ybin = states.max(axis=1)
    p_y = np.bincount(ybin, minlength=bins) / len(states)
    ei = _entropy_bits(p_y)  # Y is a function of X: I(X; Y) = H(Y)
    joint = np.zeros((bins, bins))
    np.add.at(joint, (states[:, 0], ybin), 1.0 / len(states))
    mi_one = _entropy_bits(joint.sum(0)) + _entropy_bits(joint.sum(1)) - _entropy_bits(joint)
    out = {"ei": ei, "ei_parts": k * mi_one}
    if held_bin is not None:  # Y = max(X_i, bin of 0): the bins below it merge
        ys = np.maximum(np.arange(bins), held_bin)
        out["sensitivity"] = k * _entropy_bits(np.bincount(ys, minlength=bins) / bins)
    return out


def check_values(results: dict[str, Any], seed: int) -> list[dict[str, Any]]:
    """Every truth this model offers: max pools by enumeration, one dense layer's exact
    EI_parts inside a sampled 95 % interval (2**17 interventions)."""
    from causal_widgets.engine.layer_measure import measure_layer

    checks: list[dict[str, Any]] = []
    for name, (lyr, r) in results.items():
        kind = lyr.extra.get("kind") if isinstance(lyr.extra, dict) else None
        s = r.settings
        same = tuple(s["in_range"]) == tuple(s["out_range"]) and s["in_bins"] == s["out_bins"]
        if kind == "pool" and r.n_out == 1 and same and getattr(lyr.fn, "kind", None) == "max":
            lo, hi = s["in_range"]
            held = None
            if lo <= 0.0 <= hi:
                held = min(int((0.0 - lo) / (hi - lo) * s["in_bins"]), s["in_bins"] - 1)
            truth = maxpool_truth(r.n_in, s["in_bins"], held)
            for metric, t in truth.items():
                lo_ci, hi_ci = r.ci[metric]
                checks.append({"layer": name, "metric": metric, "truth": t,
                               "value": getattr(r, metric), "ci": [lo_ci, hi_ci],
                               "inside": bool(lo_ci - 1e-9 <= t <= hi_ci + 1e-9),
                               "how": "enumeration of the max of the input bins",
                               "path": "default"})  # fmt: skip
    dense = [(n, lr) for n, lr in results.items() if lr[1].method.get("ei_parts") == "exact"]
    if dense:
        name, (lyr, r) = min(dense, key=lambda kv: kv[1][1].n_in * kv[1][1].n_out)
        sampled = measure_layer(lyr, metrics=["ei_parts"], method="sampled",
                                interventions=2**17, seed=seed + 1)  # fmt: skip
        lo_ci, hi_ci = sampled.ci["ei_parts"]
        checks.append({"layer": name, "metric": "ei_parts", "truth": r.ei_parts,
                       "value": sampled.ei_parts, "ci": [lo_ci, hi_ci],
                       "inside": bool(lo_ci <= r.ei_parts <= hi_ci),
                       "how": "exact engine vs sampled (2**17 interventions)",
                       # the default measures this layer exactly: this checks the sampled
                       # estimator (used for non-dense layers), not the default's values
                       "path": "sampled estimator"})  # fmt: skip
    return checks


# ------------------------------------------------------------------------ running


def machine() -> dict[str, Any]:
    import causal_widgets

    return {
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "cpu": report.cpu_model(),
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "causal_widgets": causal_widgets.__version__,
        "git_commit": report.git_commit(),
        "load_avg_start": list(os.getloadavg()),
    }


def run_model(key: str, cfg: dict[str, Any], profile: bool) -> dict[str, Any]:
    build, shape, in_range, what = MODELS[key]
    torch.manual_seed(cfg["seed"])  # nn.Module initialisation draws from the global RNG
    model = build()
    train = train_one_epoch(model, shape, in_range, cfg["images"], cfg["seed"])
    train_10k = train["cpu_s"] * TRAIN_IMAGES / cfg["images"]
    example = torch.zeros((1, *shape))
    meas, results = measure_checkpoint(model, example, in_range, cfg["settings"])
    out: dict[str, Any] = {
        "model": key, "what": what, "input_shape": list(shape), "in_range": list(in_range),
        "train": train, "train_cpu_s_10k_images": train_10k,
        "measure": meas, "ratio_measure_to_train": meas["cpu_s"] / train_10k,
    }  # fmt: skip
    out["checks"] = check_values(results, cfg["seed"])
    if profile:
        phases, top = profile_measure(lambda: measure_checkpoint(model, example, in_range,
                                                                 cfg["settings"]))  # fmt: skip
        out["phases_cpu_s"] = phases
        out["profile_top"] = top
    return out


CONFIGS = {
    "full": {"images": TRAIN_IMAGES, "settings": {}, "seed": 0},
    "quick": {"images": 2_000, "settings": {"max_samples": 2**16}, "seed": 0},
    # the smoke test's size: every code path, seconds
    "tiny": {"images": 64, "settings": {"max_samples": 2**11}, "seed": 0},
}


def render(res: dict[str, Any]) -> str:
    """The markdown block of docs/benchmarks.md ("Real models: cost per checkpoint")."""
    lines = [
        f"Run `{res['config']}` on {res['machine']['date']} (commit "
        f"`{res['machine']['git_commit']}`), one torch thread, CPU seconds "
        f"(`time.process_time`); load average {res['machine']['load_avg_start']} at start, "
        f"{res['machine']['load_avg_end']} at end. Training: one epoch of "
        f"{TRAIN_IMAGES} random inputs (SGD lr {TRAIN['lr']}, momentum {TRAIN['momentum']}, "
        f"batch {TRAIN['batch']}, cross-entropy).",
        "",
        "| model | measure CPU s (before this change) | train 1 epoch CPU s | ratio "
        "| target <= 1 (stretch 0.2) | values vs truth |",
        "|---|---|---|---|---|---|",
    ]  # fmt: skip
    base = res.get("baseline", {})
    for m in res["models"]:
        ok = sum(c["inside"] for c in m["checks"] if c["path"] == "default")
        n_ok = sum(c["path"] == "default" for c in m["checks"])
        before = base.get(m["model"], {}).get("measure_cpu_s")
        was = f" ({before:.2f})" if before is not None else ""
        lines.append(
            f"| {m['what']} | {m['measure']['cpu_s']:.2f}{was} | "
            f"{m['train_cpu_s_10k_images']:.2f} "
            f"| {m['ratio_measure_to_train']:.2f}x | "
            f"{'yes' if m['ratio_measure_to_train'] <= 1 else 'no'} | "
            + (f"{ok}/{n_ok} inside their 95 % interval |" if n_ok else "no truth known |")
        )
    for m in res["models"]:
        per_layer = ", ".join(f"{r['layer']} ({r['n_in']}->{r['n_out']}) {r['cpu_s']:.2f}"
                              for r in m["measure"]["layers"])  # fmt: skip
        lines += ["", f"{m['model']}: per layer (CPU s): {per_layer}; discovery "
                      f"{m['measure']['discovery_cpu_s']:.2f}"]  # fmt: skip
        if "phases_cpu_s" in m:
            ph = m["phases_cpu_s"]
            lines.append(f"{m['model']}: phases (profiled, CPU s): " + ", ".join(
                f"{k} {v:.2f}" for k, v in ph.items() if k != "total (profiled)"
            ) + f"; total {ph['total (profiled)']:.2f}")  # fmt: skip
    sampled = [c for m in res["models"] for c in m["checks"] if c["path"] != "default"]
    if sampled:
        lines += ["", "The sampled EI_parts estimator on the smallest dense layer (2**17 "
                  "interventions) against the exact engine: " + "; ".join(
                      f"{c['layer']}: {c['value']:.4f} [{c['ci'][0]:.4f}, {c['ci'][1]:.4f}] vs "
                      f"exact {c['truth']:.4f} ({'inside' if c['inside'] else 'OUTSIDE'})"
                      for c in sampled)]  # fmt: skip
    cmds = [c["command"] for c in res.get("commands", [])] or [res["command"]]
    lines += ["", "Command: " + "; ".join(f"`{c}`" for c in cmds)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="max_samples 2**16, 2,000 images")
    ap.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # the smoke test
    ap.add_argument("--models", default="cifar,mlp,block",
                    help=f"comma-separated subset of {', '.join(MODELS)}")
    ap.add_argument("--no-profile", action="store_true", help="skip the profiled pass")
    ap.add_argument("--out", type=Path, default=None,
                    help="results JSON (default: next to this file)")
    ap.add_argument("--append", action="store_true",
                    help="add these models to --out's existing results (same config)")
    ap.add_argument("--baseline", type=Path, default=None,
                    help="a results JSON of the code before a change: recorded beside these")
    ap.add_argument("--write-docs", action="store_true",
                    help="rewrite this config's block of docs/benchmarks.md")  # fmt: skip
    args = ap.parse_args(argv)
    keys = [k.strip() for k in args.models.split(",") if k.strip()]
    bad = [k for k in keys if k not in MODELS]
    if bad or not keys:
        ap.error(f"--models: unknown {bad or keys}; choose from {', '.join(MODELS)}")
    name = "tiny" if args.tiny else "quick" if args.quick else "full"
    cfg = CONFIGS[name]
    torch.set_num_threads(1)
    out = args.out or Path(__file__).with_name(
        "real_models.json" if name == "full" else f"real_models-{name}.json")  # fmt: skip
    res: dict[str, Any] = {"config": name, "settings": cfg["settings"], "training": TRAIN,
                           "machine": machine(), "models": [], "commands": []}  # fmt: skip
    if args.append and out.exists():  # runs of one model each, kept under a minute apiece
        res = json.loads(out.read_text())
        if res.get("config") != name:
            ap.error(f"--append: {out} holds config {res.get('config')!r}, not {name!r}")
        res["models"] = [m for m in res["models"] if m["model"] not in keys]
    for k in keys:
        r = run_model(k, cfg, profile=not args.no_profile)
        res["models"].append(r)
        print(f"{k}: measure {r['measure']['cpu_s']:.2f} CPU s, train (10k images) "
              f"{r['train_cpu_s_10k_images']:.2f} CPU s, ratio {r['ratio_measure_to_train']:.2f}x; "
              f"checks inside: {sum(c['inside'] for c in r['checks'])}/{len(r['checks'])}",
              flush=True)  # fmt: skip
        for row in r["measure"]["layers"]:
            print(f"    {row['layer']:>8} {row['n_in']:>4}->{row['n_out']:<4} "
                  f"{row['cpu_s']:7.2f} s "
                  f"{row['whole_ei']}")  # fmt: skip
        for ph, v in r.get("phases_cpu_s", {}).items():
            print(f"    phase {ph:<42} {v:7.2f} s")
    res["machine"]["load_avg_end"] = list(os.getloadavg())
    res["command"] = "python benchmarks/real_models.py " + " ".join(argv if argv is not None
                                                                   else sys.argv[1:])  # fmt: skip
    res.setdefault("commands", []).append(
        {"command": res["command"], "models": keys, "date": machine()["date"],
         "load_avg_end": res["machine"]["load_avg_end"]})  # fmt: skip
    if args.baseline is not None:
        base = json.loads(args.baseline.read_text())
        res.setdefault("baseline", {})
        for m in base["models"]:
            res["baseline"][m["model"]] = {
                "measure_cpu_s": m["measure"]["cpu_s"],
                "train_cpu_s_10k_images": m["train_cpu_s_10k_images"],
                "layers_cpu_s": {r["layer"]: r["cpu_s"] for r in m["measure"]["layers"]},
                "phases_cpu_s": m.get("phases_cpu_s"),
                "values": {r["layer"]: r["values"] for r in m["measure"]["layers"]},
                "load_avg": [base["machine"]["load_avg_start"],
                             base["machine"].get("load_avg_end")],
                "note": base.get("note", ""),
            }  # fmt: skip
    out.write_text(json.dumps(res, indent=1, default=_json_default))
    print(f"wrote {out}")
    if args.write_docs:
        tag = "real-models" if name == "full" else f"real-models-{name}"
        report.replace_block(REPO / "docs" / "benchmarks.md", f"<!-- {tag}:begin -->",
                             f"<!-- {tag}:end -->", render(res),
                             "Real models: cost per checkpoint")  # fmt: skip
    failed = [c for m in res["models"] for c in m["checks"] if not c["inside"]]
    for c in failed:
        print(f"CHECK FAILED ({c['path']}): {c}")
    # the exit status judges the default measurement's values only
    return 1 if any(c["path"] == "default" for c in failed) else 0


def _json_default(v: Any) -> Any:
    if isinstance(v, (np.generic,)):
        return v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return str(v)


if __name__ == "__main__":
    sys.exit(main())
