"""What every driver shares and the library does not need: the seed/run grid (``grid``), seed
statistics (``stats``), the estimator-options schema (``options``), and the driver interface
that :mod:`experiments.reproduce` and :mod:`experiments.report` use (``drivers``)."""
