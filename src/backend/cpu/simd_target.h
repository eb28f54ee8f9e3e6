// dsv4 backend/cpu (internal): opens / closes a region of functions compiled for a SIMD target.
// Everything a SIMD file includes is included before DSV4_TARGET_BEGIN, so no inline function or
// template shared with other translation units is ever compiled with the wider instruction set
// (the linker could otherwise keep that copy for the whole program).
#pragma once

#define DSV4_PRAGMA(x) _Pragma(#x)
#if defined(__clang__)
#define DSV4_TARGET_BEGIN(t) \
  DSV4_PRAGMA(clang attribute push(__attribute__((target(t))), apply_to = function))
#define DSV4_TARGET_END() DSV4_PRAGMA(clang attribute pop)
#else
#define DSV4_TARGET_BEGIN(t) DSV4_PRAGMA(GCC push_options) DSV4_PRAGMA(GCC target(t))
#define DSV4_TARGET_END() DSV4_PRAGMA(GCC pop_options)
#endif

// Fully unrolls the following (short, constant-trip) loop, so register-blocked accumulator arrays
// stay in registers.
#define DSV4_UNROLL DSV4_PRAGMA(GCC unroll 64)
