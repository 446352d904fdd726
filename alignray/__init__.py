"""alignray: f-divergence DPO sweeps on Ray, and the reward-vs-diversity Pareto frontier they trace.

Start with ``alignray.world`` (models), ``alignray.divergences`` and ``alignray.trainer`` (f-DPO), ``alignray.data``
(preference data on Ray Data) and ``alignray.metrics`` (what every trial reports).
"""

__version__ = "0.1.0"
