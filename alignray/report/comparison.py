"""Two experiments side by side: ``write_comparison(a, b, out)`` puts their frontiers and search progress on one plot
against one reference point, and compares their best points where both evaluated the same prompts. Frontiers,
hypervolumes and best points hold feasible trials only (see ``alignray.report.experiment``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from alignray.report.comparison_figure import comparison_figure
from alignray.report.document import Block, render_html, render_markdown, write_text
from alignray.report.experiment import Experiment, load_experiment, objective_points, reference_point
from alignray.report.figures import hypervolume_figure, save_png
from alignray.report.formatting import label, num
from alignray.report.interactive import interactive_pareto
from alignray.report.stats import paired_difference
from alignray.report.tables import paired_table
from alignray.sweep.objectives import signed
from alignray.sweep.pareto import hypervolume

__all__ = ["write_comparison"]


def _summary_table(experiments: dict[str, Experiment], reference: tuple[float, float]) -> pd.DataFrame:
    """One row per experiment: trials, trials finished, frontier size, hypervolume of the feasible candidates (each
    trial's final model, the points along its training, the derived ones) against ``reference`` (the objectives' own
    units), its best in the first objective, feasible candidates."""
    rows = []
    for name, experiment in experiments.items():
        front, objectives = experiment.search_frontier, experiment.objectives
        volume = hypervolume(objective_points(experiment.feasible, objectives), signed(reference, objectives))
        trials = experiment.results["kind"] == "trial"
        rows.append({"experiment": name, "trials": int(trials.sum()),
                     "finished": int((trials & (experiment.results["status"] == "ok")).sum()),
                     "frontier": len(front), "hypervolume": num(volume),
                     f"best {objectives[0].metric}": label(front.iloc[0]) if len(front) else "",
                     "feasible": len(experiment.feasible)})  # fmt: skip
    return pd.DataFrame(rows)


def write_comparison(
    experiment_a: str | Path, experiment_b: str | Path, out: str | Path, names: tuple[str, str] | None = None
) -> dict[str, Path]:
    """Two experiments' frontiers on one plot and each search's hypervolume curve against one reference point (the
    worse of the two in each objective), in ``out``: ``compare.png``, ``compare_hypervolume.png``, ``compare.md``,
    ``compare.html``. Their best points get a paired comparison when both evaluated the same prompts."""
    a, b = load_experiment(experiment_a), load_experiment(experiment_b)
    if a.objectives != b.objectives:
        raise ValueError(f"the experiments have different objectives: {[o.title for o in a.objectives]} and "
                         f"{[o.title for o in b.objectives]}")  # fmt: skip
    names = names or (a.directory.name, b.directory.name)
    if names[0] == names[1]:
        names = (f"A {names[0]}", f"B {names[1]}")
    experiments = dict(zip(names, (a, b), strict=True))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    worse = np.minimum(signed(reference_point(a), a.objectives), signed(reference_point(b), a.objectives))
    reference = tuple(float(v) for v in signed(worse, a.objectives))  # signed twice: the objectives' own units

    written = {"compare.png": save_png(comparison_figure(experiments), out / "compare.png")}
    written["compare_hypervolume.png"] = save_png(
        hypervolume_figure(experiments, reference), out / "compare_hypervolume.png"
    )
    blocks: list[Block] = [
        ("h1", f"{names[0]} vs {names[1]}"),
        ("p", f"Hypervolumes against the common reference point ({reference[0]:.4g}, {reference[1]:.4g})."),
        ("table", _summary_table(experiments, reference)),
        ("image", (written["compare.png"], "both frontiers")),
        ("plotly", interactive_pareto(experiments)),
        ("h2", "Search progress"),
        ("image", (written["compare_hypervolume.png"], "hypervolume after each trial, each search")),
    ]  # fmt: skip
    if len(a.search_frontier) and len(b.search_frontier):
        best_a, best_b = a.search_frontier.iloc[0], b.search_frontier.iloc[0]
        samples_a, samples_b = a.samples(best_a["trial"]), b.samples(best_b["trial"])
        paired = []
        if samples_a is not None and samples_b is not None:
            for metric in (o.metric for o in a.objectives):
                try:
                    paired.append(paired_difference(samples_a, samples_b, metric, names))
                except ValueError as err:
                    blocks.append(("p", f"No paired comparison of {metric}: {err}."))
        if paired:
            blocks += [("h2", "Best points, paired"),
                       ("p", f"{names[0]}: {label(best_a)}; {names[1]}: {label(best_b)}."),
                       ("table", paired_table(paired))]  # fmt: skip
    written["compare.md"] = write_text(out / "compare.md", render_markdown(blocks))
    title = f"alignray: {names[0]} vs {names[1]}"
    written["compare.html"] = write_text(out / "compare.html", render_html(blocks, title))
    return written
