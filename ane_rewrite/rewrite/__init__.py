"""The rewriting machinery the passes are written with: graph helpers (``graph``), rules and
passes (``rules``), the structural matchers they share (``match``), and the pipeline that runs
passes in a declared order (``pipeline``). Knows no model family and no pass."""
