"""The emulator runtime: the HIP/CUDA kernels of hip/ compiled by g++ and run on the CPU.

    rt = EmulatorRuntime(warp_size=32)   # kernel_defines: experiments.conv.kernel_launch
    fn = rt.load("gemm_1_blocked.hip", kernel_defines("gemm_1_blocked.hip", 16)).get_function("gemm_blocked")
    fn(grid, block, (a, b, c, np.int32(m), np.int32(n), np.int32(k), ...))   # numpy arrays

How a load works:

1. The ``KERNEL void name(params) {`` definitions of the source are found with a regular
   expression (comments stripped first) and their parameter types mapped to numpy dtypes.
2. A C++ wrapper is generated that ``#include``s the source and, per kernel, defines
   ``extern "C" int convbench_launch_<name>(grid xyz, block xyz, shared, workers, params...)``,
   which runs ``[=] { name(params...); }`` over the grid through the fiber scheduler of
   hip/emulator/hip_cpu.h (read its header comment for the execution model).
3. g++ compiles it to a shared library in the build cache (``$CONVBENCH_CACHE_DIR/emulator``,
   default ``~/.cache/convbench/emulator``), named by a hash of everything that goes into it
   (the sources of hip/, the kernel file, defines, warp size, flags, compiler, this file): each
   (source, defines) compiles once per machine, across processes (written atomically).
4. ctypes loads it; a launch releases the GIL while the kernel runs.

By default a launch is *checked*: every array argument is copied into a buffer with guard zones
filled with canaries (NaNs with a payload for float arrays, so that out-of-bounds reads show up
as NaN too); after the kernel the canaries are verified and an out-of-bounds write raises
OutOfBoundsError naming the kernel, the argument and the elements written. Arguments are
checked against the kernel's declared parameter types, with CuPy's conventions: arrays for
pointers, numpy scalars of the exact type for scalars (a Python int would reach a GPU kernel
as a 64-bit value, so it is refused here rather than silently working).

Timings of this runtime measure an emulation and are never performance numbers.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy

from .host import cpu_name
from .sources import HIP_DIR, kernel_source_hash, source_path
from .threads import cpu_execution

VALID_WARP_SIZES = (32, 64)
MAX_THREADS_PER_BLOCK = 1024           # CUDA and HIP
MAX_BLOCK_DIM = (1024, 1024, 64)
MAX_GRID_DIM = (2**31 - 1, 65535, 65535)
MAX_DYNAMIC_SHARED_BYTES = 48 * 1024   # what a launch gets without opting in to more


class EmulatorError(RuntimeError):
    """A kernel failed in the emulator (divergent barrier, __trap, ...)."""


class CompileError(EmulatorError):
    """g++ rejected the kernel source; the message holds the command and g++'s output."""


class OutOfBoundsError(EmulatorError):
    """A kernel wrote outside an array argument (caught by the guard zones of a checked launch)."""


class KernelTimeoutError(EmulatorError):
    """A launch ran past the runtime's ``kernel_timeout_s`` and was stopped (hip_cpu.h's watchdog)."""


class UnknownKernelError(EmulatorError, LookupError):
    """get_function() with a name that the source does not define."""


# ---------------------------------------------------------------------------------------------
# Parsing kernel signatures
# ---------------------------------------------------------------------------------------------

# C spellings of the scalar types a parameter may have (or point to), and their numpy dtypes.
_C_TYPES: dict[str, str] = {
    "float": "float32", "double": "float64",
    "__half": "float16", "half": "float16", "_Float16": "float16",
    "bool": "bool",
    "char": "int8", "signed char": "int8", "int8_t": "int8",
    "unsigned char": "uint8", "uint8_t": "uint8",
    "short": "int16", "short int": "int16", "signed short": "int16", "int16_t": "int16",
    "unsigned short": "uint16", "unsigned short int": "uint16", "uint16_t": "uint16",
    "int": "int32", "signed": "int32", "signed int": "int32", "int32_t": "int32",
    "unsigned": "uint32", "unsigned int": "uint32", "uint32_t": "uint32",
    "long": "int64", "long int": "int64", "long long": "int64", "long long int": "int64",
    "signed long long": "int64", "int64_t": "int64", "ptrdiff_t": "int64",
    "unsigned long": "uint64", "unsigned long int": "uint64", "unsigned long long": "uint64",
    "unsigned long long int": "uint64", "uint64_t": "uint64", "size_t": "uint64",
}
_CTYPES_OF_DTYPE = {
    "float32": ctypes.c_float, "float64": ctypes.c_double, "float16": ctypes.c_uint16,  # half: its bits
    "bool": ctypes.c_bool, "int8": ctypes.c_int8, "uint8": ctypes.c_uint8,
    "int16": ctypes.c_int16, "uint16": ctypes.c_uint16, "int32": ctypes.c_int32,
    "uint32": ctypes.c_uint32, "int64": ctypes.c_int64, "uint64": ctypes.c_uint64,
}
_QUALIFIERS = {"__restrict__", "__restrict", "restrict", "volatile"}
_TYPE_WORDS = {word for spelling in _C_TYPES for word in spelling.split()} | {"void", "const"}

_COMMENT_OR_STRING = re.compile(r'("(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\')|//[^\n]*|/\*.*?\*/', re.S)
_BALANCED = r"[^()]*(?:\([^()]*\)[^()]*)*"
_KERNEL = re.compile(
    r'(?:\bKERNEL\b|(?:\bextern\s+"C"\s+)?\b__global__)\s+'
    rf"(?:__launch_bounds__\s*\((?P<bounds1>{_BALANCED})\)\s*)?"
    r"void\s+"
    rf"(?:__launch_bounds__\s*\((?P<bounds2>{_BALANCED})\)\s*)?"
    r"(?P<name>[A-Za-z_]\w*)\s*\((?P<params>[^()]*)\)\s*\{")
_EXTERN_SHARED = re.compile(
    r"^(?P<indent>[ \t]*)extern\s+__shared__\s+(?:__align__\s*\(\s*\d+\s*\)\s*)?"
    r"(?P<type>[A-Za-z_][\w \t]*?)\s*(?:__align__\s*\(\s*\d+\s*\)\s*)?\b(?P<name>[A-Za-z_]\w*)"
    r"\s*\[\s*\]\s*;[ \t]*$", re.M)


@dataclass(frozen=True)
class Param:
    """One kernel parameter: ``const float* __restrict__ A`` -> name A, pointer, const, float32."""

    name: str
    ctype: str                 # as declared, without restrict qualifiers: "const float*"
    pointer: bool
    const: bool                # pointer to const (the kernel promises not to write through it)
    dtype: numpy.dtype | None  # element type of a pointer (None: void* or unknown, any array) or scalar type

    def describe(self) -> str:
        return f"{self.ctype} {self.name}"


@dataclass(frozen=True)
class KernelSignature:
    name: str
    params: tuple[Param, ...]
    bounds: str | None             # the max-threads expression of __launch_bounds__, if any
    unsupported: str | None = None  # why the emulator cannot call it (then no wrapper is built)

    def describe(self) -> str:
        return f"{self.name}({', '.join(p.describe() for p in self.params)})"


def strip_comments(text: str) -> str:
    return _COMMENT_OR_STRING.sub(lambda m: m.group(1) or " ", text)


def _top_level_split(text: str, sep: str = ",") -> list[str]:
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def _parse_param(text: str, index: int) -> Param:
    """Raises ValueError with a reason for what the emulator cannot pass."""
    decl = " ".join(text.split())
    if any(ch in decl for ch in "&[]<>=("):
        raise ValueError(f"parameter {decl!r}: only scalars and pointers to scalars are supported")
    tokens = [t for t in re.findall(r"[A-Za-z_][\w:]*|\*|\S", decl) if t not in _QUALIFIERS]
    bad = [t for t in tokens if t != "*" and not re.fullmatch(r"[A-Za-z_][\w:]*", t)]
    if bad:
        raise ValueError(f"parameter {decl!r}: cannot read {bad[0]!r}")
    stars = tokens.count("*")
    if stars > 1:
        raise ValueError(f"parameter {decl!r}: pointers to pointers are not supported")
    name = f"arg{index}"
    if (len(tokens) >= 2 and tokens[-1] not in _TYPE_WORDS and tokens[-1] != "*"
            and any(t != "const" for t in tokens[:-1])):
        name = tokens[-1]
        tokens = tokens[:-1]
    pointer = stars == 1
    star = tokens.index("*") if pointer else len(tokens)
    const = pointer and "const" in tokens[:star]
    base = " ".join(t.removeprefix("std::") for t in tokens[:star] if t != "const")
    ctype = " ".join(tokens).replace(" *", "*")
    if base in _C_TYPES:
        dtype = numpy.dtype(_C_TYPES[base])
    elif pointer:
        dtype = None  # void* or a type this table does not know (float4*, a struct): any array
    else:
        raise ValueError(f"parameter {decl!r}: scalar type {base!r} is not supported; "
                         f"supported: {', '.join(sorted(set(_C_TYPES)))}")
    return Param(name=name, ctype=ctype, pointer=pointer, const=const, dtype=dtype)


def parse_kernels(source_text: str) -> dict[str, KernelSignature]:
    """The kernels a source defines, by name, in order of appearance."""
    kernels: dict[str, KernelSignature] = {}
    for m in _KERNEL.finditer(strip_comments(source_text)):
        name = m["name"]
        bounds = m["bounds1"] if m["bounds1"] is not None else m["bounds2"]
        if bounds is not None:
            bounds = _top_level_split(bounds)[0].strip() or None
        raw = m["params"].strip()
        params: list[Param] = []
        reason = None
        if raw and raw != "void":
            try:
                params = [_parse_param(p, i) for i, p in enumerate(_top_level_split(raw))]
            except ValueError as e:
                reason = str(e)
        if name in kernels:
            reason = "defined more than once in the source (the emulator reads signatures without the preprocessor)"
        kernels[name] = KernelSignature(name, tuple(params), bounds, reason)
    return kernels


# ---------------------------------------------------------------------------------------------
# Building
# ---------------------------------------------------------------------------------------------

def cache_dir() -> Path:
    root = os.environ.get("CONVBENCH_CACHE_DIR")
    if root:
        return Path(root).expanduser() / "emulator"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "convbench" / "emulator"


@lru_cache(maxsize=1)
def _compiler() -> tuple[str, str]:
    cxx = os.environ.get("CONVBENCH_CXX", "g++")
    path = shutil.which(cxx)
    if path is None:
        raise CompileError(f"the emulator needs a C++20 compiler and {cxx!r} is not on the PATH "
                           "(Debian/Ubuntu: apt-get install g++)")
    version = subprocess.run([path, "--version"], capture_output=True, text=True).stdout.splitlines()
    return path, version[0] if version else "unknown"


@lru_cache(maxsize=1)
def _base_flags() -> tuple[str, ...]:
    flags = ["-O2", "-std=c++20", "-shared", "-fPIC", "-pthread", "-fno-math-errno",
             "-fvisibility=hidden",  # each library keeps its own runtime, even if loaded RTLD_GLOBAL
             "-U_FORTIFY_SOURCE",  # its longjmp check rejects jumps between fiber stacks
             "-DCONVBENCH_EMULATOR"]
    try:
        cpu_flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        cpu_flags = set()
    if {"avx2", "fma"} <= cpu_flags:
        flags += ["-mavx2", "-mfma"]  # fmaf() as one instruction rather than a libm call
    return tuple(flags)


def _define_flags(defines: dict[str, Any] | None) -> tuple[str, ...]:
    flags = []
    for key, value in sorted((defines or {}).items()):
        if not isinstance(key, str) or not re.fullmatch(r"[A-Za-z_]\w*", key):
            raise ValueError(f"define name {key!r} is not a C identifier")
        if isinstance(value, (bool, numpy.bool_)):
            value = int(value)
        if not isinstance(value, (int, float, numpy.integer, numpy.floating)):
            raise TypeError(f"define {key}={value!r}: values must be numbers")
        flags.append(f"-D{key}={value}")
    return tuple(flags)


def _resolve_source(source: str | os.PathLike) -> Path:
    path = Path(source)
    if path.is_absolute():
        if not path.is_file():
            raise FileNotFoundError(f"no kernel source {str(path)!r}")
        return path
    return source_path(str(source))


def _rewrite_extern_shared(text: str, path: Path) -> str | None:
    """`extern __shared__ T name[];` -> a macro for the worker's dynamic shared buffer (None: none)."""
    if "extern" not in text or not re.search(r"extern\s+__shared__", text):
        return None
    rewritten = _EXTERN_SHARED.sub(
        lambda m: f"{m['indent']}#define {m['name']} "
                  f"(reinterpret_cast<{' '.join(m['type'].split())}*>(convbench_dynamic_shared()))",
        text)
    if re.search(r"extern\s+__shared__", strip_comments(rewritten)):
        raise CompileError(f"{path}: write each `extern __shared__ T name[];` on a line of its own "
                           "(the emulator rewrites those lines)")
    return f'#line 1 "{path}"\n{rewritten}'


def _wrapper(source_include: Path, kernels: dict[str, KernelSignature], prelude: Path | None) -> str:
    out = ["// Generated by experiments/runtime/emulator.py: the launch entry points of one kernel file.",
           "// Built with -fvisibility=hidden: only these functions are exported.",
           *([f'#include "{prelude}"'] if prelude else []),
           f'#include "{source_include}"', "",
           '#define CONVBENCH_EXPORT extern "C" __attribute__((visibility("default")))',
           "CONVBENCH_EXPORT const char* convbench_last_error() { return convbench::emu::last_error; }",
           "CONVBENCH_EXPORT int convbench_warp_size() { return warpSize; }", ""]
    for k in kernels.values():
        if k.unsupported:
            continue
        decls, args = [], []
        for i, p in enumerate(k.params):
            if not p.pointer and p.dtype == numpy.float16:
                decls.append(f"unsigned short a{i}")
                args.append(f"__builtin_bit_cast(__half, a{i})")
            else:
                decls.append(f"{p.ctype} a{i}")
                args.append(f"a{i}")
        params = "".join(f", {d}" for d in decls)
        bounds = f"static_cast<long long>({k.bounds})" if k.bounds else str(MAX_THREADS_PER_BLOCK)
        out += [
            f"CONVBENCH_EXPORT long long convbench_max_threads_{k.name}() {{ return {bounds}; }}",
            f"CONVBENCH_EXPORT int convbench_launch_{k.name}(unsigned gx, unsigned gy, unsigned gz, "
            f"unsigned bx, unsigned by, unsigned bz, unsigned long long shared, int workers, "
            f"unsigned long long first, unsigned long long end, double timeout_s{params}) {{",
            f'    return convbench::emu::launch("{k.name}", dim3(gx, gy, gz), dim3(bx, by, bz), shared, workers,',
            f"                                  first, end, timeout_s,"
            f"                                  [=] {{ {k.name}({', '.join(args)}); }});",
            "}", ""]
    return "\n".join(out)


_compile_locks: dict[str, threading.Lock] = {}
_compile_locks_guard = threading.Lock()
_libraries: dict[str, ctypes.CDLL] = {}
compile_count = 0  # compilations run by this process (tests read it)


def _build(path: Path, text: str, kernels: dict[str, KernelSignature], defines: dict[str, Any] | None,
           warp_size: int, prelude: Path | None = None) -> tuple[Path, bool]:
    """The shared library for this source and defines, compiled if the cache lacks it."""
    global compile_count
    cxx, cxx_version = _compiler()
    flags = (*_base_flags(), f"-DCONVBENCH_WARP_SIZE={warp_size}", *_define_flags(defines),
             *([f"-I{prelude.parent}"] if prelude else []),
             f"-I{HIP_DIR}", f"-I{path.parent}")
    digest = hashlib.sha256()
    for part in (str(path), text, cxx_version, kernel_source_hash(), *flags):
        digest.update(part.encode())
        digest.update(b"\0")
    digest.update(Path(__file__).read_bytes())
    if path.parent != HIP_DIR:  # headers next to a kernel outside hip/ (tests/kernels)
        for header in sorted(path.parent.glob("*.h")):
            digest.update(header.read_bytes())
    key = digest.hexdigest()[:20]
    directory = cache_dir()
    base = directory / f"{path.stem}-{key}"
    library = base.with_suffix(".so")

    with _compile_locks_guard:
        lock = _compile_locks.setdefault(str(library), threading.Lock())
    with lock:
        if library.is_file():
            return library, False
        directory.mkdir(parents=True, exist_ok=True)
        include = path
        rewritten = _rewrite_extern_shared(text, path)
        if rewritten is not None:
            include = base.with_suffix(".src.hip")
            _write_atomic(include, rewritten)
        tmp = f".{os.getpid()}.{threading.get_ident()}.tmp"
        wrapper = Path(str(base) + tmp + ".cpp")
        wrapper.write_text(_wrapper(include, kernels, prelude))
        output = Path(str(base) + tmp + ".so")
        command = [cxx, *flags, "-o", str(output), str(wrapper), "-ldl"]
        result = subprocess.run(command, capture_output=True, text=True,
                                env={**os.environ, "LC_ALL": "C"})  # ASCII quotes in messages
        compile_count += 1
        os.replace(wrapper, base.with_suffix(".cpp"))  # kept next to the library, for reading
        if result.returncode != 0:
            output.unlink(missing_ok=True)
            raise CompileError(
                f"g++ failed to compile {path.name} for the emulator (defines {dict(defines or {})}, "
                f"warp size {warp_size}):\n{' '.join(command)}\n{result.stdout}{result.stderr}".replace(
                    str(wrapper), str(base.with_suffix(".cpp"))))
        os.replace(output, library)
        return library, True


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _open_library(library: Path) -> ctypes.CDLL:
    with _compile_locks_guard:
        lib = _libraries.get(str(library))
        if lib is None:
            lib = ctypes.CDLL(str(library))
            lib.convbench_last_error.restype = ctypes.c_char_p
            lib.convbench_last_error.argtypes = []
            _libraries[str(library)] = lib
        return lib


# ---------------------------------------------------------------------------------------------
# Launching
# ---------------------------------------------------------------------------------------------

def _dims(value: Any, what: str, limits: Sequence[int]) -> tuple[int, int, int]:
    if not isinstance(value, (tuple, list)) or not 1 <= len(value) <= 3:
        raise ValueError(f"{what} must be a tuple of 1 to 3 ints, got {value!r}")
    dims = []
    for v in value:
        if isinstance(v, (bool, numpy.bool_)) or not isinstance(v, (int, numpy.integer)):
            raise ValueError(f"{what} must be a tuple of 1 to 3 ints, got {value!r}")
        dims.append(int(v))
    dims += [1] * (3 - len(dims))
    for axis, (v, limit) in enumerate(zip(dims, limits)):
        if not 1 <= v <= limit:
            raise ValueError(f"{what}={tuple(value)!r}: {'xyz'[axis]} must be in 1..{limit}")
    return dims[0], dims[1], dims[2]


def _guard_bytes(span: int) -> int:
    """Guard zone on each side: as large as the array, at least 4 KiB, at most 1 MiB."""
    return (min(max(span, 4096), 1 << 20) + 63) // 64 * 64


@lru_cache(maxsize=256)
def _canary(dtype_str: str, salt: int, nbytes: int) -> numpy.ndarray:
    """A pattern no kernel writes by chance: NaNs with a position-dependent payload for floats."""
    dtype = numpy.dtype(dtype_str)
    if dtype.kind == "f" and dtype.itemsize in (2, 4, 8) and nbytes % dtype.itemsize == 0:
        n = nbytes // dtype.itemsize
        h = (numpy.arange(n, dtype=numpy.uint64) * numpy.uint64(2654435761) + numpy.uint64(salt * 40503 + 1))
        if dtype.itemsize == 2:
            words = (numpy.uint64(0x7E00) | (h & numpy.uint64(0x1FF))).astype(numpy.uint16)
        elif dtype.itemsize == 4:
            words = (numpy.uint64(0x7FC00000) | (h & numpy.uint64(0x3FFFFF))).astype(numpy.uint32)
        else:
            words = numpy.uint64(0x7FF8000000000000) | ((h * numpy.uint64(0x9E3779B97F4A7C15)) >> numpy.uint64(13))
        pattern = words.view(numpy.uint8)
    else:
        pattern = numpy.random.default_rng(salt).integers(0, 256, nbytes, dtype=numpy.uint8)
    pattern.flags.writeable = False
    return pattern


def _address(a: numpy.ndarray) -> int:
    return a.__array_interface__["data"][0]


class _Guarded:
    """Copies of the array arguments inside guard zones; overlapping arrays share one copy."""

    def __init__(self, kernel: str, arrays: list[tuple[int, Param, numpy.ndarray]]) -> None:
        self.kernel = kernel
        self.pointers: dict[int, int] = {}
        self.groups = []  # (buffer, guard, lo, hi, members)
        ranges = sorted(((_address(a), _address(a) + a.nbytes, i, p, a) for i, p, a in arrays),
                        key=lambda r: (r[0], r[1]))
        merged: list[list] = []
        for lo, hi, i, p, a in ranges:
            if merged and a.nbytes and merged[-1][1] > lo and merged[-1][1] > merged[-1][0]:
                merged[-1][1] = max(merged[-1][1], hi)
                merged[-1][2].append((lo, hi, i, p, a))
            else:
                merged.append([lo, hi, [(lo, hi, i, p, a)]])
        for lo, hi, members in merged:
            span = hi - lo
            guard = _guard_bytes(span)
            buffer = numpy.empty(2 * guard + span + 64, dtype=numpy.uint8)
            start = guard + (-(_address(buffer) + guard)) % 64  # the interior, 64-byte aligned
            first = members[0]
            salt = first[2]
            front = _canary(first[4].dtype.str, 2 * salt, guard)
            back = _canary(first[4].dtype.str, 2 * salt + 1, guard)
            buffer[start - guard:start] = front
            buffer[start + span:start + span + guard] = back
            if span:
                ctypes.memmove(_address(buffer) + start, lo, span)
            for m_lo, _, i, _, _ in members:
                self.pointers[i] = _address(buffer) + start + (m_lo - lo)
            self.groups.append((buffer, guard, start, lo, hi, members, front, back))

    def finish(self) -> None:
        """Copy the results back, then raise OutOfBoundsError if a canary was overwritten."""
        problems = []
        for buffer, guard, start, lo, hi, members, front, back in self.groups:
            for m_lo, m_hi, _, p, _ in members:
                if not p.const and m_hi > m_lo:
                    ctypes.memmove(m_lo, _address(buffer) + start + (m_lo - lo), m_hi - m_lo)
            span = hi - lo
            before = buffer[start - guard:start]
            after = buffer[start + span:start + span + guard]
            if not numpy.array_equal(before, front):
                bad = numpy.flatnonzero(before != front)
                _, _, _, p, a = members[0]
                first, last = (int(bad[0]) - guard) // a.itemsize, (int(bad[-1]) - guard) // a.itemsize
                problems.append(self._describe(members, p, a, f"elements [{first}..{last}] before its start"))
            if not numpy.array_equal(after, back):
                bad = numpy.flatnonzero(after != back)
                m_lo, _, _, p, a = max(members, key=lambda m: m[1])
                offset = hi - m_lo
                first, last = (offset + int(bad[0])) // a.itemsize, (offset + int(bad[-1])) // a.itemsize
                problems.append(self._describe(members, p, a, f"elements [{first}..{last}] past its end"))
        if problems:
            raise OutOfBoundsError(f"kernel {self.kernel!r} wrote out of bounds: " + "; ".join(problems))

    @staticmethod
    def _describe(members, p: Param, a: numpy.ndarray, where: str) -> str:
        text = f"argument {p.name!r} ({p.ctype}, {a.size} elements of {a.dtype}): {where}"
        if len(members) > 1:
            text += f" (it shares memory with {', '.join(repr(m[3].name) for m in members if m[3] is not p)})"
        return text


_PROBE_PATTERN = 0xA5   # what the probe fills written arrays with: a byte no kernel result is made of


@dataclass(frozen=True)
class BlockProbe:
    """One launch seen block by block (EmulatorRuntime(probe_blocks=True)): the blocks that wrote nothing."""

    kernel: str
    grid: tuple
    block: tuple
    blocks: int
    idle: tuple          # (x, y, z) of every block that wrote nothing


class EmulatorFunction:
    """One kernel, called like CuPy's RawKernel: ``fn(grid, block, args, shared_mem=0)``."""

    def __init__(self, module: EmulatorModule, signature: KernelSignature) -> None:
        self.module = module
        self.signature = signature
        self.name = signature.name
        self.params = signature.params
        lib = module._lib
        self._launch = lib[f"convbench_launch_{self.name}"]
        self._launch.restype = ctypes.c_int
        self._launch.argtypes = ([ctypes.c_uint] * 6 + [ctypes.c_ulonglong, ctypes.c_int, ctypes.c_ulonglong,
                                                     ctypes.c_ulonglong, ctypes.c_double]
                                 + [ctypes.c_void_p if p.pointer else _CTYPES_OF_DTYPE[p.dtype.name]
                                    for p in self.params])
        max_threads = lib[f"convbench_max_threads_{self.name}"]
        max_threads.restype = ctypes.c_longlong
        self.max_threads_per_block = int(max_threads())

    def __repr__(self) -> str:
        return f"<EmulatorFunction {self.signature.describe()} from {self.module.source.name}>"

    def __call__(self, grid: tuple, block: tuple, args: tuple, shared_mem: int = 0) -> None:
        grid3 = _dims(grid, "grid", MAX_GRID_DIM)
        block3 = _dims(block, "block", MAX_BLOCK_DIM)
        threads = block3[0] * block3[1] * block3[2]
        if threads > min(MAX_THREADS_PER_BLOCK, self.max_threads_per_block):
            limit = (f"__launch_bounds__({self.max_threads_per_block}) of kernel {self.name!r}"
                     if self.max_threads_per_block < MAX_THREADS_PER_BLOCK else
                     f"the limit of {MAX_THREADS_PER_BLOCK}")
            raise ValueError(f"block={tuple(block)!r} has {threads} threads, more than {limit}")
        if not isinstance(shared_mem, (int, numpy.integer)) or not 0 <= shared_mem <= MAX_DYNAMIC_SHARED_BYTES:
            raise ValueError(f"shared_mem must be 0..{MAX_DYNAMIC_SHARED_BYTES} bytes, got {shared_mem!r}")
        values, arrays = self._convert(args)
        guarded = _Guarded(self.name, arrays) if self.module.checked and arrays else None
        if guarded is not None:
            for i, pointer in guarded.pointers.items():
                values[i] = pointer
        rc = self._launch(*grid3, *block3, int(shared_mem), self.module.threads, 0, 0, self.module.timeout_s(),
                          *values)
        if rc == -2:   # stopped by the watchdog: what it wrote meanwhile is not a result
            raise KernelTimeoutError(self.module._lib.convbench_last_error().decode(errors="replace"))
        if guarded is not None:
            guarded.finish()
        if rc != 0:
            message = self.module._lib.convbench_last_error().decode(errors="replace")
            raise EmulatorError(f"kernel {self.name!r} (grid {grid3}, block {block3}): {message}")
        if self.module.probes is not None:
            self.module.probes.append(self._probe(grid3, block3, args, int(shared_mem)))

    def _probe(self, grid3: tuple, block3: tuple, args: tuple, shared_mem: int) -> "BlockProbe":
        """Run the launch again one block at a time on copies of its arrays, the written ones filled with
        a pattern, and note the blocks that write nothing: a block that does no work."""
        values, arrays = self._convert(args)
        copies = []
        for i, p, a in arrays:
            copy = numpy.array(a, copy=True)
            if not p.const:
                copy.view(numpy.uint8)[...] = _PROBE_PATTERN
            copies.append((p, copy))
            values[i] = _address(copy)
        written = [copy.view(numpy.uint8).reshape(-1) for p, copy in copies if not p.const]
        idle = []
        blocks = grid3[0] * grid3[1] * grid3[2]
        for b in range(blocks):
            before = [w.copy() for w in written]
            if self._launch(*grid3, *block3, shared_mem, 1, b, b + 1, self.module.timeout_s(), *values) != 0:
                message = self.module._lib.convbench_last_error().decode(errors="replace")
                raise EmulatorError(f"kernel {self.name!r} (probe of block {b}): {message}")
            if all(numpy.array_equal(w, old) for w, old in zip(written, before)):
                idle.append((b % grid3[0], b // grid3[0] % grid3[1], b // (grid3[0] * grid3[1])))
        return BlockProbe(self.name, grid3, block3, blocks, tuple(idle))

    def _convert(self, args: tuple) -> tuple[list, list[tuple[int, Param, numpy.ndarray]]]:
        if not isinstance(args, (tuple, list)):
            raise TypeError(f"args must be a tuple of arrays and numpy scalars, got {type(args).__name__}")
        if len(args) != len(self.params):
            raise TypeError(f"kernel {self.name!r} takes {len(self.params)} arguments, got {len(args)}: "
                            f"{self.signature.describe()}")
        values: list = []
        arrays = []
        for i, (p, v) in enumerate(zip(self.params, args)):
            where = f"argument {i} {p.name!r} ({p.ctype}) of kernel {self.name!r}"
            if p.pointer:
                if not isinstance(v, numpy.ndarray):
                    raise TypeError(f"{where} is a pointer: pass a numpy array, got {_describe_value(v)}")
                if p.dtype is not None and v.dtype != p.dtype:
                    raise TypeError(f"{where} needs a {p.dtype} array, got a {v.dtype} array")
                if not v.flags.c_contiguous:
                    raise ValueError(f"{where}: the array is not C-contiguous (strides {v.strides}); "
                                     "pass numpy.ascontiguousarray(...)")
                if not p.const and not v.flags.writeable:
                    raise ValueError(f"{where}: the array is read-only but the kernel may write through "
                                     "this pointer (declare it const if it only reads)")
                if v.itemsize and _address(v) % min(v.itemsize, 16):
                    raise ValueError(f"{where}: the array's data is not aligned to its {v.itemsize}-byte items")
                values.append(_address(v))
                arrays.append((i, p, v))
            else:
                if not isinstance(v, numpy.generic) or v.dtype != p.dtype:
                    hint = ""
                    if isinstance(v, (int, float)) and not isinstance(v, bool):
                        hint = (f" (CuPy would pass a Python {type(v).__name__} as a 64-bit value, "
                                "which is wrong for this parameter on a GPU)")
                    raise TypeError(f"{where}: pass numpy.{p.dtype.name}(...), got {_describe_value(v)}{hint}")
                if p.dtype == numpy.float16:
                    values.append(int(v.view(numpy.uint16)))
                elif p.dtype.kind == "f":
                    values.append(float(v))
                elif p.dtype.kind == "b":
                    values.append(bool(v))
                else:
                    values.append(int(v))
        return values, arrays


def _describe_value(v: Any) -> str:
    if isinstance(v, numpy.generic):
        return f"numpy.{v.dtype.name}({v.item()!r})"
    if isinstance(v, numpy.ndarray):
        return f"a {v.dtype} array"
    return f"{type(v).__module__}.{type(v).__name__}".removeprefix("builtins.") + f" {v!r}"[:60]


class EmulatorModule:
    """The compiled kernels of one source file with one set of defines (like cupy.RawModule)."""

    def __init__(self, source: Path, defines: dict[str, Any], warp_size: int, checked: bool, threads: int,
                 kernels: dict[str, KernelSignature], library: Path, compiled: bool,
                 probes: list | None = None, runtime: "EmulatorRuntime | None" = None) -> None:
        self.source = source
        self.defines = dict(defines)
        self.warp_size = warp_size
        self.checked = checked
        self.threads = threads
        self.kernels = kernels
        self.library_path = library
        self.compiled = compiled  # True when this load ran g++, False when the build cache had it
        self.runtime = runtime    # its kernel_timeout_s applies to every launch
        self.probes = probes      # the runtime's BlockProbe list when it probes launches, else None
        self._lib = _open_library(library)
        self._functions: dict[str, EmulatorFunction] = {}

    def timeout_s(self) -> float:
        """The runtime's kernel_timeout_s as the launch takes it (0: no limit)."""
        return float(self.runtime.kernel_timeout_s or 0) if self.runtime is not None else 0.0

    def get_function(self, name: str) -> EmulatorFunction:
        fn = self._functions.get(name)
        if fn is not None:
            return fn
        signature = self.kernels.get(name)
        if signature is None:
            raise UnknownKernelError(f"no kernel {name!r} in {self.source.name}; available: "
                                     f"{', '.join(self.kernels) or 'none (no KERNEL void name(...) {{ found)'}")
        if signature.unsupported:
            raise EmulatorError(f"kernel {name!r} of {self.source.name} cannot run in the emulator: "
                                f"{signature.unsupported}")
        fn = self._functions[name] = EmulatorFunction(self, signature)
        return fn


def _default_threads() -> int:
    env = os.environ.get("CONVBENCH_EMULATOR_THREADS")
    if env:
        try:
            n = int(env)
        except ValueError:
            n = 0
        if n < 1:
            raise ValueError(f"CONVBENCH_EMULATOR_THREADS={env!r} must be a positive integer")
        return n
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


class EmulatorRuntime:
    """The kernels of hip/ compiled for the CPU (g++ and hip/emulator/hip_cpu.h), on numpy arrays.

    warp_size: the value of warpSize in the kernels, 32 (NVIDIA) or 64 (AMD CDNA).
    checked:   guard zones around every array argument; out-of-bounds writes raise OutOfBoundsError.
    threads:   worker threads per launch (default: $CONVBENCH_EMULATOR_THREADS, else the usable cores).
    kernel_timeout_s: a launch running longer is stopped and raises KernelTimeoutError (None: no limit;
               the harness sets it from bench.kernel_timeout_s).
    probe_blocks: after each launch, run it again one block at a time and record in ``probes`` (BlockProbe)
               the blocks that wrote nothing: a grid larger than its work shows there (tests only: slow).
    """

    name = "emulator"
    kind = "emulated"
    xp = numpy
    is_gpu = False
    has_kernels = True
    emulated = True     # its times are no performance: correctness tables only, never ranked

    def __init__(self, warp_size: int = 32, *, checked: bool = True, threads: int | None = None,
                 probe_blocks: bool = False) -> None:
        if isinstance(warp_size, bool) or warp_size not in VALID_WARP_SIZES:
            raise ValueError(f"warp_size={warp_size!r} is not supported; valid: "
                             f"{', '.join(map(str, VALID_WARP_SIZES))}")
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise ValueError(f"threads={threads!r} must be a positive integer")
        self.warp_size = int(warp_size)
        self.checked = bool(checked)
        self.threads = threads if threads is not None else _default_threads()
        self.kernel_timeout_s: float | None = None
        # its workers run the kernels' blocks; numpy (BLAS GEMMs of the vendor variants) beside torch:
        self.execution = f"{self.threads} kernel worker threads; {cpu_execution()}"
        self._modules: dict[tuple, EmulatorModule] = {}
        self._lock = threading.Lock()
        self.probes: list[BlockProbe] | None = [] if probe_blocks else None

    def __repr__(self) -> str:
        return f"EmulatorRuntime(warp_size={self.warp_size}, checked={self.checked}, threads={self.threads})"

    def load(self, source: str | os.PathLike, defines: dict[str, int] | None = None, *,
             prelude: Path | None = None) -> EmulatorModule:
        """Compile (or take from the build cache) a kernel file: a name in hip/ or an absolute path.

        Each (source, defines) is read once per runtime instance (the launch code calls load before
        every launch); a new instance sees edits made to the sources since. ``prelude``: a header
        included before the source (a user's kernel file: hip/custom/convbench_custom.h).
        """
        path = _resolve_source(source)
        _define_flags(defines)  # validate before using them as a key
        key = (str(path), tuple(sorted((defines or {}).items())), str(prelude))
        with self._lock:
            module = self._modules.get(key)
            if module is None:
                text = path.read_text()
                kernels = parse_kernels(text)
                library, compiled = _build(path, text, kernels, defines, self.warp_size, prelude)
                module = self._modules[key] = EmulatorModule(
                    path, defines or {}, self.warp_size, self.checked, self.threads, kernels, library, compiled,
                    self.probes, self)
            return module

    def device_name(self) -> str:
        return f"{cpu_name()} (emulated, warp {self.warp_size})"

    def synchronize(self) -> None:
        pass  # launches are synchronous


__all__ = ["BlockProbe", "CompileError", "EmulatorError", "EmulatorFunction", "EmulatorModule", "EmulatorRuntime",
           "KernelSignature", "KernelTimeoutError", "OutOfBoundsError", "Param", "UnknownKernelError", "VALID_WARP_SIZES",
           "cache_dir", "parse_kernels"]
