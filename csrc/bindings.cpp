// pybind11 module hashindex._core. Argument checking that needs Python types
// (dtype, shape, contiguity) lives in the Python layer (hashindex/_validate.py);
// here arrays arrive as C-contiguous buffers and the GIL is released around
// every loop over codes.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <atomic>
#include <chrono>
#include <numeric>
#include <optional>
#include <type_traits>

#include "dispatch.h"
#include "errors.h"
#include "flat_index.h"
#include "mih_index.h"
#include "multi_field_index.h"
#include "format.h"
#include "interrupt.h"
#include "parallel.h"
#include "roofline.h"
#include "scan.h"

namespace py = pybind11;
using namespace hashindex;

namespace {

using Codes = py::array_t<uint8_t, py::array::c_style>;
using Ids = py::array_t<int64_t, py::array::c_style>;

// allow / deny arrays as the core's filter; the arrays outlive the search (they are its arguments).
IdFilter make_filter(const std::optional<Ids>& allow, const std::optional<Ids>& deny) {
    static const int64_t none = 0;  // an empty list is still a filter: allow=[] returns nothing
    if (allow && deny) throw std::invalid_argument("allow, deny: give one of them, not both");
    IdFilter f;
    const std::optional<Ids>& list = allow ? allow : deny;
    if (list) {
        f.ids = list->size() ? list->data() : &none;
        f.n = list->size();
        f.allow = static_cast<bool>(allow);
    }
    return f;
}

void check_rows(const Codes& a, int code_size, const char* name) {
    if (a.ndim() != 2 || a.shape(1) != code_size)
        throw std::invalid_argument(std::string(name) + ": expected shape (n, " + std::to_string(code_size) + ")");
}

template <class T>
py::array_t<T> to_numpy(std::vector<T>&& v) {
    auto* heap = new std::vector<T>(std::move(v));
    py::capsule owner(heap, [](void* p) { delete static_cast<std::vector<T>*>(p); });
    return py::array_t<T>({static_cast<py::ssize_t>(heap->size())}, {sizeof(T)}, heap->data(), owner);
}

py::bytes to_pybytes(const std::vector<uint8_t>& b) {
    return py::bytes(reinterpret_cast<const char*>(b.data()), b.size());
}

py::dict stats_dict(const MihStats& st) {
    py::dict d;
    d["queries"] = st.queries;
    d["by_mih"] = st.by_mih;
    d["by_scan"] = st.by_scan;
    d["candidates"] = st.candidates;
    d["hits"] = st.hits;
    d["buckets"] = st.buckets;
    d["max_radius"] = st.max_radius;
    d["tail"] = st.tail;
    d["probe_scale"] = st.probe_scale;
    d["scan_ns_per_word"] = st.scan_ns_per_word;
    return d;
}

// Python runs signal handlers on its main thread only, between bytecodes; a
// search on that thread polls them itself so that Ctrl-C stops it. Polling
// takes the GIL, so it waits until the search has run this long, then repeats
// at this interval: a search shorter than that never polls.
constexpr std::chrono::milliseconds kSignalPoll{50};
unsigned long g_main_thread = 0;

bool poll_signals() {
    py::gil_scoped_acquire gil;
    return PyErr_CheckSignals() != 0;
}

// Runs fn() without the GIL; on the main thread a signal handler that raises
// (KeyboardInterrupt for Ctrl-C) stops it, and its exception propagates.
template <class Fn>
void run_interruptible(Fn&& fn) {
    std::optional<Interrupt> interrupt;
    if (PyThread_get_thread_ident() == g_main_thread) interrupt.emplace(poll_signals, kSignalPoll);
    std::exception_ptr error;
    {
        py::gil_scoped_release nogil;
        try {
            fn();
        } catch (...) {
            error = std::current_exception();
        }
    }
    if (interrupt && interrupt->fired()) throw py::error_already_set();  // the handler's exception
    if (error) std::rethrow_exception(error);
}

// Runs fn(out_distances, out_ids) without the GIL into fresh (nq, k) arrays.
template <class Index, class Run>
py::tuple knn_arrays(const Index& index, const Codes& queries, int64_t k, Run run) {
    check_rows(queries, index.code_size(), "queries");
    const int64_t nq = queries.shape(0);
    py::array_t<int32_t> distances({nq, k});
    py::array_t<int64_t> ids({nq, k});
    int32_t* d = distances.mutable_data();
    int64_t* i = ids.mutable_data();
    run_interruptible([&] { run(queries.data(), nq, d, i); });
    return py::make_tuple(distances, ids);
}

py::tuple range_arrays(RangeResult&& r) {
    return py::make_tuple(to_numpy(std::move(r.lims)), to_numpy(std::move(r.distances)), to_numpy(std::move(r.ids)));
}

// An index over a mapped file: kinds that can search it in place keep it mapped; MIH builds its
// tables from it in memory (it copies).
template <class Index>
Index from_mapped(const std::shared_ptr<const MappedFile>& file, const std::string& source, bool verify) {
    return Index::from_image(file->data, file->size, source, file, verify);
}
template <>
MIHIndex from_mapped<MIHIndex>(const std::shared_ptr<const MappedFile>& file, const std::string& source, bool) {
    return MIHIndex::from_bytes(file->data, file->size, source);
}

// Content and persistence, shared by every index kind (single- or multi-field).
template <class Index>
void bind_storage(py::class_<Index>& c) {
    c.def("__len__", &Index::size)
        .def("remove",
             [](Index& self, const Ids& ids) {
                 py::gil_scoped_release nogil;
                 self.remove(ids.data(), ids.size());
             },
             py::arg("ids"))
        .def("ids", [](const Index& self) { return to_numpy(self.ids()); })
        .def_property_readonly("next_id", &Index::next_id)
        .def("__contains__", &Index::contains, py::arg("id"))
        .def("reset", &Index::reset)
        .def("to_bytes",
             [](const Index& self) {
                 std::vector<uint8_t> b;
                 {
                     py::gil_scoped_release nogil;
                     b = self.to_bytes();
                 }
                 return to_pybytes(b);
             })
        .def("write",
             [](const Index& self, const std::string& path) {
                 py::gil_scoped_release nogil;
                 write_file_atomic(path, self.to_bytes());
             },
             py::arg("path"))
        .def_static(
            "from_bytes",
            [](const py::bytes& data, const std::string& source) {
                const std::string_view v = data;
                return Index::from_bytes(reinterpret_cast<const uint8_t*>(v.data()), v.size(), source);
            },
            py::arg("data"), py::arg("source") = "<bytes>")
        .def_static(
            "from_mapping",
            [](const std::shared_ptr<MappedFile>& file, const std::string& source, bool verify) {
                py::gil_scoped_release nogil;
                return from_mapped<Index>(file, source, verify);
            },
            py::arg("file"), py::arg("source"), py::arg("verify"));
}

// Probing kinds report what each search did (MihStats) as a third (fourth) result.
template <class Index>
constexpr bool kProbes = std::is_same_v<Index, MIHIndex>;

// The surface every single-field index kind adds, bound once.
template <class Index>
void bind_common(py::class_<Index>& c) {
    bind_storage(c);
    c.def(
         "search",
         [](const Index& self, const Codes& q, int64_t k, int threads, std::optional<Ids> allow,
            std::optional<Ids> deny) {
             const IdFilter filter = make_filter(allow, deny);
             MihStats st;
             py::tuple r = knn_arrays(self, q, k, [&](const uint8_t* qs, int64_t nq, int32_t* d, int64_t* i) {
                 if constexpr (kProbes<Index>) self.search(qs, nq, k, threads, d, i, &st, filter);
                 else self.search(qs, nq, k, threads, d, i, filter);
             });
             if constexpr (kProbes<Index>) return py::make_tuple(r[0], r[1], stats_dict(st));
             else return r;
         },
         py::arg("queries"), py::arg("k"), py::arg("threads") = 0, py::arg("allow") = py::none(),
         py::arg("deny") = py::none())
        .def(
            "range_search",
            [](const Index& self, const Codes& q, int32_t radius, int threads, std::optional<Ids> allow,
               std::optional<Ids> deny) {
                check_rows(q, self.code_size(), "queries");
                const IdFilter filter = make_filter(allow, deny);
                RangeResult r;
                MihStats st;
                run_interruptible([&] {
                    if constexpr (kProbes<Index>) r = self.range_search(q.data(), q.shape(0), radius, threads, &st, filter);
                    else r = self.range_search(q.data(), q.shape(0), radius, threads, filter);
                });
                py::tuple t = range_arrays(std::move(r));
                if constexpr (kProbes<Index>) return py::make_tuple(t[0], t[1], t[2], stats_dict(st));
                else return t;
            },
            py::arg("queries"), py::arg("radius"), py::arg("threads") = 0, py::arg("allow") = py::none(),
            py::arg("deny") = py::none());
    c.def("restore_next_id", &Index::restore_next_id, py::arg("next_id"))
        .def_property_readonly("nbits", &Index::nbits)
        .def_property_readonly("code_size", &Index::code_size)
        .def("add",
             [](Index& self, const Codes& codes, std::optional<Ids> ids) {
                 check_rows(codes, self.code_size(), "codes");
                 if (ids && ids->size() != codes.shape(0)) throw std::invalid_argument("ids: expected one id per code");
                 py::gil_scoped_release nogil;
                 self.add(codes.data(), codes.shape(0), ids ? ids->data() : nullptr);
             },
             py::arg("codes"), py::arg("ids") = py::none())
        .def("get",
             [](const Index& self, const Ids& ids) {
                 Codes out({static_cast<py::ssize_t>(ids.size()), static_cast<py::ssize_t>(self.code_size())});
                 uint8_t* dst = out.mutable_data();
                 py::gil_scoped_release nogil;
                 self.get(ids.data(), ids.size(), dst);
                 return out;
             },
             py::arg("ids"));
}

// Full distance matrix through the same kernels as search (radius = nbits keeps every pair).
py::array_t<int32_t> hamming_distances(const Codes& x, const Codes& y, int threads) {
    if (x.ndim() != 2 || y.ndim() != 2 || x.shape(1) != y.shape(1))
        throw std::invalid_argument("x and y: expected 2-D arrays with the same number of bytes per row");
    const int code_size = static_cast<int>(x.shape(1));
    const int64_t nx = x.shape(0), ny = y.shape(0);
    py::array_t<int32_t> out({nx, ny});
    if (code_size == 0) {
        std::fill(out.mutable_data(), out.mutable_data() + nx * ny, 0);
        return out;
    }
    int32_t* dst = out.mutable_data();
    run_interruptible([&] {
        CodeStore store(code_size);
        store.append(y.data(), ny);
        const std::vector<uint64_t> qwords = rows_to_words(x.data(), nx, code_size);
        scan_store<RangeSink>(
            store, qwords.data(), nx, threads,
            [&](int64_t) { return RangeSink(8 * code_size, ny, nullptr); },  // slots index y directly
            [&](int64_t q, RangeSink& sink) {
                for (const SlotHit& h : sink.hits) dst[q * ny + h.slot] = h.distance;
            });
    });
    return out;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
    m.doc() = "hashindex compiled core (private; use the hashindex package)";
    g_main_thread = py::module_::import("threading").attr("main_thread")().attr("ident").cast<unsigned long>();

    static py::exception<FormatError> format_error(m, "FormatError", PyExc_ValueError);
    py::register_exception_translator([](std::exception_ptr p) {
        try {
            if (p) std::rethrow_exception(p);
        } catch (const MissingIdError& e) {
            PyErr_SetString(PyExc_KeyError, e.what());
        } catch (const FormatError& e) {
            py::set_error(format_error, e.what());
        } catch (const IoError& e) {
            // OSError(errno, message, filename): Python picks the subclass (FileNotFoundError, ...).
            py::tuple args = py::make_tuple(e.error, std::string(e.what()), e.path);
            PyErr_SetObject(PyExc_OSError, args.ptr());
        }
    });

    m.def("simd_level", [] { return std::string(active_kernels().name); });
    m.def("popcount_peak", [](int threads, double seconds, int repeats) {
        py::gil_scoped_release nogil;
        return popcount_peak(threads, seconds, repeats);
    }, py::arg("threads") = 1, py::arg("seconds") = 0.05, py::arg("repeats") = 5);
    m.def("supported_simd_levels", &supported_level_names);
    m.def("set_simd_level", &set_level, py::arg("name"));
    m.def("available_threads", &available_threads);
    m.def("hamming_distances", &hamming_distances, py::arg("x"), py::arg("y"), py::arg("threads") = 0);
    m.def("read_bandwidth", [](int64_t nbytes, int threads, int repeats) {
        py::gil_scoped_release nogil;
        return read_bandwidth(nbytes, threads, repeats);
    }, py::arg("nbytes"), py::arg("threads") = 0, py::arg("repeats") = 21);
    m.def("set_mih_budget_scale", &set_mih_budget_scale, py::arg("scale"));
    m.attr("PAD_DISTANCE") = kPadDistance;
    m.attr("FORMAT_VERSION") = kFormatVersion;

    m.def("peek_kind", [](const py::bytes& data, const std::string& source) {
        const std::string_view v = data;
        return std::string(kind_name(peek_kind(reinterpret_cast<const uint8_t*>(v.data()), v.size(), source)));
    }, py::arg("data"), py::arg("source"));
    py::class_<MappedFile, std::shared_ptr<MappedFile>>(m, "MappedFile")
        .def_property_readonly("size", [](const MappedFile& f) { return f.size; })
        .def("kind", [](const MappedFile& f, const std::string& source) {
            return std::string(kind_name(peek_kind(f.data, f.size, source, false)));
        }, py::arg("source"));
    m.def("map_file", [](const std::string& path) {
        py::gil_scoped_release nogil;
        return std::const_pointer_cast<MappedFile>(map_file(path));
    }, py::arg("path"));
    m.def("read_file", [](const std::string& path) {
        std::vector<uint8_t> bytes;
        {
            py::gil_scoped_release nogil;
            bytes = read_file(path);
        }
        return to_pybytes(bytes);
    }, py::arg("path"));

    py::class_<FlatIndex> flat(m, "FlatIndex");
    flat.def(py::init<int>(), py::arg("nbits"));
    bind_common(flat);
    flat.def_property_readonly("memory_bytes", &FlatIndex::memory_bytes);

    py::class_<MIHIndex> mih(m, "MIHIndex");
    mih.def(py::init<int, int>(), py::arg("nbits"), py::arg("m") = 0)
        .def_property_readonly("m", &MIHIndex::m)
        .def_property_readonly("m_requested", &MIHIndex::m_requested);
    bind_common(mih);

    py::class_<MultiFieldIndex> multi(m, "MultiFieldIndex");
    multi.def(py::init<std::vector<std::string>, std::vector<int>, bool>(), py::arg("names"), py::arg("nbits"),
              py::arg("mih") = false)
        .def_property_readonly("memory_bytes", &MultiFieldIndex::memory_bytes)
        .def_property_readonly("mih", &MultiFieldIndex::mih)
        .def_property_readonly("names", &MultiFieldIndex::names)
        .def_property_readonly("nbits", &MultiFieldIndex::nbits)
        .def(
            "add",
            [](MultiFieldIndex& self, const std::vector<Codes>& fields, std::optional<Ids> ids,
               std::optional<Ids> groups) {
                if (static_cast<int>(fields.size()) != self.nfields())
                    throw std::invalid_argument("codes: expected one array per field");
                const int64_t n = fields.empty() ? 0 : fields[0].shape(0);
                std::vector<const uint8_t*> rows;
                for (int f = 0; f < self.nfields(); ++f) {
                    check_rows(fields[static_cast<std::size_t>(f)], self.code_size(f), "codes");
                    if (fields[static_cast<std::size_t>(f)].shape(0) != n)
                        throw std::invalid_argument("codes: every field needs the same number of rows");
                    rows.push_back(fields[static_cast<std::size_t>(f)].data());
                }
                if (ids && ids->size() != n) throw std::invalid_argument("ids: expected one id per item");
                if (groups && groups->size() != n) throw std::invalid_argument("groups: expected one group per item");
                py::gil_scoped_release nogil;
                self.add(rows, n, ids ? ids->data() : nullptr, groups ? groups->data() : nullptr);
            },
            py::arg("codes"), py::arg("ids") = py::none(), py::arg("groups") = py::none())
        .def(
            "search",
            [](const MultiFieldIndex& self, const std::vector<std::optional<Codes>>& queries,
               const std::vector<double>& weights, int64_t nq, int64_t k, std::optional<Ids> exclude,
               bool one_per_group, int threads, std::optional<Ids> allow, std::optional<Ids> deny) {
                const IdFilter filter = make_filter(allow, deny);
                if (static_cast<int>(queries.size()) != self.nfields() || weights.size() != queries.size())
                    throw std::invalid_argument("queries and weights: expected one entry per field");
                std::vector<FieldQuery> fq(queries.size());
                for (std::size_t f = 0; f < queries.size(); ++f) {
                    fq[f].weight = weights[f];
                    if (queries[f]) {
                        check_rows(*queries[f], self.code_size(static_cast<int>(f)), "queries");
                        if (queries[f]->shape(0) != nq) throw std::invalid_argument("queries: rows differ between fields");
                        fq[f].rows = queries[f]->data();
                    }
                }
                if (exclude && exclude->size() != nq) throw std::invalid_argument("exclude_groups: expected one per query");
                py::array_t<double> distances({nq, k});
                py::array_t<int64_t> ids({nq, k});
                double* d = distances.mutable_data();
                int64_t* i = ids.mutable_data();
                MihStats st;
                run_interruptible([&] {
                    self.search(fq, nq, k, exclude ? exclude->data() : nullptr, one_per_group, threads, d, i, filter, &st);
                });
                return py::make_tuple(distances, ids, stats_dict(st));
            },
            py::arg("queries"), py::arg("weights"), py::arg("nq"), py::arg("k"), py::arg("exclude_groups"),
            py::arg("one_per_group"), py::arg("threads") = 0, py::arg("allow") = py::none(), py::arg("deny") = py::none())
        .def(
            "get",
            [](const MultiFieldIndex& self, int field, const Ids& ids) {
                if (field < 0 || field >= self.nfields()) throw std::invalid_argument("field out of range");
                Codes out({static_cast<py::ssize_t>(ids.size()), static_cast<py::ssize_t>(self.code_size(field))});
                uint8_t* dst = out.mutable_data();
                py::gil_scoped_release nogil;
                self.get(field, ids.data(), ids.size(), dst);
                return out;
            },
            py::arg("field"), py::arg("ids"))
        .def(
            "groups",
            [](const MultiFieldIndex& self, const Ids& ids) {
                Ids out({static_cast<py::ssize_t>(ids.size())});
                int64_t* dst = out.mutable_data();
                py::gil_scoped_release nogil;
                self.get_groups(ids.data(), ids.size(), dst);
                return out;
            },
            py::arg("ids"));
    bind_storage(multi);
}
