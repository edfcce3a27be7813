"""This process's place in a ``torchrun`` job (or the only process), and the few collective steps
the training loops need.

    procs = join(device)                  # reads RANK / WORLD_SIZE / LOCAL_RANK; gloo on CPU, NCCL on CUDA
    runner = procs.wrap(module)           # DistributedDataParallel when world > 1
    x_mine = procs.shard(x)               # this rank's share of a global batch: x[rank::world]

A global batch of B images is cut into ``world`` equal shares (B must divide), every rank draws the
same permutation and the same augmentation (they are functions of the seed, the epoch and the
step) and keeps its share, and DistributedDataParallel averages the gradients: the step is one
process's step on the whole batch, except that BatchNorm layers in training mode see their rank's
share only. Only rank 0 writes files; a resumed run reads the same run folder on every rank.
"""

from __future__ import annotations

import datetime
import os
import re
from dataclasses import dataclass

import torch
from torch import nn

from explorer.errors import ExplorerError

MAX_WORLD = 4096
JOIN_TIMEOUT = datetime.timedelta(minutes=5)  # the other processes must arrive by then, or this one says so


class DistributedError(ExplorerError):
    """torchrun's environment does not describe a job this process can join."""


def _env_whole(name: str, default: str, low: int, high: int) -> int:
    text = os.environ.get(name, default).strip()
    if not re.fullmatch(r"\d{1,6}", text) or not low <= int(text) <= high:
        raise DistributedError(f"the environment variable {name}={text[:40]!r} must be a whole number from {low} to "
                               f"{high} (torchrun sets it; unset it to run as one process)")
    return int(text)


@dataclass
class Processes:
    rank: int
    world: int
    device: torch.device
    started: bool = False  # this process group was opened here (and is closed by close())

    @property
    def main(self) -> bool:
        return self.rank == 0

    def shard(self, batch: torch.Tensor) -> torch.Tensor:
        return batch if self.world == 1 else batch[self.rank::self.world]

    def wrap(self, module: nn.Module) -> nn.Module:
        if self.world == 1:
            return module
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=ids)

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def total(self, value: float) -> float:
        """The sum of ``value`` over the ranks (float64 on the wire)."""
        if self.world == 1:
            return value
        import torch.distributed as dist

        tensor = torch.tensor([value], dtype=torch.float64, device=self.device if self.device.type == "cuda" else "cpu")
        dist.all_reduce(tensor)
        return float(tensor.item())

    def close(self) -> None:
        if self.started:
            import torch.distributed as dist

            dist.destroy_process_group()
            self.started = False


def join(device: str | torch.device | None = None) -> Processes:
    """This process under torchrun (its rank, the world size, cuda:<local rank> or the CPU), or a
    world of one on ``device`` (default: CUDA when present)."""
    world = _env_whole("WORLD_SIZE", "1", 1, MAX_WORLD)
    wants_cuda = torch.cuda.is_available() and (device is None or str(device).startswith("cuda"))
    if world == 1:
        chosen = torch.device(device) if device is not None else torch.device("cuda" if wants_cuda else "cpu")
        return Processes(0, 1, chosen)
    import torch.distributed as dist

    rank, local = _env_whole("RANK", "0", 0, world - 1), _env_whole("LOCAL_RANK", "0", 0, world - 1)
    if wants_cuda and local >= torch.cuda.device_count():
        raise DistributedError(f"LOCAL_RANK={local}, but this machine has {torch.cuda.device_count()} CUDA device(s)")
    missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(name, "").strip()]
    if missing and not dist.is_initialized():
        raise DistributedError(f"WORLD_SIZE={world} asks for {world} processes, but {' and '.join(missing)} "
                               "is not set: start the job with torchrun, or unset WORLD_SIZE to run as one process")
    chosen = torch.device(f"cuda:{local}") if wants_cuda else torch.device("cpu")
    if wants_cuda:
        torch.cuda.set_device(chosen)
    started = not dist.is_initialized()
    if started:
        try:
            dist.init_process_group("nccl" if wants_cuda else "gloo", timeout=JOIN_TIMEOUT)
        except (RuntimeError, ValueError) as exc:  # a bad address or port, peers that never arrive
            raise DistributedError(f"could not join the torchrun job ({str(exc).splitlines()[0][:200]})") from exc
    return Processes(rank, world, chosen, started)
