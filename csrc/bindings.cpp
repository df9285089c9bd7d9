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
#include "ivf_index.h"
#include "mih_index.h"
#include "multi_field_index.h"
#include "format.h"
#include "interrupt.h"
#include "parallel.h"
#include "bind_index.h"
#include "roofline.h"
#include "scan.h"

namespace py = pybind11;
using namespace hashindex;
using namespace hashindex::binding;

namespace {

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
        scan_store<RowSink>(store, qwords.data(), nx, threads,
                            [&](int64_t q) { return RowSink(8 * code_size, dst + q * ny, ny); },  // slots index y
                            [](int64_t, RowSink&) {});
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

    py::class_<MIHIndex> mih(m, "MIHIndex");
    mih.def(py::init<int, int>(), py::arg("nbits"), py::arg("m") = 0)
        .def_property_readonly("m", &MIHIndex::m)
        .def_property_readonly("m_requested", &MIHIndex::m_requested);
    bind_common(mih);

    py::class_<IVFIndex> ivf(m, "IVFIndex");
    ivf.def(py::init<int, int>(), py::arg("nbits"), py::arg("nlist"))
        .def_property_readonly("nlist", &IVFIndex::nlist)
        .def_property("nprobe", &IVFIndex::nprobe, &IVFIndex::set_nprobe)
        .def_property_readonly("trained", &IVFIndex::trained)
        .def("train",
             [](IVFIndex& self, const Codes& codes, int iterations, uint64_t seed) {
                 check_rows(codes, self.code_size(), "codes");
                 run_interruptible([&] { self.train(codes.data(), codes.shape(0), iterations, seed); });
             },
             py::arg("codes"), py::arg("iterations") = 10, py::arg("seed") = 0)
        .def("centroids",
             [](const IVFIndex& self) {
                 std::vector<uint8_t> rows = self.centroids();
                 return to_numpy(std::move(rows)).reshape({static_cast<py::ssize_t>(self.nlist()),
                                                          static_cast<py::ssize_t>(self.code_size())});
             })
        .def("set_centroids",
             [](IVFIndex& self, const Codes& rows) {
                 check_rows(rows, self.code_size(), "centroids");
                 if (rows.shape(0) != self.nlist()) throw std::invalid_argument("centroids: expected nlist rows");
                 self.set_centroids(rows.data());
             },
             py::arg("centroids"))
        .def("assign",
             [](const IVFIndex& self, const Codes& codes) {
                 check_rows(codes, self.code_size(), "codes");
                 std::vector<int64_t> lists;
                 run_interruptible([&] { lists = self.assign(codes.data(), codes.shape(0)); });
                 return to_numpy(std::move(lists));
             },
             py::arg("codes"))
        .def("list_sizes", [](const IVFIndex& self) { return to_numpy(self.list_sizes()); })
        .def("add_to_lists",
             [](IVFIndex& self, const Codes& codes, std::optional<Ids> ids, const Ids& lists) {
                 check_rows(codes, self.code_size(), "codes");
                 if (ids && ids->size() != codes.shape(0)) throw std::invalid_argument("ids: expected one id per code");
                 if (lists.size() != codes.shape(0)) throw std::invalid_argument("lists: expected one list per code");
                 py::gil_scoped_release nogil;
                 self.add(codes.data(), codes.shape(0), ids ? ids->data() : nullptr, lists.data());
             },
             py::arg("codes"), py::arg("ids"), py::arg("lists"))
        .def(
            "search",
            [](const IVFIndex& self, const Codes& q, int64_t k, int nprobe, int threads, std::optional<Ids> allow,
               std::optional<Ids> deny, std::optional<Ids> lists, int64_t max_codes) {
                const IvfProbe probe = ivf_probe(q, nprobe, lists, max_codes);
                const IdFilter filter = make_filter(allow, deny);
                IvfStats st;
                py::tuple r = knn_arrays(self, q, k, [&](const uint8_t* qs, int64_t nq, int32_t* d, int64_t* i) {
                    self.search(qs, nq, k, nprobe, threads, d, i, &st, filter, probe);
                });
                return py::make_tuple(r[0], r[1], stats_tuple(st));
            },
            py::arg("queries"), py::arg("k"), py::arg("nprobe"), py::arg("threads") = 0,
            py::arg("allow") = py::none(), py::arg("deny") = py::none(), py::arg("lists") = py::none(),
            py::arg("max_codes") = 0)
        .def(
            "range_search",
            [](const IVFIndex& self, const Codes& q, int32_t radius, int nprobe, int threads, std::optional<Ids> allow,
               std::optional<Ids> deny, std::optional<Ids> lists, int64_t max_codes) {
                check_rows(q, self.code_size(), "queries");
                const IvfProbe probe = ivf_probe(q, nprobe, lists, max_codes);
                const IdFilter filter = make_filter(allow, deny);
                IvfStats st;
                RangeResult r;
                run_interruptible([&] {
                    r = self.range_search(q.data(), q.shape(0), radius, nprobe, threads, &st, filter, probe);
                });
                py::tuple t = range_arrays(std::move(r));
                return py::make_tuple(t[0], t[1], t[2], stats_tuple(st));
            },
            py::arg("queries"), py::arg("radius"), py::arg("nprobe"), py::arg("threads") = 0,
            py::arg("allow") = py::none(), py::arg("deny") = py::none(), py::arg("lists") = py::none(),
            py::arg("max_codes") = 0);
    bind_storage(ivf);
    bind_rows(ivf);

    py::class_<MultiFieldIndex> multi(m, "MultiFieldIndex");
    multi.def(py::init<std::vector<std::string>, std::vector<int>, bool>(), py::arg("names"), py::arg("nbits"),
              py::arg("mih") = false)
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
                return py::make_tuple(distances, ids, stats_tuple(st));
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
