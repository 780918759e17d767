"""Promotion rules on real registered RF versions: the first challenger becomes champion, a worse one
does not move it, the margin is respected, decisions are written to the run and the version tags."""
from __future__ import annotations

import pytest

from genreclf import RF_MODEL_NAME
from genreclf import config as C
from genreclf.entrypoints import promote, train
from genreclf.tracking import registry
from genreclf.tracking import runs as tracking

DATA = {"data": "synthetic:12", "cache_size": 64}
STRONG = {"n_estimators": 40}
WEAK = {"n_estimators": 1, "max_depth": 1}  # a single stump: at most 2 of the 4 genres


def _train(**rf) -> str:
    out = train.main(C.Resolved("train_rf", C.resolve(None, {**DATA, **rf}, "data", "rf")))
    return str(out["model_version"])


def _promote(margin: float = 0.0, **extra) -> dict:
    params = {**DATA, "model_name": RF_MODEL_NAME, "margin": margin, **extra}
    return promote.main(C.Resolved("promote", C.resolve(None, params, "data", "promote")))[RF_MODEL_NAME]


def _aliases() -> dict[str, str]:
    return registry.registered_aliases(RF_MODEL_NAME)


def _tags(version: str) -> dict[str, str]:
    return registry.model_version(RF_MODEL_NAME, version).tags


def test_promotion_rules(workdir):
    # 1. the first valid challenger becomes champion, whatever its score
    weak = _train(**WEAK)
    assert _aliases() == {"challenger": weak}
    first = _promote()
    assert first["decision"] == "promoted" and first["champion_version"] is None
    assert _aliases() == {"challenger": weak, "champion": weak}
    tags = _tags(weak)
    assert tags["promotion_decision"] == "promoted" and tags["champion_score"] == ""
    weak_score = float(tags["promotion_score"])
    # the score is recomputed through the pyfunc on the test split: it equals what training logged
    assert weak_score == pytest.approx(float(tags["test_macro_f1"]), abs=1e-3)

    # 2. a better challenger: not better by MORE than the margin -> rejected; by more -> promoted
    strong = _train(**STRONG)
    assert _aliases() == {"challenger": strong, "champion": weak}
    gap = float(_tags(strong)["test_macro_f1"]) - weak_score  # what promote will measure (step 1)
    assert gap > 0.05, "the stump should be clearly worse than the forest"
    rejected = _promote(margin=round(gap + 0.001, 6))
    assert rejected["decision"] == "rejected"
    assert rejected["challenger_score"] - rejected["champion_score"] == pytest.approx(gap, abs=1e-3)
    assert _aliases()["champion"] == weak
    assert _promote(margin=round(gap - 0.001, 6))["decision"] == "promoted"
    assert _aliases() == {"challenger": strong, "champion": strong}
    tags = _tags(strong)
    assert tags["promotion_decision"] == "promoted" and tags["compared_with"] == weak
    assert float(tags["champion_score"]) == pytest.approx(weak_score, abs=1e-6)

    # 3. a worse challenger does not move the champion, and its tags say why
    worse = _train(n_estimators=2, max_depth=1)
    decision = _promote()
    assert decision["decision"] == "rejected" and _aliases() == {"challenger": worse, "champion": strong}
    tags = _tags(worse)
    assert tags["promotion_decision"] == "rejected" and tags["compared_with"] == strong
    assert float(tags["promotion_score"]) <= float(tags["champion_score"])

    # 4. promoting the champion again changes nothing
    registry.set_alias(RF_MODEL_NAME, "challenger", strong)
    assert _promote()["decision"] == "kept" and _aliases()["champion"] == strong
    assert _tags(strong)["promotion_decision"] == "promoted"  # the decision that made it champion stays

    # the decisions and both scores are on the promote runs; aliases only, never stages
    runs = tracking.search_runs("album-genre", "tags.entry_point = 'promote'")
    assert len(runs) == 5 and all(r.info.status == "FINISHED" for r in runs)
    last = runs[0]
    assert last.data.tags["promotion_decision.rf"] == "kept"
    assert {"rf_challenger_test_macro_f1", "rf_champion_test_macro_f1", "rf_promoted"} <= set(last.data.metrics)
    assert all(mv.current_stage == "None" for mv in tracking.client().search_model_versions(f"name='{RF_MODEL_NAME}'"))


def test_promote_refuses_unfair_or_unknown_comparisons(workdir):
    with pytest.raises(promote.PromotionError, match="not a registered model"):
        _promote()
    _train(**STRONG)
    # other covers than the version was trained on: its test score would not be comparable
    with pytest.raises(promote.PromotionError, match="trained on other covers.*data digest"):
        promote.main(C.Resolved("promote", C.resolve(
            None, {"data": "synthetic:10", "cache_size": 64, "model_name": RF_MODEL_NAME}, "data", "promote")))
    with pytest.raises(promote.PromotionError, match="not a test metric"):
        _promote(metric="val_accuracy")
    with pytest.raises(C.ConfigError, match=r"parameter margin=-0.1: allowed range is \[0.0, 1.0\]"):
        _promote(margin=-0.1)
    assert "champion" not in _aliases()  # nothing moved on any error
    assert _promote(metric="test_accuracy")["decision"] == "promoted"
