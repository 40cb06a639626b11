# Shared values: the results folder and the grid, expanded by m2po.pipeline (one definition).
from m2po.pipeline import expand_grid, parse_run_id, train_overrides

RES = config["results"]
RUNS = expand_grid(config)
RUN_IDS = [r.run_id for r in RUNS]
MODELS = list(config["models"])


wildcard_constraints:
    run_id=r"[^/]+",
    fig=r"fig\d+[ab]?|table1",
