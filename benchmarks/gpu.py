"""Per-checkpoint cost on CPU and on a GPU, side by side, and whether the values agree.

Two models, each measured layer by layer on ``--cpu-device`` (default ``cpu``) and on
``--device`` (default ``cuda``) with the same settings and seed:

* the PyTorch tutorial CIFAR-10 net (``benchmarks/real_models.py``) at default settings;
* a ResNet-18-sized CNN at 32x32 (the CIFAR variant of ResNet-18 written below:
  3x3 stem, BasicBlocks 64-128-256-512, two per stage), at reduced sample sizes
  (``RESNET_SETTINGS``: a residual block is not ``act(W x + b)``, so every metric is
  sampled, and sampled sensitivity costs one block forward per input per intervention).

Values must agree within their intervals: exact values (zero-width intervals) to 1e-9
bits, sampled ones by overlapping 95 % intervals (the two devices draw different random
streams, so the values differ by sampling noise only). Exit status 1 if any disagree, 2
if the device is missing (checked first, before anything is built).

    .venv/bin/python benchmarks/gpu.py                      # cpu vs cuda: benchmarks/gpu.json
    .venv/bin/python benchmarks/gpu.py --device cpu         # both columns on the CPU (a test)

The ResNet's columns stop adding layers once they have spent ``--budget-s`` seconds each
(default 100 wall seconds: the device column first, then the CPU column on the same
layers, skipping the rest once a layer's predicted time, from the device's time and the
slowdown seen so far, would overrun it), so that the whole run stays within about 5
minutes; the layers compared are listed in the output and the JSON.
"""

from __future__ import annotations

import argparse
import copy
import datetime as _dt
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: make `benchmarks` and the package importable
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from benchmarks import report  # noqa: E402
from benchmarks.real_models import TutorialNet  # noqa: E402

#: the ResNet's settings: sampled everywhere, sizes chosen to fit the 5-minute budget
RESNET_SETTINGS: dict[str, Any] = {
    "metrics": ["ei", "ei_parts", "sensitivity"],
    "bins": 4,  # 4 x 4-bin tables: the smallest budgets with valid intervals are 4x lower
    "interventions": 2**14,  # >= 32 per table cell (settings.MIN_PER_CELL)
    "sensitivity_interventions": 2**8,  # per input, >= 16 per table cell
    "cells": 2**10,
    "points_per_cell": 64,
}
EXACT_TOL = 1e-9  # bits: exact values are the same float64 computation on both columns


class BasicBlock(nn.Module):
    """torchvision's BasicBlock (3x3 conv - BN - ReLU - 3x3 conv - BN, plus shortcut)."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False),
                                          nn.BatchNorm2d(planes))  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18 for 32x32 inputs (11.2 M parameters at ``width=64``)."""

    def __init__(self, width: int = 64, classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        stages, in_planes = [], width
        for mult, stride in ((1, 1), (2, 2), (4, 2), (8, 2)):
            blocks = []
            for s in (stride, 1):
                blocks.append(BasicBlock(in_planes, width * mult, s))
                in_planes = width * mult
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.linear = nn.Linear(in_planes, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_on(model: nn.Module, device: torch.device, settings: dict[str, Any],
               names: list[str] | None = None,
               budget_s: float | None = None) -> dict[str, Any]:  # fmt: skip
    """Measure ``model``'s layers (or those in ``names``) on ``device``: per layer CPU
    and wall seconds, values and intervals; no new layer starts after ``budget_s`` wall
    seconds."""
    from causal_widgets.engine.layer_measure import measure_layer
    from causal_widgets.engine.settings import check_measure_keywords
    from causal_widgets.network.discovery import find_layers

    m = copy.deepcopy(model).to(device).eval()
    checked = check_measure_keywords({**settings, "device": str(device)}, where="measure()")
    layers = find_layers(m, torch.zeros(1, 3, 32, 32, device=device), in_range=(-1.0, 1.0))
    out: dict[str, Any] = {}
    start = time.perf_counter()
    for lyr in layers:
        if names is not None and lyr.name not in names:
            continue
        if budget_s is not None and out and time.perf_counter() - start > budget_s:
            break
        _sync(device)
        c0, w0 = time.process_time(), time.perf_counter()
        r = measure_layer(lyr, settings=checked)
        _sync(device)
        out[lyr.name] = {"cpu_s": time.process_time() - c0, "wall_s": time.perf_counter() - w0,
                         "n_in": r.n_in, "n_out": r.n_out, "values": r.metrics(),
                         "ci": {k: list(v) for k, v in r.ci.items()},
                         "method": dict(r.method)}  # fmt: skip
    return out


def agree(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    """Per metric of one layer: do the two devices' values agree within their intervals?"""
    rows = []
    for metric, va in a["values"].items():
        vb = b["values"].get(metric)
        (alo, ahi), (blo, bhi) = a["ci"][metric], b["ci"][metric]
        exact = a["method"].get(metric) == "exact" and b["method"].get(metric) == "exact"
        if vb is None:
            ok = False
        elif exact:
            ok = abs(va - vb) <= EXACT_TOL
        else:  # independent streams: the intervals must overlap
            ok = alo <= bhi and blo <= ahi
        rows.append({"metric": metric, "cpu": va, "device": vb, "cpu_ci": [alo, ahi],
                     "device_ci": [blo, bhi], "exact": exact, "agree": bool(ok)})  # fmt: skip
    return rows


def compare(name: str, model: nn.Module, settings: dict[str, Any], cpu: torch.device,
            dev: torch.device, budget_s: float | None) -> dict[str, Any]:  # fmt: skip
    """Device column first (layer by layer, within ``budget_s`` wall seconds), then the CPU
    column on the same layers while its predicted wall time stays within ``budget_s``."""
    on_dev = measure_on(model, dev, settings, budget_s=budget_s)
    cpu_budget_s = budget_s
    on_cpu: dict[str, Any] = {}
    spent = 0.0
    for lname in on_dev:
        if cpu_budget_s is not None and on_cpu:
            # predict this layer's CPU time from the device's and the slowdown so far:
            # one wide layer (a 9216 -> 512 block) must not overrun the budget alone
            slow = sum(c["wall_s"] for c in on_cpu.values()) / max(
                sum(on_dev[n]["wall_s"] for n in on_cpu), 1e-9)
            if spent + slow * on_dev[lname]["wall_s"] > cpu_budget_s:
                break
        on_cpu.update(measure_on(model, cpu, settings, names=[lname]))
        spent += on_cpu[lname]["wall_s"]
    layers = []
    for lname, d in on_dev.items():
        c = on_cpu.get(lname)
        layers.append({"layer": lname, "n_in": d["n_in"], "n_out": d["n_out"],
                       "device_wall_s": d["wall_s"], "device_cpu_s": d["cpu_s"],
                       "cpu_wall_s": None if c is None else c["wall_s"],
                       "cpu_cpu_s": None if c is None else c["cpu_s"],
                       "agreement": [] if c is None else agree(c, d)})  # fmt: skip
    both = [r for r in layers if r["cpu_wall_s"] is not None]
    cpu_wall = sum(r["cpu_wall_s"] for r in both)
    dev_wall = sum(r["device_wall_s"] for r in both)
    return {
        "model": name, "settings": settings, "layers": layers,
        "layers_compared": [r["layer"] for r in both],
        "cpu_wall_s": cpu_wall, "device_wall_s": dev_wall,
        "device_wall_s_all_layers": sum(r["device_wall_s"] for r in layers),
        "speedup_wall": cpu_wall / dev_wall if dev_wall > 0 else math.nan,
        "all_agree": all(a["agree"] for r in both for a in r["agreement"]),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda", help="the device column (default cuda)")
    ap.add_argument("--cpu-device", default="cpu", help="the reference column (default cpu)")
    ap.add_argument("--width", type=int, default=64, help="ResNet base width (64 = ResNet-18)")
    ap.add_argument("--budget-s", type=float, default=100.0,
                    help="the ResNet's wall-clock budget per column: no new layer after "
                         "this many seconds")
    ap.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # the smoke test
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("gpu.json"))
    args = ap.parse_args(argv)
    try:
        dev, cpu = torch.device(args.device), torch.device(args.cpu_device)
    except RuntimeError as err:
        print(f"gpu.py: --device/--cpu-device: {err}", file=sys.stderr)
        return 2
    for d in (dev, cpu):
        if d.type == "cuda" and not torch.cuda.is_available():
            print(f"gpu.py: device {d} was asked for but torch sees no CUDA device "
                  f"(torch {torch.__version__}, cuda build: {torch.version.cuda}). Run on a "
                  "GPU machine, or pass --device cpu to run both columns on the CPU.",
                  file=sys.stderr)  # fmt: skip
            return 2
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    tutorial_settings: dict[str, Any] = {}
    resnet_settings = dict(RESNET_SETTINGS)
    width = args.width
    if args.tiny:  # every code path in seconds: small widths and samples
        tutorial_settings = {"max_samples": 2**11}
        resnet_settings = {"metrics": ["ei", "ei_parts"], "bins": 4, "interventions": 2**10,
                           "cells": 2**5, "points_per_cell": 32}  # fmt: skip
        width = min(width, 4)
    torch.manual_seed(0)  # module initialisation draws from the global RNG
    models = {
        "tutorial_cifar_net": (TutorialNet(), tutorial_settings, None),
        f"resnet18_width{width}": (ResNet18(width), resnet_settings, args.budget_s),
    }
    res: dict[str, Any] = {
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "git_commit": report.git_commit(), "cpu": report.cpu_model(),
        "logical_cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__, "python": platform.python_version(),
        "device": str(dev), "cpu_device": str(cpu),
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else str(dev),
        "load_avg_start": list(os.getloadavg()), "models": [],
    }  # fmt: skip
    for name, (model, settings, budget) in models.items():
        r = compare(name, model, settings, cpu, dev, budget)
        res["models"].append(r)
        print(f"{name}: {len(r['layers_compared'])}/{len(r['layers'])} layers compared; wall "
              f"{cpu} {r['cpu_wall_s']:.2f} s, {dev} {r['device_wall_s']:.2f} s "
              f"({r['speedup_wall']:.2f}x); values agree: {r['all_agree']}",
              flush=True)  # fmt: skip
        for lay in r["layers"]:
            bad = [a["metric"] for a in lay["agreement"] if not a["agree"]]
            cw = "-" if lay["cpu_wall_s"] is None else f"{lay['cpu_wall_s']:.2f}"
            flag = f"  DISAGREE: {bad}" if bad else ""
            print(f"    {lay['layer']:>10} {lay['n_in']:>5}->{lay['n_out']:<4} {cpu} {cw} s, "
                  f"{dev} {lay['device_wall_s']:.2f} s{flag}")  # fmt: skip
    res["load_avg_end"] = list(os.getloadavg())
    res["command"] = "python benchmarks/gpu.py " + " ".join(
        argv if argv is not None else sys.argv[1:])  # fmt: skip
    args.out.write_text(json.dumps(res, indent=1))
    print(f"wrote {args.out}")
    return 0 if all(m["all_agree"] for m in res["models"]) else 1


if __name__ == "__main__":
    sys.exit(main())
