#ifndef KILN_KERNELS_H
#define KILN_KERNELS_H

// Element-wise loops that need vector square roots and divisions, which Swift code
// cannot get (its square root goes through libm one lane at a time). On x86-64 Linux
// each is compiled for AVX-512, AVX2 and the baseline, picked at load time by the CPU
// it runs on; elsewhere once, for the target's own vector width.
//
// The optimizer updates take g scaled by `scale` (clipping), update w and the slots in
// place, and return the sum of squares of the unscaled g (the gradient norm, squared).

double kiln_adam(float *w, float *m, float *v, const float *g, long n, float scale,
                 float beta1, float beta2, float alpha, float epsilon, float decay);

double kiln_sgd(float *w, float *velocity, const float *g, long n, float scale,
                float learning_rate, float momentum, int nesterov);

double kiln_sum_squares(const float *x, long n);

double kiln_rmsprop(float *w, float *v, const float *g, long n, float scale,
                    float learning_rate, float rho, float epsilon);

#endif
