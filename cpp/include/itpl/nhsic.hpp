// Normalised HSIC (linear CKA) between layers, from their centred Grams.
// No Python here.
#pragma once

#include <cstddef>

namespace itpl {

// grams: L centred Gram matrices, each n x n, stored contiguously (L x n x n).
// out:   the L x L matrix of nHSIC values (row-major).
//
// Biased (ITPruner Eq. 8): tr(K_i K_j) / (||K_i||_F ||K_j||_F), in [0, 1] for
// positive semi-definite K.
// Debiased: the same ratio with the unbiased HSIC estimator of Song et al.
// (2012), which stays near 0 for independent features when n << d. It is
// translation invariant, so it may be fed the same centred Grams. Its
// off-diagonal values are not confined to [0, 1] (small negatives are noise).
//
// A layer whose self-HSIC is not positive (an all-constant layer: its centred
// Gram is zero) carries no information: its row and column are 0 and its
// diagonal entry is 1, by convention, so the diagonal is always 1.
//
// Throws std::invalid_argument for L < 1, n < 2 (biased) or n < 4 (debiased),
// or a NaN/Inf in grams.
void nhsic_matrix(const double* grams, std::size_t L, std::size_t n, bool debiased,
                  double* out, int num_threads = 0);

}  // namespace itpl
