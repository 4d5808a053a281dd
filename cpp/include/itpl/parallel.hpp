// Thread-count policy shared by the kernels. No Python here.
#pragma once

#ifdef _OPENMP
#include <omp.h>
#endif

namespace itpl {

inline bool has_openmp() noexcept {
#ifdef _OPENMP
    return true;
#else
    return false;
#endif
}

// Threads a kernel uses when the caller passes 0: OpenMP's current default.
inline int default_threads() noexcept {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

// 0 means "the default"; anything else is taken as given (1 = the serial path).
// Without OpenMP every request runs serially.
inline int resolve_threads(int requested) noexcept {
    if (!has_openmp()) return 1;
    return requested > 0 ? requested : default_threads();
}

}  // namespace itpl
