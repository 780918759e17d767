"""Data-parallel training under ``torchrun``: process group, sharding, reductions - no-ops otherwise.

``torchrun --nproc-per-node N -m genreclf.cli train_cnn ...`` starts N copies of the entry point
with RANK / WORLD_SIZE / LOCAL_RANK (and the rendezvous) in the environment; ``init`` joins them
into one process group (NCCL on GPUs, gloo on CPU). Every helper here does nothing when the group
was not initialised, so ``fit`` reads the same with one process or many.

What ``fit`` does with them: the train split goes through a ``DistributedSampler`` (each rank a
disjoint shard, reshuffled per epoch from the epoch's seed); the net is wrapped in
``DistributedDataParallel`` per epoch (the set of trainable parameters changes after a linear-probe
warm-up); train sums are all-reduced; validation is sharded and gathered, so every rank computes the
same metrics and takes the same early-stopping decisions. Only rank 0 talks to MLflow.
"""
from __future__ import annotations

import contextlib
import datetime
import logging
import os

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

log = logging.getLogger(__name__)


def init(device: str = "auto") -> bool:
    """Join the torchrun process group when launched by torchrun (WORLD_SIZE > 1); True if joined."""
    if dist.is_initialized() or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return dist.is_initialized()
    gpu = torch.cuda.is_available() and device != "cpu"
    if gpu:
        torch.cuda.set_device(local_rank())
    # generous timeout: rank 0 creates the MLflow run and logs inputs while the others wait
    dist.init_process_group("nccl" if gpu else "gloo", timeout=datetime.timedelta(minutes=30))
    if not is_main():
        logging.getLogger().setLevel(logging.WARNING)  # one rank tells the story
    log.info("joined process group: %d processes, backend %s", world_size(), dist.get_backend())
    return True


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def active() -> bool:
    # any group counts, also one of a single process: `init` forms none for one process, but a group of
    # one (tools/gpu_check.py --ddp on a one-GPU machine) runs the same DDP / NCCL path as many would
    return dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if active():
        dist.barrier()


@contextlib.contextmanager
def main_first():
    """Rank 0 runs the block first (it creates caches, experiments), then the others (they reuse them)."""
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()


def local_device(device: torch.device) -> torch.device:
    """This rank's GPU when the device is CUDA (one GPU per process), else the device unchanged."""
    return torch.device("cuda", local_rank()) if active() and device.type == "cuda" else device


def shard_len(n: int) -> int:
    """Items per rank of a DistributedSampler over n items (it pads to equal shards)."""
    return -(-n // world_size())


def shard(items: np.ndarray) -> np.ndarray:
    """This rank's strided share of ``items`` (evaluation: no padding, ``gather`` restores the order)."""
    return items[rank()::world_size()]


def train_sampler(dataset, generator: torch.Generator | None):
    """A DistributedSampler over ``dataset`` whose shuffle follows ``generator`` (the epoch's seed), or None."""
    if not active():
        return None
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator)) if generator is not None else 0
    return torch.utils.data.DistributedSampler(dataset, world_size(), rank(), shuffle=True, seed=seed)


def wrap(net: nn.Module, device: torch.device) -> nn.Module:
    """``net`` in DistributedDataParallel (which starts from rank 0's weights), or ``net`` itself."""
    if not active() or not any(p.requires_grad for p in net.parameters()):
        return net
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(net, device_ids=ids)


def sync_buffers(net: nn.Module) -> None:
    """Rank 0's buffers (batch-norm statistics) everywhere: each rank updated its own in its last step."""
    if active():
        for b in net.buffers():
            dist.broadcast(b, 0)


def sum_across(*values):
    """Sum tensors / numbers over all ranks (the same types back)."""
    if not active():
        return values
    device = next((v.device for v in values if torch.is_tensor(v)), torch.device("cpu"))
    if dist.get_backend() == "nccl":
        device = torch.device("cuda", torch.cuda.current_device())
    flat = torch.stack([torch.as_tensor(v, dtype=torch.float64, device=device).reshape(()) for v in values])
    dist.all_reduce(flat)
    return tuple(flat[i].to(v.device, v.dtype) if torch.is_tensor(v) else type(v)(flat[i].item())
                 for i, v in enumerate(values))


def gather(proba: np.ndarray, y: np.ndarray, loss: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Reassemble the strided evaluation shards of all ranks into the original order; mean loss."""
    if not active():
        return proba, y, loss
    parts: list = [None] * world_size()
    dist.all_gather_object(parts, (proba, y, loss))
    n = sum(len(p[1]) for p in parts)
    out_p, out_y = np.empty((n,) + proba.shape[1:], dtype=proba.dtype), np.empty(n, dtype=y.dtype)
    for r, (p, t, _) in enumerate(parts):
        out_p[r::len(parts)], out_y[r::len(parts)] = p, t
    return out_p, out_y, sum(loss_r * len(t) for _, t, loss_r in parts) / max(n, 1)
