"""The run folder, written and read in one place: ``folder`` (creating it, ``metrics.csv``,
``notes.md``, ``EXPERIMENTS.md``, reading them back), ``checkpoint`` (``checkpoints/*.pt``) and
``table`` (the ``runs`` table over every folder). It only reads and writes files: training,
evaluation and the workflow import it, never the reverse."""
