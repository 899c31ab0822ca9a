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
// the first k lanes written back (nothing for a null p).
#define LOAD(p, i, k) ({ \
    f8 v_ = (f8)0; \
    if (p) { if ((k) == 8) __builtin_memcpy(&v_, (p) + (i), sizeof v_); else for (int l_ = 0; l_ < (k); l_++) v_[l_] = (p)[(i) + l_]; } \
    v_; })
#define STORE(p, i, k, v) do { \
    if (p) { f8 v_ = (v); if ((k) == 8) __builtin_memcpy((p) + (i), &v_, sizeof v_); else for (int l_ = 0; l_ < (k); l_++) (p)[(i) + l_] = v_[l_]; } \
} while (0)

// Runs RULE over n elements eight at a time, the last group padded with zeros, so each
// rule is written once. RULE sees and may change the lanes w, a, b (the weight and two
// slots; a null slot reads as zeros and is not written) and reads g, the gradient
// already scaled by `scale`. Returns Σ g² of the unscaled gradient: in float per lane,
// folded into a double every 32 groups.
#define SWEEP(n, gp, scale, wp, ap, bp, RULE) \
    double total = 0; \
    f8 squares = (f8)0; \
    int groups = 0; \
    for (long i = 0; i < (n); i += 8) { \
        int k = (n) - i < 8 ? (int)((n) - i) : 8; \
        f8 g = LOAD(gp, i, k), w = LOAD(wp, i, k), a = LOAD(ap, i, k), b = LOAD(bp, i, k); \
        squares += g * g; \
        if (++groups == 32) { for (int l = 0; l < 8; l++) total += squares[l]; squares = (f8)0; groups = 0; } \
        g = g * (scale); \
        RULE; \
        STORE(wp, i, k, w); STORE(ap, i, k, a); STORE(bp, i, k, b); \
        (void)a; (void)b; \
    } \
    for (int l = 0; l < 8; l++) total += squares[l]; \
    return total;

CLONES
double kiln_adam(float *weights, float *m, float *v, const float *gradient, long n, float scale,
                 float beta1, float beta2, float alpha, float epsilon, float decay) {
    // a: first moment, b: second moment.
    SWEEP(n, gradient, scale, weights, m, v,
          a += (g - a) * (1 - beta1);
          b += (g * g - b) * (1 - beta2);
          w = w * decay - alpha * a / (__builtin_elementwise_sqrt(b) + epsilon))
}

CLONES
double kiln_sgd(float *weights, float *velocity, const float *gradient, long n, float scale,
                float learning_rate, float momentum, int nesterov) {
    // a: velocity (absent without momentum).
    float *none = 0;
    SWEEP(n, gradient, scale, weights, velocity, none,
          if (!velocity) {
              w -= learning_rate * g;
          } else {
              a = momentum * a - learning_rate * g;
              w += nesterov ? momentum * a - learning_rate * g : a;
          })
}

CLONES
double kiln_rmsprop(float *weights, float *v, const float *gradient, long n, float scale,
                    float learning_rate, float rho, float epsilon) {
    // a: mean square.
    float *none = 0;
    SWEEP(n, gradient, scale, weights, v, none,
          a = rho * a + (1 - rho) * g * g;
          w -= learning_rate * g / (__builtin_elementwise_sqrt(a) + epsilon))
}

CLONES
double kiln_sum_squares(const float *x, long n) {
    float *none = 0;
    SWEEP(n, x, 1.0f, none, none, none, (void)0)
}
