"""The Random Forest baseline on the 25 hand-crafted features (``album-genre-rf``)."""
from genreclf import RF_MODEL_NAME
from genreclf.models.family import EvalRow, Family, register_family

FAMILY = register_family(Family(
    name="rf", model_name=RF_MODEL_NAME, section="rf",
    summary="train the Random Forest baseline on the 25 CV features and register album-genre-rf",
    fit="genreclf.models.rf.family:fit", run_name="genreclf.models.rf.family:run_name",
    load="genreclf.models.rf.family:load",
    rows={"rf_ours": EvalRow("RF, our 25 features", "genreclf.models.rf.family:evaluate_rf",
                             {"cover25": "genreclf.models.rf.family:cover25_matrix"})}))
