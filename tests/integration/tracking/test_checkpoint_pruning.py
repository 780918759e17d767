"""A finished run keeps only the checkpoints asked for; an unknown choice is named."""
from __future__ import annotations

import mlflow
import pytest

from genreclf.errors import UserError
from genreclf.tracking import checkpoints


@pytest.mark.parametrize("keep,left", [("none", []), ("best", ["checkpoints/best.pt"]),
                                       ("all", ["checkpoints/best.pt", "checkpoints/last.pt"])])
def test_prune_keeps_what_was_asked(workdir, keep, left):
    mlflow.set_experiment("ckpt")
    with mlflow.start_run() as run:
        for name in ("best.pt", "last.pt"):
            (workdir / name).write_bytes(b"weights")
            mlflow.log_artifact(str(workdir / name), "checkpoints")
    checkpoints.prune(run.info.run_id, keep)
    assert sorted(a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id, "checkpoints")) == left


def test_unknown_choice_is_named(workdir):
    with pytest.raises(UserError, match="keep_checkpoints='some'"):
        checkpoints.prune("0" * 32, "some")
