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
    python -m causal_widgets analyze ckpts/ --model train.py:make_net --example-input 3,32,32 \
        --in-range 0,1 --out runs/ckpts                                  # saved checkpoints

Rerunning the same command after an interruption resumes where it stopped.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from causal_widgets import cli_values as values


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
    rep.add_argument("--out", required=True, type=values.output_dir("--out"),
                     help="output directory")
    rep.add_argument("--epochs", type=values.positive_int("--epochs", "100"),
                     help="training epochs (default: the paper's)")
    rep.add_argument("--runs", type=values.positive_int("--runs", "3"),
                     help="independent runs (default 3)")
    rep.add_argument("--every", type=values.positive_int("--every", "50"),
                     help="measure every N epochs")
    rep.add_argument("--bins", type=values.bins("--bins"), default=8, help="bins per neuron")
    rep.add_argument("--ei-samples", "--samples", dest="ei_samples",
                     type=values.positive_int("--ei-samples", "131072"),
                     help="forward evaluations per layer for the sampled whole EI "
                          "(EI_SAMPLES/32 random input cells x 32 points); default 2**17, "
                          "2**14 with --quick (--samples is its old name)")
    rep.add_argument("--activation", choices=["sigmoid", "tanh", "relu"], default="sigmoid")
    rep.add_argument("--layers", type=values.layers("--layers"), help="layer sizes, e.g. 4,5,5,3")
    rep.add_argument("--seed", type=values.non_negative_int("--seed"), default=0,
                     help="seed of the data split and runs")
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
    sw.add_argument("--out", required=True, type=values.output_dir("--out"),
                    help="output directory")
    sw.add_argument("--quick", action="store_true",
                    help="the quick schedule (fewer epochs and seeds): minutes on a laptop")
    sw.add_argument("--ray", nargs="?", const="local", metavar="auto|ADDRESS",
                    help="run on Ray: 'auto' (a running cluster), host:port, or no value "
                         "to start Ray on this machine")
    sw.add_argument("--workers", type=values.positive_int("--workers", "4"),
                    help="local worker processes (default: one per CPU)")
    sw.add_argument("--serial", action="store_true",
                    help="one run after another in this process (no pool)")
    sw.add_argument("--max-retries", type=values.non_negative_int("--max-retries", "2"),
                    default=2,
                    help="resubmissions of a failed or lost run")
    sw.add_argument("--no-figures", action="store_true", help="skip the study figures")
    _add_analyze(sub)
    return parser


def _add_analyze(sub: argparse._SubParsersAction) -> None:
    an = sub.add_parser(
        "analyze",
        help="measure a folder of saved state_dict checkpoints (after training)",
        description=(
            "Load every checkpoint in CHECKPOINTS into the model --model builds, measure "
            "its layers (bits) and write the history CausalDashboard.load(OUT) opens into "
            "--out. The epoch is the last number in each file name, or where --pattern "
            "puts {epoch}. Rerunning after an interruption resumes."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    an.add_argument("checkpoints", help="the folder of saved state_dicts (or one file)")
    an.add_argument("--model", required=True, type=values.model_factory("--model"),
                    help="module:factory or file.py:factory, a function returning the nn.Module")
    an.add_argument("--example-input", required=True,
                    type=values.example_input("--example-input"),
                    help="one sample's shape (e.g. 3,32,32: 16 seeded uniform samples) or a "
                         "saved batch (.pt / .npy)")
    an.add_argument("--out", required=True, type=values.output_dir("--out"),
                    help="the history's folder")
    an.add_argument("--pattern", help="file names with {epoch}, e.g. 'epoch_{epoch}.pt' "
                                      "(* matches anything)")
    an.add_argument("--in-range", type=values.value_range("--in-range"),
                    help="the network input's range LO,HI (default: the example's min,max)")
    an.add_argument("--bins", type=values.bins("--bins"), default=8, help="bins per neuron")
    an.add_argument("--workers", type=values.positive_int("--workers", "4"),
                    help="measure in this many local worker processes (default: here)")
    an.add_argument("--ray", nargs="?", const="local", metavar="auto|ADDRESS",
                    help="measure on Ray: 'auto' (a running cluster), host:port, or no value "
                         "to start Ray on this machine")
    an.add_argument("--no-progress", action="store_true", help="no progress bar")


def _analyze(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from causal_widgets.live.checkpoints import analyze_checkpoints

    if args.ray is not None and args.workers:
        parser.error("--ray runs on the cluster: drop --workers")
    kwargs = {} if args.in_range is None else {"in_range": args.in_range}
    try:
        if args.ray is not None:
            from causal_widgets.live.executors import RayExecutor

            executor: object = RayExecutor(address=None if args.ray == "local" else args.ray)
        else:
            executor = "local" if args.workers else "serial"
        history = analyze_checkpoints(
            args.checkpoints, args.model, args.example_input, args.out, pattern=args.pattern,
            progress=False if args.no_progress else None, executor=executor,
            workers=args.workers, bins=args.bins, **kwargs)
    except (ValueError, TypeError, OSError, ImportError) as err:
        return _report(err)
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    print(f"{len(history.epochs())} checkpoints measured into {args.out} "
          f"(CausalDashboard.load({str(args.out)!r}))")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "analyze":
        return _analyze(parser, args)
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
    except (ValueError, OSError) as err:
        return _report(err)
    return 0


def _report(err: Exception) -> int:
    """A refused run: the message on stderr, exit status 2 (what argparse uses)."""
    # OSError beyond a missing file (permissions, a full disk, a path that turned into a
    # file after --out was checked) is the machine's answer about a path: printed with
    # the path it names, never as a traceback
    hint = "" if isinstance(err, (ValueError, FileNotFoundError)) else (
        " (check that --out is a folder you can write to)")
    print(f"error: {err}{hint}", file=sys.stderr)
    return 2


def _sweep(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from causal_widgets.studies.spec import StudyError
    from causal_widgets.studies.sweeps import study_from_args, sweep

    if args.ray is not None and (args.serial or args.workers):
        parser.error("--ray runs on the cluster: drop --serial/--workers")
    try:
        study = study_from_args(args.study, args.preset, args.quick)
        if args.ray is not None:
            from causal_widgets.live.executors import RayExecutor

            executor = RayExecutor(address=None if args.ray == "local" else args.ray)
        else:
            executor = "serial" if args.serial else "local"
        data = sweep(study, args.out, executor=executor, workers=args.workers,
                     max_retries=args.max_retries, figures=not args.no_figures)
    except (StudyError, ValueError, OSError, ImportError) as err:
        return _report(err)
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
