// The one place that picks a kernel variant: from cpuid at load time, or a
// lower level forced by the caller (HASHINDEX_SIMD, tests).
#pragma once
#include <string>
#include <vector>

#include "kernels.h"

namespace hashindex {

// Ranks within one architecture (x86-64: scalar < AVX2 < AVX-512; AArch64: scalar < NEON).
enum class SimdLevel : int { Scalar = 0, AVX2 = 1, AVX512 = 2, NEON = 1 };

struct Kernels {
    SimdLevel level;
    const char* name;
    ScanFn scan;
    FilterFn filter;
    PeakFn peak;
    WeightedScanFn weighted;
};

// Kernels in use now. A search reads this once and keeps it for its duration.
const Kernels& active_kernels();
// Highest level this CPU and OS support.
SimdLevel best_supported_level();
// Names of the supported levels, lowest first.
std::vector<std::string> supported_level_names();
// Forces a level by name; throws std::invalid_argument for an unknown name or
// one this CPU lacks.
void set_level(const std::string& name);

}  // namespace hashindex
