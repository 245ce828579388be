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
    PATH/writer.lock                 who writes the store now (empty when nobody does)

``noise`` is stored in chunks of ``(chunk_rows, coord_chunk)`` of about 4 MiB (no sharding, no
compression: gradient noise is close to incompressible, zstd saves ~8 % for a core's worth of
time at training speed).  Every chunk of every array ends with a crc32c checksum (zarr's
``crc32c`` codec, schema version 2) and every chunk is written, even one equal to the fill
value.  ``coord_chunk`` is bounded, so reading a block of coordinates over the
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

Integrity.  :meth:`NoiseStore.open` checks that every chunk below ``n_complete`` exists (a
directory listing per chunk row) and every read verifies the checksums of the chunks it reads:
a missing or damaged chunk is an :class:`~sgn_memory.InvalidStoreError` naming the array, the
chunk, its rows and its file, never fill values read as data.  ``open(path, salvage=True)``
reads around bad chunks (NaN) and lists them in :attr:`NoiseStore.damage`;
:meth:`NoiseStore.verify` reads every chunk once.  Stores of schema 1 (no checksums) are read;
only their ``noise`` and ``steps`` chunks can be checked for presence.

One writer.  :meth:`NoiseStore.create` and :meth:`NoiseStore.resume` take an exclusive
``flock`` on ``PATH/writer.lock`` (its content names the process, host, start and command) and
hold it until :meth:`NoiseStore.close`; a second writer, in any process, is refused naming the
holder.  The operating system drops the lock of a process that dies, so the lock of a dead
writer is taken over, with a warning.  Readers take no lock.

Atomic creation.  A new store is built in a hidden sibling (``.NAME.sgn-new-*``), holding its
lock, and renamed into place; ``overwrite=True`` replaces an existing store (whose lock must be
free) by renaming it aside and the new one in, then removing the old.  A process killed at any
moment of this leaves either the old store, the new empty one, or (between the two renames)
nothing at ``PATH`` and the old store in ``.NAME.sgn-old-*`` (``open`` says so); the next
``create`` removes such leftovers (never one whose lock is held).  An existing empty directory
is filled in place.

Reading.  :meth:`NoiseStore.open` validates the store and gives a read-only view of the rows
complete at that moment (:meth:`NoiseStore.refresh` for later ones); nothing is ever unpickled.
"""

from ._layout import (
    CHUNK_BYTES,
    DEFAULT_SCALARS,
    MAX_PENDING_BLOCKS,
    SCHEMA_VERSION,
    CoordinateMap,
    default_chunk_rows,
    noise_chunk_shape,
)
from ._store import NoiseStore

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
