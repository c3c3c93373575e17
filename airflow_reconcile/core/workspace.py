"""Per-run workspace: Parquet files for snapshots, drift reports and plans; small manifests for XCom.

The workspace lives on any filesystem fsspec knows: a local path or ``file://`` URL, or object storage
(``s3://``, ``gs://``, ``abfs://``…). Every task of a run reads what an earlier task wrote, possibly on
another host, so on more than one worker it must be storage all of them reach (docs/production.md).

Paths are opened through an *opener* (a URI → a path object): the core's own, :func:`storage_path`,
takes local paths as :class:`pathlib.Path` and other URLs as fsspec paths with the environment's
credentials; the Airflow layer passes one that opens them as Airflow's ``ObjectStoragePath`` with
the credentials of an Airflow connection.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import unquote, urlsplit

if TYPE_CHECKING:
    import pandas as pd

# Rows per Parquet row group: a frame is converted and written one row group at a time (the Arrow copy
# of a whole frame would double a task's memory), and its bytes go to storage as they are produced.
ROW_GROUP_ROWS = 100_000
_BLOCK = 1 << 20


@dataclass(frozen=True)
class Manifest:
    """What travels through XCom and asset events instead of data: where it is and what it holds."""

    uri: str
    rows: int
    content_hash: str
    columns: dict[str, str] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        return cls(
            uri=data["uri"],
            rows=int(data["rows"]),
            content_hash=data["content_hash"],
            columns=dict(data.get("columns", {})),
            meta=dict(data.get("meta", {})),
        )


def is_local(uri: str) -> bool:
    """A path, or a ``file://`` URL (not an object store)."""
    return urlsplit(uri).scheme in ("", "file")


def storage_path(uri: str) -> Any:
    """The core's opener: an absolute :class:`~pathlib.Path` for a local path or ``file://`` URL, else an
    fsspec path (universal-pathlib) with the credentials fsspec finds in the environment."""
    from airflow_reconcile.core.locations import absolute

    if is_local(uri):
        parts = urlsplit(uri)
        return absolute(unquote(parts.path) if parts.scheme else uri)
    from upath import UPath

    return UPath(uri)


Opener = Callable[[str], Any]


def path_uri(path: Any) -> str:
    """The URI a manifest records for a path: ``file://…`` for a local file, the URL otherwise (with the
    connection id an ``ObjectStoragePath`` carries, ``s3://conn@bucket/key``: it names no secret)."""
    return path.as_uri() if isinstance(path, Path) else str(path)


def location_uri(root: str, *parts: str) -> str:
    """``<root>/<parts…>`` as a URI without opening anything (DAG parsing must not reach storage), and
    without the connection id: asset URIs and lineage names say where, not with which credentials."""
    if is_local(root):
        return storage_path(root).joinpath(*parts).as_uri()
    split = urlsplit(root)
    path = "/".join([split.path.rstrip("/"), *parts])
    return f"{split.scheme}://{split.hostname or ''}{path}"


def file_hash(path: Path) -> str:
    """SHA-256 of a written file, streamed.

    Parquet output is deterministic for the same data, so this is the content hash of the data as
    well as an integrity check. Hashing the bytes costs ~0.1 s for 1M rows, where hashing the frame's
    values cost ~11 s (measured with benchmarks/drift_bench.py's frames).
    """
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()[:32]


def _safe(part: str) -> str:
    """One path component made of ``part``: other characters as ``_``, and no leading dot, so an id such as
    ``..`` (which Airflow's default run id pattern allows) can never name a parent folder or a hidden file."""
    text = re.sub(r"[^A-Za-z0-9._-]+", "_", part).strip("_")
    return re.sub(r"^\.+", lambda m: "_" * len(m[0]), text) or "_"


class _Hashing:
    """A binary sink that hashes what passes through it (Parquet's writer sees a plain file)."""

    def __init__(self, sink: BinaryIO) -> None:
        self.sink, self.digest, self.size, self.closed = sink, hashlib.sha256(), 0, False

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.size += len(data)
        self.sink.write(data)
        return len(data)

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self.sink.flush()

    def close(self) -> None:
        self.closed = True  # the sink is closed by whoever opened it

    def writable(self) -> bool:
        return True


def _write_parquet(
    frames: Iterable[pd.DataFrame], sink: BinaryIO, schema_of: Callable[[], Any] | None = None
) -> tuple[str, int, dict[str, str]]:
    """``frames`` as one Parquet file into ``sink``, one row group at a time; the content hash of the bytes,
    the rows and the column types. Every frame has the first one's columns (at least one frame). The file's
    Arrow schema is ``schema_of()`` when it gives one once the first frame is out (a column that is all
    null in the first frame has no type of its own), else the first frame's."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    hashing, rows, schema, writer, columns = _Hashing(sink), 0, None, None, {}
    try:
        for frame in frames:
            if writer is None:
                schema = (schema_of() if schema_of else None) or pa.Schema.from_pandas(frame, preserve_index=False)
                writer = pq.ParquetWriter(hashing, schema)
                columns = {str(c): str(t) for c, t in frame.dtypes.items()}
            for start in range(0, len(frame), ROW_GROUP_ROWS):
                chunk = frame.iloc[start : start + ROW_GROUP_ROWS]
                writer.write_table(pa.Table.from_pandas(chunk, schema=schema, preserve_index=False))
            rows += len(frame)
    finally:
        if writer is not None:
            writer.close()
    if writer is None:
        raise ValueError("nothing to write: give at least one frame (an empty one says which columns)")
    return hashing.digest.hexdigest()[:32], rows, columns


@dataclass(frozen=True)
class Workspace:
    """``<root>/<spec>/<run_id>/<name>.parquet``; root is a local path or any fsspec URL."""

    root: str
    spec_name: str
    run_id: str
    opener: Opener = field(default=storage_path, compare=False, repr=False)

    @property
    def directory(self) -> Any:
        return self.opener(self.root) / _safe(self.spec_name) / _safe(self.run_id)

    def uri(self, name: str) -> str:
        """The URI a manifest of ``name`` written here records (without opening anything)."""
        parts = (_safe(self.spec_name), _safe(self.run_id), f"{_safe(name)}.parquet")
        if is_local(self.root):
            return location_uri(self.root, *parts)
        return "/".join([self.root.rstrip("/"), *parts])  # with the connection id, as the opened path says

    def write(self, name: str, frame: pd.DataFrame, **meta: Any) -> Manifest:
        """Write so that a reader never sees half a file: locally a temporary file renamed into place; on
        object storage one upload that becomes visible when it completes (abandoned if writing fails)."""
        return self.write_frames(name, [frame], **meta)

    def write_frames(
        self, name: str, frames: Iterable[pd.DataFrame], schema_of: Callable[[], Any] | None = None, **meta: Any
    ) -> Manifest:
        """:meth:`write` for a frame that comes in parts (all with the same columns), never whole in memory;
        ``schema_of``: see :func:`_write_parquet`."""
        directory = self.directory
        target = directory / f"{_safe(name)}.parquet"
        if isinstance(target, Path):
            directory.mkdir(parents=True, exist_ok=True)
            tmp = target.with_suffix(".parquet.tmp")
            try:
                with tmp.open("wb") as fh:
                    digest, rows, columns = _write_parquet(frames, fh, schema_of)
                os.replace(tmp, target)
            finally:
                tmp.unlink(missing_ok=True)
        else:
            digest, rows, columns = _upload(target, frames, schema_of)
        return Manifest(uri=path_uri(target), rows=rows, content_hash=digest, columns=columns, meta=meta)


def _upload(
    target: Any, frames: Iterable[pd.DataFrame], schema_of: Callable[[], Any] | None
) -> tuple[str, int, dict[str, str]]:
    fh = target.fs.open(target.path, "wb")  # the filesystem's own file (discard() aborts its upload)
    try:
        written = _write_parquet(frames, fh, schema_of)
    except BaseException:
        discard = getattr(fh, "discard", None)  # fsspec's buffered files: abort the (multipart) upload
        if discard is None:
            raise
        discard()
        fh.closed = True  # discarded: closing it (also when it is collected) must not upload what was buffered
        raise
    fh.close()
    return written


def _stale(manifest: Manifest) -> ValueError:
    # Neither hash is told: a forged manifest must not learn a file's content hash.
    return ValueError(
        f"{manifest.uri}: the file's content does not match the hash recorded when it was written; "
        "the file changed after it was written — re-run the task that produced it"
    )


@contextmanager
def verified_file(manifest: Manifest | dict[str, Any], opener: Opener = storage_path) -> Iterator[Path]:
    """A local copy of a manifest's Parquet file, checked to be the file the manifest describes: the file
    itself, or an object streamed to a temporary file (hashed on the way, never whole in memory) and
    removed afterwards."""
    if isinstance(manifest, dict):
        manifest = Manifest.from_dict(manifest)
    path = opener(manifest.uri)
    if isinstance(path, Path):
        if file_hash(path) != manifest.content_hash:
            raise _stale(manifest)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="reconcile-") as tmp:
        local, digest = Path(tmp) / "object.parquet", hashlib.sha256()
        with path.open("rb") as src, local.open("wb") as dst:
            for block in iter(lambda: src.read(_BLOCK), b""):
                digest.update(block)
                dst.write(block)
        if digest.hexdigest()[:32] != manifest.content_hash:
            raise _stale(manifest)
        yield local


def read_frame(manifest: Manifest | dict[str, Any], opener: Opener = storage_path) -> pd.DataFrame:
    """Read a manifest's Parquet file after checking it is the file the manifest describes."""
    import pandas as pd

    with verified_file(manifest, opener) as path:
        return pd.read_parquet(path)
