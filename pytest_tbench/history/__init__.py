"""History: every run in a database (``store``), series of one metric over runs (``series``), their plots and
pages (``render``), and the steps in them (``changepoints``, ``trend``)."""
