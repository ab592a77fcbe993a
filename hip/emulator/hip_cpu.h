// hip_cpu.h: the HIP/CUDA common subset of hip/common.h, compiled by g++ for the CPU.
//
// experiments/runtime/emulator.py compiles a kernel file with -DCONVBENCH_EMULATOR, which makes
// common.h include this header, plus a generated wrapper that launches each kernel through
// convbench::emu::launch(). Everything lives in this one header (no separate runtime library):
// each kernel build is a single translation unit, one shared library per (source, defines).
//
// The execution model
// -------------------
// A launch hands the blocks of the grid to a small pool of worker threads (the calling thread
// is worker 0). A worker runs one whole block at a time, so `__shared__` can simply be
// `static thread_local`: every worker has its own copy, used by the blocks it runs in turn.
// Each GPU thread of the block is a *fiber*: a C++ call stack of its own (64 KiB), created once per
// worker with makecontext and from then on entered and left
// with _setjmp/_longjmp (no signal-mask syscall, ~10x faster than swapcontext). The worker's
// own stack runs the scheduler:
//
//       worker stack                fiber 0      fiber 1     ...   fiber n-1
//   +------------------+
//   | run_block:       |  resume --> kernel ...
//   |  phase 1         |            __syncthreads
//   |                  |  <-- yield
//   |                  |  resume ---------------> kernel ...
//   |                  |                          __syncthreads
//   |                  |  <-- yield
//   |                  |   ...                                     (all n at the barrier)
//   |  phase 2         |  resume --> (returns from __syncthreads) ... finishes
//   |                  |  <-- done
//   |                  |  resume ---------------> ... finishes
//   |                  |  <-- done                                 (all n done: next block)
//   +------------------+
//
// Fiber 0 runs until it reaches a barrier (or the end of the kernel), then fiber 1, and so on;
// when all n have arrived, a new phase resumes them in the same order. The order is fixed, so
// a race is reproducible: a missing __syncthreads() makes fiber 0 read shared memory that the
// others have not written yet (NaN, see below), the same wrong answer on every run. A phase in
// which some threads finished while others wait at a barrier is a divergent barrier (undefined
// on a GPU, a hang or garbage there): the launch fails with an error naming the block and threads.
//
// A fiber's body is a loop: run the kernel for the worker's current block, report "done",
// yield; the next block resumes it at the top of the loop. So makecontext happens only the
// first time a worker needs a fiber, and the stacks are reused by every later block and launch.
//
// What differs from a GPU, on purpose or not:
//   - no warps: threads never run in lockstep, warpSize is only a constant (-DCONVBENCH_WARP_SIZE)
//   - shared memory, undefined at the start of a block on a GPU, is filled with 0xFF bytes here
//     (NaN floats, -1 ints) before every block: reading it before writing it shows, reproducibly
//   - extern __shared__ (dynamic shared memory) is rewritten by the loader into a pointer to a
//     per-worker buffer of shared_mem bytes
//   - no thread_local of this library may have a constructor or destructor (they are all
//     overwritten by that fill; the runtime saves and restores its own)
//   - atomicAdd, the one atomic the kernels use, is real (GCC's __atomic builtins): blocks of
//     one launch run concurrently
//
// Only C headers and <type_traits> are included, with pthreads and __atomic builtins instead of
// <thread>/<atomic>/<string>: the C++ library headers would triple the compile time of a kernel.
#pragma once

#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/mman.h>
#include <type_traits>
#include <ucontext.h>
#include <unistd.h>

#ifndef CONVBENCH_WARP_SIZE
#define CONVBENCH_WARP_SIZE 32
#endif
static_assert(CONVBENCH_WARP_SIZE == 32 || CONVBENCH_WARP_SIZE == 64,
              "CONVBENCH_WARP_SIZE must be 32 (NVIDIA warp) or 64 (AMD CDNA wavefront)");

#ifndef CONVBENCH_FIBER_STACK_BYTES
#define CONVBENCH_FIBER_STACK_BYTES (64 * 1024)
#endif

// ---- qualifiers (defined after every system header: glibc spells __attribute__((__noinline__))) ----
#define __global__
#define __device__
#define __host__
#define __constant__
#define __forceinline__ __attribute__((always_inline)) inline
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __shared__ static thread_local

// ---- vector types ----
struct uint3 { unsigned int x, y, z; };
struct dim3 {
    unsigned int x, y, z;
    constexpr dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
    constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
    constexpr operator uint3() const { return {x, y, z}; }
};
struct __attribute__((aligned(16))) float4 { float x, y, z, w; };  // the GEMM ladder's 128-bit loads
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }

// ---- the built-in variables: per OS thread, set by the scheduler before it resumes a fiber ----
inline thread_local uint3 threadIdx;
inline thread_local uint3 blockIdx;
inline thread_local uint3 blockDim;
inline thread_local uint3 gridDim;
constexpr int warpSize = CONVBENCH_WARP_SIZE;

// ---- half precision ----
typedef _Float16 __half;
typedef _Float16 half;
inline __half __float2half_rn(float x) { return static_cast<__half>(x); }
inline float __half2float(__half x) { return static_cast<float>(x); }

// ---- min/max and __umulhi (the float functions, fmaf among them, come from <math.h>) ----
template <class A, class B, class = std::enable_if_t<std::is_arithmetic_v<A> && std::is_arithmetic_v<B>>>
inline std::common_type_t<A, B> min(A a, B b) {
    using T = std::common_type_t<A, B>;
    return static_cast<T>(b) < static_cast<T>(a) ? static_cast<T>(b) : static_cast<T>(a);
}
template <class A, class B, class = std::enable_if_t<std::is_arithmetic_v<A> && std::is_arithmetic_v<B>>>
inline std::common_type_t<A, B> max(A a, B b) {
    using T = std::common_type_t<A, B>;
    return static_cast<T>(a) < static_cast<T>(b) ? static_cast<T>(b) : static_cast<T>(a);
}

inline unsigned int __umulhi(unsigned int a, unsigned int b) {  // fast_div in common.h
    return static_cast<unsigned int>((static_cast<unsigned long long>(a) * b) >> 32);
}

// ---- atomics: blocks run concurrently on the workers, so these are real atomic operations ----
namespace convbench::emu {
template <class T, class F> inline T atomic_update(T* p, F f) {  // compare-and-swap loop, any 1..8-byte T
    T old, desired;
    __atomic_load(p, &old, __ATOMIC_RELAXED);
    do desired = f(old);
    while (!__atomic_compare_exchange(p, &old, &desired, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED));
    return old;
}
}  // namespace convbench::emu

template <class T> inline T atomicAdd(T* p, std::type_identity_t<T> v) {
    if constexpr (std::is_integral_v<T>)
        return __atomic_fetch_add(p, v, __ATOMIC_RELAXED);
    else
        return convbench::emu::atomic_update(p, [v](T old) { return static_cast<T>(old + v); });
}

// ---- the runtime: fibers, the block scheduler, the worker pool, launch() ----
namespace convbench::emu {

struct Fiber {  // what a switch touches comes first (one or two cache lines)
    enum State { Running, AtBarrier, Done, Trapped, TimedOut };
    State state;
    int predicate;              // the argument of __syncthreads_count/_and/_or
    bool started;
    jmp_buf context;            // where the fiber continues when resumed (valid once started)
    unsigned char* stack;       // its lowest address holds the canary (stacks grow down)
    size_t stack_bytes;
    ucontext_t start;           // only for the first entry onto the fresh stack (makecontext)
};

struct Launch {
    const char* kernel;
    void (*body)(void*);        // calls the kernel with its arguments (the wrapper's lambda)
    void* closure;
    dim3 grid, block;
    size_t shared_bytes;
    unsigned long long blocks;
    unsigned long long next;    // the next block to hand out (atomic)
    bool failed;                // (atomic) the first failure writes `error`, the others stop
    bool timed_out;             // (atomic) set by the watchdog: the workers leave their fibers
    double timeout_s;           // 0: no time limit
    pthread_t* threads;         // the workers of this launch (index 0: the caller), for the watchdog
    unsigned thread_count;      // (atomic) how many have registered
    char error[1024];

    template <class... Args> void fail(const char* format, Args... args) {
        bool expected = false;
        if (__atomic_compare_exchange_n(&failed, &expected, true, false, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
            snprintf(error, sizeof error, format, args...);
    }
};

// The fiber stacks of a worker lie side by side in a few large mappings (one per growth), a guard
// page below each mapping: one mapping each would cost two kernel memory areas per fiber, and a
// process that loads many kernel builds of 1024-thread blocks would run into vm.max_map_count
// (65530 by default). A stack that overflows into its neighbour is caught by the canary at its
// bottom, checked each time the fiber yields (the launch fails, naming the thread).
struct StackChunk { void* mapping; size_t bytes; };
constexpr unsigned char STACK_CANARY = 0xA5;
constexpr size_t STACK_CANARY_BYTES = 64;

struct Worker {
    jmp_buf scheduler;          // where a yielding fiber returns to (inside run_block)
    Fiber** fibers;
    unsigned fiber_count, fiber_capacity;
    StackChunk* chunks;
    unsigned chunk_count;
    Fiber* current;
    Launch* launch;
    int barrier_result;         // count of true predicates at the last barrier
    unsigned char* dynamic_shared;
    size_t dynamic_shared_bytes;
    unsigned char* tls_block;   // this thread's copy of the library's thread-locals (__shared__ among them)
    bool tls_block_known;
    volatile sig_atomic_t in_fiber;  // a fiber runs on this worker (the watchdog's signal may leave it)

    ~Worker() {
        for (unsigned i = 0; i < fiber_count; ++i) free(fibers[i]);
        for (unsigned i = 0; i < chunk_count; ++i) munmap(chunks[i].mapping, chunks[i].bytes);
        free(fibers);
        free(chunks);
        free(dynamic_shared);
    }
};

// Every thread-local of this library must be trivial (no constructor, destructor or guard): the
// scheduler overwrites all of them at the start of each block (see poison_shared_memory).
inline thread_local Worker* tls_worker;  // fast to reach from a barrier

inline Worker& this_worker() {
    static pthread_key_t owner;  // its destructor frees the fibers when a thread that launched exits
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    if (!tls_worker) {
        pthread_once(&once, [] { pthread_key_create(&owner, [](void* w) { delete static_cast<Worker*>(w); }); });
        tls_worker = new Worker{};
        pthread_setspecific(owner, tls_worker);
    }
    return *tls_worker;
}

// The thread-local storage of this shared library: every `__shared__` array (static thread_local)
// lives in it, next to the few thread-locals of this runtime. glibc tells where the calling
// thread's copy starts (dlinfo RTLD_DI_TLS_DATA) and the ELF program header how long it is.
inline void* this_library() {
    static void* handle = [] {
        Dl_info info;
        if (!dladdr(reinterpret_cast<void*>(&this_library), &info)) return static_cast<void*>(nullptr);
        return dlopen(info.dli_fname, RTLD_LAZY | RTLD_NOLOAD);
    }();
    return handle;
}

inline size_t tls_segment_bytes() {
    static size_t bytes = [] {
        size_t modid = 0;
        if (!this_library() || dlinfo(this_library(), RTLD_DI_TLS_MODID, &modid) != 0 || modid == 0) return size_t{0};
        struct Search { size_t modid, bytes; } search{modid, 0};
        dl_iterate_phdr([](dl_phdr_info* info, size_t, void* data) {
            auto* s = static_cast<Search*>(data);
            if (info->dlpi_tls_modid != s->modid) return 0;
            for (int i = 0; i < info->dlpi_phnum; ++i)
                if (info->dlpi_phdr[i].p_type == PT_TLS) s->bytes = info->dlpi_phdr[i].p_memsz;
            return 1;
        }, &search);
        return search.bytes;
    }();
    return bytes;
}

// Shared memory on a GPU holds whatever the previous block left: undefined. Here every block
// starts with all of it (static and dynamic) filled with 0xFF bytes, a NaN in every float and -1
// in every int, so that reading shared memory before writing it shows, and shows the same on
// every run whatever worker ran the block before. The runtime's own thread-locals are restored.
inline void poison_shared_memory(Worker& worker, const Launch& launch) {
    if (!worker.tls_block_known) {
        worker.tls_block_known = true;
        void* block = nullptr;
        if (this_library() && tls_segment_bytes() && dlinfo(this_library(), RTLD_DI_TLS_DATA, &block) == 0) {
            auto begin = reinterpret_cast<uintptr_t>(block), ours = reinterpret_cast<uintptr_t>(&tls_worker);
            if (block && begin <= ours && ours < begin + tls_segment_bytes())  // is it really this library's?
                worker.tls_block = static_cast<unsigned char*>(block);
        }
    }
    if (worker.tls_block) {
        Worker* keep = tls_worker;
        memset(worker.tls_block, 0xFF, tls_segment_bytes());
        tls_worker = keep;
        blockDim = launch.block;
        gridDim = launch.grid;
    }
    if (launch.shared_bytes) memset(worker.dynamic_shared, 0xFF, launch.shared_bytes);
}

// Leave the fiber (its registers saved in `from`) for `to`. Not inlined: the compiler must treat
// it as a call that may read and write any memory (shared arrays change while a fiber is away).
__attribute__((noinline)) inline void switch_to(jmp_buf from, jmp_buf to) {
    if (_setjmp(from) == 0) _longjmp(to, 1);
}

[[noreturn]] inline void fiber_main() {
    Worker& worker = *tls_worker;
    Fiber* self = worker.current;
    for (;;) {
        worker.launch->body(worker.launch->closure);
        self->state = Fiber::Done;
        switch_to(self->context, worker.scheduler);  // resumed here for the next block
    }
}

// Enter fiber f from the scheduler; returns when f yields at a barrier or finishes its block.
__attribute__((noinline)) inline void resume(Worker& worker, Fiber* f) {
    worker.current = f;
    if (_setjmp(worker.scheduler) == 0) {
        worker.in_fiber = 1;
        if (!f->started) {  // first entry (or a restart after a failed block): a fresh stack
            memset(f->stack, STACK_CANARY, STACK_CANARY_BYTES);  // an overflow of the last launch is forgiven
            getcontext(&f->start);
            f->start.uc_stack.ss_sp = f->stack + STACK_CANARY_BYTES;
            f->start.uc_stack.ss_size = f->stack_bytes - STACK_CANARY_BYTES;
            f->start.uc_link = nullptr;
            makecontext(&f->start, reinterpret_cast<void (*)()>(&fiber_main), 0);
            f->started = true;
            setcontext(&f->start);
        }
        _longjmp(f->context, 1);
    }
    worker.in_fiber = 0;
}

// Make the worker's fiber count n: the new stacks in one mapping, a guard page below them.
inline bool make_fibers(Worker& worker, unsigned n) {
    if (worker.fiber_count >= n) return true;
    const unsigned add = n - worker.fiber_count;
    if (n > worker.fiber_capacity) {
        auto grown = static_cast<Fiber**>(realloc(worker.fibers, n * sizeof(Fiber*)));
        if (!grown) return false;
        worker.fibers = grown;
        worker.fiber_capacity = n;
    }
    auto chunks = static_cast<StackChunk*>(realloc(worker.chunks, (worker.chunk_count + 1) * sizeof(StackChunk)));
    if (!chunks) return false;
    worker.chunks = chunks;
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    const size_t stack = (CONVBENCH_FIBER_STACK_BYTES + page - 1) / page * page;
    const size_t bytes = page + add * stack;
    void* m = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return false;
    mprotect(m, page, PROT_NONE);  // the lowest stack overflows into a fault, the others into a canary
    worker.chunks[worker.chunk_count++] = StackChunk{m, bytes};
    for (unsigned i = 0; i < add; ++i) {
        auto f = static_cast<Fiber*>(calloc(1, sizeof(Fiber)));
        if (!f) return false;
        f->stack = static_cast<unsigned char*>(m) + page + i * stack;
        f->stack_bytes = stack;
        memset(f->stack, STACK_CANARY, STACK_CANARY_BYTES);
        worker.fibers[worker.fiber_count++] = f;
    }
    return true;
}

inline bool stack_intact(const Fiber* f) {
    for (size_t i = 0; i < STACK_CANARY_BYTES; ++i)
        if (f->stack[i] != STACK_CANARY) return false;
    return true;
}

inline uint3 unflatten(unsigned long long i, dim3 d) {
    return {static_cast<unsigned>(i % d.x), static_cast<unsigned>(i / d.x % d.y),
            static_cast<unsigned>(i / (static_cast<unsigned long long>(d.x) * d.y))};
}

inline void abandon_fibers(Worker& worker) {  // mid-kernel stacks: restart them from scratch next time
    for (unsigned i = 0; i < worker.fiber_count; ++i) worker.fibers[i]->started = false;
}

// Run one block to completion; false (and launch.fail) on a divergent barrier or __trap().
inline bool run_block(Worker& worker, Launch& launch, uint3 block) {
    const dim3 bd = launch.block;
    const unsigned n = bd.x * bd.y * bd.z;
    if (!make_fibers(worker, n)) {
        launch.fail("cannot allocate %u fiber stacks for a block (out of memory?)", n);
        return false;
    }
    poison_shared_memory(worker, launch);
    blockIdx = block;
    for (unsigned i = 0; i < n; ++i) worker.fibers[i]->state = Fiber::Running;

    for (;;) {  // one phase: every thread runs to its next barrier or to its end
        if (__atomic_load_n(&launch.timed_out, __ATOMIC_ACQUIRE)) {  // a block looping over barriers
            abandon_fibers(worker);
            return false;
        }
        unsigned waiting = 0, done = 0, first_waiting = 0, first_done = 0;
        int count = 0;
        uint3 t = {0, 0, 0};
        for (unsigned i = 0; i < n; ++i) {
            Fiber* f = worker.fibers[i];
            threadIdx = t;
            if (++t.x == bd.x) { t.x = 0; if (++t.y == bd.y) { t.y = 0; ++t.z; } }
            resume(worker, f);
            if (!stack_intact(f)) {
                launch.fail("thread (%u,%u,%u) of block (%u,%u,%u) overflowed its %u-byte fiber stack "
                            "(CONVBENCH_FIBER_STACK_BYTES)", threadIdx.x, threadIdx.y, threadIdx.z,
                            block.x, block.y, block.z, static_cast<unsigned>(f->stack_bytes));
                abandon_fibers(worker);
                return false;
            }
            if (f->state == Fiber::TimedOut) {  // the watchdog wrote the failure
                abandon_fibers(worker);
                return false;
            }
            if (f->state == Fiber::AtBarrier) {
                if (waiting++ == 0) first_waiting = i;
                count += f->predicate != 0;
            } else if (f->state == Fiber::Done) {
                if (done++ == 0) first_done = i;
            } else {
                launch.fail("__trap() called by thread (%u,%u,%u) of block (%u,%u,%u)", threadIdx.x,
                            threadIdx.y, threadIdx.z, block.x, block.y, block.z);
                abandon_fibers(worker);
                return false;
            }
        }
        if (waiting == 0) return true;
        if (done != 0) {
            const uint3 w = unflatten(first_waiting, bd), d = unflatten(first_done, bd);
            launch.fail("divergent __syncthreads() in block (%u,%u,%u): %u of %u threads wait at a barrier "
                        "(e.g. thread (%u,%u,%u)) that %u threads never reach: they returned (e.g. thread "
                        "(%u,%u,%u)); every thread of a block must reach each __syncthreads()",
                        block.x, block.y, block.z, waiting, n, w.x, w.y, w.z, done, d.x, d.y, d.z);
            abandon_fibers(worker);
            return false;
        }
        worker.barrier_result = count;
        for (unsigned i = 0; i < n; ++i) worker.fibers[i]->state = Fiber::Running;
    }
}

// The workers take blocks first come, first served: with shared memory reset for every block, no
// result depends on which worker ran which block (except through atomics, as on a GPU).
inline void work(Launch& launch) {
    Worker& worker = this_worker();
    if (launch.threads)
        launch.threads[__atomic_fetch_add(&launch.thread_count, 1U, __ATOMIC_ACQ_REL)] = pthread_self();
    worker.launch = &launch;
    blockDim = launch.block;
    gridDim = launch.grid;
    if (launch.shared_bytes > worker.dynamic_shared_bytes) {
        free(worker.dynamic_shared);
        worker.dynamic_shared = static_cast<unsigned char*>(aligned_alloc(64, (launch.shared_bytes + 63) / 64 * 64));
        worker.dynamic_shared_bytes = worker.dynamic_shared ? launch.shared_bytes : 0;
        if (!worker.dynamic_shared) {
            launch.fail("cannot allocate %zu bytes of dynamic shared memory", launch.shared_bytes);
            return;
        }
    }
    for (;;) {
        if (__atomic_load_n(&launch.failed, __ATOMIC_RELAXED)) break;
        const unsigned long long b = __atomic_fetch_add(&launch.next, 1ULL, __ATOMIC_RELAXED);
        if (b >= launch.blocks || !run_block(worker, launch, unflatten(b, launch.grid))) break;
    }
    worker.launch = nullptr;
}

// ---- the watchdog: a launch that runs past its time limit is stopped, not waited for ----
// A kernel that never ends (a loop whose index never moves) would hold its worker forever, and the
// job with it. With a time limit (launch's timeout_s, bench.kernel_timeout_s), one watchdog thread
// per library waits for the launch's deadline; past it, it fails the launch and sends WATCHDOG_SIGNAL
// to every worker of the launch, again every 100 ms until the launch returns. A worker that is inside
// a fiber leaves it from the signal handler for its scheduler (the same exit as __trap(); the fiber's
// stack is abandoned and restarted next time); one between fibers stops at its next block. The
// handler runs with SA_NODEFER so that the jump out of it leaves the signal unblocked. Every kernel
// library installs its handler once and chains to the one installed before it, which serves the
// workers of the other libraries (each has its own runtime: hidden visibility).
inline int watchdog_signal() { return SIGRTMIN + 4; }
inline struct sigaction previous_action;

inline void on_watchdog_signal(int sig, siginfo_t* info, void* context) {
    Worker* worker = tls_worker;
    if (worker && worker->in_fiber && worker->launch && __atomic_load_n(&worker->launch->timed_out, __ATOMIC_ACQUIRE)) {
        worker->in_fiber = 0;
        worker->current->state = Fiber::TimedOut;
        _longjmp(worker->scheduler, 1);
    }
    if (previous_action.sa_flags & SA_SIGINFO) {
        if (previous_action.sa_sigaction) previous_action.sa_sigaction(sig, info, context);
    } else if (previous_action.sa_handler != SIG_DFL && previous_action.sa_handler != SIG_IGN) {
        previous_action.sa_handler(sig);
    }
}

inline void install_watchdog_handler() {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, [] {
        struct sigaction action {};
        action.sa_sigaction = &on_watchdog_signal;
        action.sa_flags = SA_SIGINFO | SA_NODEFER | SA_RESTART;
        sigemptyset(&action.sa_mask);
        sigaction(watchdog_signal(), &action, &previous_action);
    });
}

inline timespec deadline_after(double seconds) {
    timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    const double whole = static_cast<double>(static_cast<long long>(seconds));
    t.tv_sec += static_cast<time_t>(whole);
    t.tv_nsec += static_cast<long>((seconds - whole) * 1e9);
    if (t.tv_nsec >= 1000000000L) { t.tv_sec += 1; t.tv_nsec -= 1000000000L; }
    return t;
}

struct Watchdog {
    pthread_mutex_t mutex = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t changed;
    Launch* launch = nullptr;   // the launch being watched (null: none)
    timespec deadline{};
    bool started = false;
    pid_t pid = getpid();
    Watchdog() {
        pthread_condattr_t attributes;
        pthread_condattr_init(&attributes);
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC);
        pthread_cond_init(&changed, &attributes);
    }
};

inline void* watch(void* arg) {
    Watchdog& w = *static_cast<Watchdog*>(arg);
    pthread_mutex_lock(&w.mutex);
    for (;;) {
        while (!w.launch) pthread_cond_wait(&w.changed, &w.mutex);
        Launch* launch = w.launch;
        if (pthread_cond_timedwait(&w.changed, &w.mutex, &w.deadline) != ETIMEDOUT || w.launch != launch) continue;
        if (!__atomic_load_n(&launch->timed_out, __ATOMIC_ACQUIRE)) {
            launch->fail("kernel '%s' (grid (%u,%u,%u), block (%u,%u,%u)) did not finish within its time limit of "
                         "%g s (bench.kernel_timeout_s) and was stopped: a loop that never ends?", launch->kernel,
                         launch->grid.x, launch->grid.y, launch->grid.z, launch->block.x, launch->block.y,
                         launch->block.z, launch->timeout_s);
            __atomic_store_n(&launch->timed_out, true, __ATOMIC_RELEASE);
        }
        const unsigned n = __atomic_load_n(&launch->thread_count, __ATOMIC_ACQUIRE);
        for (unsigned i = 0; i < n; ++i) pthread_kill(launch->threads[i], watchdog_signal());
        w.deadline = deadline_after(0.1);  // again until the launch returns
    }
    return nullptr;
}

inline Watchdog& watchdog() {
    static Watchdog* w = new Watchdog;
    if (w->pid != getpid()) w = new Watchdog;  // after fork(): the parent's thread does not exist here
    if (!w->started) {
        install_watchdog_handler();
        pthread_t thread;
        if (pthread_create(&thread, nullptr, &watch, w) == 0) {
            pthread_detach(thread);
            w->started = true;
        }
    }
    return *w;
}

// Helper threads, created on demand and kept for the life of the process (detached, never joined:
// the pool is deliberately leaked, so exit does not wait for them). One launch at a time per library.
struct Pool {
    pthread_mutex_t launch_mutex = PTHREAD_MUTEX_INITIALIZER;
    pthread_mutex_t mutex = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t wake = PTHREAD_COND_INITIALIZER, finished = PTHREAD_COND_INITIALIZER;
    unsigned threads = 0;
    Launch* job = nullptr;
    unsigned long long generation = 0;
    unsigned helpers = 0;       // helpers taking part in the current job (ids 0..helpers-1)
    unsigned running = 0;
    pid_t pid = getpid();
};

struct HelperStart { Pool* pool; unsigned id; };

inline void* serve(void* arg) {
    const HelperStart start = *static_cast<HelperStart*>(arg);
    delete static_cast<HelperStart*>(arg);
    Pool& p = *start.pool;
    unsigned long long seen = 0;
    for (;;) {
        pthread_mutex_lock(&p.mutex);
        while (p.generation == seen) pthread_cond_wait(&p.wake, &p.mutex);
        seen = p.generation;
        Launch* launch = start.id < p.helpers ? p.job : nullptr;
        pthread_mutex_unlock(&p.mutex);
        if (!launch) continue;
        work(*launch);
        pthread_mutex_lock(&p.mutex);
        if (--p.running == 0) pthread_cond_broadcast(&p.finished);
        pthread_mutex_unlock(&p.mutex);
    }
    return nullptr;
}

inline Pool& pool() {
    static Pool* p = new Pool;
    if (p->pid != getpid()) p = new Pool;  // after fork(): the parent's threads do not exist here
    return *p;
}

inline thread_local char last_error[1024];

// Run body() as the kernel `kernel` over grid x block on `workers` threads (the caller included),
// stopped after timeout_s seconds if that is > 0; returns 0, or -1 (failed) or -2 (timed out) with
// last_error set. Only the blocks numbered first .. end - 1 (x fastest, then y, z) run when end > 0:
// the launch-geometry probe runs one block at a time to see which do any work.
template <class Body>
int launch(const char* kernel, dim3 grid, dim3 block, size_t shared_bytes, int workers,
           unsigned long long first, unsigned long long end, double timeout_s, Body&& body) {
    using B = std::remove_reference_t<Body>;
    Launch job{};
    job.kernel = kernel;
    job.body = [](void* closure) { (*static_cast<B*>(closure))(); };
    job.closure = static_cast<void*>(&body);
    job.grid = grid;
    job.block = block;
    job.shared_bytes = shared_bytes;
    job.blocks = static_cast<unsigned long long>(grid.x) * grid.y * grid.z;
    if (end > 0 && end < job.blocks) job.blocks = end;
    job.next = first;
    if (job.blocks <= first || block.x * block.y * block.z == 0) return 0;

    Pool& p = pool();
    pthread_mutex_lock(&p.launch_mutex);
    unsigned long long n = workers < 1 ? 1 : static_cast<unsigned long long>(workers);
    if (n > job.blocks - first) n = job.blocks - first;
    Watchdog* dog = nullptr;
    if (timeout_s > 0) {
        job.timeout_s = timeout_s;
        job.threads = static_cast<pthread_t*>(calloc(n, sizeof(pthread_t)));
        dog = &watchdog();
        if (job.threads && dog->started) {
            pthread_mutex_lock(&dog->mutex);
            dog->launch = &job;
            dog->deadline = deadline_after(timeout_s);
            pthread_cond_signal(&dog->changed);
            pthread_mutex_unlock(&dog->mutex);
        } else {
            dog = nullptr;
        }
    }
    unsigned helpers = static_cast<unsigned>(n - 1);
    if (helpers) {
        pthread_mutex_lock(&p.mutex);
        while (p.threads < helpers) {
            pthread_t thread;
            auto start = new HelperStart{&p, p.threads};
            if (pthread_create(&thread, nullptr, &serve, start) != 0) { delete start; break; }
            pthread_detach(thread);
            ++p.threads;
        }
        helpers = p.threads < helpers ? p.threads : helpers;
        p.job = &job;
        p.helpers = helpers;
        p.running = helpers;
        ++p.generation;
        pthread_cond_broadcast(&p.wake);
        pthread_mutex_unlock(&p.mutex);
    }
    work(job);
    if (helpers) {
        pthread_mutex_lock(&p.mutex);
        while (p.running != 0) pthread_cond_wait(&p.finished, &p.mutex);
        p.job = nullptr;
        pthread_mutex_unlock(&p.mutex);
    }
    if (dog) {
        pthread_mutex_lock(&dog->mutex);
        dog->launch = nullptr;
        pthread_cond_signal(&dog->changed);
        pthread_mutex_unlock(&dog->mutex);
    }
    free(job.threads);
    pthread_mutex_unlock(&p.launch_mutex);
    if (job.failed) {
        snprintf(last_error, sizeof last_error, "%s", job.error);
        return job.timed_out ? -2 : -1;
    }
    return 0;
}

}  // namespace convbench::emu

// ---- the barrier and friends, called by the kernels from inside a fiber ----
__attribute__((noinline)) inline int convbench_barrier(int predicate) {
    convbench::emu::Worker& worker = *convbench::emu::tls_worker;
    convbench::emu::Fiber* self = worker.current;
    self->state = convbench::emu::Fiber::AtBarrier;
    self->predicate = predicate;
    convbench::emu::switch_to(self->context, worker.scheduler);
    return worker.barrier_result;
}
inline void __syncthreads() { convbench_barrier(0); }
inline int __syncthreads_count(int predicate) { return convbench_barrier(predicate); }
inline int __syncthreads_and(int predicate) {
    return convbench_barrier(predicate) == static_cast<int>(blockDim.x * blockDim.y * blockDim.z);
}
inline int __syncthreads_or(int predicate) { return convbench_barrier(predicate) != 0; }

[[noreturn]] inline void __trap() {
    convbench::emu::Worker& worker = *convbench::emu::tls_worker;
    convbench::emu::Fiber* self = worker.current;
    self->state = convbench::emu::Fiber::Trapped;
    convbench::emu::switch_to(self->context, worker.scheduler);
    __builtin_unreachable();  // a trapped fiber is never resumed
}

// The buffer behind `extern __shared__` (the loader rewrites those declarations to use it).
inline void* convbench_dynamic_shared() { return convbench::emu::tls_worker->dynamic_shared; }
