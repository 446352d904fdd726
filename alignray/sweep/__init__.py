"""The sweep: its config (``config``), what can be checked before Ray (``checks``), the search space (``space``),
the searcher (``searcher``), one trial (``trial``), the Tune driver and its five stages (``driver``), the frontier
(``pareto``), and ``make sweep``'s job submission (``submit``)."""
