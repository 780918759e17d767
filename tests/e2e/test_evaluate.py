"""evaluate end to end on generated covers: the printed table, the intervals, one child run per model."""
from __future__ import annotations

import json

import mlflow
import pandas as pd
import pytest

from genreclf import config as C
from genreclf.data.covers import load_covers
from genreclf.entrypoints import evaluate
from genreclf.errors import UserError
from genreclf.evaluation.splits import repeated_splits

DATA = {"data": "synthetic:12", "genres": "HipHop,Rock,Jazz", "cache_size": 48, "experiment": "evaluate-test"}
# two splits (the least that gives an interval), a 1-epoch CNN at 32 px, one timed cover; the learning
# curve runs through the same model runners as the table, so the cheap forest and majority class suffice
TINY = {"repeats": 2, "cnn_size": 32, "cnn_epochs": 1, "learning_curve": "3", "curve_models": "majority,rf_ours",
        "speed_covers": 1}


def resolved_for(**explicit) -> C.Resolved:
    return C.Resolved("evaluate", C.resolve(None, {**DATA, **TINY, **explicit}, "data", "evaluate"))


def test_evaluate_logs_table_intervals_and_child_runs(workdir, capsys):
    result = evaluate.main(resolved_for())
    printed = capsys.readouterr().out
    table = result["table"]
    assert list(table["model"]) == ["majority", "rf_reference", "rf_ours", "cnn", "ensemble", "probe", "fusion"]
    assert (table["splits"] == 2).all()
    assert ((table["accuracy_low"] <= table["accuracy"]) & (table["accuracy"] <= table["accuracy_high"])).all()
    assert ((0 <= table["accuracy_low"]) & (table["accuracy_high"] <= 1)).all()
    majority = table.set_index("model").loc["majority"]
    assert majority["accuracy"] == pytest.approx(1 / 3)  # balanced genres: the majority class is right 1 in 3
    assert table.set_index("model").loc["rf_ours", "accuracy"] > 0.6  # generated genres are easy to tell apart
    for line in ("| model | accuracy | macro-F1 | F1 HipHop | F1 Rock | F1 Jazz | s/split |",
                 "| majority class | 33.3 % [33.3, 33.3] |", "feature extraction: ours", "wall time",
                 "note: with 2 splits the 95 % intervals are wide"):
        assert line in printed, line
    assert result["speed"]["features_speed_ratio"] > 0

    client = mlflow.MlflowClient()
    parent = client.get_run(result["run_id"])
    files = {f.path for f in client.list_artifacts(parent.info.run_id, "evaluation")}
    assert {"evaluation/summary.md", "evaluation/summary.csv", "evaluation/comparison.png",
            "evaluation/learning_curve.png", "evaluation/learning_curve.csv"} <= files
    assert parent.data.metrics["majority_accuracy"] == pytest.approx(1 / 3)
    children = client.search_runs([parent.info.experiment_id],
                                  f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert sorted(c.info.run_name for c in children) == sorted(table["model"])
    ensemble = next(c for c in children if c.info.run_name == "ensemble")
    assert {"accuracy", "accuracy_low", "accuracy_high", "macro_f1", "f1_Jazz"} <= set(ensemble.data.metrics)
    assert table.set_index("model").loc["probe", "accuracy"] > 0.6  # ImageNet features tell generated genres apart
    cm = json.loads(open(client.download_artifacts(ensemble.info.run_id, "evaluation/confusion_matrix.json")).read())
    assert sum(map(sum, cm["counts"])) == 2 * len(repeated_splits(
        load_covers(C.DataConfig(**DATA)), C.DataConfig(**DATA), 1)[0].indices("test"))
    curve = pd.read_csv(client.download_artifacts(parent.info.run_id, "evaluation/learning_curve.csv"))
    assert set(curve["model"]) == {"majority", "rf_ours"} and sorted(set(curve["train_per_genre"])) == [3, 8]
    assert ((curve["accuracy_low"] <= curve["accuracy"]) & (curve["accuracy"] <= curve["accuracy_high"])).all()



def test_speed_check_runs_only_with_the_reference_row(workdir, capsys):
    result = evaluate.main(resolved_for(models="majority,rf_ours", learning_curve=""))
    assert result["speed"] == {} and "feature extraction" not in capsys.readouterr().out


def test_finetune_row_trains_the_pretrained_network_on_each_split(workdir, capsys):
    result = evaluate.main(resolved_for(models="majority,finetune", finetune_epochs=2, finetune_size=64,
                                        learning_curve=""))
    rows = result["table"].set_index("model")
    assert list(rows.index) == ["majority", "finetune"] and (rows["splits"] == 2).all()
    assert rows.loc["finetune", "accuracy"] > rows.loc["majority", "accuracy"] + 0.2  # ImageNet features learn

@pytest.mark.parametrize("explicit, message", [
    ({"models": "rf_ours,svm"}, "unknown model(s) ['svm']"),
    ({"learning_curve": "10,many"}, "learning_curve='10,many'"),
    ({"repeats": 0}, "repeats=0"),
    ({"cnn_size": 16}, "cnn_size=16: allowed range is [32, 1024]"),  # checked before any covers load
])
def test_bad_parameters_are_clear_errors(workdir, explicit, message):
    with pytest.raises(UserError) as err:
        evaluate.main(resolved_for(**explicit))
    assert message in str(err.value)
