#include "bindings.hpp"
#include "itpl/gram.hpp"
#include "itpl/parallel.hpp"

namespace py = pybind11;

void register_runtime(py::module_& m) {
    m.attr("has_openmp") = itpl::has_openmp();
    m.def("default_threads", &itpl::default_threads,
          "Threads a kernel uses when num_threads=0 (OpenMP's default; 1 without OpenMP).");
    m.def("cpu_has_avx512", &itpl::cpu_has_avx512,
          "True when the AVX-512 Gram kernel is built in and this CPU supports it.");
    m.def(
        "gram_kernel", [](const std::string& name) {
            return itpl::resolve_kernel_name(itpl::parse_gram_kernel(name));
        },
        py::arg("name") = "auto", "The Gram kernel that `name` resolves to on this CPU.");
}
