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

import os
from dataclasses import dataclass

import torch
from torch import nn


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
    world = int(os.environ.get("WORLD_SIZE", "1"))
    wants_cuda = torch.cuda.is_available() and (device is None or str(device).startswith("cuda"))
    if world == 1:
        chosen = torch.device(device) if device is not None else torch.device("cuda" if wants_cuda else "cpu")
        return Processes(0, 1, chosen)
    import torch.distributed as dist

    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    chosen = torch.device(f"cuda:{local}") if wants_cuda else torch.device("cpu")
    if wants_cuda:
        torch.cuda.set_device(chosen)
    started = not dist.is_initialized()
    if started:
        dist.init_process_group("nccl" if wants_cuda else "gloo")
    return Processes(rank, world, chosen, started)
