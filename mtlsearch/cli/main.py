"""The entry point of ``mtlsearch``: parse, run the command, turn errors into exit statuses."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any

from mtlsearch.cli.config import argv_with_config
from mtlsearch.cli.parser import build_parser
from mtlsearch.cli.plugin_commands import is_plugin_command, run_plugin_command
from mtlsearch.errors import MTLSearchError

#: What ``mtlsearch`` exits with. 75 is sysexits' EX_TEMPFAIL ("try again later"): the study
#: stopped for lack of disk space and resumes once there is some; 130 and 143 are the shell's
#: 128 + SIGINT / SIGTERM: the running trial was queued again.
EXIT_CODES = {"ok": 0, "error": 2, "no_space": 75, "interrupted": 130, "terminated": 143}


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``mtlsearch`` with ``argv`` (default: the command line); returns the exit status.

    Example:
        >>> main(["--version"])  # doctest: +SKIP
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and is_plugin_command(argv[0]):  # argparse would swallow the command's options
        try:
            return run_plugin_command(argv[0], argv[1:])
        except MTLSearchError as exc:
            print(f"mtlsearch: error: {one_line(exc)}", file=sys.stderr)
            return 2
    from mtlsearch.registry import BUILTIN_COMMANDS

    # Loading every plugin costs seconds: only help texts and the command list need them.
    no_help = bool(argv) and argv[0] in BUILTIN_COMMANDS and not {"-h", "--help"} & set(argv)
    parser = build_parser(plugins=not no_help)
    argv = argv_with_config(parser, argv)  # --config FILE: the file's options before argv's
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    # Only the commands that train set torch's thread count (--threads); the others must not
    # pay for importing torch (the listings start in a fraction of a second).
    threads = _torch_threads() if hasattr(args, "threads") else None
    try:
        _configure_logging(args)
        return int(args.func(args) or 0)
    except MTLSearchError as exc:
        from mtlsearch.errors import OutOfSpaceError

        print(f"mtlsearch: error: {one_line(exc)}", file=sys.stderr)
        return EXIT_CODES["no_space" if isinstance(exc, OutOfSpaceError) else "error"]
    except KeyboardInterrupt as exc:
        terminated = str(exc) == "SIGTERM"
        print(f"mtlsearch: {'terminated (SIGTERM)' if terminated else 'interrupted'}; the "
              "running trial is queued again with the same parameters and seed. Run the same "
              "command again to resume.", file=sys.stderr)
        return EXIT_CODES["terminated" if terminated else "interrupted"]
    except Exception as exc:
        # Storage drivers that are not installed, unreadable files, malformed storage URLs,
        # a database that fails under us: one line, not a traceback.
        if isinstance(exc, (ImportError, OSError)) or is_storage_error(exc):
            print(f"mtlsearch: error: {type(exc).__name__}: {one_line(exc)}", file=sys.stderr)
            return EXIT_CODES["error"]
        raise
    finally:
        if threads is not None:
            import torch

            torch.set_num_threads(threads)  # --threads must not outlive an in-process call


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def _configure_logging(args: argparse.Namespace) -> None:
    """Log at ``--log-level``; commands marked ``light`` (the listings) without importing
    Optuna and the studies."""
    if not getattr(args, "light", False):
        from mtlsearch.study.progress import configure_logging

        configure_logging(args.log_level)
        return
    numeric = logging.getLevelName(str(args.log_level).upper())
    if not isinstance(numeric, int):
        raise MTLSearchError(f"unknown log level {args.log_level!r}; use DEBUG, INFO, WARNING, "
                             "ERROR or CRITICAL")
    root = logging.getLogger("mtlsearch")
    root.setLevel(numeric)
    if not any(getattr(h, "_mtlsearch", False) for h in root.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a record comes (as study.progress's handler,
    which it stands in for: the same mark, so configure_logging adds no second one)."""

    _mtlsearch = True

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def is_storage_error(exc: BaseException) -> bool:
    module = type(exc).__module__
    return module.startswith(("sqlalchemy", "optuna"))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
