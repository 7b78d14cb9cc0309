"""Training under ``torchrun``: collectives on the process's device, failures that stop every
rank with one message, the training loss over all ranks, the timeout from the config."""

from __future__ import annotations

import csv
import json
import math
import os
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_data import SMALL, train_small

from {{ cookiecutter.package_name }}.config import load_config
from {{ cookiecutter.package_name }}.train import distributed, loop
from {{ cookiecutter.package_name }}.train.distributed import Dist
from {{ cookiecutter.package_name }}.utils.errors import ProjectError

PKG = "{{ cookiecutter.package_name }}"


class Handed(Exception):
    """Raised by a fake collective once it has seen what it was handed."""


# --- the device rule, without a process group ----------------------------------------------


def test_every_collective_is_handed_tensors_on_the_process_device(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """NCCL accepts CUDA tensors only: a flag made with ``torch.zeros(1)`` (on the CPU) crashed
    GPU runs. A "meta" device stands in for the GPU: a tensor made anywhere else shows."""
    device = torch.device("meta")
    ddp = Dist(rank=1, world=2, local_rank=1, device=device)
    seen: list[tuple[str, torch.device]] = []

    def fake(name: str):
        def collective(first, *args, **kwargs):
            if name == "broadcast_object_list":
                seen.append((name, kwargs.get("device")))
            else:
                seen.append((name, first.device))
            raise Handed

        return collective

    for name in ("all_reduce", "broadcast", "broadcast_object_list", "all_gather"):
        monkeypatch.setattr(distributed.dist, name, fake(name))
    for call in (
        lambda: ddp.all_values(torch.tensor(0.5)),  # this step's loss, on the CPU
        lambda: ddp.all_values(torch.tensor(0.5, device=device)),
        lambda: ddp.settle(None, stop=True),
        lambda: ddp.settle(ProjectError("planted")),
        lambda: ddp.share("runs/x"),
    ):
        with pytest.raises(Handed):
            call()
    assert [name for name, _ in seen] == [
        "all_reduce",
        "all_reduce",
        "all_reduce",
        "all_reduce",
        "broadcast_object_list",
    ]
    assert all(where == device for _, where in seen), seen


def test_one_process_needs_no_collective(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("all_reduce", "broadcast", "broadcast_object_list"):
        monkeypatch.setattr(distributed.dist, name, None)  # calling one would fail
    ddp = Dist()
    assert math.isnan(ddp.all_values(torch.tensor(float("nan")))[0])
    assert ddp.all_values(torch.tensor([2.5])) == [2.5]
    assert ddp.settle(None, stop=True) and not ddp.settle(None)
    assert ddp.share("x") == "x"
    error = ValueError("a bug")
    with pytest.raises(ValueError, match="a bug") as raised:
        ddp.settle(error)
    assert raised.value is error  # one process: the error itself, not a wrapped one


def test_process_group_timeout_comes_from_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[tuple[tuple, dict]] = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(
        distributed.dist, "init_process_group", lambda *a, **k: started.append((a, k))
    )
    ddp = distributed.init_distributed("cpu", 77)
    assert (ddp.rank, ddp.world, ddp.local_rank, ddp.device) == (1, 2, 1, torch.device("cpu"))
    assert started == [(("gloo",), {"timeout": timedelta(seconds=77)})]


def test_resumed_run_starts_its_processes_with_its_own_timeout(
    tiny: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The process group starts after the resumed run's config is read, not the command line's."""
    run = train_small("train.epochs=1", "train.ddp_timeout=77", "run.name=timeout")
    started: list[tuple[str, int]] = []
    real = loop.init_distributed

    def recording(device_name: str, timeout_s: int | None = None) -> Dist:
        started.append((device_name, timeout_s))
        return real(device_name, timeout_s)

    monkeypatch.setattr(loop, "init_distributed", recording)
    loop.train(load_config(SMALL), resume=run, quiet=True)  # the command line: 1800 s
    assert started == [("cpu", 77)]


# --- two gloo processes ----------------------------------------------------------------------

# One rank of a two-process job, started without torchrun so that each rank's exit status and
# error stream can be read (torchrun ends the other workers once one has failed).
# argv: MODE OUT_DIR COMMAND...; MODE says what to plant: "record" (nothing: it records each
# collective's tensor devices and each training step's loss), "nan" (a NaN loss on rank 1 only),
# "validation" (rank 0's validation fails with a project error).
DRIVER = """
import json, os, sys
from pathlib import Path

import torch
import torch.distributed as dist

from PKG.cli import main
from PKG.train import builders, loop
from PKG.utils.errors import ProjectError

mode, out, command = sys.argv[1], Path(sys.argv[2]), sys.argv[3:]
rank = int(os.environ["RANK"])
record = {"collectives": [], "losses": [], "trained_on": []}


def tensors(value):
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for item in value for t in tensors(item)]
    return []


def watched(name, real):
    def call(*args, **kwargs):
        if name.endswith("_object_list") or name.endswith("_object"):
            devices = [str(kwargs.get("device"))]  # None: the backend's choice
        else:
            devices = [str(t.device) for t in tensors(list(args) + list(kwargs.values()))]
        record["collectives"].append([name, devices])
        return real(*args, **kwargs)
    return call


for name in ("broadcast", "all_reduce", "reduce", "all_gather", "gather", "scatter",
             "reduce_scatter", "all_to_all", "broadcast_object_list", "all_gather_object",
             "gather_object", "scatter_object_list"):
    setattr(dist, name, watched(name, getattr(dist, name)))

real_loss = builders.loss


class Planted(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, logits, target):
        value = self.inner(logits, target)
        if torch.is_grad_enabled():  # a training step
            record["trained_on"].append(str(logits.device))
            if mode == "nan" and rank == 1:
                value = value * float("nan")
            record["losses"].append(float(value.detach()))
        return value


builders.loss = lambda *a, **k: Planted(real_loss(*a, **k))
if mode == "validation" and rank == 0:
    def failing(*args, **kwargs):
        raise ProjectError("case c3: unreadable image (planted)")
    loop.validate = failing
try:
    code = main(command)
finally:
    (out / f"rank{rank}.json").write_text(json.dumps(record))
sys.exit(code)
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def two_ranks(
    project: Path, out: Path, mode: str, *overrides: str, timeout: float = 240
) -> list[tuple[int, str, dict]]:
    """Train with two gloo processes; per rank: exit status, error stream, what it recorded.

    A rank still running after ``timeout`` seconds fails the test (the ranks hang)."""
    out.mkdir(parents=True, exist_ok=True)
    driver = out / "driver.py"
    driver.write_text(DRIVER.replace("PKG", PKG), encoding="utf-8")
    port = free_port()
    source = str(Path(distributed.__file__).resolve().parents[2])  # where this package is
    procs = []
    for rank in range(2):
        env = {
            **os.environ,
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": "2",
            "LOCAL_WORLD_SIZE": "2",
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "OMP_NUM_THREADS": "1",
            "PYTHONPATH": os.pathsep.join(filter(None, [source, os.environ.get("PYTHONPATH")])),
        }
        with open(out / f"rank{rank}.err", "w") as err:
            command = [sys.executable, str(driver), mode, str(out), "train", *SMALL, *overrides]
            procs.append(
                subprocess.Popen(
                    command, cwd=project, env=env, stdout=subprocess.DEVNULL, stderr=err
                )
            )
    deadline = time.monotonic() + timeout
    try:
        for proc in procs:
            proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        pytest.fail(f"{mode}: a rank still ran after {timeout} s: the ranks hang")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    results = []
    for rank, proc in enumerate(procs):
        recorded = out / f"rank{rank}.json"
        results.append(
            (
                proc.returncode,
                (out / f"rank{rank}.err").read_text(encoding="utf-8"),
                json.loads(recorded.read_text(encoding="utf-8")) if recorded.exists() else {},
            )
        )
    return results


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="gloo DDP test on Linux/macOS")
def test_ddp_reduces_the_training_loss_and_keeps_collectives_on_device(
    tiny: Path, tmp_path: Path
) -> None:
    ranks = two_ranks(
        tiny, tmp_path / "out", "record", "train.batch_size=1", "train.epochs=2", "run.name=ddp"
    )
    for code, err, _ in ranks:
        assert code == 0, err[-2000:]
    (run,) = [p for p in (tiny / "runs").iterdir() if p.name.endswith("_ddp")]
    with open(run / "metrics.csv", newline="", encoding="utf-8") as handle:
        logged = [float(row["train_loss"]) for row in csv.DictReader(handle)]
    losses = [np.array(record["losses"]) for _, _, record in ranks]
    assert len(losses[0]) == len(losses[1]) > 0 and len(losses[0]) % 2 == 0
    per_epoch = [np.split(rank_losses, 2) for rank_losses in losses]  # 2 epochs
    # The two ranks train on different cases: rank 0 alone would not give the logged value.
    assert abs(per_epoch[0][0].mean() - per_epoch[1][0].mean()) > 1e-3
    for epoch, value in enumerate(logged):
        expected = np.mean([per_epoch[0][epoch].mean(), per_epoch[1][epoch].mean()])
        assert value == pytest.approx(expected, rel=1e-5), epoch
    for rank, (_, _, record) in enumerate(ranks):
        (device,) = set(record["trained_on"])
        assert record["collectives"], rank
        for name, devices in record["collectives"]:
            assert devices and all(d == device for d in devices), (rank, name, devices)


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="gloo DDP test on Linux/macOS")
@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("nan", "error: the loss is nan at epoch 1, step 1 on rank 1 of 2: training stopped"),
        ("validation", "error: case c3: unreadable image (planted) (rank 0 of 2)"),
    ],
)
def test_a_failure_on_one_rank_stops_every_rank_with_the_same_error(
    tiny: Path, tmp_path: Path, mode: str, expected: str
) -> None:
    ranks = two_ranks(tiny, tmp_path / "out", mode, "run.name=fail")
    lines = []
    for rank, (code, err, _) in enumerate(ranks):
        assert code == 2, (rank, err[-2000:])
        assert "Traceback" not in err, (rank, err[-2000:])
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, (rank, err[-2000:])
        lines.append(errors[0])
    assert lines[0] == lines[1] and lines[0].startswith(expected), lines
