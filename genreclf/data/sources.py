"""Where covers come from: one ``data`` string picks the source.

* ``hf:<dataset>``        - a Hugging Face dataset via ``datasets`` (cached as usual)
* ``<file.parquet>`` or a folder of ``*.parquet`` shards in that dataset's schema
* ``<folder>``            - image-folder layout, one sub-folder per genre
* ``synthetic[:N]``       - generated covers, N per genre (see :mod:`genreclf.data.synthetic`)

Every source yields :class:`Raw` records (id, genre, encoded bytes) for the selected genres only;
decoding, de-duplication and splitting happen in :mod:`genreclf.data.covers`, the same for all sources.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from genreclf.data import synthetic
from genreclf.errors import UserError

HF_GENRES = ["Blues", "Classical", "Country", "DeathMetal", "DoomMetal", "DrumNBass", "Electronic",
             "Folk", "Grime", "HeavyMetal", "HipHop", "Jazz", "LoFi", "Pop", "PsychedelicRock", "Punk",
             "Reggae", "Rock", "Soul", "Techno"]


class DataError(UserError):
    """The data source or genre selection is wrong; the message says how to fix it."""


@dataclass
class Raw:
    sample_id: str
    genre: str
    data: bytes


@dataclass
class Source:
    kind: str                 # hf | parquet | imagefolder | synthetic
    uri: str                  # what the user passed, recorded in the run
    genres: list[str]         # genres available in the source
    records: Callable[[list[str]], Iterator[Raw]]  # records(selected_genres)


def select_genres(requested: str | list[str], available: list[str]) -> list[str]:
    """Match requested genres case-insensitively against the source's; keep the requested order."""
    names = [g.strip() for g in (requested.split(",") if isinstance(requested, str) else requested)]
    names = [g for g in names if g]
    if not names or names == ["all"]:
        return list(available)
    lookup = {g.lower(): g for g in available}
    unknown = [g for g in names if g.lower() not in lookup]
    if unknown:
        raise DataError(f"unknown genre(s) {unknown}; available: {', '.join(available)}")
    chosen = [lookup[g.lower()] for g in names]
    if len(set(chosen)) != len(chosen):
        raise DataError(f"genre listed twice in {names}")
    if len(chosen) < 2:
        raise DataError(f"need at least two genres to classify, got {chosen}")
    return chosen


def open_source(data: str, seed: int = 42) -> Source:
    if data == "synthetic" or data.startswith("synthetic:"):
        return _synthetic(data, seed)
    if data.startswith("hf:"):
        return _huggingface(data)
    path = Path(data).expanduser()
    if path.is_file() and path.suffix == ".parquet":
        return _parquet(data, [path])
    if path.is_dir():
        shards = sorted(path.glob("*.parquet")) or sorted(path.glob("*/*.parquet"))
        return _parquet(data, shards) if shards else _imagefolder(data, path)
    raise DataError(f"data={data!r} is neither 'hf:<dataset>', 'synthetic[:N]', a .parquet file, nor a folder")


def _synthetic(data: str, seed: int) -> Source:
    per = synthetic.DEFAULT_PER_GENRE
    if ":" in data:
        try:
            per = int(data.split(":", 1)[1])
        except ValueError:
            raise DataError(f"data={data!r}: expected synthetic:<covers per genre>, e.g. synthetic:50") from None
        if per < 1:
            raise DataError(f"data={data!r}: covers per genre must be >= 1")

    def records(genres):
        for sid, genre, data_ in synthetic.iter_covers(genres, per, seed):
            yield Raw(sid, genre, data_)
    return Source("synthetic", data, list(HF_GENRES), records)


def _huggingface(data: str) -> Source:
    name = data[3:]
    try:
        import datasets
        from datasets import Image as HFImage
        ds = datasets.load_dataset(name, split="train")
    except Exception as exc:  # offline, missing, auth: all end up here with library-specific types
        raise DataError(
            f"could not load the Hugging Face dataset {name!r} ({type(exc).__name__}: {str(exc)[:300]}).\n"
            f"Offline with no cached copy? Download it once where there is internet "
            f"(python -c \"import datasets; datasets.load_dataset('{name}')\"), or point `data` at a local "
            f"copy: data=/path/to/train-00000-of-00001.parquet (or a folder of parquet shards, or an "
            f"image folder with one sub-folder per genre). data=synthetic runs without any download."
        ) from None
    label_col, image_col = _hf_columns(ds.features)
    ds = ds.cast_column(image_col, HFImage(decode=False))
    genres = list(ds.features[label_col].names)
    return Source("hf", data, genres,
                  lambda sel: _table_records(ds.data.table, image_col, label_col, genres, sel, name))


def _hf_columns(features) -> tuple[str, str]:
    from datasets import ClassLabel
    from datasets import Image as HFImage
    labels = [k for k, v in features.items() if isinstance(v, ClassLabel)]
    images = [k for k, v in features.items() if isinstance(v, HFImage)]
    if not labels or not images:
        raise DataError(f"dataset features {dict(features)} need an Image column and a ClassLabel column")
    return labels[0], images[0]


def _parquet(data: str, shards: list[Path]) -> Source:
    import pyarrow.parquet as pq
    schema = pq.read_schema(shards[0])
    meta = (schema.metadata or {}).get(b"huggingface")
    if meta is None:
        raise DataError(f"{shards[0]}: no 'huggingface' features metadata, so genre names are unknown; "
                        f"write it with datasets (Image + ClassLabel features) or use an image folder")
    feats = json.loads(meta).get("info", {}).get("features", {})
    labels = [k for k, v in feats.items() if v.get("_type") == "ClassLabel"]
    images = [k for k, v in feats.items() if v.get("_type") == "Image"]
    if not labels or not images:
        raise DataError(f"{shards[0]}: features {list(feats)} need an Image and a ClassLabel column")
    genres = list(feats[labels[0]]["names"])

    def records(sel):
        for shard in shards:
            table = pq.read_table(shard, columns=[images[0], labels[0]])
            yield from _table_records(table, images[0], labels[0], genres, sel, shard.name)
    return Source("parquet", data, genres, records)


def _table_records(table, image_col: str, label_col: str, genres: list[str], sel: list[str],
                   prefix: str) -> Iterator[Raw]:
    wanted = {genres.index(g) for g in sel}
    labels = table.column(label_col).to_pylist()
    images = table.column(image_col)
    for row, lab in enumerate(labels):
        if lab in wanted:
            cell = images[row].as_py() or {}
            yield Raw(f"{prefix}#{row}", genres[lab], cell.get("bytes") or b"")


def _imagefolder(data: str, root: Path) -> Source:
    genres = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(genres) < 2:
        raise DataError(f"{root}: an image folder needs one sub-folder per genre (found {genres})")

    def records(sel):
        for genre in sel:
            for f in sorted((root / genre).rglob("*")):
                if f.is_file() and not f.name.startswith("."):
                    # every file is tried: non-images are counted as skipped, never silently ignored
                    yield Raw(os.path.relpath(f, root), genre, f.read_bytes())
    return Source("imagefolder", data, genres, records)
