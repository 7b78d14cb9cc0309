"""Models: networks chosen by ``model.name``."""
