"""Command line: ``python -m causal_widgets reproduce {iris,digits,mnist,toy} --out DIR``
and ``python -m causal_widgets sweep study.toml --out DIR``.

Examples::

    python -m causal_widgets reproduce iris --out runs/iris            # the paper's Iris
    python -m causal_widgets reproduce iris --out runs/iris --headless # + notebooks/iris.ipynb
    python -m causal_widgets reproduce iris --out runs/quick --quick   # a first look (< 1 min)
    python -m causal_widgets reproduce digits --out runs/tanh --activation tanh
    python -m causal_widgets reproduce digits --out runs/deep --layers 25,6,6,6,6,6,5
    python -m causal_widgets reproduce mnist --out runs/mnist --data-dir ~/data/mnist
    python -m causal_widgets reproduce toy --out runs/toy
    python -m causal_widgets sweep study.toml --out runs/study          # local processes
    python -m causal_widgets sweep --preset memorization --quick --out runs/mem
    python -m causal_widgets sweep study.toml --out runs/study --ray auto  # a Ray cluster

Rerunning the same command after an interruption resumes where it stopped.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be a positive integer")
    return value


def _bins(text: str) -> int:
    value = _positive(text)
    if value < 2:
        raise argparse.ArgumentTypeError("bins must be at least 2 (the paper uses 8)")
    return value


def _layers(text: str) -> list[int]:
    from causal_widgets.training.models import parse_layers

    try:
        return parse_layers(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m causal_widgets",
        description="causal_widgets: effective information of PyTorch layers.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    rep = sub.add_parser(
        "reproduce",
        help="rerun an experiment of Mattsson, Michaud & Hoel (2020)",
        description=(
            "Train the paper's networks, measure EI, EI_parts, sensitivity, degeneracy and "
            "integration of every layer (bits) every few epochs, and write results.parquet, "
            "figures (PNG + SVG) and a dashboard history per run into --out. Rerunning "
            "after an interruption resumes."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    rep.add_argument("experiment", choices=["iris", "digits", "mnist", "toy"],
                     help="iris: 4-5-5-3; digits: embedded 8x8 digits 0-4 (MNIST stand-in); "
                          "mnist: real MNIST from --data-dir; toy: single edges and 2->1 layers")
    rep.add_argument("--out", required=True, type=Path, help="output directory")
    rep.add_argument("--epochs", type=_positive, help="training epochs (default: the paper's)")
    rep.add_argument("--runs", type=_positive, help="independent runs (default 3)")
    rep.add_argument("--every", type=_positive, help="measure every N epochs")
    rep.add_argument("--bins", type=_bins, default=8, help="bins per neuron")
    rep.add_argument("--ei-samples", "--samples", dest="ei_samples", type=_positive,
                     help="forward evaluations per layer for the sampled whole EI "
                          "(EI_SAMPLES/32 random input cells x 32 points); default 2**17, "
                          "2**14 with --quick (--samples is its old name)")
    rep.add_argument("--activation", choices=["sigmoid", "tanh", "relu"], default="sigmoid")
    rep.add_argument("--layers", type=_layers, help="layer sizes, e.g. 4,5,5,3")
    rep.add_argument("--seed", type=int, default=0, help="seed of the data split and runs")
    rep.add_argument("--quick", action="store_true",
                     help="a first look in under a minute: fewer epochs, runs and samples")
    rep.add_argument("--data-dir", type=Path,
                     help="folder with MNIST IDX files (train-images-idx3-ubyte[.gz], "
                          "train-labels-idx1-ubyte[.gz]); mnist only")
    rep.add_argument("--headless", action="store_true",
                     help="afterwards execute notebooks/<experiment>.ipynb on the results "
                          "(nbclient) into OUT/<experiment>.ipynb")
    rep.add_argument("--no-progress", action="store_true", help="no progress bars")
    rep.add_argument("--no-figures", action="store_true",
                     help="skip drawing the figures (results and histories only)")

    sw = sub.add_parser(
        "sweep",
        help="train and measure a grid of runs (a study), locally or on Ray",
        description=(
            "Train and measure every point of a study grid (TOML file, or --preset) into "
            "--out as a partitioned Parquet dataset (results/run_id=.../). Failed or lost "
            "runs are retried; rerunning resumes; Ctrl-C keeps everything finished."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    sw.add_argument("study", nargs="?",
                    help="the study file (TOML; see causal_widgets.studies.spec)")
    sw.add_argument("--preset", choices=["memorization", "dropout", "depth"],
                    help="a study for one of the paper's open questions instead of a file")
    sw.add_argument("--out", required=True, type=Path, help="output directory")
    sw.add_argument("--quick", action="store_true",
                    help="the quick schedule (fewer epochs and seeds): minutes on a laptop")
    sw.add_argument("--ray", nargs="?", const="local", metavar="auto|ADDRESS",
                    help="run on Ray: 'auto' (a running cluster), host:port, or no value "
                         "to start Ray on this machine")
    sw.add_argument("--workers", type=_positive,
                    help="local worker processes (default: one per CPU)")
    sw.add_argument("--serial", action="store_true",
                    help="one run after another in this process (no pool)")
    sw.add_argument("--max-retries", type=int, default=2,
                    help="resubmissions of a failed or lost run")
    sw.add_argument("--no-figures", action="store_true", help="skip the study figures")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "sweep":
        return _sweep(parser, args)
    from causal_widgets.paper import reproduce as rp

    if args.data_dir is not None and args.experiment != "mnist":
        parser.error("--data-dir is only for the mnist experiment")
    progress = False if args.no_progress else None
    try:
        if args.experiment == "toy":
            rp.run_toy(args.out, quick=args.quick, bins=args.bins, seed=args.seed,
                       ei_samples=args.ei_samples, figures=not args.no_figures)
        else:
            cfg = rp.make_config(
                args.experiment, epochs=args.epochs, runs=args.runs, every=args.every,
                bins=args.bins, ei_samples=args.ei_samples, activation=args.activation,
                layers=args.layers, seed=args.seed, quick=args.quick,
                data_dir=None if args.data_dir is None else str(args.data_dir),
            )
            rp.run_experiment(cfg, args.out, progress=progress, figures=not args.no_figures)
        if args.headless:
            name = "toy_layers" if args.experiment == "toy" else (
                "iris" if args.experiment == "iris" else "digits")
            dest = args.out / f"{name}.ipynb"
            env = {"CW_RESULTS": str(args.out.resolve())}
            if args.quick:
                env["CW_QUICK"] = "1"
            rp.execute_notebook(rp.notebook_path(name), dest, env=env)
            print(f"executed notebooks/{name}.ipynb into {dest}")
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def _sweep(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from causal_widgets.studies.spec import StudyError
    from causal_widgets.studies.sweeps import study_from_args, sweep

    if args.ray is not None and (args.serial or args.workers):
        parser.error("--ray runs on the cluster: drop --serial/--workers")
    if args.max_retries < 0:
        parser.error("--max-retries must be >= 0")
    try:
        study = study_from_args(args.study, args.preset, args.quick)
        if args.ray is not None:
            from causal_widgets.live.executors import RayExecutor

            executor = RayExecutor(address=None if args.ray == "local" else args.ray)
        else:
            executor = "serial" if args.serial else "local"
        data = sweep(study, args.out, executor=executor, workers=args.workers,
                     max_retries=args.max_retries, figures=not args.no_figures)
    except (StudyError, ValueError, FileNotFoundError, ImportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except RuntimeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    print(f"{data!r}; dataset in {args.out / 'results'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
