"""The accumulation machinery the streaming estimators share: keyed sums, compact codes,
index checks and the int8 GEMM probe.

Keys of the sums are composite int64 values ``(hi << 40) | lo`` with ``lo`` a compact
output-tuple code from :class:`_IdMap`; :class:`_SparseSum` keeps any such keys,
:class:`_DenseSum` the ones from small key spaces in one dense array.
"""

from __future__ import annotations

import torch

_U_BITS = 40  # compact output-tuple codes live in the low 40 bits of composite keys
_U_MASK = (1 << _U_BITS) - 1


def _check_idx(x: torch.Tensor, name: str, shape: tuple, bins: int, device: torch.device):
    """Validate an index tensor: integer dtype, trailing shape, values in [0, bins)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch integer tensor; got {type(x).__name__}.")
    if x.dtype.is_floating_point or x.dtype == torch.bool or x.is_complex():
        raise TypeError(
            f"{name} must hold integer bin indices (e.g. from binning.bin_index); got "
            f"dtype {x.dtype}."
        )
    if x.dim() != len(shape) or any(s is not None and x.shape[k] != s for k, s in enumerate(shape)):
        want = "(" + ", ".join("N" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"{name} must have shape {want}; got {tuple(x.shape)}.")
    if x.numel():
        lo, hi = (int(v) for v in torch.aminmax(x))  # one pass, not two
        if lo < 0 or hi >= bins:
            raise ValueError(
                f"{name} holds bin indices in [{lo}, {hi}] but must lie in [0, {bins - 1}]: "
                "bin values with binning.bin_index using the same number of bins."
            )
    return x.to(device=device, dtype=torch.int64)


def _int_mm_ok(device: torch.device) -> bool:
    """Whether exact int8 x int8 -> int32 GEMM (torch._int_mm) works here."""
    if device.type != "cpu" or not hasattr(torch, "_int_mm"):
        return False
    try:
        a = torch.ones(32, 8, dtype=torch.int8)
        return int(torch._int_mm(a, a.T.contiguous())[0, 0]) == 8
    except (RuntimeError, TypeError, NotImplementedError):
        return False


def _batches_arg(batches: int | None, groups: int | None, default: int) -> tuple[int, str]:
    """The CI batch count from ``batches=`` or its old name ``groups=``, with the name the
    caller used (so that a check's message quotes what was passed)."""
    if groups is None:
        return (default if batches is None else batches), "batches"
    if batches is not None:
        raise TypeError(
            f"got batches={batches!r} and groups={groups!r}: pass only batches= "
            "(groups= is its old name)."
        )
    return groups, "groups"


class _SparseSum:
    """int64 keys -> float64 sums; additions are buffered and consolidated (sort + add)
    when the buffer outgrows the store, so the total cost stays O(n log n)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.keys = torch.empty(0, dtype=torch.int64, device=device)
        self.vals = torch.empty(0, dtype=torch.float64, device=device)
        self._k: list[torch.Tensor] = []
        self._v: list[torch.Tensor] = []
        self._pending = 0

    def add(self, keys: torch.Tensor, vals: torch.Tensor) -> None:
        self._k.append(keys.reshape(-1))
        self._v.append(vals.reshape(-1).to(torch.float64))
        self._pending += keys.numel()
        if self._pending > max(1 << 20, self.keys.numel()):
            self.consolidate()

    def consolidate(self) -> None:
        if not self._k:
            return
        k = torch.cat([self.keys, *self._k])
        v = torch.cat([self.vals, *self._v])
        self._k, self._v, self._pending = [], [], 0
        uniq, inv = torch.unique(k, sorted=True, return_inverse=True)
        self.keys = uniq
        self.vals = torch.zeros(uniq.numel(), dtype=torch.float64, device=k.device).index_add_(
            0, inv, v
        )

    def items(self) -> tuple[torch.Tensor, torch.Tensor]:
        self.consolidate()
        return self.keys, self.vals


class _DenseSum:
    """As :class:`_SparseSum` for keys ``(hi << 40) | lo`` with ``hi < n_hi`` and
    ``lo < n_lo`` small enough to keep every sum: one ``index_add_`` per ``add``, no sort."""

    def __init__(self, device: torch.device, n_hi: int, n_lo: int):
        self.n_lo = n_lo
        self.store = torch.zeros(n_hi * n_lo, dtype=torch.float64, device=device)

    def add(self, keys: torch.Tensor, vals: torch.Tensor) -> None:
        k = keys.reshape(-1)
        self.store.index_add_(0, (k >> _U_BITS) * self.n_lo + (k & _U_MASK), vals.reshape(-1))

    def items(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys (ascending) with a non-zero sum, and their sums (values added are > 0)."""
        idx = torch.nonzero(self.store).squeeze(1)
        return ((idx // self.n_lo) << _U_BITS) | (idx % self.n_lo), self.store[idx]


class _IdMap:
    """Stable compact codes 0, 1, 2, ... for arbitrary int64 ids (append-only)."""

    def __init__(self, device: torch.device, space: int | None = None):
        self.ids = torch.empty(0, dtype=torch.int64, device=device)  # sorted
        self.codes_sorted = torch.empty(0, dtype=torch.int64, device=device)
        self.n = 0
        # ids known to lie in [0, space) with a small space: a dense lookup table replaces
        # the sort of every chunk (only ids never seen before go through the sorted path)
        self._lut = None if space is None else torch.full((space,), -1, dtype=torch.int64,
                                                            device=device)  # fmt: skip

    def codes(self, ids: torch.Tensor) -> torch.Tensor:
        if self._lut is not None:
            out = self._lut[ids]
            miss = out < 0
            if bool(miss.any()):
                new = torch.unique(ids[miss])
                self._lut[new] = self._sorted_codes(new)
                out = self._lut[ids]
            return out
        return self._sorted_codes(ids)

    def _sorted_codes(self, ids: torch.Tensor) -> torch.Tensor:
        uniq, inv = torch.unique(ids.reshape(-1), sorted=True, return_inverse=True)
        out = torch.empty_like(uniq)
        # where each id sits (or would be inserted) among the known, sorted ids
        where = torch.searchsorted(self.ids, uniq)
        if self.n:
            pos = where.clamp(max=self.n - 1)
            found = self.ids[pos] == uniq
            out[found] = self.codes_sorted[pos[found]]
        else:
            found = torch.zeros_like(uniq, dtype=torch.bool)
        fresh = ~found
        new = uniq[fresh]  # sorted, none of them known
        if new.numel():
            new_codes = torch.arange(self.n, self.n + new.numel(), device=ids.device)
            out[fresh] = new_codes
            # merge the two sorted runs in O(n): the j-th new id lands at its insertion
            # point plus the j new ids before it (no re-sort of everything known)
            slots = where[fresh] + torch.arange(new.numel(), device=ids.device)
            total = self.n + new.numel()
            old = torch.ones(total, dtype=torch.bool, device=ids.device)
            old[slots] = False
            merged_ids = torch.empty(total, dtype=torch.int64, device=ids.device)
            merged_codes = torch.empty(total, dtype=torch.int64, device=ids.device)
            merged_ids[slots], merged_codes[slots] = new, new_codes
            merged_ids[old], merged_codes[old] = self.ids, self.codes_sorted
            self.ids, self.codes_sorted = merged_ids, merged_codes
            self.n = total
        return out[inv].reshape(ids.shape)

    def raw(self) -> torch.Tensor:
        """The original id of every code, in code order."""
        out = torch.empty(self.n, dtype=torch.int64, device=self.ids.device)
        out[self.codes_sorted] = self.ids
        return out
