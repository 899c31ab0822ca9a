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

// Unaligned 8-lane loads and stores (macros: vector arguments would change the
// calling convention between clones).
#define load8(p) ({ f8 v_; __builtin_memcpy(&v_, (p), sizeof v_); v_; })
#define store8(p, v) do { f8 v_ = (v); __builtin_memcpy((p), &v_, sizeof v_); } while (0)
#define splat(x) ((f8)(x))

// Sums of squares: eight lanes in float, folded into a double every 32 groups.
#define SQUARES_BEGIN double total = 0; f8 sq = splat(0); int groups = 0;
#define SQUARES_ADD(gv) sq += (gv) * (gv); \
    if (++groups == 32) { for (int l = 0; l < 8; l++) total += sq[l]; sq = splat(0); groups = 0; }
#define SQUARES_END for (int l = 0; l < 8; l++) total += sq[l]; return total;

CLONES
double kiln_adam(float *w, float *m, float *v, const float *g, long n, float scale,
                 float beta1, float beta2, float alpha, float epsilon, float decay) {
    SQUARES_BEGIN
    long i = 0;
    for (; i + 8 <= n; i += 8) {
        f8 gv = load8(g + i);
        SQUARES_ADD(gv)
        f8 gs = gv * scale;
        f8 mv = load8(m + i), vv = load8(v + i);
        mv += (gs - mv) * (1 - beta1);
        vv += (gs * gs - vv) * (1 - beta2);
        store8(m + i, mv);
        store8(v + i, vv);
        store8(w + i, load8(w + i) * decay - alpha * mv / (__builtin_elementwise_sqrt(vv) + epsilon));
    }
    for (; i < n; i++) {
        float gi = g[i];
        total += (double)gi * gi;
        gi *= scale;
        m[i] += (gi - m[i]) * (1 - beta1);
        v[i] += (gi * gi - v[i]) * (1 - beta2);
        w[i] = w[i] * decay - alpha * m[i] / (__builtin_sqrtf(v[i]) + epsilon);
    }
    SQUARES_END
}

CLONES
double kiln_sgd(float *w, float *velocity, const float *g, long n, float scale,
                float learning_rate, float momentum, int nesterov) {
    SQUARES_BEGIN
    long i = 0;
    for (; i + 8 <= n; i += 8) {
        f8 gv = load8(g + i);
        SQUARES_ADD(gv)
        f8 gs = gv * scale;
        if (!velocity) {
            store8(w + i, load8(w + i) - learning_rate * gs);
            continue;
        }
        f8 vv = momentum * load8(velocity + i) - learning_rate * gs;
        store8(velocity + i, vv);
        store8(w + i, load8(w + i) + (nesterov ? momentum * vv - learning_rate * gs : vv));
    }
    for (; i < n; i++) {
        float gi = g[i];
        total += (double)gi * gi;
        gi *= scale;
        if (!velocity) { w[i] -= learning_rate * gi; continue; }
        velocity[i] = momentum * velocity[i] - learning_rate * gi;
        w[i] += nesterov ? momentum * velocity[i] - learning_rate * gi : velocity[i];
    }
    SQUARES_END
}

CLONES
double kiln_rmsprop(float *w, float *v, const float *g, long n, float scale,
                    float learning_rate, float rho, float epsilon) {
    SQUARES_BEGIN
    long i = 0;
    for (; i + 8 <= n; i += 8) {
        f8 gv = load8(g + i);
        SQUARES_ADD(gv)
        f8 gs = gv * scale;
        f8 vv = rho * load8(v + i) + (1 - rho) * gs * gs;
        store8(v + i, vv);
        store8(w + i, load8(w + i) - learning_rate * gs / (__builtin_elementwise_sqrt(vv) + epsilon));
    }
    for (; i < n; i++) {
        float gi = g[i];
        total += (double)gi * gi;
        gi *= scale;
        v[i] = rho * v[i] + (1 - rho) * gi * gi;
        w[i] -= learning_rate * gi / (__builtin_sqrtf(v[i]) + epsilon);
    }
    SQUARES_END
}

CLONES
double kiln_sum_squares(const float *x, long n) {
    SQUARES_BEGIN
    long i = 0;
    for (; i + 8 <= n; i += 8) {
        f8 v = load8(x + i);
        SQUARES_ADD(v)
    }
    for (; i < n; i++) total += (double)x[i] * x[i];
    SQUARES_END
}
