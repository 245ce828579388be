"""The on-disk layout: constants, the coordinate map, chunk shapes, validation on open."""

from __future__ import annotations

import json
import math
import platform
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from .._batch import array_summary
from ..errors import InvalidStoreError, SchemaVersionError, SgnMemoryError

SCHEMA_VERSION = 2  # 2: a crc32c checksum in every chunk, every chunk written
_OLDEST_READ = 1  # schema 1 (no checksums) is still read; its missing-chunk check is partial
_MIN_CHUNK_ROWS, _MAX_CHUNK_ROWS = 128, 1024
_NOISE, _STEPS, _SCALARS, _COORDS = "noise", "steps", "scalars", "coordinates"
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
_ROW_CHUNK_MIN = 8192  # rows per chunk of steps and scalars, rounded up to chunk_rows' multiple
_COORD_CHUNK = 1 << 16  # entries per chunk of the coordinate map arrays
_FLUSH_INTERVAL = 60.0
_COORD_FIELDS = ("param_name", "flat_index", "layer")
_OWN_KEYS = frozenset(
    {"format", "schema_version", "protocol", "n_complete", "created", "software", "scalars"}
    | {"chunk_rows", "resumed"}
)


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*\Z")


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
    if version < _OLDEST_READ:
        written_by = attrs.get("software", {}).get("sgn_memory", "an older release")
        raise SchemaVersionError(
            f"{path} was written with NoiseStore schema version {version}, older than the "
            f"oldest version {_OLDEST_READ} this release reads; open it with sgn_memory "
            f"{written_by}."
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


def _integrity_arrays(group, attrs) -> dict[str, tuple[Any, int]]:
    """The arrays whose chunks must all exist, with the rows that must be covered.

    Schema 2 writes every chunk; schema 1 skipped chunks equal to the fill value except in
    ``noise``, so only ``noise`` and ``steps`` (whose fill, -1, is never a whole chunk of steps)
    can be checked there."""
    n = int(attrs["n_complete"])
    out = {_NOISE: (group[_NOISE], n), _STEPS: (group[_STEPS], n)}
    if attrs["schema_version"] >= 2:
        for name in attrs["scalars"]:
            out[f"{_SCALARS}/{name}"] = (group[f"{_SCALARS}/{name}"], n)
        for field in _COORD_FIELDS:
            a = group[f"{_COORDS}/{field}"]
            out[f"{_COORDS}/{field}"] = (a, int(a.shape[0]))
    return out


def _check_chunks(path: Path, group) -> list:
    """Every chunk below n_complete exists (one listing per chunk folder): the missing ones."""
    from ._chunks import missing_chunks

    attrs = group.attrs.asdict()
    bad = []
    for name, (array, n) in _integrity_arrays(group, attrs).items():
        bad += missing_chunks(path, name, array, n)
    return bad
