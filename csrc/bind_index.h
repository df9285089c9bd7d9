// What bindings.cpp binds every index kind with: array types, the GIL released around loops and
// polled for Ctrl-C, result arrays, and the content, persistence and search surface each kind
// shares (bind_storage, bind_common). Included by bindings.cpp alone.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <chrono>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "errors.h"
#include "flat_index.h"
#include "format.h"
#include "id_filter.h"
#include "interrupt.h"
#include "ivf_index.h"
#include "mih_index.h"

namespace hashindex::binding {

namespace py = pybind11;

using Codes = py::array_t<uint8_t, py::array::c_style>;
using Ids = py::array_t<int64_t, py::array::c_style>;

// allow / deny arrays as the core's filter; the arrays outlive the search (they are its arguments).
inline IdFilter make_filter(const std::optional<Ids>& allow, const std::optional<Ids>& deny) {
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

inline void check_rows(const Codes& a, int code_size, const char* name) {
    if (a.ndim() != 2 || a.shape(1) != code_size)
        throw std::invalid_argument(std::string(name) + ": expected shape (n, " + std::to_string(code_size) + ")");
}

template <class T>
py::array_t<T> to_numpy(std::vector<T>&& v) {
    auto* heap = new std::vector<T>(std::move(v));
    py::capsule owner(heap, [](void* p) { delete static_cast<std::vector<T>*>(p); });
    return py::array_t<T>({static_cast<py::ssize_t>(heap->size())}, {sizeof(T)}, heap->data(), owner);
}

inline py::bytes to_pybytes(const std::vector<uint8_t>& b) {
    return py::bytes(reinterpret_cast<const char*>(b.data()), b.size());
}

// What a probing search did, as a tuple in the order of the fields the Python class names
// (_ProbingIndex._stats_fields): a dict, which a search would make and few callers read, was a large
// share of a single query's call (CHANGELOG.md, "Binary IVF").
inline py::tuple stats_tuple(const MihStats& st) {
    return py::make_tuple(st.queries, st.by_mih, st.by_scan, st.candidates, st.hits, st.buckets, st.max_radius, st.tail,
                          st.probe_scale, st.scan_ns_per_word);
}

// What an IVF search probes beyond nprobe: lists chosen by the caller, nprobe a query (a (nq, nprobe)
// array, row-major; the array outlives the search), and max_codes.
inline IvfProbe ivf_probe(const Codes& queries, int nprobe, const std::optional<Ids>& lists, int64_t max_codes) {
    if (lists && lists->size() != queries.shape(0) * static_cast<py::ssize_t>(nprobe))
        throw std::invalid_argument("lists: expected nprobe = " + std::to_string(nprobe) + " lists per query, " +
                                    std::to_string(queries.shape(0) * nprobe) + " in all, got " + std::to_string(lists->size()));
    return IvfProbe{lists ? lists->data() : nullptr, max_codes};
}

inline py::tuple stats_tuple(const IvfStats& st) {
    return py::make_tuple(st.queries, st.lists_probed, st.codes_compared, st.lists_skipped, st.codes_skipped);
}

// Python runs signal handlers on its main thread only, between bytecodes; a
// search on that thread polls them itself so that Ctrl-C stops it. Polling
// takes the GIL, so it waits until the search has run this long, then repeats
// at this interval: a search shorter than that never polls.
constexpr std::chrono::milliseconds kSignalPoll{50};
inline unsigned long g_main_thread = 0;

inline bool poll_signals() {
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

inline py::tuple range_arrays(RangeResult&& r) {
    return py::make_tuple(to_numpy(std::move(r.lims)), to_numpy(std::move(r.distances)), to_numpy(std::move(r.ids)));
}

// An index over a mapped file: kinds that can search it in place keep it mapped; MIH builds its
// tables from it in memory (it copies).
template <class Index>
Index from_mapped(const std::shared_ptr<const MappedFile>& file, const std::string& source, bool verify) {
    return Index::from_image(file->data, file->size, source, file, verify);
}
template <>
inline MIHIndex from_mapped<MIHIndex>(const std::shared_ptr<const MappedFile>& file, const std::string& source, bool) {
    return MIHIndex::from_bytes(file->data, file->size, source);
}

// Content and persistence, shared by every index kind (single- or multi-field).
template <class Index>
void bind_storage(py::class_<Index>& c) {
    c.def("__len__", &Index::size)
        .def_property_readonly("memory_bytes", &Index::memory_bytes)
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

// Single-field content by rows: add, get, the id counter, the code length (every kind but the
// multi-field one).
template <class Index>
void bind_rows(py::class_<Index>& c) {
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
             if constexpr (kProbes<Index>) return py::make_tuple(r[0], r[1], stats_tuple(st));
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
                if constexpr (kProbes<Index>) return py::make_tuple(t[0], t[1], t[2], stats_tuple(st));
                else return t;
            },
            py::arg("queries"), py::arg("radius"), py::arg("threads") = 0, py::arg("allow") = py::none(),
            py::arg("deny") = py::none());
    bind_rows(c);
}

}  // namespace hashindex::binding
