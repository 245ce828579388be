"""NoiseStore: create, append, flush, close; open and read."""

from __future__ import annotations

import datetime as _dt
import glob
import json
import math
import os
import secrets
import shutil
import threading
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import zarr
from zarr.codecs import Crc32cCodec

from ..errors import InvalidStoreError, SgnMemoryError
from ._chunks import BadChunk, chunk_grid, raise_bad, read_rows_around, undecodable_chunks
from ._layout import (
    _COORD_CHUNK,
    _COORD_FIELDS,
    _COORDS,
    _FLUSH_INTERVAL,
    _NAME,
    _NOISE,
    _ROW_CHUNK_MIN,
    _SCALARS,
    _STEPS,
    DEFAULT_SCALARS,
    FORMAT,
    MAX_PENDING_BLOCKS,
    PROTOCOLS,
    SCHEMA_VERSION,
    CoordinateMap,
    _caller_attrs,
    _check_arrays,
    _check_chunks,
    _check_group_metadata,
    _is_noise_store,
    _selection,
    _software,
    default_chunk_rows,
    noise_chunk_shape,
)
from ._lock import LOCK_NAME, WriterLock
from ._writer import _LIVE_WRITERS, _Writer

_SALVAGE_FILL = {"steps": -1, "param_name": "?", "layer": "(unreadable)", "flat_index": 0}


def _all_finite(a: np.ndarray) -> bool:
    """No NaN or inf in the float32 array ``a``: its dot product with itself is finite (a
    third of the time of ``isfinite(a).all()``), or, when that overflowed, every value is."""
    flat = a.reshape(-1)
    with np.errstate(over="ignore", invalid="ignore"):
        if math.isfinite(float(np.dot(flat, flat))):
            return True
    return bool(np.isfinite(flat).all())


def _as_index(sel, n: int) -> np.ndarray:
    """A row or column selection (slice, int, int array) as an int64 index array."""
    if isinstance(sel, slice):
        return np.arange(*sel.indices(n), dtype=np.int64)
    return np.atleast_1d(np.asarray(sel, dtype=np.int64))


def _explain_missing(path: Path) -> None:
    """No store at ``path``: say so, and where an interrupted replacement left the old one."""
    left = sorted(path.parent.glob(glob.escape(f".{path.name}{_OLD}") + "*"))
    if left and _is_noise_store(left[0]):
        raise InvalidStoreError(
            f"no NoiseStore at {path}: an interrupted overwrite left the store it was replacing "
            f"at {left[0]} (rename it back to keep it)."
        )
    raise InvalidStoreError(f"no NoiseStore at {path}: the path does not exist.")


def _refuse_if_written_here(path: Path) -> None:
    """One writer per store: refuse a path a live writer of this process is writing (a training
    retried in the same interpreter whose first collector was never closed).  Writers in other
    processes are not seen here."""
    target = path.resolve()
    for writer in list(_LIVE_WRITERS):
        if writer.thread.is_alive() and Path(writer.path).resolve() == target:
            raise SgnMemoryError(
                f"the NoiseStore {path} is open for writing in this process (a collector or "
                "store not closed yet); close it before writing the store again."
            )


_NEW, _OLD = ".sgn-new-", ".sgn-old-"  # hidden siblings of a store being created or replaced
_STORE_ENTRIES = frozenset({"zarr.json", _NOISE, _STEPS, _SCALARS, _COORDS, LOCK_NAME})


def _is_unfinished_store(path: Path, *, sibling: bool = False) -> bool:
    """A directory holding only what :func:`_build` writes (an older release's create()
    interrupted in place), whose zarr.json, if any, is a zarr v3 group: recognisably ours.
    A hidden ``.sgn-new-`` sibling (``sibling``) may hold even less: only its lock, or nothing."""
    try:
        names = {e.name for e in os.scandir(path) if not e.name.endswith(".partial")}
    except OSError:
        return False
    if not names <= _STORE_ENTRIES:
        return False
    if not sibling and not names & {_NOISE, _STEPS, _SCALARS, _COORDS}:
        return False
    if "zarr.json" in names:
        try:
            meta = json.loads((path / "zarr.json").read_text())
        except (OSError, ValueError):
            return False
        return isinstance(meta, dict) and meta.get("node_type") == "group"
    return True


def _creator_alive(name: str) -> bool:
    """Whether the process named in a ``.NAME.sgn-new-PID-HEX`` sibling runs on this machine."""
    try:
        pid = int(name.rsplit("-", 2)[-2])
    except (ValueError, IndexError):
        return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # it exists (another user's)
    return True


def _remove_stale_siblings(path: Path) -> None:
    """Remove what an interrupted create() of ``path`` left beside it: a half-built store, or
    the store it was replacing (the caller had asked to overwrite it); never one whose writer
    lock is held, never anything that is not recognisably a store of ours."""
    parent = path.parent
    for prefix in (f".{path.name}{_NEW}", f".{path.name}{_OLD}"):
        for entry in parent.glob(glob.escape(prefix) + "*"):
            if not entry.is_dir() or entry.is_symlink():
                continue
            if not (_is_noise_store(entry) or _is_unfinished_store(entry, sibling=True)):
                continue
            if _creator_alive(entry.name):
                continue  # a create() running now, maybe before it could take its lock
            try:
                lock = WriterLock(entry).acquire(warn_stale=False)
            except SgnMemoryError:
                continue  # a live create() is using it
            lock.release()
            shutil.rmtree(entry, ignore_errors=True)
            warnings.warn(
                f"sgn_memory: removed {entry}, left by an interrupted creation of {path}.",
                RuntimeWarning,
                stacklevel=4,
            )


def _build(
    root: Path, *, coordinates, scalars, protocol, user, chunk_rows, **_writer_settings
) -> None:
    """Write the empty store's arrays, coordinate map and attributes under ``root``.

    Every array carries a crc32c checksum per chunk and writes every chunk, even one equal to
    its fill value.  The identifying attributes come last, so that a directory whose build was
    interrupted is never taken for a store."""
    k = len(coordinates)
    config = {"write_empty_chunks": True}
    group = zarr.open_group(root, mode="a", zarr_format=3)  # "w" would delete the lock
    noise_chunks = noise_chunk_shape(k, chunk_rows)
    row_chunk = chunk_rows * math.ceil(_ROW_CHUNK_MIN / chunk_rows)
    group.create_array(
        _NOISE,
        shape=(0, k),
        chunks=noise_chunks,
        dtype="float32",
        fill_value=np.nan,
        compressors=[Crc32cCodec()],
        dimension_names=("row", "coordinate"),
        config=config,
    )
    group.create_array(
        _STEPS,
        shape=(0,),
        chunks=(row_chunk,),
        dtype="int64",
        fill_value=-1,
        compressors=[Crc32cCodec()],
        config=config,
    )
    scalar_group = group.create_group(_SCALARS)
    for name in scalars:
        scalar_group.create_array(
            name,
            shape=(0,),
            chunks=(row_chunk,),
            dtype="float64",
            fill_value=np.nan,
            compressors=[Crc32cCodec()],
            config=config,
        )
    coord_group = group.create_group(_COORDS)
    coord_chunk = (min(k, _COORD_CHUNK),)
    for field in _COORD_FIELDS:
        values = getattr(coordinates, field)
        dtype = "int64" if field == "flat_index" else str
        array = coord_group.create_array(
            field,
            shape=(k,),
            chunks=coord_chunk,
            dtype=dtype,
            compressors=[Crc32cCodec()],
            config=config,
        )
        array[:] = values
    own = {
        "format": FORMAT,
        "schema_version": SCHEMA_VERSION,
        "protocol": protocol,
        "n_complete": 0,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "software": _software(),
        "scalars": list(scalars),
        "chunk_rows": chunk_rows,
    }
    group.update_attributes({"reference": None, "reference_size": None, **user, **own})


class NoiseStore:
    """Per-step gradient noise of one run on disk: written while training, read for analysis.

    Create a writer with :meth:`create` and a read-only view with :meth:`open`; both are
    context managers.  The on-disk layout is in the module docstring.

    Attributes
    ----------
    path : pathlib.Path
    coordinates : CoordinateMap
    protocol : str
        ``"trajectory"`` or ``"checkpoint"``.
    scalar_names : tuple of str
    n_coords : int
        Number of recorded coordinates, k.
    chunk_shape : tuple of int
        Chunk shape of ``noise``, ``(chunk_rows, coord_chunk)``.
    read_only : bool

    Notes
    -----
    A reader sees the rows that were complete when it was opened (or last :meth:`refresh`-ed); a
    writer sees the rows its thread has finished.  Rows are never visible before they are fully
    on disk.  Any number of readers, in any process, may read a store while it is written.  A
    writer's :meth:`append`, :meth:`flush` and :meth:`close` are meant for one thread (the
    training loop); reading from a writer is safe from any thread.

    Examples
    --------
    >>> import numpy as np, tempfile
    >>> from sgn_memory.store import CoordinateMap, NoiseStore
    >>> coords = CoordinateMap(np.array(["w", "w"]), np.array([0, 3]), np.array(["", ""]))
    >>> path = tempfile.mkdtemp() + "/run"
    >>> with NoiseStore.create(path, coordinates=coords, attrs={"optimizer": "SGD"}) as store:
    ...     for t in range(5):
    ...         store.append(np.array([t, -t]), step=t, scalars={"loss": 1.0 / (t + 1)})
    >>> store = NoiseStore.open(path)
    >>> store.n_complete, store.read_noise().shape, store.attrs["optimizer"]
    (5, (5, 2), 'SGD')
    """

    def __init__(self, path: Path, group, *, read_only: bool):  # use create() or open()
        self.path = path
        self._group = group
        self.read_only = read_only
        self._attrs_lock = threading.Lock()
        self._writer: _Writer | None = None
        self._salvage = False
        self.damage: tuple[BadChunk, ...] = ()  # bad chunks found by open(salvage=True)
        self._damage: dict[str, set] = {}
        st = os.stat(path)
        self._dir_id = (st.st_dev, st.st_ino)
        self._load()

    def _load(self) -> None:
        """Read the attributes, then the arrays (so that every array is >= n_complete rows)."""
        attrs = dict(self._group.attrs.asdict())
        self._attrs = attrs
        self.protocol: str = attrs["protocol"]
        self.scalar_names: tuple[str, ...] = tuple(attrs["scalars"])
        self._scalar_index = {name: i for i, name in enumerate(self.scalar_names)}
        self._n_complete = int(attrs["n_complete"])
        self._noise = self._group[_NOISE]
        self._steps = self._group[_STEPS]
        self._scalar_arrays = {n: self._group[f"{_SCALARS}/{n}"] for n in self.scalar_names}
        self.n_coords: int = int(self._noise.shape[1])
        self.chunk_shape: tuple[int, int] = tuple(int(c) for c in self._noise.chunks)

    # -- creation ------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        path,
        *,
        coordinates: CoordinateMap,
        scalars: Sequence[str] = DEFAULT_SCALARS,
        protocol: Literal["trajectory", "checkpoint"] = "trajectory",
        attrs: Mapping[str, Any] | None = None,
        chunk_rows: int | None = None,
        overwrite: bool = False,
        max_pending_blocks: int = MAX_PENDING_BLOCKS,
        flush_interval: float | None = _FLUSH_INTERVAL,
    ) -> NoiseStore:
        """Create a new store at ``path`` and return it open for writing.

        Parameters
        ----------
        path : str or os.PathLike
            A directory that does not exist yet, or is empty (or, with ``overwrite``, an
            existing NoiseStore).
        coordinates : CoordinateMap
            The k recorded coordinates; ``noise`` has one column per entry.
        scalars : sequence of str
            Names of the per-step scalars (letters, digits, ``_ . -``); :data:`DEFAULT_SCALARS`
            by default.  A scalar not given to :meth:`append` is stored as NaN.
        protocol : {"trajectory", "checkpoint"}
            ``"trajectory"``: u_t recorded during training; ``"checkpoint"``: frozen weights,
            minibatch gradients around one exact full gradient.
        attrs : mapping, optional
            Metadata stored as JSON group attributes: the reference kind and size
            (``reference``, ``reference_size``), optimizer, batch size, seeds, model summary...
            numpy scalars/arrays and tuples are converted to JSON numbers/lists.
        chunk_rows : int, optional
            Rows per block handed to the writer thread and per noise chunk;
            :func:`default_chunk_rows` of k by default (128 for k >= 8192, up to 1024 for small
            k).  At most this many rows (plus up to ``flush_interval`` seconds of rows) are lost
            when the writing process is killed.
        overwrite : bool
            Replace an existing NoiseStore at ``path`` (or what an interrupted creation left
            there), once no process holds its writer lock; the old store is removed only after
            the new one is in place.  A non-empty directory that is not a NoiseStore is never
            deleted.

        Raises
        ------
        SgnMemoryError
            A bad argument, an existing path (without ``overwrite``), a path that is a file or
            a foreign directory, or a store another process is writing (naming it).
        max_pending_blocks : int
            Full blocks that may wait for the writer thread.  When disk writes fall further
            behind, :meth:`append` waits for the thread instead of growing memory: the writer
            holds at most ``max_pending_blocks + 2`` blocks of ``chunk_rows * k * 4`` bytes.
        flush_interval : float or None
            Also hand a partly filled block to the writer thread, like a full one, when this
            many seconds have passed since the last hand-off (checked in :meth:`append`, which
            does not wait for it to be written), bounding what a crash loses in wall-clock time
            when steps are slow; the next block then ends on the chunk boundary again.
            ``None``: only full blocks, :meth:`flush` and :meth:`close` write.

        Returns
        -------
        NoiseStore
            A writer; call :meth:`close` (or use ``with``) to write the last rows.  Writers not
            closed are closed by an exit hook when the interpreter exits normally.
        """
        if not isinstance(coordinates, CoordinateMap):
            raise SgnMemoryError(
                f"coordinates must be a CoordinateMap; got {type(coordinates).__name__}."
            )
        k = len(coordinates)
        if k == 0:
            raise SgnMemoryError("a NoiseStore needs at least one coordinate; got none.")
        if protocol not in PROTOCOLS:
            raise SgnMemoryError(f"protocol must be one of {PROTOCOLS}; got {protocol!r}.")
        scalars = tuple(scalars)
        for name in scalars:
            if not isinstance(name, str) or not _NAME.match(name):
                raise SgnMemoryError(
                    f"scalar names must start with a letter or '_' and use only letters, "
                    f"digits, '_', '.' and '-'; got {name!r}."
                )
        if len(set(scalars)) != len(scalars):
            raise SgnMemoryError(f"scalar names must be unique; got {scalars}.")
        chunk_rows = default_chunk_rows(k) if chunk_rows is None else chunk_rows
        if not isinstance(chunk_rows, int | np.integer) or chunk_rows < 1:
            raise SgnMemoryError(f"chunk_rows must be a positive integer; got {chunk_rows!r}.")
        chunk_rows = int(chunk_rows)
        if not isinstance(max_pending_blocks, int | np.integer) or max_pending_blocks < 1:
            raise SgnMemoryError(
                f"max_pending_blocks must be a positive integer; got {max_pending_blocks!r}."
            )
        if flush_interval is not None and not flush_interval > 0:
            raise SgnMemoryError(f"flush_interval must be positive or None; got {flush_interval}.")
        user = _caller_attrs(attrs or {})

        return cls._create(
            Path(path),
            coordinates=coordinates,
            scalars=scalars,
            protocol=protocol,
            user=user,
            chunk_rows=chunk_rows,
            overwrite=overwrite,
            max_pending_blocks=int(max_pending_blocks),
            flush_interval=flush_interval,
        )

    @classmethod
    def _create(cls, path: Path, *, overwrite: bool, **spec) -> NoiseStore:
        """Atomic creation: the store is built in a hidden sibling, holding its writer lock, and
        renamed into place; an existing store is replaced only when its writer lock is free.
        An existing empty directory (a folder a job scheduler made) is filled in place."""
        replace = in_place = False
        if path.is_symlink():  # runs/exp1 -> /scratch/exp1: the store goes where the link points
            path = Path(os.path.realpath(path))
        if path.exists() or path.is_symlink():
            _refuse_if_written_here(path)
            if not path.is_dir():
                raise SgnMemoryError(f"cannot create a NoiseStore at {path}: it is a file.")
            if any(path.iterdir()):
                if not overwrite:
                    raise SgnMemoryError(
                        f"cannot create a NoiseStore at {path}: it already exists; pass "
                        "overwrite=True to replace it, or choose another path."
                    )
                if not (_is_noise_store(path) or _is_unfinished_store(path)):
                    raise SgnMemoryError(
                        f"refusing to overwrite {path}: it is a non-empty directory that is not "
                        "a NoiseStore."
                    )
                replace = True
            else:
                in_place = True
        parent = path.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise SgnMemoryError(
                f"cannot create a NoiseStore at {path}: its folder {parent} cannot be made "
                f"({err.strerror or err})."
            ) from None
        _remove_stale_siblings(path)
        old_lock = WriterLock(path).acquire(warn_stale=False) if replace else None
        try:
            if in_place:
                lock = WriterLock(path).acquire()
                try:
                    _build(path, **spec)
                except BaseException:
                    lock.release()
                    raise
            else:
                tmp = parent / f".{path.name}{_NEW}{os.getpid()}-{secrets.token_hex(3)}"
                try:
                    tmp.mkdir()
                    lock = WriterLock(tmp).acquire()
                except (OSError, SgnMemoryError) as err:
                    shutil.rmtree(tmp, ignore_errors=True)
                    why = getattr(err, "strerror", None) or err
                    raise SgnMemoryError(f"cannot create a NoiseStore at {path}: {why}.") from None
                try:
                    _build(tmp, **spec)
                    if replace:
                        old = parent / f".{path.name}{_OLD}{os.getpid()}-{secrets.token_hex(3)}"
                        os.rename(path, old)
                        os.rename(tmp, path)
                        old_lock.release()
                        shutil.rmtree(old, ignore_errors=True)
                    else:
                        try:
                            os.rename(tmp, path)
                        except OSError:
                            raise SgnMemoryError(
                                f"cannot create a NoiseStore at {path}: another process created "
                                "it meanwhile."
                            ) from None
                except BaseException:
                    lock.release()
                    shutil.rmtree(tmp, ignore_errors=True)
                    raise
        finally:
            if old_lock is not None:
                old_lock.release()
        lock.path = path  # the lock file moved with the directory; its descriptor still holds
        try:
            group = zarr.open_group(path, mode="r+", zarr_format=3)
            store = cls(path, group, read_only=False)
            store._coordinates = spec["coordinates"]
            store._start_writer(
                lock,
                chunk_rows=int(store._attrs["chunk_rows"]),
                max_pending=spec["max_pending_blocks"],
                flush_interval=spec["flush_interval"],
            )
        except BaseException:
            lock.release()
            raise
        return store

    def _start_writer(self, lock, *, chunk_rows, max_pending, flush_interval, **position):
        # a runtime setting, not stored: write every chunk, also one equal to the fill value
        # (the integrity check counts on every chunk below n_complete existing)
        config = {"write_empty_chunks": True}
        self._noise = self._noise.with_config(config)
        self._steps = self._steps.with_config(config)
        self._scalar_arrays = {n: a.with_config(config) for n, a in self._scalar_arrays.items()}
        self._writer = _Writer(
            self.path,
            self._group,
            (self._noise, self._steps, [self._scalar_arrays[n] for n in self.scalar_names]),
            (self._attrs_lock, self._attrs),
            chunk_rows=chunk_rows,
            max_pending=max_pending,
            flush_interval=flush_interval,
            lock=lock,
            **position,
        )

    @classmethod
    def resume(
        cls,
        path,
        *,
        after_step: int,
        max_pending_blocks: int = MAX_PENDING_BLOCKS,
        flush_interval: float | None = _FLUSH_INTERVAL,
    ) -> NoiseStore:
        """Reopen an existing store for writing, keeping the rows of steps <= ``after_step``.

        For a run restarted from a checkpoint taken at ``after_step``: rows the interrupted
        run recorded after its checkpoint are dropped (the restarted run records those steps
        again), and new rows are appended after the kept ones; their steps must be greater than
        ``after_step``.  The caller checks that the run is the same one (coordinates,
        reference, protocol); :class:`~sgn_memory.NoiseCollector` does (``resume=``).

        Parameters
        ----------
        path : str or os.PathLike
            An existing NoiseStore (validated as by :meth:`open`).
        after_step : int
            The training step of the checkpoint.
        max_pending_blocks, flush_interval
            As for :meth:`create`.

        Notes
        -----
        Crash safety is that of :meth:`create`: ``n_complete`` is lowered to the kept rows
        first (one atomic attribute write), so readers and a writer killed at any later moment
        see only kept rows and rows written after them.  The chunk length ``chunk_rows`` is
        the store's own.
        """
        _refuse_if_written_here(Path(path))
        if not isinstance(max_pending_blocks, int | np.integer) or max_pending_blocks < 1:
            raise SgnMemoryError(
                f"max_pending_blocks must be a positive integer; got {max_pending_blocks!r}."
            )
        reader = cls.open(path)  # a damaged store is refused before anything is touched
        lock = WriterLock(reader.path).acquire()
        try:
            reader.refresh()  # the rows as they are now that no other writer can move them
            steps = reader.steps
            if steps.size > 1 and not bool(np.all(np.diff(steps) > 0)):
                raise InvalidStoreError(
                    f"{reader.path}: its steps do not strictly increase, so the rows after step "
                    f"{after_step} cannot be told apart; it cannot be resumed."
                )
            keep = int(np.searchsorted(steps, int(after_step), side="right"))
            group = zarr.open_group(reader.path, mode="r+", zarr_format=3)
            # first, in one atomic write: no reader ever sees a dropped row again, and a reader
            # opened before sees "resumed" change before any row is rewritten
            resumed = int(reader.attrs.get("resumed", 0)) + 1
            group.update_attributes({"n_complete": keep, "resumed": resumed})
            store = cls(reader.path, group, read_only=False)
            store._start_writer(
                lock,
                chunk_rows=int(reader.attrs["chunk_rows"]),
                max_pending=int(max_pending_blocks),
                flush_interval=flush_interval,
                start=keep,
                last_step=int(steps[keep - 1]) if keep else None,
            )
        except BaseException:
            lock.release()
            raise
        return store

    # -- opening -------------------------------------------------------------------------

    @classmethod
    def open(cls, path, *, salvage: bool = False) -> NoiseStore:
        """Open an existing store read-only, after checking that it is a sound NoiseStore.

        Parameters
        ----------
        path : str or os.PathLike
        salvage : bool
            Open a damaged store anyway, to read what is still readable: every chunk is read
            once now (checksums verified), the bad ones are listed in :attr:`damage`, and reads
            return NaN (steps: -1; coordinate names: ``"?"``) where a bad chunk was, instead of
            raising.  Off by default: damage is an error.

        Raises
        ------
        InvalidStoreError
            With one sentence naming what is wrong: no such path, not a zarr v3 group, not a
            NoiseStore, a missing or malformed array, inconsistent lengths, ``n_complete``
            beyond the arrays, a chunk below ``n_complete`` that is missing (checked here) or
            whose checksum does not match (checked on every read, :meth:`verify` checks all).
        SchemaVersionError
            The store was written with a schema version this release does not read.

        Notes
        -----
        Row arrays longer than ``n_complete``, even of different lengths (a store being written,
        or a writer killed while growing them), are expected and not an error: rows past
        ``n_complete`` are ignored.  Stores of schema version 1 (before checksums) are read;
        only their ``noise`` and ``steps`` chunks can be checked for presence.
        """
        path = Path(path)
        if not path.exists():
            _explain_missing(path)
        _check_group_metadata(path)
        try:
            group = zarr.open_group(zarr.storage.LocalStore(path, read_only=True), mode="r")
        except Exception as err:
            raise InvalidStoreError(f"{path} cannot be opened as a zarr group: {err}.") from err
        _check_arrays(path, group)
        store = cls(path, group, read_only=True)
        store._salvage = bool(salvage)
        store._check_integrity()
        return store

    @classmethod
    def _open_known_damage(cls, path, damage) -> NoiseStore:
        """A salvaging reader whose bad chunks are already known (a Dask worker reopening a
        store the client verified): nothing is re-read to find them."""
        path = Path(path)
        _check_group_metadata(path)
        group = zarr.open_group(zarr.storage.LocalStore(path, read_only=True), mode="r")
        _check_arrays(path, group)
        store = cls(path, group, read_only=True)
        store._salvage = True
        store.damage = tuple(damage)
        for chunk in store.damage:
            store._damage.setdefault(chunk.array, set()).add(chunk.index)
        return store

    def refresh(self) -> int:
        """Reader: re-read the store to see rows completed since it was opened; returns
        ``n_complete``.  On a writer this is a no-op."""
        if self.read_only:
            _check_group_metadata(self.path)
            group = zarr.open_group(zarr.storage.LocalStore(self.path, read_only=True), mode="r")
            _check_arrays(self.path, group)
            self._group = group
            self._load()
            self._check_integrity()
        return self.n_complete

    # -- integrity -----------------------------------------------------------------------

    @property
    def checksums(self) -> bool:
        """Whether every chunk carries a crc32c checksum (schema version 2 and later)."""
        return int(self._attrs["schema_version"]) >= 2

    def _check_integrity(self) -> None:
        missing = _check_chunks(self.path, self._group)
        if not self._salvage:
            if missing:
                raise_bad(self.path, missing)
            self.damage = ()
            self._damage = {}
            return
        bad = self.verify()
        self.damage = tuple(bad)
        self._damage = {}
        for chunk in bad:
            self._damage.setdefault(chunk.array, set()).add(chunk.index)

    def verify(self) -> list[BadChunk]:
        """Read every chunk below ``n_complete`` of every array once; the missing ones and
        those that do not decode (checksum mismatch, truncated file), in array order.  Empty:
        the store is sound.  Reads the whole store (about as long as one analysis pass)."""
        attrs = self._group.attrs.asdict()
        missing = _check_chunks(self.path, self._group)
        known = {(c.array, c.index) for c in missing}
        bad = list(missing)
        arrays = {
            _NOISE: (self._group[_NOISE], self.n_complete),
            _STEPS: (self._group[_STEPS], self.n_complete),
            **{
                f"{_SCALARS}/{n}": (self._group[f"{_SCALARS}/{n}"], self.n_complete)
                for n in attrs["scalars"]
            },
        }
        for field in _COORD_FIELDS:
            a = self._group[f"{_COORDS}/{field}"]
            arrays[f"{_COORDS}/{field}"] = (a, int(a.shape[0]))
        for name, (array, n) in arrays.items():
            indices = [
                i for i in chunk_grid(array.shape, array.chunks, n) if (name, i) not in known
            ]
            bad += undecodable_chunks(array, name, n, indices=indices)
        return bad

    def _same_directory(self) -> None:
        """After a read: the path still names the directory opened (not removed or replaced
        meanwhile: zarr would read the chunks of a replacement, or fill values for a removed
        one), and no writer resumed it since (a resume rewrites rows past its checkpoint, so a
        reader opened before could mix two runs).  A resume announces itself in the group's
        attributes before it rewrites any row, so a check after the read catches every mix."""
        try:
            st = os.stat(self.path)
            same = (st.st_dev, st.st_ino) == self._dir_id
        except OSError:
            same = False
        if not same:
            raise InvalidStoreError(
                f"{self.path}: the store was removed or replaced while it was being read; "
                "open it again."
            )
        if self._writer is None:
            try:
                meta = json.loads((self.path / "zarr.json").read_text())
                resumed = meta["attributes"].get("resumed", 0)
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                resumed = None
            if resumed != self._attrs.get("resumed", 0):
                raise InvalidStoreError(
                    f"{self.path}: another process resumed writing this store while it was "
                    "being read (rows after its checkpoint are rewritten); open it again."
                )

    def _values(self, name: str, array, rows, cols=None) -> np.ndarray:
        """``array.oindex[rows(, cols)]``, reading around known-bad chunks when salvaging,
        and naming the chunk when one does not decode."""
        bad = self._damage.get(name)
        if bad:
            r = _as_index(rows, array.shape[0])
            c = None if cols is None else _as_index(cols, array.shape[1])
            fill = _SALVAGE_FILL.get(name.rpartition("/")[2], np.nan)
            out = read_rows_around(array, r, c, bad, fill)
            if name.startswith(_COORDS) and out.dtype == object:
                out = out.astype(str)
            if not isinstance(rows, slice) and np.ndim(rows) == 0:
                out = out[0]
            if cols is not None and not isinstance(cols, slice) and np.ndim(cols) == 0:
                out = out[..., 0]
            return out
        try:
            out = array.oindex[rows] if cols is None else array.oindex[rows, cols]
        except SgnMemoryError:
            raise
        except (ValueError, OSError, TypeError, RuntimeError) as err:
            self._raise_located(name, array, rows, cols, err)
        self._same_directory()
        return out

    def _raise_located(self, name, array, rows, cols, err) -> None:
        n = array.shape[0]
        r = _as_index(rows, n) // array.chunks[0]
        touched = [(int(i),) for i in np.unique(r)]
        if cols is not None:
            c = np.unique(_as_index(cols, array.shape[1]) // array.chunks[1])
            touched = [(i[0], int(j)) for i in touched for j in c]
        limit = self.n_complete if name in (_NOISE, _STEPS) or name.startswith(_SCALARS) else n
        found = undecodable_chunks(array, name, limit, indices=touched, first_only=True)
        if found:
            raise_bad(self.path, found)
        detail = (str(err).strip().splitlines() or [""])[0][:160]  # one line, bounded
        raise InvalidStoreError(
            f"{self.path}: the array {name!r} cannot be read ({type(err).__name__}: {detail}); "
            "the store is damaged."
        ) from err

    # -- writing -------------------------------------------------------------------------

    def _writer_or_raise(self) -> _Writer:
        if self._writer is None:
            raise SgnMemoryError(f"the NoiseStore {self.path} is open read-only.")
        if not self._writer.thread.is_alive():
            raise SgnMemoryError(f"the NoiseStore {self.path} is closed.")
        return self._writer

    def append(
        self, noise, *, step, scalars: Mapping[str, float | np.ndarray] | None = None
    ) -> None:
        """Buffer one row, or ``r`` rows, of noise; returns without waiting for the disk.

        Parameters
        ----------
        noise : array_like
            ``(k,)`` or ``(r, k)`` real numbers; stored as float32.
        step : int or array_like of int
            The training step of each row: an int for a ``(k,)`` row, ``(r,)`` ints otherwise.
        scalars : mapping, optional
            Per-step scalars by name (see :attr:`scalar_names`): a float per row (or ``(r,)``
            values).  Scalars not given are stored as NaN.

        Notes
        -----
        The rows are copied (the caller may reuse its arrays at once).  When a block of
        ``chunk_rows`` rows fills it is handed to the writer thread; if that thread is
        ``max_pending_blocks`` blocks behind, this call waits for it (bounded memory).  A failure
        of the writer thread is raised here, by :meth:`flush` or by :meth:`close`.
        """
        writer = self._writer_or_raise()
        writer.raise_error()
        x = np.asarray(noise)
        if x.dtype.kind not in "fiub":
            raise SgnMemoryError(f"noise must hold real numbers; got dtype {x.dtype}.")
        single = x.ndim == 1
        if single:
            x = x[None]
        if x.ndim != 2 or x.shape[1] != self.n_coords:
            raise SgnMemoryError(
                f"noise must have shape ({self.n_coords},) or (r, {self.n_coords}) for this "
                f"store; got {np.shape(noise)}."
            )
        r = x.shape[0]
        steps = np.asarray(step)
        if steps.dtype.kind not in "iu" or steps.shape != (() if single else (r,)):
            raise SgnMemoryError(
                f"step must be {'an int' if single else f'{r} ints, one per row'}; got "
                f"{step!r:.60}."
            )
        with np.errstate(over="ignore"):  # what is stored: a float64 above 3.4e38 is inf
            x32 = x.astype(np.float32, copy=False)
        if not _all_finite(x32):
            bad = int(np.flatnonzero(~np.isfinite(x32).all(axis=1))[0])
            raise SgnMemoryError(
                f"noise row {bad} of this call holds NaN or infinite values; a NoiseStore "
                "records finite noise only (a diverged step is not a row)."
            )
        if r and (int(steps.min()) < 0 or int(steps.max()) > np.iinfo(np.int64).max):
            raise SgnMemoryError(
                f"steps must be non-negative int64 values; got {steps.min()}..{steps.max()}."
            )
        first = int(steps) if single else int(steps[0]) if r else None
        if first is not None and (
            (writer.last_step is not None and first <= writer.last_step)
            or (not single and r > 1 and not bool(np.all(np.diff(steps) > 0)))
        ):
            within = not single and r > 1 and not bool(np.all(np.diff(steps) > 0))
            raise SgnMemoryError(
                "steps must strictly increase; "
                + (
                    f"this call's steps {steps.tolist()!s:.60} do not."
                    if within
                    else f"the last row appended has step {writer.last_step} and this call "
                    f"gives {steps.tolist()!s:.60}."
                )
            )
        values = []
        for name, value in (scalars or {}).items():
            i = self._scalar_index.get(name)
            if i is None:
                raise SgnMemoryError(
                    f"unknown scalar {name!r}; this store records {self.scalar_names}."
                )
            v = np.asarray(value, dtype=np.float64)
            if v.shape not in ((), (r,)):
                raise SgnMemoryError(
                    f"scalar {name!r} must be a number or {r} numbers; got shape {v.shape}."
                )
            values.append((i, v))
        done = 0
        while done < r:
            block = writer.block
            take = min(r - done, writer.capacity() - block.n)
            rows = slice(block.n, block.n + take)
            block.noise[rows] = x[done : done + take]
            block.steps[rows] = steps if single else steps[done : done + take]
            for i, v in values:
                block.scalars[i, rows] = v if v.ndim == 0 else v[done : done + take]
            block.n += take
            done += take
            if block.n == writer.capacity():
                writer.hand_off()
        if r:
            writer.last_step = int(steps) if single else int(steps[-1])
        if (
            writer.flush_interval is not None
            and time.monotonic() - writer.last_handoff > writer.flush_interval
        ):
            writer.hand_off()

    def _append_row_into(self, fill, step: int, scalars: Mapping[str, float]) -> None:
        """The collector's fast path: ``fill(row)`` writes the k float32 values of one row
        straight into the buffered block (no intermediate copy, no validation: the caller is
        ours and passes a known step and known scalar names)."""
        writer = self._writer_or_raise()
        writer.raise_error()
        if writer.last_step is not None and step <= writer.last_step:
            raise SgnMemoryError(
                f"steps must strictly increase; the last row appended has step "
                f"{writer.last_step} and this row {step}."
            )
        if step < 0:
            raise SgnMemoryError(f"steps must be non-negative; got {step}.")
        block = writer.block
        i = block.n
        fill(block.noise[i])
        norm = scalars.get("noise_norm_sq")  # NaN/inf anywhere in the row make it non-finite
        row = block.noise[i]
        # the norm (float32 on the device) may overflow for huge finite rows: then look
        finite = (norm is not None and math.isfinite(norm)) or _all_finite(row)
        if not finite:
            raise SgnMemoryError(
                f"the noise row of step {step} holds NaN or infinite values (the gradients or "
                "the reference diverged); a NoiseStore records finite noise only."
            )
        writer.last_step = step
        block.steps[i] = step
        index = self._scalar_index
        for name, value in scalars.items():
            block.scalars[index[name], i] = value
        block.n = i + 1
        if block.n == writer.capacity():
            writer.hand_off()
        elif (
            writer.flush_interval is not None
            and time.monotonic() - writer.last_handoff > writer.flush_interval
        ):
            writer.hand_off()

    def flush(self) -> None:
        """Write every row appended so far and wait until ``n_complete`` counts them."""
        self._writer_or_raise().flush()

    def close(self) -> None:
        """Write the buffered rows, stop the writer thread; idempotent, no-op for a reader.

        Raises a failure of the writer thread not reported yet; rows appended before the
        failure and written before it stay readable up to ``n_complete``.
        """
        writer = self._writer
        if writer is None or not writer.thread.is_alive():
            return
        writer.stop()

    def __enter__(self) -> NoiseStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()  # writes the buffered rows even when the block raised

    def update_attrs(self, **attrs) -> None:
        """Add or replace metadata attributes (JSON values; the store's own keys are refused)."""
        self._writer_or_raise()
        new = _caller_attrs(attrs)
        with self._attrs_lock:
            self._group.update_attributes(new)
            self._attrs.update(new)

    # -- reading -------------------------------------------------------------------------

    @property
    def n_complete(self) -> int:
        """Rows fully on disk (on a reader: when it was opened or refreshed)."""
        return self._writer.n_complete if self._writer is not None else self._n_complete

    @property
    def n_appended(self) -> int:
        """Writer: rows appended so far (complete, queued or buffered); reader: ``n_complete``."""
        return self._writer.n_appended if self._writer is not None else self._n_complete

    @property
    def attrs(self) -> dict[str, Any]:
        """A copy of every attribute: the store's own (``n_complete`` included) and the caller's."""
        with self._attrs_lock:
            return json.loads(json.dumps(self._attrs))

    @property
    def coordinates(self) -> CoordinateMap:
        """The coordinate map (read from disk once, then cached)."""
        if not hasattr(self, "_coordinates"):
            fields = {
                field: self._values(
                    f"{_COORDS}/{field}", self._group[f"{_COORDS}/{field}"], slice(None)
                )
                for field in _COORD_FIELDS
            }
            self._coordinates = CoordinateMap(**fields)
        return self._coordinates

    @property
    def steps(self) -> np.ndarray:
        """``(n_complete,)`` int64: the training step of each complete row.

        Raises :class:`~sgn_memory.InvalidStoreError` when they are not non-negative and
        strictly increasing (what append enforces), e.g. rows counted past the written ones by
        an edited ``n_complete``; a salvaging reader gives -1 for unreadable steps instead."""
        steps = np.asarray(
            self._values(_STEPS, self._steps, slice(0, self.n_complete)), dtype=np.int64
        )
        if self.checksums and not self._salvage and steps.size:
            bad = np.flatnonzero(steps < 0)
            if not bad.size and steps.size > 1:
                bad = np.flatnonzero(np.diff(steps) <= 0) + 1
            if bad.size:
                i = int(bad[0])
                raise InvalidStoreError(
                    f"{self.path}: row {i} has step {steps[i]}"
                    + (f" after step {steps[i - 1]}" if i else "")
                    + "; steps of a NoiseStore are non-negative and strictly increase, so the "
                    "store is damaged (rows counted that were never written?)."
                )
        return steps

    def scalar(self, name: str) -> np.ndarray:
        """``(n_complete,)`` float64 values of the per-step scalar ``name`` (NaN where unset)."""
        if name not in self._scalar_arrays:
            raise SgnMemoryError(f"unknown scalar {name!r}; this store has {self.scalar_names}.")
        values = self._values(
            f"{_SCALARS}/{name}", self._scalar_arrays[name], slice(0, self.n_complete)
        )
        return np.asarray(values, dtype=np.float64)

    def read_noise(self, rows=slice(None), coords=slice(None)) -> np.ndarray:
        """Noise of the complete rows as float32.

        Parameters
        ----------
        rows : slice, int or array_like of int
            Rows among the ``n_complete`` complete ones (negative indices count from the last
            complete row; slices are clipped to it, like numpy).
        coords : slice, int or array_like of int or bool
            Columns (coordinates).

        Returns
        -------
        numpy.ndarray
            ``(len(rows), len(coords))``, with an axis dropped for an int index.
        """
        row_sel = _selection(rows, self.n_complete, "rows")
        coord_sel = _selection(coords, self.n_coords, "coords")
        return np.asarray(self._values(_NOISE, self._noise, row_sel, coord_sel), dtype=np.float32)

    def iter_coord_blocks(self, block: int | None = None) -> Iterator[tuple[slice, np.ndarray]]:
        """Yield ``(coords, noise)`` for consecutive coordinate blocks over the full time axis.

        Parameters
        ----------
        block : int, optional
            Coordinates per block; the noise chunk width ``chunk_shape[1]`` by default.  A
            multiple of it reads every chunk once; other widths re-read chunks at block edges.

        Yields
        ------
        coords : slice
            The block's columns, ``slice(start, stop)``; the blocks cover ``0 .. k`` in order.
        noise : numpy.ndarray
            ``(n_complete, stop - start)`` float32.  Memory is bounded by one block.
        """
        width = self.chunk_shape[1] if block is None else block
        if not isinstance(width, int | np.integer) or width < 1:
            raise SgnMemoryError(f"block must be a positive integer; got {block!r}.")
        n = self.n_complete  # fixed for the whole pass, so that every block has the same rows
        for start in range(0, self.n_coords, int(width)):
            cols = slice(start, min(start + int(width), self.n_coords))
            block_values = np.asarray(
                self._values(_NOISE, self._noise, slice(0, n), cols), dtype=np.float32
            )
            yield cols, block_values

    def __repr__(self) -> str:
        mode = "r" if self.read_only else "w"
        n = self.n_complete
        try:  # two values, not the whole column
            steps = ", steps={}..{}".format(*self._steps.oindex[[0, n - 1]]) if n else ""
        except Exception:  # a repr never raises
            steps = ""
        return (
            f"NoiseStore({str(self.path)!r}, mode={mode!r}, protocol={self.protocol!r}, "
            f"n_complete={n}, n_coords={self.n_coords}{steps}, scalars={self.scalar_names})"
        )
