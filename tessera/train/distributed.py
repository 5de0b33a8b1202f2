"""Distributed training: process-group setup, the one function that wraps a model, and the gathers
that turn sharded tensors into full ones for saving.

Launch with `torchrun --nproc-per-node N -m tessera.cli train ...` (or `launch_local` for tests): each
process reads RANK / WORLD_SIZE / LOCAL_RANK from the environment. The backend is NCCL on CUDA and gloo
on the CPU. Modes:

- "none": one process, the module as it is.
- "ddp":  `DistributedDataParallel`; gradients are averaged over ranks in the backward pass.
- "fsdp": FSDP2 `fully_shard` on every transformer block (any `blocks` ModuleList) and then the root:
          each rank holds a 1/N shard of parameters, gradients and optimizer state.

In both distributed modes gradients are averaged over ranks, so the trainers scale their local loss by
`world_size / (global normaliser)` to get exactly the gradient of the one-process loss.

Sequence parallelism (`sp` > 1): ranks form groups of `sp` consecutive ranks; a group shares one
data-parallel shard of the batch (data-parallel degree world_size / sp) and its ranks split each clip's
tokens (`tessera.parallel`). Every rank of a group computes the same loss from the gathered output and
holds its tokens' part of the gradient, so DDP/FSDP averaging over *all* ranks, with the loss scaled as
above, still gives the one-process gradient: the group's parts sum to its whole. FSDP2 therefore shards
over the whole world, unchanged; only sums of logged numbers must count each group once (`dp_sum`).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from tessera.parallel import TokenSplit, token_split


@dataclass(frozen=True)
class Dist:
    """This process's place in the job."""

    rank: int
    world_size: int
    device: torch.device
    mode: str  # "none", "ddp" or "fsdp"
    sp: int = 1  # sequence-parallel degree: ranks per group sharing each clip
    sp_group: Any = None  # this rank's sequence-parallel process group (None when sp == 1)

    @property
    def main(self) -> bool:
        """True on rank 0, which writes files and logs."""
        return self.rank == 0

    @property
    def dp_size(self) -> int:
        """Number of data-parallel shards of the batch (groups of `sp` ranks)."""
        return self.world_size // self.sp

    @property
    def dp_rank(self) -> int:
        """Which data-parallel shard this rank's group takes."""
        return self.rank // self.sp


def launched_rank() -> int:
    """This process's rank as the launcher (torchrun) set it; 0 when launched alone."""
    return int(os.environ.get("RANK", "0"))


def setup(mode: str, device: str = "auto", sp: int = 1) -> Dist:
    """Join the process group if launched with several ranks; pick the device and the wrapping mode;
    with `sp` > 1 form the sequence-parallel groups of `sp` consecutive ranks.

    `mode` "auto" means "ddp" with several ranks and "none" with one.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = launched_rank()
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", local_rank % max(1, torch.cuda.device_count()))
        torch.cuda.set_device(dev)
    if sp < 1 or world_size % sp:
        raise ValueError(
            f"sequence-parallel degree sp = {sp} must be >= 1 and divide the {world_size} processes; "
            f"launch with `torchrun --nproc-per-node N` where N is a multiple of {sp}"
        )
    if mode == "auto":
        mode = "ddp" if world_size > 1 else "none"
    if world_size == 1 and mode != "none":
        raise ValueError(f"distributed mode '{mode}' needs several processes; launch with torchrun")
    if world_size > 1 and mode == "none":
        raise ValueError(f"{world_size} processes were launched but distributed mode is 'none'; use ddp/fsdp")
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend, rank=rank, world_size=world_size)
    return Dist(rank, world_size, dev, mode, sp, _sp_group(sp, rank, world_size))


def _sp_group(sp: int, rank: int, world_size: int) -> Any:
    """This rank's group of `sp` consecutive ranks (every rank creates every group, in the same order)."""
    if sp == 1:
        return None
    groups = [dist.new_group(list(range(g, g + sp))) for g in range(0, world_size, sp)]
    return groups[rank // sp]


def split(heads: int, d: Dist, mode: str = "auto") -> TokenSplit | None:
    """How a DiT with `heads` attention heads spreads each clip over this rank's sequence-parallel
    group (`tessera.parallel.token_split`); None when sp == 1."""
    return None if d.sp == 1 else token_split(heads, d.sp_group, mode)


def teardown() -> None:
    """Leave the process group (if one was joined)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def wrap(module: nn.Module, d: Dist) -> nn.Module:
    """The module to call in training: itself, DDP around it, or sharded in place by FSDP2.

    Under FSDP2 the returned module is `module` itself (sharded in place); its state dict then holds
    DTensors, which `full_tensors` gathers.
    """
    if d.mode == "none":
        return module
    if d.mode == "ddp":
        # distributed training only
        from torch.nn.parallel import DistributedDataParallel

        # No device_ids: the module already sits on its one device, and inputs are moved by the trainer
        # (DDP would otherwise walk the inputs to move them, and our batches are dataclasses).
        return DistributedDataParallel(module)
    if d.mode == "fsdp":
        fully_shard = _fully_shard()
        block_lists = [m for n, m in module.named_modules() if n.split(".")[-1] == "blocks"]
        for block in (b for blocks in block_lists if isinstance(blocks, nn.ModuleList) for b in blocks):
            fully_shard(block)
        fully_shard(module)
        return module
    raise ValueError(f"unknown distributed mode '{d.mode}'; choose none, ddp or fsdp")


def _fully_shard() -> Callable:
    try:
        from torch.distributed.fsdp import fully_shard  # torch >= 2.6
    except ImportError:
        # distributed training only
        from torch.distributed._composable.fsdp import fully_shard
    return fully_shard


def is_sharded(t: Tensor) -> bool:
    """True for a DTensor (an FSDP2 shard)."""
    return type(t).__name__ == "DTensor"


def full_tensors(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """Gather every sharded tensor to a full CPU tensor (a collective: call on every rank)."""
    return {k: (v.full_tensor() if is_sharded(v) else v).detach().cpu() for k, v in tensors.items()}


def like(full: Tensor, target: Tensor) -> Tensor:
    """`full` laid out like `target`: this rank's shard if `target` is a DTensor, else `full` itself."""
    if is_sharded(target):
        # distributed training only
        from torch.distributed.tensor import distribute_tensor

        return distribute_tensor(full.to(target.device, target.dtype), target.device_mesh, target.placements)
    return full.to(target.device, target.dtype)


def optimizer_state(module: nn.Module, optimizer: torch.optim.Optimizer, d: Dist) -> dict[str, Any]:
    """The optimizer's state dict with full tensors (gathered under FSDP; a collective)."""
    if d.mode != "fsdp":
        return optimizer.state_dict()
    # distributed training only
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_optimizer_state_dict(module, optimizer, options=opts)


def load_optimizer_state(module: nn.Module, optimizer: torch.optim.Optimizer, state: dict, d: Dist) -> None:
    """Inverse of `optimizer_state` (every rank passes the full state)."""
    if d.mode != "fsdp":
        optimizer.load_state_dict(state)
        return
    # distributed training only
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    set_optimizer_state_dict(module, optimizer, state, options=StateDictOptions(full_state_dict=True))


@torch.no_grad()
def load_module_state(module: nn.Module, tensors: dict[str, Tensor]) -> None:
    """Copy full tensors into `module`'s parameters and buffers, sharding them where they are sharded."""
    own = module.state_dict()
    missing, unexpected = sorted(set(own) - set(tensors)), sorted(set(tensors) - set(own))
    if missing or unexpected:
        raise ValueError(
            f"state does not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    for k, v in own.items():
        v.copy_(like(tensors[k], v))


def all_sum(values: list[float], d: Dist) -> list[float]:
    """Sum a few numbers over ranks (float64; identity with one process)."""
    if d.world_size == 1:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=d.device)
    dist.all_reduce(t)
    return t.tolist()


def dp_sum(values: list[float], d: Dist) -> list[float]:
    """Sum numbers that every rank of a sequence-parallel group holds alike over the data-parallel
    groups (each group counted once)."""
    return [v / d.sp for v in all_sum(values, d)]


def barrier(d: Dist) -> None:
    """Wait for every rank (no-op with one process)."""
    if d.world_size > 1:
        dist.barrier()


# ---------------------------------------------------------------------------------------------
# Local launcher (tests, and multi-process CPU runs without torchrun)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world_size: int, port: int, fn: Callable, args: tuple) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size),
        LOCAL_RANK=str(rank),
    )  # fmt: skip
    torch.set_num_threads(1)
    try:
        fn(*args)
        if dist.is_initialized():
            dist.barrier()  # every rank has finished its collectives before any leaves
    except BaseException:
        teardown()
        raise
    # Leave without running C++ destructors: gloo's connection threads, torn down while a peer is
    # also exiting, can abort the process ("terminate called without an active exception").
    os._exit(0)


def launch_local(fn: Callable, world_size: int, *args: Any) -> None:
    """Run `fn(*args)` in `world_size` processes on this machine (loopback only), as torchrun would.

    `fn` must be importable (a module-level function); each process sees RANK/WORLD_SIZE set.
    """
    # local multi-process launches only
    import torch.multiprocessing as mp

    mp.spawn(_worker, args=(world_size, _free_port(), fn, args), nprocs=world_size, join=True)
