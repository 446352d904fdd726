"""Two experiments' frontiers on one static plot, the figure of ``alignray.report.comparison``: ``comparison_info``
gathers each experiment's trials, frontier and base policy into a typed record, ``draw_comparison`` draws them with
the static figures' helpers (``alignray.report.figures``), ``comparison_figure`` runs both. Infeasible trials are
drawn hollow, under one legend entry (``figures.HOLLOW``)."""

from __future__ import annotations

import dataclasses

from alignray.report.experiment import Experiment
from alignray.report.figures import LINESTYLES, MARKERS, Points, _hollow_legend, _points, _pyplot, _scatter
from alignray.report.formatting import label
from alignray.sweep.objectives import Objective

__all__ = ["ComparedExperiment", "ComparisonInfo", "comparison_figure", "comparison_info", "draw_comparison"]


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
