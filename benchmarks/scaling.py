"""How the cost of measuring grows: layers x width x bins x samples, and training, on this CPU.

Usage (from the repository root)::

    .venv/bin/python benchmarks/scaling.py                  # full: benchmarks/scaling.json
    .venv/bin/python benchmarks/scaling.py --quick --out /tmp/s.json   # tiny smoke run

What is measured (one torch thread, ``time.process_time`` = CPU time of this process,
the minimum over repeats; wall time is kept too), all with ``causal_widgets.measure_layer``
on ``Sequential(Linear(n, m, bias=False), Sigmoid())`` layers whose weights are drawn as in
``benchmarks/run.py`` ("trained-like": ``N(0, (4 / sqrt(n))^2)``), 8 bins unless stated:

* ``exact``: exact EI_parts and exact sensitivity (the dense engine, numpy) vs ``n x m``
  and vs bins;
* ``sampled``: sampled EI_parts vs samples and width, and beside it the same work done by
  a few lines of plain torch, timed piece by piece: drawing the inputs, the forward pass
  (matmul + sigmoid), binning both sides, and counting (the one-hot build and the int8
  GEMM ``torch._int_mm``, as in ``benchmarks/floor.py``). What the library spends beyond
  those pieces is reported as its remainder (batch-means groups, the ``Y^T Y`` table for
  the CI, checks, ``compute()``);
* ``whole``: whole EI (cell-conditional, ``cells x points_per_cell``) vs samples, split into
  drawing + forward + binning (plain torch, timed) and the estimator (the remainder);
* ``training``: training epochs of the paper's Iris 4-5-5-3 and 25-6-6-6-5 MLPs and of two
  bigger models (an MLP 784-256-256-10 and a small CNN), with ``causal_widgets.training.models``;
* ``models``: one checkpoint of each model measured as ``reproduce.py`` measures it
  (``find_layers`` + ``measure_layer`` per layer, whole EI from 2**17 samples as 4096 cells
  of 32 points), split into the exact engine and the sampled part per layer, and the
  number of torch operator calls (from ``torch.profiler``; used for the GPU estimate);
* ``memory``: peak resident memory of single tasks, each in a fresh child process;
* ``fits``: power laws fitted with numpy (:func:`fit_power_law`);
* ``study``: the arithmetic of a 1000-run study on 16 GPUs from the numbers above, with
  the GPU-side numbers computed from stated *assumptions* (no GPU was measured).

Timing is never asserted by the tests: the machine is shared with other jobs.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: make `benchmarks` and the package importable
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from benchmarks.report import cpu_model  # noqa: E402

#: scale of the "trained-like" weights, as in benchmarks/run.py: N(0, (4 / sqrt(fan_in))^2)
WEIGHT_SCALE = 4.0
#: whole-EI plan of reproduce.py's engine_settings (2**17 samples: 4096 cells x 32 points)
REPRO_CELLS, REPRO_PPC = 2**12, 32
#: every scalar metric, without "nodes" (node-level EI; see the memory section)
NO_NODES = ["ei", "ei_parts", "sensitivity", "degeneracy", "integration"]

#: Assumptions for the GPU side of the study estimate (NOT measured: no GPU in this task).
GPU_ASSUMPTIONS: dict[str, Any] = {
    "gpu": "NVIDIA H200 SXM (H100-class compute, HBM3e)",
    "fp32_peak_flops": 67e12,  # non-tensor FP32, H100/H200 SXM data sheet
    "int8_peak_ops": 1979e12,  # dense INT8 tensor core, H100/H200 SXM data sheet
    "hbm_bytes_per_s": 4.8e12,  # H200 (H100 SXM: 3.35e12)
    "derate": 0.25,  # fraction of peak a real kernel of this kind is assumed to reach
    "op_wall_s": 10e-6,  # host-side cost of one torch op on a GPU (dispatch + launch, sync)
    "op_gpu_busy_s": 3e-6,  # GPU time one tiny kernel occupies (sets how many runs share)
    "bytes_per_sample_element": 64,  # bytes moved per (sample, neuron) by rand/bin/estimator
    "cores_per_gpu": 16,  # host cores per GPU (the project's lent H200 machine: 16)
    "host_mem_per_gpu_gib": 128,  # host RAM per GPU (the lent machine: 128 GiB)
    "gpu_mem_gib": 139,  # usable H200 memory
    "host_core_speed": "same per-core speed as this benchmark's CPU",
}


@dataclass(frozen=True)
class Config:
    """Sizes of one scaling run."""

    name: str
    repeats: int = 3
    exact_layers: tuple[tuple[int, int], ...] = (
        (4, 5), (5, 5), (5, 3), (25, 6), (6, 6), (6, 5), (100, 50), (256, 10), (256, 256),
        (784, 256),
    )  # fmt: skip
    exact_bins: tuple[int, ...] = (8, 16, 32)
    exact_bins_layers: tuple[tuple[int, int], ...] = ((4, 5), (25, 6), (100, 50), (256, 256))
    exact_init_layers: tuple[tuple[int, int], ...] = ((784, 256),)  # also at the paper's init
    single_run_above: int = 50_000  # n*m (x bins/8) above which a timing runs once
    sampled: dict[str, tuple[int, ...]] = field(
        default_factory=lambda: {
            "4x5": (10**4, 10**5, 10**6),
            "25x6": (10**4, 10**5, 10**6),
            "100x50": (10**4, 10**5, 10**6),
            "784x256": (10**4,),
        }
    )
    whole: dict[str, tuple[int, ...]] = field(
        default_factory=lambda: {
            "4x5": (10**4, 10**5, 10**6),
            "25x6": (10**4, 10**5, 10**6),
            "100x50": (10**4, 10**5, 10**6),
            "256x10": (10**4, 10**5, 10**6),
            "256x256": (10**4, 10**5),
            "784x256": (10**4, 10**5),
        }
    )
    whole_ppc: int = REPRO_PPC
    train_epochs_small: int = 20  # Iris / embedded digits: full epochs timed
    train_steps: dict[str, int] = field(
        default_factory=lambda: {"mnist_paper": 500, "mlp784": 300, "cnn": 200}
    )
    eval_examples: int | None = None  # cap on synthetic train/test sets (None: full size)
    models: tuple[str, ...] = ("iris", "digits", "mlp784", "cnn")
    nodes_models: tuple[str, ...] = ("iris", "digits")  # also measured with node-level EI
    model_repeats: int = 2
    memory: tuple[dict, ...] = (
        {"label": "4x5 layer, reproduce.py settings (all metrics incl. nodes)",
         "task": "layer", "n": 4, "m": 5, "metrics": None},
        {"label": "25x6 layer, reproduce.py settings (all metrics incl. nodes)",
         "task": "layer", "n": 25, "m": 6, "metrics": None},
        {"label": "25x6 layer, all metrics but nodes", "task": "layer", "n": 25, "m": 6,
         "metrics": NO_NODES},
        {"label": "32x32 layer, all metrics incl. nodes", "task": "layer", "n": 32, "m": 32,
         "metrics": None},
        {"label": "784x256 layer, exact EI_parts + sensitivity", "task": "layer", "n": 784,
         "m": 256, "metrics": ["ei_parts", "sensitivity"]},
        {"label": "784x256 layer, whole EI 2**17 samples", "task": "layer", "n": 784,
         "m": 256, "metrics": ["ei"]},
        {"label": "784x256 layer, sampled EI_parts 10**4 samples", "task": "layer", "n": 784,
         "m": 256, "metrics": ["ei_parts"], "method": "sampled", "samples": 10**4},
        {"label": "MLP 784-256-256-10 checkpoint, all metrics but nodes", "task": "model",
         "model": "mlp784", "metrics": NO_NODES},
        {"label": "small CNN checkpoint, all metrics but nodes", "task": "model",
         "model": "cnn", "metrics": NO_NODES},
    )  # fmt: skip
    memory_cap_gib: float = 8.0  # address-space cap of each memory child (shared machine)
    profile_ops: bool = True


CONFIGS = {
    "full": Config("full"),
    "quick": Config(
        "quick",
        repeats=1,
        exact_layers=((4, 5), (25, 6), (40, 20)),
        exact_bins=(8, 16),
        exact_bins_layers=((4, 5), (25, 6)),
        exact_init_layers=((25, 6),),
        sampled={"4x5": (2048, 8192), "25x6": (2048,)},  # >= 32 per 8x8 table cell
        whole={"4x5": (2000, 8000), "25x6": (2000,)},
        train_epochs_small=1,
        train_steps={"mnist_paper": 5, "mlp784": 3, "cnn": 3},
        eval_examples=500,
        models=("iris",),
        nodes_models=("iris",),
        model_repeats=1,
        memory=(
            {"label": "4x5 layer, all metrics but nodes", "task": "layer", "n": 4, "m": 5,
             "metrics": NO_NODES},
        ),
        memory_cap_gib=4.0,
    ),
}

# the models of the study: (a) the paper's, (b) bigger ones
MODEL_SPECS: dict[str, dict[str, Any]] = {
    "iris": {"sizes": [4, 5, 5, 3], "n_train": 100, "n_test": 50, "batch": 10,
             "data": "scikit-learn Iris (causal_widgets.training.data.load_iris_data)"},
    "digits": {"sizes": [25, 6, 6, 6, 5], "n_train": 676, "n_test": 225, "batch": 50,
               "data": "embedded 5x5 digits 0-4 (causal_widgets.training.data.load_digits_data)"},
    "mnist_paper": {"sizes": [25, 6, 6, 6, 5], "n_train": 25_000, "n_test": 5_596,
                    "batch": 50, "data": "synthetic stand-in of the paper's 5x5 MNIST 0-4 "
                    "(same shapes; values do not change the cost)"},
    "mlp784": {"sizes": [784, 256, 256, 10], "n_train": 60_000, "n_test": 10_000,
               "batch": 50, "data": "synthetic stand-in of MNIST 28x28 (same shapes)"},
    "cnn": {"sizes": None, "n_train": 60_000, "n_test": 10_000, "batch": 50,
            "data": "synthetic stand-in of MNIST 28x28 (same shapes)",
            "arch": "Conv2d(1,8,5)+ReLU, MaxPool2d(2), Conv2d(8,16,5)+ReLU, MaxPool2d(2), "
                    "Flatten, Linear(256,10)+Sigmoid"},
}  # fmt: skip


# ----------------------------------------------------------------------------- helpers


def set_threads() -> None:
    torch.set_num_threads(1)
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(1)


def make_layer(n_in: int, n_out: int, seed: int = 0, init: str = "trained-like") -> nn.Sequential:
    """``Sequential(Linear(n_in, n_out, bias=False), Sigmoid())`` with seeded weights:
    ``"trained-like"`` ``N(0, (4 / sqrt(n_in))^2)`` (as benchmarks/run.py) or ``"paper"``
    ``U(+-1 / sqrt(n_in))`` (the paper's initialisation)."""
    gen = torch.Generator().manual_seed(1000 * n_in + n_out + seed)
    lin = nn.Linear(n_in, n_out, bias=False)
    with torch.no_grad():
        if init == "trained-like":
            w = torch.randn((n_out, n_in), generator=gen) * (WEIGHT_SCALE / math.sqrt(n_in))
        elif init == "paper":
            w = (torch.rand((n_out, n_in), generator=gen) * 2 - 1) / math.sqrt(n_in)
        else:
            raise ValueError(f"init={init!r}: use 'trained-like' or 'paper'.")
        lin.weight.copy_(w)
    return nn.Sequential(lin, nn.Sigmoid())


def small_cnn(seed: int = 0) -> nn.Sequential:
    """The 'small CNN' of the study: two 5x5 conv layers with max pooling, one linear head."""
    gen = torch.Generator().manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(1, 8, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(256, 10), nn.Sigmoid(),
    )  # fmt: skip
    with torch.no_grad():  # seeded U(+-1/sqrt(fan_in)), zero bias: no global RNG
        for mod in net:
            if isinstance(mod, (nn.Conv2d, nn.Linear)):
                fan_in = mod.weight[0].numel()
                w = torch.rand(mod.weight.shape, generator=gen) * 2 - 1
                mod.weight.copy_(w / math.sqrt(fan_in))
                mod.bias.zero_()
    return net


#: trained weights from a reproduction run, where present (``python -m causal_widgets
#: reproduce iris|digits --out runs/...``): the end of run 0
TRAINED = {"iris": REPO / "runs" / "iris" / "run_0" / "checkpoint.pt",
           "digits": REPO / "runs" / "digits" / "run_0" / "checkpoint.pt"}  # fmt: skip


def weight_kinds(name: str) -> list[str]:
    """``paper`` (initialisation), ``trained-like`` and, where a checkpoint exists, ``trained``."""
    path = TRAINED.get(name)
    return ["paper", "trained-like"] + (["trained"] if path is not None and path.exists() else [])


def build_model(name: str, weights: str = "paper", seed: int = 0) -> nn.Module:
    """A model of :data:`MODEL_SPECS`; ``weights="trained-like"`` redraws every weight as
    ``N(0, (4 / sqrt(fan_in))^2)`` (larger weights: more harmonics in the exact engine and
    more distinct output tuples, i.e. the slower case); ``"trained"`` loads the weights
    of :data:`TRAINED` (Iris, digits)."""
    from causal_widgets.training.models import make_mlp

    spec = MODEL_SPECS[name]
    model = small_cnn(seed) if spec["sizes"] is None else make_mlp(spec["sizes"], seed=seed)
    if weights == "trained":
        state = torch.load(TRAINED[name], map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
    elif weights == "trained-like":
        gen = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            for mod in model.modules():
                if isinstance(mod, (nn.Conv2d, nn.Linear)):
                    fan_in = mod.weight[0].numel()
                    w = torch.randn(mod.weight.shape, generator=gen)
                    mod.weight.copy_(w * (WEIGHT_SCALE / math.sqrt(fan_in)))
    elif weights != "paper":
        raise ValueError(f"weights={weights!r}: use 'paper', 'trained-like' or 'trained'.")
    return model


def example_input(name: str, n: int = 8) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    spec = MODEL_SPECS[name]
    if spec["sizes"] is None:
        return torch.rand((n, 1, 28, 28), generator=gen)
    return torch.rand((n, spec["sizes"][0]), generator=gen)


def timed(fn: Callable[[], Any], repeats: int) -> dict[str, Any]:
    """Run ``fn`` ``repeats`` times: min CPU / wall seconds, every run's CPU seconds, and the
    last return value (``"out"``)."""
    cpu, wall, out = [], [], None
    for _ in range(max(1, repeats)):
        c0, w0 = time.process_time(), time.perf_counter()
        out = fn()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return {"cpu_s": min(cpu), "wall_s": min(wall), "cpu_runs": cpu, "out": out}


def measure(net: Any, **kw: Any):
    """``causal_widgets.measure_layer`` on the CPU, input range (0, 1), seed 0."""
    import causal_widgets as cw

    kw.setdefault("in_range", (0.0, 1.0))
    return cw.measure_layer(net, seed=0, device="cpu", **kw)


def chunk_rows(n_in: int, n_out: int, bins: int) -> int:
    """The rows per forward pass ``measure_layer`` picks on a CPU (its default rule)."""
    width = n_in * bins + n_out * bins
    return int(min(2**16, max(256, 2**24 // width)))


def key(n: int, m: int) -> str:
    return f"{n}x{m}"


def parse_key(k: str) -> tuple[int, int]:
    n, m = k.split("x")
    return int(n), int(m)


def machine_info() -> dict[str, Any]:
    """CPU, cores, load, versions: what a reader needs to compare numbers (no git call)."""
    cpu = cpu_model()
    cap = ""
    with contextlib.suppress(Exception):
        cap = torch.backends.cpu.get_cpu_capability()
    mem_gib = None
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gib = round(int(line.split()[1]) / 2**20, 1)
    import causal_widgets

    return {
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "cpu": cpu,
        "cpu_capability": cap,
        "cpu_count": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "mem_total_gib": mem_gib,
        "torch_threads": torch.get_num_threads(),
        "load_avg_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "causal_widgets": causal_widgets.__version__,
        "int8_gemm": _int8_ok(),
        "shared_machine": "yes: other jobs ran on the same cores; CPU time (process_time) "
                          "is the primary measure, min over repeats",
    }


def _int8_ok() -> bool:
    try:
        a = torch.ones((32, 8), dtype=torch.int8)
        return bool(int(torch._int_mm(a, a.T.contiguous())[0, 0]) == 8)
    except (AttributeError, RuntimeError):
        return False


# ----------------------------------------------------------------------------- fits


def fit_power_law(features: dict[str, Sequence[float]], y: Sequence[float]) -> dict[str, Any]:
    """Least-squares fit of ``y = c * prod_k x_k ** a_k`` in log space (numpy).

    Returns ``{"c", "exponents": {name: a_k}, "r2" (in log space), "points",
    "max_rel_err"}``; raises ``ValueError`` with fewer points than parameters + 1 or any
    non-positive value.
    """
    names = list(features)
    yv = np.asarray(y, dtype=np.float64)
    cols = [np.asarray(features[k], dtype=np.float64) for k in names]
    if any(len(c) != len(yv) for c in cols):
        raise ValueError("fit_power_law: every feature needs one value per y.")
    if len(yv) < len(names) + 2:
        raise ValueError(
            f"fit_power_law: {len(yv)} points for {len(names) + 1} parameters; need at least "
            f"{len(names) + 2}."
        )
    if (yv <= 0).any() or any((c <= 0).any() for c in cols):
        raise ValueError("fit_power_law: values must be positive (it fits in log space).")
    a = np.column_stack([np.ones_like(yv)] + [np.log(c) for c in cols])
    ly = np.log(yv)
    coef, *_ = np.linalg.lstsq(a, ly, rcond=None)
    pred = a @ coef
    ss_res = float(((ly - pred) ** 2).sum())
    ss_tot = float(((ly - ly.mean()) ** 2).sum())
    return {
        "c": float(math.exp(coef[0])),
        "exponents": {k: float(v) for k, v in zip(names, coef[1:])},
        "r2": 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0,
        "points": int(len(yv)),
        "max_rel_err": float(np.max(np.abs(np.exp(pred - ly) - 1.0))),
    }


def predict_power_law(fit: dict[str, Any], **x: float) -> float:
    """``c * prod x_k ** a_k`` for a fit from :func:`fit_power_law`."""
    out = fit["c"]
    for k, a in fit["exponents"].items():
        out *= float(x[k]) ** a
    return float(out)


def _try_fit(features: dict[str, list[float]], y: list[float]) -> dict[str, Any] | None:
    try:
        return fit_power_law(features, y)
    except ValueError:
        return None


# ----------------------------------------------------------------------------- pieces


def sampled_pieces(
    weight: torch.Tensor, samples: int, bins: int = 8, chunk: int | None = None, seed: int = 0
) -> tuple[dict[str, float], torch.Tensor]:
    """Sampled EI_parts' work in plain torch, each piece timed (CPU s): ``draw`` (uniform
    inputs), ``forward`` (matmul + sigmoid), ``binning`` (both sides), ``onehot`` (building
    the int8 one-hots) and ``gemm`` (``torch._int_mm``, int32 accumulation; float32 where
    int8 GEMM is unavailable). Inputs and outputs over (0, 1).

    Returns (times, counts ``(n, m, bins, bins)`` int64) so a test can check it counts
    what an estimator must count.
    """
    w = weight.detach().to(torch.float32)
    m, n = w.shape
    chunk = chunk or chunk_rows(n, m, bins)
    gen = torch.Generator().manual_seed(seed)
    levels = torch.arange(bins, dtype=torch.int8)
    acc = torch.zeros((m * bins, n * bins), dtype=torch.int64)
    int8 = _int8_ok()
    t = dict.fromkeys(("draw", "forward", "binning", "onehot", "gemm"), 0.0)
    clock = time.process_time
    done = 0
    while done < samples:
        k = min(chunk, samples - done)
        c0 = clock()
        x = torch.rand((k, n), generator=gen)
        c1 = clock()
        y = torch.sigmoid(x @ w.T)
        c2 = clock()
        xb = (x * bins).clamp_(0, bins - 1).to(torch.int8)
        yb = (y * bins).clamp_(0, bins - 1).to(torch.int8)
        c3 = clock()
        a = (xb.unsqueeze(2) == levels).view(k, n * bins).view(torch.int8)
        ct = (yb.T.contiguous().unsqueeze(1) == levels.view(1, bins, 1)).view(m * bins, k)
        ct = ct.view(torch.int8)
        c4 = clock()
        if int8 and k >= 8:
            acc += torch._int_mm(ct, a)
        else:
            acc += (ct.to(torch.float32) @ a.to(torch.float32)).to(torch.int64)
        c5 = clock()
        t["draw"] += c1 - c0
        t["forward"] += c2 - c1
        t["binning"] += c3 - c2
        t["onehot"] += c4 - c3
        t["gemm"] += c5 - c4
        done += k
    counts = acc.view(m, bins, n, bins).permute(2, 0, 3, 1).contiguous()
    return t, counts


def whole_pieces(
    weight: torch.Tensor, cells: int, ppc: int, bins: int = 8, seed: int = 0
) -> dict[str, float]:
    """Whole EI's sampling work in plain torch, timed (CPU s): ``draw`` (random cells and
    ``ppc`` uniform points inside each), ``forward`` (matmul + sigmoid), ``binning`` (the
    outputs). The estimator's own work is what ``measure_layer`` spends beyond these."""
    w = weight.detach().to(torch.float32)
    m, n = w.shape
    per = max(1, chunk_rows(n, m, bins) // ppc)
    gen = torch.Generator().manual_seed(seed)
    t = dict.fromkeys(("draw", "forward", "binning"), 0.0)
    clock = time.process_time
    for c0_ in range(0, cells, per):
        k = min(per, cells - c0_)
        c0 = clock()
        c = torch.randint(0, bins, (k, n), generator=gen)
        u = torch.rand((k, ppc, n), generator=gen)
        x = (c[:, None, :].to(torch.float32) + u) * (1.0 / bins)
        c1 = clock()
        y = torch.sigmoid(x.reshape(-1, n) @ w.T)
        c2 = clock()
        (y * bins).floor_().clamp_(0, bins - 1).to(torch.int64)
        c3 = clock()
        t["draw"] += c1 - c0
        t["forward"] += c2 - c1
        t["binning"] += c3 - c2
    return t


@contextlib.contextmanager
def _quiet_fd2():
    """Silence file descriptor 2 (the profiler's C++ start/stop lines) for a moment."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def count_ops(fn: Callable[[], Any]) -> int:
    """Outermost torch operator calls (``aten::*`` events with no ``aten::`` ancestor, so
    backward ops under ``autograd::engine`` count too) while ``fn`` runs (torch.profiler,
    CPU). A proxy for the number of kernel launches the same work needs on a GPU."""
    from torch.profiler import ProfilerActivity, profile

    with _quiet_fd2(), profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()

    def outermost(e: Any) -> bool:
        if not e.name.startswith("aten::"):
            return False
        p = e.cpu_parent
        while p is not None:
            if p.name.startswith("aten::"):
                return False
            p = p.cpu_parent
        return True

    return sum(1 for e in prof.events() if outermost(e))


# ----------------------------------------------------------------------------- benchmarks


def warm_up() -> None:
    """First calls pay one-off costs (lazy imports, kernels); keep them out of the numbers."""
    net = make_layer(4, 5)
    measure(net, metrics=["ei_parts", "sensitivity"], method="exact")
    measure(net, metrics=["ei_parts"], method="sampled", interventions=4096)
    measure(net, metrics=NO_NODES, cells=64, points_per_cell=32)
    measure(net, cells=64, points_per_cell=32)
    sampled_pieces(net[0].weight, 4096)


def bench_exact(cfg: Config, log: Callable[[str], None]) -> list[dict[str, Any]]:
    """Exact EI_parts and exact sensitivity vs n x m (8 bins) and vs bins."""
    jobs = [(n, m, 8, "trained-like") for n, m in cfg.exact_layers]
    jobs += [(n, m, b, "trained-like") for n, m in cfg.exact_bins_layers
             for b in cfg.exact_bins if b != 8]  # fmt: skip
    jobs += [(n, m, 8, "paper") for n, m in cfg.exact_init_layers]
    rows = []
    for n, m, b, init in jobs:
        net = make_layer(n, m, init=init)
        reps = 1 if n * m * (b / 8) ** 2 >= cfg.single_run_above else cfg.repeats
        parts, sens = (
            timed(lambda net=net, b=b, x=x: measure(net, bins=b, metrics=[x], method="exact"),
                  reps)
            for x in ("ei_parts", "sensitivity")
        )  # fmt: skip
        row = {
            "n_in": n, "n_out": m, "bins": b, "weights": init, "repeats": reps,
            "ei_parts_cpu_s": parts["cpu_s"], "ei_parts_wall_s": parts["wall_s"],
            "sensitivity_cpu_s": sens["cpu_s"], "sensitivity_wall_s": sens["wall_s"],
            "total_cpu_s": parts["cpu_s"] + sens["cpu_s"],
            "ei_parts_bits": float(parts["out"].ei_parts),
            "sensitivity_bits": float(sens["out"].sensitivity),
        }  # fmt: skip
        rows.append(row)
        log(f"  exact {key(n, m)} bins {b} {init}: EI_parts {parts['cpu_s']:.4f}s "
            f"sensitivity {sens['cpu_s']:.4f}s")
    return rows


def bench_sampled(cfg: Config, log: Callable[[str], None]) -> list[dict[str, Any]]:
    """Sampled EI_parts (library) vs samples and width, beside its pieces in plain torch."""
    rows = []
    for k, sample_list in cfg.sampled.items():
        n, m = parse_key(k)
        net = make_layer(n, m)
        for samples in sample_list:
            reps = 1 if samples * n * m >= 10**9 else cfg.repeats
            lib = timed(
                lambda net=net, s=samples: measure(
                    net, metrics=["ei_parts"], method="sampled", interventions=s
                ),
                reps,
            )
            best: dict[str, float] | None = None
            for _ in range(reps):
                p, _counts = sampled_pieces(net[0].weight, samples)
                if best is None or sum(p.values()) < sum(best.values()):
                    best = p
            assert best is not None
            total = sum(best.values())
            row = {
                "n_in": n, "n_out": m, "bins": 8, "samples": samples, "repeats": reps,
                "chunk_rows": chunk_rows(n, m, 8),
                "library_cpu_s": lib["cpu_s"], "library_wall_s": lib["wall_s"],
                "pieces_cpu_s": best, "pieces_total_cpu_s": total,
                "counting_cpu_s": best["onehot"] + best["gemm"],
                "library_remainder_cpu_s": lib["cpu_s"] - total,
                "ei_parts_bits": float(lib["out"].ei_parts),
            }  # fmt: skip
            rows.append(row)
            log(f"  sampled {k} N={samples:.0e}: library {lib['cpu_s']:.3f}s; pieces "
                + " ".join(f"{a} {v:.3f}" for a, v in best.items()))
    return rows


def bench_whole(cfg: Config, log: Callable[[str], None]) -> list[dict[str, Any]]:
    """Whole EI (sampled cells of ``whole_ppc`` points) vs samples, split into sampling
    (plain torch, timed) and the estimator (the remainder)."""
    rows = []
    ppc = cfg.whole_ppc
    for k, sample_list in cfg.whole.items():
        n, m = parse_key(k)
        net = make_layer(n, m)
        for samples in sample_list:
            cells = max(1, samples // ppc)
            reps = 1 if samples * n * m >= 10**9 else cfg.repeats
            lib = timed(
                lambda net=net, c=cells: measure(
                    net, metrics=["ei"], cells=c, points_per_cell=ppc
                ),
                reps,
            )
            best: dict[str, float] | None = None
            for _ in range(reps):
                p = whole_pieces(net[0].weight, cells, ppc)
                if best is None or sum(p.values()) < sum(best.values()):
                    best = p
            assert best is not None
            total = sum(best.values())
            row = {
                "n_in": n, "n_out": m, "bins": 8, "samples": cells * ppc, "cells": cells,
                "points_per_cell": ppc, "repeats": reps,
                "library_cpu_s": lib["cpu_s"], "library_wall_s": lib["wall_s"],
                "pieces_cpu_s": best, "sampling_cpu_s": total,
                "estimator_cpu_s": lib["cpu_s"] - total, "ei_bits": float(lib["out"].ei),
            }  # fmt: skip
            rows.append(row)
            log(f"  whole {k} N={cells * ppc:.0e}: library {lib['cpu_s']:.3f}s; sampling "
                f"{total:.3f}s; estimator {lib['cpu_s'] - total:.3f}s")
    return rows


def _dataset(name: str, limit_eval: int | None) -> tuple[torch.Tensor, ...]:
    """(x_train, y_train, x_test, y_test, n_classes) for a model of MODEL_SPECS."""
    from causal_widgets.training.data import load_digits_data, load_iris_data

    if name == "iris":
        ds = load_iris_data(seed=0)
        return ds.x_train, ds.y_train, ds.x_test, ds.y_test, ds.n_classes
    if name == "digits":
        ds = load_digits_data(seed=0)
        return ds.x_train, ds.y_train, ds.x_test, ds.y_test, ds.n_classes
    spec = MODEL_SPECS[name]
    gen = torch.Generator().manual_seed(0)
    shape = (1, 28, 28) if spec["sizes"] is None else (spec["sizes"][0],)
    classes = 10 if spec["sizes"] is None else spec["sizes"][-1]
    n_tr, n_te = spec["n_train"], spec["n_test"]
    if limit_eval is not None:
        n_tr, n_te = min(n_tr, limit_eval), min(n_te, limit_eval)
    x_tr = torch.rand((n_tr, *shape), generator=gen)
    x_te = torch.rand((n_te, *shape), generator=gen)
    y_tr = torch.randint(0, classes, (n_tr,), generator=gen)
    y_te = torch.randint(0, classes, (n_te,), generator=gen)
    return x_tr, y_tr, x_te, y_te, classes


def bench_training(cfg: Config, log: Callable[[str], None]) -> dict[str, Any]:
    """Per-epoch CPU cost of training (``train_epoch``) and of the per-epoch evaluation
    ``reproduce.py`` does (``evaluate`` on the train and the test set).

    Iris and the embedded digits: whole epochs. The paper-size MNIST MLP and the bigger
    models: ``train_steps`` minibatches timed, the epoch is steps/epoch x time per step
    (the per-step cost does not depend on the data values, so synthetic data of the right
    shape stands in); evaluation on the full sets (or ``eval_examples`` test examples, then
    scaled linearly, in --quick).
    """
    from causal_widgets.training.models import evaluate, make_optimizer, one_hot, train_epoch

    out: dict[str, Any] = {}
    for name in ("iris", "digits", "mnist_paper", "mlp784", "cnn"):
        spec = MODEL_SPECS[name]
        x_tr, y_tr, x_te, y_te, classes = _dataset(name, cfg.eval_examples)
        if name == "mnist_paper":
            model = build_model("digits")
        else:
            model = build_model(name)
        opt = make_optimizer(model)
        gen = torch.Generator().manual_seed(0)
        targets = one_hot(y_tr, int(classes))
        batch = spec["batch"]
        steps_per_epoch = math.ceil(spec["n_train"] / batch)
        train_epoch(model, opt, x_tr[: batch * 2], targets[: batch * 2], batch, gen)  # warm
        if name in ("iris", "digits"):
            epochs = cfg.train_epochs_small
            c0, w0 = time.process_time(), time.perf_counter()
            for _ in range(epochs):
                train_epoch(model, opt, x_tr, targets, batch, gen)
            train_s = (time.process_time() - c0) / epochs
            train_wall = (time.perf_counter() - w0) / epochs
            measured = {"epochs": epochs}
        else:
            steps = min(cfg.train_steps[name], steps_per_epoch)
            rows = steps * batch
            c0, w0 = time.process_time(), time.perf_counter()
            train_epoch(model, opt, x_tr[:rows], targets[:rows], batch, gen)
            per_step = (time.process_time() - c0) / steps
            per_step_wall = (time.perf_counter() - w0) / steps
            train_s, train_wall = per_step * steps_per_epoch, per_step_wall * steps_per_epoch
            measured = {"steps": steps, "per_step_cpu_s": per_step}
        def both(m=model, x_tr=x_tr, y_tr=y_tr, x_te=x_te, y_te=y_te):
            return evaluate(m, x_tr, y_tr), evaluate(m, x_te, y_te)

        ev = timed(both, 1 if name in ("mlp784", "cnn") else cfg.repeats)
        eval_s = ev["cpu_s"]
        eval_scale = 1.0
        if len(x_tr) + len(x_te) < spec["n_train"] + spec["n_test"]:  # --quick: scale
            eval_scale = (spec["n_train"] + spec["n_test"]) / (len(x_tr) + len(x_te))
            eval_s *= eval_scale
        ops = None
        if cfg.profile_ops:
            sub = batch * 2
            xs, ts = x_tr[:sub], targets[:sub]
            ops = count_ops(lambda a=(model, opt, xs, ts, batch, gen): train_epoch(*a)) / 2
        params = sum(p.numel() for p in model.parameters())
        out[name] = {
            "sizes": spec["sizes"], "arch": spec.get("arch"), "data": spec["data"],
            "n_train": spec["n_train"], "n_test": spec["n_test"], "batch": batch,
            "steps_per_epoch": steps_per_epoch, "params": params, "measured": measured,
            "train_epoch_cpu_s": train_s, "train_epoch_wall_s": train_wall,
            "evaluate_cpu_s": eval_s, "evaluate_scaled_by": eval_scale,
            "epoch_cpu_s": train_s + eval_s, "ops_per_step": ops,
            "macs_per_example": macs_per_example(name, params),
            "flops_per_step": 6.0 * macs_per_example(name, params) * batch,
        }  # fmt: skip
        log(f"  training {name}: epoch {train_s:.4f}s + evaluate {eval_s:.4f}s "
            f"({steps_per_epoch} steps of {batch}; ops/step {ops})")
    return out


def macs_per_example(name: str, params: int) -> int:
    """Multiply-adds of one forward pass (dense: the weights; convs: by output size)."""
    if MODEL_SPECS[name]["sizes"] is None:  # the small CNN on 28x28
        return 24 * 24 * 8 * 25 + 8 * 8 * 16 * 200 + 256 * 10
    return params


def bench_models(cfg: Config, log: Callable[[str], None]) -> dict[str, Any]:
    """One checkpoint of each model, measured as reproduce.py measures it, per layer.

    Per layer: the full call (``cpu_s``), the pairwise terms alone (``pairwise_cpu_s``:
    the exact engine for dense layers, sampling for pooling windows), whole EI and the
    rest as the difference, and the torch operator counts of both calls.
    """
    from causal_widgets.network.discovery import find_layers

    pair_kw = {"bins": 8, "metrics": ["ei_parts", "sensitivity"]}
    out: dict[str, Any] = {}
    for name in cfg.models:
        settings = ["no_nodes"] + (["reproduce"] if name in cfg.nodes_models else [])
        for weights in weight_kinds(name):
            model = build_model(name, weights)
            c0 = time.process_time()
            layers = find_layers(model, example_input(name), in_range=(0.0, 1.0))
            find_s = time.process_time() - c0
            pairs: dict[str, dict[str, Any]] = {}
            for lay in layers:
                reps = 1 if lay.n_in * lay.n_out >= 10_000 else cfg.model_repeats
                pair = timed(lambda lay=lay: measure(lay, in_range=None, **pair_kw), reps)
                pairs[lay.name] = {
                    "pairwise_cpu_s": pair["cpu_s"],
                    "pairwise_method": pair["out"].method.get("ei_parts"),
                }
                if cfg.profile_ops:
                    pairs[lay.name]["ops_pairwise"] = count_ops(
                        lambda lay=lay: measure(lay, in_range=None, **pair_kw)
                    )
            for setting in settings:
                metrics = None if setting == "reproduce" else NO_NODES
                kw = {"bins": 8, "cells": REPRO_CELLS, "points_per_cell": REPRO_PPC,
                      "metrics": metrics}  # fmt: skip
                rows = []
                for lay in layers:
                    reps = 1 if lay.n_in * lay.n_out >= 10_000 else cfg.model_repeats
                    full = timed(lambda lay=lay, kw=kw: measure(lay, in_range=None, **kw), reps)
                    res = full["out"]
                    row: dict[str, Any] = {
                        "layer": lay.name, "n_in": lay.n_in, "n_out": lay.n_out,
                        "kind": lay.extra.get("kind") if hasattr(lay, "extra") else None,
                        "method": dict(res.method), "cpu_s": full["cpu_s"],
                        "wall_s": full["wall_s"], "warnings": len(res.warnings),
                        **pairs[lay.name],
                        "whole_ei_cpu_s": max(0.0, full["cpu_s"]
                                              - pairs[lay.name]["pairwise_cpu_s"]),
                    }  # fmt: skip
                    if cfg.profile_ops:
                        row["ops"] = count_ops(
                            lambda lay=lay, kw=kw: measure(lay, in_range=None, **kw)
                        )
                    rows.append(row)
                total = sum(r["cpu_s"] for r in rows) + find_s
                exact = sum(r["pairwise_cpu_s"] for r in rows
                            if r["pairwise_method"] == "exact")  # fmt: skip
                out[f"{name}/{weights}/{setting}"] = {
                    "model": name, "weights": weights, "setting": setting,
                    "metrics": metrics or "all (incl. nodes)", "find_layers_cpu_s": find_s,
                    "checkpoint_cpu_s": total, "exact_engine_cpu_s": exact, "layers": rows,
                }  # fmt: skip
                log(f"  checkpoint {name} {weights} {setting}: {total:.3f}s "
                    + ", ".join(f"{r['layer']} {r['cpu_s']:.3f}" for r in rows))
    return out


# ----------------------------------------------------------------------------- memory


def _rss_mib() -> float:
    """Peak resident memory of this process (MiB): ``VmHWM`` (reset by exec, unlike
    ``ru_maxrss``, which a child inherits from its parent at fork)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def memory_child(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one task in this (fresh) process and report its peak RSS above the baseline."""
    cap = int(spec.get("cap_gib", 8.0) * 2**30)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    set_threads()
    warm_up()
    base = _rss_mib()
    c0 = time.process_time()
    status = "ok"
    try:
        if spec["task"] == "layer":
            net = make_layer(spec["n"], spec["m"])
            kw = {"metrics": spec.get("metrics"), "cells": REPRO_CELLS,
                  "points_per_cell": REPRO_PPC}
            if spec.get("method"):
                kw["method"] = spec["method"]
            if spec.get("samples"):
                kw["samples"] = spec["samples"]
            measure(net, bins=8, **kw)
        else:
            from causal_widgets.network.discovery import find_layers

            model = build_model(spec["model"], "trained-like")
            for lay in find_layers(model, example_input(spec["model"]), in_range=(0.0, 1.0)):
                measure(lay, in_range=None, bins=8, metrics=spec.get("metrics"),
                        cells=REPRO_CELLS, points_per_cell=REPRO_PPC)
    except (MemoryError, RuntimeError) as err:
        status = f"failed: {type(err).__name__}: {str(err)[:160]}"
    return {"baseline_mib": base, "peak_mib": _rss_mib(), "task_mib": _rss_mib() - base,
            "cpu_s": time.process_time() - c0, "status": status}


def bench_memory(cfg: Config, log: Callable[[str], None]) -> list[dict[str, Any]]:
    rows = []
    for spec in cfg.memory:
        spec = {**spec, "cap_gib": cfg.memory_cap_gib}
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child-memory", json.dumps(spec)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=REPO)
        res: dict[str, Any]
        try:
            res = json.loads(proc.stdout.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            res = {"status": f"child exited {proc.returncode}: {proc.stderr[-300:]}"}
        rows.append({**spec, **res})
        log(f"  memory {spec['label']}: peak {res.get('peak_mib', float('nan')):.0f} MiB, "
            f"task {res.get('task_mib', float('nan')):.0f} MiB ({res['status']})")
    return rows


# ----------------------------------------------------------------------------- analysis


def fits(res: dict[str, Any]) -> dict[str, Any]:
    """Power laws over the measured points (None where too few points)."""
    out: dict[str, Any] = {}
    ex = [r for r in res["exact"] if r["weights"] == "trained-like"]
    big8 = [r for r in ex if r["bins"] == 8 and r["n_in"] * r["n_out"] >= 1000]
    out["exact_vs_nm_bins8"] = _try_fit(
        {"nm": [r["n_in"] * r["n_out"] for r in big8]}, [r["total_cpu_s"] for r in big8]
    )
    big = [r for r in ex if r["n_in"] * r["n_out"] >= 1000]
    out["exact_vs_nm_bins"] = _try_fit(
        {"nm": [r["n_in"] * r["n_out"] for r in big], "bins": [r["bins"] for r in big]},
        [r["total_cpu_s"] for r in big],
    )
    small = [r["total_cpu_s"] for r in ex if r["bins"] == 8 and r["n_in"] * r["n_out"] <= 200]
    out["exact_small_layer_cpu_s"] = float(np.median(small)) if small else None
    sa = [r for r in res["sampled"] if r["samples"] >= 10**5] or res["sampled"]
    out["sampled_parts"] = _try_fit(
        {"samples": [r["samples"] for r in sa],
         "tables": [r["n_in"] * r["n_out"] * 64 for r in sa]},
        [r["library_cpu_s"] for r in sa],
    )  # fmt: skip
    wh = [r for r in res["whole"] if r["samples"] >= 10**5] or res["whole"]
    out["whole_ei"] = _try_fit(
        {"samples": [r["samples"] for r in wh], "n_in": [r["n_in"] for r in wh],
         "n_out": [r["n_out"] for r in wh]},
        [r["library_cpu_s"] for r in wh],
    )  # fmt: skip
    # per-sample cost at the largest N of each layer (us per sample)
    out["sampled_us_per_sample"] = {
        key(r["n_in"], r["n_out"]): 1e6 * r["library_cpu_s"] / r["samples"]
        for r in sorted(res["sampled"], key=lambda r: r["samples"])
    }
    out["whole_us_per_sample"] = {
        key(r["n_in"], r["n_out"]): 1e6 * r["library_cpu_s"] / r["samples"]
        for r in sorted(res["whole"], key=lambda r: r["samples"])
    }
    return out


def waves(runs: int, gpus: int, k: int) -> int:
    """Rounds of a pool of ``gpus * k`` concurrent runs needed for ``runs`` runs."""
    return math.ceil(runs / (gpus * max(1, k)))


STUDIES: dict[str, dict[str, Any]] = {
    "iris": {"label": "(a) Iris 4-5-5-3, paper schedule", "model": "iris", "train": "iris",
             "epochs": 4000, "every": 50, "setting": "reproduce"},
    "mnist_paper": {"label": "(a) MNIST 25-6-6-6-5 (25 000 examples), paper schedule",
                    "model": "digits", "train": "mnist_paper", "epochs": 500, "every": 10,
                    "setting": "reproduce"},
    "mlp784": {"label": "(b) MLP 784-256-256-10 on MNIST, 80 epochs, every epoch",
               "model": "mlp784", "train": "mlp784", "epochs": 80, "every": 1,
               "setting": "no_nodes"},
    "cnn": {"label": "(b) small CNN on MNIST, 80 epochs, every epoch", "model": "cnn",
            "train": "cnn", "epochs": 80, "every": 1, "setting": "no_nodes"},
}  # fmt: skip


def _layer_gpu_s(row: dict[str, Any], a: dict[str, Any]) -> dict[str, float]:
    """GPU-side estimate of one layer's measurement (an ESTIMATE from GPU_ASSUMPTIONS).

    The exact engine is numpy: it stays on the host core at its measured CPU time. The
    torch part (whole EI; sampled pairwise terms of pooling layers) costs the larger of
    its operator calls x ``op_wall_s`` and a roofline of its arithmetic and memory traffic.
    """
    n, m = row["n_in"], row["n_out"]
    samples = REPRO_CELLS * REPRO_PPC
    exact = row.get("pairwise_cpu_s", 0.0) if row.get("pairwise_method") == "exact" else 0.0
    ops = row.get("ops", 0) - (row.get("ops_pairwise", 0) if exact else 0)
    flops = 2.0 * samples * n * m
    bytes_ = samples * (n + m) * a["bytes_per_sample_element"]
    if row.get("pairwise_method") == "sampled":  # pooling windows: ~1e6 samples, tiny tables
        flops += 2.0 * 1e6 * n * m * 64
        bytes_ += 1e6 * (n + m) * a["bytes_per_sample_element"]
    roof = flops / (a["fp32_peak_flops"] * a["derate"]) + bytes_ / (
        a["hbm_bytes_per_s"] * a["derate"]
    )
    launch = ops * a["op_wall_s"]
    return {"exact_cpu_s": exact, "torch_gpu_s": max(launch, roof), "ops": ops,
            "gpu_busy_s": ops * a["op_gpu_busy_s"] + roof}


def study(res: dict[str, Any], runs: int = 1000, gpus: int = 16) -> dict[str, Any]:
    """The 1000-run arithmetic for each study of :data:`STUDIES` (see docs/scaling.md)."""
    a = GPU_ASSUMPTIONS
    out: dict[str, Any] = {"runs": runs, "gpus": gpus, "assumptions": a, "plans": {}}
    for sid, s in STUDIES.items():
        tr = res["training"].get(s["train"])
        mods = [v for v in res["models"].values()
                if v["model"] == s["model"] and v["setting"] == s["setting"]]  # fmt: skip
        if tr is None or not mods:
            continue
        ck = max(mods, key=lambda v: v["checkpoint_cpu_s"])  # the slower weights
        checkpoints = len(range(0, s["epochs"], s["every"]))
        per_run_cpu = checkpoints * ck["checkpoint_cpu_s"] + s["epochs"] * tr["epoch_cpu_s"]
        k_cpu = a["cores_per_gpu"]
        cpu_plan = {
            "runs_per_gpu_k": k_cpu,
            "waves": waves(runs, gpus, k_cpu),
            "wall_s": waves(runs, gpus, k_cpu) * per_run_cpu,
            "core_hours": runs * per_run_cpu / 3600,
        }
        # GPU-assisted (estimate): measurement torch parts and training on the GPU
        if all("ops" in r for r in ck["layers"]):
            lay = [_layer_gpu_s(r, a) for r in ck["layers"]]
            ck_gpu = sum(x["exact_cpu_s"] + x["torch_gpu_s"] for x in lay) + ck["find_layers_cpu_s"]
            ck_busy = sum(x["gpu_busy_s"] for x in lay)
            step_ops = tr["ops_per_step"] or 0
            step_roof = tr["flops_per_step"] / (a["fp32_peak_flops"] * a["derate"])
            step_gpu = max(step_ops * a["op_wall_s"], step_roof)
            # evaluation: a few large ops on the whole train + test set: roofline only
            eval_flops = 2.0 * tr["macs_per_example"] * (tr["n_train"] + tr["n_test"])
            eval_gpu = eval_flops / (a["fp32_peak_flops"] * a["derate"])
            epoch_gpu = tr["steps_per_epoch"] * step_gpu + eval_gpu
            epoch_busy = tr["steps_per_epoch"] * (step_ops * a["op_gpu_busy_s"] + step_roof)
            per_run_gpu = checkpoints * ck_gpu + s["epochs"] * epoch_gpu
            busy = checkpoints * ck_busy + s["epochs"] * epoch_busy
            gpu_plan = _plan(per_run_gpu, busy, runs, gpus, a)
            gpu_plan.update({
                "checkpoint_s": ck_gpu,
                "checkpoint_exact_cpu_s": sum(x["exact_cpu_s"] for x in lay),
                "epoch_s": epoch_gpu,
            })  # fmt: skip
            # hybrid: measure on the task's host core (measured), train on the GPU (estimate)
            hybrid = _plan(
                checkpoints * ck["checkpoint_cpu_s"] + s["epochs"] * epoch_gpu,
                s["epochs"] * epoch_busy, runs, gpus, a,
            )  # fmt: skip
        else:
            gpu_plan = hybrid = None
        out["plans"][sid] = {
            "label": s["label"], "epochs": s["epochs"], "every": s["every"],
            "checkpoints": checkpoints, "layers": len(ck["layers"]),
            "setting": s["setting"], "weights": ck["weights"],
            "checkpoint_cpu_s": ck["checkpoint_cpu_s"], "epoch_cpu_s": tr["epoch_cpu_s"],
            "measure_cpu_s": checkpoints * ck["checkpoint_cpu_s"],
            "train_cpu_s": s["epochs"] * tr["epoch_cpu_s"], "per_run_cpu_s": per_run_cpu,
            "cpu_only": cpu_plan, "gpu_estimate": gpu_plan, "hybrid_estimate": hybrid,
        }  # fmt: skip
        cands = {"cpu_only": cpu_plan, "gpu_estimate": gpu_plan, "hybrid_estimate": hybrid}
        best = min((k for k, v in cands.items() if v), key=lambda k: cands[k]["wall_s"])
        out["plans"][sid]["fastest"] = best
    return out


def _plan(per_run: float, busy: float, runs: int, gpus: int, a: dict[str, Any]) -> dict:
    """k runs share a GPU: as many as host cores allow, and no more than keep its kernels
    (``busy`` GPU seconds per run, serialised between processes: no MPS) from queueing."""
    k = max(1, min(a["cores_per_gpu"], int(per_run / max(busy, 1e-12))))
    return {
        "per_run_s": per_run, "gpu_busy_per_run_s": busy, "runs_per_gpu_k": k,
        "waves": waves(runs, gpus, k), "wall_s": waves(runs, gpus, k) * per_run,
        # were kernels of different runs to overlap freely (MPS), one run per host core
        "wall_s_k16": waves(runs, gpus, a["cores_per_gpu"]) * per_run,
    }  # fmt: skip


# ----------------------------------------------------------------------------- output


def _fmt(v: float | None, unit: str = "s") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if unit == "s":
        if v >= 3600:
            return f"{v / 3600:.2f} h"
        if v >= 100:
            return f"{v / 60:.1f} min"
        return f"{v:.3g} s"
    return f"{v:.3g}"


def table(res: dict[str, Any]) -> str:
    """The printed summary (markdown)."""
    lines = ["### exact engine (CPU s, min of repeats)", "",
             "| layer | bins | weights | EI_parts | sensitivity | total |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for r in res["exact"]:
        lines.append(f"| {key(r['n_in'], r['n_out'])} | {r['bins']} | {r['weights']} | "
                     f"{r['ei_parts_cpu_s']:.4f} | {r['sensitivity_cpu_s']:.4f} | "
                     f"{r['total_cpu_s']:.4f} |")
    lines += ["", "### sampled EI_parts (CPU s): library vs pieces in plain torch", "",
              "| layer | samples | library | draw | forward | binning | one-hot | int8 GEMM "
              "| library remainder |", "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in res["sampled"]:
        p = r["pieces_cpu_s"]
        lines.append(
            f"| {key(r['n_in'], r['n_out'])} | {r['samples']:.0e} | {r['library_cpu_s']:.4f} | "
            f"{p['draw']:.4f} | {p['forward']:.4f} | {p['binning']:.4f} | {p['onehot']:.4f} | "
            f"{p['gemm']:.4f} | {r['library_remainder_cpu_s']:.4f} |"
        )
    lines += ["", "### whole EI, cells of 32 points (CPU s)", "",
              "| layer | samples | library | draw | forward | binning | estimator (rest) |",
              "|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in res["whole"]:
        p = r["pieces_cpu_s"]
        lines.append(
            f"| {key(r['n_in'], r['n_out'])} | {r['samples']:.0e} | {r['library_cpu_s']:.4f} | "
            f"{p['draw']:.4f} | {p['forward']:.4f} | {p['binning']:.4f} | "
            f"{r['estimator_cpu_s']:.4f} |"
        )
    lines += ["", "### training (CPU s per epoch)", "",
              "| model | examples | batch | train_epoch | evaluate (train+test) | ops/step |",
              "|---|---|---|---|---|---|"]  # fmt: skip
    for name, r in res["training"].items():
        lines.append(f"| {name} | {r['n_train']} | {r['batch']} | {r['train_epoch_cpu_s']:.4g} "
                     f"| {r['evaluate_cpu_s']:.4g} | {r['ops_per_step']} |")
    lines += ["", "### one checkpoint, measured as reproduce.py does (CPU s)", "",
              "| model | weights | setting | checkpoint | exact engine | per layer |",
              "|---|---|---|---|---|---|"]  # fmt: skip
    for r in res["models"].values():
        per = ", ".join(f"{x['layer']} {x['n_in']}x{x['n_out']}: {x['cpu_s']:.3f}"
                        for x in r["layers"])  # fmt: skip
        lines.append(f"| {r['model']} | {r['weights']} | {r['setting']} | "
                     f"{r['checkpoint_cpu_s']:.3f} | {r['exact_engine_cpu_s']:.3f} | {per} |")
    lines += ["", "### memory (peak RSS of a fresh process; task = above the warm baseline)",
              "", "| task | peak MiB | task MiB | status |", "|---|---|---|---|"]
    for r in res["memory"]:
        lines.append(f"| {r['label']} | {r.get('peak_mib', float('nan')):.0f} | "
                     f"{r.get('task_mib', float('nan')):.0f} | {r['status']} |")
    lines += ["", "### fits", ""]
    for k, f in res["fits"].items():
        text = _fit_str(f) if isinstance(f, dict) and "c" in f else json.dumps(f)
        lines.append(f"- {k}: {text}")
    lines += ["", "### 1000-run study on 16 GPUs", ""]
    for p in res["study"]["plans"].values():
        c = p["cpu_only"]
        text = (
            f"- {p['label']}: per run {_fmt(p['per_run_cpu_s'])} CPU ({p['checkpoints']} x "
            f"{_fmt(p['checkpoint_cpu_s'])} measuring + {p['epochs']} x {_fmt(p['epoch_cpu_s'])} "
            f"training); CPU-only k={c['runs_per_gpu_k']}: {c['waves']} waves, wall "
            f"{_fmt(c['wall_s'])}"
        )
        for label, g in (("GPU", p["gpu_estimate"]), ("hybrid", p["hybrid_estimate"])):
            if g:
                text += (f"; {label} ESTIMATE per run {_fmt(g['per_run_s'])}, "
                         f"k={g['runs_per_gpu_k']}, wall {_fmt(g['wall_s'])} "
                         f"(k=16: {_fmt(g['wall_s_k16'])})")
        lines.append(text + f"; fastest: {p['fastest']}")
    return "\n".join(lines)


def _fit_str(f: dict[str, Any]) -> str:
    ex = " * ".join(f"{k}^{v:.2f}" for k, v in f["exponents"].items())
    return f"{f['c']:.3g} * {ex} (r2 {f['r2']:.3f}, {f['points']} points, max rel err " \
           f"{f['max_rel_err']:.0%})"


def run(cfg: Config, log: Callable[[str], None] = print) -> dict[str, Any]:
    set_threads()
    info = machine_info()
    t0 = time.perf_counter()
    warm_up()
    res: dict[str, Any] = {"config": asdict(cfg), "machine": info}
    log("exact engine ...")
    res["exact"] = bench_exact(cfg, log)
    log("sampled EI_parts ...")
    res["sampled"] = bench_sampled(cfg, log)
    log("whole EI ...")
    res["whole"] = bench_whole(cfg, log)
    log("training ...")
    res["training"] = bench_training(cfg, log)
    log("checkpoints ...")
    res["models"] = bench_models(cfg, log)
    log("memory ...")
    res["memory"] = bench_memory(cfg, log)
    res["fits"] = fits(res)
    res["study"] = study(res)
    info["load_avg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    info["elapsed_wall_s"] = time.perf_counter() - t0
    return res


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run (seconds)")
    ap.add_argument("--out", type=Path, default=None,
                    help="JSON output (default benchmarks/scaling.json, or "
                         "benchmarks/scaling-quick.json with --quick)")
    ap.add_argument("--no-ops", action="store_true", help="skip the torch.profiler op counts")
    ap.add_argument("--child-memory", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child_memory is not None:
        print(json.dumps(memory_child(json.loads(args.child_memory))))
        return 0
    cfg = CONFIGS["quick" if args.quick else "full"]
    if args.no_ops:
        cfg = Config(**{**asdict(cfg), "profile_ops": False})
    out = args.out or REPO / "benchmarks" / ("scaling-quick.json" if args.quick else "scaling.json")
    res = run(cfg)
    res["command"] = "python benchmarks/scaling.py" + (" --quick" if args.quick else "")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(_strip_out(res), indent=1, default=_json_default))
    print()
    print(table(res))
    print(f"\nwrote {out}")
    return 0


def _strip_out(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _strip_out(v) for k, v in obj.items() if k != "out"}
    if isinstance(obj, list):
        return [_strip_out(v) for v in obj]
    return obj


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, tuple):
        return list(o)
    return str(o)


if __name__ == "__main__":
    sys.exit(main())
