"""How fast the ``mtlsearch`` command starts: ``--help`` and the listings, against an empty
Python (``python -c pass``) measured in the same run.

Each command runs as a fresh process (``mtlsearch`` is the console script next to this
Python, so no shim's start-up is counted), all of them in turns, ``--repeats`` times; the
figure is the median wall time. Also measured, for scale: ``python -c "import torch"`` (what
the listings no longer pay) and whether each command left torch, torchvision and Optuna out
of ``sys.modules``. Run from the repository root::

    python benchmarks/bench_cli_start.py --json cli_start.json       # median of 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

#: label -> the command's arguments after ``mtlsearch``.
COMMANDS: dict[str, list[str]] = {
    "mtlsearch --help": ["--help"],
    "mtlsearch strategies --json": ["strategies", "--json"],
    "mtlsearch strategies": ["strategies"],
    "mtlsearch spaces --json": ["spaces", "--json"],
    "mtlsearch datasets --json": ["datasets", "--json"],
    "mtlsearch weightings --json": ["weightings", "--json"],
    "mtlsearch plugins --json": ["plugins", "--json"],
}
HEAVY = ("torch", "torchvision", "optuna", "matplotlib", "sklearn")
_PROBE = ("import json, sys\nfrom mtlsearch.cli import main\ntry:\n    main({argv!r})\n"
          "except SystemExit:\n    pass\nsys.stderr.write('HEAVY=' + json.dumps(sorted(m for m in "
          "{heavy!r} if m in sys.modules)) + '\\n')\n")


def console_script() -> list[str]:
    """``mtlsearch`` beside this interpreter (a pyenv or conda shim would add its own start-up),
    else ``python -m mtlsearch``."""
    script = Path(sys.executable).parent / "mtlsearch"
    return [str(script)] if script.exists() else [sys.executable, "-m", "mtlsearch"]


def wall(argv: list[str]) -> float:
    """Seconds one run of ``argv`` takes, output discarded; a failing command is an error."""
    start = time.perf_counter()
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr[-500:]}")
    return seconds


def heavy_modules(argv: list[str]) -> list[str]:
    """Which of :data:`HEAVY` the command ``mtlsearch ARGV`` imported (run in-process)."""
    code = _PROBE.format(argv=argv, heavy=HEAVY)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    line = [ln for ln in done.stderr.splitlines() if ln.startswith("HEAVY=")][-1]
    return json.loads(line[len("HEAVY="):])


def measure(repeats: int) -> dict:
    """Median wall seconds of every command and of the references, taken in turns."""
    script = console_script()
    runs = {"python -c pass": [sys.executable, "-c", "pass"],
            "python -c 'import torch'": [sys.executable, "-c", "import torch"],
            **{label: script + argv for label, argv in COMMANDS.items()}}
    samples: dict[str, list[float]] = {label: [] for label in runs}
    for argv in runs.values():  # warm-up: the file cache, .pyc files
        wall(argv)
    for _ in range(repeats):
        for label, argv in runs.items():
            samples[label].append(wall(argv))
    base = statistics.median(samples["python -c pass"])
    rows = []
    for label, values in samples.items():
        median = statistics.median(values)
        rows.append({"command": label, "median_s": median, "over_python_s": median - base,
                     "samples": values,
                     "heavy": heavy_modules(COMMANDS[label]) if label in COMMANDS else None})
    return {"settings": {"repeats": repeats, "script": " ".join(script),
                         "python": sys.version.split()[0], "cpus": os.cpu_count()},
            "rows": rows}


def build_parser() -> argparse.ArgumentParser:
    """The script's options (run_all.py's declaration is checked against them)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs of each (default 5)")
    parser.add_argument("--json", help="write the figures as JSON here")
    return parser


def main() -> None:
    parser = build_parser()
    args = parser.parse_args()
    data = measure(args.repeats)
    data["command"] = " ".join(["python", "benchmarks/bench_cli_start.py", *sys.argv[1:]])
    print("| command | median s | over `python -c pass` s | imported |\n|---|---|---|---|")
    for row in data["rows"]:
        heavy = "—" if row["heavy"] is None else (", ".join(row["heavy"]) or "none of them")
        print(f"| `{row['command']}` | {row['median_s']:.3f} | {row['over_python_s']:.3f} | "
              f"{heavy} |")
    if args.json:
        Path(args.json).write_text(json.dumps(data, indent=1))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
