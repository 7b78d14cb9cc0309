"""Visualization: plots of data, training curves and interpretability maps."""
