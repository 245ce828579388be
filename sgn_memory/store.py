"""NoiseStore: the on-disk record of gradient noise, written while training runs.

One NoiseStore is one directory, a zarr v3 group (``zarr_format=3``)::

    PATH/zarr.json                   the group; its attributes are the run's metadata (below)
    PATH/noise                       (n_rows, k) float32, fill NaN; row t = noise at steps[t]
    PATH/steps                       (n_rows,) int64, fill -1; the training step of each row
    PATH/scalars/<name>              (n_rows,) float64, fill NaN; one array per per-step scalar
                                     (DEFAULT_SCALARS: loss, lr, grad_norm_sq, noise_norm_sq,
                                     b_simple, amp_scale, skipped, accumulation)
    PATH/coordinates/param_name      (k,) variable-length UTF-8 string ("layer1.0.conv.weight")
    PATH/coordinates/flat_index      (k,) int64, index into that parameter's flattened tensor
    PATH/coordinates/layer           (k,) variable-length UTF-8 string ("layer1.0.conv")

``noise`` is stored in chunks of ``(chunk_rows, coord_chunk)`` of about 4 MiB (no sharding, no
compression: gradient noise is close to incompressible, zstd saves ~8 % for a core's worth of
time at training speed).  ``coord_chunk`` is bounded, so reading a block of coordinates over the
whole time axis (what every estimator does, :meth:`NoiseStore.iter_coord_blocks`) reads whole
chunks and never the full width of a row.  Strings are zarr's variable-length ``string`` data
type: no object arrays, nothing is ever pickled or unpickled.

Group attributes (JSON):

- ``format`` = ``"sgn_memory.NoiseStore"``, ``schema_version`` (:data:`SCHEMA_VERSION`);
- ``protocol``: ``"trajectory"`` (noise recorded during training) or ``"checkpoint"`` (frozen
  weights, many minibatches);
- ``n_complete``: rows ``0 .. n_complete - 1`` of every row array are written and final.  Readers
  trust only this number; rows past it (an interrupted write) are ignored;
- ``reference``, ``reference_size``: the kind of full-gradient reference (``"exact"``,
  ``"batch"``, ``"none"``) and its size (samples), ``None`` until the writer sets them;
- ``created`` (UTC, ISO 8601), ``software`` (sgn_memory, numpy, zarr, python; torch when it was
  already imported by the writing process), ``scalars`` (names, in order), ``chunk_rows``;
- whatever the caller adds (optimizer, batch size, seeds, model summary, ...): any JSON value
  under any key but the eight the store owns (``format``, ``schema_version``, ``protocol``,
  ``n_complete``, ``created``, ``software``, ``scalars``, ``chunk_rows``).

Writing.  :meth:`NoiseStore.append` copies rows into an in-memory block of ``chunk_rows`` rows
and returns; a full block is handed to one background thread, which grows the row arrays when
needed (ahead, by whole row chunks of the scalar arrays; :meth:`NoiseStore.close` trims them back
to ``n_complete``), writes the block (noise, steps, scalars) and only then rewrites
``n_complete``.  The queue to the thread holds ``MAX_PENDING_BLOCKS`` blocks: when the disk falls
further behind, ``append`` waits rather than let memory grow (at most ``MAX_PENDING_BLOCKS + 2``
blocks of ``chunk_rows * k * 4`` bytes: 195 MiB for k = 10^5).  A failure of the thread is
raised, as is, by the next ``append``, ``flush`` or ``close``.

Crash safety.  zarr >= 3.1.3 writes every file (chunks and ``zarr.json``) to a temporary name and
renames it, and the writer publishes ``n_complete`` only after the rows it counts, so a writer
killed at any moment (SIGKILL included) leaves a store that opens, with every row below
``n_complete`` intact; rows appended but not yet written are lost, and a ``*.partial`` file may
be left behind (harmless).  The guarantee covers the writing process dying, not the machine:
nothing is fsync-ed, so a power cut may lose what the OS had not yet written back.

Reading.  :meth:`NoiseStore.open` validates the store and gives a read-only view of the rows
complete at that moment (:meth:`NoiseStore.refresh` for later ones); nothing is ever unpickled.
"""

from __future__ import annotations

import atexit
import datetime as _dt
import json
import math
import platform
import queue
import re
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import zarr

from ._batch import array_summary
from .errors import InvalidStoreError, SchemaVersionError, SgnMemoryError

__all__ = [
    "CHUNK_BYTES",
    "DEFAULT_SCALARS",
    "MAX_PENDING_BLOCKS",
    "SCHEMA_VERSION",
    "CoordinateMap",
    "NoiseStore",
    "default_chunk_rows",
    "noise_chunk_shape",
]

SCHEMA_VERSION = 1
FORMAT = "sgn_memory.NoiseStore"
DEFAULT_SCALARS = (
    "loss",
    "lr",
    "grad_norm_sq",
    "noise_norm_sq",
    "b_simple",
    "amp_scale",
    "skipped",
    "accumulation",
)
PROTOCOLS = ("trajectory", "checkpoint")
CHUNK_BYTES = 4 << 20  # target size of one noise chunk
MAX_PENDING_BLOCKS = 2  # full blocks waiting for the writer thread before append() waits
_MIN_CHUNK_ROWS, _MAX_CHUNK_ROWS = 128, 1024
_ROW_CHUNK_MIN = 8192  # rows per chunk of steps and scalars, rounded up to chunk_rows' multiple
_COORD_CHUNK = 1 << 16  # entries per chunk of the coordinate map arrays
_FLUSH_INTERVAL = 60.0

_NOISE, _STEPS, _SCALARS, _COORDS = "noise", "steps", "scalars", "coordinates"
_COORD_FIELDS = ("param_name", "flat_index", "layer")
_OWN_KEYS = frozenset(
    {"format", "schema_version", "protocol", "n_complete", "created", "software", "scalars"}
    | {"chunk_rows"}
)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*\Z")


# ============================================================================================
# coordinate map


def _as_str_array(values, field: str) -> np.ndarray:
    a = np.asarray(values)
    if a.size == 0:
        return np.zeros(a.shape, dtype="U1")
    if a.dtype.kind == "O":
        if not all(isinstance(v, str) for v in a.ravel()):
            raise SgnMemoryError(f"CoordinateMap.{field} must hold strings; got other objects.")
    elif a.dtype.kind not in "UT":
        raise SgnMemoryError(f"CoordinateMap.{field} must hold strings; got dtype {a.dtype}.")
    # numpy 2's variable-length StringDType (what zarr reads) has no cast to a fixed width
    return a.astype(str) if a.dtype.kind == "U" else np.array(a.tolist(), dtype=str)


@dataclass(frozen=True, eq=False, repr=False)
class CoordinateMap:
    """Which coordinate of which parameter each column of ``noise`` records.

    Attributes
    ----------
    param_name : numpy.ndarray
        ``(k,)`` str, the parameter's name in ``model.named_parameters()``, e.g.
        ``"layer1.0.conv.weight"``.
    flat_index : numpy.ndarray
        ``(k,)`` int64, index into that parameter's flattened tensor (``p.reshape(-1)``).
    layer : numpy.ndarray
        ``(k,)`` str, the module path owning the parameter, e.g. ``"layer1.0.conv"``.

    The arrays are copied and made read-only.  Raises :class:`~sgn_memory.SgnMemoryError` when
    they are not 1-D, differ in length, or an index is negative.
    """

    param_name: np.ndarray
    flat_index: np.ndarray
    layer: np.ndarray

    def __post_init__(self):
        names = _as_str_array(self.param_name, "param_name")
        layers = _as_str_array(self.layer, "layer")
        index = np.asarray(self.flat_index)
        if index.size and index.dtype.kind not in "iu":
            raise SgnMemoryError(
                f"CoordinateMap.flat_index must hold integers; got dtype {index.dtype}."
            )
        index = index.astype(np.int64)
        for field, a in (("param_name", names), ("flat_index", index), ("layer", layers)):
            if a.ndim != 1:
                raise SgnMemoryError(f"CoordinateMap.{field} must be 1-D; got shape {a.shape}.")
        if not len(names) == len(index) == len(layers):
            raise SgnMemoryError(
                "CoordinateMap arrays must have one entry per coordinate; got "
                f"{len(names)} param_name, {len(index)} flat_index and {len(layers)} layer."
            )
        if index.size and index.min() < 0:
            bad = int(np.flatnonzero(index < 0)[0])
            raise SgnMemoryError(
                f"CoordinateMap.flat_index must be non-negative; entry {bad} is {index[bad]}."
            )
        for field, a in (("param_name", names), ("flat_index", index), ("layer", layers)):
            a = a.copy()
            a.flags.writeable = False
            object.__setattr__(self, field, a)

    def __len__(self) -> int:
        return len(self.flat_index)

    def __repr__(self) -> str:
        return (
            f"CoordinateMap(k={len(self)}, parameters={len(np.unique(self.param_name))}, "
            f"layers={len(np.unique(self.layer))}, flat_index=[{array_summary(self.flat_index)}])"
        )


# ============================================================================================
# chunking


def default_chunk_rows(n_coords: int) -> int:
    """Rows per block (and per noise chunk) when ``chunk_rows`` is not given.

    A whole row block fits in one ~4 MiB chunk when k is small
    (``CHUNK_BYTES // (4 k)``), clipped to [128, 1024]: at least 128 rows so that reading the
    time axis stays efficient for large k, at most 1024 so that a crash loses few rows for small k.
    """
    return int(np.clip(CHUNK_BYTES // (4 * max(1, n_coords)), _MIN_CHUNK_ROWS, _MAX_CHUNK_ROWS))


def noise_chunk_shape(n_coords: int, chunk_rows: int) -> tuple[int, int]:
    """Chunk shape ``(chunk_rows, coord_chunk)`` of the ``noise`` array.

    ``coord_chunk`` is the widest that keeps a chunk at most ``CHUNK_BYTES``, then evened out so
    that the last column of chunks is not a sliver.
    """
    widest = max(1, CHUNK_BYTES // (4 * chunk_rows))
    n_columns = math.ceil(max(1, n_coords) / widest)
    return chunk_rows, math.ceil(max(1, n_coords) / n_columns)


# ============================================================================================
# metadata helpers


def _software() -> dict[str, str]:
    import sgn_memory  # the package is fully imported by the time a store is created

    versions = {
        "sgn_memory": sgn_memory.__version__,
        "numpy": np.__version__,
        "zarr": zarr.__version__,
        "python": platform.python_version(),
    }
    torch = sys.modules.get("torch")  # recorded only when the writer already uses torch
    if torch is not None:
        versions["torch"] = str(getattr(torch, "__version__", "unknown"))
    return versions


def _json_value(value: Any, key: str) -> Any:
    """``value`` as plain JSON (numpy scalars/arrays and tuples converted), or a clear error."""
    if isinstance(value, np.generic | np.ndarray):
        value = value.tolist()
    if isinstance(value, tuple):
        value = list(value)
    if isinstance(value, list):
        return [_json_value(v, key) for v in value]
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise SgnMemoryError(f"attribute {key!r}: mapping keys must be strings; got {k!r}.")
            out[k] = _json_value(v, key)
        return out
    if value is None or isinstance(value, bool | int | float | str):
        return value  # NaN and inf are written as zarr writes them (NaN, Infinity)
    raise SgnMemoryError(
        f"attribute {key!r}: {type(value).__name__} values cannot be stored as JSON; "
        "convert it to a str, number, bool, None, list or dict."
    )


def _caller_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in attrs.items():
        if not isinstance(key, str):
            raise SgnMemoryError(f"attribute names must be strings; got {key!r}.")
        if key in _OWN_KEYS:
            raise SgnMemoryError(
                f"attribute {key!r} is set by the NoiseStore itself; choose another name."
            )
        out[key] = _json_value(value, key)
    return out


def _is_noise_store(path: Path) -> bool:
    try:
        meta = json.loads((path / "zarr.json").read_text())
        return meta.get("attributes", {}).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


# ============================================================================================
# the background writer


@dataclass
class _Block:
    start: int  # global index of the block's first row
    noise: np.ndarray  # (chunk_rows, k) float32; rows [0, n) are filled
    steps: np.ndarray  # (chunk_rows,) int64
    scalars: np.ndarray  # (n_scalars, chunk_rows) float64, NaN where not given
    n: int = 0


_STOP = object()
_LIVE_WRITERS: set[_Writer] = set()


class _Writer:
    """Buffers of the writing NoiseStore and its one background thread."""

    def __init__(self, store: NoiseStore, chunk_rows: int, max_pending: int, flush_interval):
        self.path = store.path
        self.group = store._group
        self.noise, self.steps = store._noise, store._steps
        self.scalar_arrays = [store._scalar_arrays[name] for name in store.scalar_names]
        self.row_arrays = [self.noise, self.steps, *self.scalar_arrays]
        self.attrs_lock = store._attrs_lock
        self.attrs = store._attrs
        self.chunk_rows = chunk_rows
        self.row_chunk = store._steps.chunks[0]
        self.n_coords = store.n_coords
        self.flush_interval = flush_interval
        self.n_rows = 0  # rows the arrays have on disk (grown by the thread)
        self.n_complete = 0  # rows written and recorded in the attributes (set by the thread)
        self.error: BaseException | None = None
        self.error_reported = False
        self.queue: queue.Queue = queue.Queue(maxsize=max_pending)
        self.free: list[_Block] = []  # written blocks handed back for reuse (no page faults)
        self.block = self._new_block(0)
        self.last_handoff = time.monotonic()
        self.thread = threading.Thread(
            target=self._run, name=f"NoiseStore writer {self.path}", daemon=True
        )
        self.thread.start()
        _LIVE_WRITERS.add(self)

    # -- caller side ---------------------------------------------------------------------

    @property
    def n_appended(self) -> int:
        return self.block.start + self.block.n

    def _new_block(self, start: int) -> _Block:
        try:
            block = self.free.pop()
        except IndexError:
            block = _Block(
                start,
                np.empty((self.chunk_rows, self.n_coords), np.float32),
                np.empty(self.chunk_rows, np.int64),
                np.empty((len(self.scalar_arrays), self.chunk_rows)),
            )
        block.start, block.n = start, 0
        block.scalars.fill(np.nan)
        return block

    def capacity(self) -> int:
        """Rows the current block takes before it ends on a chunk boundary."""
        return self.chunk_rows - self.block.start % self.chunk_rows

    def hand_off(self) -> None:
        """Queue the current block for the thread (waits while the queue is full)."""
        block = self.block
        if block.n == 0:
            return
        self.queue.put(block)
        self.block = self._new_block(block.start + block.n)
        self.last_handoff = time.monotonic()

    def raise_error(self) -> None:
        if self.error is None:
            return
        if not self.error_reported:
            self.error_reported = True
            raise self.error
        raise RuntimeError(
            f"the NoiseStore writer of {self.path} failed earlier "
            f"({type(self.error).__name__}: {self.error}); rows below n_complete = "
            f"{self.n_complete} are on disk and the store takes no more rows."
        ) from self.error

    def flush(self) -> None:
        self.raise_error()
        self.hand_off()
        self.queue.join()
        self.raise_error()

    def stop(self) -> None:
        """Write what is buffered, stop the thread, raise a failure not yet reported."""
        try:
            if self.error is None:
                self.hand_off()
        finally:
            self.queue.put(_STOP)
            self.thread.join()
            _LIVE_WRITERS.discard(self)
        if self.error is None and self.n_rows > self.n_complete:
            for array in self.row_arrays:  # drops only unwritten rows past n_complete
                array.resize((self.n_complete, *array.shape[1:]))
            self.n_rows = self.n_complete
        if not self.error_reported:
            self.raise_error()

    # -- thread side ---------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            item = self.queue.get()
            try:
                if item is _STOP:
                    return
                if self.error is None:  # after a failure, drain without writing: never deadlock
                    try:
                        self._write(item)
                    except Exception as err:
                        err.add_note(
                            f"raised in the NoiseStore writer thread while writing rows "
                            f"{item.start}-{item.start + item.n - 1} to {self.path}; rows below "
                            f"n_complete = {self.n_complete} are on disk."
                        )
                        self.error = err
                if len(self.free) < 2:
                    self.free.append(item)
            finally:
                self.queue.task_done()

    def _write(self, block: _Block) -> None:
        start, n = block.start, block.n
        stop = start + n
        if stop > self.n_rows:
            # grow ahead by whole row chunks (a metadata write per array, so rarely);
            # close() trims the arrays back to n_complete
            self.n_rows = self.row_chunk * math.ceil(stop / self.row_chunk)
            for array in self.row_arrays:
                array.resize((self.n_rows, *array.shape[1:]))
        self.noise[start:stop] = block.noise[:n]
        self.steps[start:stop] = block.steps[:n]
        for array, values in zip(self.scalar_arrays, block.scalars, strict=True):
            array[start:stop] = values[:n]
        # the rows are on disk: only now may readers see them
        with self.attrs_lock:
            self.group.update_attributes({"n_complete": stop})
            self.attrs["n_complete"] = stop
        self.n_complete = stop


def _close_live_writers() -> None:
    """At interpreter exit, write the rows of writers that were never closed."""
    for writer in list(_LIVE_WRITERS):
        try:
            writer.stop()
        except Exception as err:  # at exit there is no caller left to raise to
            print(f"sgn_memory: NoiseStore {writer.path}: {err!r}", file=sys.stderr)


# zarr's LocalStore writes through asyncio.to_thread, which concurrent.futures refuses once its
# own exit hook has run; threading's exit hooks run (last registered first) before it and before
# atexit's, so ours goes there when this private hook exists.
getattr(threading, "_register_atexit", atexit.register)(_close_live_writers)


# ============================================================================================
# the store


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
        if (
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
        return np.asarray(self._noise.oindex[row_sel, coord_sel], dtype=np.float32)

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
            yield cols, np.asarray(self._noise[:n, cols], dtype=np.float32)

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


# ============================================================================================
# reading helpers and validation


def _selection(index, n: int, what: str):
    """A zarr orthogonal selection for ``index`` over ``range(n)``, bounds-checked."""
    if isinstance(index, slice):
        r = range(n)[index]
        return slice(r.start, r.stop) if r.step == 1 else np.arange(r.start, r.stop, r.step)
    a = np.asarray(index)
    if a.dtype == bool:
        if a.shape != (n,):
            raise IndexError(f"a boolean {what} mask must have length {n}; got {a.shape}.")
        return np.flatnonzero(a)
    if a.dtype.kind not in "iu" or a.ndim > 1:
        raise IndexError(f"{what} must be a slice, an int or 1-D ints; got {index!r:.60}.")
    if a.size and (a.min() < -n or a.max() >= n):
        raise IndexError(f"{what} index out of range for {n} {what}.")
    a = np.where(a < 0, a + n, a).astype(np.int64)
    return int(a) if a.ndim == 0 else a


def _check_group_metadata(path: Path) -> None:
    """The group's zarr.json says it is a NoiseStore of a schema version we read."""
    if not path.exists():
        raise InvalidStoreError(f"no NoiseStore at {path}: the path does not exist.")
    if not path.is_dir():
        raise InvalidStoreError(
            f"{path} is a file, not a NoiseStore (a NoiseStore is a directory)."
        )
    meta_path = path / "zarr.json"
    if not meta_path.is_file():
        if (path / ".zgroup").exists() or (path / ".zarray").exists():
            raise InvalidStoreError(f"{path} is a zarr v2 store; a NoiseStore is a zarr v3 group.")
        raise InvalidStoreError(f"{path} is not a zarr group: it has no zarr.json.")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as err:
        raise InvalidStoreError(f"{meta_path} cannot be read as JSON ({err}).") from err
    if not isinstance(meta, dict) or meta.get("zarr_format") != 3:
        raise InvalidStoreError(f"{path} is not a zarr v3 group (zarr.json lacks zarr_format 3).")
    if meta.get("node_type") != "group":
        raise InvalidStoreError(
            f"{path} is a zarr {meta.get('node_type')}, not a group: it is not a NoiseStore."
        )
    attrs = meta.get("attributes")
    if not isinstance(attrs, dict) or attrs.get("format") != FORMAT:
        raise InvalidStoreError(
            f"{path} is a zarr group but not a NoiseStore (its attributes lack "
            f"format = {FORMAT!r}; was its creation interrupted?)."
        )
    version = attrs.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise InvalidStoreError(f"{path} has no valid schema_version attribute ({version!r}).")
    if version > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"{path} was written with NoiseStore schema version {version}, newer than the "
            f"version {SCHEMA_VERSION} this release of sgn_memory reads; upgrade sgn_memory."
        )
    if version < SCHEMA_VERSION:
        written_by = attrs.get("software", {}).get("sgn_memory", "an older release")
        raise SchemaVersionError(
            f"{path} was written with NoiseStore schema version {version}, older than the "
            f"version {SCHEMA_VERSION} this release reads; open it with sgn_memory {written_by}."
        )
    n_complete = attrs.get("n_complete")
    if not isinstance(n_complete, int) or isinstance(n_complete, bool) or n_complete < 0:
        raise InvalidStoreError(
            f"{path} has an invalid n_complete attribute ({n_complete!r}); expected an int >= 0."
        )
    if attrs.get("protocol") not in PROTOCOLS:
        raise InvalidStoreError(
            f"{path} has protocol {attrs.get('protocol')!r}; expected one of {PROTOCOLS}."
        )
    scalars = attrs.get("scalars")
    if not isinstance(scalars, list) or not all(isinstance(s, str) for s in scalars):
        raise InvalidStoreError(f"{path} has an invalid scalars attribute ({scalars!r}).")


def _check_arrays(path: Path, group) -> None:
    """Every array exists with the expected dtype and shape, and holds n_complete rows."""
    attrs = group.attrs.asdict()
    n_complete = attrs["n_complete"]

    def array(name: str, kinds: str, ndim: int):
        try:
            node = group[name]
        except KeyError:
            raise InvalidStoreError(f"{path} is missing the array {name!r}.") from None
        except Exception as err:
            raise InvalidStoreError(
                f"{path}: the array {name!r} cannot be opened ({err})."
            ) from err
        if not isinstance(node, zarr.Array):
            raise InvalidStoreError(f"{path}: {name!r} is a group, not an array.")
        dtype = np.dtype(node.dtype)
        if dtype.kind not in kinds or node.ndim != ndim:
            raise InvalidStoreError(
                f"{path}: the array {name!r} is {node.ndim}-D {dtype}; expected a {ndim}-D "
                f"array of kind {kinds!r}."
            )
        return node

    noise = array(_NOISE, "f", 2)
    if np.dtype(noise.dtype) != np.float32:
        raise InvalidStoreError(f"{path}: the noise array is {noise.dtype}; expected float32.")
    row_arrays = {_NOISE: noise, _STEPS: array(_STEPS, "i", 1)}
    for name in attrs["scalars"]:
        row_arrays[f"{_SCALARS}/{name}"] = array(f"{_SCALARS}/{name}", "f", 1)
    coords = {
        field: array(f"{_COORDS}/{field}", "i" if field == "flat_index" else "UTO", 1)
        for field in _COORD_FIELDS
    }
    lengths = {field: a.shape[0] for field, a in coords.items()}
    if len(set(lengths.values())) != 1:
        raise InvalidStoreError(
            f"{path}: the coordinate map arrays have inconsistent lengths {lengths}."
        )
    if noise.shape[1] != lengths["flat_index"]:
        raise InvalidStoreError(
            f"{path}: noise has {noise.shape[1]} columns but the coordinate map has "
            f"{lengths['flat_index']} entries."
        )
    for name, a in row_arrays.items():
        if a.shape[0] < n_complete:
            raise InvalidStoreError(
                f"{path}: n_complete = {n_complete} but the array {name!r} has only "
                f"{a.shape[0]} rows; the store is damaged."
            )
