"""The background writer thread: row blocks, n_complete, exit hook."""

from __future__ import annotations

import atexit
import math
import queue
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np


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

    def __init__(
        self,
        path,
        group,
        arrays: tuple[Any, Any, list[Any]],
        attrs: tuple[threading.Lock, dict],
        *,
        chunk_rows: int,
        max_pending: int,
        flush_interval,
        lock,
        start: int = 0,
        last_step: int | None = None,
    ):
        """``arrays``: the noise, steps and scalar zarr arrays (in the store's scalar order);
        ``attrs``: the lock guarding the attribute dict and the dict, both shared with the
        store; ``lock``: the store's :class:`~._lock.WriterLock`, released by :meth:`stop`."""
        self.path = path
        self.group = group
        self.noise, self.steps, scalar_arrays = arrays
        self.scalar_arrays = list(scalar_arrays)
        self.row_arrays = [self.noise, self.steps, *self.scalar_arrays]
        self.attrs_lock, self.attrs = attrs
        self.lock = lock
        self.chunk_rows = chunk_rows
        self.row_chunk = self.steps.chunks[0]
        self.n_coords = int(self.noise.shape[1])
        self.flush_interval = flush_interval
        # rows the arrays have on disk (grown by the thread): the shortest row array, since a
        # writer killed while growing them may have left them of different lengths
        self.n_rows = min(int(a.shape[0]) for a in self.row_arrays)
        self.n_complete = start  # rows written and recorded in the attributes (set by the thread)
        self.last_step = last_step  # step of the last row appended: steps strictly increase
        self.error: BaseException | None = None
        self.error_reported = False
        self.queue: queue.Queue = queue.Queue(maxsize=max_pending)
        self.free: list[_Block] = []  # written blocks handed back for reuse (no page faults)
        self.block = self._new_block(start)
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
        try:
            if self.error is None and self.n_rows > self.n_complete:
                for array in self.row_arrays:  # drops only unwritten rows past n_complete
                    array.resize((self.n_complete, *array.shape[1:]))
                self.n_rows = self.n_complete
        finally:
            self.lock.release()
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
