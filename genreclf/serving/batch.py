"""Batch scoring that survives a kill: covers in fixed chunks, one parquet part per chunk, a manifest.

The input (a folder of image files, searched recursively, or a parquet file with a binary column
``image`` and optionally ``id``) is cut into chunks of ``chunk_size`` covers in a fixed order. Each
chunk becomes ``part-<k>.parquet`` (id, genre, p_<genre>...); then ``manifest.json`` records the chunk
as done. Both are written to a unique temporary name, synced and renamed, the rename synced too, so
after a kill or a power cut the manifest never names a part that is not whole on disk. A restart reads
the manifest and scores only the chunks not recorded: a part renamed but not yet recorded is
rewritten whole, so every cover ends up in exactly one part.

A folder is walked and read by the training data's policy (``data/sources.py``): hidden entries,
symlinks leading out of the folder, FIFOs and devices are not scored, and no file is read past the
per-file cap. The entries not scored are counted (``Source.ignored``) and listed with their reason in
the manifest (``ignored``); a cover that cannot be read or decoded is skipped, counted and listed
(id, reason) in its chunk - never a failed batch.
No MLflow here: ``predict`` is any callable DataFrame(image) -> DataFrame(genre, p_*).
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import pandas as pd
import pyarrow.parquet as pq

from genreclf.config import ConfigError
from genreclf.data.images import BadImageError, decode_rgb
from genreclf.data.sources import _read_capped, _walk

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
MANIFEST = "manifest.json"


@dataclass
class Source:
    """The covers to score: their ids in a fixed order and how to read a chunk of them."""
    path: Path
    ids: list[str]
    # [path, reason] of the folder's entries that are not scored: not an image by the suffix, or refused by
    # the training data's folder policy (hidden, a symlink out of the folder, not a regular file)
    unused: list[list[str]] = field(default_factory=list)

    @property
    def ignored(self) -> int:
        return len(self.unused)

    @property
    def is_parquet(self) -> bool:
        return self.path.is_file()

    def digest(self) -> str:
        return hashlib.sha256("\n".join(self.ids).encode()).hexdigest()[:16]

    def read(self, start: int, stop: int) -> list[bytes | str | None]:
        """Encoded bytes of covers ``start:stop``; for a file that is not read, why (a str)."""
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
        out: list[bytes | str | None] = []
        why: list[str] = []
        for rel in self.ids[start:stop]:
            # the cap training applies to a file: never more than MAX_FILE_BYTES read, whatever its size
            data = _read_capped(self.path / rel, "", lambda _path, _genre, reason: why.append(reason))
            out.append(data if data is not None else why[-1])
        return out


def open_source(spec: str) -> Source:
    path = Path(spec)
    if not spec or not path.exists():
        raise ConfigError(f"input={spec!r}: not found; give a folder of cover images or a parquet file "
                          "with a binary column 'image'")
    if path.is_dir():
        return _folder(path)
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
    return Source(path, ids)


def _folder(path: Path) -> Source:
    """The images under ``path``, walked by the training data's policy (``data/sources.py``)."""
    unused: list[list[str]] = []

    def skip(entry: Path, _genre: str, reason: str) -> None:
        unused.append([os.path.relpath(entry, path), reason])
    ids = []
    for file in _walk(path, path.resolve(), "", skip, set()):
        if file.suffix.lower() in IMAGE_SUFFIXES:
            ids.append(os.path.relpath(file, path))
        else:
            skip(file, "", "not an image file (by its suffix)")
    if unused:
        reasons = Counter(reason for _, reason in unused)
        log.warning("%s: %d entries not scored (%s); listed in the output's manifest", path, len(unused),
                    ", ".join(f"{n} {reason}" for reason, n in reasons.most_common()))
    return Source(path, ids, unused)


# ---------------------------------------------------------------- manifest
def _write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` whole or not at all, and durably: a unique temporary name in the same
    folder (two writers never share one), its bytes on disk before the rename, the rename on disk after."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


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


def score_chunk(ids: list[str], data: list[bytes | str | None], predict: Callable[[pd.DataFrame], pd.DataFrame]):
    """(predictions of the decodable covers, [(id, reason) of the skipped ones])."""
    good, skipped = [], []
    for cid, raw in zip(ids, data):
        if raw is None or isinstance(raw, str):
            skipped.append([cid, raw or "cannot read the file"])
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
    if manifest.state.get("ignored") != source.unused:
        manifest.set("ignored", source.unused)  # the input entries no part will hold, with the reason
    for k, start, stop in chunks(len(source.ids), chunk_size):
        if str(k) in manifest.done:
            continue
        ids = source.ids[start:stop]
        frame, skipped = score_chunk(ids, source.read(start, stop), predict)
        buf = io.BytesIO()  # a chunk's part is small: written whole and durably before the manifest names it
        frame.to_parquet(buf, index=False)
        _write_atomic(out / f"part-{k:05d}.parquet", buf.getvalue())
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
