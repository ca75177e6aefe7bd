"""Run every benchmark and regenerate docs/benchmarks.md and docs/results.md from the figures.

One command, from the repository root::

    python benchmarks/run_all.py                  # everything, CPU (target: under 30 min, 2 cores)
    python benchmarks/run_all.py --quick          # smaller settings (a smoke run of the suite)
    python benchmarks/run_all.py --only routing merge   # re-run parts, keep the others' figures
    python benchmarks/run_all.py --render-only    # rewrite the documents from the saved JSON
                                                  # (the header keeps the run that measured it)
    python benchmarks/run_all.py --device cuda    # engine, search and GPU parts on the GPU

Each part is one benchmark script run as a subprocess, writing its raw figures as JSON into
``--out`` (default ``runs/bench``), its output into ``--out/logs/<part>.log``. Parts run
``--jobs`` at a time (default 2 on the CPU: every script uses one torch thread, so two fill
the two cores and the side-by-side ratios are unaffected; 1 with ``--device cuda``). Then the
documents are assembled from whatever JSON is in ``--out``, every part's section rendered by
:mod:`benchmarks.render`: a part that failed, or was not run, shows why in place of its
figures, so the documents are always complete. ``python -m benchmarks.run_all`` is the same
command.

Parts (``--only`` takes these names, or the section letters a-f):

==========  =======  ====================================================================
part        section  script
==========  =======  ====================================================================
engine      a, b     bench_engine.py (engine overhead; shared-prefix execution)
routing     c        bench_task_routing.py scale (task routing at 10..312 tasks)
merge       c        bench_gradient_merge.py --part cost (gradient merging at 10..312 tasks)
search      d, e     bench_search_cost.py (``mtlsearch compare``: per strategy, end to end)
affinity    d        bench_affinity_tree.py --part synthetic (estimators' cost against N)
gpu         f        bench_gpu.py (only with ``--device cuda``)
results     results  bench_results.py --quick (docs/results.md, strategies side by side)
dense       results  bench_dense.py --quick (docs/results.md, dense prediction; under the
                     recorded 3-seed run)
quality     results  bench_search_quality.py --quick (docs/results.md, search quality; under
                     the recorded 5-seed run)
weighting   g        bench_weighting.py steps (loss weighting step time; docs/results.md's
                     loss-weighting section renders the recorded 3-seed runs)
workers     h        bench_workers.py (parallel trials: search and compare, 1 and 2 workers)
cli_start   i        bench_cli_start.py (``mtlsearch --help`` and listings, wall time)
streaming   j        bench_streaming.py (streamed image folders: step time, peak memory)
==========  =======  ====================================================================
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__:  # imported as benchmarks.run_all (the tests), or run with python -m
    from . import bench_results
    from .common import machine_info
    from .render import (
        affinity,
        cli_start,
        dense,
        engine,
        gpu,
        merge,
        pages,
        quality,
        results,
        routing,
        streaming,
        weighting,
        workers,
    )
    from .render import search as search_cost
    from .render.markup import Section, demote_headings, not_generated
else:  # run as a file (python benchmarks/run_all.py): its folder is first on the path
    import bench_results
    from common import machine_info
    from render import (
        affinity,
        cli_start,
        dense,
        engine,
        gpu,
        merge,
        pages,
        quality,
        results,
        routing,
        streaming,
        weighting,
        workers,
    )
    from render import search as search_cost
    from render.markup import Section, demote_headings, not_generated

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# bench_dense.py's meaningful preset, 3 seeds: too long for the suite, so recorded once.
RECORDED_DENSE = HERE / "recorded" / "dense_meaningful.md"
# bench_search_quality.py at its default size (5 seeds, about 25 min on 2 cores): recorded once.
RECORDED_QUALITY = HERE / "recorded" / "search_quality.json"
# bench_weighting.py results / tree / --joint (3 seeds, about 25 min on 2 cores): recorded once;
# its step-time part (``steps``) is also recorded there and the suite re-measures it.
RECORDED_WEIGHTING = HERE / "recorded" / "weighting.json"

PARTS = ("engine", "routing", "merge", "search", "affinity", "gpu", "results", "dense", "quality",
         "weighting", "workers", "cli_start", "streaming")
LETTERS = {"a": ["engine"], "b": ["engine"], "c": ["routing", "merge"],
           "d": ["search", "affinity"], "e": ["search"], "f": ["gpu"], "g": ["weighting"],
           "h": ["workers"], "i": ["cli_start"], "j": ["streaming"]}
#: Rough single-thread minutes of each part (full, quick): the longest start first.
ESTIMATES = {"engine": (3.5, 0.6), "routing": (1.3, 0.6), "merge": (2.5, 1.0),
             "search": (5.5, 2.0), "affinity": (2.5, 0.8), "gpu": (8.0, 3.0),
             "results": (10.0, 4.0), "dense": (3.0, 1.5), "quality": (5.0, 5.0),
             "weighting": (4.0, 1.2), "workers": (70.0, 3.0), "cli_start": (0.3, 0.2),
             "streaming": (6.0, 1.0)}


@dataclass
class Job:
    """One part: the script and arguments to run, and the files it writes."""

    part: str
    script: str
    argv: list[str]
    outputs: list[Path]
    skip_reason: str | None = None  # set: the part cannot run here (gpu without CUDA)

    @property
    def command(self) -> str:
        """The command as the documents show it (run from the repository root)."""
        return " ".join(["python", f"benchmarks/{self.script}", *self.argv])


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def build_jobs(args: argparse.Namespace, out: Path) -> dict[str, Job]:
    """Every part's job for these options (paths under ``out``): the declaration of the suite,
    each script with the options it is given (``args``: ``quick``, ``threads``, ``device`` and,
    optionally, ``docs``). Every part writes ``out/<part>.json`` and nothing else the
    documents read."""
    q, threads, dev = args.quick, str(args.threads), args.device
    o = {p: out / f"{p}.json" for p in PARTS}
    jobs: dict[str, Job] = {}

    engine_argv = ["--device", dev, "--threads", threads, "--json", _rel(o["engine"])]
    engine_argv += ["--quick"] if q else ["--reps", "7"]
    jobs["engine"] = Job("engine", "bench_engine.py", engine_argv, [o["engine"]])

    routing_argv = ["scale", "--json", _rel(o["routing"])] + (["--quick"] if q else [])
    jobs["routing"] = Job("routing", "bench_task_routing.py", routing_argv, [o["routing"]])

    merge_argv = ["--part", "cost", "--json", _rel(o["merge"])]
    merge_argv += ["--tasks", "10", "78", "312", "--repeats", "1"] if q else []
    jobs["merge"] = Job("merge", "bench_gradient_merge.py", merge_argv, [o["merge"]])

    search_argv = ["--json", _rel(o["search"]), "--threads", threads, "--device", dev]
    jobs["search"] = Job("search", "bench_search_cost.py", search_argv + (["--quick"] if q else []),
                         [o["search"]])

    affinity_argv = ["--part", "synthetic", "--threads", threads, "--json", _rel(o["affinity"]),
                     "--out-dir", _rel(out)] + (["--quick"] if q else [])
    jobs["affinity"] = Job("affinity", "bench_affinity_tree.py", affinity_argv, [o["affinity"]])

    gpu_argv = ["--json", _rel(o["gpu"])] + (["--quick"] if q else [])
    jobs["gpu"] = Job("gpu", "bench_gpu.py", gpu_argv, [o["gpu"]],
                      skip_reason=None if dev == "cuda" else f"run with --device {dev}")

    # Both scripts' --quick is the suite's size ("the budget of the one-command benchmark
    # suite"), in the full run too; the suite's own --quick trims results to one seed.
    on_device = ["--device", dev] if dev != "cpu" else []
    results_argv = ["--quick", *(["--seeds", "0"] if q else []), "--threads", threads,
                    "--json", _rel(o["results"])]
    if getattr(args, "docs", None) is not None:  # its Pareto plots go with the page
        results_argv += ["--images", _rel(Path(args.docs) / "images")]
    jobs["results"] = Job("results", "bench_results.py", results_argv + on_device,
                          [o["results"]])
    jobs["dense"] = Job("dense", "bench_dense.py",
                        ["--quick", "--threads", threads, "--json", _rel(o["dense"]), *on_device],
                        [o["dense"]])

    # Always its smoke size: the default size (5 seeds) is recorded (RECORDED_QUALITY) and
    # rendered above it. One process, so the suite keeps two busy cores.
    jobs["quality"] = Job("quality", "bench_search_quality.py",
                          ["--quick", "--jobs", "1", "--threads", threads,
                           "--json", _rel(o["quality"]), "--out", _rel(out / "quality_runs"),
                           *on_device], [o["quality"]])
    weighting_argv = ["steps", "--json", _rel(o["weighting"])]
    weighting_argv += ["--rounds", "1", "--steps", "1"] if q else []
    jobs["weighting"] = Job("weighting", "bench_weighting.py", weighting_argv, [o["weighting"]])
    # Repeated: its speed-ups are ratios of wall times, which drift with the machine's load.
    workers_argv = ["--json", _rel(o["workers"])] + (["--quick"] if q else ["--repeat", "3", "--pinned-baseline"])
    jobs["workers"] = Job("workers", "bench_workers.py", workers_argv, [o["workers"]])
    # Wall time of a fresh process: the lead runs it with no other part beside it.
    jobs["cli_start"] = Job("cli_start", "bench_cli_start.py",
                            ["--json", _rel(o["cli_start"])] + (["--repeats", "3"] if q else []),
                            [o["cli_start"]])
    jobs["streaming"] = Job("streaming", "bench_streaming.py",
                            ["--json", _rel(o["streaming"])] + (["--quick"] if q else []),
                            [o["streaming"]])
    return jobs


# --------------------------------------------------------------------------- running


def _last_line(log: Path) -> str:
    try:
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    useful = [ln for ln in lines if "leaked" not in ln and "nanobind" not in ln
              and "skipped remainder" not in ln]
    return (useful or [""])[-1][:200]


def run_jobs(jobs: Sequence[Job], out: Path, *, parallel: int, timeout: float,
             quick: bool) -> dict[str, dict[str, Any]]:
    """Run ``jobs``, ``parallel`` at a time, longest first; their status by part."""
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONUNBUFFERED="1")
    pending = sorted(jobs, key=lambda j: -ESTIMATES[j.part][1 if quick else 0])
    running: dict[str, tuple[Job, subprocess.Popen, float, Any]] = {}
    status: dict[str, dict[str, Any]] = {}
    while pending or running:
        while pending and len(running) < parallel:
            job = pending.pop(0)
            for path in job.outputs:  # never report an earlier run's figures as this one's
                path.unlink(missing_ok=True)
            fh = open(logs / f"{job.part}.log", "w")  # noqa: SIM115 - closed when it ends
            print(f"[run_all] start {job.part}: {job.command}", flush=True)
            proc = subprocess.Popen([sys.executable, str(HERE / job.script), *job.argv],
                                    cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, env=env,
                                    start_new_session=True)
            running[job.part] = (job, proc, time.perf_counter(), fh)
        time.sleep(0.5)
        for part, (job, proc, start, fh) in list(running.items()):
            seconds = time.perf_counter() - start
            code = proc.poll()
            if code is None and seconds > timeout:
                os.killpg(proc.pid, signal.SIGKILL)  # the job's own process group
                code = proc.wait()
                reason = f"stopped after the --timeout of {timeout:.0f} s"
            elif code is None:
                continue
            else:
                reason = None
            fh.close()
            missing = [p for p in job.outputs if not p.exists()]
            if reason is None and code != 0:
                reason = (f"{job.script} exited with status {code} (log {_rel(logs / (part + '.log'))}"
                          f": {_last_line(logs / (part + '.log'))})")
            elif reason is None and missing:
                reason = f"{job.script} wrote no {', '.join(p.name for p in missing)}"
            status[part] = {"command": job.command, "returncode": code, "seconds": seconds,
                            "date": _now(), "quick": quick, "reason": reason}
            print(f"[run_all] {part}: {'ok' if reason is None else reason} ({seconds:.0f} s)",
                  flush=True)
            del running[part]
    return status


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


# --------------------------------------------------------------------------- assembling


def _load(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _why(part: str, status: Mapping[str, Mapping[str, Any]], jobs: Mapping[str, Job]) -> str:
    """Why ``part`` has no figures."""
    st = status.get(part)
    if st and st.get("reason"):
        return st["reason"]
    job = jobs.get(part)
    if job is not None and job.skip_reason:
        return job.skip_reason
    return f"the {part} part was not run (run `python benchmarks/run_all.py --only {part}`)"


def _with_recorded_dense(recorded: Path, smoke: str | None, why: str) -> str:
    """The dense section: the recorded meaningful-size run, then the suite's smoke run under it."""
    rel, seeds_rel = _rel(recorded), _rel(recorded.with_suffix(""))
    note = (f"*Recorded run, not repeated by the suite (about an hour on 2 CPU cores): "
            f"`{rel}`, rendered from the per-seed JSON in `{seeds_rel}/` by "
            f"`python benchmarks/bench_dense.py --merge {seeds_rel}/seed*.json "
            f"--markdown {rel}`.*")
    smoke = (demote_headings(smoke, 1) if smoke is not None else
             "### Smoke run (`--quick`)\n\n" + not_generated(why))
    return "\n\n".join([recorded.read_text(encoding="utf-8").strip(), note, smoke])


def _source(part: str, status: Mapping[str, Mapping[str, Any]], ran: Sequence[str]) -> str:
    st = status.get(part)
    if not st:
        return ""
    when = "in this run" if part in ran else f"in an earlier run ({st['date']})"
    mode = ", quick settings" if st.get("quick") else ""
    return f"\n\n*Measured {when}{mode}: `{st['command']}`, {st['seconds']:.0f} s.*"


def _quality_section(out: Path, images: Path | None, status: Mapping[str, Mapping[str, Any]],
                     ran: Sequence[str], jobs: Mapping[str, Job],
                     recorded: Path | None) -> str | None:
    """The search-quality section: the recorded default-size run (when there is one), then the
    suite's own smoke run; ``None`` when neither has figures."""
    smoke = None if (status.get("quality") or {}).get("reason") else _load(out / "quality.json")
    rec = _load(recorded) if recorded is not None and recorded.exists() else None
    if rec is None and smoke is None:
        return None
    parts = []
    if rec is not None:
        note = (f"*Recorded run at the default size, not repeated by the suite (see "
                f"benchmarks/README.md): `{_rel(recorded)}`, written by `{rec.get('command')}`; "
                "the suite's own smoke run follows it.*")
        parts.append(quality.markdown(rec, images, note=note).strip())
    if smoke is not None:
        body = quality.markdown(smoke, images, image_tag="smoke_", intro=rec is None)
        body = body + _source("quality", status, ran)
        if rec is not None:  # under the recorded run's heading
            body = "### Smoke run (`--quick`)\n\n" + demote_headings(
                body.split("\n", 1)[1], 1).strip()
        parts.append(body.strip())
    else:
        parts.append("### Smoke run (`--quick`)\n\n"
                     + not_generated(_why("quality", status, jobs)))
    return "\n\n".join(parts)


def _recorded_note(recorded: Mapping[str, Any]) -> str:
    """Which commands measured the recorded loss-weighting figures."""
    cmds = [f"`{recorded[p]['command']}`" for p in ("results", "tree", "joint")
            if p in recorded and recorded[p].get("command")]
    return ("\n*Recorded runs (one torch thread, every Δ_MTL deterministic on the CPU): "
            + ", ".join(cmds) + ".*\n") if cmds else ""


def assemble(out: Path, docs: Path, *, command: str, device: str, total_seconds: float | None,
             ran: Sequence[str] = (), jobs: Mapping[str, Job] | None = None,
             date: str | None = None, draw: bool = True,
             machine: Mapping[str, Any] | None = None,
             recorded_dense: Path | None = RECORDED_DENSE,
             recorded_quality: Path | None = RECORDED_QUALITY,
             recorded_weighting: Path | None = RECORDED_WEIGHTING) -> tuple[Path, Path]:
    """Write ``docs/benchmarks.md`` and ``docs/results.md`` from the JSON in ``out``.

    Args:
        out: The folder the parts wrote into (``<part>.json``; ``status.json``, ``run.json``).
        docs: The documentation folder; pictures go to ``docs/images``.
        command: The command shown in the header; ``device``: the run's device.
        total_seconds: Wall time of the run; ``ran``: the parts run by this invocation.
        jobs: The jobs (for the reasons of skipped parts); ``date``: default now.
        draw: Draw the plots (``docs/images/bench_*.png``/``.svg``).
        machine: :func:`benchmarks.common.machine_info` of the run (default: this machine,
            now).
        recorded_dense: The recorded dense results at the meaningful size; when the file
            exists it heads the dense section and the suite's own (smoke) run follows it.
        recorded_quality: The recorded ``bench_search_quality.py`` JSON at its default size;
            likewise above the suite's smoke run in the search-quality section.
        recorded_weighting: The recorded ``bench_weighting.py`` JSON (results, tree, joint,
            steps): the loss-weighting section of results.md, and section g when this run
            has no step-time figures of its own.

    Returns:
        The paths of the two documents.
    """
    jobs = jobs or {}
    status = _load(out / "status.json") or {}
    date = date or _now()
    images = docs / "images" if draw else None
    machine = machine or machine_info(device)
    head = pages.header("Benchmarks", command=command, date=date, machine=machine,
                         total_seconds=total_seconds)

    def data(part: str) -> Any:
        return _load(out / f"{part}.json") if not (status.get(part) or {}).get("reason") else None

    sections: list[Section] = []
    engine_data = data("engine")
    if engine_data is not None:
        targets = engine.targets(engine_data)
        a_body, b_body = engine.markdown(engine_data, images)
        src = _source("engine", status, ran)
        sections.append(Section("a", "Engine overhead", a_body + src,
                                [t for t in targets if t.section == "a"]))
        sections.append(Section("b", "Shared-prefix execution", b_body + src,
                                [t for t in targets if t.section == "b"]))
    else:
        why = not_generated(_why("engine", status, jobs))
        sections += [Section("a", "Engine overhead", why), Section("b", "Shared-prefix execution", why)]

    c_parts, c_targets = [], []
    for part, renderer in (("routing", routing), ("merge", merge)):
        d = data(part)
        if d is None:
            c_parts.append(not_generated(f"{part}: " + _why(part, status, jobs)))
        else:
            c_parts.append(renderer.markdown(d, images) + _source(part, status, ran))
            c_targets += renderer.targets(d)
    sections.append(Section("c", "Many tasks", "\n\n".join(c_parts), c_targets))

    d_parts, d_targets = [], []
    search_data = data("search")
    if search_data is None:
        d_parts.append(not_generated("search: " + _why("search", status, jobs)))
    else:
        d_parts.append(search_cost.markdown(search_data, images) + _source("search", status, ran))
        d_targets += search_cost.targets(search_data)
    affinity_data = data("affinity")
    if affinity_data is None:
        d_parts.append(not_generated("affinity: " + _why("affinity", status, jobs)))
    else:
        cmd = (status.get("affinity") or {}).get("command", "")
        d_parts.append(affinity.markdown(affinity_data, cmd, images)
                       + _source("affinity", status, ran))
        d_targets += affinity.targets(affinity_data)
    sections.append(Section("d", "Search cost", "\n\n".join(d_parts), d_targets))

    if search_data is None:
        sections.append(Section("e", "The README's main job, end to end",
                                not_generated(_why("search", status, jobs))))
    else:
        sections.append(Section("e", "The README's main job, end to end",
                                search_cost.main_job_markdown(search_data)
                                + _source("search", status, ran),
                                [search_cost.main_job_target(search_data)]))

    # Only this invocation's GPU figures: a CPU run after a GPU run says it measured none.
    gpu_data = data("gpu") if "gpu" in ran else None
    if gpu_data is not None:
        body = demote_headings(gpu.markdown(gpu_data), 2)
        sections.append(Section("f", "GPU", body + _source("gpu", status, ran)))
    else:
        if "gpu" in ran:
            why = _why("gpu", status, jobs)
        elif device == "cuda":
            why = "the gpu part was not run by this invocation (`--only gpu` runs it)"
        else:
            why = f"this run used --device {device}"
        sections.append(Section("f", "GPU", gpu.placeholder(why)))

    weighting_data = data("weighting")
    recorded = _load(recorded_weighting) if recorded_weighting is not None else None
    if weighting_data is not None:
        sections.append(Section("g", "Loss weighting step time",
                                weighting.benchmarks_markdown(weighting_data)
                                + _source("weighting", status, ran)))
    elif recorded is not None and "steps" in recorded:
        sections.append(Section("g", "Loss weighting step time",
                                weighting.benchmarks_markdown(recorded)
                                + f"\n*Recorded: `{recorded['steps']['command']}`.*\n"))
    else:
        sections.append(Section("g", "Loss weighting step time",
                                not_generated(_why("weighting", status, jobs))))

    for letter, part, title, renderer in (("h", "workers", "Parallel trials", workers),
                                          ("i", "cli_start", "Command start-up", cli_start),
                                          ("j", "streaming", "Your own data, streamed", streaming)):
        part_data = data(part)
        if part_data is None:
            sections.append(Section(letter, title, not_generated(_why(part, status, jobs))))
            continue
        cmd = (status.get(part) or {}).get("command", "")
        body = (renderer.markdown(part_data, cmd) if renderer is streaming
                else renderer.markdown(part_data))
        found = (renderer.targets(part_data, section=letter) if renderer is cli_start
                 else renderer.targets(part_data))
        sections.append(Section(letter, title, body + _source(part, status, ran), found))

    timings = [[p, st["command"], "ok" if not st.get("reason") else "failed", f"{st['seconds']:.0f}"]
               for p, st in status.items()]
    docs.mkdir(parents=True, exist_ok=True)
    bench_path = docs / "benchmarks.md"
    bench_path.write_text(pages.assemble_benchmarks(head, sections, timings), encoding="utf-8")

    results_head = pages.header(
        "Results", command=command, date=date, machine=machine, total_seconds=total_seconds,
        note=("Every strategy side by side (`benchmarks/bench_results.py`), on dense "
              "prediction tasks (`benchmarks/bench_dense.py`) and at equal compute where the "
              "answer is known (`benchmarks/bench_search_quality.py`). Costs of the engine and "
              "the strategies: [benchmarks.md](benchmarks.md)."))
    vector = data("results")
    vector_md = (None if vector is None else
                 results.markdown(vector, "images", bench_results.DATASETS).strip()
                 + _source("results", status, ran))
    dense_data = data("dense")
    dense_md = (None if dense_data is None else
                dense.markdown(dense_data).strip() + _source("dense", status, ran))
    if recorded_dense is not None and recorded_dense.exists():
        dense_md = _with_recorded_dense(recorded_dense, dense_md, _why("dense", status, jobs))
    parts = [("Strategies side by side", vector_md, _why("results", status, jobs)),
             ("Dense prediction on `dense_shapes`", dense_md, _why("dense", status, jobs)),
             ("Search quality", _quality_section(out, images, status, ran, jobs,
                                                 recorded_quality),
              _why("quality", status, jobs)),
             ("Loss weighting", None if recorded is None else
              "## Loss weighting\n\n" + weighting.results_page_markdown(recorded)
              + _recorded_note(recorded),
              f"no recorded run ({_rel(RECORDED_WEIGHTING)}): run "
              "`python benchmarks/bench_weighting.py results`, `tree` and `--joint`")]
    results_path = docs / "results.md"
    results_path.write_text(pages.assemble_results(results_head, parts), encoding="utf-8")
    return bench_path, results_path


# --------------------------------------------------------------------------- main


def parse_only(values: Sequence[str]) -> list[str]:
    """Part names from ``--only`` values (part names or section letters a-f)."""
    parts: list[str] = []
    for v in values:
        for name in LETTERS.get(v.lower(), [v]):
            if name not in PARTS:
                raise SystemExit(f"run_all.py: error: unknown part {v!r}; choose from "
                                 f"{', '.join(PARTS)} or the letters a-f")
            if name not in parts:
                parts.append(name)
    return parts


def main(argv: Sequence[str] | None = None) -> int:
    """Run the parts asked for (or none, ``--render-only``), then write both documents; 1 when
    a part this invocation ran failed."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--quick", action="store_true", help="smaller settings in every part")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--only", nargs="+", metavar="PART", default=None,
                        help=f"run only these parts ({', '.join(PARTS)}, or letters a-f); the "
                             "others keep the figures saved in --out")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench",
                        help="folder of the raw JSON, markdown parts and logs (default runs/bench)")
    parser.add_argument("--docs", type=Path, default=ROOT / "docs",
                        help="where to write benchmarks.md and results.md (default docs/)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of each part")
    parser.add_argument("--jobs", type=int, default=None,
                        help="parts run at the same time (default 2 on the CPU, 1 with cuda)")
    parser.add_argument("--timeout", type=float, default=1800.0,
                        help="seconds after which a part is stopped (default 1800)")
    parser.add_argument("--render-only", action="store_true",
                        help="run nothing: rewrite the documents from the JSON in --out")
    args = parser.parse_args(argv)
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            parser.error("--device cuda was asked for but no CUDA GPU is available")
    start = time.perf_counter()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    jobs = build_jobs(args, out)
    wanted = parse_only(args.only) if args.only else list(PARTS)
    runnable = [jobs[p] for p in wanted if jobs[p].skip_reason is None]
    for p in wanted:
        if jobs[p].skip_reason:
            print(f"[run_all] skip {p}: {jobs[p].skip_reason}", flush=True)
    status = _load(out / "status.json") or {}
    if not args.render_only:
        for p in wanted:  # a skipped part's earlier figures would no longer match this run
            status.pop(p, None)
        parallel = args.jobs or (1 if args.device == "cuda" else 2)
        status.update(run_jobs(runnable, out, parallel=max(1, parallel), timeout=args.timeout,
                               quick=args.quick))
        (out / "status.json").write_text(json.dumps(status, indent=1), encoding="utf-8")
    shown = " ".join(["python benchmarks/run_all.py",
                      *(sys.argv[1:] if argv is None else list(argv))])
    run = {"command": shown, "date": _now(), "total_seconds": time.perf_counter() - start,
           "device": args.device, "ran": [j.part for j in runnable],
           "machine": machine_info(args.device)}
    if args.render_only:  # the header describes the run that measured the figures
        run = _load(out / "run.json") or {"command": shown, "date": _now(),
                                          "total_seconds": None, "device": args.device,
                                          "ran": []}
    else:
        (out / "run.json").write_text(json.dumps(run, indent=1), encoding="utf-8")
    total = run["total_seconds"]
    ran = run["ran"]
    bench, results = assemble(out, args.docs, command=run["command"], device=run["device"],
                              total_seconds=total, ran=ran, jobs=jobs, date=run["date"],
                              machine=run.get("machine"))
    print(f"[run_all] wrote {_rel(bench)} and {_rel(results)}"
          + ("" if args.render_only or total is None else f" in {total / 60:.1f} min"),
          flush=True)
    failed = [] if args.render_only else [p for p in ran if status.get(p, {}).get("reason")]
    if failed:
        print(f"[run_all] parts that failed: {', '.join(failed)} (see {_rel(out / 'logs')})",
              file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
