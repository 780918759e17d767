"""The demo reads its models from the family registry: a family registered anywhere gets its slot,
its predictions box and its "not available" message on the page, with no edit to the demo."""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from genreclf.config import SECTIONS, DataConfig, ServeConfig
from genreclf.entrypoints import demo
from genreclf.models.family import FAMILIES, Family, register_family, unregister_family

DATA = DataConfig(data="synthetic:12", cache_size=64)


@dataclass
class ToyConfig:
    seed: int = 0


@pytest.fixture
def toy_family():
    family = register_family(Family(name="toy", model_name="album-genre-toy", section="toy",
                                    summary="a family that exists only in this test",
                                    load="genreclf.models.rf.family:load"), config=ToyConfig)
    try:
        yield family
    finally:
        unregister_family(family.name)
        SECTIONS.pop(family.section, None)


def test_a_registered_family_gets_a_slot_on_the_page(workdir, toy_family):
    app = demo.build_app(DATA, ServeConfig())
    try:
        blocks = {getattr(b, "elem_id", None): b for b in app.blocks.values()}
        assert {f"{name}-pred" for name in FAMILIES} <= set(blocks) and "toy-pred" in blocks
        assert blocks["toy-pred"].label == "album-genre-toy@champion"
        status = blocks["status"].value
        assert "**album-genre-toy@champion is not available**" in status
        assert "`mlflow run . -e train_toy --env-manager local`" in status
    finally:
        app.close()

    ex = demo.Explorer(demo.load_slots("champion"), demo.load_gallery(DATA), DATA.cache_size, 2)
    out = dict(zip(ex.outputs, ex.pick(ex.gallery.keys[0])))
    assert out["toy-pred"] == "not available: genreclf train_toy trains one"
