"""`spec bench`: suites, the interleaving runner, metrics and output files."""
