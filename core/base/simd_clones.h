// REFINERY_SIMD_CLONES before a function: GCC compiles it twice, for
// baseline x86-64 and for AVX2, and the loader picks the one the CPU can run
// (an "arch=" clone would go by CPU model and miss AMD). For hot loops that
// the vectoriser can widen; Debian builds everything for baseline x86-64.
// Elsewhere (clang, other CPUs) a plain function.
#pragma once

#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
#define REFINERY_SIMD_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define REFINERY_SIMD_CLONES
#endif
