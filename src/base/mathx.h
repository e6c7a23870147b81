/* mathx.h — (internal) small inline math kernels that vectorise: an expf
 * with ~1-ulp accuracy (Cody–Waite range reduction and a degree-6
 * polynomial, branch-free so GCC vectorises loops that call it; needs
 * -fno-trapping-math, which the Makefile sets). */
#ifndef LOUPE_MATHX_H
#define LOUPE_MATHX_H

#include <math.h>
#include <stdint.h>
#include <string.h>

static inline float lp_expf(float x) {
    x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
    float n = floorf(x * 1.44269504088896341f + 0.5f);
    float r = x - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    union {
        int32_t i;
        float f;
    } u;
    u.i = ((int32_t)n + 127) << 23;
    return p * u.f;
}

#endif
