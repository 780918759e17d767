"""Where the CNN runs and in which precision, as one small object the loop carries.

nanoGPT's pattern: on CPU the autocast context is a no-op and the GradScaler is disabled (its calls
pass straight through), so the training loop has a single code path for CPU and GPU.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch

from genreclf.errors import UserError
from genreclf.models.cnn import distributed
from genreclf.nets.transforms import normalize


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    available = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    if name.split(":")[0] not in available:
        raise UserError(f"device={name!r}: use auto, cpu, cuda or mps")
    if not available[name.split(":")[0]]:
        raise UserError(f"device={name!r} is not available on this machine; use device=auto or cpu")
    return torch.device(name)


@dataclass
class Runtime:
    """The device, its autocast context and loss scaler, and the memory format of image batches."""
    device: torch.device
    autocast: Any                     # a reusable context manager (torch.autocast or a no-op)
    scaler: torch.amp.GradScaler
    channels_last: bool

    @classmethod
    def create(cls, name: str = "auto") -> Runtime:
        """bf16 autocast where supported, fp16 + loss scaling on older GPUs, fp32 (no-ops) elsewhere."""
        device = distributed.local_device(pick_device(name))  # torchrun on GPUs: this process's GPU
        if device.type == "cuda":
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            return cls(device, torch.autocast("cuda", dtype=dtype),
                       torch.amp.GradScaler("cuda", enabled=dtype == torch.float16), True)
        return cls(device, contextlib.nullcontext(), torch.amp.GradScaler("cpu", enabled=False), False)

    def images(self, batch: torch.Tensor) -> torch.Tensor:
        """A uint8 image batch from a loader -> normalised on the device (in the layout the model uses)."""
        return normalize(batch.to(self.device, non_blocking=True), self.channels_last)

    def sync(self) -> None:
        """Wait for queued GPU work, so wall-clock timings mean something."""
        if self.device.type == "cuda":
            torch.cuda.synchronize()
