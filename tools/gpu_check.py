"""The CNN's CUDA path on a GPU machine that has PyTorch but not MLflow (the domain layer needs none).

Trains the same from-scratch CNN on the same synthetic covers on ``cuda`` (bf16 autocast, channels_last)
and on the CPU, in one run, and prints per-epoch throughput and the final metrics side by side:

    python tools/gpu_check.py --per_genre 64 --image_size 128 --epochs 3
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

from genreclf.cnn.fit import fit, predict
from genreclf.config import CNNConfig, DataConfig
from genreclf.data.covers import load_covers
from genreclf.metrics import classification_metrics


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


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--per_genre", type=int, default=64)
    p.add_argument("--image_size", type=int, default=128)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--devices", default="cuda,cpu")
    args = p.parse_args(argv)
    covers = load_covers(DataConfig(data=f"synthetic:{args.per_genre}", cache_size=max(64, args.image_size)),
                         progress=False)
    print(json.dumps({"torch": torch.__version__, "cuda": torch.cuda.is_available(),
                      "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                      "covers": len(covers), "mlflow_imported": "mlflow" in sys.modules,
                      "cpu_threads": torch.get_num_threads(), "cores": os.cpu_count()}), flush=True)
    for device in args.devices.split(","):
        print(json.dumps(train_on(device, covers, args)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
