"""Training: the loop, its validation, losses and optimizers (the run folder and checkpoints
are written through ``runs/``)."""
