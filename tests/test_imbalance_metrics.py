"""Binary metrics for imbalanced tasks: balanced accuracy, F1 and AUROC against hand
computations and scikit-learn, the primary metric in Δ_MTL, and BCE's pos_weight."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score, f1_score, roc_auc_score

from mtlsearch import SharingGraph, TaskSpec, create_space, delta_mtl, evaluate, from_arrays
from mtlsearch.engine.scoring import metric_directions
from mtlsearch.engine.train import TrainConfig, build_and_train
from mtlsearch.errors import TaskError, UndefinedMetricWarning
from mtlsearch.tasks.kinds import BINARY_METRICS, get_task_kind

KIND = get_task_kind("binary")


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)


def _scores(spec: TaskSpec, logits: list[float], labels: list[float]) -> dict[str, float]:
    acc = KIND.new_accumulator(spec)
    target = KIND.prepare_targets(spec, labels)
    out = torch.tensor(logits).reshape(-1, 1)
    acc.update(out[:3], target[:3])  # two batches, as evaluation accumulates them
    acc.update(out[3:], target[3:])
    return acc.compute()


def test_metrics_by_hand_on_a_small_vector():
    # predictions (logit > 0): 1 0 1 0 0 0 -> TP=1 FP=1 FN=1 TN=3; the missing label is dropped
    logits = [2.0, -1.0, 0.5, -3.0, -0.5, -2.0, 9.0]
    labels = [1, 0, 0, 0, 1, 0, -1]
    got = _scores(TaskSpec("t"), logits, labels)
    assert got["accuracy"] == pytest.approx(4 / 6)
    assert got["balanced_accuracy"] == pytest.approx((1 / 2 + 3 / 4) / 2)
    assert got["f1"] == pytest.approx(2 * 1 / (2 * 1 + 1 + 1))
    # positives score 2 and -0.5; of the 8 (positive, negative) pairs 7 are ordered right
    assert got["auroc"] == pytest.approx(7 / 8)


@pytest.mark.parametrize("seed", range(5))
def test_metrics_equal_scikit_learns(seed):
    rng = np.random.default_rng(seed)
    n = 200
    labels = (rng.random(n) < 0.1 + 0.15 * seed).astype(int)
    labels[:2] = [0, 1]
    logits = np.round(rng.normal(size=n) + labels * seed * 0.5, 1)  # rounding: ties in AUROC
    got = KIND.compute_metrics(TaskSpec("t"), torch.tensor(logits).float().reshape(-1, 1),
                               torch.tensor(labels).float())
    pred = (logits.astype(np.float32) > 0).astype(int)
    assert got["accuracy"] == pytest.approx(float((pred == labels).mean()))
    assert got["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(labels, pred))
    assert got["f1"] == pytest.approx(f1_score(labels, pred))
    assert got["auroc"] == pytest.approx(roc_auc_score(labels, logits.astype(np.float32)), abs=1e-6)


def test_one_class_split_gives_nan_auroc_with_a_warning():
    with pytest.warns(UndefinedMetricWarning, match="only class 0 is present"):
        got = KIND.compute_metrics(TaskSpec("rare"), torch.tensor([[-1.0], [2.0], [-3.0]]),
                                   torch.tensor([0.0, 0.0, 0.0]))
    assert math.isnan(got["auroc"])
    assert got["accuracy"] == pytest.approx(2 / 3)
    with warnings.catch_warnings():  # sklearn warns; its value is the present class's recall
        warnings.simplefilter("ignore")
        assert got["balanced_accuracy"] == pytest.approx(
            balanced_accuracy_score([0, 0, 0], [0, 1, 0]))
    assert got["f1"] == 0.0  # one false positive, nothing found


def test_f1_with_no_positive_anywhere_is_one():
    with pytest.warns(UndefinedMetricWarning):
        got = KIND.compute_metrics(TaskSpec("rare"), torch.tensor([[-1.0], [-2.0]]),
                                   torch.tensor([0.0, 0.0]))
    assert got["f1"] == 1.0 and got["accuracy"] == 1.0


def test_unknown_metric_lists_the_known_ones():
    with pytest.raises(TaskError, match=r"unknown metric 'recall'.*'balanced_accuracy', 'f1'"):
        TaskSpec("t", options={"metric": "recall"})
    for metric in BINARY_METRICS:
        assert metric_directions(TaskSpec("t", options={"metric": metric})) == {metric: True}
    assert metric_directions(TaskSpec("t")) == {"accuracy": True}


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), "3", True])
def test_bad_pos_weight_is_refused(bad):
    with pytest.raises(TaskError, match="pos_weight must be a positive number"):
        TaskSpec("t", options={"pos_weight": bad})


def test_delta_mtl_counts_the_chosen_metric_only():
    tasks = [TaskSpec("a", options={"metric": "f1"}), TaskSpec("b"),
             TaskSpec("c", options={"metric": "auroc"})]
    reference = {
        "a": {"accuracy": 0.90, "balanced_accuracy": 0.5, "f1": 0.40, "auroc": 0.7},
        "b": {"accuracy": 0.80, "balanced_accuracy": 0.5, "f1": 0.40, "auroc": 0.7},
        "c": {"accuracy": 0.80, "balanced_accuracy": 0.5, "f1": 0.40, "auroc": 0.80},
    }
    metrics = {
        "a": {"accuracy": 0.45, "balanced_accuracy": 0.9, "f1": 0.50, "auroc": 0.1},
        "b": {"accuracy": 0.88, "balanced_accuracy": 0.1, "f1": 0.10, "auroc": 0.1},
        "c": {"accuracy": 0.10, "balanced_accuracy": 0.1, "f1": 0.10, "auroc": 0.60},
    }
    result = delta_mtl(metrics, reference, tasks)
    # a: f1 0.4 -> 0.5 = +25%; b: accuracy 0.8 -> 0.88 = +10%; c: auroc 0.8 -> 0.6 = -25%
    assert result.per_task == pytest.approx({"a": 25.0, "b": 10.0, "c": -25.0})
    assert result.overall == pytest.approx(10 / 3)


def test_pos_weight_loss_by_hand():
    spec = TaskSpec("t", options={"pos_weight": 3.0})
    logits = torch.tensor([[0.5], [-1.0], [2.0], [0.0]])
    target = KIND.prepare_targets(spec, [1, 0, float("nan"), 1])

    def sig(v: float) -> float:
        return 1 / (1 + math.exp(-v))

    # -(w * y * log σ(x) + (1 - y) * log(1 - σ(x))), over the three labelled samples
    expected = (3 * -math.log(sig(0.5)) - math.log(1 - sig(-1.0)) + 3 * -math.log(sig(0.0))) / 3
    assert KIND.loss(spec, logits, target).item() == pytest.approx(expected, rel=1e-6)
    plain = (-math.log(sig(0.5)) - math.log(1 - sig(-1.0)) - math.log(sig(0.0))) / 3
    assert KIND.loss(TaskSpec("t"), logits, target).item() == pytest.approx(plain, rel=1e-6)


def _imbalanced(pos_weight: float | None):
    """A rare positive class (8%) whose inputs overlap the negatives'."""
    gen = torch.Generator().manual_seed(0)
    n = 600
    y = (torch.rand(n, generator=gen) < 0.08).float()
    x = torch.randn(n, 2, generator=gen) + y[:, None] * 1.2
    options = {"metric": "balanced_accuracy"}
    if pos_weight is not None:
        options["pos_weight"] = pos_weight
    return from_arrays(x, {"rare": y}, tasks=[TaskSpec("rare", options=options)], seed=0,
                       name="imbalanced")


def _train(data):
    space = create_space("mlp", input_shape=(2,), widths=(8,))
    config = TrainConfig(epochs=12, batch_size=64, lr=0.02, device="cpu", seed=0)
    graph = SharingGraph.hard_sharing(["rare"], space.num_blocks)
    result = build_and_train(graph, space, data.tasks, data.train, data.val, config)
    return evaluate(result.model, data.test)["rare"]


def test_pos_weight_changes_the_outcome_on_an_imbalanced_toy():
    plain = _train(_imbalanced(None))
    weighted = _train(_imbalanced(11.5))  # n_negative / n_positive
    assert set(BINARY_METRICS) <= set(plain)  # every metric reported
    # unweighted, the rare class is mostly predicted negative: high accuracy, poor balance
    assert weighted["balanced_accuracy"] > plain["balanced_accuracy"] + 0.1
    assert weighted["accuracy"] < plain["accuracy"]
    again = _train(_imbalanced(11.5))
    assert again == weighted  # same seed, same result


@pytest.mark.parametrize("metric", ["accuracy", "auroc"])
def test_a_split_with_one_class_fails_a_trial_only_when_its_metric_counts(metric):
    """AUROC is undefined on a validation split with one class: a trial scored by accuracy
    goes on (AUROC reported as NaN); one whose Δ_MTL counts AUROC fails, naming the task."""
    from mtlsearch.data.dataset import DatasetSplits, MultiTaskDataset
    from mtlsearch.errors import MTLSearchError
    from mtlsearch.strategy.base import Proposal
    from mtlsearch.strategy.context import SearchContext
    from mtlsearch.strategy.pipeline import evaluate_proposal

    gen = torch.Generator().manual_seed(0)
    specs = [TaskSpec("rare", options={"metric": metric}), TaskSpec("even")]

    def part(n: int, rare_value: float | None) -> MultiTaskDataset:
        x = torch.randn(n, 4, generator=gen)
        rare = (x[:, 0] > 0).double() if rare_value is None else torch.full((n,), rare_value)
        return MultiTaskDataset(x, {"rare": rare, "even": (x[:, 1] > 0).double()}, specs)

    data = DatasetSplits(name="toy", train=part(64, None), val=part(32, 0.0),
                         test=part(32, None), tasks=specs)
    space = create_space("mlp", input_shape=(4,), widths=(8,))
    ctx = SearchContext(data=data, space=space, seed=0,
                        budget=TrainConfig(epochs=1, batch_size=32, device="cpu"))
    proposal = Proposal(SharingGraph.hard_sharing(["rare", "even"], space.num_blocks))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        if metric == "accuracy":
            result = evaluate_proposal(proposal, ctx)
            assert math.isnan(result.metrics["val"]["rare"]["auroc"])
            assert math.isfinite(result.delta_mtl)
        else:
            with pytest.raises(MTLSearchError, match="task 'rare' got non-finite metrics"):
                evaluate_proposal(proposal, ctx)


def test_scoring_a_binary_task_imports_no_scikit_learn():
    # Importing scikit-learn cost every training process 1.7 s (each parallel worker too).
    import subprocess
    import sys

    code = ("import sys, torch, warnings\n"
            "from mtlsearch import TaskSpec\n"
            "from mtlsearch.tasks.kinds import get_task_kind\n"
            "kind = get_task_kind('binary')\n"
            "warnings.simplefilter('ignore')\n"
            "kind.compute_metrics(TaskSpec('a'), torch.tensor([[1.0], [-1.0]]), torch.tensor([1.0, 0.0]))\n"
            "kind.compute_metrics(TaskSpec('a'), torch.tensor([[1.0], [-1.0]]), torch.tensor([1.0, 1.0]))\n"
            "print('sklearn' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
