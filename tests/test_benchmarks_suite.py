"""The benchmark suite's assembly (benchmarks/run_all.py) and renderers (benchmarks/render/)
on small hand-made figures: targets computed from the numbers, tables, missing parts, both
documents, and the options each part is run with.

Nothing here runs a benchmark; the JSON below has the shape the scripts write.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

from benchmarks import bench_search_cost, run_all
from benchmarks.render import affinity, engine, markup, merge, routing, search

ROOT = Path(__file__).resolve().parents[1]
# A real bench_dense.py --json report (one seed of the recorded meaningful-size run).
DENSE_SEED = ROOT / "benchmarks" / "recorded" / "dense_meaningful" / "seed0.json"

# --------------------------------------------------------------------------- fabricated figures


def engine_json() -> dict:
    def row(model, measure, ratio, target=1.05):
        return {"model": model, "measure": measure, "materialized_ms": 10.0 * ratio,
                "hand_written_ms": 10.0, "ratio": ratio, "vs_chained": 1.0, "target": target,
                "ok": None if target is None else ratio <= target}

    def prefix(model, ratio):
        return {"model": model, "partitions": [[["t0", "t1"]], [["t0"], ["t1"]]],
                "full_ms": 2.0 * ratio, "unique_nodes_ms": 2.0, "full_vs_unique_nodes": ratio,
                "per_task_ms": 6.0, "speedup": 3.0, "mac_ratio": 2.0, "node_time_ratio": 2.9,
                "ok": abs(ratio - 1) <= 0.1, "speedup_vs_macs": 1.5}

    return {
        "command": "python benchmarks/bench_engine.py --quick --json e.json",
        "device": "cpu", "machine": "x86_64, 1 threads", "torch": "2.x",
        "settings": {"reps": 7, "warmup": 3, "inner": 3},
        "overhead": [row("small_cnn b64", "train step", 1.02),
                     row("small_cnn b64", "train step, engine losses", 1.30, None),
                     row("resnet18 w16 b16", "inference", 1.08)],
        "shared_prefix": [prefix("small_cnn b64", 1.092), prefix("resnet18 w16 b16", 1.125)],
    }


def routing_json() -> dict:
    rows = []
    for n, one, plan, loop, peak, est in ((10, 1.00, 2.0, 4.0, 4.0, 6.0),
                                          (100, 1.04, 10.0, 30.0, 30.0, 60.0),
                                          (312, 1.08, 20.0, 100.0, 40.0, 195.0)):
        rows.append({"tasks": n, "one_ms": one, "one_ratio": one, "all_ms": 5.0 * n / 10,
                     "batched_ms": plan * 2, "chunked_ms": plan * 1.5, "plan_ms": plan,
                     "loop_ms": loop, "peak_mib": peak, "estimate_mib": est, "params": 1000 + n})
    return {"command": "python benchmarks/bench_task_routing.py scale --quick --json r.json",
            "settings": {"n_samples": 3000, "widths": [64, 64, 64], "sigma": 0.4,
                         "train_batch": 64, "eval_rows": 512, "threads": 1, "rounds": 2,
                         "chunk_mib": 4},
            "rows": rows}


def merge_json() -> dict:
    rows = [{"tasks": 10, "plain_s": 0.2, "merge_s": 0.25, "ratio": 1.25, "factorise_s": 0.01,
             "cluster_s": 0.0015},
            {"tasks": 312, "plain_s": 3.0, "merge_s": 21.0, "ratio": 7.0, "factorise_s": 1.0,
             "cluster_s": 0.05}]
    return {"command": "python benchmarks/bench_gradient_merge.py --part cost --json m.json",
            "settings": {"n_samples": 1000, "widths": [32, 32, 16, 16], "batch_size": 128,
                         "repeats": 1},
            "rows": rows}


def search_runs() -> list[dict]:
    # seed 0 and seed 1; hard_sharing 5 s / 7 s, single_task 20 s / 30 s per trial
    trials = {"hard_sharing": ([5.0], [7.0]), "single_task": ([20.0], [30.0]),
              "random_tree": ([8.0, 12.0], [14.0, 14.0]), "gumbel_policy": ([25.0, 25.0], [24.0, 24.0])}
    runs = []
    for name, per_seed in trials.items():
        for seed, ts in enumerate(per_seed):
            runs.append({"strategy": name, "seed": seed, "study": f"compare-{name}-seed{seed}-x",
                         "states": ["COMPLETE"] * len(ts), "trial_s": ts,
                         "train_s": [t - 1 for t in ts], "study_s": sum(ts)})
    return runs


def search_json(seeds=(0, 1, 2), wall=300.0) -> dict:
    runs = search_runs()
    return {"command": "python benchmarks/bench_search_cost.py --json s.json",
            "compare_command": "mtlsearch compare", "seeds": list(seeds),
            "default_seeds": [0, 1, 2],
            "settings": {"dataset": "multi_digits", "space": "small_cnn", "trials": 2,
                         "budget": {"epochs": 3}},
            "wall_s": wall, "cpu_s": wall * 0.9, "load_before": [1.0, 1.0, 1.0],
            "load_after": [2.0, 1.5, 1.0], "reference_s": {"0": 19.0, "1": 21.0},
            "runs": runs, "strategies": bench_search_cost.per_strategy(runs)}


def affinity_json() -> list[dict]:
    # rsa wall proportional to N (slope 1), full to N^2 (slope 2), subset to N^1.5
    return [{"n_tasks": n, "rows": {"full": {"wall": 0.5 * n * n}, "subset": {"wall": n ** 1.5},
                                    "rsa": {"wall": 0.25 * n}}} for n in (4, 8, 16)]


# --------------------------------------------------------------------------- helpers


def test_table_aligns_and_formats_cells():
    assert markup.table(["a", "b", "c"], [[1, "x", 2.5]], "lrl") == (
        "| a | b | c |\n|---|---:|---|\n| 1 | x | 2.5 |")
    with pytest.raises(ValueError, match="2 letters for 3 columns"):
        markup.table(["a", "b", "c"], [], "lr")


def test_demote_headings_leaves_code_blocks_alone():
    text = "## Title\n\n```\n# a shell comment\n```\n### Sub"
    assert markup.demote_headings(text) == "### Title\n\n```\n# a shell comment\n```\n#### Sub"


def test_names_join_with_commas_and_a_final_and():
    assert markup.names(["a", "b", "c"]) == "`a`, `b` and `c`"
    assert markup.names(["a"]) == "`a`" and markup.names([]) == ""


# --------------------------------------------------------------------------- targets


def test_engine_targets_compare_each_ratio_with_its_target():
    targets = engine.targets(engine_json())
    a = [t for t in targets if t.section == "a"]
    b = [t for t in targets if t.section == "b"]
    # the row without a target (engine losses, 1.30) is reported but not checked
    assert [(t.figure, t.met) for t in a] == [(1.02, True), (1.08, False)]
    # within 10% of 1: 1.092 is, 1.125 is not
    assert [(t.figure, t.met) for t in b] == [(1.092, True), (1.125, False)]
    assert a[1].status == "**not met**" and a[0].status == "**met**"


def test_routing_targets():
    step, speed, memory = routing.targets(routing_json())
    assert step.figure == pytest.approx(1.08) and step.met  # 1.08 / 1.00 <= 1.10
    assert speed.figure == pytest.approx(2.0) and speed.met  # min(4/2, 30/10, 100/20)
    assert memory.figure == pytest.approx(40 / 195) and memory.met  # at the largest count
    # the paired per-step ratio is the figure when the JSON has it, not the medians' ratio
    data = routing_json()
    data["rows"][-1]["one_ratio"] = 1.2
    assert routing.targets(data)[0].figure == 1.2
    assert not routing.targets(data)[0].met
    del data["rows"][-1]["one_ratio"]
    data["rows"][-1]["loop_vs_plan"] = 0.9  # per-round ratios, preferred to the medians'
    assert routing.targets(data)[1].figure == 0.9


def test_merge_targets():
    epoch, growth = merge.targets(merge_json())
    assert epoch.figure == 7.0 and not epoch.met  # the 312-task epoch, 7x > 2.0
    assert "312 tasks" in epoch.what
    # ratio at 312 tasks / ratio at 10 tasks = 7.0 / 1.25
    assert growth.figure == pytest.approx(5.6) and not growth.met


def test_search_cost_per_strategy_is_side_by_side_per_seed():
    rows = {r["strategy"]: r for r in bench_search_cost.per_strategy(search_runs())}
    rt = rows["random_tree"]
    assert rt["trial_s"] == pytest.approx(13.0)  # median of 8, 12, 14, 14
    assert rt["study_s"] == pytest.approx(24.0)  # mean of 20 and 28
    # per seed: median trial 10 / 5 = 2.0 and 14 / 7 = 2.0; vs single: 0.5 and 14/30
    assert rt["trial_vs_hard_sharing"] == pytest.approx(2.0)
    assert rt["trial_vs_single_task"] == pytest.approx((0.5 + 14 / 30) / 2)
    (target,) = search.targets(search_json())
    # worst: gumbel_policy, 25/20 = 1.25 and 24/30 = 0.8 -> median 1.025 > 1
    assert "gumbel_policy" in target.what
    assert target.figure == pytest.approx(1.025) and target.met is False


def test_affinity_target_is_the_rsa_slope():
    (target,) = affinity.targets(affinity_json())
    assert target.figure == pytest.approx(1.0) and target.met
    text = affinity.markdown(affinity_json())
    assert "full 2.00" in text and "subset 1.50" in text and "rsa 1.00" in text
    assert "| 16 | 128.0 | 64.0 | 4.0 | 2.0x | 32.0x |" in text


def test_main_job_target_full_and_quick():
    full = search.main_job_target(search_json(wall=300.0))
    assert full.figure == 300.0 and full.met
    assert not search.main_job_target(search_json(wall=400.0)).met
    quick = search.main_job_target(search_json(seeds=(0,), wall=150.0))
    assert quick.figure == pytest.approx(450.0) and quick.met is False  # 3 x 150 s > 300 s
    assert "estimated from 1 of 3 seeds" in quick.what
    assert "Quick run: 1 of the 3 default seeds" in search.main_job_markdown(
        search_json(seeds=(0,), wall=150.0))


# --------------------------------------------------------------------------- the documents


def _write(folder: Path, name: str, data) -> None:
    (folder / name).write_text(json.dumps(data))


def dense_json(preset: str = "meaningful") -> dict:
    data = json.loads(DENSE_SEED.read_text())
    data["settings"]["preset"] = preset
    return data


def test_assemble_writes_both_documents(tmp_path):
    out, docs = tmp_path / "out", tmp_path / "docs"
    out.mkdir()
    _write(out, "engine.json", engine_json())
    _write(out, "routing.json", routing_json())
    _write(out, "search.json", search_json(seeds=(0,), wall=100.0))
    _write(out, "affinity.json", affinity_json())
    _write(out, "merge.json", merge_json())  # stale: the status says this run's merge failed
    _write(out, "dense.json", dense_json())
    status = {
        "merge": {"command": "python benchmarks/bench_gradient_merge.py --part cost",
                  "returncode": 1, "seconds": 3.0, "date": "2026-01-01 00:00 UTC",
                  "quick": True, "reason": "bench_gradient_merge.py exited with status 1"},
        "routing": {"command": "python benchmarks/bench_task_routing.py scale --quick",
                    "returncode": 0, "seconds": 30.0, "date": "2026-01-01 00:00 UTC",
                    "quick": True, "reason": None},
    }
    _write(out, "status.json", status)
    bench, results = run_all.assemble(
        out, docs, command="python benchmarks/run_all.py --quick", device="cpu",
        total_seconds=125.0, ran=["merge", "routing"], date="2026-01-02 03:04 UTC", draw=True,
        recorded_dense=None)
    text = bench.read_text()
    assert text.startswith("# Benchmarks\n\nGenerated by `python benchmarks/run_all.py --quick` "
                           "on 2026-01-02 03:04 UTC.")
    assert "cores" in text and "torch " in text and "- device: cpu" in text
    assert "total wall time of the run: 2.1 min (125 s)" in text
    for heading in ("## a. Engine overhead", "## b. Shared-prefix execution", "## c. Many tasks",
                    "## d. Search cost", "## e. The README's main job, end to end", "## f. GPU"):
        assert heading in text
    # targets, each with its computed status: a 2 (1 met), b 2 (1 met), c 3 routing (all met),
    # d search (not met) + affinity (met), e estimated 3 x 100 s (met)
    assert "7 of 10 targets met, 3 not met." in text
    assert ("| a | inference, resnet18 w16 b16: mtlsearch / hand-written | <= 1.05 | 1.080 "
            "| **not met** |") in text
    assert "| 312 | 1.08 | 1.08 | 156.0 | 20.0 | 40.0 | 30.0 | 100.0 | 5.00x | 40.0 | 195.0 |" in text
    # the failed part shows why, not its stale figures
    assert "*Section not generated: merge: bench_gradient_merge.py exited with status 1.*" in text
    assert "gradient merging, epoch" not in text
    assert "**Not run on a GPU in this generation of the document** (this run used --device cpu)" in text
    assert "What the figures revealed, and what was made faster" in text
    assert "[benchmarks_gpu.md](benchmarks_gpu.md)" in text
    assert "*Measured in this run, quick settings: `python benchmarks/bench_task_routing.py" in text
    for name in ("engine_overhead", "task_routing", "search_cost", "affinity_cost"):
        assert (docs / "images" / f"bench_{name}.png").exists()
        assert (docs / "images" / f"bench_{name}.svg").exists()
        assert f"](images/bench_{name}.png)" in text
    res = results.read_text()
    assert res.startswith("# Results\n\nGenerated by `python benchmarks/run_all.py --quick`")
    # a part is rendered from its JSON, under its heading; a missing part says why
    assert "## Dense prediction on `dense_shapes`\n\nEvery strategy (`single_task`, " in res
    assert "| `hard_sharing` | -6.26 ± 0.00 | -7.44 ± 0.00 | 489,260 | 140.64 |" in res
    assert "## Strategies side by side\n\n*Section not generated: the results part " in res


def test_recorded_dense_results_head_the_dense_section(tmp_path):
    out, docs = tmp_path / "out", tmp_path / "docs"
    out.mkdir()
    recorded = tmp_path / "dense_meaningful.md"
    recorded.write_text("## Dense prediction on `dense_shapes`\n\nThree seeds, 64x64.\n")
    _write(out, "dense.json", dense_json("quick"))
    _, results = run_all.assemble(out, docs, command="c", device="cpu", total_seconds=None,
                                  draw=False, recorded_dense=recorded)
    res = results.read_text()
    recorded_at = res.index("Three seeds, 64x64.")
    smoke_at = res.index("### Dense prediction on `dense_shapes`: smoke run (`--quick`)\n\n"
                         "Every strategy")
    assert recorded_at < res.index("*Recorded run, not repeated by the suite") < smoke_at
    assert f"--markdown {recorded}" in res  # says how the recorded page is regenerated
    # the smoke run failing leaves the recorded results and says why the smoke run is missing
    _write(out, "status.json", {"dense": {
        "command": "x", "returncode": 1, "seconds": 1.0, "date": "d", "quick": True,
        "reason": "bench_dense.py exited with status 1"}})
    _, results = run_all.assemble(out, docs, command="c", device="cpu", total_seconds=None,
                                  draw=False, recorded_dense=recorded)
    res = results.read_text()
    assert "Three seeds, 64x64." in res and "smoke run (`--quick`)\n\nEvery strategy" not in res
    assert ("### Smoke run (`--quick`)\n\n*Section not generated: bench_dense.py exited with "
            "status 1.*") in res


def test_documents_come_from_the_json_alone(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    _write(out, "engine.json", engine_json())
    # markdown lying in the folder (an older suite's) is not read: every part renders its JSON
    (out / "engine.md").write_text("## Engine tables by bench_engine\n\n| x |\n|---|\n")
    (out / "dense.md").write_text("## Dense prediction on `dense_shapes`\n\nStale.\n")
    bench, results = run_all.assemble(out, tmp_path / "docs", command="c", device="cpu",
                                      total_seconds=None, draw=False, recorded_dense=None)
    text = bench.read_text()
    assert "Engine tables by bench_engine" not in text
    assert ("| small_cnn b64 | train step | 10.200 | 10.000 | **1.020** | <= 1.05: met | 1.000 |"
            in text)
    assert "<= 1.05 | 1.020 | **met**" in text  # the targets come from the JSON
    assert "*Section not generated: routing: the routing part was not run" in text
    assert "Stale." not in results.read_text()


# --------------------------------------------------------------------------- options, jobs


def test_parse_only_accepts_parts_and_letters():
    assert run_all.parse_only(["c", "engine", "a"]) == ["routing", "merge", "engine"]
    with pytest.raises(SystemExit, match="unknown part 'nope'"):
        run_all.parse_only(["nope"])


def test_build_jobs_declares_the_options_of_every_part(tmp_path):
    out = tmp_path / "out"
    args = run_all.argparse.Namespace(quick=True, threads=1, device="cpu")
    jobs = run_all.build_jobs(args, out)
    assert set(jobs) == set(run_all.PARTS)
    for part, job in jobs.items():  # each part writes its JSON, which the documents read
        assert job.outputs == [out / f"{part}.json"]
        assert job.argv[job.argv.index("--json") + 1].endswith(f"{part}.json")
    assert jobs["results"].argv[:3] == ["--quick", "--seeds", "0"]  # suite size, one seed
    assert jobs["dense"].argv[:3] == ["--quick", "--threads", "1"]
    assert jobs["gpu"].skip_reason == "run with --device cpu"
    assert "--markdown" not in jobs["engine"].argv and "--quick" in jobs["engine"].argv
    assert jobs["merge"].argv[-4:] == ["78", "312", "--repeats", "1"]
    assert all("--device" not in jobs[p].argv for p in ("results", "dense", "quality"))
    # the full run on a GPU: the gpu part runs, the others get the device, results its seeds
    args = run_all.argparse.Namespace(quick=False, threads=2, device="cuda", docs=tmp_path / "d")
    jobs = run_all.build_jobs(args, out)
    assert jobs["gpu"].skip_reason is None and "--quick" not in jobs["gpu"].argv
    assert jobs["engine"].argv[-2:] == ["--reps", "7"]
    assert "--seeds" not in jobs["results"].argv
    assert jobs["results"].argv[jobs["results"].argv.index("--images") + 1].endswith("d/images")
    for part in ("results", "dense", "quality", "search", "engine"):
        assert jobs[part].argv[jobs[part].argv.index("--device") + 1] == "cuda"
        assert jobs[part].argv[jobs[part].argv.index("--threads") + 1] == "2"


@pytest.mark.parametrize("quick", [True, False])
@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_every_script_accepts_the_options_it_is_given(tmp_path, quick, device):
    # the declaration in build_jobs against each script's own parser (no source reading)
    args = run_all.argparse.Namespace(quick=quick, threads=1, device=device, docs=tmp_path)
    for part, job in run_all.build_jobs(args, tmp_path / "out").items():
        script = importlib.import_module(f"benchmarks.{job.script.removesuffix('.py')}")
        parsed = script.build_parser().parse_args(job.argv)
        assert Path(parsed.json).name == f"{part}.json", part


def test_render_only_keeps_the_header_of_the_run_that_measured(tmp_path):
    out, docs = tmp_path / "out", tmp_path / "docs"
    out.mkdir()
    _write(out, "routing.json", routing_json())
    _write(out, "run.json", {"command": "python benchmarks/run_all.py --quick",
                             "date": "2026-01-02 03:04 UTC", "total_seconds": 600.0,
                             "device": "cpu", "ran": ["routing"]})
    assert run_all.main(["--render-only", "--out", str(out), "--docs", str(docs)]) == 0
    text = (docs / "benchmarks.md").read_text()
    assert "Generated by `python benchmarks/run_all.py --quick` on 2026-01-02 03:04 UTC." in text
    assert "total wall time of the run: 10.0 min (600 s)" in text
    assert "| c | task routing, one-task training step at 312 / at 10 tasks (paired steps) " \
           "| <= 1.10 | 1.080 | **met** |" in text


def test_the_gpu_session_script_runs_real_scripts_with_their_options(tmp_path):
    """benchmarks/gpu_session.sh cannot run here (no GPU): it parses, and every step names a
    script of this folder with options that script's parser accepts."""
    import shlex
    import subprocess

    script = Path(run_all.__file__).with_name("gpu_session.sh")
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    text = script.read_text().replace("\\\n", " ")
    steps = [shlex.split(line.replace('"$out', f'"{tmp_path}'))
             for line in text.splitlines() if line.startswith("step ")]
    assert [s[1] for s in steps] == ["check", "suite", "sharing", "workers"]
    for _, name, limit, python, path, *argv in steps:
        assert python == "python" and int(limit) > 0, name
        module = importlib.import_module(f"benchmarks.{Path(path).stem}")
        if hasattr(module, "build_parser"):
            module.build_parser().parse_args(argv)
        else:  # check_gpu.py and run_all.py build their parser in main(): --help proves it
            help_text = subprocess.run(["python", path, "--help"], capture_output=True,
                                       text=True, cwd=Path(run_all.__file__).parents[1])
            assert help_text.returncode == 0, help_text.stderr
            for option in (a for a in argv if a.startswith("--")):
                assert option in help_text.stdout, (name, option)
