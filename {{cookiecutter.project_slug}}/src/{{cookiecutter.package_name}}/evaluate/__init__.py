"""Evaluation: applies a trained run (read through ``runs/``) and reports the metrics of
``metrics/`` with confidence intervals; also ``compare``, ``predict``, ``export`` and the model card.
It never imports ``train`` or ``workflow``."""
