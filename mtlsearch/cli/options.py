"""Options and output shared by the ``mtlsearch`` commands: value parsers, the argument groups
every training command takes, the console and the training settings built from the options.

Nothing here imports torch at import time: ``mtlsearch --help`` must start fast.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mtlsearch.errors import MTLSearchError

DEFAULT_OUT = "mtlsearch-out"
DEFAULT_SEARCH_EPOCHS = 3


def kv(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with VALUE read as JSON when it parses (numbers, lists), else a string."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value


def csv_list(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


def int_list(text: str) -> list[int]:
    try:
        return [int(p) for p in csv_list(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers like 0,1,2, got {text!r}") from None


def formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=30)


def common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--quiet", "-q", action="store_true", help="no progress display")
    common.add_argument("--log-level", default="WARNING", metavar="LEVEL",
                        help="DEBUG, INFO, WARNING (default), ERROR")
    return common


def training_options(p: argparse.ArgumentParser, epochs: int) -> None:
    g = p.add_argument_group("what to search")
    g.add_argument("--dataset", default="multi_digits", help="dataset name (default %(default)s)")
    g.add_argument("--space", default="small_cnn", help="search space (default %(default)s)")
    g.add_argument("--dataset-arg", type=kv, action="append", default=[], metavar="KEY=VALUE",
                   help="dataset option, e.g. n_train=500 (repeatable)")
    g.add_argument("--space-arg", type=kv, action="append", default=[], metavar="KEY=VALUE",
                   help="search-space option, e.g. channels=[8,16] (repeatable)")
    t = p.add_argument_group("training of every candidate")
    t.add_argument("--epochs", type=int, default=epochs, help="epochs (default %(default)s)")
    t.add_argument("--batch-size", type=int, default=64, help="batch size (default %(default)s)")
    t.add_argument("--lr", type=float, default=1e-3, help="learning rate (default %(default)s)")
    t.add_argument("--device", default=None, help="cuda, mps or cpu (default: best available)")
    t.add_argument("--threads", type=int, default=1,
                   help="CPU threads of torch (default 1: small models train faster on one "
                        "thread than on contended cores; 0 = torch's default)")
    t.add_argument("--compile", action="store_true",
                   help="run every candidate's forward pass through torch.compile (long runs)")
    t.add_argument("--no-amp", dest="amp", action="store_const", const=False, default=None,
                   help="train in fp32 on a GPU (default: bf16 autocast where supported)")
    t.add_argument("--no-channels-last", dest="channels_last", action="store_const",
                   const=False, default=None,
                   help="keep image tensors contiguous on a GPU (default: channels-last)")


def json_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def storage_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--storage", default=None,
                   help=f"Optuna storage (default sqlite:///{DEFAULT_OUT}/study.db)")
    p.add_argument("--study", default=None,
                   help="study name (may be left out when the storage holds one study)")




def add_tracker_options(group: Any) -> None:
    """``--tracker NAME[:ARG]`` (repeatable) on a command's parser or argument group."""
    group.add_argument(
        "--tracker", action="append", default=[], metavar="NAME[:ARG]",
        help="log every trial to an experiment tracker (repeatable): mlflow (MLflow's default "
             "store), mlflow:URI (e.g. mlflow:sqlite:///mlflow.db, mlflow:http://host:5000), "
             "tensorboard (OUT/tensorboard) or tensorboard:DIR; needs the extra "
             "mtlsearch[mlflow] / mtlsearch[tensorboard]")
    group.add_argument("--mlflow-experiment", default=None, metavar="NAME",
                       help="the MLflow experiment of --tracker mlflow (default: the study name)")


@contextlib.contextmanager
def open_trackers(args: argparse.Namespace) -> Iterator[list[Any]]:
    """Register the trackers ``--tracker`` names for the length of the block (none: no-op)."""
    specs = list(getattr(args, "tracker", None) or [])
    if not specs:
        yield []
        return
    from mtlsearch.study.trackers import MLflowTracker, make_tracker, tracking

    out = getattr(args, "out", None) or DEFAULT_OUT
    trackers = [make_tracker(spec, out) for spec in specs]
    for tracker in trackers:
        if isinstance(tracker, MLflowTracker):
            tracker.experiment = getattr(args, "mlflow_experiment", None)
    with tracking(trackers) as opened:
        yield opened


def make_console(stderr: bool = False) -> Any:
    """A rich console; when not a terminal, each table is as wide as its content."""
    from mtlsearch.console import make_console as console

    return console(stderr=stderr)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=1, default=str, allow_nan=True) + "\n")


def train_config(args: argparse.Namespace, default_epochs: int) -> Any:
    from mtlsearch.engine.train import TrainConfig

    if args.threads:  # 0 keeps torch's default
        import torch

        if args.threads < 0:
            raise MTLSearchError(f"--threads must be 0 or more, got {args.threads}")
        torch.set_num_threads(args.threads)

    return TrainConfig(epochs=args.epochs or default_epochs, batch_size=args.batch_size,
                       lr=args.lr, device=args.device, compile=args.compile, amp=args.amp,
                       channels_last=args.channels_last)


def default_storage(args: argparse.Namespace) -> str | None:
    storage = getattr(args, "storage", None)
    if storage == "memory":
        return None
    if storage:
        return storage
    out = getattr(args, "out", None) if args.command == "search" else DEFAULT_OUT
    return f"sqlite:///{Path(out or DEFAULT_OUT) / 'study.db'}"


def fmt(value: Any, spec: str) -> str:
    if value is None:
        return "-"
    try:
        return format(value, spec)
    except (TypeError, ValueError):
        return str(value)


