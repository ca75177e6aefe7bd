"""Config files: ``mtlsearch search --config search.toml`` (and ``compare``).

A config file holds a command's options as TOML keys named like the options, with dashes or
underscores (``batch-size = 32``, ``batch_size = 32``); ``KEY=VALUE`` options are tables
(``[dataset-arg]``), comma lists are arrays, on/off flags are booleans. The file's options go
in front of the command line's, so a flag given on the command line wins over the file (and
a repeated ``KEY=VALUE`` option adds to, or overrides a key of, the file's table).

The options a study ran with (after the command line's overrides) are stored in the study
(:func:`record_config`); ``mtlsearch show --config`` prints them back as TOML, which
``mtlsearch search --config FILE`` runs again.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mtlsearch.cli.options import csv_list, int_list, kv
from mtlsearch.errors import MTLSearchError

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

__all__ = ["CONFIG_ATTR", "CONFIG_COMMANDS", "add_config_option", "argv_with_config",
           "config_toml", "config_tokens", "effective_config", "load_config", "record_config",
           "record_config_in", "recorded_config"]

#: The study user attribute holding ``{"command": ..., "options": {...}}``.
CONFIG_ATTR = "mtlsearch_config"
#: The commands that read ``--config``.
CONFIG_COMMANDS = ("search", "compare")
#: Options about how a command prints, not what it runs: accepted in a file, not recorded.
NOT_RECORDED = frozenset({"config", "quiet", "log_level", "json"})
_PARSER_KEY = "config_parser"  # the command's parser, kept in its namespace for the record


# ------------------------------------------------------------------------ declaring it
def add_config_option(p: argparse.ArgumentParser) -> None:
    """Declare ``--config FILE`` on a command's parser (idempotent)."""
    if not any("--config" in a.option_strings for a in p._actions):
        p.add_argument("--config", default=None, metavar="FILE.toml",
                       help="read the options from a TOML file (keys = option names, "
                            "KEY=VALUE options as tables); flags given here override it; "
                            "`mtlsearch show --config` prints a study's")
    p.set_defaults(**{_PARSER_KEY: p})


def command_parser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser | None:
    """The subparser of ``command`` in the ``mtlsearch`` parser (``None``: no such command)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices.get(command)
    return None


def argv_with_config(parser: argparse.ArgumentParser, argv: Sequence[str]) -> list[str]:
    """``argv`` with the options of its ``--config FILE`` put before the command line's.

    Called on the command line before ``parser.parse_args``; declares ``--config`` on
    ``search`` and ``compare`` if their modules did not. A command without ``--config``, or
    a command line without it, comes back unchanged. A bad file is an argparse error (exit
    status 2) naming the file, the key and what it expects.
    """
    argv = list(argv)
    for command in CONFIG_COMMANDS:
        sub = command_parser(parser, command)
        if sub is not None:
            add_config_option(sub)
    if not argv or argv[0] not in CONFIG_COMMANDS:
        return argv
    sub = command_parser(parser, argv[0])
    if sub is None or not any(a.startswith("--c") for a in argv[1:]):
        return argv
    known, _ = sub.parse_known_args(argv[1:])  # argparse's own reading of --config / --conf=
    if not getattr(known, "config", None):
        return argv
    try:
        tokens = config_tokens(sub, load_config(known.config), source=known.config)
    except MTLSearchError as exc:
        sub.error(str(exc))
    return [argv[0], *tokens, *argv[1:]]


# ------------------------------------------------------------------------ reading a file
def load_config(path: str | Path) -> dict[str, Any]:
    """The TOML file at ``path`` as a dictionary (errors name the file and the line)."""
    path = Path(path)
    if not path.is_file():
        raise MTLSearchError(f"config file {str(path)!r} not found")
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise MTLSearchError(f"config file {str(path)!r} is not valid TOML: {exc}") from None


def _long_flag(action: argparse.Action) -> str | None:
    return next((o for o in action.option_strings if o.startswith("--")), None)


def file_options(sub: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """Every option a file may set: ``{"batch-size": action, ...}``."""
    options: dict[str, argparse.Action] = {}
    for action in sub._actions:
        flag = _long_flag(action)
        if flag is None or action.dest in ("help", "config") or \
                isinstance(action, argparse._VersionAction):
            continue
        options[flag[2:]] = action
    return options


def config_tokens(sub: argparse.ArgumentParser, data: Mapping[str, Any],
                  source: str | Path = "the config file") -> list[str]:
    """The command-line words that ``data`` (a parsed config file) stands for."""
    options = file_options(sub)
    tokens: list[str] = []
    for key, value in data.items():
        name = key.strip().replace("_", "-")
        if name not in options:
            raise MTLSearchError(
                f"{source}: unknown key {key!r}; the known keys of `{sub.prog}` are "
                f"{', '.join(sorted(options))} (dashes or underscores)")
        tokens += _tokens(options[name], value, f"{source}: {key}")
    return tokens


def _tokens(action: argparse.Action, value: Any, where: str) -> list[str]:
    flag = _long_flag(action)
    assert flag is not None
    if action.nargs == 0:  # an on/off flag
        if not isinstance(value, bool):
            raise MTLSearchError(f"{where} is an on/off flag: write true or false, "
                                 f"not {_shown(value)}")
        return [flag] if value else []
    if action.type is kv:  # KEY=VALUE options: a table
        if not isinstance(value, dict):
            raise MTLSearchError(f"{where} takes KEY=VALUE pairs: write a table, e.g. "
                                 f"[{flag[2:]}] then one `key = value` a line; got "
                                 f"{_shown(value)}")
        pairs = _dotted(value) if "." in str(action.metavar or "").split("=")[0] \
            else value.items()
        out: list[str] = []
        for k, v in pairs:
            try:
                out.append(f"{flag}={k}={json.dumps(v)}")
            except TypeError:
                raise MTLSearchError(f"{where}.{k}: {_shown(v)} has no JSON form "
                                     "(use a string, number, boolean, array or table)") from None
        return out
    if action.type in (csv_list, int_list):  # comma lists: an array (or the CLI's string)
        if isinstance(value, str):
            return [f"{flag}={value}"]
        if not isinstance(value, list):
            raise MTLSearchError(f"{where} takes a list, e.g. {flag[2:]} = "
                                 f"{_example(action)}; got {_shown(value)}")
        return [f"{flag}=" + ",".join(_scalar(action, v, where) for v in value)]
    many = isinstance(action, argparse._AppendAction) or action.nargs in ("*", "+") or \
        isinstance(action.nargs, int)
    if many:
        items = value if isinstance(value, list) else [value]
        words = [_scalar(action, v, where) for v in items]
        if isinstance(action, argparse._AppendAction):
            return [f"{flag}={word}" for word in words]
        return [flag, *words]
    # --flag=VALUE: a value that starts with "-" is not taken for an option
    return [f"{flag}={_scalar(action, value, where)}"]


def _scalar(action: argparse.Action, value: Any, where: str) -> str:
    """One command-line word for ``value``, checked against the option's type."""
    kind = action.type
    if kind is int_list:
        kind = int
    if isinstance(value, bool) or isinstance(value, (list, dict)):
        wanted = {int: "an integer", float: "a number"}.get(kind, "a string")  # type: ignore[call-overload]
        raise MTLSearchError(f"{where} must be {wanted}, not {_shown(value)}")
    if kind is int:
        if not isinstance(value, int):
            raise MTLSearchError(f"{where} must be an integer, not {_shown(value)}")
        return str(value)
    if kind is float:
        if not isinstance(value, (int, float)):
            raise MTLSearchError(f"{where} must be a number, not {_shown(value)}")
        return repr(float(value)) if isinstance(value, float) else str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (str, int)):  # a command-line word: the option's type reads it
        return str(value)
    raise MTLSearchError(f"{where} must be a string, not {_shown(value)}")


def _dotted(table: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """``{"a": {"b": 1}}`` -> ``[("a.b", 1)]``: TOML's dotted keys, for STRATEGY.KEY options."""
    pairs: list[tuple[str, Any]] = []
    for key, value in table.items():
        if isinstance(value, dict) and not prefix:
            pairs += _dotted(value, f"{key}.")
        else:
            pairs.append((f"{prefix}{key}", value))
    return pairs


def _shown(value: Any) -> str:
    kind = {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "an array", dict: "a table"}.get(type(value), type(value).__name__)
    return f"{json.dumps(value, default=str)} ({kind})"


def _example(action: argparse.Action) -> str:
    return "[0, 1]" if action.type is int_list else '["a", "b"]'


# ------------------------------------------------------------------------ the record
def effective_config(args: argparse.Namespace,
                     sub: argparse.ArgumentParser | None = None) -> dict[str, Any]:
    """The options ``args`` ran with, as a TOML-ready dictionary keyed by option name.

    ``sub``: the command's parser (default: the one :func:`add_config_option` stored in
    ``args``). Options left at ``None`` are left out (TOML has no null), so they take their
    default when the file is read back; printing options (``--quiet``, ``--json``) too.
    """
    sub = sub or getattr(args, _PARSER_KEY, None)
    if sub is None:
        raise MTLSearchError("effective_config needs the command's parser (add_config_option)")
    config: dict[str, Any] = {}
    for name, action in file_options(sub).items():
        if action.dest in NOT_RECORDED or not hasattr(args, action.dest):
            continue
        value = getattr(args, action.dest)
        if action.nargs == 0:
            config[name] = value is not None and value == action.const
        elif action.type is kv:
            if value:
                config[name] = _toml_ready(dict(value))
        elif isinstance(action, argparse._AppendAction):
            if value:  # an empty list is the default: nothing to say
                config[name] = _toml_ready(list(value))
        elif value is not None:
            config[name] = _toml_ready(value)
    return config


def _toml_ready(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _toml_ready(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_toml_ready(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def record_config(study: Any, config: Mapping[str, Any], command: str = "search") -> None:
    """Store ``config`` (from :func:`effective_config`) in ``study`` (``CONFIG_ATTR``).

    For ``search``, a strategy left to the registered default is recorded by name, so the
    file runs the same strategy when the default changes.
    """
    options = dict(config)
    if command == "search" and not options.get("strategy"):
        strategy = (study.user_attrs.get("mtlsearch") or {}).get("strategy")
        if strategy:  # first, where `--strategy` stands in the file it would print
            options = {"strategy": strategy, **{k: v for k, v in options.items()
                                                if k != "strategy"}}
    study.set_user_attr(CONFIG_ATTR, {"command": command, "options": _toml_ready(options)})


def record_config_in(storage: str, study_names: Iterable[str], config: Mapping[str, Any],
                     command: str = "compare") -> None:
    """:func:`record_config` in each named study of ``storage`` (``compare``'s searches)."""
    from mtlsearch.study.storage import open_study

    for name in dict.fromkeys(study_names):
        record_config(open_study(storage, name), config, command)


def recorded_config(study: Any) -> dict[str, Any]:
    """What :func:`record_config` stored in ``study``; an error naming the study if nothing."""
    record = study.user_attrs.get(CONFIG_ATTR)
    if not record:
        raise MTLSearchError(
            f"study {study.study_name!r} records no config: it was run from Python or by an "
            "older mtlsearch; `mtlsearch show --json` lists its settings")
    return dict(record)


def config_toml(record: Mapping[str, Any]) -> str:
    """A recorded config as a TOML file that re-runs it, with a comment saying how."""
    import tomli_w

    from mtlsearch._version import __version__

    command = record.get("command", "search")
    header = (f"# recorded by mtlsearch {__version__}; run it again with:\n"
              f"#   mtlsearch {command} --config THIS_FILE\n"
              "# (a flag given on the command line overrides the file, e.g. --out elsewhere)\n")
    return header + tomli_w.dumps(dict(record.get("options") or {}))


def known_keys(sub: argparse.ArgumentParser) -> Iterable[str]:
    """The keys a config file of ``sub`` may hold."""
    return sorted(file_options(sub))
