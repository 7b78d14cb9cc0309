"""The experiment workflow: the demo pipeline, the runs table, hyper-parameter sweeps and
ablations (one module each)."""
