"""The sweep's report: Pareto plots, per-divergence tables, bootstrap intervals, paired comparisons, samples.

``write_report(experiment_dir)`` reads what ``alignray.sweep.driver`` left (``sweep.json``, ``results.parquet``,
``base/``, ``samples/<trial>.parquet``, ``confirm/``) and writes ``report.md`` with its PNGs beside it and
``report.html``, which embeds the same images and an interactive plotly frontier and opens from disk with no network.
``write_comparison(a, b, out)`` puts two experiments' frontiers and search progress on one plot.

One module per concern, each importing only those above it:

- ``formatting``: how numbers and trials are written.
- ``stats``: the bootstrap over evaluation prompts (and the seed-and-prompt intervals of the confirmation),
  metric intervals and paired differences (how confidence is computed is told there).
- ``experiment``: loading an experiment and the views every part shares (groups, frontiers, reference point,
  feasibility: frontiers hold feasible trials only; the recommended frontier is the confirmed one when the sweep
  confirmed).
- ``answer``: each divergence's answer at the KL budget (confirmed, one Holm family of verdicts) and the reward–KL
  envelopes read at common KLs.
- ``picks``: "What to pick" in sentences.
- ``watch``: the reward-hacking watch (n-grams that rose against the base policy, reward rising with non-words).
- ``tables``: the report's tables.
- ``figures``: each static figure (a PNG) as a record of its data (gathered) and a drawing of it.
- ``interactive``: the plotly frontier of the HTML, gathered and drawn the same way.
- ``comparison_figure``: two experiments' frontiers on one plot, gathered and drawn the same way.
- ``document``: Markdown and HTML from the templates in ``templates/``.
- ``sweep_report`` (``write_report``) and ``comparison`` (``write_comparison``): the documents put together.
"""

from alignray.report.comparison import write_comparison
from alignray.report.experiment import Experiment, load_experiment
from alignray.report.figures import (
    hypervolume_figure,
    pareto_figure,
    reward_histograms,
    reward_kl_figure,
)
from alignray.report.interactive import interactive_pareto
from alignray.report.stats import (
    CONFIDENCE,
    INTERVAL_METRICS,
    POOLED_METRICS,
    RESAMPLES,
    TOKEN_METRICS,
    WORD_METRICS,
    Interval,
    Paired,
    PromptTable,
    metric_intervals,
    paired_difference,
    prompt_bootstrap,
)
from alignray.report.sweep_report import write_report
from alignray.report.tables import divergence_table
from alignray.report.watch import watch_info

__all__ = [
    "CONFIDENCE",
    "RESAMPLES",
    "INTERVAL_METRICS",
    "POOLED_METRICS",
    "TOKEN_METRICS",
    "WORD_METRICS",
    "Experiment",
    "Interval",
    "Paired",
    "PromptTable",
    "divergence_table",
    "hypervolume_figure",
    "interactive_pareto",
    "load_experiment",
    "metric_intervals",
    "paired_difference",
    "pareto_figure",
    "prompt_bootstrap",
    "reward_histograms",
    "reward_kl_figure",
    "watch_info",
    "write_comparison",
    "write_report",
]
