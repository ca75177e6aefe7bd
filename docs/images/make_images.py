"""Draw the pictures of docs/concepts.md from real mtlsearch objects.

Run from the repository root: ``python docs/images/make_images.py`` (writes
``docs/images/graph_schema.png``). The left panel is a :class:`~mtlsearch.SharingGraph`
drawn from its networkx graph; the right panel is the execution plan that
:func:`mtlsearch.graph.plan.build_plan` makes of it (every distinct computation once).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import networkx as nx  # noqa: E402
from matplotlib.patches import FancyBboxPatch  # noqa: E402

from mtlsearch import SharingGraph  # noqa: E402
from mtlsearch.graph.plan import build_plan  # noqa: E402
from mtlsearch.graph.sharing import INPUT, head_id  # noqa: E402

HERE = Path(__file__).resolve().parent
TASKS = ["a", "b", "c"]
TASK_COLOURS = {"a": "#1f77b4", "b": "#d62728", "c": "#2ca02c"}
KIND_COLOURS = {"input": "#dddddd", "block": "#fde9b5", "head": "#cfe3f7"}


def example_graph() -> SharingGraph:
    """Three tasks, four blocks: sharing, branching, a merge, a skip and a mask."""
    g = SharingGraph(TASKS, 4)
    for node, index in [("b0.0", 0), ("b1.0", 1), ("b1.1", 1), ("b2.0", 2), ("b3.0", 3),
                        ("b3.1", 3)]:
        g.add_block(index, node)
    g.set_route("a", ["b0.0", "b1.0", "b2.0", "b3.0"])
    g.set_route("b", ["b0.0", "b1.0", "b2.0", "b3.0"])
    g.set_route("c", ["b0.0", "b1.1", "b2.0", "b3.1"])
    g.set_skip("a", "b2.0")
    g.set_mask("b", "b3.0", [1, 0, 1, 1, 0, 1, 1, 0])
    return g.validate()


def _positions(g: SharingGraph) -> dict[str, tuple[float, float]]:
    columns: dict[int, list[str]] = {}
    for node in g.nx.nodes:
        kind = g.nx.nodes[node]["kind"]
        col = 0 if kind == "input" else (g.num_blocks + 1 if kind == "head" else
                                         g.node_index(node) + 1)
        columns.setdefault(col, []).append(node)
    pos = {}
    for col, nodes in columns.items():
        nodes.sort()
        for k, node in enumerate(nodes):
            pos[node] = (col * 2.2, (len(nodes) - 1) / 2 - k)
    return pos


def _box(ax: plt.Axes, xy: tuple[float, float], text: str, colour: str, width: float = 1.3) -> None:
    x, y = xy
    ax.add_patch(FancyBboxPatch((x - width / 2, y - 0.22), width, 0.44,
                                boxstyle="round,pad=0.03", fc=colour, ec="#555555", lw=1))
    ax.text(x, y, text, ha="center", va="center", fontsize=9, family="monospace")


def draw_graph(ax: plt.Axes, g: SharingGraph) -> None:
    """The sharing graph: input, block nodes, heads; edges labelled with their tasks."""
    pos = _positions(g)
    for u, v, data in g.nx.edges(data=True):
        tasks = sorted(data["tasks"], key=TASKS.index)
        (x0, y0), (x1, y1) = pos[u], pos[v]
        for k, t in enumerate(tasks):
            off = (k - (len(tasks) - 1) / 2) * 0.06
            ax.annotate("", xy=(x1 - 0.68, y1 + off), xytext=(x0 + 0.68, y0 + off),
                        arrowprops={"arrowstyle": "-|>", "color": TASK_COLOURS[t], "lw": 1.4,
                                    "shrinkA": 0, "shrinkB": 0})
        ax.text((x0 + x1) / 2, (y0 + y1) / 2 + 0.13, "{" + ",".join(tasks) + "}",
                ha="center", va="bottom", fontsize=8, color="#333333")
    for node, data in g.nx.nodes(data=True):
        kind = data["kind"]
        label = node if kind != "head" else f"head:{data['task']}"
        _box(ax, pos[node], label, KIND_COLOURS[kind])
        if kind == "block" and data["skips"]:
            ax.text(pos[node][0], pos[node][1] - 0.34, f"skips: {sorted(data['skips'])}",
                    ha="center", va="top", fontsize=8, color="#8a4b00", style="italic")
        if kind == "block" and data["masks"]:
            masks = ", ".join(f"{t}: {''.join('1' if v else '0' for v in m)}"
                              for t, m in sorted(data["masks"].items()))
            ax.text(pos[node][0], pos[node][1] - 0.34, f"mask {masks}",
                    ha="center", va="top", fontsize=8, color="#6a1b9a", style="italic")
    for i in range(g.num_blocks):
        ax.text((i + 1) * 2.2, 1.55, f"block {i}", ha="center", fontsize=9, color="#777777")
    for t, c in TASK_COLOURS.items():
        ax.plot([], [], color=c, lw=2, label=f"route of task {t}")
    ax.legend(loc="lower left", fontsize=8, frameon=False)
    ax.set_title("SharingGraph: routes are the paths labelled with a task", fontsize=11)
    _frame(ax, pos)


def draw_plan(ax: plt.Axes, g: SharingGraph) -> None:
    """The execution plan: one box per distinct computation (a trie of the routes)."""
    plan = build_plan(g)
    trie = nx.DiGraph()
    trie.add_node(0, label="x", col=0)
    for depth, level in enumerate(plan.levels):
        for run in level:
            batched = len(run.run_inputs) > 1
            for pos_, slot, mask_id in run.run_outputs:
                tag = " ×mask" if mask_id is not None else ""
                cat = f" [{pos_ + 1}/{len(run.run_inputs)}]" if batched else ""
                trie.add_node(slot, label=f"{run.node}{tag}{cat}", col=depth + 1, kind="run")
                trie.add_edge(run.run_inputs[pos_], slot)
            for pos_, slot in run.skip_outputs:
                trie.add_node(slot, label=f"{run.node} skip", col=depth + 1, kind="skip")
                trie.add_edge(run.skip_inputs[pos_], slot)
    for task, slot in plan.head_slots.items():
        node = f"head:{task}"
        trie.add_node(node, label=node, col=g.num_blocks + 1, kind="head")
        trie.add_edge(slot, node)
    columns: dict[int, list] = {}
    for node, data in trie.nodes(data=True):
        columns.setdefault(data["col"], []).append(node)
    pos = {}
    for col, nodes in columns.items():
        nodes.sort(key=str)
        for k, node in enumerate(nodes):
            pos[node] = (col * 2.2, (len(nodes) - 1) / 2 - k)
    for u, v in trie.edges:
        (x0, y0), (x1, y1) = pos[u], pos[v]
        ax.annotate("", xy=(x1 - 0.78, y1), xytext=(x0 + 0.78, y0),
                    arrowprops={"arrowstyle": "-|>", "color": "#555555", "lw": 1.1})
    colours = {"run": KIND_COLOURS["block"], "skip": "#f3d6b3", "head": KIND_COLOURS["head"]}
    for node, data in trie.nodes(data=True):
        _box(ax, pos[node], data["label"], colours.get(data.get("kind"), KIND_COLOURS["input"]),
             width=1.5)
    ax.set_title(f"Execution plan: {plan.num_computations} block passes per sample "
                 f"(routes alone: {sum(len(g.route(t)) for t in TASKS)})", fontsize=11)
    _frame(ax, pos)


def _frame(ax: plt.Axes, pos: dict) -> None:
    xs = [p[0] for p in pos.values()]
    ys = [p[1] for p in pos.values()]
    ax.set_xlim(min(xs) - 1, max(xs) + 1)
    ax.set_ylim(min(ys) - 0.8, max(ys) + 0.9)
    ax.axis("off")


def main() -> None:
    g = example_graph()
    assert head_id("a") in g.nx and INPUT in g.nx
    fig, (left, right) = plt.subplots(2, 1, figsize=(12, 8.5))
    draw_graph(left, g)
    draw_plan(right, g)
    fig.text(0.5, 0.01,
             "a skips b2.0 (its shortcut runs instead). b2.0 runs once on the concatenation of "
             "its two distinct inputs (parts [1/2], [2/2]), and so does b3.0;\n"
             "b's mask at b3.0 multiplies b's part after the block's normalisation, before its "
             "activation. Shared prefixes (b0.0, b1.0) run once for every task through them.",
             ha="center", fontsize=9, color="#444444")
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    out = HERE / "graph_schema.png"
    fig.savefig(out, dpi=120)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
