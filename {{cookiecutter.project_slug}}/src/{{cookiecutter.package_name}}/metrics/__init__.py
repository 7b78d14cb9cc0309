"""Metrics, one module per family, computed by the project's own NumPy/SciPy code.

``segmentation`` (overlap, surface distances, lesion-wise detection), ``classification``
(confusion-matrix rates, AUROC), ``calibration`` (reliability, ECE, thresholds, temperature),
``bootstrap`` (patient-level confidence intervals) and ``registry`` (the metrics training,
evaluation and the model card report; a new one is a decorated function, see there).
This package imports nothing above it: training and evaluation import it, never the reverse.
"""
