"""Batch scoring that survives a kill: covers in fixed chunks, one parquet part per chunk, a manifest.

The input (a folder of image files, searched recursively, or a parquet file with a binary column
``image`` and optionally ``id``) is cut into chunks of ``chunk_size`` covers in a fixed order. Each
chunk becomes ``part-<k>.parquet`` (id, genre, p_<genre>...), written to a temporary name and
renamed; then ``manifest.json`` records the chunk as done (also written by rename). A restart reads
the manifest and scores only the chunks not recorded: a part renamed but not yet recorded is
rewritten whole, so every cover ends up in exactly one part.

A cover that cannot be decoded is skipped, counted and listed (id, reason) - never a failed batch.
No MLflow here: ``predict`` is any callable DataFrame(image) -> DataFrame(genre, p_*).
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import pandas as pd
import pyarrow.parquet as pq

from genreclf.config import ConfigError
from genreclf.data.images import BadImageError, decode_rgb

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
MANIFEST = "manifest.json"


@dataclass
class Source:
    """The covers to score: their ids in a fixed order and how to read a chunk of them."""
    path: Path
    ids: list[str]
    ignored: int  # files in a folder that are not images by their suffix

    @property
    def is_parquet(self) -> bool:
        return self.path.is_file()

    def digest(self) -> str:
        return hashlib.sha256("\n".join(self.ids).encode()).hexdigest()[:16]

    def read(self, start: int, stop: int) -> list[bytes | None]:
        """Encoded bytes of covers ``start:stop`` (None for a file that cannot be read)."""
        if self.is_parquet:  # only the row groups that overlap the chunk: memory bounded by the row group
            pf, groups, first, row = pq.ParquetFile(self.path), [], None, 0
            for g in range(pf.metadata.num_row_groups):
                n = pf.metadata.row_group(g).num_rows
                if row < stop and row + n > start:
                    groups.append(g)
                    first = row if first is None else first
                row += n
            table = pf.read_row_groups(groups, columns=["image"]).slice(start - (first or 0), stop - start)
            return table.column("image").to_pylist()
        out: list[bytes | None] = []
        for rel in self.ids[start:stop]:
            try:
                out.append((self.path / rel).read_bytes())
            except OSError:
                out.append(None)
        return out


def open_source(spec: str) -> Source:
    path = Path(spec)
    if not spec or not path.exists():
        raise ConfigError(f"input={spec!r}: not found; give a folder of cover images or a parquet file "
                          "with a binary column 'image'")
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
        images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
        return Source(path, [str(p.relative_to(path)) for p in images], len(files) - len(images))
    try:
        schema = pq.read_schema(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several kinds for a file that is not parquet
        raise ConfigError(f"input={spec}: not a parquet file ({type(exc).__name__}: {exc})") from None
    if "image" not in schema.names:
        raise ConfigError(f"input={spec}: no column 'image' (columns: {schema.names})")
    if "id" in schema.names:
        ids = [str(i) for i in pq.read_table(path, columns=["id"]).column("id").to_pylist()]
    else:
        ids = [str(i) for i in range(pq.read_metadata(path).num_rows)]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"input={spec}: column 'id' has duplicate values; ids must name covers uniquely")
    return Source(path, ids, 0)


# ---------------------------------------------------------------- manifest
def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class Manifest:
    """What the output folder holds: which input, which model, which chunks are done."""

    def __init__(self, out: Path, identity: dict):
        self.path, self.identity = out / MANIFEST, identity
        self.state: dict[str, Any] = {"identity": identity, "run_id": None, "done": {}}
        if self.path.exists():
            have = json.loads(self.path.read_text())
            if have["identity"] != identity:
                diff = sorted(k for k in identity if have["identity"].get(k) != identity[k])
                raise ConfigError(f"output={out} holds predictions of another scoring job (differs in {diff}); "
                                  "use a new output folder, or the same input, model and chunk_size to resume")
            self.state = have

    @property
    def done(self) -> dict[str, dict]:
        done: dict[str, dict] = self.state["done"]
        return done

    def set(self, key: str, value) -> None:
        self.state[key] = value
        self.save()

    def mark(self, chunk: int, info: dict) -> None:
        self.done[str(chunk)] = info
        self.save()

    def save(self) -> None:
        _write_atomic(self.path, json.dumps(self.state, indent=1).encode())


def chunks(n: int, size: int) -> Iterator[tuple[int, int, int]]:
    for k, start in enumerate(range(0, n, size)):
        yield k, start, min(n, start + size)


def score_chunk(ids: list[str], data: list[bytes | None], predict: Callable[[pd.DataFrame], pd.DataFrame]):
    """(predictions of the decodable covers, [(id, reason) of the skipped ones])."""
    good, skipped = [], []
    for cid, raw in zip(ids, data):
        if raw is None:
            skipped.append([cid, "cannot read the file"])
            continue
        try:
            decode_rgb(raw, size=32, name=cid)  # one bad cover must not fail its whole chunk
            good.append((cid, raw))
        except BadImageError as exc:
            skipped.append([cid, str(exc)])
    if not good:
        return pd.DataFrame({"id": []}), skipped
    frame = predict(pd.DataFrame({"image": [raw for _, raw in good]})).reset_index(drop=True)
    frame.insert(0, "id", [cid for cid, _ in good])
    return frame, skipped


def run_batch(source: Source, out: Path, manifest: Manifest, chunk_size: int, predict: Callable,
              progress: Callable[[int], None] | None = None) -> dict:
    """Score every chunk the manifest does not list yet; returns the totals over all chunks."""
    for k, start, stop in chunks(len(source.ids), chunk_size):
        if str(k) in manifest.done:
            continue
        ids = source.ids[start:stop]
        frame, skipped = score_chunk(ids, source.read(start, stop), predict)
        part = out / f"part-{k:05d}.parquet"
        tmp = part.with_name(f".{part.name}.tmp")
        frame.to_parquet(tmp, index=False)
        os.replace(tmp, part)
        manifest.mark(k, {"rows": len(frame), "skipped": skipped,
                          "genres": frame["genre"].value_counts().to_dict() if len(frame) else {}})
        if progress:
            progress(stop - start)
    return totals(manifest)


def totals(manifest: Manifest) -> dict:
    genres: dict[str, int] = {}
    skipped = []
    for info in manifest.done.values():
        skipped += info["skipped"]
        for g, c in info["genres"].items():
            genres[g] = genres.get(g, 0) + int(c)
    return {"n_scored": sum(i["rows"] for i in manifest.done.values()), "n_skipped": len(skipped),
            "genre_counts": dict(sorted(genres.items())), "skipped": skipped}


def read_predictions(out: str | Path) -> pd.DataFrame:
    """All parts of an output folder as one frame."""
    parts = sorted(Path(out).glob("part-*.parquet"))
    return pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True) if parts else pd.DataFrame()
