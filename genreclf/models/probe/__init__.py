"""The pretrained linear probe: frozen ImageNet EfficientNet-Lite embeddings + a linear head
(``album-genre-probe``); and its fusion with the ensemble in ``evaluate``."""
from genreclf.models.family import EvalRow, Family, register_family

EMBEDDINGS = {"embeddings": "genreclf.models.probe.family:embedding_table"}
DESCRIPTORS = {"descriptors": "genreclf.models.ensemble.family:descriptor_matrix"}

FAMILY = register_family(Family(
    name="probe", model_name="album-genre-probe", section="probe",
    summary="fit a linear head on frozen ImageNet EfficientNet-Lite embeddings, register album-genre-probe",
    fit="genreclf.models.probe.family:fit", run_name="genreclf.models.probe.family:run_name",
    load="genreclf.models.probe.family:load",
    rows={"probe": EvalRow("pretrained probe (EfficientNet-Lite0, linear head)",
                           "genreclf.models.probe.family:evaluate_probe", EMBEDDINGS),
          "fusion": EvalRow("fusion: ensemble + pretrained probe", "genreclf.models.probe.fusion:evaluate_fusion",
                            {**EMBEDDINGS, **DESCRIPTORS})}))
