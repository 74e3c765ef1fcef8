"""Results files, the papers' numbers as data, paper-vs-ours tables and figures."""
