"""Builds hashindex._core from csrc/ with pybind11.

Each SIMD kernel is its own translation unit compiled with its own ISA flags
(never with flags for the build machine's own CPU); csrc/dispatch.cpp picks one at run time from cpuid
(or, on AArch64, the kernel's hwcaps), so one wheel runs on any x86-64 CPU and uses AVX-512 where the
CPU has it, and one AArch64 wheel uses NEON.
"""
import os
import platform
import sys

from pybind11.setup_helpers import ParallelCompile, Pybind11Extension, build_ext
from setuptools import setup

CSRC = "csrc"
COMMON_SOURCES = [
    "bindings.cpp",
    "code_store.cpp",
    "dispatch.cpp",
    "flat_index.cpp",
    "format.cpp",
    "id_filter.cpp",
    "id_map.cpp",
    "interrupt.cpp",
    "items.cpp",
    "ivf_format.cpp",
    "ivf_index.cpp",
    "ivf_coarse.cpp",
    "ivf_lists.cpp",
    "kernel_scalar.cpp",
    "mih_cost.cpp",
    "mih_index.cpp",
    "mih_engine.cpp",
    "multi_field_mih.cpp",
    "multi_field_index.cpp",
    "parallel.cpp",
    "results.cpp",
    "roofline.cpp",
]
X86 = platform.machine().lower() in ("x86_64", "amd64", "x64", "i686", "x86")
# Flags per kernel file, for GCC/Clang and for MSVC.
ISA_SOURCES = {
    "kernel_avx2.cpp": (["-mavx2", "-mpopcnt"], ["/arch:AVX2"]),
    "kernel_avx512.cpp": (
        ["-mavx512f", "-mavx512bw", "-mavx512dq", "-mavx512vl", "-mavx512vpopcntdq", "-mpopcnt"],
        ["/arch:AVX512"],
    ),
} if X86 else {}
if platform.machine().lower() in ("aarch64", "arm64"):
    ISA_SOURCES = {"kernel_neon.cpp": ([], [])}  # Advanced SIMD is part of ARMv8-A: no flag needed


class BuildExt(build_ext):
    """Compiles the ISA kernels separately with their flags and links them in."""

    def build_extension(self, ext):
        msvc = self.compiler.compiler_type == "msvc"
        objects = []
        for name, (gnu_flags, msvc_flags) in ISA_SOURCES.items():
            flags = (msvc_flags if msvc else gnu_flags) + list(ext.extra_compile_args)
            objects += self.compiler.compile(
                [os.path.join(CSRC, name)],
                output_dir=self.build_temp,
                include_dirs=ext.include_dirs,
                extra_postargs=flags,
                depends=[os.path.join(CSRC, "kernels.h"), os.path.join(CSRC, "kernel_impl.h")],
            )
        ext.extra_objects = list(ext.extra_objects or []) + objects
        super().build_extension(ext)


# Compiles the common sources in parallel (CI has 2 cores); HASHINDEX_BUILD_JOBS overrides.
ParallelCompile("HASHINDEX_BUILD_JOBS", default=0).install()

extra = ["/O2"] if sys.platform == "win32" else ["-O3"]
link = []
options = {}
# HASHINDEX_SANITIZE=1: AddressSanitizer + UndefinedBehaviorSanitizer (GCC/Clang), for fuzz/sanitize.sh.
# Any undefined behaviour aborts rather than printing and going on, so a test run cannot pass over it.
# Its objects and module are built under a folder of their own: in the common build/ folder, the next
# plain build found them up to date and shipped the sanitized module (which then failed to import:
# "ASan runtime does not come first"), and a sanitized build could take plain objects as it.
if os.environ.get("HASHINDEX_SANITIZE", "") not in ("", "0"):
    extra = ["-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined", "-fno-sanitize-recover=undefined"]
    link = ["-fsanitize=address,undefined"]
    options = {"build": {"build_base": os.path.join("build", "sanitize", "build")}}
ext = Pybind11Extension(
    "hashindex._core",
    sources=[os.path.join(CSRC, s) for s in COMMON_SOURCES],
    include_dirs=[CSRC],
    cxx_std=17,
    extra_compile_args=extra,
    extra_link_args=link,
    depends=[os.path.join(CSRC, f) for f in sorted(os.listdir(CSRC)) if f.endswith(".h")],
)

setup(ext_modules=[ext], cmdclass={"build_ext": BuildExt}, options=options)
