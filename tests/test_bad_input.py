"""Every bad argument raises TypeError/ValueError naming it; nothing crashes or truncates."""
import numpy as np
import pytest

import hashindex


@pytest.fixture
def index():
    idx = hashindex.FlatIndex(64)
    idx.add(np.zeros((4, 8), np.uint8))
    return idx


@pytest.mark.parametrize("nbits, exc", [(0, ValueError), (-8, ValueError), (12, ValueError), (8.0, TypeError),
                                        (2**40, ValueError),
                                        ("64", TypeError), (True, TypeError), (None, TypeError)])
def test_bad_nbits(nbits, exc):
    with pytest.raises(exc, match="nbits"):
        hashindex.FlatIndex(nbits)


@pytest.mark.parametrize(
    "codes, exc, match",
    [
        ([[0] * 8], TypeError, "codes: expected a numpy.ndarray"),
        (np.zeros((2, 8), np.float32), TypeError, "codes: expected dtype uint8"),
        (np.zeros((2, 8), np.int64), TypeError, "dtype uint8"),
        (np.zeros((2, 8), bool), TypeError, "dtype uint8"),
        (np.zeros((2, 7), np.uint8), ValueError, "expected 8 bytes per code"),
        (np.zeros((2, 9), np.uint8), ValueError, "expected 8 bytes per code"),
        (np.zeros((2, 2, 8), np.uint8), ValueError, "1-D or 2-D"),
        (np.zeros(16, np.uint8), ValueError, "8 bytes per code"),
    ],
)
def test_bad_codes(index, codes, exc, match):
    with pytest.raises(exc, match=match):
        index.add(codes)
    assert len(index) == 4
    with pytest.raises(exc, match=match.replace("codes", "queries")):
        index.search(codes, 1)


@pytest.mark.parametrize(
    "ids, exc, match",
    [
        ([0.0, 1.0], TypeError, "ids: expected integers"),
        ("01", TypeError, "ids: expected an int, a list of ints or a numpy.ndarray"),
        (np.array([0.0, 1.0]), TypeError, "integer dtype"),
        (np.array([5]), ValueError, "expected 2 ids"),
        (np.array([[5, 6]]), ValueError, "1-D"),
        (np.array([-1, 6]), ValueError, ">= 0"),
        (np.array([2**63, 1], np.uint64), ValueError, "int64"),
        (np.array([0, 9]), ValueError, "already in the index"),
    ],
)
def test_bad_ids(index, ids, exc, match):
    with pytest.raises(exc, match=match):
        index.add(np.ones((2, 8), np.uint8), ids)
    assert len(index) == 4


@pytest.mark.parametrize("k, exc", [(0, ValueError), (-3, ValueError), (1.5, TypeError), ("3", TypeError),
                                    (True, TypeError), (None, TypeError)])
def test_bad_k(index, k, exc):
    with pytest.raises(exc, match="k"):
        index.search(np.zeros((1, 8), np.uint8), k)


@pytest.mark.parametrize("radius, exc", [(-1, ValueError), (2.0, TypeError), (None, TypeError)])
def test_bad_radius(index, radius, exc):
    with pytest.raises(exc, match="radius"):
        index.range_search(np.zeros((1, 8), np.uint8), radius)


@pytest.mark.parametrize("threads, exc", [(0, ValueError), (-1, ValueError), (1.0, TypeError)])
def test_bad_threads(index, threads, exc):
    with pytest.raises(exc, match="threads"):
        index.search(np.zeros((1, 8), np.uint8), 1, threads=threads)


def test_absurd_thread_counts_are_capped(index):
    d, _ = index.search(np.zeros((3, 8), np.uint8), 2, threads=10**6)
    assert d.shape == (3, 2)


def test_accepts_numpy_integer_scalars(index):
    d, i = index.search(np.zeros((1, 8), np.uint8), np.int64(2), threads=np.int32(1))
    assert d.shape == (1, 2)


def test_huge_k_is_padded_not_truncated(index):
    d, i = index.search(np.zeros((1, 8), np.uint8), 1000)
    assert d.shape == (1, 1000) and (i[0, 4:] == -1).all() and (i[0, :4] >= 0).all()


def test_hamming_distances_bad_input():
    with pytest.raises(ValueError, match="same bytes per code"):
        hashindex.hamming_distances(np.zeros((1, 2), np.uint8), np.zeros((1, 3), np.uint8))
    with pytest.raises(TypeError, match="x"):
        hashindex.hamming_distances(np.zeros((1, 2), np.int32), np.zeros((1, 2), np.uint8))
    with pytest.raises(ValueError, match="2-D"):
        hashindex.hamming_distances(np.zeros(2, np.uint8), np.zeros((1, 2), np.uint8))


def test_integers_beyond_int64_are_named_errors_not_overflow(index):
    # Found by fuzz/fuzz_api.py: a Python int past int64 reached numpy or pybind11 unchecked
    # (OverflowError, or pybind11's "incompatible function arguments").
    assert 2**64 not in index and -1 not in index and 3 in index
    for call in (index.remove, index.get, index.reconstruct):
        with pytest.raises(ValueError, match="ids?: expected an integer <="):
            call(2**64)
    d, _ = index.search(np.zeros((2, 8), np.uint8), 2, threads=2**70)  # capped like any absurd count
    assert d.shape == (2, 2)
    multi = hashindex.MultiFieldIndex({"a": 64})
    multi.add({"a": np.zeros((2, 8), np.uint8)}, groups=np.array([0, 1]))
    with pytest.raises(ValueError, match="exclude_groups"):
        multi.search({"a": np.zeros((1, 8), np.uint8)}, 1, exclude_groups=2**64)


def test_ivf_integers_beyond_the_core_s_are_named_errors_or_no_limit():
    # iterations, seed and max_codes reached pybind11 unchecked past the core's types ("incompatible
    # function arguments" and the whole signature).
    rng = np.random.default_rng(0)
    xb = rng.integers(0, 256, (40, 8), dtype=np.uint8)
    ivf = hashindex.IVFIndex(64, 4)
    for name, value in (("iterations", 2**31), ("seed", 2**64)):
        with pytest.raises(ValueError, match=f"{name}: expected an integer <="):
            ivf.train(xb, **{name: value})
    with pytest.raises(ValueError, match=r"^codes: training needs at least nlist = 4 codes, got 3$"):
        ivf.train(xb[:3])  # the core's own check: its message, without the C++ condition it tested
    ivf.train(xb, iterations=2**31 - 1, seed=2**64 - 1)  # the largest the core takes; converges well before
    ivf.add(xb)
    want = ivf.search(xb[:3], 5, nprobe=2)
    for budget in (2**63 - 1, 2**63, 2**70):  # past any index's codes: no limit, as None
        got = ivf.search(xb[:3], 5, nprobe=2, max_codes=budget)
        np.testing.assert_array_equal(got.ids, want.ids)
        assert len(ivf.range_search(xb[:3], 64, nprobe=2, max_codes=budget).ids) == \
            len(ivf.range_search(xb[:3], 64, nprobe=2).ids)


LARGEST_ID = 2**63 - 2


@pytest.mark.parametrize("kind", ["flat", "mih", "multi"])
def test_ids_near_the_int64_limit(kind):
    if kind == "multi":
        index = hashindex.MultiFieldIndex({"a": 64})
        add = lambda codes, ids=None: index.add({"a": codes}, ids)  # noqa: E731
    else:
        index = hashindex.FlatIndex(64) if kind == "flat" else hashindex.MIHIndex(64)
        add = index.add
    codes = np.arange(24, dtype=np.uint8).reshape(3, 8)
    with pytest.raises(ValueError, match="ids must be between 0 and 2\\^63 - 2"):
        add(codes[:1], np.array([2**63 - 1]))
    add(codes[:2], np.array([LARGEST_ID - 1, LARGEST_ID]))
    with pytest.raises(ValueError, match="ids: 1 default ids from 9223372036854775807 would pass the largest id"):
        add(codes[2:])  # the next default id would be 2^63 - 1: refused, not wrapped to a negative id
    assert len(index) == 2
    add(codes[2:], np.array([7]))
    again = type(index).from_bytes(index.to_bytes())
    for ix in (index, again):
        assert sorted(ix.ids()) == [7, LARGEST_ID - 1, LARGEST_ID]
        got = ix.get(np.array([LARGEST_ID]))
        np.testing.assert_array_equal(got["a"] if kind == "multi" else got, codes[1:2])
    fresh = hashindex.FlatIndex(64)
    fresh.add(codes[:2], np.array([LARGEST_ID - 2, LARGEST_ID - 1]))
    fresh.add(codes[2:])  # the last default id there is
    assert sorted(fresh.ids())[-1] == LARGEST_ID


def test_mih_capacity_is_refused_before_anything_is_copied():
    index = hashindex.MIHIndex(64)
    index.add(np.zeros((3, 8), np.uint8))
    too_many = np.broadcast_to(np.zeros(8, np.uint8), (2**32 - 3, 8))  # a view: no memory behind it
    with pytest.raises(ValueError, match="codes: a MIHIndex holds at most 4294967295 codes; it has 3"):
        index.add(too_many)
    assert len(index) == 3
