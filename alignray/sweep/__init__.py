"""The sweep: search space (``space``), one trial (``trial``), the Tune driver (``driver``), frontier (``pareto``)."""
