"""Synthetic data: the dummy dataset generator and the phantoms it draws (no downloads)."""
