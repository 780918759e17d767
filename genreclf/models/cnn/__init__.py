"""The CNN family: a torchvision or timm backbone, fine-tuned or trained from scratch (``album-genre-cnn``)."""
from genreclf import CNN_MODEL_NAME
from genreclf.models.family import EvalRow, Family, register_family

FAMILY = register_family(Family(
    name="cnn", model_name=CNN_MODEL_NAME, section="cnn",
    summary="fine-tune a pretrained CNN (or train one from scratch) and register album-genre-cnn",
    train="genreclf.entrypoints.train_cnn:main", load="genreclf.models.cnn.predictor:load",
    rows={"cnn": EvalRow("CNN from scratch", "genreclf.models.cnn.evaluate:from_scratch"),
          "finetune": EvalRow("pretrained CNN, fine-tuned", "genreclf.models.cnn.evaluate:fine_tuned")}))
