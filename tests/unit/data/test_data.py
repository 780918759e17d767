"""The data layer on data the tests make: every source, odd image files, dedup, split, cache."""
from __future__ import annotations

import itertools
import logging

import numpy as np
import pytest
from PIL import Image

from genreclf.config import DataConfig
from genreclf.data import synthetic
from genreclf.data.covers import load_covers, phash64
from genreclf.data.images import BadImageError, decode_rgb, encode
from genreclf.data.sources import HF_GENRES, DataError

GENRES4 = ["Electronic", "HipHop", "Pop", "Rock"]


def _cfg(data, **kw) -> DataConfig:
    kw.setdefault("cache_size", 48)
    return DataConfig(data=str(data), **kw)


def _cover(genre: str, i: int) -> np.ndarray:
    return synthetic.make_cover(genre, i, seed=7, size=120)


def _write_parquet(path, genres_all, rows):
    """A parquet file in the HF dataset's schema: Image struct {bytes, path} + ClassLabel label."""
    import datasets
    feats = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=genres_all)})
    ds = datasets.Dataset.from_dict({"image": [{"bytes": b, "path": None} for b, _ in rows],
                                     "label": [genres_all.index(g) for _, g in rows]}, features=feats)
    ds.to_parquet(str(path))
    return path


def test_synthetic_is_deterministic_and_genre_dependent():
    a, b = synthetic.make_cover("Rock", 3), synthetic.make_cover("Rock", 3)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, synthetic.make_cover("Rock", 4))
    # every pair of the 20 dataset genres differs clearly in at least one style parameter (>= 10% of
    # its range), so synthetic covers of any two genres are told apart by something
    styles = {g: synthetic.genre_style(g) for g in HF_GENRES}
    assert synthetic.genre_style("rock") == styles["Rock"]  # names are case-insensitive
    span = {"hue": 1.0, "sat": 0.75, "val": 0.65, "strokes": 28, "grain": 30.0, "face_p": 0.9, "circles": 1.0,
            "contrast": 0.7}
    gaps = {(a, b): max(abs(styles[a][k] - styles[b][k]) / span[k] for k in span)
            for a, b in itertools.combinations(HF_GENRES, 2)}
    assert min(gaps.values()) >= 0.1, min(gaps, key=gaps.get)
    # and the covers themselves differ: mean colour of 4 covers per genre, 20+ grey levels apart
    mean = {g: np.mean([synthetic.make_cover(g, i).reshape(-1, 3).mean(0) for i in range(4)], axis=0)
            for g in ("Rock", "Pop", "HipHop", "Electronic")}
    assert all(np.abs(mean[a] - mean[b]).max() > 20 for a, b in itertools.combinations(mean, 2))


def test_synthetic_source_split_is_stratified_and_deterministic(cover_cache):
    cfg = _cfg("synthetic:20")
    covers = load_covers(cfg, progress=False)
    assert covers.genres == ["HipHop", "Rock", "Pop", "Electronic"]
    assert covers.images.shape[1:] == (48, 48, 3) and covers.images.dtype == np.uint8
    for k in range(4):
        mine = covers.split[covers.labels == k]
        assert {s: int((mine == s).sum()) for s in ("train", "val", "test")} == {"train": 14, "val": 3, "test": 3}
    again = load_covers(cfg, progress=False)
    assert list(again.split) == list(covers.split) and again.digest == covers.digest
    reseeded = load_covers(_cfg("synthetic:20", seed=1), progress=False)
    assert list(reseeded.split) != list(covers.split)
    m = covers.manifest()
    assert list(m.columns[:3]) == ["sample_id", "genre", "split"] and len(m) == 80


def test_parquet_in_hf_schema_file_and_shard_folder(cover_cache, tmp_path):
    all_genres = ["Blues", "Electronic", "HipHop", "Pop", "Rock"]
    rows = [(encode(_cover(g, i), "JPEG"), g) for g in all_genres for i in range(6)]
    single = _write_parquet(tmp_path / "train.parquet", all_genres, rows)
    covers = load_covers(_cfg(single, genres="rock,POP,electronic"), progress=False)
    assert covers.genres == ["Rock", "Pop", "Electronic"]  # names from the file's features metadata
    assert len(covers) == 18 and covers.report["skipped"] == 0
    shards = tmp_path / "shards"
    shards.mkdir()
    _write_parquet(shards / "train-00000-of-00002.parquet", all_genres, rows[:15])
    _write_parquet(shards / "train-00001-of-00002.parquet", all_genres, rows[15:])
    sharded = load_covers(_cfg(shards, genres="Rock,Pop,Electronic"), progress=False)
    assert sorted(sharded.content) == sorted(covers.content)
    # the split is keyed on content, so the same covers split the same way from either layout
    by_sha = dict(zip(covers.content, covers.split))
    assert all(by_sha[c] == s for c, s in zip(sharded.content, sharded.split))


def test_unknown_genre_lists_available(cover_cache):
    with pytest.raises(DataError, match=r"unknown genre\(s\) \['Polka'\].*available: .*HipHop"):
        load_covers(_cfg("synthetic:5", genres="Rock,Polka"), progress=False)


def _odd_files(folder):
    """JPEG, palette PNG, grayscale, CMYK, RGBA, 16-bit, a truncated file and a text file."""
    img = Image.fromarray(_cover("Rock", 0))
    img.save(folder / "a.jpg", quality=90)
    img.convert("P", palette=Image.ADAPTIVE).save(folder / "b_palette.png")
    img.convert("L").save(folder / "c_grey.png")
    img.convert("CMYK").save(folder / "d_cmyk.jpg")
    rgba = img.convert("RGBA")
    rgba.putalpha(128)
    rgba.save(folder / "e_rgba.png")
    Image.fromarray((np.arange(120 * 120).reshape(120, 120) * 4).astype(np.uint16)).save(folder / "f_16bit.png")
    (folder / "g_truncated.jpg").write_bytes((folder / "a.jpg").read_bytes()[:700])
    (folder / "h_notes.txt").write_text("not a cover")


def test_image_folder_decodes_every_mode_and_reports_skips(cover_cache, tmp_path, caplog):
    root = tmp_path / "covers"
    for g in GENRES4:
        (root / g).mkdir(parents=True)
        for i in range(5):
            Image.fromarray(_cover(g, 100 + i)).save(root / g / f"{i}.png")
    _odd_files(root / "Rock")
    with caplog.at_level(logging.WARNING):
        covers = load_covers(_cfg(root, genres="HipHop,Rock,Pop,Electronic"), progress=False)
    rep = covers.report
    assert rep["skipped"] == 2, rep["skipped_files"]
    assert {s["sample_id"] for s in rep["skipped_files"]} == {"Rock/g_truncated.jpg", "Rock/h_notes.txt"}
    assert "skipped 2" in caplog.text
    rock = set(covers.ids[covers.labels == covers.genres.index("Rock")])
    # b_palette, d_cmyk and c_grey are near-duplicates of a.jpg (same picture) and are dropped as such
    assert "Rock/a.jpg" in rock and "Rock/f_16bit.png" in rock
    assert rep["duplicates_within_genre"] >= 3


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "CMYK", "I;16", "LA", "1"])
def test_decode_any_mode_to_rgb(mode):
    base = Image.fromarray(_cover("Pop", 1))
    img = base.convert(mode) if mode != "I;16" else Image.fromarray(np.full((50, 70), 40000, np.uint16))
    fmt = "JPEG" if mode == "CMYK" else "PNG" if mode != "I;16" else "TIFF"
    import io
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    rgb = decode_rgb(buf.getvalue(), 32)
    assert rgb.shape == (32, 32, 3) and rgb.dtype == np.uint8
    if mode == "I;16":
        assert 150 < rgb.mean() < 160  # 40000/65535 of full scale, not clipped to white


def test_bad_images_are_clear_errors(tmp_path):
    with pytest.raises(BadImageError, match="empty"):
        decode_rgb(b"")
    with pytest.raises(BadImageError, match="not a decodable image"):
        decode_rgb(b"hello, world", name="notes.txt")
    bomb = tmp_path / "bomb.png"
    Image.new("1", (9000, 9000)).save(bomb)  # 81 Mpx of zeros: a few KB on disk
    with pytest.raises(BadImageError, match="too large"):
        decode_rgb(bomb.read_bytes(), name="bomb.png")


def test_duplicates_across_genres_are_dropped_before_split(cover_cache, tmp_path):
    root = tmp_path / "dups"
    for g in GENRES4:
        (root / g).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(_cover(g, i)).save(root / g / f"{g}{i}.png")
    shared = _cover("Pop", 0)
    Image.fromarray(shared).save(root / "Rock" / "same_as_pop0.jpg", quality=80)  # re-encoded copy
    Image.fromarray(shared).resize((200, 200)).save(root / "Electronic" / "pop0_small.png")  # resized copy
    covers = load_covers(_cfg(root), progress=False)
    rep = covers.report
    assert rep["duplicates_across_genres"] == 2 and rep["duplicates_dropped"] == 2
    hashes = phash64(np.asarray(covers.images))
    assert len(set(hashes.tolist())) == len(covers)  # nothing identical survives to leak across splits


def test_cache_is_reused(cover_cache, caplog):
    cfg = _cfg("synthetic:6", cache_size=40)
    first = load_covers(cfg, progress=False)
    with caplog.at_level(logging.INFO, logger="genreclf.data.covers"):
        second = load_covers(cfg, progress=False)
    assert "decoded covers from cache" in caplog.text
    assert np.array_equal(first.images, second.images)


def test_too_few_covers_for_split_is_an_error(cover_cache):
    with pytest.raises(DataError, match="too few"):
        load_covers(_cfg("synthetic:2"), progress=False)


def test_per_genre_cap(cover_cache):
    covers = load_covers(_cfg("synthetic:12", per_genre=8), progress=False)
    assert covers.report["per_genre"] == {"HipHop": 8, "Rock": 8, "Pop": 8, "Electronic": 8}
