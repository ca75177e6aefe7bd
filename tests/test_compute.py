"""Compute accounting, update parity and schedules across merges, against hand computations."""

from __future__ import annotations

import math

import pytest

import mtlsearch
from mtlsearch.engine.compute import Compute, charge, charge_cached, forward_macs, meter, uncharged
from mtlsearch.engine.train import TrainConfig
from mtlsearch.errors import MTLSearchError
from mtlsearch.registry import create_space
from mtlsearch.strategy.base import Proposal, Strategy
from mtlsearch.strategy.context import ResultCache, SearchContext
from mtlsearch.study import spent_compute
from mtlsearch.study.comparison import compute_unit, parse_compute
from mtlsearch.testing import tiny_context, tiny_dataset

# The tiny mlp (input 6, widths 8, 8) by hand: Linear 6x8 = 48 and 8x8 = 64 MACs; heads
# bin 8x1, cls 8x3, reg 8x1 (batch norm and ReLU cost no multiply-accumulates here).
TRUNK = 48 + 64
HEADS = {"bin": 8, "cls": 24, "reg": 8}
FULL = TRUNK + sum(HEADS.values())


def _train_rows(ctx: SearchContext) -> int:
    return len(ctx.data.train)


def test_forward_macs_by_hand_for_all_tasks_and_each_route():
    ctx = tiny_context()
    model = ctx.train(ctx.new_graph("hard_sharing")).model
    assert forward_macs(model) == FULL
    for task, head in HEADS.items():
        assert forward_macs(model, [task]) == TRUNK + head
    single = ctx.train(ctx.new_graph("single_task")).model
    assert forward_macs(single) == 3 * TRUNK + sum(HEADS.values())  # nothing shared


def test_the_trainer_charges_rows_times_forward_macs_for_every_step():
    ctx = tiny_context()
    with meter() as spent:
        result = ctx.train(ctx.new_graph("hard_sharing"), epochs=3)
    n = _train_rows(ctx)
    assert spent.samples == 3 * n
    assert spent.macs == pytest.approx(3 * n * FULL)
    assert spent.networks == 1
    assert result.steps == 3 * math.ceil(n / ctx.budget.batch_size)


def test_one_task_sampling_has_update_parity_and_is_charged_per_route():
    ctx = tiny_context()
    seen: list[str] = []
    with meter() as spent:
        result = ctx.train(ctx.new_graph("hard_sharing"), epochs=2, task_sampling="one",
                           on_backward=[lambda s: seen.extend(s.active_tasks)])
    n, batches = _train_rows(ctx), math.ceil(_train_rows(ctx) / ctx.budget.batch_size)
    tasks = len(ctx.task_names)
    # T passes per epoch: as many updates per task as all-task training, on average
    assert result.steps == 2 * tasks * batches == len(seen)
    assert spent.samples == 2 * tasks * n
    rows = [len(b[0]) for b in ctx.data.train.batches(ctx.budget.batch_size)] * (2 * tasks)
    assert spent.macs == pytest.approx(sum(r * (TRUNK + HEADS[t]) for r, t in zip(rows, seen)))


def test_without_update_parity_one_task_sampling_makes_one_pass_per_epoch():
    ctx = tiny_context()
    result = ctx.train(ctx.new_graph("hard_sharing"), epochs=2, task_sampling="one",
                       update_parity=False)
    assert result.steps == 2 * math.ceil(_train_rows(ctx) / ctx.budget.batch_size)


def _lrs(ctx: SearchContext, rewire_at: int | None) -> list[float]:
    lrs: list[float] = []

    def callback(state):
        lrs.append(state.optimizer.param_groups[0]["lr"])
        if state.epoch == rewire_at:  # a "merge": the same tasks, now on a branched tree
            return ctx.new_graph("partitions", partitions=[[["bin", "cls", "reg"]],
                                                           [["bin", "cls"], ["reg"]]])
        return None

    ctx.train(ctx.new_graph("hard_sharing"), epochs=6, scheduler="cosine", lr=0.01,
              on_epoch_end=[callback])
    return lrs


def test_a_rewired_model_keeps_its_place_in_the_learning_rate_schedule():
    ctx = tiny_context()
    plain, merged = _lrs(ctx, None), _lrs(ctx, 1)
    expected = [0.005 * (1 + math.cos(math.pi * (e + 1) / 6)) for e in range(6)]
    assert plain == pytest.approx(expected)
    assert merged == pytest.approx(expected)  # no restart at the merge


def test_meters_nest_and_uncharged_blocks_charge_nothing():
    with meter() as outer:
        charge(macs=10.0, samples=1)
        with meter() as inner:
            charge(macs=5.0, networks=1)
        with uncharged():
            charge(macs=1000.0)
    assert (outer.macs, outer.samples, outer.networks) == (15.0, 1, 1)
    assert (inner.macs, inner.networks) == (5.0, 1)


def test_a_cached_item_is_charged_once_per_search_with_what_it_cost(tmp_path):
    cache = ResultCache(tmp_path)
    calls = []

    def compute():
        calls.append(1)
        charge(macs=100.0, samples=4, networks=1)
        return {"value": 1}

    with meter() as first:
        cache.get_or_compute("item", compute)
        cache.get_or_compute("item", compute)
    with meter() as second:  # another search: not recomputed, still charged its cost
        ResultCache(tmp_path).get_or_compute("item", compute)
        ResultCache(tmp_path).get_or_compute("item", compute)
    assert calls == [1]
    assert (first.macs, first.networks) == (100.0, 1)
    assert (second.macs, second.samples, second.networks) == (100.0, 4, 1)


def test_a_search_and_its_trial_share_the_charged_keys():
    from mtlsearch.engine.compute import Meter

    search = Meter()
    cost = Compute(macs=7.0)
    for expected in (7.0, 0.0):
        with meter(into=search), meter(Meter(charged_keys=search.charged_keys)) as trial:
            charge_cached("k", cost)
        assert trial.macs == expected
    assert search.macs == 7.0


def test_the_reference_is_free_and_asking_for_single_task_networks_is_charged():
    ctx = tiny_context(seed=5)
    with meter() as spent:
        ctx.reference()
    assert spent.macs == 0
    with meter() as spent:
        ctx.single_task_model()  # trained by the reference already: charged what it cost
    n = _train_rows(ctx)
    assert spent.macs == pytest.approx(n * (3 * TRUNK + sum(HEADS.values())))
    assert spent.networks == 1


class _TwoChoices(Strategy):
    """Proposes hard sharing or single-task networks; lists both as initial parameters."""

    name = "two_choices"

    def initial_params(self, ctx):
        return [{"kind": "single_task"}, {"kind": "hard_sharing"}]

    def propose(self, trial, ctx):
        kind = trial.suggest_categorical("kind", ["hard_sharing", "single_task"])
        return Proposal(ctx.new_graph(kind))


def _search(**kwargs):
    data = tiny_dataset((6,))
    space = create_space("mlp", input_shape=(6,), widths=(8, 8))
    return mtlsearch.search(strategy=_TwoChoices(), dataset=data, space=space, progress=False,
                            budget=TrainConfig(epochs=1, batch_size=32), pruner="none",
                            **kwargs)


def test_trials_record_their_compute_and_initial_params_come_first(tmp_path):
    storage = f"sqlite:///{tmp_path / 's.db'}"
    result = _search(trials=3, storage=storage, study_name="s")
    trials = result.study.get_trials()
    assert [t.params["kind"] for t in trials[:2]] == ["single_task", "hard_sharing"]
    n = len(tiny_dataset((6,)).train)
    per_kind = {"hard_sharing": n * FULL, "single_task": n * (3 * TRUNK + sum(HEADS.values()))}
    for t in trials:
        assert t.user_attrs["compute"]["macs"] == pytest.approx(per_kind[t.params["kind"]])
        assert t.user_attrs["compute"]["networks"] == 1
    assert spent_compute(result.study) == pytest.approx(sum(per_kind[t.params["kind"]] for t in trials))
    resumed = _search(trials=4, storage=storage, study_name="s")  # not enqueued a second time
    kinds = [t.params["kind"] for t in resumed.study.get_trials()]
    assert len(kinds) == 4 and kinds[:2] == ["single_task", "hard_sharing"]


def test_a_compute_budget_stops_the_study():
    n = len(tiny_dataset((6,)).train)
    # single-task first (n * 376 MACs), then hard sharing (n * 152): 1.2 single-task trainings
    # are spent after the second trial, so no third starts
    result = _search(trials=10, compute=1.2 * n * (3 * TRUNK + sum(HEADS.values())))
    assert len(result.study.get_trials()) == 2
    with pytest.raises(MTLSearchError, match="compute"):
        _search(trials=2, compute=0)


def test_compute_budgets_in_hard_sharing_units():
    data = tiny_dataset((6,))
    budget = TrainConfig(epochs=3)
    unit = compute_unit(data, "mlp", budget, {"widths": (8, 8)})
    assert unit == 3 * len(data.train) * FULL
    assert parse_compute("2.5x", unit) == 2.5 * unit
    assert parse_compute(1e6, unit) == 1e6
    assert parse_compute(None, unit) is None
    with pytest.raises(MTLSearchError, match="6x"):
        parse_compute("lots", unit)
