"""The CNN's CUDA path on a GPU machine that has PyTorch but not MLflow (the domain layer needs none).

Trains the same from-scratch CNN on the same synthetic covers on ``cuda`` (bf16 autocast, channels_last)
and on the CPU, in one run, and prints per-epoch throughput and the final metrics side by side:

    python tools/gpu_check.py --per_genre 64 --image_size 128 --epochs 3

Under torchrun, ``--ddp`` trains through DistributedDataParallel on NCCL (one process per GPU; also with one
process, where ``train_cnn`` would not form a group, so the sampler / all-reduce / gather path runs on
NCCL), and ``--same_gpu_probe`` asks NCCL for an all-reduce between ranks that share one GPU:

    torchrun --standalone --nproc-per-node 1 tools/gpu_check.py --ddp --devices cuda
    torchrun --standalone --nproc-per-node 2 tools/gpu_check.py --same_gpu_probe
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch
import torch.distributed as dist

from genreclf.config import CNNConfig, DataConfig
from genreclf.data.covers import load_covers
from genreclf.metrics import classification_metrics
from genreclf.models.cnn import distributed
from genreclf.models.cnn.fit import fit, predict


def train_on(device: str, covers, args) -> dict:
    cfg = CNNConfig(backbone=args.backbone, pretrained=False, epochs=args.epochs, image_size=args.image_size,
                    batch_size=args.batch_size, device=device, workers=args.workers, patience=args.epochs,
                    gradcam_per_genre=0, tta=False)
    start = time.perf_counter()
    result = fit(covers, cfg, use_embeddings=False, progress=False)
    seconds = time.perf_counter() - start
    test_idx = covers.indices("test")
    proba = predict(result.model, covers, test_idx, cfg, result.device)
    test = classification_metrics(covers.labels[test_idx], proba, covers.genres, "test")
    return {"device": str(result.device), "seconds": round(seconds, 2),
            "images_per_s": [round(h["images_per_s"], 1) for h in result.history],
            "test_accuracy": round(test["test_accuracy"], 4), "test_macro_f1": round(test["test_macro_f1"], 4)}


def join_nccl(gpu: int) -> None:
    torch.cuda.set_device(gpu)
    dist.init_process_group("nccl", device_id=torch.device("cuda", gpu))


def same_gpu_probe() -> dict:
    """Every rank on GPU 0: NCCL's answer to a sum over ranks that share a device (result or error)."""
    try:
        join_nccl(0)
        value = torch.ones(1, device="cuda") * (dist.get_rank() + 1)
        dist.all_reduce(value)
        torch.cuda.synchronize()
        return {"rank": dist.get_rank(), "world": dist.get_world_size(), "all_reduce": float(value.item())}
    except Exception as exc:  # the probe reports whatever NCCL says
        return {"rank": int(os.environ.get("RANK", 0)), "error": f"{type(exc).__name__}: {str(exc)[:300]}"}


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--per_genre", type=int, default=64)
    p.add_argument("--image_size", type=int, default=128)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--devices", default="cuda,cpu")
    p.add_argument("--ddp", action="store_true", help="under torchrun: DDP on NCCL, one process per GPU")
    p.add_argument("--same_gpu_probe", action="store_true", help="under torchrun: NCCL with ranks sharing GPU 0")
    args = p.parse_args(argv)
    if args.same_gpu_probe:
        print(json.dumps(same_gpu_probe()), flush=True)
        return 0
    if args.ddp:
        join_nccl(distributed.local_rank())
    covers = load_covers(DataConfig(data=f"synthetic:{args.per_genre}", cache_size=max(64, args.image_size)),
                         progress=False)
    print(json.dumps({"torch": torch.__version__, "cuda": torch.cuda.is_available(),
                      "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                      "covers": len(covers), "mlflow_imported": "mlflow" in sys.modules,
                      "cpu_threads": torch.get_num_threads(), "cores": os.cpu_count(),
                      "process_group": [dist.get_backend(), dist.get_world_size()] if distributed.active() else None,
                      "nccl": ".".join(map(str, torch.cuda.nccl.version())) if torch.cuda.is_available() else None}),
          flush=True)
    for device in args.devices.split(","):
        result = train_on(device, covers, args)
        if distributed.is_main():
            print(json.dumps(result), flush=True)
    distributed.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
