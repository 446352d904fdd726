"""The report's interactive frontier: a plotly figure, embedded in the HTML, where hovering a candidate shows its
config and metrics. One sweep's report draws its recommended frontier; a comparison, each search's. As the static
figures (``alignray.report.figures``), it is two functions: ``interactive_info`` gathers the traces into a typed
record, ``draw_interactive`` draws them; ``interactive_pareto`` runs both.

Infeasible candidates are drawn with plotly's "-open" symbols, under one legend entry, ``HOLLOW``; points along
training smaller than trials' final models, in their group's symbol; derived candidates as crosses, grey.
"""

from __future__ import annotations

import dataclasses
import html

import numpy as np
import pandas as pd

from alignray.report.experiment import DERIVED, POINT, Experiment, feasible_mask, group_rows, groups
from alignray.report.figures import DERIVED_COLOR, DERIVED_LABEL, HOLLOW, _paths
from alignray.report.formatting import group_name, kind, num

__all__ = ["InteractiveInfo", "Trace", "draw_interactive", "interactive_info", "interactive_pareto"]

SYMBOLS = ("circle", "square", "triangle-up", "diamond", "triangle-down", "cross", "x", "hexagon", "star-square")
"""Plotly's markers, one per group of trials."""
DASHES = ("solid", "dash", "dot")
"""Plotly's frontier lines, one per experiment."""
DERIVED_SYMBOL = "x"
"""Plotly's marker of the derived candidates."""


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
