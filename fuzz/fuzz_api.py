"""Atheris target for the Python API, with a numpy model of the index as the oracle.

Each input becomes an index (a kind and a width, sometimes an invalid one; an IVFIndex trained at
once, searched at any nprobe against the oracle over the lists it probes; searches sometimes under
allow= or deny= in any form, or an invalid one) and up to 12 calls (add, with
or without ids and groups; search; range_search; remove; get; contains; reset; a bytes, pickle or damaged
bytes round trip; hamming_distances) whose arguments are arrays of random dtype, shape, memory order and
strides, or k / radius / threads / ids values from the ordinary to the absurd (negative, 2**63, floats,
bools, strings, 0-d arrays). Every call must either

* succeed with exactly what the model says (sorted by distance, ties by id; tests/oracle.py), or
* raise TypeError, ValueError, KeyError or MemoryError -- the first two with a message that starts with
  the argument's name -- and leave the index exactly as it was (all or nothing).

Anything else (another exception, a wrong answer, an index changed by a failed call, a crash) is a
finding: atheris stops and writes the input as crash-<sha1>; replay it with ``one_input`` and keep it in
tests/fuzz_regressions/api/.

    pip install atheris && python fuzz/fuzz_api.py -max_total_time=60 [corpus_dir]
"""
from __future__ import annotations

import importlib.util
import pickle
import sys
from pathlib import Path

import numpy as np


def _load_oracle():
    path = Path(__file__).resolve().parent.parent / "tests" / "oracle.py"
    spec = importlib.util.spec_from_file_location("hashindex_fuzz_oracle", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


oracle = _load_oracle()
hashindex = None  # imported in main() under atheris instrumentation, or by _ensure_imported()


def _ensure_imported():
    global hashindex
    if hashindex is None:
        import hashindex as module

        hashindex = module


class Finding(AssertionError):
    """The library broke its contract on this input."""


class Input:
    """Decodes fuzzer bytes into choices; past the end every choice is its first option."""

    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            return 0
        self.pos += 1
        return self.data[self.pos - 1]

    def int(self, lo: int, hi: int) -> int:
        span = hi - lo + 1
        value = 0
        for _ in range((span.bit_length() + 7) // 8):
            value = value * 256 + self.byte()
        return lo + value % span

    def pick(self, options):
        return options[self.int(0, len(options) - 1)]

    def chance(self, eighths: int) -> bool:
        return self.int(0, 7) < eighths

    def bytes(self, n: int) -> np.ndarray:
        chunk = self.data[self.pos:self.pos + n]
        self.pos += len(chunk)
        return np.frombuffer(chunk.ljust(n, b"\0"), dtype=np.uint8).copy()


MAX_ID = 2**63 - 2  # ids are int64 >= 0; 2**63 - 1 is kept free so that "largest id + 1" always exists
ODD_INTS = [0, -1, -(2**63), 2**31 - 1, 2**31, 2**63 - 1, 2**63, 2**64, 10**30]
ODD_OBJECTS = [1.0, 2.5, float("nan"), float("inf"), True, False, None, "3", b"\x01", [1], (2,), 2 + 0j,
               np.float32(2), np.array(2), np.array([2]), np.bool_(True), object()]


def int_value(inp: Input, lo: int, hi: int):
    """An ordinary integer in [lo, hi] most of the time; else an odd integer or something that is not one."""
    r = inp.int(0, 15)
    if r < 11:
        return inp.int(lo, hi)
    if r == 11:
        return inp.pick([np.int32, np.int64, np.uint8, np.uint64])(inp.int(max(lo, 0), max(hi, 0)))
    if r < 14:
        return inp.pick(ODD_INTS)
    return inp.pick(ODD_OBJECTS)


def threads_value(inp: Input):
    return inp.pick([None, None, None, 1, 2, 3]) if inp.chance(6) else int_value(inp, -1, 5)


def make_codes(inp: Input, n: int, code_size: int, pool: np.ndarray | None):
    """(intended rows or None if the argument is invalid by design, the argument as passed)."""
    if pool is not None and len(pool) and pool.shape[1] == code_size and inp.chance(3):
        rows = pool[[inp.int(0, len(pool) - 1) for _ in range(n)]].reshape(n, code_size)  # duplicates, ties
    else:
        alphabet = inp.pick([None, None, np.array([0, 255], np.uint8), np.array([0, 1, 3], np.uint8)])
        raw = inp.bytes(n * code_size)
        rows = (raw if alphabet is None else alphabet[raw % len(alphabet)]).reshape(n, code_size)
    layout = inp.int(0, 15)
    a = rows
    if layout == 1:
        a = np.asfortranarray(rows)
    elif layout == 2:  # a strided view into a larger buffer full of other bytes
        big = np.full((2 * n + 1, 3 * code_size + 1), 0xA5, np.uint8)
        big[1::2, 1::3][:n, :code_size] = rows
        a = big[1::2, 1::3][:n, :code_size]
    elif layout == 3:  # negative strides
        a = rows[::-1, ::-1].copy()[::-1, ::-1]
    elif layout == 4:
        a = rows.copy()
        a.setflags(write=False)
    elif layout == 5 and n:
        a = np.broadcast_to(rows[:1], (n, code_size))
        rows = np.array(a)
    elif layout == 6 and n == 1:
        a = rows[0]  # one code, 1-D
    elif layout == 7:
        return None, rows.astype(inp.pick([np.int8, np.uint16, np.int64, np.float32, np.float64, bool, object]))
    elif layout == 8:
        return None, inp.pick([rows.tolist(), bytes(rows), memoryview(rows), rows.reshape(-1)[:0].tolist(), None, 7])
    elif layout == 9:
        wrong = inp.pick([code_size - 1, code_size + 1, 0])
        wrong = code_size + 1 if wrong < 0 or wrong == code_size else wrong
        return None, np.zeros((n, wrong), np.uint8)
    elif layout == 10:
        return None, rows[None] if inp.chance(4) else np.uint8(5)
    elif layout == 11 and n > 1:
        return None, rows.reshape(-1)  # n codes flattened: one code of the wrong width
    elif layout == 12:
        a = rows.view(np.dtype(">u1"))  # uint8 whatever the byte order
    return np.ascontiguousarray(rows), a


def make_ids(inp: Input, n: int, live: list[int], next_id: int):
    """(intended int64 ids or None if invalid by design, the argument as passed)."""
    r = inp.int(0, 11)
    if r < 4:
        start = min(inp.pick([next_id, next_id + inp.int(0, 1000), 2**62, MAX_ID + 1 - n]), MAX_ID + 1 - n)
        ids = np.arange(start, start + n, dtype=np.int64)
        if inp.chance(3):
            ids = ids[::-1].copy()
        if inp.chance(3):
            return ids, ids.tolist()  # a list of ints is as good as an array
        return ids, ids.astype(inp.pick([np.int64, np.int64, np.uint64, np.int32])) if start < 2**31 - n else ids
    if r == 4 and live:
        ids = np.array([inp.pick(live) for _ in range(n)], dtype=np.int64)  # present already
        return (None if n else ids), ids
    next_id = min(next_id, MAX_ID + 1 - n)  # fresh ids below, unless the largest ones are taken
    if r == 5 and n > 1:
        ids = np.arange(next_id, next_id + n, dtype=np.int64)
        ids[-1] = ids[0]
        return None, ids
    if r == 6 and n:
        return None, np.array([inp.pick([-1, -(2**63), -5, MAX_ID + 1])] * n, dtype=np.int64)
    if r == 7 and n:
        return None, np.full(n, 2**63 + 1, dtype=np.uint64)
    if r == 8:
        return None, inp.pick([np.arange(n, dtype=np.float64), np.arange(n).reshape(n, 1), [float(i) for i in range(n)] if n else "ids",
                               np.arange(n + 1), "ids", np.arange(n).astype(bool)])
    ids = np.arange(next_id, next_id + n, dtype=np.int64)
    if n > 2 and inp.chance(1):
        return None, ids[::2].repeat(2)[:n]  # repeats
    return (None if set(ids.tolist()) & set(live) else ids), ids


def make_groups(inp: Input, n: int):
    """(intended int64 groups or None if invalid by design, the argument as passed)."""
    groups = np.array([inp.int(0, 3) for _ in range(n)], dtype=np.int64)
    r = inp.int(0, 7)
    if r < 5:
        return groups, inp.pick([groups.astype(np.int64), groups.astype(np.int32), groups.astype(np.uint8),
                                 groups.astype(np.uint64), groups.tolist()])
    if r == 5 and n:
        bad = groups.copy()
        bad[-1] = -2
        return None, bad
    return None, inp.pick([groups.astype(np.float64), groups[:-1] if n else np.zeros(1, np.int64), groups.reshape(-1, 1),
                           [float(g) for g in groups] if n else "g", np.full(n, 2**63 + 3, np.uint64) if n else "g"])


def is_int(value, lo: int, hi: int | None) -> bool:
    """Whether the API must accept value as an integer argument in [lo, hi]."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        return False
    return lo <= int(value) and (hi is None or int(value) <= hi)


def as_int(value):
    """What the API must read a valid integer argument as; raises TypeError for anything else."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(value)
    return int(value)


class Model:
    """What the index holds: id -> (code rows per field, group), and the next default id."""

    def __init__(self, fields: dict[str, int]):
        self.fields = fields
        self.items: dict[int, tuple[tuple[bytes, ...], int]] = {}
        self.next_id = 0

    def add(self, rows: list[np.ndarray], ids: np.ndarray | None, groups: np.ndarray | None) -> None:
        n = len(rows[0])
        if ids is None:
            ids = np.arange(self.next_id, self.next_id + n)
        for i in range(n):
            self.items[int(ids[i])] = (tuple(r[i].tobytes() for r in rows), -1 if groups is None else int(groups[i]))
        if n:
            self.next_id = max(self.next_id, int(ids.max()) + 1)

    def arrays(self):
        ids = np.array(sorted(self.items), dtype=np.int64)
        rows = [np.array([np.frombuffer(self.items[i][0][f], np.uint8) for i in ids], np.uint8).reshape(
            len(ids), bits // 8) for f, bits in enumerate(self.fields.values())]
        groups = np.array([self.items[i][1] for i in ids], dtype=np.int64)
        return ids, rows, groups


def expect_error(exc: BaseException, names: tuple[str, ...]) -> None:
    if isinstance(exc, (KeyError, MemoryError)):
        return
    if not isinstance(exc, (TypeError, ValueError)):
        raise Finding(f"unexpected {type(exc).__name__}: {exc}") from exc
    message = str(exc)
    if not message.startswith(names):
        raise Finding(f"{type(exc).__name__} message does not start with an argument name {names}: {message!r}") from exc


class Session:
    def __init__(self, inp: Input):
        self.inp = inp
        self.kind = inp.pick(["flat", "mih", "multi", "ivf"])
        widths = [8, 16, 24, 64, 72, 128]
        if self.kind == "multi":
            self.fields = {name: inp.pick(widths) for name in ["a", "b", "c"][: inp.int(1, 3)]}
        else:
            self.fields = {"": inp.pick(widths)}
        self.index = self._construct()
        self.model = Model(self.fields)
        self.pool: np.ndarray | None = None

    def _construct(self):
        inp = self.inp
        # Probing favoured or not: small indexes would otherwise almost always be scanned.
        hashindex._core.set_mih_budget_scale(inp.pick([1.0, 1e6]))
        if inp.chance(1):  # an invalid width: must raise, naming the argument
            bad = inp.pick([0, -8, 7, 2**25, 12.0, "64", None, True])
            try:
                if self.kind == "multi":
                    hashindex.MultiFieldIndex({"a": bad})
                elif self.kind == "mih":
                    hashindex.MIHIndex(bad)
                else:
                    hashindex.FlatIndex(bad)
            except BaseException as exc:  # noqa: BLE001 - judged by expect_error
                expect_error(exc, ("nbits", "fields"))
            else:
                raise Finding(f"nbits={bad!r} accepted")
        if self.kind == "multi":
            return hashindex.MultiFieldIndex(self.fields, mih=inp.chance(2))
        nbits = self.fields[""]
        if self.kind == "ivf":
            return self._construct_ivf(nbits)
        if self.kind == "mih":
            m = inp.pick([None, None, 1, 2, 3, nbits, nbits + 1, 0, -1, 2.0])
            try:
                return hashindex.MIHIndex(nbits, m=m)
            except BaseException as exc:  # noqa: BLE001
                expect_error(exc, ("m",))
                return hashindex.MIHIndex(nbits)
        return hashindex.FlatIndex(nbits)

    def _construct_ivf(self, nbits: int):
        """Trained at once (an untrained index refuses searches, as it should), on codes that hold
        ties and equal centroids: lists hold whatever the nearest centroid by (distance, list) is."""
        inp = self.inp
        nlist = inp.pick([1, 2, 3, 5])
        index = hashindex.IVFIndex(nbits, nlist)
        rows, train = make_codes(inp, nlist + inp.int(0, 8), nbits // 8, None)
        iterations, seed = int_value(inp, 1, 4), int_value(inp, 0, 9)
        try:
            index.train(train, iterations=iterations, seed=seed)
        except BaseException as exc:  # noqa: BLE001
            expect_error(exc, ("codes", "iterations", "seed"))
            index.train(np.arange(nlist * (nbits // 8), dtype=np.uint8).reshape(nlist, nbits // 8))
        else:
            valid = rows is not None and is_int(iterations, 1, 2**31 - 1) and is_int(seed, 0, 2**64 - 1)
            self.judge("train", True, valid, f"codes {train!r}, iterations={iterations!r}, seed={seed!r}")
        return index

    def probed(self, q: np.ndarray, rows: np.ndarray, nprobe) -> np.ndarray:
        """(nq, n): whether each item lies in a list that the query probes (IVF; else all)."""
        if self.kind != "ivf":
            return np.ones((len(q), len(rows)), bool)
        centroids = self.index.centroids
        nlist = len(centroids)
        nprobe = min(as_int(self.index.nprobe if nprobe is None else nprobe), nlist)
        lists = np.lexsort((np.broadcast_to(np.arange(nlist), (len(rows), nlist)), oracle.hamming_matrix(rows, centroids)))[:, 0]
        order = np.lexsort((np.broadcast_to(np.arange(nlist), (len(q), nlist)), oracle.hamming_matrix(q, centroids)))
        return np.stack([np.isin(lists, order[i, :nprobe]) for i in range(len(q))]) if len(q) else np.zeros((0, len(rows)), bool)

    def filter_value(self):
        """(which ids pass, as a function of an id array, or None if the filter is invalid by design;
        the keyword arguments that pass it): mostly none, else allow= or deny= in any form filters
        take, with present and absent ids, or something invalid."""
        inp = self.inp
        r = inp.int(0, 11)
        if r < 6:
            return (lambda ids: np.ones(len(ids), bool)), {}
        name = inp.pick(["allow", "deny"])
        live = list(self.model.items)
        if r < 9:
            chosen = [inp.pick(live) for _ in range(inp.int(0, 4))] if live else []
            if inp.chance(3):
                chosen.append(min(self.model.next_id + inp.int(0, 3), MAX_ID))  # absent: ignored
            form = inp.int(0, 5)
            value = (chosen if form == 0 else np.array(chosen, dtype=inp.pick([np.int64, np.uint64, np.int32]))
                     if form == 1 and all(c < 2**31 for c in chosen) else set(chosen) if form == 2 else tuple(chosen)
                     if form == 3 else chosen[0] if form == 4 and len(chosen) == 1 else chosen)
        elif r == 9:  # a bitmap over ids: True at position i passes id i
            value = np.array([inp.chance(4) for _ in range(inp.int(0, 24))], dtype=bool)
            chosen = np.flatnonzero(value).tolist()
        elif r == 10:
            return None, {"allow": [0], "deny": [1]}
        else:
            return None, {name: inp.pick([[-1], [1.0], np.array([[1]]), "1", range(3), [2**63], np.zeros((1, 2), bool)])}
        ids = np.array(chosen, dtype=np.int64)
        return ((lambda x: np.isin(x, ids)) if name == "allow" else (lambda x: ~np.isin(x, ids))), {name: value}

    def nprobe_value(self):
        return None if self.kind != "ivf" or self.inp.chance(3) else int_value(self.inp, 1, 6)

    def probing(self, nprobe) -> dict:
        return {} if self.kind != "ivf" else {"nprobe": nprobe}

    # -- the model's view ----------------------------------------------------------------------------
    def code_sizes(self) -> list[int]:
        return [bits // 8 for bits in self.fields.values()]

    def check_state(self) -> None:
        ids, rows, groups = self.model.arrays()
        got = np.sort(self.index.ids())
        if not np.array_equal(got, ids):
            raise Finding(f"index holds ids {got[:10]}..., model {ids[:10]}...")
        if len(self.index) != len(ids):
            raise Finding("len(index) disagrees with ids()")
        if self.kind == "multi":
            stored = self.index.get(ids)
            for f, name in enumerate(self.fields):
                if not np.array_equal(stored[name], rows[f]):
                    raise Finding(f"stored codes of field {name!r} differ from what was added")
            if not np.array_equal(self.index.groups(ids), groups):
                raise Finding("stored groups differ from what was added")
        elif not np.array_equal(self.index.get(ids), rows[0]):
            raise Finding("stored codes differ from what was added")

    @staticmethod
    def judge(what: str, ok: bool, valid: bool, arguments: str) -> None:
        """A call must succeed exactly when its arguments were valid."""
        if ok != valid:
            raise Finding(f"{what} {'accepted invalid' if ok else 'refused valid'} arguments: {arguments}")

    def call(self, names: tuple[str, ...], fn):
        """Runs fn(); on an error checks it and that nothing changed. Returns (ok, result)."""
        try:
            return True, fn()
        except BaseException as exc:  # noqa: BLE001
            if isinstance(exc, Finding):
                raise
            expect_error(exc, names)
            self.check_state()
            return False, None

    # -- calls ---------------------------------------------------------------------------------------
    def add(self) -> None:
        inp = self.inp
        n = inp.int(0, 12)
        pairs = [make_codes(inp, n, cs, self.pool) for cs in self.code_sizes()]
        ids, ids_arg = make_ids(inp, n, list(self.model.items), self.model.next_id) if inp.chance(3) else (None, None)
        with_ids = ids_arg is not None
        groups = groups_arg = None
        if self.kind == "multi":
            codes = {name: a for name, (_, a) in zip(self.fields, pairs)}
            if inp.chance(1):
                codes.pop(inp.pick(list(self.fields)))
            if inp.chance(1):
                codes["zz"] = pairs[0][1]
            if inp.chance(4):
                groups, groups_arg = make_groups(inp, n)
            ok, _ = self.call(("codes", "ids", "groups"), lambda: self.index.add(codes, ids_arg, groups_arg))
            valid = set(codes) == set(self.fields) and (groups_arg is None or groups is not None)
        else:
            ok, _ = self.call(("codes", "ids"), lambda: self.index.add(pairs[0][1], ids_arg))
            valid = True
        rows = [p[0] for p in pairs]
        valid = valid and all(r is not None for r in rows) and (not with_ids or ids is not None)
        if with_ids and ids is not None and n and self.model.items.keys() & set(ids.tolist()):
            valid = False
        if not with_ids and n and self.model.next_id + n - 1 > MAX_ID:
            valid = False  # default ids would pass the largest id
        self.judge("add", ok, valid, f"{n} rows, ids={ids_arg!r}, groups={groups_arg!r}")
        if ok:
            self.model.add(rows, ids if with_ids else None, groups)
            self.pool = rows[0] if self.pool is None else np.concatenate([self.pool, rows[0]])[-64:]
        self.check_state()

    def search(self) -> None:
        inp = self.inp
        nq = inp.int(0, 5)
        pairs = [make_codes(inp, nq, cs, self.pool) for cs in self.code_sizes()]
        k = int_value(inp, 1, len(self.model.items) + 3)
        if k == 2**31 - 1:  # only allocatable as a MemoryError: make sure it is one, not 24 GB of padding
            pairs = [(None, np.zeros((4096, cs), np.uint8)) for cs in self.code_sizes()]
        threads = threads_value(inp)
        if self.kind == "multi":
            self._search_multi(pairs, k, threads)
            return
        nprobe = self.nprobe_value()
        passes, filtering = self.filter_value()
        ok, result = self.call(("queries", "k", "threads", "nprobe", "allow", "deny"),
                               lambda: self.index.search(pairs[0][1], k, threads=threads, **self.probing(nprobe), **filtering))
        q = pairs[0][0]
        valid = (q is not None and is_int(k, 1, 2**31 - 2) and (threads is None or is_int(threads, 1, None))
                 and (nprobe is None or is_int(nprobe, 1, None)) and passes is not None)
        self.judge("search", ok, valid, f"queries {type(pairs[0][1]).__name__}, k={k!r}, threads={threads!r}, "
                                        f"nprobe={nprobe!r}, {filtering!r}")
        if not ok:
            return
        k = as_int(k)
        ids, rows, _ = self.model.arrays()
        probed = self.probed(q, rows[0], nprobe) & passes(ids)
        if result.distances.shape != (len(q), k) or result.ids.shape != (len(q), k):
            raise Finding(f"search k={k} returned shapes {result.distances.shape}, {result.ids.shape} for {len(q)} queries")
        for i in range(len(q)):  # each query over the items its lists hold
            expect_d, expect_i = oracle.knn(q[i:i + 1], rows[0][probed[i]], ids[probed[i]], k, hashindex.PAD_DISTANCE)
            if not (np.array_equal(result.distances[i:i + 1], expect_d) and np.array_equal(result.ids[i:i + 1], expect_i)):
                raise Finding(f"search k={k} differs from the oracle:\n{result}\nexpected {expect_d} {expect_i}")

    def _search_multi(self, pairs, k, threads) -> None:
        inp = self.inp
        names = list(self.fields)
        queries = {name: a for name, (_, a) in zip(names, pairs) if not inp.chance(1)}
        weights = None
        if inp.chance(4):
            weights = {name: inp.pick([0.0, 1.0, 0.5, 3.0, 2, -1.0, float("nan"), float("inf"), "1", True])
                       for name in names if inp.chance(6)}
        exclude = None
        if inp.chance(3):
            exclude = inp.pick([-1, 0, 1, 2, -2, np.zeros(len(pairs[0][0]) if pairs[0][0] is not None else 0, np.int64),
                                np.zeros(3, np.int64), 1.5])
        one = inp.pick([False, True, 1, None])
        passes, filtering = self.filter_value()
        ok, result = self.call(("queries", "k", "threads", "weights", "exclude_groups", "one_per_group", "allow", "deny"),
                               lambda: self.index.search(queries, k, weights=weights, exclude_groups=exclude,
                                                         one_per_group=one, threads=threads, **filtering))
        if not ok:
            return
        if passes is None:
            raise Finding(f"search accepted the filter {filtering!r}")
        k = as_int(k)
        w = {name: 1.0 for name in queries} if weights is None else {n: weights.get(n, 0.0) for n in names}
        for value in w.values():
            if isinstance(value, (bool, str)) or not np.isfinite(value) or value < 0:
                raise Finding(f"search accepted weight {value!r}")
        if not isinstance(one, bool):
            raise Finding(f"search accepted one_per_group={one!r}")
        rows_q = {name: pairs[names.index(name)][0] for name in queries}
        if any(r is None for name, r in rows_q.items() if w.get(name, 0) > 0):
            raise Finding("search accepted invalid queries")
        nq = next(len(r) for name, r in rows_q.items() if w.get(name, 0) > 0)
        ids, rows, groups = self.model.arrays()
        total = np.zeros((nq, len(ids)))
        for f, name in enumerate(names):
            if w.get(name, 0) > 0:
                total += w[name] * oracle.hamming_matrix(rows_q[name], rows[f])
        ex = np.full(nq, -1) if exclude is None else np.broadcast_to(np.asarray(exclude, np.int64), (nq,))
        for q in range(nq):
            keep = (np.ones(len(ids), bool) if ex[q] == -1 else groups != ex[q]) & passes(ids)
            order = [j for j in np.lexsort((ids, total[q])) if keep[j]]
            if one:
                seen, picked = set(), []
                for j in order:
                    g = groups[j]
                    if g == -1 or g not in seen:
                        picked.append(j)
                        seen.add(g)
                order = picked
            order = order[:k]
            expect_i = np.full(k, -1)
            expect_i[: len(order)] = ids[order]
            if not np.array_equal(result.ids[q], expect_i) or not np.allclose(
                    result.distances[q, : len(order)], total[q, order]):
                raise Finding(f"multi-field search differs from the oracle at query {q}: {result.ids[q]} vs {expect_i}")

    def range_search(self) -> None:
        inp = self.inp
        nq = inp.int(0, 5)
        q, queries = make_codes(inp, nq, self.code_sizes()[0], self.pool)
        radius = int_value(inp, 0, max(self.fields.values()) + 2)
        threads = threads_value(inp)
        if self.kind == "multi":
            if hasattr(self.index, "range_search"):
                raise Finding("MultiFieldIndex.range_search exists but the model has none")
            return
        nprobe = self.nprobe_value()
        passes, filtering = self.filter_value()
        ok, result = self.call(("queries", "radius", "threads", "nprobe", "allow", "deny"),
                               lambda: self.index.range_search(queries, radius, threads=threads, **self.probing(nprobe),
                                                               **filtering))
        valid = (q is not None and is_int(radius, 0, None) and (threads is None or is_int(threads, 1, None))
                 and (nprobe is None or is_int(nprobe, 1, None)) and passes is not None)
        self.judge("range_search", ok, valid, f"queries {type(queries).__name__}, radius={radius!r}, "
                                              f"threads={threads!r}, nprobe={nprobe!r}, {filtering!r}")
        if not ok:
            return
        radius = as_int(radius)
        ids, rows, _ = self.model.arrays()
        probed = self.probed(q, rows[0], nprobe) & passes(ids)
        for i in range(len(q)):
            lims, dist, out = oracle.range_search(q[i:i + 1], rows[0][probed[i]], ids[probed[i]], radius)
            lo, hi = result.lims[i], result.lims[i + 1]
            if not (hi - lo == lims[1] and np.array_equal(result.distances[lo:hi], dist) and np.array_equal(result.ids[lo:hi], out)):
                raise Finding(f"range_search radius={radius} differs from the oracle at query {i}")
        if len(result.lims) != len(q) + 1:
            raise Finding("range_search lims has the wrong length")

    def remove_or_get(self, remove: bool) -> None:
        inp = self.inp
        live = list(self.model.items)
        n = inp.int(0, 4)
        r = inp.int(0, 5)
        if r < 3 and live:
            ids = np.array([inp.pick(live) for _ in range(n)], dtype=np.int64)
            ids = np.unique(ids) if r < 2 else ids
        elif r == 3:
            ids = inp.pick([live[0] if live else 0, np.int32(0), -1, 2**64, 1.5, "0", None])
        elif r == 4:
            ids = np.array([min(self.model.next_id + 5, 2**63 - 1)], dtype=np.int64)
        else:
            ids = inp.pick([np.array([], np.int64), np.arange(4).reshape(2, 2), np.array([0.0]), np.array([-3])])
        fn = (lambda: self.index.remove(ids)) if remove else (lambda: self.index.get(ids))
        ok, result = self.call(("ids",), fn)
        if not ok:
            return
        as_list = [as_int(ids)] if not isinstance(ids, np.ndarray) else ids.tolist()
        if isinstance(ids, np.ndarray) and (ids.ndim != 1 or ids.dtype.kind not in "iu"):
            raise Finding(f"{'remove' if remove else 'get'} accepted ids {ids!r}")
        if any(i not in self.model.items for i in as_list) or len(set(as_list)) != len(as_list) and remove:
            raise Finding(f"{'remove' if remove else 'get'} accepted absent or repeated ids {as_list}")
        if remove:
            for i in as_list:
                del self.model.items[i]
        else:
            cs = self.code_sizes()[0]
            expect = np.array([np.frombuffer(self.model.items[i][0][0], np.uint8) for i in as_list], np.uint8)
            got = result[list(self.fields)[0]] if self.kind == "multi" else result
            if not np.array_equal(got, expect.reshape(len(as_list), cs)):
                raise Finding("get returned other codes than were added")
        self.check_state()

    def contains(self) -> None:
        value = self.inp.pick([0, 1, 2**63 - 1, -1, 2**64, 1.0, "0", None, True, np.int64(1)])
        expect = isinstance(value, (int, np.integer)) and not isinstance(value, bool) and int(value) in self.model.items
        if (value in self.index) != expect:
            raise Finding(f"{value!r} in index is {not expect}")

    def reset(self) -> None:
        self.index.reset()
        self.model = Model(self.fields)
        self.check_state()

    def round_trip(self) -> None:
        how = self.inp.int(0, 3)
        data = self.index.to_bytes()
        if how == 0:
            self.index = type(self.index).from_bytes(data)
        elif how == 1:
            self.index = pickle.loads(pickle.dumps(self.index))
        else:  # a damaged copy must be refused; the original stays in use
            damaged = bytearray(data)
            if how == 2:
                damaged[self.inp.int(0, len(damaged) - 1)] ^= 1 << self.inp.int(0, 7)
            else:
                damaged = damaged[: self.inp.int(0, len(damaged) - 1)]
            try:
                type(self.index).from_bytes(bytes(damaged))
            except hashindex.FormatError:
                pass
            else:
                raise Finding("a damaged index image loaded")
        self.check_state()

    def hamming(self) -> None:
        inp = self.inp
        cs = inp.int(0, 9)
        (_, xa), (_, ya) = make_codes(inp, inp.int(0, 4), cs, None), make_codes(inp, inp.int(0, 4), cs, None)
        threads = threads_value(inp)
        ok, result = self.call(("x", "y", "threads"), lambda: hashindex.hamming_distances(xa, ya, threads=threads))
        # Any two 2-D uint8 arrays of equal width are valid here (the widths need not match an index).
        arrays = all(isinstance(a, np.ndarray) and a.dtype == np.uint8 and a.ndim == 2 for a in (xa, ya))
        valid = arrays and xa.shape[1] == ya.shape[1] and (threads is None or is_int(threads, 1, None))
        self.judge("hamming_distances", ok, valid, f"{xa!r}, {ya!r}, threads={threads!r}")
        if not ok:
            return
        if not np.array_equal(result, oracle.hamming_matrix(np.array(xa), np.array(ya))):
            raise Finding("hamming_distances differs from the oracle")


def one_input(data: bytes) -> None:
    _ensure_imported()
    inp = Input(data)
    session = Session(inp)
    calls = [session.add, session.add, session.search, session.range_search, lambda: session.remove_or_get(True),
             lambda: session.remove_or_get(False), session.contains, session.reset, session.round_trip,
             session.hamming, session.add]
    for _ in range(inp.int(1, 12)):
        inp.pick(calls)()


def main() -> None:
    import atheris

    with atheris.instrument_imports():
        global hashindex
        import hashindex as module

        hashindex = module
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
