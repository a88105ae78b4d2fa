"""The mode bank runtime (numpy + Numba, never torch): :class:`BankModel`, built by
:func:`load_bank`, and :class:`ModeView`, one mode of it.

The base is packed once and every mode's (max(tau, 0), gamma) is one row of two tables kept in
memory, so switching modes is choosing a row index: no reload, no copy. ``predict(x, mode=NAME)``
runs every row in one mode; ``predict(x, modes=[...])`` one mode name per row (like peft's
``adapter_names``), in one call.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from taugate.bank.format import Bank
from taugate.bank.spec import row_indices
from taugate.errors import TauGateError
from taugate.inputs import as_batch
from taugate.kernels import bank as kernels
from taugate.kernels.layout import report_bad_rows
from taugate.kernels.threads import MAX_THREADS, check_threads, numba_threads
from taugate.runtime.model import AUTO_ROWSKIP_MAX_BATCH
from taugate.runtime.stats import gate_stats

BACKENDS = ("rowskip", "compact")  # Numba row skipping; numpy BLAS on the compacted base


class BankModel:
    """A loaded mode bank; build it with :func:`load_bank` or ``BankModel(bank)``."""

    def __init__(self, bank: Bank, path: Path | None = None) -> None:
        if not isinstance(bank, Bank):
            raise TauGateError(f"BankModel needs a Bank, got {type(bank).__name__}")
        self.bank, self.spec, self.path = bank, bank.spec, path
        thr, gain = self.spec.tables
        self.packed = kernels.pack_bank(list(self.spec.weights), list(self.spec.biases), thr, gain)
        self._last = None  # (backend, counts (B, L)) of the last call

    modes = property(lambda self: self.spec.modes)
    n_in = property(lambda self: self.spec.layers[0].n_in)
    n_out = property(lambda self: self.spec.layers[-1].n_out)
    sizes = property(lambda self: self.spec.sizes)
    original_sizes = property(lambda self: self.spec.original_sizes)

    def __repr__(self) -> str:
        where = f", path='{self.path}'" if self.path else ""
        return f"BankModel(sizes={self.sizes}, modes={list(self.modes)}{where})"

    def select(self, name: str) -> ModeView:
        """Mode ``name`` as a model of its own (sharing this bank's arrays: nothing is copied)."""
        return ModeView(self, name)

    def rows(self, mode, modes, batch: int):
        """The mode index (int) or per-row mode indices (B,) int64 of a ``predict`` call."""
        if (mode is None) == (modes is None):
            raise TauGateError(
                f"give mode=NAME or modes=[one name per row], not "
                f"{'both' if mode is not None else 'neither'} (this bank has: "
                f"{', '.join(self.modes)})"
            )
        if mode is not None:
            return self.spec.mode_index(mode)
        return np.array(row_indices(self.spec.mode_indices, modes, batch), np.int64)  # (B,)

    def predict(
        self,
        x,
        mode: str | None = None,
        *,
        modes=None,
        backend: str = "rowskip",
        threads: int | None = None,
        check_finite: bool = True,
    ) -> np.ndarray:
        """Logits (B, n_out) float32 for ``x`` (B, n_in) (a 1-D vector is a batch of one; the
        input rules of :func:`taugate.inputs.as_batch`).

        ``mode``: every row in this mode; or ``modes``: one mode name per row (a mixed batch).
        Each row equals that mode's single-mode model (:meth:`BankSpec.mode_spec`).
        ``backend``: ``"rowskip"`` (Numba), ``"compact"`` (numpy BLAS, the rows grouped by mode)
        or ``"auto"`` (row skipping up to ``AUTO_ROWSKIP_MAX_BATCH`` rows). ``threads``: Numba
        threads for a batched call (restored afterwards; batch 1 runs serially).
        ``check_finite``: NaN or inf in a row raises :class:`TauGateError`. Gate statistics of
        the call are in :attr:`last_stats`.
        """
        x = as_batch(x, self.n_in)
        rows = self.rows(mode, modes, x.shape[0])
        if backend == "auto":
            backend = "rowskip" if x.shape[0] <= AUTO_ROWSKIP_MAX_BATCH else "compact"
        if backend not in BACKENDS:
            raise TauGateError(
                f"backend {backend!r} is not available for a mode bank (use "
                f"{', '.join(BACKENDS)} or auto)"
            )
        if threads is not None and not (type(threads) is int and 1 <= threads <= MAX_THREADS):
            check_threads(threads)  # the one-line error
        if backend == "compact":
            out, counts = self._numpy(x, rows, check_finite)
        elif x.shape[0] == 1:  # the hot path: serial, no thread pool
            out, counts = kernels.run(self.packed, x, rows, check_finite, 1)
        else:
            with numba_threads(threads) as n:
                out, counts = kernels.run(self.packed, x, rows, check_finite, n)
        self._last = (backend, counts)
        return out

    def _numpy(self, x: np.ndarray, rows, check_finite: bool):
        if check_finite:
            report_bad_rows(~np.isfinite(x).all(axis=1))  # (B,) rows with NaN or inf
        with np.errstate(all="ignore"):  # only reached with bad rows when not check_finite
            if isinstance(rows, int) or len(np.unique(rows)) == 1:
                return self.spec.forward(x, int(rows if isinstance(rows, int) else rows[0]))
            out = np.empty((len(x), self.n_out), np.float32)  # (B, n_out)
            counts = np.empty((len(x), len(self.spec.layers)), np.int64)  # (B, L)
            for m in np.unique(rows):  # one BLAS pass per mode present in the batch
                sel = np.flatnonzero(rows == m)
                out[sel], counts[sel] = self.spec.forward(x[sel], int(m))
        return out, counts

    @property
    def last_stats(self) -> dict | None:
        """Gate statistics of the last :meth:`predict` call (see
        :func:`taugate.runtime.stats.gate_stats`; ``active`` counts open units)."""
        return None if self._last is None else gate_stats(self.spec, *self._last)

    def warmup(self) -> float:
        """Compile (or load from the disk cache) both Numba paths; return the seconds it took."""
        start = time.perf_counter()
        x = np.zeros((2, self.n_in), np.float32)  # (2, n_in)
        kernels.run(self.packed, x[:1], 0, True, 1)
        kernels.run(self.packed, x, np.zeros(2, np.int64), True, 1)
        return time.perf_counter() - start


class ModeView:
    """One mode of a :class:`BankModel`, with the interface of a single-mode model
    (``predict(x, backend=, threads=)``, ``last_stats``, sizes, ``manifest``)."""

    def __init__(self, model: BankModel, name: str) -> None:
        self.bank_model, self.index = model, model.spec.mode_index(name)
        self.name = name

    n_in = property(lambda self: self.bank_model.n_in)
    n_out = property(lambda self: self.bank_model.n_out)
    sizes = property(lambda self: self.bank_model.sizes)
    original_sizes = property(lambda self: self.bank_model.original_sizes)
    last_stats = property(lambda self: self.bank_model.last_stats)

    @property
    def manifest(self) -> dict:
        """This mode's provenance (what ``taugate predict`` reads for the target angle)."""
        return {"provenance": self.bank_model.bank.provenance[self.name], "mode": self.name}

    def predict(
        self, x, backend: str = "rowskip", threads: int | None = None, check_finite: bool = True
    ) -> np.ndarray:
        return self.bank_model.predict(
            x, self.name, backend=backend, threads=threads, check_finite=check_finite
        )

    def __repr__(self) -> str:
        return f"ModeView({self.name!r} of {self.bank_model!r})"


def load_bank(path) -> BankModel:
    """Read and verify the mode bank directory at ``path`` (see :mod:`taugate.bank.format`)."""
    from taugate.bank.format import read_bank

    return BankModel(read_bank(path), path=Path(path))
