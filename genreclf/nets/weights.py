"""Weights files: reading a state_dict safely and loading it into a model by name, with shape checks.

Shared by the hub, wheel and local-file paths of ``backbones`` and ``pretrained``.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from genreclf.errors import UserError

log = logging.getLogger(__name__)


class WeightsUnavailableError(UserError):
    """Pretrained weights are neither cached nor downloadable (offline), or a weights file is bad."""




def load_state_file(p: Path) -> dict[str, torch.Tensor]:
    """A local state_dict (tensors only: ``weights_only``), or a checkpoint's ``model`` entry."""
    if not p.is_file():
        raise WeightsUnavailableError(f"weights_path={str(p)!r}: no such file")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and tensor errors all mean "not a state_dict we can read"
        raise WeightsUnavailableError(f"weights_path={str(p)!r} is not a readable torch state_dict ({exc})") from None
    state = state.get("model", state) if isinstance(state, dict) else state
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsUnavailableError(f"weights_path={str(p)!r} holds a {type(state).__name__}, "
                                      f"not a state_dict of tensors")
    return state


def load_local_state(model: nn.Module, backbone: str, head: str, state: dict[str, torch.Tensor], p: Path) -> None:
    """Load a state_dict in the model's own layout (torchvision's published files, our checkpoints).

    Every backbone tensor must be in the file with the model's shape; only the classification head
    may differ (an ImageNet file has a 1000-class head, which is replaced anyway). The error names
    the file and the first mismatch, so a file for another backbone is recognisable at once.
    """
    problem = _first_mismatch(model.state_dict(), state, head + ".")
    if problem:
        raise WeightsUnavailableError(f"weights_path={str(p)!r} does not fit {backbone}: {problem}")
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(usable, strict=False)
    log.info("loaded %d tensors of %s from %s", len(usable), backbone, p)


def _first_mismatch(own: dict, state: dict, head_prefix: str) -> str:
    """'' if ``state`` fits ``own`` outside the head, else a sentence about the first difference."""
    body = [k for k in own if not k.startswith(head_prefix)]
    missing = [k for k in body if k not in state]
    shaped = [k for k in body if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    extra = [k for k in state if k not in own and not k.startswith(head_prefix)]
    if shaped:
        k = shaped[0]
        return (f"{len(shaped)} tensor(s) of another shape, first {k!r}: {tuple(state[k].shape)} in the file, "
                f"{tuple(own[k].shape)} expected")
    if missing:
        hint = f"; the file has keys the model lacks, first {extra[0]!r}" if extra else ""
        return f"{len(missing)} tensor(s) missing, first {missing[0]!r}{hint}"
    if extra:  # e.g. resnet34's file: all of resnet18's tensors fit, plus blocks resnet18 does not have
        return f"{len(extra)} tensor(s) the model lacks (a deeper or other model?), first {extra[0]!r}"
    return ""
