"""Entry point ``promote``: challenger vs champion on the same held-out test split.

For each model name, score @challenger and @champion on the test split the data parameters give,
predicting through each version's pyfunc exactly as a client would, and move @champion only if the
challenger is better by more than ``margin``. Versions trained on other covers are refused: their
test score here would not be comparable.
"""
from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pandas as pd
import yaml

from genreclf.config import DEFAULT_DATA, DataConfig, PromoteConfig, Resolved, build
from genreclf.data.covers import CoverSet, load_covers
from genreclf.data.images import encode
from genreclf.entrypoints.skeleton import entry_run
from genreclf.errors import UserError
from genreclf.metrics import classification_metrics
from genreclf.models import FAMILIES, family_of_model
from genreclf.serving.contract import IMAGE_COLUMN
from genreclf.tracking import registry, runs
from genreclf.tracking.registry import CHALLENGER, CHAMPION

log = logging.getLogger(__name__)
BATCH = 64  # covers per predict call: bounded memory for large test splits


class PromotionError(UserError):
    """Challenger and champion cannot be compared fairly (other data or genres, unknown metric)."""


def main(resolved: Resolved) -> dict:
    cfg = resolved.promote
    runs.configure(resolved.data.experiment)
    names = model_names(cfg.model_name)  # before loading covers: a wrong name fails fast
    # families trained on different covers are each scored on their own test split
    groups = [(load_covers(data), members) for data, members in data_groups(names, resolved.data)]
    known = classification_metrics(np.zeros(1, int), np.ones((1, len(groups[0][0].genres))), groups[0][0].genres,
                                   "test")
    if cfg.metric not in known:
        raise PromotionError(f"metric={cfg.metric!r} is not a test metric; choose one of {sorted(known)}")
    results: dict[str, dict] = {}
    label = "all" if cfg.model_name == "all" else short_name(cfg.model_name)
    params = {"model_name": cfg.model_name, "margin": cfg.margin, "metric": cfg.metric}
    with entry_run(resolved, groups[0][0] if len(groups) == 1 else None, f"promote-{label}", "registry",
                   params=params) as run_id:
        rankings = []
        for covers, members in groups:
            test = covers.indices("test")
            # every model sees the very same encoded bytes (PNG: lossless, so the cached pixels exactly)
            encoded = [encode(covers.images[i], "PNG") for i in test]
            for name in members:
                results[name] = promote_one(name, covers, covers.labels[test], encoded, cfg, run_id)
            ranked = rank_champions({name: results[name] for name in members})
            if len(ranked) > 1:  # champions of several families on one test split: say which one to use
                rankings.append(ranked)
                print(f"champions by {cfg.metric} on the {len(test)} test covers of data={covers.source}: "
                      + "; ".join(f"{r['model']} v{r['version']} {r['score']:.4f}" for r in ranked))
        runs.log_json(results, "promotion/decisions.json")
        if rankings:
            runs.log_json(rankings, "promotion/ranking.json")
        if len(groups) == 1 and rankings:
            runs.set_tags({"best_model": f"{rankings[0][0]['model']}@{CHAMPION}"})
    return results


def data_groups(names: list[str], data: DataConfig) -> list[tuple[DataConfig, list[str]]]:
    """The names grouped by the data to score them on: ``data`` when given, otherwise the data each
    challenger was trained on (see ``recorded_configs``), first group first in ``names`` order."""
    if data.data != DEFAULT_DATA:
        return [(data, names)]
    return group_by_data(names, recorded_configs(names, data, CHALLENGER), data)


def group_by_data(names: list[str], recorded: dict[str, DataConfig],
                  default: DataConfig) -> list[tuple[DataConfig, list[str]]]:
    groups: dict[tuple, tuple[DataConfig, list[str]]] = {}
    for name in names:
        data = recorded.get(name, default)
        groups.setdefault(dataclasses.astuple(data), (data, []))[1].append(name)
    return list(groups.values())


def recorded_data(names: list[str], data: DataConfig, alias: str = CHALLENGER) -> DataConfig:
    """Without a ``data`` parameter (the built-in default), the one data configuration the ``alias``
    versions were trained on; an error if they differ."""
    if data.data != DEFAULT_DATA:
        return data
    recorded = recorded_configs(names, data, alias)
    if len({dataclasses.astuple(d) for d in recorded.values()}) > 1:
        raise PromotionError("the versions were trained on different data ("
                             + "; ".join(f"{n}: data={d.data} genres={d.genres}" for n, d in recorded.items())
                             + ")")
    return next(iter(recorded.values()), data)


def recorded_configs(names: list[str], data: DataConfig, alias: str) -> dict[str, DataConfig]:
    """The data section each ``alias`` version's source run logged (its ``config.yaml``), by name - so
    no one has to repeat ``data=...`` and nothing reaches for Hugging Face."""
    recorded = {}
    for name in names:
        version = (registry.registered_aliases(name) or {}).get(alias)
        run_id = version and registry.model_version(name, version).run_id
        if not run_id:
            continue
        try:
            with open(runs.download(f"runs:/{run_id}/config.yaml")) as f:
                section = (yaml.safe_load(f) or {}).get("data") or {}
        except Exception as exc:  # an old or deleted source run: keep the parameters as given
            log.warning("%s v%s: no recorded data configuration (%s)", name, version, exc)
            continue
        recorded[name] = dataclasses.replace(build(DataConfig, section), experiment=data.experiment)
        log.info("%s: using the data its @%s was trained on (data=%s, genres=%s)", name, alias,
                 recorded[name].data, recorded[name].genres)
    return recorded


def rank_champions(results: dict[str, dict]) -> list[dict]:
    """Each family's champion after the decisions, best first by the promote metric (all were scored on
    the same test covers, so the scores compare across families)."""
    ranked = []
    for name, r in results.items():
        if r.get("champion_after") is None:
            continue
        score = r["challenger_score"] if r["champion_after"] == r["challenger_version"] else r["champion_score"]
        ranked.append({"model": name, "version": r["champion_after"], "score": score, "metric": r["metric"]})
    return sorted(ranked, key=lambda r: -r["score"])


def candidates() -> list[str]:
    """The registered model names ``model_name=all`` considers: one per model family."""
    return [f.model_name for f in FAMILIES.values()]


def short_name(model_name: str) -> str:
    """The prefix of the promote run's metrics and tags for a model: its family's name."""
    family = family_of_model(model_name)
    return family.name if family else model_name


def model_names(model_name: str) -> list[str]:
    registered = registry.registered_model_names()
    if model_name == "all":
        names = [n for n in candidates() if n in registered]
        if not names:
            trains = " / ".join(f.entry_point for f in FAMILIES.values())
            raise PromotionError(f"nothing to promote: none of {', '.join(candidates())} is registered yet "
                                 f"(train first: genreclf {trains}, or mlflow run .)")
        return names
    if model_name not in registered:
        raise PromotionError(f"model_name={model_name!r} is not a registered model; registered: "
                             f"{registered or 'none yet'} (or model_name=all)")
    return [model_name]


def decide(score: float, champion: str | None, challenger: str, champion_score: float | None,
           cfg: PromoteConfig) -> tuple[str, str]:
    """(decision, reason) of one comparison."""
    if champion is None:
        return "promoted", "no champion yet: the first valid challenger becomes champion"
    if champion == challenger:
        return "kept", "the challenger already is the champion"
    assert champion_score is not None
    better = score > champion_score + cfg.margin
    return ("promoted" if better else "rejected",
            f"{cfg.metric} {score:.4f} {'>' if better else '<='} champion v{champion} {champion_score:.4f} "
            f"+ margin {cfg.margin}")


def promote_one(name: str, covers: CoverSet, labels: np.ndarray, encoded: list[bytes], cfg: PromoteConfig,
                run_id: str) -> dict:
    aliases = registry.registered_aliases(name) or {}
    challenger, champion = aliases.get(CHALLENGER), aliases.get(CHAMPION)
    short, metric = short_name(name), cfg.metric
    if challenger is None:
        if cfg.model_name != "all":
            raise PromotionError(f"{name} has no @{CHALLENGER} version (aliases: {sorted(aliases) or 'none'})")
        log.warning("%s: no @%s version, nothing to promote", name, CHALLENGER)
        return {"decision": "skipped", "reason": f"no @{CHALLENGER} version"}
    check_data(name, challenger, covers, CHALLENGER)
    if champion is not None and champion != challenger:
        check_data(name, champion, covers, CHAMPION)  # before scoring anything: fail fast and clearly
    score = score_version(name, challenger, encoded, labels, covers.genres)[metric]
    champion_score = None
    if champion == challenger:
        champion_score = score
    elif champion is not None:
        champion_score = score_version(name, champion, encoded, labels, covers.genres)[metric]
    decision, reason = decide(score, champion, challenger, champion_score, cfg)
    if decision == "promoted":
        registry.set_alias(name, CHAMPION, challenger)
    record = {"decision": decision, "reason": reason, "metric": metric, "margin": cfg.margin,
              "challenger_version": challenger, "challenger_score": score,
              "champion_version": champion, "champion_score": champion_score,
              "champion_after": challenger if decision == "promoted" else champion,
              "test_covers": len(labels), "run_id": run_id}
    if decision != "kept":  # a kept champion keeps the tags of the decision that made it champion
        registry.set_version_tags(name, challenger, {
            "promotion_decision": decision, "promotion_reason": reason, "promotion_metric": metric,
            "promotion_margin": cfg.margin, "promotion_score": f"{score:.6f}",
            "champion_score": "" if champion_score is None else f"{champion_score:.6f}",
            "compared_with": "" if champion is None else champion, "promotion_run_id": run_id})
    runs.log_metrics({f"{short}_challenger_{metric}": score, f"{short}_champion_{metric}": champion_score,
                      f"{short}_promoted": float(decision == "promoted")})
    runs.set_tags({f"promotion_decision.{short}": decision, f"champion_version.{short}": record["champion_after"]})
    print(f"{name}: {decision} - {reason}; @{CHAMPION} is v{record['champion_after']}")
    return record


def check_data(name: str, version: str, covers: CoverSet, alias: str) -> None:
    """A version may only be scored on the split it was evaluated on: its data digest must match."""
    mv = registry.model_version(name, version)
    tags = dict(mv.tags)
    if not {"data_digest", "data_source"} <= set(tags) and mv.run_id:
        try:
            tags = {**runs.get_run(mv.run_id).data.tags, **tags}
        except Exception:  # the source run may have been deleted; the missing tag is reported below
            pass
    tag = tags.get("data_digest", "")
    if not tag:
        raise PromotionError(f"{name} v{version} (@{alias}) has no data_digest tag, so it cannot be checked "
                             "against this test split; re-register it with genreclf "
                             f"{(family_of_model(name) or FAMILIES['rf']).entry_point}")
    if not covers.digest.startswith(tag):
        hint = (f"; to start over on new data, remove the alias first: MlflowClient()."
                f"delete_registered_model_alias({name!r}, {CHAMPION!r})") if alias == CHAMPION else ""
        raise PromotionError(
            f"{name} v{version} (@{alias}) was trained on other covers (data digest {tag}, data="
            f"{tags.get('data_source') or '?'}) than these data parameters give (digest {covers.digest[:20]}, "
            f"data={covers.source}): its test score here would not be comparable (its training covers may be "
            "in this test split). Pass the data parameters it was trained with (data, genres, per_genre, "
            f"seed, val_frac, test_frac, cache_size, dedup_distance){hint}")


def score_version(name: str, version: str, encoded: list[bytes], labels: np.ndarray,
                  genres: list[str]) -> dict[str, float]:
    """Test metrics of one version, predicting through its pyfunc exactly as a client would."""
    model = registry.load_pyfunc(f"models:/{name}/{version}")
    frame = pd.concat([model.predict(pd.DataFrame({IMAGE_COLUMN: encoded[s:s + BATCH]}))
                       for s in range(0, len(encoded), BATCH)], ignore_index=True)
    columns = [f"p_{g}" for g in genres]
    if not set(columns) <= set(frame.columns):
        theirs = [c[2:] for c in frame.columns if c.startswith("p_")]
        raise PromotionError(f"{name} v{version} predicts genres {theirs}, not this data's {genres}")
    return classification_metrics(labels, frame[columns].to_numpy(), genres, "test")
