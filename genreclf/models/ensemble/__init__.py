"""The strongest hand-crafted model: a soft vote of two forests and an RBF SVM on cover descriptors
(``album-genre-ensemble``)."""
from genreclf.models.family import EvalRow, Family, register_family

FAMILY = register_family(Family(
    name="ensemble", model_name="album-genre-ensemble", section="ensemble",
    summary="train the soft vote of two forests and an SVM on cover descriptors, register album-genre-ensemble",
    fit="genreclf.models.ensemble.family:fit",
    run_name="genreclf.models.ensemble.family:run_name", load="genreclf.models.ensemble.family:load",
    rows={"ensemble": EvalRow("ensemble (two forests + SVM)", "genreclf.models.ensemble.family:evaluate_vote",
                              {"descriptors": "genreclf.models.ensemble.family:descriptor_matrix"})}))
