"""promote across families: grouping by the data each was trained on, and the champions ranked best first."""
from genreclf.entrypoints.promote import rank_champions


def _record(challenger, champion, after, challenger_score, champion_score):
    return {"challenger_version": challenger, "champion_version": champion, "champion_after": after,
            "challenger_score": challenger_score, "champion_score": champion_score, "metric": "test_macro_f1"}


def test_champions_are_ranked_by_the_score_of_the_version_that_holds_the_alias():
    results = {
        "album-genre-rf": _record("3", "2", "2", 0.30, 0.41),        # rejected: the champion's score counts
        "album-genre-probe": _record("1", None, "1", 0.55, None),   # first challenger promoted
        "album-genre-cnn": _record("4", "1", "4", 0.47, 0.33),      # promoted over a weaker champion
        "album-genre-ensemble": {"decision": "skipped", "reason": "no @challenger version"},
    }
    ranked = rank_champions(results)
    assert [(r["model"], r["version"], r["score"]) for r in ranked] == [
        ("album-genre-probe", "1", 0.55), ("album-genre-cnn", "4", 0.47), ("album-genre-rf", "2", 0.41)]


def test_families_trained_on_different_data_are_scored_on_their_own():
    from genreclf.config import DataConfig
    from genreclf.entrypoints.promote import group_by_data
    small, large, given = DataConfig(data="synthetic:60"), DataConfig(data="synthetic"), DataConfig()
    recorded = {"album-genre-cnn": small, "album-genre-rf": large, "album-genre-probe": DataConfig(data="synthetic")}
    groups = group_by_data(["album-genre-cnn", "album-genre-rf", "album-genre-probe", "album-genre-old"],
                           recorded, given)
    assert [(d.data, members) for d, members in groups] == [
        ("synthetic:60", ["album-genre-cnn"]), ("synthetic", ["album-genre-rf", "album-genre-probe"]),
        (given.data, ["album-genre-old"])]  # no recorded data: the parameters as given
