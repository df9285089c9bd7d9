"""The classes of hashindex.compat.faiss (see there): selectors, and the binary indexes over
hashindex's own."""
from __future__ import annotations

from typing import Any

import numpy as np

from .._validate import codes_arg, ids_arg, int_arg, k_arg, nbits_arg
from ..flat import FlatIndex
from ..mih import MIHIndex

METRIC_INNER_PRODUCT, METRIC_L2 = 0, 1  # faiss's values; binary indexes report METRIC_L2
_threads: list[int | None] = [None]  # omp_set_num_threads: None is every available core


def _is_faiss_own(index: Any) -> bool:
    """An index of faiss itself (the kinds this module takes from faiss: HNSW, FromFloat)."""
    return not isinstance(index, IndexBinary) and type(index).__module__.startswith("faiss")



# --- selectors --------------------------------------------------------------------------------

class IDSelector:
    """Which ids a search may return or remove_ids removes (faiss.IDSelector)."""

    def is_member(self, id: int) -> bool:
        return bool(self.mask(np.asarray([id], np.int64))[0])

    def mask(self, ids: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def allow_list(self, ids: np.ndarray) -> np.ndarray:
        """The selected ids among ``ids`` (what hashindex's ``allow=`` takes)."""
        return ids[self.mask(ids)]


class IDSelectorBatch(IDSelector):
    """These ids (faiss.IDSelectorBatch(ids) / IDSelectorBatch(n, ids))."""

    def __init__(self, *args: Any) -> None:
        ids, n = _sized(args, "ids", 1)
        self.ids = np.unique(ids_arg(ids.ravel()[:n] if n is not None else ids, "ids"))

    def mask(self, ids: np.ndarray) -> np.ndarray:
        return np.isin(ids, self.ids)

    def allow_list(self, ids: np.ndarray) -> np.ndarray:
        return self.ids  # the index ignores ids it does not hold: no scan of its ids needed


class IDSelectorArray(IDSelectorBatch):
    """These ids (faiss.IDSelectorArray)."""


class IDSelectorRange(IDSelector):
    """imin <= id < imax (faiss.IDSelectorRange)."""

    def __init__(self, imin: int, imax: int, assume_sorted: bool = False) -> None:
        self.imin, self.imax = int(imin), int(imax)

    def mask(self, ids: np.ndarray) -> np.ndarray:
        return (ids >= self.imin) & (ids < self.imax)


class IDSelectorNot(IDSelector):
    """Every id the other selector does not select (faiss.IDSelectorNot)."""

    def __init__(self, sel: IDSelector) -> None:
        if not isinstance(sel, IDSelector):
            raise TypeError(f"sel: expected an IDSelector, got {type(sel).__name__}")
        self.sel = sel

    def mask(self, ids: np.ndarray) -> np.ndarray:
        return ~self.sel.mask(ids)


def _sized(args: tuple[Any, ...], what: str, per_item: float) -> tuple[np.ndarray, int | None]:
    """(array, n) of a selector's (array) or (n, array) arguments; n is checked against the array."""
    if len(args) not in (1, 2):
        raise TypeError(f"{what}: expected (array) or (n, array), got {len(args)} arguments")
    array = np.asarray(args[-1])
    if len(args) == 1:
        return array, None
    n = int_arg(args[0], "n", minimum=0)
    if n * per_item > array.size:
        raise ValueError(f"n: {what} holds {array.size} entries, fewer than n = {n} needs")
    return array, n


class IDSelectorBitmap(IDSelector):
    """Bit ``id`` of a packed little-endian bitmap (faiss.IDSelectorBitmap(bitmap), or (n, bitmap): ids
    below n only)."""

    def __init__(self, *args: Any) -> None:
        bitmap, n = _sized(args, "bitmap", 1 / 8)
        self.bits = np.unpackbits(np.ascontiguousarray(bitmap, dtype=np.uint8), bitorder="little").astype(bool)
        if n is not None:
            self.bits = self.bits[:n]

    def mask(self, ids: np.ndarray) -> np.ndarray:
        inside = ids < len(self.bits)
        out = np.zeros(len(ids), bool)
        out[inside] = self.bits[ids[inside]]
        return out


class SearchParameters:
    """faiss.SearchParameters(sel=...): the selector a search applies."""

    def __init__(self, sel: IDSelector | None = None, **_ignored: Any) -> None:
        if sel is not None and not isinstance(sel, IDSelector):
            raise TypeError(f"sel: expected an IDSelector, got {type(sel).__name__}")
        self.sel = sel


class SearchParametersIVF(SearchParameters):
    """faiss.SearchParametersIVF(nprobe=..., max_codes=..., sel=...): a search's lists to probe, the
    codes a query may compare (0: no limit), and its selector."""

    def __init__(self, sel: IDSelector | None = None, nprobe: int | None = None, max_codes: int | None = None,
                 **ignored: Any) -> None:
        super().__init__(sel, **ignored)
        self.nprobe = None if nprobe is None else int_arg(nprobe, "nprobe", minimum=1)
        self.max_codes = None if max_codes is None else int_arg(max_codes, "max_codes", minimum=0)


def _remove_selected(index: Any, sel: Any) -> int:
    """Removes the selected ids that the index holds (faiss ignores absent ones); how many."""
    gone = _selector(sel).allow_list(index.ids())
    gone = gone[np.fromiter((int(i) in index for i in gone), bool, len(gone))]
    if len(gone):
        index.remove(gone)
    return len(gone)


def _selector(value: Any) -> IDSelector:
    if isinstance(value, IDSelector):
        return value
    return IDSelectorBatch(value)  # faiss's Python layer turns an id array into IDSelectorBatch


# --- indexes ----------------------------------------------------------------------------------

class IndexBinary:
    """What the binary index classes share (faiss.IndexBinary)."""

    _index: Any

    def __init__(self, d: int) -> None:
        self.d = nbits_arg(d)
        self.code_size = self.d // 8
        self.is_trained = True
        self.verbose = False
        self.metric_type = METRIC_L2

    @property
    def ntotal(self) -> int:
        return len(self._index)

    def train(self, x: np.ndarray) -> None:
        """Nothing to train (exact indexes)."""

    def _filter(self, params: SearchParameters | None) -> dict[str, np.ndarray]:
        if params is None or params.sel is None:
            return {}
        return {"allow": params.sel.allow_list(self._index.ids())}

    def search(self, x: np.ndarray, k: int, *, params: SearchParameters | None = None,
               D: np.ndarray | None = None, I: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:  # noqa: E741
        """(D int32, I int64), both (n, k): faiss's padding (2^31 - 1, -1); D / I filled if given."""
        distances, ids = self._knn(codes_arg(x, self.code_size, "x"), k_arg(k), params)
        for out, value, name in ((D, distances, "D"), (I, ids, "I")):
            if out is not None:
                if out.shape != value.shape or out.dtype != value.dtype:
                    raise ValueError(f"{name}: expected {value.dtype} of shape {value.shape}, got {out.dtype} {out.shape}")
                out[...] = value
        return distances, ids

    def _knn(self, x: np.ndarray, k: int, params: SearchParameters | None) -> tuple[np.ndarray, np.ndarray]:
        distances, ids = self._index.search(x, k, threads=_threads[0], **self._filter(params))
        return distances, self._to_user_ids(ids)

    def _range(self, x: np.ndarray, thresh: int,
               params: SearchParameters | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        lims, distances, ids = self._index.range_search(x, thresh - 1, threads=_threads[0], **self._filter(params))
        return lims.astype(np.uint64), distances.astype(np.float32), self._to_user_ids(ids)

    def range_search(self, x: np.ndarray, thresh: int, *,
                     params: SearchParameters | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(lims uint64, D float32, I int64) of every code with distance < thresh, as faiss returns them."""
        x = codes_arg(x, self.code_size, "x")
        thresh = int_arg(thresh, "thresh", minimum=-(1 << 31))
        if thresh <= 0:
            return np.zeros(len(x) + 1, np.uint64), np.zeros(0, np.float32), np.zeros(0, np.int64)
        return self._range(x, thresh, params)

    def add(self, x: np.ndarray) -> None:
        raise RuntimeError(f"add not implemented for {type(self).__name__}")

    def add_with_ids(self, x: np.ndarray, ids: np.ndarray) -> None:
        raise RuntimeError(f"add_with_ids not implemented for {type(self).__name__}")

    def assign(self, x: np.ndarray, k: int = 1, labels: np.ndarray | None = None) -> np.ndarray:
        """The ids of each query's k nearest codes (int64, (n, k)): search's I alone."""
        return self.search(x, k, I=labels)[1]

    def reset(self) -> None:
        self._index.reset()

    def _to_user_ids(self, ids: np.ndarray) -> np.ndarray:
        return ids


class _Positional(IndexBinary):
    """Ids are positions 0..ntotal-1 (faiss's flat and hash indexes)."""

    def add(self, x: np.ndarray) -> None:
        x = codes_arg(x, self.code_size, "x")
        self._index.add(x, np.arange(self.ntotal, self.ntotal + len(x), dtype=np.int64))

    def add_with_ids(self, x: np.ndarray, ids: np.ndarray) -> None:
        raise RuntimeError(f"add_with_ids not implemented for {type(self).__name__}: wrap it in IndexBinaryIDMap")

    def reconstruct(self, key: int) -> np.ndarray:
        return self._index.reconstruct(key)

    def reconstruct_n(self, i0: int, ni: int) -> np.ndarray:
        return self._index.get(np.arange(int(i0), int(i0) + int(ni), dtype=np.int64))

    def remove_ids(self, sel: Any) -> int:
        ids = np.sort(self._index.ids())
        gone = _selector(sel).mask(ids)
        if not gone.any():
            return 0
        keep = self._index.get(ids[~gone])
        self._index.reset()
        self._index.add(keep, np.arange(len(keep), dtype=np.int64))
        return int(gone.sum())


class IndexBinaryFlat(_Positional):
    """Exhaustive search (faiss.IndexBinaryFlat) on hashindex.FlatIndex."""

    def __init__(self, d: int) -> None:
        super().__init__(d)
        self._index = FlatIndex(self.d)


class IndexBinaryMultiHash(_Positional):
    """faiss.IndexBinaryMultiHash(d, nhash, b) on hashindex.MIHIndex with nhash substrings: exact."""

    def __init__(self, d: int, nhash: int, b: int) -> None:
        super().__init__(d)
        self.nhash = int_arg(nhash, "nhash", minimum=1)
        self.b = int_arg(b, "b", minimum=1)
        if self.nhash * self.b > self.d:
            raise ValueError(f"nhash x b: expected at most d={self.d} bits, got {self.nhash} x {self.b}")
        self.nflip = 0  # faiss's approximation knob; this index is exact
        # hashindex's substrings are at most 64 bits, so a short-code nhash may be raised to d / 64
        self._index = MIHIndex(self.d, max(self.nhash, -(-self.d // 64)))


class IndexBinaryHash(_Positional):
    """faiss.IndexBinaryHash(d, b) on hashindex.MIHIndex: exact (faiss's looks up one b-bit hash,
    flipping up to ``nflip`` bits)."""

    def __init__(self, d: int, b: int) -> None:
        super().__init__(d)
        self.b = int_arg(b, "b", minimum=1, maximum=self.d)
        self.nflip = 0
        self._index = MIHIndex(self.d)


class IndexBinaryIDMap(IndexBinary):
    """User ids over another binary index (faiss.IndexBinaryIDMap(index)); add_with_ids only."""

    def __init__(self, index: IndexBinary) -> None:
        if not isinstance(index, _Positional):
            raise TypeError(f"index: expected an IndexBinaryFlat or IndexBinaryMultiHash, got {type(index).__name__}")
        if index.ntotal:
            raise ValueError("index: must be empty when wrapped (faiss asserts the same)")
        super().__init__(index.d)
        self.index = index
        self._index = index._index  # ids live in the hashindex index itself

    def add(self, x: np.ndarray) -> None:
        raise RuntimeError("add not implemented for IndexBinaryIDMap: use add_with_ids")

    def add_with_ids(self, x: np.ndarray, ids: np.ndarray) -> None:
        x = codes_arg(x, self.code_size, "x")
        self._index.add(x, ids_arg(ids, "ids", count=len(x)))

    def remove_ids(self, sel: Any) -> int:
        return _remove_selected(self._index, sel)

    @property
    def id_map(self) -> np.ndarray:
        return self._index.ids()


class IndexBinaryIDMap2(IndexBinaryIDMap):
    """IndexBinaryIDMap with reconstruct by id (faiss.IndexBinaryIDMap2)."""

    def reconstruct(self, key: int) -> np.ndarray:
        return self._index.reconstruct(key)
