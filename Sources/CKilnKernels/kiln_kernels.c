#include "kiln_kernels.h"

// No fused multiply-adds: every clone rounds alike, so the update does not depend on
// which clone the CPU picks.
#pragma clang fp contract(off)

typedef float f8 __attribute__((ext_vector_type(8)));

#if defined(__x86_64__) && defined(__linux__)
#define CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CLONES  // one build for the target's own vector width (no ifunc, or not x86-64)
#endif

// Everything below is macros: vector arguments to a helper function would change the
// calling convention between clones.

// The k (1...8) elements at p + i as eight lanes, zeros past k and for a null p; and
// the first k lanes written back (nothing for a null p). With k the literal 8 and a
// pointer the compiler knows is null or not (a `nonnull` parameter, or the local
// `none`), every test folds away.
#define LOAD(p, i, k) ({ \
    f8 v_ = (f8)0; \
    if (p) { if ((k) == 8) __builtin_memcpy(&v_, (p) + (i), sizeof v_); else for (int l_ = 0; l_ < (k); l_++) v_[l_] = (p)[(i) + l_]; } \
    v_; })
#define STORE(p, i, k, v) do { \
    if (p) { f8 v_ = (v); if ((k) == 8) __builtin_memcpy((p) + (i), &v_, sizeof v_); else for (int l_ = 0; l_ < (k); l_++) (p)[(i) + l_] = v_[l_]; } \
} while (0)

// One group of k lanes at i: RULE sees and may change the lanes w, a, b (the weight and
// two slots; a null slot reads as zeros and is not written) and reads g, the gradient
// already scaled by `scale`. Σ g² of the unscaled gradient goes into `squares`, in
// float per lane, folded into the double `total` every 32 groups.
#define GROUP(i, k, gp, scale, wp, ap, bp, RULE) do { \
    f8 g = LOAD(gp, i, k), w = LOAD(wp, i, k), a = LOAD(ap, i, k), b = LOAD(bp, i, k); \
    squares += g * g; \
    if (++groups == 32) { for (int l = 0; l < 8; l++) total += squares[l]; squares = (f8)0; groups = 0; } \
    g = g * (scale); \
    RULE; \
    STORE(wp, i, k, w); STORE(ap, i, k, a); STORE(bp, i, k, b); \
    (void)a; (void)b; \
} while (0)

// Runs RULE over n elements eight at a time, the last group padded with zeros, so each
// rule is written once. The whole groups run in a loop of their own, without the tail's
// tests (1.7× faster for Adam than one loop testing every group). Returns Σ g².
#define SWEEP(n, gp, scale, wp, ap, bp, RULE) \
    double total = 0; \
    f8 squares = (f8)0; \
    int groups = 0; \
    long i = 0; \
    for (; i + 8 <= (n); i += 8) GROUP(i, 8, gp, scale, wp, ap, bp, RULE); \
    if (i < (n)) { int k = (int)((n) - i); GROUP(i, k, gp, scale, wp, ap, bp, RULE); } \
    for (int l = 0; l < 8; l++) total += squares[l]; \
    return total;

CLONES __attribute__((nonnull(1, 2, 3, 4)))
double kiln_adam(float *weights, float *m, float *v, const float *gradient, long n, float scale,
                 float beta1, float beta2, float alpha, float epsilon, float decay) {
    // a: first moment, b: second moment.
    SWEEP(n, gradient, scale, weights, m, v,
          a += (g - a) * (1 - beta1);
          b += (g * g - b) * (1 - beta2);
          w = w * decay - alpha * a / (__builtin_elementwise_sqrt(b) + epsilon))
}

CLONES __attribute__((nonnull(1, 3)))
double kiln_sgd(float *weights, float *velocity, const float *gradient, long n, float scale,
                float learning_rate, float momentum, int nesterov) {
    // a: velocity (absent without momentum). One sweep per case, so neither tests for
    // the velocity per group.
    float *none = 0;
    if (!velocity) {
        SWEEP(n, gradient, scale, weights, none, none, w -= learning_rate * g)
    } else {
        SWEEP(n, gradient, scale, weights, velocity, none,
              a = momentum * a - learning_rate * g;
              w += nesterov ? momentum * a - learning_rate * g : a)
    }
}

CLONES __attribute__((nonnull(1, 2, 3)))
double kiln_rmsprop(float *weights, float *v, const float *gradient, long n, float scale,
                    float learning_rate, float rho, float epsilon) {
    // a: mean square.
    float *none = 0;
    SWEEP(n, gradient, scale, weights, v, none,
          a = rho * a + (1 - rho) * g * g;
          w -= learning_rate * g / (__builtin_elementwise_sqrt(a) + epsilon))
}

CLONES __attribute__((nonnull(1)))
double kiln_sum_squares(const float *x, long n) {
    float *none = 0;
    SWEEP(n, x, 1.0f, none, none, none, (void)0)
}
