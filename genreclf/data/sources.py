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
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from genreclf.data import synthetic
from genreclf.data.images import MAX_FILE_BYTES
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
    # entries of the source that records() did not use, each {"sample_id", "genre", "reason"}: filled
    # while records() runs, so every file a user put there is either a cover or named here
    unused: list[dict] = field(default_factory=list)


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
    try:
        schema = pq.read_schema(shards[0])
    except Exception as exc:  # ArrowInvalid, OSError: a truncated or non-parquet file
        raise DataError(f"{shards[0]}: not a readable parquet file ({type(exc).__name__}: {str(exc)[:200]}); "
                        f"point data= at a parquet file written by datasets, or an image folder") from None
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
            try:
                table = pq.read_table(shard, columns=[images[0], labels[0]])
            except Exception as exc:  # truncated or foreign file: pyarrow raises its own types
                raise DataError(f"{shard}: not a readable parquet file ({type(exc).__name__}: "
                                f"{str(exc)[:200]})") from None
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
    unused: list[dict] = []

    def skip(path: Path, genre: str, reason: str) -> None:
        unused.append({"sample_id": os.path.relpath(path, root), "genre": genre, "reason": reason})

    def records(sel):
        unused.clear()  # a source read twice (evaluate re-reads it for the reference features) names each entry once
        for entry in sorted(root.iterdir()):
            if entry.name not in genres and not entry.is_dir():
                skip(entry, "", "not inside a genre folder")
            elif entry.name.startswith("."):
                skip(entry, "", "hidden entry")
        real_root = root.resolve()
        for genre in sel:
            for path in _walk(root / genre, real_root, genre, skip, set()):
                data_ = _read_capped(path, genre, skip)
                if data_ is not None:
                    # every regular file is tried: non-images are counted as skipped by the decoder
                    yield Raw(os.path.relpath(path, root), genre, data_)
    return Source("imagefolder", data, genres, records, unused)


def _walk(folder: Path, real_root: Path, genre: str, skip, seen: set) -> Iterator[Path]:
    """Regular files under ``folder``, sorted; everything else is named through ``skip``."""
    real = folder.resolve()
    if real in seen:  # a symlink loop inside the data root
        skip(folder, genre, "folder visited twice (symlink loop)")
        return
    seen.add(real)
    try:
        entries = sorted(folder.iterdir())
    except OSError as exc:
        skip(folder, genre, f"cannot list folder ({exc.strerror or exc})")
        return
    for entry in entries:
        if entry.name.startswith("."):
            skip(entry, genre, "hidden entry")
            continue
        if entry.is_symlink():
            try:
                target = entry.resolve(strict=True)
            except (OSError, RuntimeError):
                skip(entry, genre, "broken or looping symlink")
                continue
            if not target.is_relative_to(real_root):
                skip(entry, genre, "symlink leads outside the data root")
                continue
        try:
            mode = entry.stat().st_mode
        except OSError as exc:
            skip(entry, genre, f"cannot stat ({exc.strerror or exc})")
            continue
        if stat.S_ISDIR(mode):
            yield from _walk(entry, real_root, genre, skip, seen)
        elif stat.S_ISREG(mode):
            yield entry
        else:
            skip(entry, genre, "not a regular file (FIFO, socket or device)")


def _read_capped(path: Path, genre: str, skip) -> bytes | None:
    """The file's bytes, or None (named through ``skip``) when unreadable or over MAX_FILE_BYTES."""
    try:
        with open(path, "rb") as f:
            data = _read_upto(f, MAX_FILE_BYTES + 1)  # never more than the cap, whatever the file claims
    except OSError as exc:
        skip(path, genre, f"cannot read ({exc.strerror or exc})")
        return None
    if len(data) > MAX_FILE_BYTES:
        skip(path, genre, f"over the {MAX_FILE_BYTES // 2**20} MiB per-file cap")
        return None
    return data


def _read_upto(f, limit: int) -> bytes:
    """At most ``limit`` bytes of ``f``. Asks for the size the file claims (+1, to see it end) first:
    ``f.read(limit)`` allocates ``limit`` bytes for every small cover, a 20 MB peak of its own."""
    parts = [f.read(min(limit, os.fstat(f.fileno()).st_size + 1))]
    size = len(parts[0])
    while size < limit and (more := f.read(min(1 << 20, limit - size))):  # it grew, or claimed too little
        parts.append(more)
        size += len(more)
    return parts[0] if len(parts) == 1 else b"".join(parts)
