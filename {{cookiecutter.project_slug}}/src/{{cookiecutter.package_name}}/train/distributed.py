"""Several processes under ``torchrun``: who is who, and collectives that cannot crash or hang.

``train`` runs the same code in every process ("rank"); they meet at collectives, where each
waits for all the others. Three rules keep such a run from crashing or hanging:

1. Every tensor handed to a collective is on the process's own training device
   (:attr:`Dist.device`): NCCL (the GPU backend) accepts CUDA tensors only, gloo (the CPU one)
   CPU tensors. Only the methods of :class:`Dist` hand tensors to collectives, and they make
   them there.
2. A rank that fails does not leave the others waiting. The training loop reaches
   :meth:`Dist.settle` on every rank at the same points; a rank brings what it raised since
   the last one, and every rank then stops with the same one-line error, which names the rank.
   The NaN guard needs no extra meeting: every step's loss is already shared by all ranks
   (:meth:`Dist.all_values`, also what reduces the reported training loss), so all ranks see
   the NaN at the same step and stop together.
3. Waiting is bounded by ``train.ddp_timeout`` (seconds, the process-group timeout): rank 0
   validates alone while the others wait at the next meeting, so a validation longer than the
   timeout must raise it.

Without ``torchrun`` (one process) every method answers at once, without a collective.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from ..utils.errors import ConfigError, ProjectError


class TrainingError(ProjectError):
    """Training cannot go on (a NaN loss, a stale split, a failed rank); the last good
    checkpoint stays."""


@dataclass
class Dist:
    """Where this process stands in a ``torchrun`` job (world size 1 without one).

    Attributes:
        rank: this process's rank, 0 to ``world - 1``; rank 0 validates and writes the run.
        world: the number of processes.
        local_rank: the rank on this machine (which GPU it uses).
        device: the device this process trains on; every collective's tensors live there.
    """

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def all_values(self, value: torch.Tensor) -> list[float]:
        """Every rank's value of a scalar, in rank order (one read: a GPU sync).

        Args:
            value: a tensor of one element (e.g. this step's loss), on any device.

        Returns:
            ``world`` floats, this rank's at index ``rank``; NaN and infinity stay as they are
            (each rank writes only its own slot of a zero vector that is summed).
        """
        if not self.active:
            return [float(value.detach())]
        slots = torch.zeros(self.world, dtype=torch.float64, device=self.device)
        slots[self.rank] = value.detach().reshape(()).to(self.device, torch.float64)
        dist.all_reduce(slots)
        return slots.tolist()

    def settle(self, error: BaseException | None = None, stop: bool = False) -> bool:
        """Meet the other ranks: stop all of them with one error if any rank failed.

        Every rank must call it at the same point of the code, in the same order.

        Args:
            error: what this rank raised since the last meeting; None when all went well.
            stop: this rank asks every rank to stop (e.g. rank 0's early stopping).

        Returns:
            Whether any rank asked to stop.

        Raises:
            TrainingError: some rank brought an error: on every rank, the same message (the
                first failed rank's error, on one line, with its rank). A rank that brought an
                exception other than a :class:`ProjectError` (a bug) re-raises it instead, so
                that its traceback shows there. One process: ``error`` itself.
        """
        if not self.active:
            if error is not None:
                raise error
            return stop
        flags = torch.zeros(self.world + 1, dtype=torch.float64, device=self.device)
        flags[0] = float(stop)
        if error is not None:
            flags[1 + self.rank] = 1.0
        dist.all_reduce(flags)
        values = flags.tolist()
        failed = [rank for rank in range(self.world) if values[1 + rank] > 0]
        if not failed:
            return values[0] > 0
        source = failed[0]
        message = self.share(one_line(error) if self.rank == source else None, source=source)
        also = f"; ranks {', '.join(map(str, failed[1:]))} failed too" if failed[1:] else ""
        if error is not None and not isinstance(error, ProjectError):
            raise error  # a bug: its own traceback on the rank where it happened
        raise TrainingError(f"{message} (rank {source} of {self.world}{also})") from None

    def share(self, value: Any, source: int = 0) -> Any:
        """``value`` of rank ``source`` (a picklable object), on every rank."""
        if not self.active:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=source, device=self.device)
        return box[0]


def one_line(error: BaseException | None) -> str:
    """An error as one line: a project error's own message, otherwise its type and message."""
    if error is None:
        return ""
    text = str(error).strip().splitlines()
    first = text[0] if text else ""
    if isinstance(error, ProjectError):
        return first or type(error).__name__
    return f"{type(error).__name__}: {first}" if first else type(error).__name__


def pick_device(name: str, ddp: Dist) -> torch.device:
    """``auto``: CUDA when available; ``cuda`` without a GPU is an error, not a silent CPU run.

    Args:
        name: the ``device`` config value: ``auto``, ``cpu`` or ``cuda``.
        ddp: where this process stands (its ``local_rank`` picks the GPU).

    Raises:
        ConfigError: ``cuda`` asked for and none is available.
    """
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("config key 'device' = 'cuda' but no CUDA device is available")
    if name == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", ddp.local_rank)


def init_distributed(device_name: str, timeout_s: int) -> Dist:
    """Join the process group that ``torchrun`` describes in the environment (gloo on CPU,
    NCCL on CUDA) and pick this process's device.

    Args:
        device_name: the ``device`` config value.
        timeout_s: ``train.ddp_timeout``: how long a collective waits for the other ranks.

    Returns:
        The process's place; ``Dist(device=...)`` alone without ``torchrun``.

    Raises:
        ConfigError: ``cuda`` asked for and none is available.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        single = Dist()
        return replace(single, device=pick_device(device_name, single))
    info = Dist(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    info = replace(info, device=pick_device(device_name, info))
    cuda = info.device.type == "cuda"
    if cuda:
        torch.cuda.set_device(info.device)  # before NCCL starts: its communicator uses this GPU
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(seconds=timeout_s))
    return info
