"""The ``## Search quality`` section of docs/results.md from
``bench_search_quality.py --json``: its targets (met or not, with the figures that decide
them), then per dataset the oracle row, the contenders, the anytime curves and the paired
comparisons."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from . import plots
from .markup import Target, not_generated, table

#: search quality: mean adjusted Rand index of the discovered grouping (partition at the
#: deepest shared depth) over seeds, where grouping pays.
MIN_ARI = 0.9
#: search quality: each paper's claim must hold (beyond the paired noise) on this many datasets.
CLAIM_DATASETS = 2


#: How each contender of bench_search_quality.py is drawn and named in the tables.
STYLE = {  # colour, line style, marker
    "single_task": ("black", ":", "o"), "hard_sharing": ("tab:gray", "--", "o"),
    "oracle": ("tab:green", "--", "o"), "mixed": ("tab:olive", ":", "o"),
    "random_tree": ("tab:brown", "-.", "s"), "matched_random_tree": ("tab:pink", "-.", "v"),
    "affinity_tree": ("tab:blue", "-", "s"), "gradient_merge": ("tab:orange", "-", "s"),
    "gumbel_policy": ("tab:red", "-", "s"), "gumbel_policy_random2": ("tab:red", ":", "v"),
    "task_routing": ("tab:purple", "-", "s"), "task_routing_sigma0": ("tab:purple", ":", "v"),
    "task_routing_sigma1": ("tab:purple", "--", "^"),
}

#: The claims checked, in words (bench_search_quality.CLAIMS holds the pairs).
CLAIMS = {
    "task_routing": "task_routing's best σ in (0, 1) beats σ = 1 and σ = 0",
    "gumbel_policy": "gumbel_policy beats hard_sharing and its Random #2 ablation",
    "affinity_tree": "affinity_tree beats random trees of the same shape (matched branching)",
    "gradient_merge": "gradient_merge beats hard_sharing and single-task networks",
}

_PAPER = ("affinity_tree", "gradient_merge", "gumbel_policy", "task_routing")

#: Drawn as horizontal lines: one architecture each, nothing searched.
REFERENCE_LINES = ("single_task", "hard_sharing", "oracle", "mixed")


def _num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _pm(pair: Sequence[Any] | None, digits: int = 2, sign: str = "+") -> str:
    """``+1.23 ± 0.45`` from ``(mean, std)``; ``—`` when the mean is missing."""
    if not pair or not _num(pair[0]):
        return "—"
    std = pair[1] if _num(pair[1]) else 0.0
    return f"{pair[0]:{sign}.{digits}f} ± {std:.{digits}f}"


def _diff(d: Mapping[str, Any] | None) -> str:
    """A paired difference: ``+1.20 ± 0.80 (3/3)`` (mean ± std, wins out of seeds)."""
    if not d or not d.get("n"):
        return "—"
    return f"{d['mean']:+.2f} ± {(d.get('std') or 0.0):.2f} ({d['wins']}/{d['n']})"


def _pays(summary: Mapping[str, Any]) -> bool | None:
    """Whether the planted tree beats hard sharing and the mixed tree beyond the paired
    noise (``None`` without a planted grouping)."""
    pairs = {(p["a"], p["b"]): p for p in summary.get("oracle", [])}
    need = [pairs.get(("oracle", "hard_sharing")), pairs.get(("oracle", "mixed"))]
    if not summary.get("planted") or any(p is None for p in need):
        return None
    return all(p.get("better") for p in need)


def _claim_holds(pairs: Sequence[Mapping[str, Any]], expected: int) -> bool | None:
    """All of a claim's comparisons on one dataset are wins beyond the noise (``None``: a
    contender is missing there)."""
    if not pairs or len(pairs) < expected or any(not p.get("n") for p in pairs):
        return None
    return all(p.get("better") for p in pairs)


def _structures(e: Mapping[str, Any] | None) -> str:
    """``hard sharing in 3 of 5 seeds, 4 groups at block 2 in 2``: what a contender returned."""
    counts = (e or {}).get("structures") or {}
    n = (e or {}).get("n") or sum(counts.values())
    parts = [f"{k} in {v}" + (f" of {n} seeds" if i == 0 else "")
             for i, (k, v) in enumerate(counts.items())]
    return ", ".join(parts) if parts else "no result"


def _same_results(s: Mapping[str, Any], a: str, b: str) -> int:
    """Seeds where ``a`` and ``b`` got exactly the same test Δ_MTL (the same network)."""
    ea, eb = s["entries"].get(a, {}).get("seeds", {}), s["entries"].get(b, {}).get("seeds", {})
    return sum(1 for k in ea if k in eb and _num(ea[k].get("test"))
               and ea[k].get("test") == eb[k].get("test"))


def _search_facts(s: Mapping[str, Any], name: str) -> str:
    """Trials, what the first one cost against the budget, and what the search returned."""
    e = s["entries"].get(name)
    if not e:
        return f"`{name}` did not run"
    first, trials = (e.get("first_compute") or [None])[0], (e.get("trials") or [None])[0]
    text = f"`{name}` returned {_structures(e)}"
    if _num(trials) and _num(first) and name != "single_task":
        text += (f"; {trials:.1f} trials on average, the first costing {first:.1f}x "
                 f"of the {s.get('budget', 0):g}x budget")
    return text


def checks(data: Mapping[str, Any]) -> list[tuple[Target, str]]:
    """Every search-quality target with the reason behind its outcome (the figures that
    decide it, and what the strategies returned), from ``bench_search_quality.py --json``.

    * grouping pays on each dataset with a planted grouping (the oracle beats hard sharing and
      the mixed tree beyond the paired noise);
    * ``affinity_tree`` and ``gradient_merge`` recover the planted groups there (mean ARI
      >= :data:`MIN_ARI`);
    * each paper's claim holds on at least :data:`CLAIM_DATASETS` datasets;
    * on the main-job dataset no paper strategy's mean test Δ_MTL is below hard sharing's and
      a paper strategy has the best one.
    """
    sets = data.get("datasets", {})
    out: list[tuple[Target, str]] = []
    paying = []
    for key, s in sets.items():
        pays = _pays(s)
        if pays is None:
            continue
        pairs = {(p["a"], p["b"]): p for p in s["oracle"]}
        if pays:
            paying.append(key)
        weak = [b for b in ("hard_sharing", "mixed") if not pairs[("oracle", b)].get("better")]
        out.append((Target("quality", f"{key}: grouping pays (the planted tree minus hard "
                                      "sharing, and minus the same-shape mixed tree, test Δ_MTL "
                                      "paired per seed)",
                           "both > 0 beyond the paired noise",
                           f"{_diff(pairs[('oracle', 'hard_sharing')])}; "
                           f"{_diff(pairs[('oracle', 'mixed')])}", pays),
                    "" if pays else f"on {key} the planted tree does not beat "
                    + " nor ".join(f"`{b}` ({_diff(pairs[('oracle', b)])})" for b in weak)
                    + " beyond the paired noise"))
    for name in ("affinity_tree", "gradient_merge"):
        what = f"{name} recovers the planted groups where grouping pays (mean ARI over seeds)"
        figs = [(k, (sets[k]["entries"].get(name) or {}).get("ari")) for k in paying]
        figs = [(k, a) for k, a in figs if a and _num(a[0])]
        if not figs:
            out.append((Target("quality", what, f">= {MIN_ARI}", None, None),
                        "no dataset where grouping pays" if not paying else f"{name} did not run"))
            continue
        met = all(a[0] >= MIN_ARI for _, a in figs)
        why = "; ".join(
            f"on {k}: ARI per seed "
            + ", ".join(f"{(f.get('ari') if _num(f.get('ari')) else math.nan):.2f}"
                        for f in sets[k]["entries"][name]["seeds"].values())
            + f"; {_search_facts(sets[k], name)}" for k, a in figs if a[0] < MIN_ARI)
        out.append((Target("quality", what, f">= {MIN_ARI}",
                           "; ".join(f"{k} {_pm(a, 2, '')}" for k, a in figs), met), why))
    for name, words in CLAIMS.items():
        held, measured, why = [], [], []
        for key, s in sets.items():
            expected = len((s.get("claim_pairs") or {}).get(name, []))
            pairs = s.get("claims", {}).get(name, [])
            holds = _claim_holds(pairs, expected)
            if holds is None:
                continue
            measured.append(key)
            if holds:
                held.append(key)
                continue
            fails = []
            for p in pairs:
                if p.get("better"):
                    continue
                same = _same_results(s, p["a"], p["b"])
                fails.append(f"`{p['a']}` − `{p['b']}` {_diff(p)}"
                             + (f", the very same result in {same} seed{'s' * (same > 1)}"
                                if same else ""))
            why.append(f"on {key}: " + "; ".join(fails) + f" ({_search_facts(s, name)})")
        figure = (f"holds on {len(held)} of {len(measured)}"
                  + (f" ({', '.join(held)})" if held else "")) if measured else None
        met = None if not measured else len(held) >= CLAIM_DATASETS
        out.append((Target("quality", f"{words}, equal compute, beyond the paired noise",
                           f"on >= {CLAIM_DATASETS} datasets", figure, met),
                    "; ".join(why) if measured else "a contender of the claim did not run"))
    for key, s in sets.items():
        if not s.get("settings", {}).get("main_job"):
            continue
        e = s["entries"]
        if "hard_sharing" not in e:
            continue
        hard = e["hard_sharing"]["test"][0]
        below = [n for n in _PAPER if n in e and _num(e[n]["test"][0]) and e[n]["test"][0] < hard]
        # met by a tie is worth saying: the strategy returned hard sharing itself
        equal = [n for n in _PAPER if n in e and e[n]["test"][0] == hard]
        out.append((Target("quality", f"{key} at the README's main-job settings: no paper "
                                      "strategy's mean test Δ_MTL below hard_sharing's",
                           "none below", ("none below" + (
                               f" ({', '.join(equal)} equal to it: "
                               + "; ".join(_structures(e[n]) for n in equal) + ")"
                               if equal else "")) if not below else
                           "below: " + ", ".join(f"{n} {e[n]['test'][0]:+.2f}" for n in below)
                           + f" (hard_sharing {hard:+.2f})", not below),
                    "; ".join(_search_facts(s, n) for n in below)))
        board = s.get("leaderboard", [])
        if board:
            top = board[0]
            best_paper = next((n for n in board if n in _PAPER), None)
            out.append((Target("quality", f"{key} at the README's main-job settings: a search "
                                          "strategy (not a baseline) has the best mean test "
                                          "Δ_MTL", "a paper strategy first",
                               f"{top} {e[top]['test'][0]:+.2f}", top in _PAPER),
                        "" if top in _PAPER or best_paper is None else
                        f"the best paper strategy, `{best_paper}`, has "
                        f"{e[best_paper]['test'][0]:+.2f} ({_search_facts(s, best_paper)})"))
    return out


def targets(data: Mapping[str, Any]) -> list[Target]:
    """The search-quality targets, met or not (see :func:`checks`)."""
    return [t for t, _ in checks(data)]


def _row(label: str, e: Mapping[str, Any], planted: bool) -> list[str]:
    params = e.get("n_params")
    trials = "—" if label == "single_task" else _pm(e.get("trials"), 1, "")
    row = [f"`{label}`", e.get("role") or "—", trials,
           _pm(e.get("compute"), 1, "") + "x", _pm(e.get("val")), _pm(e.get("test")),
           "—" if not params or not _num(params[0]) else f"{params[0]:,.0f}"]
    if planted:
        row.append(_pm(e.get("ari"), 2, ""))
    return row


def plot(key: str, s: Mapping[str, Any], images: Path, tag: str = "") -> str:
    """Anytime curves of one dataset: best validation Δ_MTL so far (left) and the test Δ_MTL
    of that trial (right) against compute, mean ± std over seeds; fixed architectures as
    horizontal reference lines."""
    from matplotlib.ticker import FuncFormatter

    fig, axes = plots.figure(11.0, 4.2, cols=2)
    budget = s.get("budget")
    entries = s["entries"]
    finals = sorted(e["test"][0] for e in entries.values() if _num((e.get("test") or [None])[0]))
    low = None
    if len(finals) >= 4:  # a far-off contender (sigma = 0, say) would flatten all the others
        q1, q3 = finals[len(finals) // 4], finals[(3 * len(finals)) // 4]
        low = min(q1 - 3 * max(q3 - q1, 1.0), min(0.0, q1) - 1.0)
    for label, e in entries.items():
        color, ls, marker = STYLE.get(label, ("tab:cyan", "-", "s"))
        curve = e.get("curve") or []
        for ax, split in zip(axes, ("val", "test")):
            final = (e.get(split) or [None])[0]
            name = label if low is None or not _num(final) or final >= low else \
                f"{label} (off scale: {final:+.1f})"
            if label in REFERENCE_LINES:
                if _num(final):
                    ax.axhline(final, color=color, ls=ls, lw=1.0, label=name)
                continue
            pts = [(p["compute"], p[split][0], p[split][1]) for p in curve
                   if p.get(split) and _num(p[split][0])]
            if not pts:
                continue
            xs = [p[0] for p in pts]
            ys = [p[1] for p in pts]
            sd = [p[2] if _num(p[2]) else 0.0 for p in pts]
            lw = 2.2 if label == "random_tree" else 1.6
            # a dot where the search had its first result, an error bar where it stopped
            ax.step(xs, ys, where="post", color=color, ls=ls, lw=lw, marker=marker, ms=4,
                    markevery=[len(xs) - 1], label=name)
            ax.plot(xs[:1], ys[:1], marker=".", color=color, ls="none")
            ax.errorbar(xs[-1:], ys[-1:], yerr=sd[-1:], color=color, capsize=2, lw=0.8,
                        ls="none")
            if len(xs) > 1:
                ax.fill_between(xs, [y - d for y, d in zip(ys, sd)],
                                [y + d for y, d in zip(ys, sd)], step="post", color=color,
                                alpha=0.10)
    for ax, split in zip(axes, ("validation", "test")):
        if low is not None:
            ax.set_ylim(bottom=low)
        if _num(budget):
            ax.axvline(budget, color="black", lw=0.8, alpha=0.5)
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
        ax.set_xlabel("compute spent, hard-sharing trainings (log scale)")
        ax.set_ylabel(f"{split} Δ_MTL % (best validation trial so far)")
        ax.grid(alpha=0.3)
    axes[0].set_title(f"{key}: best so far (mean ± std, {len(s.get('seeds', []))} seeds; "
                      "vertical line: the budget)", fontsize=9)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right center", fontsize=7)
    return plots.save(fig, images, f"quality_{tag}{key}")


def _dataset(key: str, s: Mapping[str, Any], images: Path | None, rel_dir: str,
             tag: str = "") -> list[str]:
    st = s.get("settings", {})
    planted = bool(s.get("planted"))
    e = s["entries"]
    noise = s.get("label_noise")
    lines = [f"### {s.get('title') or key}", "",
             f"Space `{st.get('space')}` {json.dumps(st.get('space_kwargs') or {})}, dataset "
             f"arguments `{json.dumps(st.get('dataset_kwargs') or {})}`, every candidate "
             f"trained with `{json.dumps(st.get('budget') or {})}`; compute budget per search "
             f"**{st.get('compute')}** (one hard-sharing training = "
             f"{s.get('unit_macs', 0):.3g} training MACs), at most {st.get('trials')} trials; "
             f"seeds {s.get('seeds')}."
             + (f" Label noise: {noise:.1%} of the training labels differ from the noise-free "
                "ones." if _num(noise) else "")
             + (f" {s['note']}" if s.get("note") else ""), ""]
    versions = [json.loads(v) for v in s.get("code") or []]
    if len(versions) > 1:
        lines += [f"**The code changed during this run**: the (dataset, seed) processes saw "
                  f"{len(versions)} versions of the package and plugins ("
                  + ", ".join(f"commit {v.get('commit')} sources {v.get('sources')}"
                              for v in versions)
                  + "), so seeds may differ by more than their seed.", ""]
    elif versions:
        lines += [f"Code: commit {versions[0].get('commit')}, sources digest "
                  f"{versions[0].get('sources')} (the same in every seed).", ""]
    if planted:
        lines += [f"Planted groups: {' '.join('{' + ', '.join(g) + '}' for g in s['planted'])}; "
                  f"the oracle shares blocks 0..{(st.get('oracle_depth') or 0) - 1} and branches "
                  f"into them at block {st.get('oracle_depth')}.", ""]
        rows = [[f"`{p['a']}` − `{p['b']}`", _diff(p),
                 "**yes**" if p.get("better") else "no"] for p in s.get("oracle", [])]
        pays = _pays(s)
        lines += ["**Oracle row** (test Δ_MTL, paired per seed: mean ± std of the differences, "
                  "wins out of seeds):", "",
                  table(["comparison", "paired difference", "beyond the noise"], rows, "lrl"), "",
                  ("Grouping **pays** here: the planted tree beats hard sharing and the mixed "
                   "tree beyond the paired noise." if pays else
                   "Grouping does **not** pay beyond the paired noise here."), ""]
    header = ["contender", "role", "trials", "compute", "val Δ_MTL %", "test Δ_MTL %", "params"]
    if planted:
        header.append("ARI")
    order = sorted(e, key=lambda k: -(e[k]["test"][0] if _num(e[k]["test"][0]) else -math.inf))
    lines += ["Each search's best validation trial at the end of its budget (mean ± std over "
              "seeds; compute in hard-sharing trainings, what the search spent: its last trial "
              "may cross the budget):", "",
              table(header, [_row(k, e[k], planted) for k in order],
                    "ll" + "r" * (len(header) - 2)), ""]
    if images is not None:
        lines.append(plots.image_link(rel_dir, plot(key, s, images, tag),
                            f"{key}: anytime curves"))
    cps = s.get("checkpoints", [])
    if cps:
        searched = [k for k in order if k not in REFERENCE_LINES]
        def cell(k: str, c: float) -> str:
            at = e[k]["at"].get(f"{c:g}", {})
            done = at.get("defined", 0)
            if not done:
                return "—"
            return _pm(at.get("test")) + ("" if done == e[k]["n"] else f" ({done}/{e[k]['n']} seeds)")

        rows = [[f"`{k}`", *[cell(k, c) for c in cps]] for k in searched]
        if rows:
            lines += ["Anytime: test Δ_MTL of the best validation trial finished within each "
                      "compute (hard-sharing trainings; a search stopped at its budget keeps "
                      "its last value; seeds with no trial finished yet are left out, and "
                      "counted):", "",
                      table(["contender", *[f"<= {c:g}x" for c in cps]], rows), ""]
    claim_rows = []
    for name, pairs in s.get("claims", {}).items():
        for p in pairs:
            claim_rows.append([name, f"`{p['a']}` − `{p['b']}`", _diff(p),
                               "**yes**" if p.get("better") else "no"])
    if claim_rows:
        lines += ["Papers' claims at equal compute (test Δ_MTL, paired per seed):", "",
                  table(["claim", "comparison", "paired difference", "beats beyond the noise"],
                        claim_rows, "llrl"), ""]
    vs = [p for p in s.get("versus_random_tree", []) if p.get("n")]
    if vs:
        lines += ["Against `random_tree` (random search over trees, the floor), paired: "
                  + "; ".join(f"`{p['a']}` {_diff(p)}" for p in vs) + ".", ""]
    return lines


def markdown(data: Mapping[str, Any], images: Path | None = None,
             rel_dir: str = "images", image_tag: str = "",
             note: str = "", intro: bool = True) -> str:
    """The ``## Search quality`` section of docs/results.md from
    ``bench_search_quality.py --json`` output: targets, then per dataset the oracle row, the
    contenders, the anytime curves (picture and table) and the paired comparisons.

    Args:
        data: The JSON; ``images``: where to draw the curves (``None``: no pictures).
        rel_dir: The pictures' folder as linked from the page.
        image_tag: Inserted in the pictures' names (``bench_quality_<tag><dataset>.png``), so
            two runs rendered on one page keep their own pictures.
        note: A paragraph under the heading (where the figures come from).
        intro: Explain the method (off for a second run on the same page).
    """
    found = checks(data)
    targets = [t for t, _ in found]
    sets = data.get("datasets", {})
    m = data.get("machine", {})
    wall = data.get("wall_seconds")
    lines = ["## Search quality", ""] + ([note, ""] if note else [])
    explained = [
        "Does each strategy find what there is to find, and at what compute? Every contender "
        "searched each dataset with the **same compute budget** (training MACs, counted by "
        "`mtlsearch.engine.compute`: batch rows x forward MACs per sample over every optimizer step "
        "of every network a search trains — candidates, supernets, policy phases, affinity "
        "models; a search starts no trial once it has spent the budget, so its last trial may "
        "cross it). Each search keeps its best *validation* trial; the tables give that "
        "trial's validation and test Δ_MTL. All contenders of one seed share that seed's "
        "single-task reference, so they are compared **seed by seed**: a paired difference is "
        "the mean ± std of the per-seed differences of test Δ_MTL with the wins out of seeds, "
        "and it is *beyond the noise* when its mean is more than one standard error "
        "(std / √seeds) from zero (`mtlsearch.stats`). Reference contenders: `oracle` (the "
        "planted grouping tree), `mixed` (the same shape with the tasks dealt round-robin "
        "across groups), `single_task` (the reference itself: Δ_MTL 0, its compute that of "
        "training it), `hard_sharing`, `random_tree` (random search over trees) and "
        "`matched_random_tree` (random trees of exactly the shape `affinity_tree` found in that "
        "seed, given the compute it spent). Variants: `task_routing_sigma0` / `_sigma1` (σ "
        "fixed), `gumbel_policy_random2` (AdaShare's Random #2: the same number of skipped "
        "blocks per task, at random blocks).", ""]
    lines += explained if intro else []
    lines += [
        f"Command: `{data.get('command')}`; {m.get('cpu')}, torch {m.get('torch')}; "
        f"{data.get('jobs')} (dataset, seed) processes at a time, {data.get('threads')} torch "
        f"thread(s) each"
        + (f"; {wall / 60:.1f} min wall, {data.get('cpu_seconds', 0) / 60:.1f} min CPU"
           if _num(wall) else "") + "."
        + (" **Quick settings** (the suite's smoke run): smaller data and budgets, few seeds; "
           "the figures exercise the code, they do not settle the targets." if data.get("quick")
           else ""), "",
        "### Targets", "",
    ]
    lines += [f"- {t.what}: target {t.target}, measured {t.figure_text()} — {t.status}"
              for t in targets]
    unmet = [(t, why) for t, why in found if t.met is False]
    if unmet:
        lines += ["", f"**{len(unmet)} of {len(targets)} targets are not met.** Why, from the "
                  "figures (all of them are in the tables below):", ""]
        lines += [f"- *{t.what}*: {why}." for t, why in unmet if why]
    lines.append("")
    for key, s in sets.items():
        lines += _dataset(key, s, images, rel_dir, image_tag)
    if not sets:
        lines += [not_generated("no dataset finished"), ""]
    return "\n".join(lines).rstrip() + "\n"
