"""Chunk-level integrity: every chunk below ``n_complete`` exists and decodes (crc32c).

zarr reads a missing chunk as its fill value (NaN noise, step -1, empty names), which would
turn a deleted file into data; and an uncompressed chunk of random bytes of the right size
decodes as numbers.  Stores of schema version 2 carry a crc32c checksum in every chunk (zarr's
``crc32c`` codec, verified on every read) and write every chunk, even one equal to the fill
value, so that a chunk that should exist and does not is always damage.  These helpers find
missing chunks cheaply (a directory listing per chunk row), locate a chunk that does not decode,
and read around known-bad chunks for an explicit salvage.
"""

from __future__ import annotations

import itertools
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InvalidStoreError


@dataclass(frozen=True)
class BadChunk:
    """One chunk of one array that is missing or does not decode."""

    array: str  # "noise", "steps", "scalars/loss", "coordinates/layer"
    index: tuple[int, ...]  # the chunk's grid index
    rows: tuple[int, int]  # first and last row (entry) it covers, inclusive
    columns: tuple[int, int] | None  # first and last coordinate (noise only)
    problem: str  # "missing" or "damaged (...)"
    file: str  # relative path of the chunk file

    def __str__(self) -> str:
        where = f"rows {self.rows[0]}-{self.rows[1]}"
        if self.columns is not None:
            where += f", coordinates {self.columns[0]}-{self.columns[1]}"
        return f"{self.array} chunk {self.index} ({where}, file {self.file}) is {self.problem}"


def chunk_grid(shape: tuple[int, ...], chunks: tuple[int, ...], n_rows: int):
    """Grid indices of the chunks covering rows ``0 .. n_rows - 1`` (and every column)."""
    counts = [math.ceil(n_rows / chunks[0])]
    counts += [math.ceil(s / c) for s, c in zip(shape[1:], chunks[1:], strict=True)]
    return itertools.product(*(range(c) for c in counts))


def _chunk_file(array, name: str, index: tuple[int, ...]) -> str:
    return f"{name}/{array.metadata.chunk_key_encoding.encode_chunk_key(index)}"


def _span(array, index: tuple[int, ...], n_rows: int):
    c = array.chunks
    rows = (index[0] * c[0], min((index[0] + 1) * c[0], n_rows) - 1)
    cols = None
    if len(index) > 1:
        cols = (index[1] * c[1], min((index[1] + 1) * c[1], array.shape[1]) - 1)
    return rows, cols


def bad_chunk(array, name: str, index: tuple[int, ...], n_rows: int, problem: str) -> BadChunk:
    rows, cols = _span(array, index, n_rows)
    return BadChunk(name, tuple(index), rows, cols, problem, _chunk_file(array, name, index))


def missing_chunks(root: Path, name: str, array, n_rows: int) -> list[BadChunk]:
    """Chunks below ``n_rows`` whose file does not exist (one directory listing per folder)."""
    listing: dict[str, set[str]] = {}
    out = []
    for index in chunk_grid(array.shape, array.chunks, n_rows):
        parent, _, leaf = _chunk_file(array, name, index).rpartition("/")
        names = listing.get(parent)
        if names is None:
            try:
                names = set(os.listdir(root / parent))
            except OSError:
                names = set()
            listing[parent] = names
        if leaf not in names:
            out.append(bad_chunk(array, name, index, n_rows, "missing"))
    return out


def _region(array, index: tuple[int, ...], n_rows: int) -> tuple[slice, ...]:
    rows, cols = _span(array, index, n_rows)
    region = [slice(rows[0], rows[1] + 1)]
    if cols is not None:
        region.append(slice(cols[0], cols[1] + 1))
    return tuple(region)


def decode_problem(err: BaseException) -> str:
    detail = (str(err).strip().splitlines() or [""])[0][:120]
    if "checksum" in detail.lower():
        return "damaged (its crc32c checksum does not match: the file was altered)"
    return f"damaged (it cannot be decoded: {type(err).__name__}: {detail})"


def read_chunk(array, index: tuple[int, ...], n_rows: int):
    """The values of one chunk (clipped to ``n_rows``); raises what zarr raises."""
    return array[_region(array, index, n_rows)]


def undecodable_chunks(
    array, name: str, n_rows: int, *, indices=None, first_only: bool = False
) -> list[BadChunk]:
    """Chunks (all below ``n_rows``, or ``indices``) that raise when read."""
    out = []
    for index in chunk_grid(array.shape, array.chunks, n_rows) if indices is None else indices:
        try:
            read_chunk(array, index, n_rows)
        except (ValueError, OSError, TypeError, RuntimeError) as err:
            out.append(bad_chunk(array, name, index, n_rows, decode_problem(err)))
            if first_only:
                break
    return out


def raise_bad(path: Path, bad: list[BadChunk], *, salvage_hint: bool = True) -> None:
    """One sentence naming the first bad chunk and how many there are."""
    more = f" (and {len(bad) - 1} more bad chunks)" if len(bad) > 1 else ""
    hint = (
        "; open it with salvage=True (sgn-analyze --salvage) to analyse what is still readable"
        if salvage_hint
        else ""
    )
    raise InvalidStoreError(f"{path}: the {bad[0]}{more}: the store is damaged{hint}.")


def read_rows_around(array, rows: np.ndarray, cols: np.ndarray | None, bad: set, fill):
    """``array.oindex[rows, cols]`` (1-D arrays: ``array.oindex[rows]``) reading chunk by chunk
    and leaving ``fill`` where a chunk is in ``bad`` (grid indices)."""
    c = array.chunks
    shape = (rows.size,) if cols is None else (rows.size, cols.size)
    dtype = np.dtype(np.float32) if array.ndim == 2 else np.dtype(array.dtype)
    if dtype.kind in "OUT":
        out = np.full(shape, fill, dtype=object)
    else:
        out = np.full(shape, fill, dtype=dtype)
    row_chunk = rows // c[0]
    col_groups = [(None, None)]
    if cols is not None:
        col_chunk = cols // c[1]
        col_groups = [(j, np.flatnonzero(col_chunk == j)) for j in np.unique(col_chunk)]
    for i in np.unique(row_chunk):
        r = np.flatnonzero(row_chunk == i)
        for j, cpos in col_groups:
            index = (int(i),) if j is None else (int(i), int(j))
            if index in bad:
                continue
            if j is None:
                out[r] = array.oindex[rows[r]]
            else:
                out[np.ix_(r, cpos)] = array.oindex[rows[r], cols[cpos]]
    return out
