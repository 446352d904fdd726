"""The report's figures. Each is two functions: one gathers the plot's data into a small typed record (testable
without a figure), one draws it; the figure function runs both (as Optuna's ``_get_pareto_front_info`` and
``_get_pareto_front_plot``).

- ``pareto_figure``: every candidate, trials by divergence with each one's path through the points along its training,
  derived candidates apart, the frontier, each divergence's own (``pareto_info``, ``draw_pareto``).
- ``reward_kl_figure``: reward (the first objective that is not KL) against KL to the reference policy, the base at
  KL 0, the KL budget (``reward_kl_info``, ``draw_reward_kl``).
- ``reward_histograms``: sample rewards of frontier models over the base policy's (``histogram_info``,
  ``draw_histograms``).
- ``hypervolume_figure``: search progress, one curve per experiment (``hypervolume_info``, ``draw_hypervolume``).
- ``interactive_pareto``: the plotly frontier with each trial's config on hover (``interactive_info``,
  ``draw_interactive``).
- ``comparison_figure``: two experiments' frontiers on one plot (``comparison_info``, ``draw_comparison``).

The first objective is on y, the second on x; each axis says whether higher or lower is better. Infeasible trials
(``experiment.feasible_mask``) are drawn hollow (marker face "none"; plotly's "-open" symbols),
under one legend entry, ``HOLLOW``; no frontier holds them. Points along training are drawn smaller than trials' final
models, in their trial's marker; derived candidates (weight arithmetic, no divergence of their own) with ``DERIVED``'s
marker, grey.
"""

from __future__ import annotations

import dataclasses
import html
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from alignray.report.experiment import (
    BASE,
    DERIVED,
    KL,
    POINT,
    TRIAL,
    Experiment,
    feasible_mask,
    group_frontier,
    group_rows,
    groups,
    hypervolume_history,
    reference_point,
    search_steps,
    selected,
)
from alignray.report.formatting import group_name, kind, label, num, params
from alignray.report.stats import CONFIDENCE, Interval
from alignray.sweep.objectives import Objective

__all__ = [
    "HOLLOW",
    "ComparisonInfo",
    "HistogramInfo",
    "HypervolumeInfo",
    "InteractiveInfo",
    "ParetoGroup",
    "ParetoInfo",
    "Points",
    "RewardKLInfo",
    "TrainingPath",
    "TrialGroup",
    "comparison_figure",
    "comparison_info",
    "draw_comparison",
    "draw_histograms",
    "draw_hypervolume",
    "draw_interactive",
    "draw_pareto",
    "draw_reward_kl",
    "histogram_info",
    "hypervolume_figure",
    "hypervolume_info",
    "interactive_info",
    "interactive_pareto",
    "pareto_figure",
    "pareto_info",
    "reward_histograms",
    "reward_kl_figure",
    "reward_kl_info",
    "save_png",
]

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "h", "<", ">")
LINESTYLES = ("-", "--", "-.", ":", (0, (5, 1)), (0, (3, 1, 1, 1)), (0, (1, 1)), (0, (5, 3)), "-", "--")
SYMBOLS = ("circle", "square", "triangle-up", "diamond", "triangle-down", "cross", "x", "hexagon", "star-square")
"""Plotly's markers, one per group of trials."""
DASHES = ("solid", "dash", "dot")
"""Plotly's frontier lines, one per experiment."""
HOLLOW = "hollow: infeasible (violates a constraint)"
"""The legend entry of the hollow markers, present when some trial is infeasible."""
DERIVED_LABEL = "derived (weight arithmetic)"
"""The legend entry of the derived candidates."""
DERIVED_MARKER, DERIVED_COLOR, DERIVED_SYMBOL = "X", "dimgrey", "x"
"""How derived candidates are drawn: matplotlib's marker and colour, plotly's symbol."""
POINTS_LABEL = "points along training (small), each trial's path"
"""The legend entry of the points along training and the paths through them."""


@dataclasses.dataclass(frozen=True)
class Points:
    """Trials as points of a plot (the second objective on x and the first on y unless told), the text written beside
    each (if any) and whether each is feasible (drawn filled) or not (drawn hollow)."""

    trials: tuple[str, ...]
    x: np.ndarray
    y: np.ndarray
    labels: tuple[str, ...] = ()
    feasible: tuple[bool, ...] = ()

    @property
    def filled(self) -> np.ndarray:
        """Which points are drawn filled (feasible), shape (n,)."""
        return np.asarray(self.feasible, dtype=bool) if self.feasible else np.ones(len(self.trials), dtype=bool)

    @property
    def infeasible(self) -> tuple[str, ...]:
        """The trials drawn hollow."""
        return tuple(t for t, f in zip(self.trials, self.filled, strict=True) if not f)


def _points(rows: pd.DataFrame, x: str, y: str, labels: tuple[str, ...] = ()) -> Points:
    feasible = tuple(bool(f) for f in feasible_mask(rows))
    return Points(tuple(rows["trial"]), rows[x].to_numpy(), rows[y].to_numpy(), labels, feasible)


def _no_points() -> Points:
    return Points((), np.empty(0), np.empty(0))


def _scatter(ax, points: Points, marker: str, color, label: str, gid: str | None = None, **style) -> None:
    """Feasible points filled (under ``label``, with ``gid``), infeasible ones hollow (gid "infeasible", no legend
    entry)."""
    filled = points.filled
    (line,) = ax.plot(points.x[filled], points.y[filled], marker=marker, color=color, linestyle="none", label=label,
                      **style)  # fmt: skip
    line.set_gid(gid)
    if not filled.all():
        (hollow,) = ax.plot(points.x[~filled], points.y[~filled], marker=marker, color=color, linestyle="none",
                            markerfacecolor="none", **style)  # fmt: skip
        hollow.set_gid("infeasible")


def _hollow_legend(ax, groups: Sequence[Points]) -> None:
    """One legend entry for the hollow markers, when some point is hollow."""
    if any(not points.filled.all() for points in groups):
        ax.plot([], [], marker="o", linestyle="none", markerfacecolor="none", markeredgecolor="grey", label=HOLLOW)


def save_png(fig, path: Path) -> Path:
    """Write ``fig`` as a PNG at ``path`` and close it."""
    import matplotlib.pyplot as plt

    fig.savefig(path, format="png")
    plt.close(fig)
    return path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# --- the Pareto figure ------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TrainingPath:
    """One Tune trial's path: its finished points along training and its final model (``candidates``), in step
    order, at their ``x`` and ``y``."""

    trial: str
    candidates: tuple[str, ...]
    steps: np.ndarray
    x: np.ndarray
    y: np.ndarray


@dataclasses.dataclass(frozen=True)
class ParetoGroup:
    """One divergence (and loss type): its finished trials' final models (infeasible ones flagged), its own frontier
    of feasible trained candidates (trials and points) by x, the finished points along its trials' training, and
    each trial's path through them (trials with at least one point)."""

    name: str
    trials: Points
    frontier: Points
    points: Points = dataclasses.field(default_factory=_no_points)
    paths: tuple[TrainingPath, ...] = ()


def _paths(rows: pd.DataFrame, x: str, y: str) -> tuple[TrainingPath, ...]:
    """The path of each Tune trial in ``rows`` (trained candidates) that has more than one candidate, in step order
    (the final model last when its step is unknown), in the order the trials appear."""
    found = []
    for trial, path in rows.groupby("tune_trial", sort=False):
        if len(path) < 2:
            continue
        path = path.assign(_final=path["kind"] == TRIAL).sort_values(["step", "_final"], na_position="last")
        found.append(TrainingPath(str(trial), tuple(path["trial"]), path["step"].to_numpy(dtype=float),
                                  path[x].to_numpy(), path[y].to_numpy()))  # fmt: skip
    return tuple(found)


@dataclasses.dataclass(frozen=True)
class ParetoInfo:
    """What ``draw_pareto`` draws: the second objective on ``x``, the first on ``y``. ``frontier``: the overall
    frontier (``Experiment.frontier``, every kind of candidate) by x, labelled with β (and α; a point's step, a derived
    candidate's recipe: ``params``); ``error_bars``: (x, y) intervals of the frontier candidates that have both."""

    x: Objective
    y: Objective
    base: tuple[float, float]
    groups: tuple[ParetoGroup, ...]
    frontier: Points
    error_bars: dict[str, tuple[Interval, Interval]]
    shifts: tuple[tuple[float, float, float, float], ...] = ()
    """Confirmed frontier points: (search x, search y, confirmed x, confirmed y), each drawn as a dotted line."""
    confirmed_base: tuple[float, float] | None = None
    """The base policy on the confirmation prompts, the confirmed frontier's own anchor (a hollow star)."""
    derived: Points = dataclasses.field(default_factory=_no_points)
    """The finished derived candidates (infeasible ones flagged), labelled with their recipe (``params``)."""
    recipes: tuple[tuple[float, float, float, float], ...] = ()
    """One-parent derived candidates: (parent x, parent y, derived x, derived y), each drawn as a dotted line."""


def pareto_info(experiment: Experiment, intervals: dict[str, dict[str, Interval]] | None = None) -> ParetoInfo:
    """Gather the Pareto figure's data: the trained candidates by group (final models, points along training, each
    trial's path), each group's frontier, the derived candidates and their one parent, the overall frontier and the
    intervals of its points where ``intervals`` has finite ones."""
    intervals = intervals or {}
    first, second = experiment.objectives
    x, y = second.metric, first.metric
    found_groups = []
    for group in groups(experiment):
        rows = group_rows(experiment, group)
        found_groups.append(ParetoGroup(
            group_name(group),
            _points(rows[rows["kind"] == TRIAL], x, y),
            _points(group_frontier(experiment, group).sort_values(x), x, y),
            _points(rows[rows["kind"] == POINT], x, y),
            _paths(rows, x, y),
        ))  # fmt: skip
    finished = experiment.finished
    derived = finished[finished["kind"] == DERIVED]
    by_id = finished.set_index("trial")
    recipes = []
    for _, row in derived.iterrows():
        parents = row["parents"]
        if parents is not None and len(parents) == 1 and parents[0] in by_id.index:
            parent = by_id.loc[parents[0]]
            recipes.append((float(parent[x]), float(parent[y]), float(row[x]), float(row[y])))
    front = experiment.frontier.sort_values(x)
    several_losses = experiment.finished["loss_type"].nunique() > 1
    error_bars = {}
    for _, row in front.iterrows():
        found = intervals.get(row["trial"], {})
        if x in found and y in found and math.isfinite(found[x].low) and math.isfinite(found[y].low):
            error_bars[row["trial"]] = (found[x], found[y])
    labels = tuple(params(row, several_losses) for _, row in front.iterrows())
    base = (experiment.base[x], experiment.base[y])
    shifts = tuple(
        (float(row[f"search/{x}"]), float(row[f"search/{y}"]), float(row[x]), float(row[y]))
        for _, row in front.iterrows() if f"search/{x}" in row and f"search/{y}" in row
    )  # fmt: skip
    confirmed = experiment.confirmed_base if experiment.confirmed is not None else None
    confirmed_base = None if confirmed is None else (confirmed[x], confirmed[y])
    derived_labels = tuple(params(row) for _, row in derived.iterrows())
    return ParetoInfo(second, first, base, tuple(found_groups), _points(front, x, y, labels), error_bars, shifts,
                      confirmed_base, _points(derived, x, y, derived_labels), tuple(recipes))  # fmt: skip


def _annotations(points: Points) -> list[tuple[float, float, str]]:
    """The frontier's labels, one per position: candidates at the same place share one label, "(+n)" naming how
    many more sit there."""
    at: dict[tuple[float, float], list[str]] = {}
    for x, y, text in zip(points.x, points.y, points.labels, strict=True):
        at.setdefault((float(x), float(y)), []).append(text)
    return [(x, y, texts[0] + (f" (+{len(texts) - 1})" if len(texts) > 1 else "")) for (x, y), texts in at.items()]


def draw_pareto(info: ParetoInfo):
    """Two panels, the second objective on x and the first on y. Left: every finished trial marked by divergence
    (shape and colour; infeasible ones hollow), the points along its training smaller (gid "point") and its path
    through them a thin line (gid "path"), derived candidates grey crosses (gid "derived") with a dotted line to a
    single parent (gid "recipe"), the frontier drawn (its line has gid "frontier") and circled, the base policy a
    star, frontier points labelled (once per position), intervals as error bars. Right: each divergence's own
    frontier."""
    import matplotlib

    plt = _pyplot()
    colors = matplotlib.colormaps["tab10"].colors
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.5), dpi=100, sharex=True, sharey=True)
    for ax in (left, right):
        ax.plot(*info.base, marker="*", markersize=16, color="black", linestyle="none", label="base SFT policy",
                zorder=5)  # fmt: skip
        ax.set_xlabel(info.x.title)
        ax.grid(alpha=0.3)
    if info.confirmed_base is not None:  # the confirmed frontier's anchor: the base on the same held-out prompts
        left.plot(*info.confirmed_base, marker="*", markersize=16, markerfacecolor="white", markeredgecolor="black",
                  linestyle="none", label="base SFT policy, confirmation prompts", zorder=5)  # fmt: skip
    left.set_ylabel(info.y.title)
    for i, group in enumerate(info.groups):
        style = {"marker": MARKERS[i % len(MARKERS)], "linestyle": LINESTYLES[i % len(LINESTYLES)],
                 "color": colors[i % 10]}  # fmt: skip
        for path in group.paths:
            left.plot(path.x, path.y, color=style["color"], linewidth=0.7, alpha=0.5, zorder=1, gid="path")
        _scatter(left, group.trials, style["marker"], style["color"], group.name, markersize=7, alpha=0.8)
        if len(group.points.trials):
            _scatter(left, group.points, style["marker"], style["color"], "_nolegend_", gid="point", markersize=4,
                     alpha=0.8)  # fmt: skip
        right.plot(group.frontier.x, group.frontier.y, label=group.name, markersize=8, **style)
    if any(len(group.points.trials) for group in info.groups):
        left.plot([], [], marker="o", markersize=4, color="grey", linewidth=0.7, alpha=0.7, label=POINTS_LABEL)
    for x0, y0, x1, y1 in info.recipes:  # parent -> derived
        left.plot([x0, x1], [y0, y1], color=DERIVED_COLOR, linestyle=":", linewidth=0.7, alpha=0.6, zorder=1,
                  gid="recipe")  # fmt: skip
    if len(info.derived.trials):
        _scatter(left, info.derived, DERIVED_MARKER, DERIVED_COLOR, DERIVED_LABEL, gid="derived", markersize=6,
                 alpha=0.8)  # fmt: skip
    front = info.frontier
    (line,) = left.plot(front.x, front.y, color="black", linewidth=1.5, linestyle="-", label="frontier", zorder=4)
    line.set_gid("frontier")
    left.plot(front.x, front.y, marker="o", markersize=13, markerfacecolor="none", markeredgecolor="black",
              linestyle="none", zorder=4)  # fmt: skip
    for x0, y0, x1, y1 in info.shifts:  # search figure -> confirmed figure
        left.plot([x0, x1], [y0, y1], color="grey", linestyle=":", linewidth=1, zorder=3)
    for trial, x, y in zip(front.trials, front.x, front.y, strict=True):
        if trial in info.error_bars:
            dx, dy = info.error_bars[trial]
            left.errorbar(x, y, xerr=[[x - dx.low], [dx.high - x]], yerr=[[y - dy.low], [dy.high - y]], color="grey",
                          alpha=0.5, linewidth=1, zorder=2)  # fmt: skip
    for x, y, text in _annotations(front):
        left.annotate(text, (x, y), textcoords="offset points", xytext=(7, 6), fontsize=8)
    _hollow_legend(left, [info.derived, *(p for group in info.groups for p in (group.trials, group.points))])
    confirmed = " confirmed" if info.shifts else ""
    every = "candidate" if len(info.derived.trials) or any(group.paths for group in info.groups) else "trial"
    left.set_title(f"every {every} and the{confirmed} frontier (circled); bars: {CONFIDENCE:.0%} intervals")
    right.set_title("the frontier of each divergence")
    left.legend(fontsize=8, loc="best")
    right.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def pareto_figure(experiment: Experiment, intervals: dict[str, dict[str, Interval]] | None = None):
    """The Pareto figure of ``experiment`` (``draw_pareto`` of ``pareto_info``)."""
    return draw_pareto(pareto_info(experiment, intervals))


# --- reward against KL ------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TrialGroup:
    """One divergence (and loss type) and its finished trained candidates (trials and points)."""

    name: str
    trials: Points


@dataclasses.dataclass(frozen=True)
class RewardKLInfo:
    """What ``draw_reward_kl`` draws: each group's finished trials with KL (``kl``) on x and ``y``, the first objective
    that is not KL (usually reward), on y, infeasible ones flagged; the base policy at KL 0; the KL budget (None: the
    sweep had none)."""

    kl: str
    y: Objective
    base: tuple[float, float]
    groups: tuple[TrialGroup, ...]
    budget: float | None
    derived: Points = dataclasses.field(default_factory=_no_points)
    """The finished derived candidates (infeasible ones flagged)."""


def reward_kl_info(experiment: Experiment) -> RewardKLInfo:
    """Gather the reward–KL panel: every finished trained candidate by group, the derived ones apart, the base policy
    (KL 0 to itself) and the sweep's KL budget, its ``kl/ref`` constraint. With kl/ref an objective, the other one is
    on y: the panel is then the Pareto figure's plane with the budget drawn."""
    y = next(o for o in experiment.objectives if o.metric != KL)
    found: list[TrialGroup] = []
    derived = _no_points()
    if KL in experiment.results.columns:
        found = [TrialGroup(group_name(g), _points(group_rows(experiment, g), KL, y.metric))
                 for g in groups(experiment)]  # fmt: skip
        derived = _points(experiment.finished[experiment.finished["kind"] == DERIVED], KL, y.metric)
    base = (0.0, float(experiment.base.get(y.metric, math.nan)))
    return RewardKLInfo(KL, y, base, tuple(found), experiment.constraints.get(KL), derived)


def draw_reward_kl(info: RewardKLInfo):
    """KL on x and the y objective (usually reward) on y: every finished trained candidate marked by divergence
    (infeasible ones hollow), derived candidates grey crosses (gid "derived"), the base policy a star at KL 0, the KL
    budget a vertical dashed line (gid "budget")."""
    import matplotlib

    plt = _pyplot()
    colors = matplotlib.colormaps["tab10"].colors
    fig, ax = plt.subplots(figsize=(8, 5), dpi=100)
    ax.plot(*info.base, marker="*", markersize=16, color="black", linestyle="none", label="base SFT policy", zorder=5)
    for i, group in enumerate(info.groups):
        _scatter(ax, group.trials, MARKERS[i % len(MARKERS)], colors[i % 10], group.name, markersize=7, alpha=0.8)
    if len(info.derived.trials):
        _scatter(ax, info.derived, DERIVED_MARKER, DERIVED_COLOR, DERIVED_LABEL, gid="derived", markersize=6,
                 alpha=0.8)  # fmt: skip
    if info.budget is not None:
        line = ax.axvline(info.budget, color="firebrick", linestyle="--", label=f"KL budget {num(info.budget)}")
        line.set_gid("budget")
    _hollow_legend(ax, [info.derived, *(group.trials for group in info.groups)])
    ax.set_xlabel(f"{info.kl} (KL to the reference policy, nats per completion)")
    ax.set_ylabel(info.y.title)
    ax.set_title(f"{info.y.metric} vs KL to the reference policy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def reward_kl_figure(experiment: Experiment):
    """The reward–KL panel of ``experiment`` (``draw_reward_kl`` of ``reward_kl_info``)."""
    return draw_reward_kl(reward_kl_info(experiment))


# --- reward histograms ------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RewardPanel:
    """One model's sample rewards, its legend entry (with the mean) and the mean."""

    label: str
    rewards: np.ndarray
    mean: float


@dataclasses.dataclass(frozen=True)
class HistogramInfo:
    """What ``draw_histograms`` draws: one panel per selected frontier model (at least one), each over the base
    policy's rewards when they were kept, on common ``bins``."""

    bins: np.ndarray
    base: RewardPanel | None
    panels: tuple[RewardPanel, ...]


def _panel(name: str, rewards: pd.Series) -> RewardPanel:
    mean = float(rewards.mean())
    return RewardPanel(f"{name} (mean {mean:.3g})", rewards.to_numpy(), mean)


def histogram_info(experiment: Experiment, loaded: dict[str, pd.DataFrame]) -> HistogramInfo:
    """Gather the reward histograms: the selected frontier models (``selected``) whose samples are in ``loaded``,
    the base policy's rewards, and 30 bins over all of them."""
    chosen = [row for _, row in selected(experiment).iterrows() if row["trial"] in loaded]
    base = loaded.get(BASE)
    every = [loaded[r["trial"]]["reward"] for r in chosen] + ([base["reward"]] if base is not None else [])
    bins = np.histogram_bin_edges(np.concatenate([np.asarray(v, float) for v in every]) if every else [0, 1], 30)
    panels = tuple(_panel(label(row), loaded[row["trial"]]["reward"]) for row in chosen)
    return HistogramInfo(bins, None if base is None else _panel("base SFT", base["reward"]), panels)


def draw_histograms(info: HistogramInfo):
    """One panel per model: its sample rewards (outline) over the base policy's (grey), means as vertical lines."""
    plt = _pyplot()
    count = max(len(info.panels), 1)
    fig, axes = plt.subplots(count, 1, figsize=(8, 2.4 * count + 0.6), dpi=100, sharex=True, squeeze=False)
    for ax, panel in zip(axes[:, 0], info.panels or (None,), strict=True):
        if info.base is not None:
            ax.hist(info.base.rewards, bins=info.bins, color="lightgrey", hatch="//", edgecolor="grey",
                    label=info.base.label)  # fmt: skip
            ax.axvline(info.base.mean, color="grey", linestyle=":")
        if panel is not None:
            ax.hist(panel.rewards, bins=info.bins, histtype="step", color="black", linewidth=2, label=panel.label)
            ax.axvline(panel.mean, color="black", linestyle="--")
        ax.set_ylabel("samples")
        ax.legend(fontsize=8, loc="upper left")
    axes[-1, 0].set_xlabel("reward of a sample")
    fig.suptitle("reward distributions: base policy vs frontier models (dashed/dotted: means)")
    fig.tight_layout()
    return fig


def reward_histograms(experiment: Experiment, loaded: dict[str, pd.DataFrame]):
    """One panel per selected frontier model: its sample rewards (outline) over the base policy's (grey)."""
    return draw_histograms(histogram_info(experiment, loaded))


# --- search progress --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class HypervolumeCurve:
    """One search's hypervolume after each trial (creation order, its points with it) and which trials errored;
    with ``derived``, a last step adds the derived candidates (``experiment.search_steps``)."""

    name: str
    steps: np.ndarray
    values: np.ndarray
    errored: np.ndarray
    derived: bool = False


@dataclasses.dataclass(frozen=True)
class HypervolumeInfo:
    """What ``draw_hypervolume`` draws: one curve per experiment."""

    curves: tuple[HypervolumeCurve, ...]


def hypervolume_info(
    experiments: dict[str, Experiment], reference: tuple[float, float] | None = None
) -> HypervolumeInfo:
    """Gather each experiment's hypervolume history against ``reference`` (default: each one's own point)."""
    curves = []
    for name, experiment in experiments.items():
        steps, values = hypervolume_history(experiment, reference or reference_point(experiment))
        made = search_steps(experiment)
        errored = np.array([bool((rows["status"] != "ok").all()) for rows in made], dtype=bool)
        derived = bool(made) and bool((made[-1]["kind"] == DERIVED).all())
        curves.append(HypervolumeCurve(name, steps, np.asarray(values, dtype=np.float64), errored, derived))
    return HypervolumeInfo(tuple(curves))


def draw_hypervolume(info: HypervolumeInfo):
    """Search progress: a step curve (distinct marker and line) per experiment, errored trials as red crosses, the
    step that adds the derived candidates a grey cross (gid "derived")."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4), dpi=100)
    for i, curve in enumerate(info.curves):
        ax.step(curve.steps, curve.values, where="post", marker=MARKERS[i % len(MARKERS)], linestyle=LINESTYLES[i],
                label=curve.name)  # fmt: skip
        if curve.errored.any():
            ax.plot(curve.steps[curve.errored], curve.values[curve.errored], "x", color="red", markersize=10,
                    label=f"{curve.name}: errored trial")  # fmt: skip
        if curve.derived:
            ax.plot(curve.steps[-1:], curve.values[-1:], marker=DERIVED_MARKER, color=DERIVED_COLOR, markersize=10,
                    linestyle="none", label=f"{curve.name}: with the derived candidates", gid="derived")  # fmt: skip
    derived = " (last: the derived candidates)" if any(curve.derived for curve in info.curves) else ""
    ax.set_xlabel(f"trials finished (creation order){derived}")
    ax.set_ylabel("hypervolume")
    ax.set_title("search progress: hypervolume of the frontier so far")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def hypervolume_figure(experiments: dict[str, Experiment], reference: tuple[float, float] | None = None):
    """Search progress: the hypervolume after each trial, one curve (distinct marker and line) per experiment."""
    return draw_hypervolume(hypervolume_info(experiments, reference))


# --- the interactive frontier -----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Trace:
    """One plotly trace: ``kind`` "trials" (markers, ``style`` indexes ``SYMBOLS``: a group's trained candidates),
    "derived" (markers, ``DERIVED_SYMBOL``), "path" (a trial's path through its points, a thin line), "frontier" (a
    line, ``style`` indexes ``DASHES``) or "base" (a star); ``hover``: one HTML-escaped text per point (none for a
    line); ``feasible``: per point of "trials" and "derived", False drawn hollow (empty: all feasible); ``small``: per
    point, True for a point along training, drawn smaller (empty: none)."""

    name: str
    kind: str
    x: np.ndarray
    y: np.ndarray
    hover: tuple[str, ...]
    style: int = 0
    feasible: tuple[bool, ...] = ()
    small: tuple[bool, ...] = ()

    @property
    def symbols(self) -> list[str]:
        """Plotly's marker symbol of each point of "trials" (the group's) or "derived", "-open" (hollow) where
        infeasible."""
        symbol = DERIVED_SYMBOL if self.kind == "derived" else SYMBOLS[self.style % len(SYMBOLS)]
        return [symbol if f else f"{symbol}-open" for f in (self.feasible or (True,) * len(self.x))]

    @property
    def sizes(self) -> list[int]:
        """Plotly's marker size of each point: 6 for a point along training, else 10."""
        return [6 if s else 10 for s in (self.small or (False,) * len(self.x))]


@dataclasses.dataclass(frozen=True)
class InteractiveInfo:
    """What ``draw_interactive`` draws: the axes' titles and the traces in drawing order."""

    x_title: str
    y_title: str
    traces: tuple[Trace, ...]


def _hover(row: pd.Series) -> str:
    keys = ["trial", "divergence", "loss_type", "beta", "alpha", "learning_rate"]
    metrics = [c for c in row.index if "/" in c and not c.startswith(("train/", "time/", "constraint/", "worker/"))]
    parts = [f"{k}: {num(row[k])}" for k in keys + metrics if k in row.index and num(row[k]) != ""]
    if row.get("kind") in (POINT, DERIVED):
        parts.insert(1, kind(row))
    violations = row.get("violations")
    if isinstance(violations, str) and violations:
        parts.insert(1, f"infeasible, violates: {violations}")
    return "<br>".join(html.escape(p) for p in parts)


def interactive_info(experiments: dict[str, Experiment]) -> InteractiveInfo:
    """Gather the interactive frontier: per experiment, each group's finished trained candidates with their hover
    text (a point's names its step and trial, an infeasible candidate's its violations), feasibility and size (points
    along training small), each trial's path through its points, the derived candidates (hover: the recipe), the
    frontier by x (the second objective) and the base policy."""
    traces = []
    for k, (name, experiment) in enumerate(experiments.items()):
        prefix = f"{name}: " if len(experiments) > 1 else ""
        x, y = experiment.objectives[1].metric, experiment.objectives[0].metric
        for i, group in enumerate(groups(experiment)):
            rows = group_rows(experiment, group)
            for path in _paths(rows, x, y):
                traces.append(Trace(f"{prefix}path of {path.trial}", "path", path.x, path.y, (), i))
            hover = tuple(_hover(r) for _, r in rows.iterrows())
            trace_name = prefix + group_name(group)
            feasible = tuple(bool(f) for f in feasible_mask(rows))
            small = tuple(bool(s) for s in rows["kind"] == POINT)
            traces.append(Trace(trace_name, "trials", rows[x].to_numpy(), rows[y].to_numpy(), hover, i, feasible,
                                small))  # fmt: skip
        derived = experiment.finished[experiment.finished["kind"] == DERIVED]
        if len(derived):
            hover = tuple(_hover(r) for _, r in derived.iterrows())
            feasible = tuple(bool(f) for f in feasible_mask(derived))
            traces.append(Trace(prefix + DERIVED_LABEL, "derived", derived[x].to_numpy(), derived[y].to_numpy(),
                                hover, 0, feasible))  # fmt: skip
        single = len(experiments) == 1  # one sweep's report: its recommended (confirmed) frontier; else the searches'
        front = (experiment.frontier if single else experiment.search_frontier).sort_values(x)
        confirmed = single and experiment.confirmed is not None
        traces.append(Trace(prefix + ("confirmed frontier" if confirmed else "frontier"), "frontier",
                            front[x].to_numpy(), front[y].to_numpy(), (), k))  # fmt: skip
        bases = [("base SFT policy", experiment.base)]
        if confirmed:
            bases.append(("base SFT policy, confirmation prompts", experiment.confirmed_base))
        for title, base in bases:
            hover = (_hover(pd.Series({"trial": title, **base})),)
            traces.append(Trace(prefix + title, "base", np.array([base[x]]), np.array([base[y]]), hover))
    first, second = next(iter(experiments.values())).objectives
    return InteractiveInfo(second.title, first.title, tuple(traces))


def draw_interactive(info: InteractiveInfo):
    """A plotly figure of the traces: hovering a candidate shows its config (a point's step, a derived one's recipe)
    and metrics; infeasible candidates are hollow, under one legend entry (``HOLLOW``); the trials' paths are thin
    grey lines under one legend entry."""
    import plotly.graph_objects as go

    fig = go.Figure()
    first_path = True
    for trace in info.traces:
        if trace.kind in ("trials", "derived"):
            color = {"color": DERIVED_COLOR} if trace.kind == "derived" else {}
            fig.add_trace(go.Scatter(
                x=trace.x, y=trace.y, mode="markers", name=trace.name,
                marker={"symbol": trace.symbols, "size": trace.sizes, "opacity": 0.85, "line": {"width": 2}, **color},
                hovertext=list(trace.hover), hoverinfo="text",
            ))  # fmt: skip
        elif trace.kind == "path":
            fig.add_trace(go.Scatter(
                x=trace.x, y=trace.y, mode="lines", name="each trial's path along training", legendgroup="paths",
                showlegend=first_path, line={"color": "grey", "width": 0.7}, opacity=0.5, hoverinfo="skip",
            ))  # fmt: skip
            first_path = False
        elif trace.kind == "frontier":
            fig.add_trace(go.Scatter(
                x=trace.x, y=trace.y, mode="lines", name=trace.name,
                line={"color": "black", "dash": DASHES[trace.style % len(DASHES)]}, hoverinfo="skip",
            ))  # fmt: skip
        else:
            fig.add_trace(go.Scatter(
                x=trace.x, y=trace.y, mode="markers", name=trace.name,
                marker={"symbol": "star-open" if "confirmation" in trace.name else "star", "size": 16,
                        "color": "black"}, hovertext=list(trace.hover),
                hoverinfo="text",
            ))  # fmt: skip
    if any(trace.kind in ("trials", "derived") and not all(trace.feasible or (True,)) for trace in info.traces):
        fig.add_trace(go.Scatter(
            x=[None], y=[None], mode="markers", name=HOLLOW, hoverinfo="skip",
            marker={"symbol": "circle-open", "size": 10, "color": "grey", "line": {"width": 2}},
        ))  # fmt: skip
    fig.update_layout(
        xaxis_title=info.x_title, yaxis_title=info.y_title, height=560,
        title="the two objectives: hover a point for its candidate's config", template="plotly_white",
    )  # fmt: skip
    return fig


def interactive_pareto(experiments: dict[str, Experiment]):
    """A plotly frontier: every finished candidate (symbol per divergence, points along training small and joined by
    their trial's path, derived ones crosses), each frontier as a line, the base policies; hovering a point shows the
    candidate's full config and metrics."""
    return draw_interactive(interactive_info(experiments))


# --- two experiments --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ComparedExperiment:
    """One experiment of a comparison: its finished trials (infeasible ones flagged), its frontier of feasible
    trials by x (labelled) and its base."""

    name: str
    trials: Points
    frontier: Points
    base: tuple[float, float]


@dataclasses.dataclass(frozen=True)
class ComparisonInfo:
    """What ``draw_comparison`` draws: the two experiments, on the first one's axes (the second objective on ``x``,
    the first on ``y``)."""

    x: Objective
    y: Objective
    experiments: tuple[ComparedExperiment, ...]


def comparison_info(experiments: dict[str, Experiment]) -> ComparisonInfo:
    """Gather each experiment's finished trials, frontier and base policy."""
    compared = []
    for name, experiment in experiments.items():
        x, y = experiment.objectives[1].metric, experiment.objectives[0].metric
        front = experiment.search_frontier.sort_values(x)  # the searches are compared, at their own figures
        labels = tuple(label(row) for _, row in front.iterrows())
        base = (experiment.base[x], experiment.base[y])
        trials = _points(experiment.finished, x, y)
        compared.append(ComparedExperiment(name, trials, _points(front, x, y, labels), base))
    first, second = next(iter(experiments.values())).objectives
    return ComparisonInfo(second, first, tuple(compared))


def draw_comparison(info: ComparisonInfo):
    """The experiments' trials (faint), frontiers (a line, labelled) and base policies (stars), a colour, marker and
    line style each."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 6), dpi=100)
    for i, experiment in enumerate(info.experiments):
        name, marker, style, color = experiment.name, MARKERS[i], LINESTYLES[i], f"C{i}"
        _scatter(ax, experiment.trials, marker, color, f"{name}: trials", alpha=0.35)
        front = experiment.frontier
        ax.plot(front.x, front.y, marker=marker, linestyle=style, color=color, markersize=9, linewidth=2,
                label=f"{name}: frontier")  # fmt: skip
        ax.plot(*experiment.base, marker="*", markersize=16, color=color, markeredgecolor="black", linestyle="none",
                label=f"{name}: base SFT")  # fmt: skip
        for x, y, text in zip(front.x, front.y, front.labels, strict=True):
            ax.annotate(text, (x, y), textcoords="offset points", xytext=(6, 5), fontsize=7)
    _hollow_legend(ax, [experiment.trials for experiment in info.experiments])
    ax.set_xlabel(info.x.title)
    ax.set_ylabel(info.y.title)
    ax.set_title("two experiments' frontiers")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def comparison_figure(experiments: dict[str, Experiment]):
    """Two experiments' frontiers on one plot (``draw_comparison`` of ``comparison_info``)."""
    return draw_comparison(comparison_info(experiments))
