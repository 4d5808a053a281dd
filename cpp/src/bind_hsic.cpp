// Thin glue: typed C-contiguous buffers (no conversion, so no hidden copies),
// shape checks, GIL released around the kernels.
#include <pybind11/numpy.h>

#include <stdexcept>
#include <string>

#include "bindings.hpp"
#include "itpl/gram.hpp"
#include "itpl/nhsic.hpp"

namespace py = pybind11;

namespace {

template <class T>
using carray = py::array_t<T, py::array::c_style>;

template <class T>
carray<double> centered_gram(const carray<T>& x, int num_threads, const std::string& kernel,
                             std::size_t block) {
    if (x.ndim() != 2)
        throw std::invalid_argument("X must be 2-D (samples x features), got " +
                                    std::to_string(x.ndim()) + "-D");
    const auto n = static_cast<std::size_t>(x.shape(0));
    const auto d = static_cast<std::size_t>(x.shape(1));
    itpl::GramOptions options;
    options.num_threads = num_threads;
    options.kernel = itpl::parse_gram_kernel(kernel);
    options.block = block;
    carray<double> out({x.shape(0), x.shape(0)});
    const T* px = x.data();
    double* po = out.mutable_data();
    {
        py::gil_scoped_release release;
        itpl::centered_gram<T>(px, n, d, po, options);
    }
    return out;
}

carray<double> nhsic_matrix(const carray<double>& grams, bool debiased, int num_threads) {
    if (grams.ndim() != 3 || grams.shape(1) != grams.shape(2))
        throw std::invalid_argument("grams must have shape (layers, n, n)");
    const auto L = static_cast<std::size_t>(grams.shape(0));
    const auto n = static_cast<std::size_t>(grams.shape(1));
    carray<double> out({grams.shape(0), grams.shape(0)});
    const double* pg = grams.data();
    double* po = out.mutable_data();
    {
        py::gil_scoped_release release;
        itpl::nhsic_matrix(pg, L, n, debiased, po, num_threads);
    }
    return out;
}

constexpr const char* kGramDoc =
    "Centred Gram H X X^T H (float64, n x n) of a C-contiguous float32/float64 X (n x d).";

}  // namespace

void register_hsic(py::module_& m) {
    m.def("centered_gram", &centered_gram<float>, py::arg("x").noconvert(), py::kw_only(),
          py::arg("num_threads") = 0, py::arg("kernel") = "auto", py::arg("block") = 0,
          kGramDoc);
    m.def("centered_gram", &centered_gram<double>, py::arg("x").noconvert(), py::kw_only(),
          py::arg("num_threads") = 0, py::arg("kernel") = "auto", py::arg("block") = 0,
          kGramDoc);
    m.def("nhsic_matrix", &nhsic_matrix, py::arg("grams").noconvert(), py::kw_only(),
          py::arg("debiased") = false, py::arg("num_threads") = 0,
          "L x L nHSIC matrix from a C-contiguous float64 array of L centred Grams (L x n x n).");
}
