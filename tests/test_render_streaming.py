"""benchmarks/render/streaming.py: the streaming section's tables and targets from its JSON."""

from __future__ import annotations

import pytest

from benchmarks.render import streaming

MIB = 2**20


def _data(ratio_ms: float, above: float) -> dict:
    return {
        "quick": False, "image_size": 64,
        "throughput": {"workers_2": 4000.0, "workers_0": 3000.0, "images": 1024},
        "step": {"memory_s": 0.2, "streaming_s": ratio_ms / 1000, "ratio": ratio_ms / 200,
                 "reps": 3, "train_images": 717},
        "memory": {"peak_rss_bytes": 1100 * MIB, "above_baseline_bytes": above * MIB,
                   "worker_peak_rss_bytes": 700 * MIB, "images": 50_000,
                   "float32_estimate_bytes": 2344 * MIB, "seconds": 300.0},
        "memory_baseline": {"peak_rss_bytes": 1000 * MIB, "worker_peak_rss_bytes": 690 * MIB,
                            "images": 600, "float32_estimate_bytes": 28 * MIB, "seconds": 40.0},
    }


def test_targets_are_computed_from_the_figures():
    met = streaming.targets(_data(210, 100))
    assert [t.met for t in met] == [True, True]
    assert met[0].figure == pytest.approx(1.05)
    assert met[1].figure == pytest.approx(100 / 2344)
    assert "50,000 images" in met[1].what
    missed = streaming.targets(_data(240, 2000))
    assert [t.met for t in missed] == [False, False]


def test_markdown_shows_every_figure():
    text = streaming.markdown(_data(210, 100), command="python benchmarks/bench_streaming.py")
    for piece in ("| streaming, 2 workers | 4000 |", "| streaming (2 workers) | 210.0 | 1.05x |",
                  "| streaming | 50,000 | 1,100 MiB | 100 MiB | 700 MiB | 2,344 MiB | 300 |",
                  "baseline: 600 images streamed", "`python benchmarks/bench_streaming.py`"):
        assert piece in text, piece


def test_missing_parts_are_not_measured():
    assert [t.met for t in streaming.targets({})] == [None, None]
