"""The experiment workflow: the demo pipeline, hyper-parameter sweeps and ablations (one module
each; the runs table is ``runs/table.py``)."""
