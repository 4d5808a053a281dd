// nHSIC matrix from centred Grams: Frobenius inner products of every pair,
// each Gram read once per pair and never rebuilt.
#include "itpl/nhsic.hpp"

#include <cmath>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "itpl/parallel.hpp"

namespace itpl {
namespace {

double frobenius_dot(const double* a, const double* b, std::size_t count) {
    double s = 0.0;
    for (std::size_t e = 0; e < count; ++e) s += a[e] * b[e];
    return s;
}

}  // namespace

void nhsic_matrix(const double* grams, std::size_t L, std::size_t n, bool debiased,
                  double* out, int num_threads) {
    if (L < 1) throw std::invalid_argument("nhsic_matrix needs at least one Gram matrix");
    const std::size_t min_n = debiased ? 4 : 2;
    if (n < min_n)
        throw std::invalid_argument(std::string(debiased ? "the debiased" : "the biased") +
                                    " nHSIC needs at least " + std::to_string(min_n) +
                                    " samples, got " + std::to_string(n));
    if (num_threads < 0)
        throw std::invalid_argument("num_threads must be >= 0 (0 = OpenMP default)");
    [[maybe_unused]] const int threads = resolve_threads(num_threads);  // unused without OpenMP
    const std::size_t nn = n * n;
    const long nl = static_cast<long>(L);

    // Per layer: row sums and total of the zero-diagonal Gram (debiased terms).
    std::vector<double> rowsum(L * n, 0.0), total(L, 0.0);
    int bad_layer = -1;
#pragma omp parallel for num_threads(threads) if (threads > 1) schedule(static) default(none) \
    shared(grams, n, nn, nl, rowsum, total, bad_layer)
    for (long l = 0; l < nl; ++l) {
        const double* g = grams + static_cast<std::size_t>(l) * nn;
        double* r = rowsum.data() + static_cast<std::size_t>(l) * n;
        bool finite = true;
        for (std::size_t a = 0; a < n; ++a) {
            double s = 0.0;
            for (std::size_t b = 0; b < n; ++b) s += g[a * n + b];
            finite = finite && std::isfinite(s);
            r[a] = s - g[a * n + a];
        }
        double t = 0.0;
        for (std::size_t a = 0; a < n; ++a) t += r[a];
        total[static_cast<std::size_t>(l)] = t;
        if (!finite) {
#pragma omp critical(itpl_nhsic_bad)
            if (bad_layer < 0 || l < bad_layer) bad_layer = static_cast<int>(l);
        }
    }
    if (bad_layer >= 0)
        throw std::invalid_argument("Gram matrix " + std::to_string(bad_layer) +
                                    " contains NaN or Inf");

    std::vector<std::pair<std::size_t, std::size_t>> pairs;
    pairs.reserve(L * (L + 1) / 2);
    for (std::size_t i = 0; i < L; ++i)
        for (std::size_t j = i; j < L; ++j) pairs.emplace_back(i, j);
    std::vector<double> hsic(L * L, 0.0);
    const long npairs = static_cast<long>(pairs.size());
    const double dn = static_cast<double>(n);

#pragma omp parallel for num_threads(threads) if (threads > 1) schedule(dynamic) default(none) \
    shared(grams, n, nn, L, pairs, hsic, rowsum, total, npairs, debiased, dn)
    for (long p = 0; p < npairs; ++p) {
        const auto [i, j] = pairs[static_cast<std::size_t>(p)];
        const double* gi = grams + i * nn;
        const double* gj = grams + j * nn;
        double v = frobenius_dot(gi, gj, nn);  // tr(K_i K_j) for symmetric K
        if (debiased) {
            // Song et al. (2012), Eq. 5, with K~ = K minus its diagonal.
            double diag = 0.0;
            for (std::size_t a = 0; a < n; ++a) diag += gi[a * n + a] * gj[a * n + a];
            const double* ri = rowsum.data() + i * n;
            const double* rj = rowsum.data() + j * n;
            double rr = 0.0;
            for (std::size_t a = 0; a < n; ++a) rr += ri[a] * rj[a];
            v = (v - diag) + total[i] * total[j] / ((dn - 1.0) * (dn - 2.0)) -
                2.0 * rr / (dn - 2.0);
            v /= dn * (dn - 3.0);
        }
        hsic[i * L + j] = v;
        hsic[j * L + i] = v;
    }

    // Normalise. A layer with no positive self-HSIC (constant activations)
    // shares nothing with any layer: 0 off the diagonal, 1 on it.
    for (std::size_t i = 0; i < L; ++i) {
        for (std::size_t j = 0; j < L; ++j) {
            const double si = hsic[i * L + i], sj = hsic[j * L + j];
            double v;
            if (i == j) {
                v = 1.0;
            } else if (si <= 0.0 || sj <= 0.0) {
                v = 0.0;
            } else {
                v = hsic[i * L + j] / (std::sqrt(si) * std::sqrt(sj));
                // Biased values of PSD Grams lie in [0, 1]; clip rounding only.
                if (!debiased) v = std::fmin(1.0, std::fmax(0.0, v));
            }
            out[i * L + j] = v;
        }
    }
}

}  // namespace itpl
