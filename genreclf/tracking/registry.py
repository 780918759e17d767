"""Model registry: aliases (no stages - deprecated), version tags, and promotion.

Every newly registered version of ``album-genre-rf`` / ``album-genre-cnn`` gets the alias
``challenger`` and tags describing where it came from; ``promote`` moves ``champion``.
"""
from __future__ import annotations

import logging
from typing import Any

from genreclf import CNN_MODEL_NAME, RF_MODEL_NAME
from genreclf.errors import UserError
from genreclf.tracking import runs as tracking

log = logging.getLogger(__name__)
CHALLENGER, CHAMPION = "challenger", "champion"


def mark_challenger(name: str, version: str | int, tags: dict[str, Any]) -> None:
    """Tag a freshly registered version and point the ``challenger`` alias at it."""
    client = tracking.client()
    for key, value in tags.items():
        client.set_model_version_tag(name, str(version), key, str(value))
    client.set_registered_model_alias(name, CHALLENGER, str(version))
    log.info("registered %s version %s as @%s", name, version, CHALLENGER)


class ModelNotFound(UserError):
    """No version of a registered model carries the alias asked for."""


def load_alias(name: str, alias: str):
    """(python model, version) behind ``models:/<name>@<alias>``; ModelNotFound when there is none.

    The message says what exists (no such model, or which aliases it has) so callers can show it.
    """
    aliases = tracking.registered_aliases(name)
    if aliases is None:
        raise ModelNotFound(f"no model named {name!r} is registered yet")
    if alias not in aliases:
        raise ModelNotFound(f"{name} has no version with alias @{alias} "
                            f"(aliases: {', '.join('@' + a for a in sorted(aliases)) or 'none'})")
    model = tracking.load_pyfunc(f"models:/{name}/{aliases[alias]}")
    return model.unwrap_python_model(), aliases[alias]


# --- promotion: challenger vs champion on the same held-out test split -----------------------------

SHORT = {RF_MODEL_NAME: "rf", CNN_MODEL_NAME: "cnn"}  # prefixes of the promote run's metrics and tags
BATCH = 64  # covers per predict call: bounded memory for large test splits


class PromotionError(UserError):
    """Challenger and champion cannot be compared fairly (other data or genres, unknown metric)."""


def promote_main(resolved) -> dict:
    """Entry point ``promote``: for each model name, score @challenger and @champion on the test split
    the data parameters give, and move @champion only if the challenger is better by > ``margin``."""
    from genreclf.data.covers import load_covers
    from genreclf.data.images import encode
    from genreclf.metrics import classification_metrics

    data, cfg = resolved.sections["data"], resolved.sections["promote"]
    if cfg.margin < 0:
        raise PromotionError(f"margin={cfg.margin}: must be >= 0 (the challenger must be better by more than it)")
    tracking.configure(data.experiment)
    names = _model_names(cfg.model_name)
    covers = load_covers(recorded_data(names, data))
    known = classification_metrics(covers.labels[:1], [[1.0] * len(covers.genres)], covers.genres, "test")
    if cfg.metric not in known:
        raise PromotionError(f"metric={cfg.metric!r} is not a test metric; choose one of {sorted(known)}")
    test = covers.indices("test")
    # every model sees the very same encoded bytes (PNG: lossless, so the cached pixels exactly)
    encoded = [encode(covers.images[i], "PNG") for i in test]
    results = {}
    label = "all" if cfg.model_name == "all" else SHORT.get(cfg.model_name, cfg.model_name)
    with tracking.start_run(f"promote-{label}", "promote", "registry") as run_id:
        tracking.log_config(resolved)
        tracking.log_new_params({"model_name": cfg.model_name, "margin": cfg.margin, "metric": cfg.metric})
        tracking.log_coverset(covers)
        for name in names:
            results[name] = _promote_one(name, covers, covers.labels[test], encoded, cfg, run_id)
        tracking.log_json(results, "promotion/decisions.json")
    return results


def recorded_data(names: list[str], data):
    """Without a ``data`` parameter (the built-in default), score on the data the challengers were
    trained on: each version's source run logged its resolved configuration (``config.yaml``), data
    section included - so no one has to repeat ``data=...`` and nothing reaches for Hugging Face."""
    import dataclasses

    import yaml

    from genreclf.config import DEFAULT_DATA, DataConfig, build
    if data.data != DEFAULT_DATA:
        return data
    recorded = {}
    for name in names:
        version = (tracking.registered_aliases(name) or {}).get(CHALLENGER)
        run_id = version and tracking.model_version(name, version).run_id
        if not run_id:
            continue
        try:
            text = open(tracking.download(f"runs:/{run_id}/config.yaml")).read()
            section = (yaml.safe_load(text) or {}).get("data") or {}
        except Exception as exc:  # an old or deleted source run: keep the parameters as given
            log.warning("%s v%s: no recorded data configuration (%s)", name, version, exc)
            continue
        recorded[name] = dataclasses.replace(build(DataConfig, section), experiment=data.experiment)
    sources = {(d.data, d.genres) for d in recorded.values()}
    if len(sources) > 1:
        raise PromotionError("the challengers were trained on different data ("
                             + "; ".join(f"{n}: data={d.data} genres={d.genres}" for n, d in recorded.items())
                             + "): promote them one at a time with model_name=<name> and data=...")
    if not recorded:
        return data
    chosen = next(iter(recorded.values()))
    log.info("data not given: scoring on the data the challenger was trained on (data=%s, genres=%s)",
             chosen.data, chosen.genres)
    return chosen


def _model_names(model_name: str) -> list[str]:
    registered = tracking.registered_model_names()
    if model_name == "all":
        names = [n for n in SHORT if n in registered]
        if not names:
            raise PromotionError(f"nothing to promote: neither {' nor '.join(SHORT)} is registered yet "
                                 "(train first: genreclf train_rf / train_cnn, or mlflow run .)")
        return names
    if model_name not in registered:
        raise PromotionError(f"model_name={model_name!r} is not a registered model; registered: "
                             f"{registered or 'none yet'} (or model_name=all)")
    return [model_name]


def _promote_one(name: str, covers, labels, encoded: list[bytes], cfg, run_id: str) -> dict:
    aliases = tracking.registered_aliases(name) or {}
    challenger, champion = aliases.get(CHALLENGER), aliases.get(CHAMPION)
    short, metric = SHORT.get(name, name), cfg.metric
    if challenger is None:
        if cfg.model_name != "all":
            raise PromotionError(f"{name} has no @{CHALLENGER} version (aliases: {sorted(aliases) or 'none'})")
        log.warning("%s: no @%s version, nothing to promote", name, CHALLENGER)
        return {"decision": "skipped", "reason": f"no @{CHALLENGER} version"}
    _check_data(name, challenger, covers, CHALLENGER)
    if champion is not None and champion != challenger:
        _check_data(name, champion, covers, CHAMPION)  # before scoring anything: fail fast and clearly
    score = _score(name, challenger, encoded, labels, covers.genres)[metric]
    champion_score = None
    if champion is None:
        decision, reason = "promoted", "no champion yet: the first valid challenger becomes champion"
    elif champion == challenger:
        decision, reason, champion_score = "kept", "the challenger already is the champion", score
    else:
        champion_score = _score(name, champion, encoded, labels, covers.genres)[metric]
        better = score > champion_score + cfg.margin
        decision = "promoted" if better else "rejected"
        reason = (f"{metric} {score:.4f} {'>' if better else '<='} champion v{champion} "
                  f"{champion_score:.4f} + margin {cfg.margin}")
    if decision == "promoted":
        tracking.set_alias(name, CHAMPION, challenger)
    record = {"decision": decision, "reason": reason, "metric": metric, "margin": cfg.margin,
              "challenger_version": challenger, "challenger_score": score,
              "champion_version": champion, "champion_score": champion_score,
              "champion_after": challenger if decision == "promoted" else champion,
              "test_covers": len(labels), "run_id": run_id}
    if decision != "kept":  # a kept champion keeps the tags of the decision that made it champion
        tracking.set_version_tags(name, challenger, {
            "promotion_decision": decision, "promotion_reason": reason, "promotion_metric": metric,
            "promotion_margin": cfg.margin, "promotion_score": f"{score:.6f}",
            "champion_score": "" if champion_score is None else f"{champion_score:.6f}",
            "compared_with": "" if champion is None else champion, "promotion_run_id": run_id})
    tracking.log_metrics({f"{short}_challenger_{metric}": score, f"{short}_champion_{metric}": champion_score,
                          f"{short}_promoted": float(decision == "promoted")})
    tracking.set_tags({f"promotion_decision.{short}": decision, f"champion_version.{short}": record["champion_after"]})
    log.info("%s: challenger v%s %s=%.4f vs champion %s -> %s (%s)", name, challenger, metric, score,
             f"v{champion} {champion_score:.4f}" if champion_score is not None else "none", decision, reason)
    print(f"{name}: {decision} - {reason}; @{CHAMPION} is v{record['champion_after']}")
    return record


def _check_data(name: str, version: str, covers, alias: str) -> None:
    """A version may only be scored on the split it was evaluated on: its data digest must match."""
    mv = tracking.model_version(name, version)
    tags = dict(mv.tags)
    if not {"data_digest", "data_source"} <= set(tags) and mv.run_id:
        try:
            tags = {**tracking.get_run(mv.run_id).data.tags, **tags}
        except Exception:  # the source run may have been deleted; the missing tag is reported below
            pass
    tag = tags.get("data_digest", "")
    if not tag:
        raise PromotionError(f"{name} v{version} (@{alias}) has no data_digest tag, so it cannot be checked "
                             "against this test split; re-register it with genreclf train_rf / train_cnn")
    if not covers.digest.startswith(tag):
        hint = (f"; to start over on new data, remove the alias first: MlflowClient()."
                f"delete_registered_model_alias({name!r}, {CHAMPION!r})") if alias == CHAMPION else ""
        raise PromotionError(
            f"{name} v{version} (@{alias}) was trained on other covers (data digest {tag}, data="
            f"{tags.get('data_source') or '?'}) than these data parameters give (digest {covers.digest[:20]}, "
            f"data={covers.source}): its test score here would not be comparable (its training covers may be "
            "in this test split). Pass the data parameters it was trained with (data, genres, per_genre, "
            f"seed, val_frac, test_frac, cache_size, dedup_distance){hint}")


def _score(name: str, version: str, encoded: list[bytes], labels, genres: list[str]) -> dict[str, float]:
    """Test metrics of one version, predicting through its pyfunc exactly as a client would."""
    import pandas as pd

    from genreclf.metrics import classification_metrics
    from genreclf.serving.contract import IMAGE_COLUMN

    model = tracking.load_pyfunc(f"models:/{name}/{version}")
    frame = pd.concat([model.predict(pd.DataFrame({IMAGE_COLUMN: encoded[s:s + BATCH]}))
                       for s in range(0, len(encoded), BATCH)], ignore_index=True)
    columns = [f"p_{g}" for g in genres]
    if not set(columns) <= set(frame.columns):
        theirs = [c[2:] for c in frame.columns if c.startswith("p_")]
        raise PromotionError(f"{name} v{version} predicts genres {theirs}, not this data's {genres}")
    return classification_metrics(labels, frame[columns].to_numpy(), genres, "test")
