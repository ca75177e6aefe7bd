"""Every piece of markdown the benchmark suite writes, rendered from the JSON the scripts
measure (the scripts measure; this package renders; ``benchmarks/run_all.py`` assembles).

One module per part, each with the same shape: ``targets(data)`` (the checked
:class:`~benchmarks.render.markup.Target` list, met or not computed from the figures, for the
parts that have targets), ``markdown(data, ...)`` (the part's section) and ``plot(...)`` (its
picture, where it has one):

==============  ======================================  ==================================
module          renders                                 from
==============  ======================================  ==================================
``engine``      docs/benchmarks.md a, b                 ``bench_engine.py --json``
``routing``     docs/benchmarks.md c (task routing)     ``bench_task_routing.py scale``
``merge``       docs/benchmarks.md c (gradient merge)   ``bench_gradient_merge.py --part cost``
``search``      docs/benchmarks.md d, e                 ``bench_search_cost.py --json``
``affinity``    docs/benchmarks.md d (estimators)       ``bench_affinity_tree.py --part synthetic``
``gpu``         docs/benchmarks.md f                    ``bench_gpu.py --json``
``results``     docs/results.md, vector datasets        ``bench_results.py --json``
``dense``       docs/results.md, dense prediction       ``bench_dense.py --json``
``quality``     docs/results.md, search quality         ``bench_search_quality.py --json``
==============  ======================================  ==================================

``markup`` holds the shared pieces (targets, sections, tables, number formats), ``plots`` the
figure helpers and ``pages`` the two pages' headers and skeletons. Nothing here measures, so
every renderer can be tested on small hand-made JSON.
"""

from __future__ import annotations

__all__ = ["affinity", "dense", "engine", "gpu", "markup", "merge", "pages", "plots", "quality",
           "results", "routing", "search"]
