"""The demo does not pretend to judge covers of genres its models were never trained on,
and a cover picked again is answered from memory."""
from __future__ import annotations

from genreclf.config import DataConfig, Resolved, RFConfig
from genreclf.entrypoints import demo, train

TRAINED = DataConfig(data="synthetic:12", cache_size=64, genres="HipHop,Rock,Pop")
SHOWN = DataConfig(data="synthetic:12", cache_size=64, genres="HipHop,Rock,Pop,Electronic")


def test_covers_of_unknown_genres_get_a_caveat_and_repeats_are_cached(workdir):
    train.main(Resolved("train_rf", {"data": TRAINED, "rf": RFConfig(n_estimators=20, n_jobs=1)}))
    # no data given: the gallery shows the data the shown versions were trained on, not the default set
    recorded = demo.champions_data(DataConfig(), "challenger")
    assert (recorded.data, recorded.genres, recorded.cache_size) == (TRAINED.data, TRAINED.genres, 64)
    assert demo.champions_data(SHOWN, "challenger") is SHOWN  # given data is kept
    ex = demo.Explorer(demo.load_slots("challenger"), demo.load_gallery(SHOWN), SHOWN.cache_size, 2)
    assert ex.unknown_genres() == ["Electronic"]
    status = demo.status_text(ex, SHOWN)
    assert "genres the models do not know" in status and "Electronic" in status

    foreign = next(k for k, t in zip(ex.gallery.keys, ex.gallery.truth) if t == "Electronic")
    first = ex.pick(foreign)
    text = first[ex.outputs.index("insight")]
    assert "a genre the models were not trained on" in text and "got it right" not in text
    known = next(k for k, t in zip(ex.gallery.keys, ex.gallery.truth) if t == "Rock")
    assert "True genre**: Rock" in ex.pick(known)[ex.outputs.index("insight")]

    assert ex.pick(foreign) is first  # the same outputs, not computed again
