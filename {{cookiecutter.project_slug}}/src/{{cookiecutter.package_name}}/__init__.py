"""The project's package: data, models, training, evaluation, plots and utilities.

See README.md at the project root for the commands; ``python -m {{ cookiecutter.package_name }} --help``
lists them.
"""

__version__ = "0.1.0"
