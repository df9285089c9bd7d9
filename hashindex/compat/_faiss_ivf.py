"""IndexBinaryIVF of hashindex.compat.faiss (see there) on hashindex.IVFIndex, with what faiss's
scripts set and read on it: the clustering settings and the inverted lists' sizes."""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from .._validate import codes_arg, ids_arg, int_arg
from ..ivf import IVFIndex
from ._faiss_classes import IndexBinary, SearchParameters, _is_faiss_own, _remove_selected, _threads


class ClusteringParameters:
    """faiss's clustering settings as IndexBinaryIVF.cp: ``niter`` and ``seed`` steer the k-majority
    training; the others are kept for scripts that set them (k-majority needs no sampling bounds)."""

    def __init__(self) -> None:
        self.niter, self.seed, self.verbose = 10, 1234, False
        self.min_points_per_centroid, self.max_points_per_centroid = 39, 256


class InvertedLists:
    """What faiss's ``index.invlists`` tells about the lists: ``nlist``, ``code_size``, ``list_size(i)``."""

    def __init__(self, index: Any) -> None:
        self._index = index

    @property
    def nlist(self) -> int:
        return self._index.nlist

    @property
    def code_size(self) -> int:
        return self._index.nbits // 8

    def list_size(self, list_no: int) -> int:
        return int(self._index.list_sizes()[int_arg(list_no, "list_no", minimum=0, maximum=self.nlist - 1)])


class IndexIVFStats:
    """faiss's ``cvar.indexIVF_stats``, summed over this module's IVF searches: ``nq`` queries,
    ``nlist`` lists probed, ``ndis`` codes compared, ``search_time`` (ms, the whole search: the coarse
    search is not timed apart, so ``quantization_time`` stays 0); ``nheap_updates`` is not counted."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.nq = self.nlist = self.ndis = self.nheap_updates = 0
        self.quantization_time = self.search_time = 0.0

    def add(self, other: IndexIVFStats) -> None:
        for name in ("nq", "nlist", "ndis", "nheap_updates", "quantization_time", "search_time"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def _count(self, stats: dict[str, int], seconds: float) -> None:
        self.nq += stats["queries"]
        self.nlist += stats["lists_probed"]
        # faiss counts every code of the lists it scans, and a user reads ndis against max_codes:
        # the codes our bounds rule out count too (IVFIndex.last_search_stats tells them apart).
        self.ndis += stats["codes_compared"] + stats["codes_skipped"]
        self.search_time += seconds * 1e3


indexIVF_stats = IndexIVFStats()


class IndexBinaryIVF(IndexBinary):
    """faiss.IndexBinaryIVF(quantizer, d, nlist) on hashindex.IVFIndex. train() sets the centroids by
    k-majority (``cp.niter`` rounds from ``cp.seed``) and adds them to the quantizer; a quantizer
    filled beforehand (with nlist codes) gives them instead, as in faiss. ``nprobe`` per index, or per
    search with SearchParametersIVF. Ids are always mapped, so ``set_direct_map_type`` has nothing to
    do and ``reconstruct(id)`` always works. The quantizer may be one of faiss itself (an
    IndexBinaryHNSW): it is given the centroids, and codes and queries go to their lists by an
    exact search over them (faiss asks the graph, which may miss). One that cannot give its
    centroids back (an IndexBinaryFromFloat over a float HNSW or multi-index quantizer) places codes
    and picks the lists to probe by its own search, as faiss does."""

    def __init__(self, quantizer: IndexBinary, d: int, nlist: int) -> None:
        super().__init__(d)
        if not isinstance(quantizer, IndexBinary) and not _is_faiss_own(quantizer):
            raise TypeError(f"quantizer: expected a binary index of hashindex.compat.faiss or of faiss, got "
                            f"{type(quantizer).__name__}")
        if quantizer.d != self.d:
            raise ValueError(f"quantizer: expected d={self.d}, got d={quantizer.d}")
        self.quantizer, self.nlist = quantizer, int_arg(nlist, "nlist", minimum=1)
        self._index = IVFIndex(self.d, self.nlist)
        # as faiss: trained at once by a quantizer that already holds nlist centroids
        self.is_trained = quantizer.ntotal == self.nlist and bool(getattr(quantizer, "is_trained", True))
        self.cp = ClusteringParameters()
        self._by_quantizer = False  # lists chosen by the quantizer's own search
        self.max_codes = 0  # codes a query may compare (0: no limit), as faiss's index.max_codes

    @property
    def nprobe(self) -> int:
        """The lists a search probes (saved with the index, as faiss saves it)."""
        return self._index.nprobe

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        self._index.nprobe = value

    @property
    def invlists(self) -> InvertedLists:
        return InvertedLists(self._index)

    def set_direct_map_type(self, kind: Any) -> None:
        """Accepted for faiss's scripts: ids are always mapped here."""

    def make_direct_map(self, new_maintain_direct_map: bool = True) -> None:
        """Accepted for faiss's scripts: ids are always mapped here."""

    def train(self, x: np.ndarray) -> None:
        self._index.train(codes_arg(x, self.code_size, "x"), iterations=int_arg(self.cp.niter, "cp.niter", minimum=1),
                          seed=int_arg(self.cp.seed, "cp.seed", minimum=0))
        self.quantizer.reset()
        self.quantizer.add(self._index.centroids)
        self.is_trained = True

    def _centroids(self) -> None:
        if self._index.is_trained:
            return
        if self.quantizer.ntotal != self.nlist:
            raise RuntimeError("the index is not trained: call train(x), or fill the quantizer with nlist codes")
        if isinstance(self.quantizer, IndexBinary):
            self._index.centroids = self.quantizer._index.get(np.sort(self.quantizer._index.ids())[:self.nlist])
        else:
            try:
                self._index.centroids = self.quantizer.reconstruct_n(0, self.nlist)
            except RuntimeError:  # faiss's quantizers over float indexes that keep no codes
                self._by_quantizer = True
        self.is_trained = True

    def add(self, x: np.ndarray) -> None:
        x = codes_arg(x, self.code_size, "x")
        self.add_with_ids(x, np.arange(self._index.next_id, self._index.next_id + len(x)))

    def add_with_ids(self, x: np.ndarray, ids: np.ndarray) -> None:
        self._centroids()
        x = codes_arg(x, self.code_size, "x")
        ids = ids_arg(ids, "ids", count=len(x))
        if self._by_quantizer:
            self._index.add(x, ids, lists=self.quantizer.search(x, 1)[1][:, 0])
        else:
            self._index.add(x, ids)

    def _probes(self, x: np.ndarray, params: SearchParameters | None) -> dict[str, Any]:
        self._centroids()
        chosen, cap = getattr(params, "nprobe", None), getattr(params, "max_codes", None)
        nprobe = int_arg(self.nprobe if chosen is None else chosen, "nprobe", minimum=1)
        max_codes = int_arg(self.max_codes if cap is None else cap, "max_codes", minimum=0)
        if self._by_quantizer:
            return {"lists": self.quantizer.search(x, min(nprobe, self.nlist))[1], "max_codes": max_codes}
        return {"nprobe": nprobe, "max_codes": max_codes}

    def _knn(self, x: np.ndarray, k: int, params: SearchParameters | None) -> tuple[np.ndarray, np.ndarray]:
        start = time.perf_counter()
        result = self._index.search(x, k, threads=_threads[0], **self._probes(x, params), **self._filter(params))
        indexIVF_stats._count(self._index.last_search_stats, time.perf_counter() - start)
        return result.distances, result.ids

    def _range(self, x: np.ndarray, thresh: int,
               params: SearchParameters | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        start = time.perf_counter()
        r = self._index.range_search(x, thresh - 1, threads=_threads[0], **self._probes(x, params),
                                     **self._filter(params))
        indexIVF_stats._count(self._index.last_search_stats, time.perf_counter() - start)
        return r.lims.astype(np.uint64), r.distances.astype(np.float32), r.ids

    def remove_ids(self, sel: Any) -> int:
        return _remove_selected(self._index, sel)

    def reconstruct(self, key: int) -> np.ndarray:
        return self._index.reconstruct(key)
