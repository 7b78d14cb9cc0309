"""Heavy libraries are imported by the commands that use them, not by every command.

Captum only in ``explain``, Optuna only in ``sweep``, MLflow and TensorBoard only when chosen as
the tracker, Matplotlib only where a figure is drawn: a command's modules are imported in a fresh
interpreter (``python -X importtime``, whose report names the culprit on a failure), in the order
the command imports them, and the libraries loaded at each point are compared with the ones it may
use. A library MONAI only tried to import (utils/monai_import.py) is not loaded.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

PKG = "{{ cookiecutter.package_name }}"

# Libraries that neither training nor prediction use (tracking: csv).
UNUSED_BY_TRAINING = {"captum", "optuna", "mlflow", "tensorboard", "matplotlib"}
# A module a command imports, and the libraries that importing it must not load (cumulative:
# each step is imported after the ones before it, as ``train`` imports cli then train.loop).
STEPS = [
    (f"{PKG}.cli", {"numpy", "scipy", "torch", "monai", *UNUSED_BY_TRAINING}),  # all --help needs
    (f"{PKG}.train.loop", UNUSED_BY_TRAINING),
    (f"{PKG}.evaluate.predict", UNUSED_BY_TRAINING),
]
PROBE = """
import importlib, sys
for module in sys.argv[1:]:
    importlib.import_module(module)
    print(module, *sorted(name for name, mod in sys.modules.items() if mod is not None))
import matplotlib.pyplot, optuna  # hidden from MONAI only: sweep and the plots still get them
print("later", optuna.__name__, matplotlib.pyplot.__name__)
"""


def test_commands_import_only_the_heavy_libraries_they_use() -> None:
    modules = [module for module, _ in STEPS]
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", PROBE, *modules],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    loaded = {line.split()[0]: set(line.split()[1:]) for line in result.stdout.splitlines()}
    assert loaded["later"] == {"optuna", "matplotlib.pyplot"}
    for module, forbidden in STEPS:
        # A library counts as loaded with any of its modules ("scipy.stats._stats_py").
        found = {
            f for f in forbidden for name in loaded[module] if (name + ".").startswith(f + ".")
        }
        # On failure, -X importtime's report shows which import pulled the library in (its
        # lines are nested by indentation: the importer is the next line indented less).
        report = [line for line in result.stderr.splitlines() if any(f in line for f in found)]
        assert not found, (module, sorted(found), report[:20])


def test_import_monai_refuses_other_modules() -> None:
    from {{ cookiecutter.package_name }}.utils.monai_import import import_monai

    with pytest.raises(ValueError, match="expected a MONAI module"):
        import_monai("optuna")
