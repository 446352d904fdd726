"""The report's static figures, written as PNGs, and the drawing helpers they share. Each is two functions: one
gathers the plot's data into a small typed record (testable without a figure), one draws it; the figure function
runs both (as Optuna's ``_get_pareto_front_info`` and ``_get_pareto_front_plot``).

- ``pareto_figure``: every candidate, trials by divergence with each one's path through the points along its training,
  derived candidates apart, the frontier, each divergence's own (``pareto_info``, ``draw_pareto``).
- ``reward_kl_figure``: reward (the first objective that is not KL) against KL to the reference policy, the base at
  KL 0, the KL budget (``reward_kl_info``, ``draw_reward_kl``).
- ``reward_histograms``: sample rewards of frontier models over the base policy's (``histogram_info``,
  ``draw_histograms``).
- ``hypervolume_figure``: search progress, one curve per experiment (``hypervolume_info``, ``draw_hypervolume``).

The plotly frontier is in ``alignray.report.interactive``, two experiments' frontiers on one plot in
``alignray.report.comparison_figure``; both draw with what is here.

The first objective is on y, the second on x; each axis says whether higher or lower is better. Infeasible trials
(``experiment.feasible_mask``) are drawn hollow (marker face "none"), under one legend entry, ``HOLLOW``; no frontier
holds them. Points along training are drawn smaller than trials' final models, in their trial's marker; derived
candidates (weight arithmetic, no divergence of their own) with ``DERIVED``'s marker, grey.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from alignray.report.answer import envelope_corners
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
from alignray.report.formatting import group_name, label, num, params
from alignray.report.stats import CONFIDENCE, Interval
from alignray.sweep.objectives import Objective

__all__ = [
    "HOLLOW",
    "HistogramInfo",
    "HypervolumeInfo",
    "ParetoGroup",
    "ParetoInfo",
    "Points",
    "RewardKLInfo",
    "TrainingPath",
    "TrialGroup",
    "draw_histograms",
    "draw_hypervolume",
    "draw_pareto",
    "draw_reward_kl",
    "histogram_info",
    "hypervolume_figure",
    "hypervolume_info",
    "pareto_figure",
    "pareto_info",
    "reward_histograms",
    "reward_kl_figure",
    "reward_kl_info",
    "save_png",
]

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "h", "<", ">")
LINESTYLES = ("-", "--", "-.", ":", (0, (5, 1)), (0, (3, 1, 1, 1)), (0, (1, 1)), (0, (5, 3)), "-", "--")
HOLLOW = "hollow: infeasible (violates a constraint)"
"""The legend entry of the hollow markers, present when some trial is infeasible."""
DERIVED_LABEL = "derived (weight arithmetic)"
"""The legend entry of the derived candidates."""
DERIVED_MARKER, DERIVED_COLOR = "X", "dimgrey"
"""How derived candidates are drawn: matplotlib's marker and the colour (plotly's too)."""
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
    """One divergence (and loss type), its finished trained candidates (trials and points) and its upper envelope of
    y against KL through the base policy and its feasible ones: the corners, then flat to its largest feasible KL
    (empty: none feasible, or y minimised)."""

    name: str
    trials: Points
    envelope: tuple[tuple[float, float], ...] = ()


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
        base_y = float(experiment.base.get(y.metric, math.nan))
        for g in groups(experiment):
            rows = group_rows(experiment, g)
            feasible = rows[feasible_mask(rows)].dropna(subset=[KL, y.metric])
            corners = ()
            if y.direction == "max" and len(feasible):
                kl, value = envelope_corners(np.r_[0.0, feasible[KL]], np.r_[base_y, feasible[y.metric]])
                reach = float(feasible[KL].max())  # flat from the last corner to the largest feasible KL
                corners = tuple(zip([*kl.tolist(), reach], [*value.tolist(), float(value[-1])], strict=True))
            found.append(TrialGroup(group_name(g), _points(rows, KL, y.metric), corners))
        derived = _points(experiment.finished[experiment.finished["kind"] == DERIVED], KL, y.metric)
    base = (0.0, float(experiment.base.get(y.metric, math.nan)))
    return RewardKLInfo(KL, y, base, tuple(found), experiment.constraints.get(KL), derived)


def draw_reward_kl(info: RewardKLInfo):
    """KL on x and the y objective (usually reward) on y: every finished trained candidate marked by divergence
    (infeasible ones hollow), each divergence's upper envelope through its feasible ones (gid "envelope"), derived
    candidates grey crosses (gid "derived"), the base policy a star at KL 0, the KL budget a vertical dashed line
    (gid "budget")."""
    import matplotlib

    plt = _pyplot()
    colors = matplotlib.colormaps["tab10"].colors
    fig, ax = plt.subplots(figsize=(8, 5), dpi=100)
    ax.plot(*info.base, marker="*", markersize=16, color="black", linestyle="none", label="base SFT policy", zorder=5)
    for i, group in enumerate(info.groups):
        _scatter(ax, group.trials, MARKERS[i % len(MARKERS)], colors[i % 10], group.name, markersize=7, alpha=0.8)
        if len(group.envelope) > 1:
            (line,) = ax.plot(*zip(*group.envelope, strict=True), color=colors[i % 10], linewidth=1.2, alpha=0.7)
            line.set_gid("envelope")
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
