// Peak fp32 multiply-add throughput of this machine's cores, for the `peak-fma` bench and the
// training bench's fraction-of-peak column: every thread runs CHAINS independent chains of packed
// FMAs (acc = acc * a + b) that never touch memory, so the only limit is the FMA pipes. CHAINS
// covers latency x pipes (Zen 3: 4 cycles x 2 pipes = 8 in flight; Skylake-X 4 x 2; 12 leaves room).
// The instruction set is the one oneDNN dispatches its convolutions to on this CPU
// (dnnl_get_effective_cpu_isa: avx2 on an AVX2+FMA EPYC), since the addon's FLOPs are oneDNN's.
//
//   peak-fma [--threads N] [--reps R] [--seconds S] [--isa auto|avx512|avx2|sse]
// prints one JSON object: GFLOP/s of every repetition (2 flops per FMA lane) and the ISA details.
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <thread>
#include <vector>

#ifdef FLATRANK_WITH_DNNL
#include <oneapi/dnnl/dnnl.h>
#endif

namespace {

constexpr int CHAINS = 12;
volatile float sink;  // keeps every kernel's result alive

#define FMA_CHAINS(FMA)                                                                            \
  FMA(0) FMA(1) FMA(2) FMA(3) FMA(4) FMA(5) FMA(6) FMA(7) FMA(8) FMA(9) FMA(10) FMA(11)

// a < 1 and b > 0 keep every chain near b / (1 - a): no overflow, no denormals, no early exit.
__attribute__((target("avx2,fma"))) float KernelAvx2(long iters) {
  const __m256 a = _mm256_set1_ps(0.999f), b = _mm256_set1_ps(0.001f);
#define DECL(i) __m256 x##i = _mm256_set1_ps(1.0f + (i) * 0.01f);
  FMA_CHAINS(DECL)
  for (long it = 0; it < iters; it++) {
#define STEP(i) x##i = _mm256_fmadd_ps(x##i, a, b);
    FMA_CHAINS(STEP)
  }
  __m256 s = _mm256_setzero_ps();
#define SUM(i) s = _mm256_add_ps(s, x##i);
  FMA_CHAINS(SUM)
  float o[8];
  _mm256_storeu_ps(o, s);
  return o[0] + o[7];
}

__attribute__((target("avx512f"))) float KernelAvx512(long iters) {
  const __m512 a = _mm512_set1_ps(0.999f), b = _mm512_set1_ps(0.001f);
#define DECL512(i) __m512 x##i = _mm512_set1_ps(1.0f + (i) * 0.01f);
  FMA_CHAINS(DECL512)
  for (long it = 0; it < iters; it++) {
#define STEP512(i) x##i = _mm512_fmadd_ps(x##i, a, b);
    FMA_CHAINS(STEP512)
  }
  __m512 s = _mm512_setzero_ps();
#define SUM512(i) s = _mm512_add_ps(s, x##i);
  FMA_CHAINS(SUM512)
  float o[16];
  _mm512_storeu_ps(o, s);
  return o[0] + o[15];
}

// No FMA: a multiply and an add per lane (2 flops, two instructions), what SSE-only code can do.
float KernelSse(long iters) {
  const __m128 a = _mm_set1_ps(0.999f), b = _mm_set1_ps(0.001f);
#define DECLSSE(i) __m128 x##i = _mm_set1_ps(1.0f + (i) * 0.01f);
  FMA_CHAINS(DECLSSE)
  for (long it = 0; it < iters; it++) {
#define STEPSSE(i) x##i = _mm_add_ps(_mm_mul_ps(x##i, a), b);
    FMA_CHAINS(STEPSSE)
  }
  __m128 s = _mm_setzero_ps();
#define SUMSSE(i) s = _mm_add_ps(s, x##i);
  FMA_CHAINS(SUMSSE)
  float o[4];
  _mm_storeu_ps(o, s);
  return o[0] + o[3];
}

struct Isa {
  const char* name;
  int lanes;
  float (*kernel)(long);
};

std::string OnednnIsa() {
#ifdef FLATRANK_WITH_DNNL
  switch (dnnl_get_effective_cpu_isa()) {
    case dnnl_cpu_isa_sse41: return "sse41";
    case dnnl_cpu_isa_avx: return "avx";
    case dnnl_cpu_isa_avx2: return "avx2";
    case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
    case dnnl_cpu_isa_avx512_mic: return "avx512_mic";
    case dnnl_cpu_isa_avx512_mic_4ops: return "avx512_mic_4ops";
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    default: return "unknown";
  }
#else
  return "unavailable";
#endif
}

bool CpuHasAvx2Fma() { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); }
bool CpuHasAvx512() { return __builtin_cpu_supports("avx512f"); }

Isa Choose(const std::string& want, const std::string& onednn) {
  const Isa avx512{"avx512f", 16, KernelAvx512}, avx2{"avx2+fma", 8, KernelAvx2}, sse{"sse", 4, KernelSse};
  if (want == "avx512") return CpuHasAvx512() ? avx512 : Isa{nullptr, 0, nullptr};
  if (want == "avx2") return CpuHasAvx2Fma() ? avx2 : Isa{nullptr, 0, nullptr};
  if (want == "sse") return sse;
  // auto: what oneDNN runs on this CPU; without oneDNN, the widest the CPU has.
  const bool dnnl512 = onednn.rfind("avx512", 0) == 0, dnnl2 = onednn.rfind("avx2", 0) == 0;
  if ((dnnl512 || onednn == "unavailable") && CpuHasAvx512()) return avx512;
  if ((dnnl512 || dnnl2 || onednn == "unavailable") && CpuHasAvx2Fma()) return avx2;
  return sse;
}

// Wall seconds for `threads` threads each running kernel(iters), started together.
double ThreadCpuSeconds() {
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

// Wall seconds of one repetition; cpuSeconds (when given) gets each thread's CPU seconds in the
// kernel, which other processes on the cores do not inflate: flops over them is the per-core peak
// even on a loaded machine.
double Run(const Isa& isa, int threads, long iters, std::vector<double>* cpuSeconds = nullptr) {
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> pool;
  std::vector<float> out(threads);
  std::vector<double> cpu(threads);
  for (int t = 0; t < threads; t++)
    pool.emplace_back([&, t] {
      ready.fetch_add(1);
      while (!go.load(std::memory_order_acquire)) {
      }
      const double c0 = ThreadCpuSeconds();
      out[t] = isa.kernel(iters);
      cpu[t] = ThreadCpuSeconds() - c0;
    });
  while (ready.load() < threads) {
  }
  const auto t0 = std::chrono::steady_clock::now();
  go.store(true, std::memory_order_release);
  for (auto& th : pool) th.join();
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  float acc = 0;
  for (float v : out) acc += v;
  sink = acc;
  if (cpuSeconds) *cpuSeconds = cpu;
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 1, reps = 5;
  double seconds = 0.25;
  std::string want = "auto";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    if (k == "--threads") threads = std::max(1, std::atoi(argv[i + 1]));
    else if (k == "--reps") reps = std::max(1, std::atoi(argv[i + 1]));
    else if (k == "--seconds") seconds = std::max(0.001, std::atof(argv[i + 1]));
    else if (k == "--isa") want = argv[i + 1];
    else {
      std::fprintf(stderr, "peak-fma: unknown option %s (allowed: --threads --reps --seconds --isa)\n", k.c_str());
      return 2;
    }
  }
  const std::string onednn = OnednnIsa();
  const Isa isa = Choose(want, onednn);
  if (!isa.kernel) {
    std::fprintf(stderr, "peak-fma: --isa %s is not supported by this CPU\n", want.c_str());
    return 2;
  }
  // Calibrate on one thread so that a repetition lasts about `seconds`.
  long iters = 1 << 16;
  for (double s = Run(isa, 1, iters); s < seconds / 4; s = Run(isa, 1, iters)) iters *= 4;
  iters = std::max(1L, static_cast<long>(iters * seconds / Run(isa, 1, iters)));
  const double flops = 2.0 * isa.lanes * CHAINS * static_cast<double>(iters) * threads;
  std::string list, perCpu;
  for (int r = 0; r < reps; r++) {
    std::vector<double> cpu;
    const double s = Run(isa, threads, iters, &cpu);
    double cpuTotal = 0;
    for (double c : cpu) cpuTotal += c;
    char buf[64];
    std::snprintf(buf, sizeof buf, "%s%.3f", r ? "," : "", flops / s / 1e9);
    list += buf;
    // Per thread: one thread's flops over its mean CPU seconds.
    std::snprintf(buf, sizeof buf, "%s%.3f", r ? "," : "", cpuTotal > 0 ? flops / cpuTotal / 1e9 : 0.0);
    perCpu += buf;
  }
  std::printf(
      "{\"isa\":\"%s\",\"onednnIsa\":\"%s\",\"lanes\":%d,\"chains\":%d,\"threads\":%d,\"iterations\":%ld,"
      "\"cpu\":{\"avx2\":%s,\"fma\":%s,\"avx512f\":%s},\"gflops\":[%s],\"gflopsPerThreadCpuSecond\":[%s]}\n",
      isa.name, onednn.c_str(), isa.lanes, CHAINS, threads, iters, __builtin_cpu_supports("avx2") ? "true" : "false",
      __builtin_cpu_supports("fma") ? "true" : "false", CpuHasAvx512() ? "true" : "false", list.c_str(),
      perCpu.c_str());
  return 0;
}
