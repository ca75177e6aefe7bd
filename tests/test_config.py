"""Config files: a TOML file reproduces a command-line search bit for bit, flags override it,
bad files are clear errors, and a study's recorded config prints back as TOML."""

from __future__ import annotations

import json

import optuna
import pytest
import tomllib

from mtlsearch.cli import main
from mtlsearch.cli.config import (
    CONFIG_ATTR,
    argv_with_config,
    command_parser,
    config_toml,
    effective_config,
    record_config,
)
from mtlsearch.cli.parser import build_parser
from mtlsearch.cli.search_commands import per_strategy

TINY = ["--dataset", "synthetic", "--space", "mlp", "--dataset-arg", "n_tasks=3",
        "--dataset-arg", "n_samples=240", "--space-arg", "widths=[8,8]", "--epochs", "1"]


@pytest.fixture(scope="module")
def parser():
    return build_parser(plugins=False)


def parse(parser, argv):
    return parser.parse_args(argv_with_config(parser, argv))


def write(tmp_path, text: str, name: str = "search.toml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def _trials(storage: str) -> list[tuple]:
    study = optuna.load_study(study_name=None, storage=storage)
    return [(t.number, t.state.name, t.params, t.values, t.user_attrs["graph"],
             t.user_attrs["delta_mtl_test"], t.user_attrs["metrics"]) for t in study.trials]


def test_a_toml_config_reproduces_a_cli_search_bit_for_bit(tmp_path, parser, capsys):
    first = tmp_path / "first"
    args = parse(parser, ["search", *TINY, "--trials", "2", "--seed", "3", "--lr", "0.002",
                          "--out", str(first), "--quiet"])
    assert args.func(args) == 0
    storage = f"sqlite:///{first / 'study.db'}"
    study = optuna.load_study(study_name=None, storage=storage)
    record_config(study, effective_config(args))  # what `mtlsearch search` records
    recorded = study.user_attrs[CONFIG_ATTR]
    assert recorded["command"] == "search"
    assert recorded["options"]["strategy"] == study.user_attrs["mtlsearch"]["strategy"]
    assert recorded["options"]["dataset-arg"] == {"n_tasks": 3, "n_samples": 240}
    assert "quiet" not in recorded["options"]  # how it printed is not what it ran
    capsys.readouterr()

    assert main(["show", "--storage", storage, "--config"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("# recorded by mtlsearch") and "mtlsearch search --config" in text
    assert tomllib.loads(text) == recorded["options"]
    assert main(["show", "--storage", storage, "--config", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["options"] == recorded["options"]

    again = tmp_path / "again"
    config = write(tmp_path, text)
    args = parse(parser, ["search", "--config", config, "--out", str(again), "--quiet"])
    assert args.func(args) == 0
    replay = f"sqlite:///{again / 'study.db'}"
    assert optuna.load_study(study_name=None, storage=replay).study_name == study.study_name
    assert _trials(replay) == _trials(storage)  # same parameters, values, graphs, metrics


def test_command_line_flags_override_the_file(tmp_path, parser):
    config = write(tmp_path, """
dataset = "synthetic"
epochs = 4
trials = 5
lr = 0.01
batch_size = 16        # underscores or dashes
no-amp = true
compile = false
objectives = ["delta_mtl", "macs"]
[dataset-arg]
n_tasks = 3
n_samples = 240
[space_arg]
widths = [8, 8]
""")
    args = parse(parser, ["search", "--config", config, "--trials", "2",
                          "--dataset-arg", "n_tasks=4"])
    assert (args.trials, args.epochs, args.lr, args.batch_size) == (2, 4, 0.01, 16)
    assert args.amp is False and args.compile is False and args.dataset == "synthetic"
    assert args.objectives == ["delta_mtl", "macs"]
    assert dict(args.dataset_arg) == {"n_tasks": 4, "n_samples": 240}  # the flag's key wins
    assert dict(args.space_arg) == {"widths": [8, 8]}
    assert args.space == "small_cnn"  # neither file nor flag: the default
    assert effective_config(args)["dataset-arg"] == {"n_tasks": 4, "n_samples": 240}
    # --config=FILE and argparse's abbreviations are read as argparse reads them
    assert parse(parser, ["search", f"--conf={config}"]).epochs == 4

    compare = write(tmp_path, """
strategies = ["hard_sharing", "random_tree"]
seeds = [0, 1]
compute = "none"
[strategy-arg]
affinity_tree.estimator = "full"
"random_tree.groups" = 2
""", "compare.toml")
    args = parse(parser, ["compare", "--config", compare, "--seeds", "4"])
    assert args.strategies == ["hard_sharing", "random_tree"] and args.seeds == [4]
    assert args.compute == "none"
    assert per_strategy(args.strategy_arg) == {"affinity_tree": {"estimator": "full"},
                                               "random_tree": {"groups": 2}}


def test_the_printed_config_reads_back_to_the_same_options(tmp_path, parser):
    argv = ["search", *TINY, "--trials", "3", "--no-channels-last", "--timeout", "60",
            "--strategy-arg", "depth=2", "--objectives", "delta_mtl"]
    args = parse(parser, argv)
    record = {"command": "search", "options": effective_config(args)}
    assert "timeout" in record["options"] and "device" not in record["options"]  # None: left out
    again = parse(parser, ["search", "--config", write(tmp_path, config_toml(record))])
    for key, value in vars(args).items():
        if key != "config":
            assert getattr(again, key) == value, key


@pytest.mark.parametrize(("text", "expected"), [
    ("epoch = 3", "unknown key 'epoch'; the known keys of `mtlsearch search` are "),
    ("epochs = 'three'", 'epochs must be an integer, not "three" (a string)'),
    ("epochs = 1.5", "epochs must be an integer, not 1.5 (a number)"),
    ("lr = true", "lr must be a number, not true (a boolean)"),
    ("compile = 1", "compile is an on/off flag: write true or false, not 1 (an integer)"),
    ("dataset-arg = 'n_tasks=3'", "dataset-arg takes KEY=VALUE pairs: write a table"),
    ("objectives = 3", "objectives takes a list"),
    ("dataset = ['a']", 'dataset must be a string, not ["a"] (an array)'),
    ("epochs = ", "is not valid TOML"),
])
def test_bad_files_are_clear_errors(tmp_path, parser, capsys, text, expected):
    config = write(tmp_path, text + "\n")
    with pytest.raises(SystemExit) as exit_:
        parse(parser, ["search", "--config", config])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert expected in err and "search.toml" in err
    if "unknown key" in expected:
        assert "epochs" in err and "dataset-arg" in err  # the known keys are listed


def test_missing_file_and_a_study_without_a_record(tmp_path, parser, capsys):
    with pytest.raises(SystemExit):
        parse(parser, ["search", "--config", str(tmp_path / "nope.toml")])
    assert "nope.toml' not found" in capsys.readouterr().err
    storage = f"sqlite:///{tmp_path / 'old.db'}"
    optuna.create_study(study_name="old", storage=storage)
    assert main(["show", "--storage", storage, "--config"]) == 2
    assert "study 'old' records no config" in capsys.readouterr().err


def test_commands_without_config_are_unchanged(parser):
    argv = ["show", "--config"]
    assert argv_with_config(parser, argv) == argv
    assert argv_with_config(parser, ["search", "--trials", "2"]) == ["search", "--trials", "2"]
    assert any("--config" in a.option_strings for a in command_parser(parser, "compare")._actions)
