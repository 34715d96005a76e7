"""Search service: Ray Tune trials writing to an Optuna study; Pareto queries."""
