"""Evaluation: whole-set metrics with confidence intervals, computed by the project's own code."""
