// RS_CPU_MULTIVERSION: compiles the function it marks twice on x86-64 with GCC or Clang, once
// for the baseline ISA and once for x86-64-v3 (AVX2 + FMA), and lets the dynamic loader pick
// the best one for the CPU (an ifunc). Binaries stay portable (no -march=native) yet run AVX2
// code where the CPU has it. Elsewhere the macro expands to nothing.
//
// Mark the function that holds the hot loops (not a template: Clang cannot multiversion one).
// Helpers it calls must be [[gnu::always_inline]]: GCC does not otherwise inline a baseline
// function into an x86-64-v3 clone, and the helper would run without AVX2. Results may differ
// in the last bits between the two versions (FMA contraction), never between runs on one
// machine.
#pragma once

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define RS_CPU_MULTIVERSION [[gnu::target_clones("arch=x86-64-v3", "default")]]
#else
#define RS_CPU_MULTIVERSION
#endif
