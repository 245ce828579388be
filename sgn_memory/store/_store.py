"""NoiseStore: create, append, flush, close; open and read."""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import math
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import zarr

from ..errors import InvalidStoreError, SgnMemoryError
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
    _check_group_metadata,
    _is_noise_store,
    _selection,
    _software,
    default_chunk_rows,
    noise_chunk_shape,
)
from ._writer import _LIVE_WRITERS, _Writer


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
            Replace an existing NoiseStore at ``path``.  A non-empty directory that is not a
            NoiseStore is never deleted.
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

        path = Path(path)
        if path.exists():
            _refuse_if_written_here(path)
            if not path.is_dir():
                raise SgnMemoryError(f"cannot create a NoiseStore at {path}: it is a file.")
            if any(path.iterdir()):
                if not overwrite:
                    raise SgnMemoryError(
                        f"cannot create a NoiseStore at {path}: it already exists; pass "
                        "overwrite=True to replace it, or choose another path."
                    )
                if not _is_noise_store(path):
                    raise SgnMemoryError(
                        f"refusing to overwrite {path}: it is a non-empty directory that is not "
                        "a NoiseStore."
                    )

        # arrays first, the identifying attributes last: an interrupted create() leaves a
        # directory that open() reports as "not a NoiseStore", never a half store that opens
        group = zarr.open_group(path, mode="w", zarr_format=3)
        noise_chunks = noise_chunk_shape(k, chunk_rows)
        row_chunk = chunk_rows * math.ceil(_ROW_CHUNK_MIN / chunk_rows)
        group.create_array(
            _NOISE,
            shape=(0, k),
            chunks=noise_chunks,
            dtype="float32",
            fill_value=np.nan,
            compressors=None,
            dimension_names=("row", "coordinate"),
        )
        group.create_array(_STEPS, shape=(0,), chunks=(row_chunk,), dtype="int64", fill_value=-1)
        scalar_group = group.create_group(_SCALARS)
        for name in scalars:
            scalar_group.create_array(
                name, shape=(0,), chunks=(row_chunk,), dtype="float64", fill_value=np.nan
            )
        coord_group = group.create_group(_COORDS)
        coord_chunk = (min(k, _COORD_CHUNK),)
        for field in _COORD_FIELDS:
            values = getattr(coordinates, field)
            dtype = "int64" if field == "flat_index" else str
            array = coord_group.create_array(field, shape=(k,), chunks=coord_chunk, dtype=dtype)
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

        store = cls(path, group, read_only=False)
        store._coordinates = coordinates
        # a runtime setting, not stored: write every chunk without first scanning it for an
        # all-NaN block (readers trust n_complete, not chunk presence)
        store._noise = store._noise.with_config({"write_empty_chunks": True})
        store._writer = _Writer(store, chunk_rows, int(max_pending_blocks), flush_interval)
        return store

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
        reader = cls.open(path)
        steps = reader.steps
        if steps.size > 1 and not bool(np.all(np.diff(steps) > 0)):
            raise InvalidStoreError(
                f"{reader.path}: its steps do not strictly increase, so the rows after step "
                f"{after_step} cannot be told apart; it cannot be resumed."
            )
        keep = int(np.searchsorted(steps, int(after_step), side="right"))
        if not isinstance(max_pending_blocks, int | np.integer) or max_pending_blocks < 1:
            raise SgnMemoryError(
                f"max_pending_blocks must be a positive integer; got {max_pending_blocks!r}."
            )
        group = zarr.open_group(reader.path, mode="r+", zarr_format=3)
        if keep < reader.n_complete:  # first: no reader ever sees a dropped row again
            group.update_attributes({"n_complete": keep})
        store = cls(reader.path, group, read_only=False)
        store._noise = store._noise.with_config({"write_empty_chunks": True})
        last = int(steps[keep - 1]) if keep else None
        store._writer = _Writer(
            store,
            int(reader.attrs["chunk_rows"]),
            int(max_pending_blocks),
            flush_interval,
            start=keep,
            last_step=last,
        )
        return store

    # -- opening -------------------------------------------------------------------------

    @classmethod
    def open(cls, path) -> NoiseStore:
        """Open an existing store read-only, after checking that it is a sound NoiseStore.

        Raises
        ------
        InvalidStoreError
            With one sentence naming what is wrong: no such path, not a zarr v3 group, not a
            NoiseStore, a missing or malformed array, inconsistent lengths, ``n_complete``
            beyond the arrays.
        SchemaVersionError
            The store was written with a schema version this release does not read.

        Notes
        -----
        Row arrays longer than ``n_complete``, even of different lengths (a store being written,
        or a writer killed while growing them), are expected and not an error: rows past
        ``n_complete`` are ignored.
        """
        path = Path(path)
        _check_group_metadata(path)
        try:
            group = zarr.open_group(zarr.storage.LocalStore(path, read_only=True), mode="r")
        except Exception as err:
            raise InvalidStoreError(f"{path} cannot be opened as a zarr group: {err}.") from err
        _check_arrays(path, group)
        return cls(path, group, read_only=True)

    def refresh(self) -> int:
        """Reader: re-read the store to see rows completed since it was opened; returns
        ``n_complete``.  On a writer this is a no-op."""
        if self.read_only:
            _check_group_metadata(self.path)
            group = zarr.open_group(zarr.storage.LocalStore(self.path, read_only=True), mode="r")
            _check_arrays(self.path, group)
            self._group = group
            self._load()
        return self.n_complete

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
        first = int(steps) if single else int(steps[0]) if r else None
        if first is not None and (
            (writer.last_step is not None and first <= writer.last_step)
            or (not single and r > 1 and not bool(np.all(np.diff(steps) > 0)))
        ):
            raise SgnMemoryError(
                f"steps must strictly increase; the last row appended has step "
                f"{writer.last_step} and this call gives {steps.tolist()!s:.60}."
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
        block = writer.block
        i = block.n
        fill(block.noise[i])
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
            group = self._group[_COORDS]
            self._coordinates = CoordinateMap(
                param_name=group["param_name"][...],
                flat_index=group["flat_index"][...],
                layer=group["layer"][...],
            )
        return self._coordinates

    @property
    def steps(self) -> np.ndarray:
        """``(n_complete,)`` int64: the training step of each complete row."""
        return np.asarray(self._steps[: self.n_complete], dtype=np.int64)

    def scalar(self, name: str) -> np.ndarray:
        """``(n_complete,)`` float64 values of the per-step scalar ``name`` (NaN where unset)."""
        if name not in self._scalar_arrays:
            raise SgnMemoryError(f"unknown scalar {name!r}; this store has {self.scalar_names}.")
        return np.asarray(self._scalar_arrays[name][: self.n_complete], dtype=np.float64)

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
        with self._damaged_chunks():
            return np.asarray(self._noise.oindex[row_sel, coord_sel], dtype=np.float32)

    @contextlib.contextmanager
    def _damaged_chunks(self):
        """A chunk file that no longer decodes (truncated, overwritten) is a damaged store."""
        try:
            yield
        except SgnMemoryError:
            raise
        except (ValueError, OSError, TypeError) as err:
            detail = (str(err).strip().splitlines() or [""])[0][:160]  # one line, bounded
            raise InvalidStoreError(
                f"{self.path}: a noise chunk cannot be read ({type(err).__name__}: {detail}); "
                "the store is damaged (a truncated or overwritten chunk file)."
            ) from err

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
            with self._damaged_chunks():
                block_values = np.asarray(self._noise[:n, cols], dtype=np.float32)
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
