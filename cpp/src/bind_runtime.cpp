#include <pybind11/stl.h>

#include "bindings.hpp"
#include "itpl/gram.hpp"
#include "itpl/parallel.hpp"
#include "itpl/peak.hpp"

namespace py = pybind11;

void register_runtime(py::module_& m) {
    m.attr("has_openmp") = itpl::has_openmp();
    m.def("default_threads", &itpl::default_threads,
          "Threads a kernel uses when num_threads=0 (OpenMP's default; 1 without OpenMP).");
    m.def("gram_kernels", &itpl::supported_gram_kernels,
          "Gram kernels this build and CPU can run; 'auto' picks the last.");
    m.def(
        "gram_kernel", [](const std::string& name) {
            return itpl::resolve_kernel_name(itpl::parse_gram_kernel(name));
        },
        py::arg("name") = "auto", "The Gram kernel that `name` resolves to on this CPU.");
    m.def(
        "fma_peak_gflops",
        [](const std::string& kernel, int num_threads, double seconds) {
            py::gil_scoped_release release;
            return itpl::fma_peak_gflops(itpl::parse_gram_kernel(kernel), num_threads, seconds);
        },
        py::arg("kernel") = "auto", py::kw_only(), py::arg("num_threads") = 0,
        py::arg("seconds") = 0.2,
        "Measured float32 FMA GFLOP/s at the vector width of `kernel` (registers only; "
        "avx512bf16: bf16 dot products into float32).");
}
