/* \file core/portability.h
 * One header that lets every other header compile unchanged for the GPU (CUDA through NVRTC or nvcc)
 * and for the CPU (host C++ compiler with OpenMP).  Device #ifs live here and in random/ only.
 */
#pragma once

/* Decorations key on __CUDACC__ (NVRTC and nvcc, both passes); the choice of device intrinsics keys on
 * __CUDA_ARCH__ (defined only while code is compiled for the device, by NVRTC and by nvcc's device pass), so
 * that nvcc's host pass also compiles every __host__ __device__ function. */
#if defined(__CUDACC__)
#define MCP_HOST_DEVICE __host__ __device__
#define MCP_FORCEINLINE __forceinline__
#define MCP_KERNEL extern "C" __global__
#define MCP_RESTRICT __restrict__
#else
#define MCP_HOST_DEVICE
#define MCP_FORCEINLINE inline __attribute__((always_inline))
#define MCP_KERNEL extern "C"
#define MCP_RESTRICT __restrict__
#endif
#if defined(__CUDA_ARCH__)
#define MCP_DEVICE_COMPILE 1
#else
#define MCP_DEVICE_COMPILE 0
#endif

#if defined(__CUDACC_RTC__)
/* NVRTC has no <cstdint>: fixed-width integer types defined here (LP64 on every CUDA target). */
typedef signed char int8_t;
typedef unsigned char uint8_t;
typedef short int16_t;
typedef unsigned short uint16_t;
typedef int int32_t;
typedef unsigned int uint32_t;
typedef long long int64_t;
typedef unsigned long long uint64_t;
#else
#include <cstdint>
#include <cmath>
#include <omp.h>
#endif

/* A parallel region over work items (whole histories): a grid-stride loop on the GPU, an OpenMP loop on
 * the CPU.  Per-thread accumulators are declared between MCP_PARALLEL_BEGIN and MCP_FOR_EACH_ITEM and
 * flushed before MCP_PARALLEL_END.  The result does not depend on how items are distributed
 * (counter-based RNG, integer tallies). */
#if MCP_DEVICE_COMPILE
#define MCP_PARALLEL_BEGIN {
#define MCP_PARALLEL_END }
#define MCP_FOR_EACH_ITEM(i, n)                                                                    \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (int64_t)(n);             \
         i += (int64_t)blockDim.x * gridDim.x)
#else
#define MCP_PARALLEL_BEGIN _Pragma("omp parallel") {
#define MCP_PARALLEL_END }
#define MCP_FOR_EACH_ITEM(i, n)                                                                    \
    _Pragma("omp for schedule(dynamic, 16) nowait") for (int64_t i = 0; i < (int64_t)(n); ++i)
#endif

/* Work distribution of a persistent loop (transport.cu mcp_transport): a thread takes its next item when it has
 * finished its last one, not a fixed share.  With a counter (an int64_t shared by all threads, 0 at the start of
 * the launch) the items go out in index order to whichever thread asks first (an atomic fetch-add); the GPU takes
 * its counter from Params::tallies.work_next (zeroed by the host before every launch), the CPU from a variable
 * shared by the OpenMP threads (MCP_WORK_COUNTER).  Without a counter (GPU, work_next null) thread t of T takes
 * t, t + T, t + 2T, ... (the grid-stride order).  The result does not depend on who takes what (counter-based
 * RNG, integer tallies). */
struct WorkCursor {
    int64_t* counter;
    int64_t next, stride;
};
#if MCP_DEVICE_COMPILE
#define MCP_WORK_COUNTER(name, device_counter) int64_t* name = (device_counter);
MCP_FORCEINLINE MCP_HOST_DEVICE WorkCursor mcp_work_cursor(int64_t* counter)
{
    WorkCursor c;
    c.counter = counter;
    c.next = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    c.stride = (int64_t)blockDim.x * gridDim.x;
    return c;
}
#else
#define MCP_WORK_COUNTER(name, device_counter) int64_t name##_shared = 0; int64_t* name = &name##_shared;
MCP_FORCEINLINE MCP_HOST_DEVICE WorkCursor mcp_work_cursor(int64_t* counter)
{
    WorkCursor c;
    c.counter = counter;
    c.next = omp_get_thread_num();
    c.stride = omp_get_num_threads();
    return c;
}
#endif
MCP_FORCEINLINE MCP_HOST_DEVICE int64_t mcp_next_item(WorkCursor& c)
{
    if (c.counter) {
#if MCP_DEVICE_COMPILE
        return (int64_t)atomicAdd((unsigned long long*)c.counter, 1ULL);
#else
        return __atomic_fetch_add(c.counter, (int64_t)1, __ATOMIC_RELAXED);
#endif
    }
    const int64_t i = c.next;
    c.next += c.stride;
    return i;
}

/* A warp vote: how many lanes of the calling thread's warp (those executing this call together) have `pred`, and
 * how many lanes take part.  On the CPU a thread is its own warp of one. */
struct WarpVote {
    int yes, lanes;
};
MCP_FORCEINLINE MCP_HOST_DEVICE WarpVote mcp_warp_vote(bool pred)
{
    WarpVote v;
#if MCP_DEVICE_COMPILE
    const unsigned mask = __activemask();
    v.yes = __popc(__ballot_sync(mask, pred));
    v.lanes = __popc(mask);
#else
    v.yes = pred ? 1 : 0;
    v.lanes = 1;
#endif
    return v;
}

/* A rarely taken path (nuclear events, the range shifter, a new history's source sampling): a function call on
 * the GPU, so that the code of the step loop that every warp runs stays small (instruction-cache misses were 38 %
 * of the stall cycles on the H200, kernel 133b5b6f); inlined on the CPU as before. */
#if MCP_DEVICE_COMPILE
#define MCP_RARE __noinline__
#else
#define MCP_RARE MCP_FORCEINLINE
#endif

/* Atomic add of a 64-bit integer tally.  Integer addition is associative, so the sum is the same
 * whatever the order of the threads: tallies are bitwise reproducible on both backends. */
MCP_FORCEINLINE MCP_HOST_DEVICE void mcp_atomic_add(int64_t* addr, int64_t value)
{
#if MCP_DEVICE_COMPILE
    atomicAdd((unsigned long long*)addr, (unsigned long long)value);
#else
    __atomic_fetch_add(addr, value, __ATOMIC_RELAXED);
#endif
}

/* Set a byte flag to 1 from many threads at once (every writer stores the same value; relaxed atomics on the
 * CPU keep it a defined data race in C++, a plain byte store on the GPU).  Read first: a flag already set is
 * not written again, so that threads scoring into the same blocks do not bounce its cache line between cores
 * (measured on the CPU bench: 7 % slower with unconditional stores). */
MCP_FORCEINLINE MCP_HOST_DEVICE void mcp_flag_set(uint8_t* flag)
{
#if MCP_DEVICE_COMPILE
    if (!*flag) *flag = 1;
#else
    if (!__atomic_load_n(flag, __ATOMIC_RELAXED)) __atomic_store_n(flag, (uint8_t)1, __ATOMIC_RELAXED);
#endif
}

/* Index of the calling CPU thread (thread-private tally slot); 0 on the GPU (shared atomic tallies). */
MCP_FORCEINLINE MCP_HOST_DEVICE int mcp_thread_slot()
{
#if MCP_DEVICE_COMPILE
    return 0;
#else
    return omp_get_thread_num();
#endif
}

/* Single-precision maths under one name on both backends. */
#if MCP_DEVICE_COMPILE
#define mcp_log __logf
#define mcp_exp __expf
#define mcp_sqrt sqrtf
#define mcp_rsqrt rsqrtf
#define mcp_log10(x) (__logf(x) * 0.43429448190325176f)
MCP_FORCEINLINE MCP_HOST_DEVICE void mcp_sincospi(float x, float* s, float* c) { sincospif(x, s, c); }
#define mcp_llrint(x) __float2ll_rn(x)
#define MCP_INFINITY __int_as_float(0x7f800000)
#else
#define mcp_log logf
#define mcp_exp expf
#define mcp_sqrt sqrtf
MCP_FORCEINLINE MCP_HOST_DEVICE float mcp_rsqrt(float x) { return 1.0f / sqrtf(x); }
#define mcp_log10(x) (logf(x) * 0.43429448190325176f)
MCP_FORCEINLINE MCP_HOST_DEVICE void mcp_sincospi(float x, float* s, float* c)
{
    const float a = 3.14159265358979323846f * x;
    *s = sinf(a);
    *c = cosf(a);
}
#define mcp_llrint(x) ((int64_t)llrintf(x))
#define MCP_INFINITY __builtin_inff()
#endif

MCP_FORCEINLINE MCP_HOST_DEVICE float mcp_min(float a, float b) { return a < b ? a : b; }
MCP_FORCEINLINE MCP_HOST_DEVICE float mcp_max(float a, float b) { return a > b ? a : b; }
