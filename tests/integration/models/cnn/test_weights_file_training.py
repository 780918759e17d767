"""Training starts from a weights file in torchvision's published layout and fine-tunes it (here, not in
the unit tests: it trains for an epoch); the file is written from a randomly initialised model, offline."""
from __future__ import annotations

import pytest
import torch
import torchvision

from genreclf import config as C
from genreclf.data.covers import load_covers
from genreclf.models.cnn import training

PUBLISHED = "resnet18-f37072fd.pth"  # torchvision's file name for ResNet18_Weights.IMAGENET1K_V1


@pytest.fixture
def imagenet_file(tmp_path):
    torch.manual_seed(123)
    state = torchvision.models.resnet18(num_classes=1000).state_dict()
    path = tmp_path / PUBLISHED
    torch.save(state, path)
    return path, state


def test_training_starts_from_the_file_and_fine_tunes_it(imagenet_file, workdir):
    path, state = imagenet_file
    covers = load_covers(C.DataConfig(data="synthetic:12", cache_size=32), progress=False)
    cfg = C.build(C.CNNConfig, None, dict(backbone="resnet18", pretrained=True, weights_path=str(path),
                                          freeze="layer2", epochs=1,
                                          image_size=32, batch_size=8, lr=0.01, patience=0, device="cpu",
                                          workers=0, seed=1))
    result = training.fit(covers, cfg, progress=False)
    tuned = {k: v.cpu() for k, v in result.model.state_dict().items()}
    frozen = [k for k in state if k.split(".")[0] in ("conv1", "bn1", "layer1", "layer2")]
    trained = [k for k in state if k.startswith("layer4.") and k.endswith("weight")]
    assert frozen and all(torch.equal(tuned[k], state[k]) for k in frozen)  # came from the file, kept
    assert trained and any(not torch.equal(tuned[k], state[k]) for k in trained)  # fine-tuned
    assert len(result.history) == 1
