"""benchmarks/bench_search_quality.py and its renderer (benchmarks/render/quality.py): the
anytime curves, the paired statistics, the target checks and the section, on small hand-made
figures; the trees it builds; one tiny end-to-end run."""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics

import pytest

from benchmarks import bench_search_quality as bsq
from benchmarks import run_all
from benchmarks.common import json_ready
from benchmarks.render import quality

# --------------------------------------------------------------------------- fabricated runs

PLANTED = [["a", "b"], ["c", "d"]]


def trial(number, val, test, compute, *, state="COMPLETE", n_params=100, ari=None, params=None):
    return {"number": number, "state": state, "delta_mtl": val, "delta_mtl_test": test,
            "n_params": n_params, "compute_macs": compute, "ari": ari, "grouping": None,
            "params": params or {}, "seconds": 1.0}


def run(trials, kind="search", role="paper", strategy=None, budget=60.0):
    return {"strategy": strategy, "kwargs": {}, "kind": kind, "role": role,
            "compute_budget_macs": budget, "trials": trials,
            "compute_macs": sum(t["compute_macs"] for t in trials), "seconds": 2.0}


def raw_seed(seed, tests, *, main_job=False, planted=True):
    """One seed's raw output: ``tests[label]`` is the test Δ of that contender's single trial
    (validation Δ = test Δ + 1, compute 10 MACs = 1 unit)."""
    runs = {}
    for label, value in tests.items():
        kind = "fixed" if label in ("oracle", "mixed") else "search"
        ari = 1.0 if label == "oracle" else (-0.5 if label == "mixed" else 0.0)
        role = {"hard_sharing": "baseline", "random_tree": "baseline", "oracle": "reference",
                "mixed": "reference"}.get(label, "paper")
        runs[label] = run([trial(0, value + 1.0, value, 10.0, ari=ari)], kind=kind, role=role,
                          strategy=label)
    return {"key": "toy", "seed": seed, "quick": False,
            "settings": {"space": "mlp", "compute": "6x", "trials": 4, "main_job": main_job,
                         "oracle_depth": 1},
            "unit_macs": 10.0, "budget_macs": 60.0, "planted": PLANTED if planted else None,
            "reference_seconds": 1.0, "single_task_macs": 40.0, "runs": runs}


# --------------------------------------------------------------------------- curves


def test_best_so_far_counts_every_trial_and_keeps_the_best_validation_trial():
    trials = [
        trial(2, 5.0, -1.0, 30.0),                     # best validation, poor test
        trial(0, 1.0, 2.0, 10.0),
        trial(1, None, None, 20.0, state="FAIL"),      # spent compute, no result
        trial(3, 5.0, 9.0, 10.0, n_params=50),         # ties on validation, fewer params
    ]
    pts = bsq.best_so_far(trials, unit=10.0)
    assert [p["compute"] for p in pts] == [1.0, 3.0, 6.0, 7.0]   # trial-number order
    assert [p["val"] for p in pts] == [1.0, 1.0, 5.0, 5.0]
    assert [p["test"] for p in pts] == [2.0, 2.0, -1.0, 9.0]
    assert [p["trial"] for p in pts] == [0, 0, 2, 3]


def test_best_so_far_before_any_complete_trial_is_empty():
    pts = bsq.best_so_far([trial(0, None, None, 5.0, state="FAIL")])
    assert pts == [{"compute": 5.0, "trial": None, "val": None, "test": None}]
    assert all(math.isnan(v) for v in bsq.value_at(pts, 100.0))


def test_value_at_takes_the_last_point_within_the_budget():
    pts = bsq.best_so_far([trial(0, 1.0, 0.5, 10.0), trial(1, 3.0, 2.5, 10.0)], unit=10.0)
    assert all(math.isnan(v) for v in bsq.value_at(pts, 0.99))
    assert bsq.value_at(pts, 1.0) == (1.0, 0.5)
    assert bsq.value_at(pts, 1.99) == (1.0, 0.5)
    assert bsq.value_at(pts, 2.0) == (3.0, 2.5)


def test_paired_difference_against_a_hand_computation():
    d = bsq.paired({0: 3.0, 1: 1.0, 2: 2.5, 3: 7.0}, {0: 1.0, 1: 1.5, 2: 0.5})
    # seeds 0..2 only: differences 2.0, -0.5, 2.0
    assert d["n"] == 3 and d["wins"] == 2 and d["losses"] == 1
    assert d["mean"] == pytest.approx(3.5 / 3)
    hand_std = math.sqrt(((2 - 3.5 / 3) ** 2 * 2 + (-0.5 - 3.5 / 3) ** 2) / 2)
    assert d["std"] == pytest.approx(hand_std)
    # beyond the noise: mean 1.167 > std / sqrt(3) = 0.833
    assert d["beyond_noise"] and d["better"]
    assert d["diffs"] == {"0": 2.0, "1": -0.5, "2": 2.0}
    noisy = bsq.paired({0: 1.0, 1: -1.0, 2: 0.5}, {0: 0.0, 1: 0.0, 2: 0.0})
    assert not noisy["better"]  # mean 0.17 < std 1.04 / sqrt(3)


# --------------------------------------------------------------------------- trees


def test_mixed_partition_mixes_every_group_and_keeps_the_sizes():
    planted = [[f"t{g}{i}" for i in range(3)] for g in range(4)]
    mixed = bsq.mixed_partition(planted)
    assert [len(g) for g in mixed] == [3, 3, 3, 3]
    assert sorted(t for g in mixed for t in g) == sorted(t for g in planted for t in g)
    group_of = {t: k for k, g in enumerate(planted) for t in g}
    assert all(len({group_of[t] for t in g}) == 3 for g in mixed)  # no two from one group
    from sklearn.metrics import adjusted_rand_score

    tasks = [t for g in planted for t in g]
    labels = [next(k for k, g in enumerate(mixed) if t in g) for t in tasks]
    assert adjusted_rand_score([group_of[t] for t in tasks], labels) < 0


def test_tree_partitions_share_then_branch():
    parts = bsq.tree_partitions(["a", "b", "c", "d"], PLANTED, 2, 3)
    assert parts == [[["a", "b", "c", "d"]], [["a", "b", "c", "d"]], PLANTED]
    with pytest.raises(ValueError):
        bsq.tree_partitions(["a"], [["a"]], 3, 3)


def test_permuted_partitions_keep_the_shape_and_stay_a_tree():
    template = [[["a", "b", "c", "d"]], [["a", "b"], ["c", "d"]], [["a"], ["b"], ["c", "d"]]]
    for seed in range(5):
        p = bsq.permuted_partitions(template, ["a", "b", "c", "d"], random.Random(seed))
        assert [sorted(map(len, d)) for d in p] == [[4], [2, 2], [1, 1, 2]]
        for upper, lower in zip(p, p[1:]):  # every group lies inside one group above it
            assert all(any(set(g) <= set(u) for u in upper) for g in lower)
    assert bsq.has_groups(template)
    assert not bsq.has_groups([[["a", "b"]], [["a"], ["b"]]])


# --------------------------------------------------------------------------- summary


def three_seeds(**kw):
    # the oracle beats hard sharing by 4, 5, 6 and the mixed tree by 1, 2, 3; gradient_merge
    # beats hard sharing by 3, 3, 3 but single-task (0) by 1, 0, -1 only.
    tests = [
        {"hard_sharing": -2.0, "oracle": 2.0, "mixed": 1.0, "gradient_merge": 1.0,
         "random_tree": 0.5, "affinity_tree": 0.0, "gumbel_policy": -3.0,
         "task_routing": -1.0},
        {"hard_sharing": -3.0, "oracle": 2.0, "mixed": 0.0, "gradient_merge": 0.0,
         "random_tree": 0.0, "affinity_tree": 0.2, "gumbel_policy": -4.0,
         "task_routing": -1.5},
        {"hard_sharing": -4.0, "oracle": 2.0, "mixed": -1.0, "gradient_merge": -1.0,
         "random_tree": -0.5, "affinity_tree": 0.4, "gumbel_policy": -5.0,
         "task_routing": -2.0},
    ]
    return [raw_seed(s, t, **kw) for s, t in enumerate(tests)]


def test_summarise_means_pairs_and_leaderboard():
    s = bsq.summarise(three_seeds(main_job=True))
    e = s["entries"]
    assert s["seeds"] == [0, 1, 2] and s["budget"] == 6.0
    assert e["hard_sharing"]["test"] == pytest.approx((-3.0, 1.0))
    assert e["hard_sharing"]["val"] == pytest.approx((-2.0, 1.0))
    assert e["single_task"]["test"] == (0.0, 0.0) and e["single_task"]["compute"][0] == 4.0
    assert e["oracle"]["ari"] == (1.0, 0.0)
    oracle = {(p["a"], p["b"]): p for p in s["oracle"]}
    assert oracle[("oracle", "hard_sharing")]["mean"] == pytest.approx(5.0)
    assert oracle[("oracle", "hard_sharing")]["better"]
    assert oracle[("oracle", "mixed")]["mean"] == pytest.approx(2.0)
    gm = {(p["a"], p["b"]): p for p in s["claims"]["gradient_merge"]}
    assert gm[("gradient_merge", "hard_sharing")]["better"]
    assert not gm[("gradient_merge", "single_task")]["better"]   # 0 ± 1: within the noise
    # compare's strategies only, best mean test Δ first
    assert s["leaderboard"] == ["affinity_tree", "single_task", "random_tree", "gradient_merge",
                                "task_routing", "hard_sharing", "gumbel_policy"]
    # one trial of 1 unit each: the curve starts at 1x and holds its value
    assert e["hard_sharing"]["curve"][0]["test"] == pytest.approx((-3.0, 1.0))
    assert s["checkpoints"] == [1.0, 2.0, 4.0, 8.0]  # doubling up to the budget (6x)
    assert e["hard_sharing"]["at"]["8"]["test"] == pytest.approx((-3.0, 1.0))
    assert e["hard_sharing"]["at"]["1"]["defined"] == 3


def test_summarise_curves_only_where_every_seed_has_a_result():
    raws = three_seeds()
    # seed 2's random_tree gets a first trial of 3 units, then a better one
    raws[2]["runs"]["random_tree"] = run([trial(0, 0.0, 0.0, 30.0), trial(1, 4.0, 3.0, 10.0)])
    e = bsq.summarise(raws)["entries"]["random_tree"]
    assert min(p["compute"] for p in e["curve"]) >= 3.0
    assert e["curve"][-1]["compute"] == pytest.approx(4.0)  # where the longest seed stopped
    assert e["test"][0] == pytest.approx(statistics.fmean([0.5, 0.0, 3.0]))
    assert e["at"]["2"]["defined"] == 2  # seed 2 had nothing finished by 2 units
    assert e["at"]["4"]["test"][0] == pytest.approx(statistics.fmean([0.5, 0.0, 3.0]))


# --------------------------------------------------------------------------- targets


def quality_json(raws=None, **kw):
    summary = bsq.summarise(raws or three_seeds(**kw))
    summary["title"] = "toy"
    return json_ready({"command": "python benchmarks/bench_search_quality.py --quick",
                              "machine": {"cpu": "cpu", "torch": "2"}, "quick": False, "jobs": 1,
                              "threads": 1, "wall_seconds": 60.0, "cpu_seconds": 60.0,
                              "datasets": {"toy": summary}})


def test_targets_from_the_figures():
    targets = quality.targets(quality_json(main_job=True))
    whats = [t.what for t in targets]
    pays = next(t for t in targets if "grouping pays" in t.what)
    assert pays.met is True
    ari = {n: next(t for t in targets if t.what.startswith(n + " recovers")) for n in
           ("affinity_tree", "gradient_merge")}
    assert ari["affinity_tree"].met is False and ari["gradient_merge"].met is False
    assert "toy 0.00" in ari["affinity_tree"].figure
    # gradient_merge's claim fails on its single-task half; one dataset is < 2 anyway
    gm = next(t for t in targets if t.what.startswith("gradient_merge beats"))
    assert gm.met is False and gm.figure == "holds on 0 of 1"
    # gumbel_policy_random2, task_routing_sigma0/1 and matched_random_tree never ran
    for name in ("task_routing's", "gumbel_policy beats", "affinity_tree beats"):
        t = next(t for t in targets if t.what.startswith(name))
        assert t.met is None and t.status == "not measured"
    below = next(t for t in targets if "below hard_sharing" in t.what)
    assert below.met is False and "gumbel_policy -4.00" in below.figure
    top = next(t for t in targets if "has the best mean" in t.what)
    assert top.met is True and top.figure.startswith("affinity_tree")
    assert len(whats) == len(set(whats))


def test_claim_on_two_datasets_is_met():
    a, b = quality_json(), quality_json()
    a["datasets"]["other"] = b["datasets"]["toy"]
    for s in a["datasets"].values():  # gradient_merge beats both, 3 of 3 seeds, beyond noise
        s["claims"]["gradient_merge"] = [
            {"a": "gradient_merge", "b": x, "mean": 2.0, "std": 0.5, "wins": 3, "losses": 0,
             "n": 3, "better": True} for x in ("hard_sharing", "single_task")]
    gm = next(t for t in quality.targets(a) if t.what.startswith("gradient_merge beats"))
    assert gm.met is True and gm.figure == "holds on 2 of 2 (toy, other)"


def test_grouping_that_does_not_pay_leaves_the_ari_targets_unmeasured():
    raws = three_seeds()
    for r in raws:  # the mixed tree as good as the planted one
        r["runs"]["mixed"]["trials"][0]["delta_mtl_test"] = 2.0
    targets = quality.targets(quality_json(raws))
    assert next(t for t in targets if "grouping pays" in t.what).met is False
    assert next(t for t in targets if t.what.startswith("affinity_tree recovers")).met is None


def test_main_job_targets_only_at_main_job_settings():
    targets = quality.targets(quality_json(main_job=False))
    assert not [t for t in targets if "main-job" in t.what]


# --------------------------------------------------------------------------- rendering


def test_render_section_tables_and_picture(tmp_path):
    md = quality.markdown(quality_json(main_job=True), tmp_path / "img")
    assert md.startswith("## Search quality\n")
    assert "### Targets" in md and "### toy" in md and "**Oracle row**" in md
    assert "| `oracle` − `hard_sharing` | +5.00 ± 1.00 (3/3) | **yes** |" in md
    assert "| `hard_sharing` | baseline | 1.0 ± 0.0 | 1.0 ± 0.0x | -2.00 ± 1.00 | -3.00 ± 1.00 |" in md
    assert "Grouping **pays** here" in md
    assert "**not met**" in md and "**met**" in md
    assert (tmp_path / "img" / "bench_quality_toy.png").exists()
    assert "![toy: anytime curves](images/bench_quality_toy.png)" in md
    tagged = quality.markdown(quality_json(), tmp_path / "img", image_tag="smoke_")
    assert "bench_quality_smoke_toy.png" in tagged


def test_run_all_has_the_quality_part_in_results(tmp_path):
    args = argparse.Namespace(quick=False, threads=1, device="cpu", docs=None)
    job = run_all.build_jobs(args, tmp_path)["quality"]
    assert job.script == "bench_search_quality.py" and "--quick" in job.argv
    assert job.skip_reason is None
    out, docs = tmp_path / "out", tmp_path / "docs"
    out.mkdir()
    (out / "quality.json").write_text(json.dumps(quality_json()), encoding="utf-8")
    (out / "status.json").write_text(json.dumps({"quality": {
        "command": job.command, "returncode": 0, "seconds": 100.0, "date": "d", "quick": True,
        "reason": None}}), encoding="utf-8")
    recorded = tmp_path / "recorded.json"
    recorded.write_text(json.dumps(quality_json(main_job=True)), encoding="utf-8")
    _, results = run_all.assemble(out, docs, command="c", device="cpu", total_seconds=1.0,
                                  ran=["quality"], draw=False, recorded_dense=None,
                                  recorded_quality=recorded)
    text = results.read_text(encoding="utf-8")
    assert text.count("## Search quality") == 1
    assert "### Smoke run (`--quick`)" in text and "#### toy" in text
    assert "Recorded run at the default size, not repeated by the suite" in text
    assert text.count("Does each strategy find what there is to find") == 1
    # without figures the section says why
    (out / "quality.json").unlink()
    _, results = run_all.assemble(out, docs, command="c", device="cpu", total_seconds=1.0,
                                  draw=False, recorded_dense=None, recorded_quality=None)
    assert "## Search quality\n\n*Section not generated:" in results.read_text(encoding="utf-8")


# --------------------------------------------------------------------------- end to end


def test_tiny_end_to_end_run():
    """Hard sharing, the oracle, the mixed tree and a 2-trial random_tree on a tiny
    synthetic set: every search is recorded with its compute, the oracle row computed."""
    config = bsq.DatasetConfig(
        "tiny", "synthetic", "mlp", "tiny", space_kwargs={"widths": [8, 4]},
        dataset_kwargs={"group_sizes": [2, 2], "n_samples": 200, "input_dim": 8},
        budget={"epochs": 1, "batch_size": 32}, compute="2x", trials=2, oracle_depth=1)
    raw = bsq.run_seed(config, 0, quick=False,
                       only=["hard_sharing", "oracle", "mixed", "random_tree"])
    runs = raw["runs"]
    assert set(runs) == {"hard_sharing", "oracle", "mixed", "random_tree"}
    assert len(runs["hard_sharing"]["trials"]) == 1
    assert runs["hard_sharing"]["compute_macs"] == pytest.approx(raw["unit_macs"])
    assert runs["oracle"]["trials"][0]["ari"] == pytest.approx(1.0)
    assert runs["mixed"]["trials"][0]["ari"] < 0.5
    assert 1 <= len(runs["random_tree"]["trials"]) <= 2
    s = bsq.summarise([raw, {**raw, "seed": 1}])  # the same run twice: differences 0
    assert [p["n"] for p in s["oracle"]] == [2, 2, 2]
    assert all(p["std"] == 0 for p in s["oracle"])


def test_label_noise_is_the_share_of_flipped_training_labels():
    def config(noise):
        return bsq.DatasetConfig("n", "synthetic", "mlp", "n", dataset_kwargs={
            "group_sizes": [2, 2], "n_samples": 400, "input_dim": 8, "noise": noise})

    assert bsq.label_noise(config(0.0), quick=False) == 0.0
    assert 0.05 < bsq.label_noise(config(0.5), quick=False) < 0.5
    digits = bsq.DatasetConfig("d", "digits", "small_cnn", "d")
    assert bsq.label_noise(digits, quick=False) is None


def test_a_run_whose_code_changed_between_seeds_says_so():
    raws = three_seeds()
    for i, r in enumerate(raws):
        r["code"] = {"commit": "abc", "sources": "v1" if i < 2 else "v2"}
    md = quality.markdown(quality_json(raws))
    assert "**The code changed during this run**" in md and "sources v2" in md
    for r in raws:
        r["code"] = {"commit": "abc", "sources": "v1"}
    md = quality.markdown(quality_json(raws))
    assert "sources digest v1 (the same in every seed)" in md


def test_unmet_targets_come_with_their_reason():
    raws = three_seeds(main_job=True)
    for r in raws:  # Random #2 trains the very network gumbel_policy found
        r["runs"]["gumbel_policy_random2"] = json.loads(json.dumps(r["runs"]["gumbel_policy"]))
    checks = dict((t.what, why) for t, why in quality.checks(quality_json(raws)))
    gm = next(v for k, v in checks.items() if k.startswith("gradient_merge beats"))
    assert "`gradient_merge` − `single_task` +0.00 ± 1.00 (1/3)" in gm
    assert "hard_sharing" not in gm.split("(")[0]  # the half that holds is not a reason
    gp = next(v for k, v in checks.items() if k.startswith("gumbel_policy beats"))
    assert "`gumbel_policy` − `gumbel_policy_random2` +0.00 ± 0.00 (0/3)" in gp
    assert "the very same result in 3 seeds" in gp
    assert "1.0 trials on average, the first costing 1.0x of the 6x budget" in gp
    md = quality.markdown(quality_json(raws))
    assert "targets are not met.** Why" in md


def test_main_job_target_met_by_a_tie_says_so():
    raws = three_seeds(main_job=True)
    for r in raws:
        r["runs"]["gumbel_policy"] = json.loads(json.dumps(r["runs"]["hard_sharing"]))
    t = next(t for t in quality.targets(quality_json(raws)) if "below hard" in t.what)
    assert t.met is True and t.figure.startswith("none below (gumbel_policy equal to it")
