"""How many trainings share one GPU (mtlsearch/engine/device_share.py): the rule by hand, and
the measurement's refusal off CUDA (the measurement itself runs on a GPU only)."""

from __future__ import annotations

import pytest
import torch

from mtlsearch.engine.device_share import (
    CONTEXT_BYTES,
    MAX_TRAININGS,
    measure_training_peak,
    trainings_per_device,
)
from mtlsearch.errors import MTLSearchError
from mtlsearch.registry import create_space
from mtlsearch.testing import tiny_dataset

MIB, GIB = 2**20, 2**30


@pytest.mark.parametrize(("peak", "free", "expected"), [
    (300 * MIB, 10 * GIB, 8),       # 0.8 x 10240 / 800 = 10.2: the cap
    (3 * GIB, 10 * GIB, 2),         # 8192 / 3572 = 2.3
    (1500 * MIB, 80 * GIB, 8),      # an H100's free memory, a ResNet-18: the cap again
    (1500 * MIB, 7 * GIB, 2),       # 5734 / 2000 = 2.9
    (20 * GIB, 10 * GIB, 1),        # larger than the rule allows: still trains, alone
])
def test_the_rule_by_hand(peak, free, expected):
    share = trainings_per_device(peak, free)
    assert share.trainings == expected
    by_hand = int(0.8 * free // (peak + CONTEXT_BYTES))
    assert share.trainings == max(1, min(MAX_TRAININGS, by_hand))
    assert f"{share.trainings} training(s) on the GPU" in share.describe()


def test_cap_share_and_context_are_honoured():
    assert trainings_per_device(100 * MIB, 100 * GIB, cap=3).trainings == 3
    assert trainings_per_device(100 * MIB, 10 * GIB, context_bytes=0, share=0.5, cap=100
                                ).trainings == 51  # 5120 / 100
    with pytest.raises(MTLSearchError, match="share must be in"):
        trainings_per_device(1, 1, share=0)
    with pytest.raises(MTLSearchError, match="cap must be at least 1"):
        trainings_per_device(1, 1, cap=0)
    with pytest.raises(MTLSearchError, match="must not be negative"):
        trainings_per_device(-1, 1)


def test_measuring_needs_cuda():
    data = tiny_dataset((6,), n=32)
    space = create_space("mlp", input_shape=(6,), widths=(8, 8))
    with pytest.raises(MTLSearchError, match="needs a CUDA device, got cpu"):
        measure_training_peak(space, data.train, batch_size=8, device="cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_measured_peak_grows_with_the_batch():  # pragma: no cover - GPU only
    data = tiny_dataset((6,), n=256)
    space = create_space("mlp", input_shape=(6,), widths=(64, 64))
    small = measure_training_peak(space, data.train, batch_size=8, device="cuda")
    large = measure_training_peak(space, data.train, batch_size=128, device="cuda")
    assert 0 < small < large
