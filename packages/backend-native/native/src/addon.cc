// flatrank native kernels for the TensorFlow.js 'native' backend.
//
// Every function works on caller-owned Float32Arrays (the cpu backend's tensor storage) and is
// synchronous, like tfjs kernels; the work is split into chunks that the calling thread and a small
// worker pool claim (see Pool). oneDNN (OpenMP runtime in Debian) runs single-threaded per call.
// Convolutions (plain and depthwise, forward and both gradients) and GEMM come from oneDNN;
// pooling, batch norm and the elementwise/reduction/copy ops are simple loops here.
#include <node_api.h>
#include <omp.h>

#include <dnnl.hpp>

#include <atomic>
#include <chrono>
#include <cmath>
#include <ctime>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace {

using dnnl::memory;
using i64 = int64_t;

// ---------------------------------------------------------------- N-API helpers

struct ArgError {
  std::string msg;
};

struct Args {
  napi_env env;
  size_t argc = 16;
  napi_value argv[16];
  Args(napi_env e, napi_callback_info info) : env(e) {
    napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  }
  bool isNull(size_t i) const {
    if (i >= argc) return true;
    napi_valuetype t;
    napi_typeof(env, argv[i], &t);
    return t == napi_null || t == napi_undefined;
  }
  template <typename T>
  T *typed(size_t i, napi_typedarray_type want, size_t *len = nullptr) const {
    if (isNull(i)) {
      if (len) *len = 0;
      return nullptr;
    }
    bool is = false;
    napi_is_typedarray(env, argv[i], &is);
    if (!is) throw ArgError{"argument " + std::to_string(i) + " must be a typed array"};
    napi_typedarray_type type;
    size_t length;
    void *data;
    napi_value ab;
    size_t off;
    napi_get_typedarray_info(env, argv[i], &type, &length, &data, &ab, &off);
    if (type != want) throw ArgError{"argument " + std::to_string(i) + " has the wrong typed array type"};
    if (len) *len = length;
    return static_cast<T *>(data);
  }
  float *f32(size_t i, size_t *len = nullptr) const { return typed<float>(i, napi_float32_array, len); }
  int32_t *i32(size_t i, size_t *len = nullptr) const { return typed<int32_t>(i, napi_int32_array, len); }
  double num(size_t i) const {
    double v = 0;
    if (i >= argc || napi_get_value_double(env, argv[i], &v) != napi_ok)
      throw ArgError{"argument " + std::to_string(i) + " must be a number"};
    return v;
  }
  int integer(size_t i) const { return static_cast<int>(num(i)); }
};

using Impl = napi_value (*)(const Args &);

template <Impl F>
napi_value wrap(napi_env env, napi_callback_info info) {
  try {
    Args a(env, info);
    return F(a);
  } catch (const ArgError &e) {
    napi_throw_type_error(env, "FLATRANK_NATIVE_ARG", e.msg.c_str());
  } catch (const dnnl::error &e) {
    napi_throw_error(env, "FLATRANK_NATIVE_DNNL", e.what());
  } catch (const std::exception &e) {
    napi_throw_error(env, "FLATRANK_NATIVE", e.what());
  }
  return nullptr;
}

napi_value undef(napi_env env) {
  napi_value u;
  napi_get_undefined(env, &u);
  return u;
}

// Memory-bound loops (elementwise, reductions, copies, pooling, batch norm) are split into chunks of
// at least this many elements for the worker pool (not OpenMP: on a loaded machine an OpenMP
// fork/join waits whole scheduler slices for the other thread; measured 0.5 ms -> 21 ms for a
// 2M-element multiply at load 6).
constexpr i64 kGrainElems = 1 << 16;

// ---------------------------------------------------------------- oneDNN convolution

dnnl::engine &engine() {
  static dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}

// p: N IH IW IC OH OW OC KH KW SH SW DH DW PT PL PB PR G ACT(0 none,1 relu)
struct ConvP {
  i64 N, IH, IW, IC, OH, OW, OC, KH, KW, SH, SW, DH, DW, PT, PL, PB, PR, G, ACT;
};
constexpr int kConvP = 19;

memory::desc actDesc(i64 n, i64 c, i64 h, i64 w) {
  return memory::desc({n, c, h, w}, memory::data_type::f32, memory::format_tag::nhwc);
}

// tfjs filters: Conv2D [KH,KW,IC,OC]; depthwise [KH,KW,C,M] with output channel c*M+m, which is
// oneDNN's grouped layout with G=C groups of M outputs and 1 input each.
memory::desc userWeightsDesc(const ConvP &p) {
  if (p.G == 1)
    return memory::desc({p.OC, p.IC, p.KH, p.KW}, memory::data_type::f32,
                        {1, p.OC, p.KW * p.IC * p.OC, p.IC * p.OC});
  const i64 M = p.OC / p.G;
  return memory::desc({p.G, M, p.IC / p.G, p.KH, p.KW}, memory::data_type::f32,
                      {M, 1, p.OC, p.KW * p.OC, p.OC});
}
memory::desc anyWeightsDesc(const ConvP &p) {
  if (p.G == 1) return memory::desc({p.OC, p.IC, p.KH, p.KW}, memory::data_type::f32, memory::format_tag::any);
  return memory::desc({p.G, p.OC / p.G, p.IC / p.G, p.KH, p.KW}, memory::data_type::f32,
                      memory::format_tag::any);
}

// ---------------------------------------------------------------- conv profiling
//
// Off unless convProfile(true) switched it on (one relaxed load per conv call when off). Per conv
// call shape and kind: calls, wall time of the whole call, CPU time of the oneDNN executions summed
// over the threads that ran them (thread CPU clocks: close to the work done even when other
// processes share the cores), and the time spent around them converting weights between TF.js's
// layout and the primitives' (forward and backward data) or summing and converting the per-chunk
// weight gradients (backward weights). Written on the JS thread only, apart from the atomic
// per-call CPU counter.

std::atomic<bool> gConvProfiling{false};

struct ConvStat {
  i64 calls = 0;
  double wallMs = 0, execCpuMs = 0, weightsMs = 0, reduceMs = 0;
  std::string impl;
};

std::unordered_map<std::string, ConvStat> &convStats() {
  static std::unordered_map<std::string, ConvStat> s;
  return s;
}

inline double threadCpuMs() {
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return t.tv_sec * 1e3 + t.tv_nsec * 1e-6;
}
inline double wallMs() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// ---------------------------------------------------------------- worker pool
//
// Convolutions run as chunks of the batch claimed dynamically by the calling thread and the pool's
// workers, each chunk a single-threaded oneDNN primitive. Unlike an OpenMP fork/join (static halves
// and a barrier), a worker that the OS has not scheduled yet costs nothing: the caller takes its
// chunks. On an idle machine both cores work; on a loaded one we never wait a scheduler slice.

class Pool {
 public:
  explicit Pool(int threads) {
    for (int t = 1; t < threads; ++t) workers_.emplace_back([this, t] { loop(t); });
  }
  ~Pool() {
    {
      std::lock_guard<std::mutex> l(m_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto &w : workers_) w.join();
  }
  int threads() const { return static_cast<int>(workers_.size()) + 1; }

  // Runs f(chunk, thread) for chunk in [0, total); returns when all chunks are done.
  void run(int total, const std::function<void(int, int)> &f) {
    if (workers_.empty() || total <= 1) {
      for (int i = 0; i < total; ++i) f(i, 0);
      return;
    }
    {
      std::lock_guard<std::mutex> l(m_);
      job_ = &f;
      total_ = total;
      ++gen_;
      done_.store(0);
      error_.clear();
      state_.store(static_cast<uint64_t>(gen_) << 32);
    }
    cv_.notify_all();
    work(gen_, total, f, 0);
    // The caller ran out of chunks: wait for those a worker is still computing.
    while (done_.load(std::memory_order_acquire) < total) std::this_thread::yield();
    if (!error_.empty()) throw std::runtime_error(error_);
  }

 private:
  // Claims chunks of generation g until none are left (or a newer job started).
  void work(uint32_t g, int total, const std::function<void(int, int)> &f, int tid) {
    for (;;) {
      uint64_t s = state_.load(std::memory_order_acquire);
      if ((s >> 32) != g) return;
      const int i = static_cast<int>(s & 0xffffffffu);
      if (i >= total) return;
      if (!state_.compare_exchange_weak(s, s + 1, std::memory_order_acq_rel)) continue;
      try {
        f(i, tid);
      } catch (const std::exception &e) {
        std::lock_guard<std::mutex> l(m_);
        if (error_.empty()) error_ = e.what();
      }
      done_.fetch_add(1, std::memory_order_acq_rel);
    }
  }
  void loop(int tid) {
    omp_set_num_threads(1);  // oneDNN calls from this thread stay single-threaded
    uint32_t seen = 0;
    for (;;) {
      const std::function<void(int, int)> *f;
      int total;
      uint32_t g;
      {
        std::unique_lock<std::mutex> l(m_);
        cv_.wait(l, [&] { return stop_ || gen_ != seen; });
        if (stop_) return;
        seen = g = gen_;
        f = job_;
        total = total_;
      }
      work(g, total, *f, tid);
    }
  }
  std::vector<std::thread> workers_;
  std::mutex m_;
  std::condition_variable cv_;
  bool stop_ = false;
  uint32_t gen_ = 0;
  const std::function<void(int, int)> *job_ = nullptr;
  int total_ = 0;
  std::atomic<uint64_t> state_{0};
  std::atomic<int> done_{0};
  std::string error_;
};

std::unique_ptr<Pool> &pool() {
  static std::unique_ptr<Pool> p;
  if (!p) {
    unsigned hc = std::thread::hardware_concurrency();
    p = std::make_unique<Pool>(hc > 0 ? static_cast<int>(hc) : 1);
  }
  return p;
}

// f(begin, end) over [0, n) in chunks of at least `grain` items, on the caller and the pool.
template <typename F>
void parFor(i64 n, i64 grain, F &&f) {
  Pool &P = *pool();
  const int T = P.threads();
  const i64 maxChunks = grain > 0 ? n / std::max<i64>(grain, 1) : n;
  const int chunks = static_cast<int>(std::min<i64>(static_cast<i64>(T) * 4, maxChunks));
  if (T <= 1 || chunks < 2) {
    if (n > 0) f(i64(0), n);
    return;
  }
  std::function<void(int, int)> job = [&](int c, int) { f(n * c / chunks, n * (c + 1) / chunks); };
  P.run(chunks, job);
}
inline i64 rowGrain(i64 rowLen) { return std::max<i64>(1, kGrainElems / std::max<i64>(rowLen, 1)); }

// Per-thread oneDNN scratchpads (scratchpad_mode::user: library scratchpads may be shared between
// threads unless oneDNN was built for concurrent execution) and streams.
struct ThreadCtx {
  std::unique_ptr<dnnl::stream> s;
  std::vector<char> scratch;
  void *scratchFor(size_t bytes) {
    if (scratch.size() < bytes + 64) scratch.resize(bytes + 64);
    auto p = reinterpret_cast<uintptr_t>(scratch.data());
    return reinterpret_cast<void *>((p + 63) & ~uintptr_t(63));
  }
  dnnl::stream &stream() {
    if (!s) s = std::make_unique<dnnl::stream>(engine());
    return *s;
  }
};
ThreadCtx &ctx() {
  thread_local ThreadCtx c;
  return c;
}

// ---------------------------------------------------------------- convolution primitives

struct ConvEntry {
  dnnl::primitive prim;
  memory::desc srcMd, dstMd, wMd, userWMd, scratchMd;
  bool reorderW = false;
  dnnl::primitive wReorder;  // user -> internal (fwd, bwd data) or internal -> user (bwd weights)
  std::string impl;
};

std::unordered_map<std::string, std::unique_ptr<ConvEntry>> &convCache() {
  static std::unordered_map<std::string, std::unique_ptr<ConvEntry>> c;
  return c;
}

dnnl::primitive_attr convAttr(const ConvP &p) {
  using namespace dnnl;
  primitive_attr attr;
  attr.set_scratchpad_mode(scratchpad_mode::user);
  if (p.ACT == 1) {
    post_ops ops;
    ops.append_eltwise(1.f, algorithm::eltwise_relu, 0.f, 0.f);
    attr.set_post_ops(ops);
  }
  return attr;
}

dnnl::convolution_forward::primitive_desc fwdPd(const ConvP &p, bool bias) {
  using namespace dnnl;
  memory::dims strides{p.SH, p.SW}, dil{p.DH - 1, p.DW - 1}, pl{p.PT, p.PL}, pr{p.PB, p.PR};
  auto src = actDesc(p.N, p.IC, p.IH, p.IW), dst = actDesc(p.N, p.OC, p.OH, p.OW);
  auto w = anyWeightsDesc(p);
  auto attr = convAttr(p);
  if (bias) {
    memory::desc b({p.OC}, memory::data_type::f32, memory::format_tag::a);
    convolution_forward::desc d(prop_kind::forward_training, algorithm::convolution_direct, src, w, b, dst,
                                strides, dil, pl, pr);
    return convolution_forward::primitive_desc(d, attr, engine());
  }
  convolution_forward::desc d(prop_kind::forward_training, algorithm::convolution_direct, src, w, dst, strides,
                              dil, pl, pr);
  return convolution_forward::primitive_desc(d, attr, engine());
}

// kind: 0 forward, 1 backward data, 2 backward weights; p.N is the chunk's batch.
// Created on the JS thread only (the cache is not locked); executed from any thread.
ConvEntry &convEntry(int kind, const ConvP &p, bool bias) {
  std::string key = std::to_string(kind) + (bias ? "b" : "n");
  const i64 *v = &p.N;
  for (int i = 0; i < kConvP; ++i) key += "," + std::to_string(v[i]);
  auto &cache = convCache();
  auto it = cache.find(key);
  if (it != cache.end()) return *it->second;

  using namespace dnnl;
  auto e = std::make_unique<ConvEntry>();
  memory::dims strides{p.SH, p.SW}, dil{p.DH - 1, p.DW - 1}, pl{p.PT, p.PL}, pr{p.PB, p.PR};
  auto src = actDesc(p.N, p.IC, p.IH, p.IW), dst = actDesc(p.N, p.OC, p.OH, p.OW);
  auto w = anyWeightsDesc(p);
  e->userWMd = userWeightsDesc(p);
  e->srcMd = src;
  e->dstMd = dst;
  ConvP q = p;
  q.ACT = 0;
  if (kind == 0) {
    auto pd = fwdPd(p, bias);
    e->wMd = pd.weights_desc();
    e->scratchMd = pd.scratchpad_desc();
    e->prim = convolution_forward(pd);
    e->impl = pd.impl_info_str();
  } else if (kind == 1) {
    auto hint = fwdPd(q, false);
    convolution_backward_data::desc d(algorithm::convolution_direct, src, w, dst, strides, dil, pl, pr);
    convolution_backward_data::primitive_desc pd(d, convAttr(q), engine(), hint);
    e->wMd = pd.weights_desc();
    e->scratchMd = pd.scratchpad_desc();
    e->prim = convolution_backward_data(pd);
    e->impl = pd.impl_info_str();
  } else {
    auto hint = fwdPd(q, false);
    convolution_backward_weights::desc d(algorithm::convolution_direct, src, w, dst, strides, dil, pl, pr);
    convolution_backward_weights::primitive_desc pd(d, convAttr(q), engine(), hint);
    e->wMd = pd.diff_weights_desc();
    e->scratchMd = pd.scratchpad_desc();
    e->prim = convolution_backward_weights(pd);
    e->impl = pd.impl_info_str();
  }
  e->reorderW = e->wMd != e->userWMd;
  if (e->reorderW) {
    memory::desc from = kind == 2 ? e->wMd : e->userWMd, to = kind == 2 ? e->userWMd : e->wMd;
    e->wReorder = reorder(reorder::primitive_desc(engine(), from, engine(), to));
  }
  auto &ref = *e;
  cache.emplace(key, std::move(e));
  return ref;
}

ConvP readConvP(const Args &a, size_t i) {
  size_t n;
  int32_t *v = a.i32(i, &n);
  if (n != kConvP) throw ArgError{"conv params must have " + std::to_string(kConvP) + " entries"};
  ConvP p;
  i64 *o = &p.N;
  for (int k = 0; k < kConvP; ++k) o[k] = v[k];
  return p;
}

void checkLen(size_t have, i64 want, const char *what) {
  if (static_cast<i64>(have) != want)
    throw ArgError{std::string(what) + " has " + std::to_string(have) + " elements, expected " +
                   std::to_string(want)};
}

// Runs a oneDNN primitive on this thread's stream with this thread's scratchpad.
void execPrimitive(const dnnl::primitive &prim, const memory::desc &scratchMd,
                   std::unordered_map<int, memory> args) {
  ThreadCtx &c = ctx();
  const size_t sb = scratchMd.get_size();
  if (sb > 0) args.emplace(DNNL_ARG_SCRATCHPAD, memory(scratchMd, engine(), c.scratchFor(sb)));
  prim.execute(c.stream(), args);
  c.stream().wait();
}
void exec(ConvEntry &e, std::unordered_map<int, memory> args) { execPrimitive(e.prim, e.scratchMd, std::move(args)); }

// Batch chunks: enough for the threads to balance, not so small that oneDNN loses efficiency.
int chunkSize(i64 N, int threads, int perThread) {
  if (threads <= 1) return static_cast<int>(N);
  const i64 want = threads * perThread;
  return static_cast<int>(std::max<i64>(1, (N + want - 1) / want));
}

// conv(kind, params, a, b, bias|null, out)
//  kind 0: a=x, b=w, out=y;  kind 1: a=dy, b=w, out=dx;  kind 2: a=x, b=dy, out=dw
napi_value conv(const Args &a) {
  const int kind = a.integer(0);
  ConvP p = readConvP(a, 1);
  size_t la, lb, lbias, lo;
  float *A = a.f32(2, &la), *B = a.f32(3, &lb), *bias = a.f32(4, &lbias), *out = a.f32(5, &lo);
  const i64 xs = p.N * p.IH * p.IW * p.IC, ys = p.N * p.OH * p.OW * p.OC,
            ws = p.KH * p.KW * (p.IC / p.G) * p.OC;
  if (kind == 0) {
    checkLen(la, xs, "x"), checkLen(lb, ws, "filter"), checkLen(lo, ys, "y");
    if (bias) checkLen(lbias, p.OC, "bias");
  } else if (kind == 1) {
    checkLen(la, ys, "dy"), checkLen(lb, ws, "filter"), checkLen(lo, xs, "dx");
  } else {
    checkLen(la, xs, "x"), checkLen(lb, ys, "dy"), checkLen(lo, ws, "dw");
  }
  const bool profiling = gConvProfiling.load(std::memory_order_relaxed);
  const double t0 = profiling ? wallMs() : 0;
  std::atomic<int64_t> execCpuNs{0};
  double weightsMs = 0, reduceMs = 0;
  Pool &P = *pool();
  const int T = P.threads();
  // Weight gradients sum per-chunk results: fewer, larger chunks there.
  const i64 cs = chunkSize(p.N, T, kind == 2 ? 2 : 4);
  const int nChunks = static_cast<int>((p.N + cs - 1) / cs);
  const i64 tail = p.N - (nChunks - 1) * cs;
  ConvP pc = p, pt = p;
  pc.N = cs;
  pt.N = tail;
  ConvEntry &ec = convEntry(kind, pc, bias != nullptr);
  ConvEntry &et = convEntry(kind, pt, bias != nullptr);
  auto &eng = engine();
  const i64 xPer = p.IH * p.IW * p.IC, yPer = p.OH * p.OW * p.OC;

  // Weights in the primitives' layout, converted once for all chunks.
  std::vector<float> wInternal;
  float *W = B;
  if (kind != 2 && ec.reorderW) {
    const double w0 = profiling ? wallMs() : 0;
    wInternal.resize(ec.wMd.get_size() / sizeof(float) + 16);
    memory uw(ec.userWMd, eng, B), iw(ec.wMd, eng, wInternal.data());
    ec.wReorder.execute(ctx().stream(), {{DNNL_ARG_FROM, uw}, {DNNL_ARG_TO, iw}});
    ctx().stream().wait();
    W = wInternal.data();
    if (profiling) weightsMs = wallMs() - w0;
  }
  if (kind != 2 && et.wMd != ec.wMd) throw std::runtime_error("conv: chunk primitives disagree on the weights layout");

  // Weight gradients: one buffer per chunk in the primitive's layout, summed, then converted once.
  const bool sameW = ec.wMd == et.wMd;
  if (kind == 2 && !sameW) throw std::runtime_error("conv: chunk primitives disagree on the weights layout");
  const size_t partLen = kind == 2 ? ec.wMd.get_size() / sizeof(float) : 0;
  std::vector<float> parts(static_cast<size_t>(nChunks) * partLen);
  auto chunk = [&](int i, int) {
    ConvEntry &e = (i == nChunks - 1) ? et : ec;
    const i64 n0 = i * cs;
    const double c0 = profiling ? threadCpuMs() : 0;
    if (kind == 0) {
      memory x(e.srcMd, eng, A + n0 * xPer), y(e.dstMd, eng, out + n0 * yPer), w(e.wMd, eng, W);
      std::unordered_map<int, memory> args{{DNNL_ARG_SRC, x}, {DNNL_ARG_WEIGHTS, w}, {DNNL_ARG_DST, y}};
      if (bias) args.emplace(DNNL_ARG_BIAS, memory({{p.OC}, memory::data_type::f32, memory::format_tag::a}, eng, bias));
      exec(e, std::move(args));
    } else if (kind == 1) {
      memory dy(e.dstMd, eng, A + n0 * yPer), dx(e.srcMd, eng, out + n0 * xPer), w(e.wMd, eng, W);
      exec(e, {{DNNL_ARG_DIFF_DST, dy}, {DNNL_ARG_WEIGHTS, w}, {DNNL_ARG_DIFF_SRC, dx}});
    } else {
      memory x(e.srcMd, eng, A + n0 * xPer), dy(e.dstMd, eng, B + n0 * yPer),
          dw(e.wMd, eng, parts.data() + static_cast<size_t>(i) * partLen);
      exec(e, {{DNNL_ARG_SRC, x}, {DNNL_ARG_DIFF_DST, dy}, {DNNL_ARG_DIFF_WEIGHTS, dw}});
    }
    if (profiling) execCpuNs.fetch_add(static_cast<int64_t>((threadCpuMs() - c0) * 1e6), std::memory_order_relaxed);
  };
  P.run(nChunks, chunk);
  const double r0 = profiling ? wallMs() : 0;
  if (kind == 2) {
    float *sum = parts.data();
    for (int i = 1; i < nChunks; ++i) {
      const float *src = parts.data() + static_cast<size_t>(i) * partLen;
      for (size_t j = 0; j < partLen; ++j) sum[j] += src[j];
    }
    if (ec.reorderW) {
      memory idw(ec.wMd, eng, sum), udw(ec.userWMd, eng, out);
      ec.wReorder.execute(ctx().stream(), {{DNNL_ARG_FROM, idw}, {DNNL_ARG_TO, udw}});
      ctx().stream().wait();
    } else {
      std::memcpy(out, sum, sizeof(float) * ws);
    }
  }
  if (profiling) {
    const double t1 = wallMs();
    if (kind == 2) reduceMs = t1 - r0;
    std::string key = std::to_string(kind);
    const i64 *v = &p.N;
    for (int i = 0; i < kConvP; ++i) key += "," + std::to_string(v[i]);
    key += bias ? ",1" : ",0";
    ConvStat &st = convStats()[key];
    st.calls += 1;
    st.wallMs += t1 - t0;
    st.execCpuMs += execCpuNs.load() * 1e-6;
    st.weightsMs += weightsMs;
    st.reduceMs += reduceMs;
    if (st.impl.empty()) st.impl = ec.impl;
  }
  return undef(a.env);
}

// convProfile(on) -> [{ kind, params: number[] (ConvP order), bias, calls, wallMs, execCpuMs,
// weightsMs, reduceMs, impl }]: what was recorded since the last call (then forgotten); `on`
// switches recording on or off from now on.
napi_value convProfile(const Args &a) {
  bool on = false;
  if (a.argc > 0) napi_get_value_bool(a.env, a.argv[0], &on);
  napi_value arr;
  napi_create_array(a.env, &arr);
  uint32_t idx = 0;
  auto num = [&](napi_value o, const char *name, double x) {
    napi_value v;
    napi_create_double(a.env, x, &v);
    napi_set_named_property(a.env, o, name, v);
  };
  for (auto &[key, st] : convStats()) {
    std::vector<double> f;
    size_t pos = 0;
    while (pos <= key.size()) {
      size_t c = key.find(',', pos);
      if (c == std::string::npos) c = key.size();
      f.push_back(std::stod(key.substr(pos, c - pos)));
      pos = c + 1;
    }
    napi_value o, params;
    napi_create_object(a.env, &o);
    num(o, "kind", f[0]);
    napi_create_array_with_length(a.env, kConvP, &params);
    for (int i = 0; i < kConvP; ++i) {
      napi_value v;
      napi_create_double(a.env, f[1 + i], &v);
      napi_set_element(a.env, params, i, v);
    }
    napi_set_named_property(a.env, o, "params", params);
    napi_value b;
    napi_get_boolean(a.env, f[1 + kConvP] != 0, &b);
    napi_set_named_property(a.env, o, "bias", b);
    num(o, "calls", static_cast<double>(st.calls));
    num(o, "wallMs", st.wallMs);
    num(o, "execCpuMs", st.execCpuMs);
    num(o, "weightsMs", st.weightsMs);
    num(o, "reduceMs", st.reduceMs);
    napi_value impl;
    napi_create_string_utf8(a.env, st.impl.c_str(), st.impl.size(), &impl);
    napi_set_named_property(a.env, o, "impl", impl);
    napi_set_element(a.env, arr, idx++, o);
  }
  convStats().clear();
  gConvProfiling.store(on, std::memory_order_relaxed);
  return arr;
}

// convImpl(kind, params, hasBias) -> oneDNN implementation name (for benchmarks and diagnostics)
napi_value convImpl(const Args &a) {
  ConvEntry &e = convEntry(a.integer(0), readConvP(a, 1), a.integer(2) != 0);
  napi_value s;
  napi_create_string_utf8(a.env, e.impl.c_str(), e.impl.size(), &s);
  return s;
}

// ---------------------------------------------------------------- GEMM

// matmul(A, B, C, batchA, batchB, M, N, K, transA, transB): row-major C[b] = op(A[b]) op(B[b]);
// a batch of 1 broadcasts.
napi_value matmul(const Args &a) {
  size_t la, lb, lc;
  float *A = a.f32(0, &la), *B = a.f32(1, &lb), *C = a.f32(2, &lc);
  const i64 bA = a.integer(3), bB = a.integer(4), M = a.integer(5), N = a.integer(6), K = a.integer(7);
  const bool tA = a.integer(8) != 0, tB = a.integer(9) != 0;
  const i64 batch = bA > bB ? bA : bB;
  checkLen(la, bA * M * K, "a"), checkLen(lb, bB * K * N, "b"), checkLen(lc, batch * M * N, "out");
  for (i64 i = 0; i < batch; ++i) {
    const float *Ai = A + (bA == 1 ? 0 : i) * M * K, *Bi = B + (bB == 1 ? 0 : i) * K * N;
    dnnl_status_t st = dnnl_sgemm(tA ? 'T' : 'N', tB ? 'T' : 'N', M, N, K, 1.f, Ai, tA ? M : K, Bi, tB ? K : N,
                                  0.f, C + i * M * N, N);
    if (st != dnnl_success) throw std::runtime_error("dnnl_sgemm failed");
  }
  return undef(a.env);
}

// ---------------------------------------------------------------- elementwise

// RELU_GRAD(dy, x) = dy * step(x); SQUARE_GRAD(dy, x) = dy * (2x): the tfjs-core gradients of Relu
// and Square in one pass instead of two or three.
enum BinOp { ADD, SUB, MUL, DIV, MAXIMUM, MINIMUM, SQDIFF, POW, RELU_GRAD, SQUARE_GRAD };

template <int OP>
inline float bin(float x, float y) {
  if constexpr (OP == ADD) return x + y;
  if constexpr (OP == SUB) return x - y;
  if constexpr (OP == MUL) return x * y;
  if constexpr (OP == DIV) return x / y;
  if constexpr (OP == MAXIMUM) return (x >= y || std::isnan(x)) ? x : y;
  if constexpr (OP == MINIMUM) return (x <= y || std::isnan(x)) ? x : y;
  if constexpr (OP == SQDIFF) return (x - y) * (x - y);
  if constexpr (OP == POW) return std::pow(x, y);
  // dy * step(x) with step(NaN) = NaN, as mask arithmetic so that it vectorizes (a select with a
  // NaN test does not, and ran 25x slower).
  if constexpr (OP == RELU_GRAD) {
    const uint32_t gt = 0u - static_cast<uint32_t>(y > 0.f), nan = 0u - static_cast<uint32_t>(y != y);
    const uint32_t bits = (gt & 0x3f800000u) | (nan & 0x7fc00000u);
    float m;
    std::memcpy(&m, &bits, sizeof m);
    return x * m;
  }
  if constexpr (OP == SQUARE_GRAD) return x * (y * 2.f);
  return 0;
}

template <int OP>
inline void binaryRow(const float *x, const float *y, float *o, i64 n, i64 ia, i64 ib) {
  if (ia == 1 && ib == 1)
    for (i64 j = 0; j < n; ++j) o[j] = bin<OP>(x[j], y[j]);
  else if (ia == 1 && ib == 0) {
    const float yv = y[0];
    for (i64 j = 0; j < n; ++j) o[j] = bin<OP>(x[j], yv);
  } else if (ia == 0 && ib == 1) {
    const float xv = x[0];
    for (i64 j = 0; j < n; ++j) o[j] = bin<OP>(xv, y[j]);
  } else
    for (i64 j = 0; j < n; ++j) o[j] = bin<OP>(x[j * ia], y[j * ib]);
}

// Elementwise over a merged, broadcast index space: rows of the last axis, split between threads
// (or, for a single long row, the row itself is split).
template <int OP>
void binaryRun(const float *A, const float *B, float *O, int rank, const i64 *shape, const i64 *sa,
               const i64 *sb) {
  const i64 inner = shape[rank - 1], ia = sa[rank - 1], ib = sb[rank - 1];
  i64 rows = 1;
  for (int d = 0; d < rank - 1; ++d) rows *= shape[d];
  if (rows == 1) {
    parFor(inner, kGrainElems, [&](i64 j0, i64 j1) { binaryRow<OP>(A + j0 * ia, B + j0 * ib, O + j0, j1 - j0, ia, ib); });
    return;
  }
  bool sameRows = true;  // both inputs broadcast over every outer axis (e.g. the Mean gradient)
  for (int d = 0; d < rank - 1; ++d) sameRows = sameRows && sa[d] == 0 && sb[d] == 0;
  if (sameRows) {
    binaryRow<OP>(A, B, O, inner, ia, ib);
    // Replicate the first row by doubling copies: a memory-bound fill.
    for (i64 done = 1; done < rows;) {
      const i64 n = std::min(done, rows - done);
      std::memcpy(O + done * inner, O, sizeof(float) * n * inner);
      done += n;
    }
    return;
  }
  parFor(rows, rowGrain(inner), [&](i64 r0, i64 r1) {
    // Multi-index of row r0, then an odometer: no division per row.
    i64 idx[8] = {0}, oa = 0, ob = 0, rem = r0;
    for (int d = rank - 2; d >= 0; --d) {
      idx[d] = rem % shape[d];
      rem /= shape[d];
      oa += idx[d] * sa[d];
      ob += idx[d] * sb[d];
    }
    for (i64 r = r0; r < r1; ++r) {
      binaryRow<OP>(A + oa, B + ob, O + r * inner, inner, ia, ib);
      for (int d = rank - 2; d >= 0; --d) {
        oa += sa[d];
        ob += sb[d];
        if (++idx[d] < shape[d]) break;
        oa -= sa[d] * shape[d];
        ob -= sb[d] * shape[d];
        idx[d] = 0;
      }
    }
  });
}

// binary(op, a, b, out, outShape, stridesA, stridesB): strides are 0 on broadcast axes.
napi_value binary(const Args &a) {
  const int op = a.integer(0);
  size_t la, lb, lo, rank, r2, r3;
  float *A = a.f32(1, &la), *B = a.f32(2, &lb), *O = a.f32(3, &lo);
  int32_t *shp = a.i32(4, &rank), *s1 = a.i32(5, &r2), *s2 = a.i32(6, &r3);
  if (rank == 0 || rank > 8 || r2 != rank || r3 != rank) throw ArgError{"binary: bad shape/strides"};
  i64 shape[8], sa[8], sb[8], total = 1;
  for (size_t d = 0; d < rank; ++d) shape[d] = shp[d], sa[d] = s1[d], sb[d] = s2[d], total *= shp[d];
  checkLen(lo, total, "out");
  i64 maxA = 0, maxB = 0;
  for (size_t d = 0; d < rank; ++d) maxA += (shape[d] - 1) * sa[d], maxB += (shape[d] - 1) * sb[d];
  if (total > 0 && (maxA >= static_cast<i64>(la) || maxB >= static_cast<i64>(lb)))
    throw ArgError{"binary: strides exceed an input"};
  if (total == 0) return undef(a.env);
  const int r = static_cast<int>(rank);
  switch (op) {
    case ADD: binaryRun<ADD>(A, B, O, r, shape, sa, sb); break;
    case SUB: binaryRun<SUB>(A, B, O, r, shape, sa, sb); break;
    case MUL: binaryRun<MUL>(A, B, O, r, shape, sa, sb); break;
    case DIV: binaryRun<DIV>(A, B, O, r, shape, sa, sb); break;
    case MAXIMUM: binaryRun<MAXIMUM>(A, B, O, r, shape, sa, sb); break;
    case MINIMUM: binaryRun<MINIMUM>(A, B, O, r, shape, sa, sb); break;
    case SQDIFF: binaryRun<SQDIFF>(A, B, O, r, shape, sa, sb); break;
    case POW: binaryRun<POW>(A, B, O, r, shape, sa, sb); break;
    case RELU_GRAD: binaryRun<RELU_GRAD>(A, B, O, r, shape, sa, sb); break;
    case SQUARE_GRAD: binaryRun<SQUARE_GRAD>(A, B, O, r, shape, sa, sb); break;
    default: throw ArgError{"binary: unknown op"};
  }
  return undef(a.env);
}

// cond ? a : b via bit masks: GCC vectorizes this where it leaves a float select as branches.
inline float selectf(bool cond, float a, float b) {
  uint32_t ua, ub;
  std::memcpy(&ua, &a, 4);
  std::memcpy(&ub, &b, 4);
  const uint32_t m = 0u - static_cast<uint32_t>(cond);
  const uint32_t r = (ua & m) | (ub & ~m);
  float out;
  std::memcpy(&out, &r, 4);
  return out;
}

enum UnOp { RELU, STEP, NEG, SQUARE, SQRT, RSQRT, EXP, LOG, ABS, SIGMOID, TANH, RELU6, LEAKY, RECIP };

template <int OP>
void unaryRun(const float *X, float *O, i64 n, float alpha) {
  parFor(n, kGrainElems, [&](i64 i0, i64 i1) {
  for (i64 i = i0; i < i1; ++i) {
    const float x = X[i];
    float y;
    if constexpr (OP == RELU) y = std::isnan(x) ? x : (x > 0.f ? x : 0.f);
    if constexpr (OP == STEP) y = selectf(x != x, x, selectf(x > 0.f, 1.f, alpha));  // NaN stays NaN
    if constexpr (OP == NEG) y = -x;
    if constexpr (OP == SQUARE) y = x * x;
    if constexpr (OP == SQRT) y = std::sqrt(x);
    if constexpr (OP == RSQRT) y = 1.f / std::sqrt(x);
    if constexpr (OP == EXP) y = std::exp(x);
    if constexpr (OP == LOG) y = std::log(x);
    if constexpr (OP == ABS) y = std::fabs(x);
    if constexpr (OP == SIGMOID) y = 1.f / (1.f + std::exp(-x));
    if constexpr (OP == TANH) y = std::tanh(x);
    if constexpr (OP == RELU6) y = std::isnan(x) ? x : (x < 0.f ? 0.f : (x > 6.f ? 6.f : x));
    if constexpr (OP == LEAKY) y = x * selectf(x < 0.f, alpha, 1.f);
    if constexpr (OP == RECIP) y = 1.f / x;
    O[i] = y;
  }
  });
}

// unary(op, x, out, alpha)
napi_value unary(const Args &a) {
  const int op = a.integer(0);
  size_t lx, lo;
  float *X = a.f32(1, &lx), *O = a.f32(2, &lo);
  const float alpha = static_cast<float>(a.num(3));
  checkLen(lo, lx, "out");
  const i64 n = static_cast<i64>(lx);
  switch (op) {
    case RELU: unaryRun<RELU>(X, O, n, alpha); break;
    case STEP: unaryRun<STEP>(X, O, n, alpha); break;
    case NEG: unaryRun<NEG>(X, O, n, alpha); break;
    case SQUARE: unaryRun<SQUARE>(X, O, n, alpha); break;
    case SQRT: unaryRun<SQRT>(X, O, n, alpha); break;
    case RSQRT: unaryRun<RSQRT>(X, O, n, alpha); break;
    case EXP: unaryRun<EXP>(X, O, n, alpha); break;
    case LOG: unaryRun<LOG>(X, O, n, alpha); break;
    case ABS: unaryRun<ABS>(X, O, n, alpha); break;
    case SIGMOID: unaryRun<SIGMOID>(X, O, n, alpha); break;
    case TANH: unaryRun<TANH>(X, O, n, alpha); break;
    case RELU6: unaryRun<RELU6>(X, O, n, alpha); break;
    case LEAKY: unaryRun<LEAKY>(X, O, n, alpha); break;
    case RECIP: unaryRun<RECIP>(X, O, n, alpha); break;
    default: throw ArgError{"unary: unknown op"};
  }
  return undef(a.env);
}

// ---------------------------------------------------------------- reductions

enum RedOp { RSUM, RMEAN, RMAX, RMIN };

// reduce(op, x, out, outer, red, inner): x viewed as [outer, red, inner] -> out [outer, inner].
// Sums accumulate in double, like the cpu backend's JavaScript numbers.
napi_value reduce(const Args &a) {
  const int op = a.integer(0);
  size_t lx, lo;
  float *X = a.f32(1, &lx), *O = a.f32(2, &lo);
  const i64 outer = a.integer(3), red = a.integer(4), inner = a.integer(5);
  checkLen(lx, outer * red * inner, "x"), checkLen(lo, outer * inner, "out");
  if (red == 0) throw ArgError{"reduce: empty reduction"};
  const bool isSum = op == RSUM || op == RMEAN;
  const double scale = op == RMEAN ? 1.0 / static_cast<double>(red) : 1.0;
  auto rowsOf = [&](i64 o, i64 r0, i64 r1, double *ac) {  // fold rows [r0, r1) of outer row o into ac
    const float *x = X + o * red * inner;
    if (isSum) {
      // float sums over blocks of 32 rows (vectorizes), folded into double between blocks.
      std::vector<float> blk(inner);
      for (i64 rb = r0; rb < r1; rb += 32) {
        std::fill(blk.begin(), blk.end(), 0.f);
        const i64 re = std::min(r1, rb + 32);
        for (i64 r = rb; r < re; ++r)
          for (i64 j = 0; j < inner; ++j) blk[j] += x[r * inner + j];
        for (i64 j = 0; j < inner; ++j) ac[j] += blk[j];
      }
      return;
    }
    for (i64 r = r0; r < r1; ++r)
      for (i64 j = 0; j < inner; ++j) {
        const double v = x[r * inner + j];
        if (std::isnan(v) || (op == RMAX ? v > ac[j] : v < ac[j])) ac[j] = v;
      }
  };
  const double init = isSum ? 0.0 : (op == RMAX ? -INFINITY : INFINITY);
  auto finish = [&](double v) { return static_cast<float>(isSum ? v * scale : v); };
  const int T = pool()->threads();
  if (outer >= 2 * T) {
    parFor(outer, rowGrain(red * inner), [&](i64 o0, i64 o1) {
      std::vector<double> acc(inner);
      for (i64 o = o0; o < o1; ++o) {
        std::fill(acc.begin(), acc.end(), init);
        rowsOf(o, 0, red, acc.data());
        for (i64 j = 0; j < inner; ++j) O[o * inner + j] = finish(acc[j]);
      }
    });
    return undef(a.env);
  }
  // Few output rows (e.g. per-channel sums over N*H*W): chunks of the reduced axis, then combine.
  const int chunks = static_cast<int>(std::max<i64>(1, std::min<i64>(T * 4, red * inner / kGrainElems)));
  std::vector<double> part(static_cast<size_t>(chunks) * outer * inner, init);
  std::function<void(int, int)> job = [&](int c, int) {
    const i64 r0 = red * c / chunks, r1 = red * (c + 1) / chunks;
    for (i64 o = 0; o < outer; ++o) rowsOf(o, r0, r1, part.data() + (static_cast<size_t>(c) * outer + o) * inner);
  };
  pool()->run(chunks, job);
  for (i64 k = 0; k < outer * inner; ++k) {
    double v = part[k];
    for (int c = 1; c < chunks; ++c) {
      const double w = part[static_cast<size_t>(c) * outer * inner + k];
      if (isSum)
        v += w;
      else if (std::isnan(w) || (op == RMAX ? w > v : w < v))
        v = w;
    }
    O[k] = finish(v);
  }
  return undef(a.env);
}

// ---------------------------------------------------------------- strided copies

// gather(x, out, outShape, inStrides, offset): out[i] = x[offset + sum_d idx_d * inStrides[d]]
// (slice, strided slice, transpose, reverse are all this with different strides).
napi_value gather(const Args &a) {
  size_t lx, lo, rank, r2;
  float *X = a.f32(0, &lx), *O = a.f32(1, &lo);
  int32_t *shp = a.i32(2, &rank), *st = a.i32(3, &r2);
  const i64 offset = static_cast<i64>(a.num(4));
  if (rank == 0 || rank > 8 || r2 != rank) throw ArgError{"gather: bad shape/strides"};
  i64 shape[8], s[8], total = 1, lo_i = offset, hi_i = offset;
  for (size_t d = 0; d < rank; ++d) {
    shape[d] = shp[d], s[d] = st[d], total *= shp[d];
    if (shape[d] > 0) (s[d] > 0 ? hi_i : lo_i) += (shape[d] - 1) * s[d];
  }
  checkLen(lo, total, "out");
  if (total == 0) return undef(a.env);
  if (lo_i < 0 || hi_i >= static_cast<i64>(lx)) throw ArgError{"gather: indices exceed the input"};
  const int r = static_cast<int>(rank);
  const i64 inner = shape[r - 1], is = s[r - 1];
  const i64 rows = total / inner;
  parFor(rows, rowGrain(inner), [&](i64 r0, i64 r1) {
    // The first row's index by division, the next ones by an odometer over the outer axes: rows
    // are often short (16 channels in the ResNet shortcuts), where the divisions cost more than
    // the copy.
    i64 idx[8] = {0}, off = offset, rem = r0;
    for (int d = r - 2; d >= 0; --d) {
      idx[d] = rem % shape[d];
      off += idx[d] * s[d];
      rem /= shape[d];
    }
    for (i64 row = r0; row < r1; ++row) {
      float *o = O + row * inner;
      const float *x = X + off;
      if (is == 1)
        std::memcpy(o, x, sizeof(float) * inner);
      else
        for (i64 j = 0; j < inner; ++j) o[j] = x[j * is];
      for (int d = r - 2; d >= 0; --d) {
        off += s[d];
        if (++idx[d] < shape[d]) break;
        off -= idx[d] * s[d];
        idx[d] = 0;
      }
    }
  });
  return undef(a.env);
}

// pad(x, out, inShape, outShape, before, value): constant padding.
napi_value pad(const Args &a) {
  size_t lx, lo, r1, r2, r3;
  float *X = a.f32(0, &lx), *O = a.f32(1, &lo);
  int32_t *is = a.i32(2, &r1), *os = a.i32(3, &r2), *bf = a.i32(4, &r3);
  const float value = static_cast<float>(a.num(5));
  if (r1 == 0 || r1 > 8 || r2 != r1 || r3 != r1) throw ArgError{"pad: bad shapes"};
  const int r = static_cast<int>(r1);
  i64 total = 1, itotal = 1;
  for (int d = r - 1; d >= 0; --d) {
    total *= os[d];
    itotal *= is[d];
    if (bf[d] < 0 || bf[d] + is[d] > os[d]) throw ArgError{"pad: input does not fit"};
  }
  checkLen(lx, itotal, "x"), checkLen(lo, total, "out");
  if (itotal == 0) {
    parFor(total, kGrainElems, [&](i64 i0, i64 i1) { std::fill(O + i0, O + i1, value); });
    return undef(a.env);
  }
  // One pass over the output in whole output rows (the last axis): each row is the padding value
  // or one input row between its before/after padding, so every output element is written once.
  const i64 inner = is[r - 1], outInner = os[r - 1], before = bf[r - 1], outRows = total / outInner;
  parFor(outRows, rowGrain(outInner), [&](i64 r0, i64 r1) {
    // Output row index per outer axis (odometer) and the matching input row, -1 when in padding.
    i64 idx[8] = {0}, rem = r0;
    for (int d = r - 2; d >= 0; --d) {
      idx[d] = rem % os[d];
      rem /= os[d];
    }
    for (i64 row = r0; row < r1; ++row) {
      float *o = O + row * outInner;
      i64 inRow = 0;
      bool inside = true;
      for (int d = 0; d <= r - 2 && inside; ++d) {
        const i64 k = idx[d] - bf[d];
        inside = k >= 0 && k < is[d];
        inRow = inRow * is[d] + k;
      }
      if (inside) {
        std::fill(o, o + before, value);
        std::memcpy(o + before, X + inRow * inner, sizeof(float) * inner);
        std::fill(o + before + inner, o + outInner, value);
      } else {
        std::fill(o, o + outInner, value);
      }
      for (int d = r - 2; d >= 0; --d) {
        if (++idx[d] < os[d]) break;
        idx[d] = 0;
      }
    }
  });
  return undef(a.env);
}

// ---------------------------------------------------------------- pooling (NHWC)

// pool params: N IH IW C OH OW KH KW SH SW PT PL
struct PoolP {
  i64 N, IH, IW, C, OH, OW, KH, KW, SH, SW, PT, PL;
};
PoolP readPoolP(const Args &a, size_t i) {
  size_t n;
  int32_t *v = a.i32(i, &n);
  if (n != 12) throw ArgError{"pool params must have 12 entries"};
  PoolP p;
  i64 *o = &p.N;
  for (int k = 0; k < 12; ++k) o[k] = v[k];
  return p;
}

// oneDNN pooling forward (inference: no workspace; tfjs recomputes positions in the gradient),
// batch chunks on the worker pool like the convolutions. Returns false, computing nothing, when
// tfjs's padding does not fit oneDNN's output-size rule.
struct PoolEntry {
  dnnl::primitive prim;
  memory::desc srcMd, dstMd, scratchMd;
};
bool poolDnnl(bool max, const PoolP &p, const float *X, float *Y) {
  using namespace dnnl;
  // Bottom/right padding for oneDNN's rule out = (in + before + after - k) / s + 1 (floor); tfjs's
  // 'valid' may leave trailing input unused, which that rule allows with after = 0.
  auto fit = [](i64 in, i64 k, i64 s, i64 before, i64 o) -> i64 {
    const i64 after = std::max<i64>(0, (o - 1) * s + k - in - before);
    return (in + before + after - k) / s + 1 == o && after < k ? after : -1;
  };
  const i64 PB = fit(p.IH, p.KH, p.SH, p.PT, p.OH), PR = fit(p.IW, p.KW, p.SW, p.PL, p.OW);
  if (p.PT < 0 || p.PL < 0 || p.PT >= p.KH || p.PL >= p.KW || PB < 0 || PR < 0) return false;
  const int T = pool()->threads();
  const i64 cs = chunkSize(p.N, T, 4);
  const int nChunks = static_cast<int>((p.N + cs - 1) / cs);
  const i64 tail = p.N - (nChunks - 1) * cs;
  static std::unordered_map<std::string, std::unique_ptr<PoolEntry>> cache;
  auto entry = [&](i64 n) -> PoolEntry & {
    std::string key = std::string(max ? "max" : "avg");
    for (i64 v : {n, p.IH, p.IW, p.C, p.OH, p.OW, p.KH, p.KW, p.SH, p.SW, p.PT, p.PL}) key += "," + std::to_string(v);
    auto it = cache.find(key);
    if (it != cache.end()) return *it->second;
    auto e = std::make_unique<PoolEntry>();
    e->srcMd = actDesc(n, p.C, p.IH, p.IW);
    e->dstMd = actDesc(n, p.C, p.OH, p.OW);
    pooling_v2_forward::desc d(prop_kind::forward_inference,
                               max ? algorithm::pooling_max : algorithm::pooling_avg_exclude_padding, e->srcMd,
                               e->dstMd, {p.SH, p.SW}, {p.KH, p.KW}, {0, 0}, {p.PT, p.PL}, {PB, PR});
    primitive_attr attr;
    attr.set_scratchpad_mode(scratchpad_mode::user);
    pooling_v2_forward::primitive_desc pd(d, attr, engine());
    e->scratchMd = pd.scratchpad_desc();
    e->prim = pooling_v2_forward(pd);
    auto &ref = *e;
    cache.emplace(key, std::move(e));
    return ref;
  };
  PoolEntry &ec = entry(cs), &et = entry(tail);
  const i64 xPer = p.IH * p.IW * p.C, yPer = p.OH * p.OW * p.C;
  auto &eng = engine();
  std::function<void(int, int)> job = [&](int i, int) {
    PoolEntry &e = i == nChunks - 1 ? et : ec;
    const i64 n0 = i * cs;
    memory x(e.srcMd, eng, const_cast<float *>(X) + n0 * xPer), y(e.dstMd, eng, Y + n0 * yPer);
    execPrimitive(e.prim, e.scratchMd, {{DNNL_ARG_SRC, x}, {DNNL_ARG_DST, y}});
  };
  pool()->run(nChunks, job);
  return true;
}

// maxPool(params, x, y) / avgPool(params, x, y); padding is excluded (the cpu backend's semantics).
// oneDNN's pooling (about 3x faster than the loop below for LeNet-5's 2x2 pooling of 6 channels)
// when the padding fits its output-size rule, else the loop.
template <bool MAX>
napi_value poolFwd(const Args &a) {
  PoolP p = readPoolP(a, 0);
  size_t lx, ly;
  float *X = a.f32(1, &lx), *Y = a.f32(2, &ly);
  checkLen(lx, p.N * p.IH * p.IW * p.C, "x"), checkLen(ly, p.N * p.OH * p.OW * p.C, "y");
  if (p.N > 0 && p.OH > 0 && p.OW > 0 && p.C > 0 && poolDnnl(MAX, p, X, Y)) return undef(a.env);
  parFor(p.N * p.OH, rowGrain(p.OW * p.C * p.KH * p.KW), [&](i64 q0, i64 q1) {
  std::vector<float> acc(p.C);
  for (i64 q = q0; q < q1; ++q) {
      const i64 n = q / p.OH, oh = q % p.OH;
      const i64 h0 = oh * p.SH - p.PT;
      const i64 hs = h0 < 0 ? 0 : h0, he = std::min(p.IH, h0 + p.KH);
      for (i64 ow = 0; ow < p.OW; ++ow) {
        const i64 w0 = ow * p.SW - p.PL;
        const i64 ws = w0 < 0 ? 0 : w0, we = std::min(p.IW, w0 + p.KW);
        std::fill(acc.begin(), acc.end(), MAX ? -INFINITY : 0.f);
        for (i64 ih = hs; ih < he; ++ih)
          for (i64 iw = ws; iw < we; ++iw) {
            const float *x = X + ((n * p.IH + ih) * p.IW + iw) * p.C;
            for (i64 c = 0; c < p.C; ++c) {
              if (MAX) {
                acc[c] = x[c] > acc[c] ? x[c] : acc[c];  // maxps: no branch
              } else
                acc[c] += x[c];
            }
          }
        float *y = Y + ((n * p.OH + oh) * p.OW + ow) * p.C;
        const i64 cnt = (he - hs) * (we - ws);
        for (i64 c = 0; c < p.C; ++c) y[c] = MAX ? acc[c] : acc[c] / static_cast<float>(cnt > 0 ? cnt : 1);
      }
    }
  });
  return undef(a.env);
}

// One 2x2 window over C channels: dy to the first of the four positions (scan order) equal to the
// window's max y, zeros elsewhere. Bitwise & / | on the comparisons (not && / ||) and restrict
// pointers: no branches, no reloads, so it vectorizes.
inline void maxPoolGrad2x2(const float *__restrict a, const float *__restrict b, const float *__restrict c2,
                           const float *__restrict d, const float *__restrict y, const float *__restrict dy,
                           float *__restrict da, float *__restrict db, float *__restrict dc,
                           float *__restrict dd, i64 C) {
  for (i64 c = 0; c < C; ++c) {
    const float m = y[c], g = dy[c];
    const bool e0 = a[c] == m, e1 = b[c] == m, e2 = c2[c] == m, e3 = d[c] == m;
    da[c] = selectf(e0, g, 0.f);
    db[c] = selectf(e1 & !e0, g, 0.f);
    dc[c] = selectf(e2 & !(e0 | e1), g, 0.f);
    dd[c] = selectf(e3 & !(e0 | e1 | e2), g, 0.f);
  }
}

// maxPoolGrad(params, x, dy, dx, y|null): dy goes to the first strict maximum of each window (the
// cpu backend's maxPoolPositions order). y, the forward output, saves the scan for each window's
// maximum (tfjs-core's MaxPool gradient has it).
napi_value maxPoolGrad(const Args &a) {
  PoolP p = readPoolP(a, 0);
  size_t lx, ldy, ldx, ly;
  float *X = a.f32(1, &lx), *DY = a.f32(2, &ldy), *DX = a.f32(3, &ldx), *Y = a.f32(4, &ly);
  checkLen(lx, p.N * p.IH * p.IW * p.C, "x"), checkLen(ldy, p.N * p.OH * p.OW * p.C, "dy");
  checkLen(ldx, lx, "dx");
  if (Y) checkLen(ly, static_cast<i64>(ldy), "y");
  // Windows that do not overlap (2x2 stride 2, as in LeNet-5): every input position belongs to at
  // most one window, so dx is stored once per position instead of cleared and then accumulated;
  // positions outside every window are cleared only when there are any.
  const bool disjoint = p.KH <= p.SH && p.KW <= p.SW;
  const bool covered = disjoint && p.KH == p.SH && p.KW == p.SW && p.PT == 0 && p.PL == 0 &&
                       p.OH * p.SH == p.IH && p.OW * p.SW == p.IW;
  // 2x2 windows, stride 2, tiling the input exactly (LeNet-5, VGG): the four positions of a
  // window are tested in scan order with masks, one store per input element.
  if (covered && Y && p.KH == 2 && p.KW == 2) {
    const i64 C = p.C, rowIn = p.IW * C;
    parFor(p.N * p.OH, rowGrain(2 * rowIn), [&](i64 q0, i64 q1) {
      for (i64 q = q0; q < q1; ++q) {
        const i64 n = q / p.OH, oh = q % p.OH;
        const i64 in0 = (n * p.IH + 2 * oh) * rowIn;
        for (i64 ow = 0; ow < p.OW; ++ow) {
          const i64 o = (q * p.OW + ow) * C, i = in0 + 2 * ow * C;
          maxPoolGrad2x2(X + i, X + i + C, X + i + rowIn, X + i + rowIn + C, Y + o, DY + o, DX + i, DX + i + C,
                         DX + i + rowIn, DX + i + rowIn + C, C);
        }
      }
    });
    return undef(a.env);
  }
  parFor(p.N, rowGrain(p.IH * p.IW * p.C), [&](i64 n0, i64 n1) {
    // Per window: the max, then dy to the first position holding it (the cpu backend's first
    // strict maximum), as selects over channels so that it vectorizes.
    std::vector<float> scan(p.C), taken(p.C);
    for (i64 n = n0; n < n1; ++n) {
      float *dxn = DX + n * p.IH * p.IW * p.C;
      const float *xn = X + n * p.IH * p.IW * p.C;
      if (!covered) std::fill(dxn, dxn + p.IH * p.IW * p.C, 0.f);
      for (i64 oh = 0; oh < p.OH; ++oh) {
        const i64 h0 = oh * p.SH - p.PT;
        const i64 hs = h0 < 0 ? 0 : h0, he = std::min(p.IH, h0 + p.KH);
        for (i64 ow = 0; ow < p.OW; ++ow) {
          const i64 w0 = ow * p.SW - p.PL;
          const i64 ws = w0 < 0 ? 0 : w0, we = std::min(p.IW, w0 + p.KW);
          const i64 o = ((n * p.OH + oh) * p.OW + ow) * p.C;
          const float *best = scan.data();
          if (Y) {
            best = Y + o;
          } else {
            std::fill(scan.begin(), scan.end(), -INFINITY);
            for (i64 ih = hs; ih < he; ++ih)
              for (i64 iw = ws; iw < we; ++iw) {
                const float *x = xn + (ih * p.IW + iw) * p.C;
                for (i64 c = 0; c < p.C; ++c) scan[c] = x[c] > scan[c] ? x[c] : scan[c];
              }
          }
          // A window of only -inf/NaN has no strict maximum: it passes no gradient.
          for (i64 c = 0; c < p.C; ++c) taken[c] = best[c] > -INFINITY ? 0.f : 1.f;
          const float *dy = DY + o;
          for (i64 ih = hs; ih < he; ++ih)
            for (i64 iw = ws; iw < we; ++iw) {
              const float *x = xn + (ih * p.IW + iw) * p.C;
              float *dx = dxn + (ih * p.IW + iw) * p.C;
              if (disjoint) {
                for (i64 c = 0; c < p.C; ++c) {
                  const bool hit = x[c] == best[c] && taken[c] == 0.f;
                  dx[c] = selectf(hit, dy[c], 0.f);
                  taken[c] = selectf(hit, 1.f, taken[c]);
                }
              } else {
                for (i64 c = 0; c < p.C; ++c) {
                  const bool hit = x[c] == best[c] && taken[c] == 0.f;
                  dx[c] += selectf(hit, dy[c], 0.f);
                  taken[c] = selectf(hit, 1.f, taken[c]);
                }
              }
            }
        }
      }
    }
  });
  return undef(a.env);
}

// avgPoolGrad(params, dy, dx): like the cpu backend, every window position gets dy/(KH*KW).
napi_value avgPoolGrad(const Args &a) {
  PoolP p = readPoolP(a, 0);
  size_t ldy, ldx;
  float *DY = a.f32(1, &ldy), *DX = a.f32(2, &ldx);
  checkLen(ldy, p.N * p.OH * p.OW * p.C, "dy"), checkLen(ldx, p.N * p.IH * p.IW * p.C, "dx");
  const float mult = 1.f / static_cast<float>(p.KH * p.KW);
  parFor(p.N, rowGrain(p.IH * p.IW * p.C), [&](i64 n0, i64 n1) {
  for (i64 n = n0; n < n1; ++n) {
    float *dxn = DX + n * p.IH * p.IW * p.C;
    std::fill(dxn, dxn + p.IH * p.IW * p.C, 0.f);
    for (i64 oh = 0; oh < p.OH; ++oh) {
      const i64 h0 = oh * p.SH - p.PT;
      const i64 hs = h0 < 0 ? 0 : h0, he = std::min(p.IH, h0 + p.KH);
      for (i64 ow = 0; ow < p.OW; ++ow) {
        const i64 w0 = ow * p.SW - p.PL;
        const i64 ws = w0 < 0 ? 0 : w0, we = std::min(p.IW, w0 + p.KW);
        const float *dy = DY + ((n * p.OH + oh) * p.OW + ow) * p.C;
        for (i64 ih = hs; ih < he; ++ih)
          for (i64 iw = ws; iw < we; ++iw) {
            float *dx = dxn + (ih * p.IW + iw) * p.C;
            for (i64 c = 0; c < p.C; ++c) dx[c] += dy[c] * mult;
          }
      }
    }
  }
  });
  return undef(a.env);
}

// ---------------------------------------------------------------- batch norm (channels last)

// Two per-channel sums over rows of C channels: row(r, b1, b2) adds row r's terms to the float
// accumulators b1/b2 (length C), which are folded into double every 32 rows (float blocks
// vectorize; double keeps long sums exact enough). Chunking is deterministic (same rows -> same
// chunks), so results do not depend on which thread ran which chunk. s1/s2 get the totals.
template <typename Row>
void channelSums(i64 rows, i64 C, std::vector<double> &s1, std::vector<double> &s2, Row &&row) {
  const int nt = static_cast<int>(
      std::max<i64>(1, std::min<i64>(pool()->threads() * 4, rows * C / kGrainElems)));
  s1.assign(static_cast<size_t>(nt) * C, 0.0);
  s2.assign(static_cast<size_t>(nt) * C, 0.0);
  std::function<void(int, int)> job = [&](int t, int) {
    double *a1 = s1.data() + static_cast<size_t>(t) * C, *a2 = s2.data() + static_cast<size_t>(t) * C;
    const i64 r0 = rows * t / nt, r1 = rows * (t + 1) / nt;
    std::vector<float> b1(C), b2(C);
    for (i64 rb = r0; rb < r1; rb += 32) {
      std::fill(b1.begin(), b1.end(), 0.f);
      std::fill(b2.begin(), b2.end(), 0.f);
      const i64 re = std::min(r1, rb + 32);
      for (i64 r = rb; r < re; ++r) row(r, b1.data(), b2.data());
      for (i64 c = 0; c < C; ++c) a1[c] += b1[c], a2[c] += b2[c];
    }
  };
  pool()->run(nt, job);
  for (int t = 1; t < nt; ++t)
    for (i64 c = 0; c < C; ++c)
      s1[c] += s1[static_cast<size_t>(t) * C + c], s2[c] += s2[static_cast<size_t>(t) * C + c];
}

// ReLU as the Relu kernel computes it (NaN passes through, -0 and negatives become +0).
inline float reluOf(float v) { return v > 0.f ? v : (v != v ? v : 0.f); }
// The ReLU gradient's factor step(v) as the Relu gradient computes it (NaN for NaN), as mask
// arithmetic like RELU_GRAD: a branch on the sign of a pre-activation mispredicts half the time
// (a batch norm + ReLU gradient ran 17x slower than without the ReLU that way).
inline float reluStep(float v) {
  const uint32_t gt = 0u - static_cast<uint32_t>(v > 0.f), nan = 0u - static_cast<uint32_t>(v != v);
  const uint32_t bits = (gt & 0x3f800000u) | (nan & 0x7fc00000u);
  float m;
  std::memcpy(&m, &bits, sizeof m);
  return m;
}

// y = x * mul[c] + add[c] over rows of C channels (batch norm with per-channel constants), then
// ReLU when Relu (batch norm and the activation after it in one pass).
template <bool Relu = false>
void affineRows(const float *X, float *Y, i64 rows, i64 C, const std::vector<float> &mul,
                const std::vector<float> &add) {
  parFor(rows, rowGrain(C), [&](i64 r0, i64 r1) {
    for (i64 r = r0; r < r1; ++r) {
      const float *x = X + r * C;
      float *y = Y + r * C;
      for (i64 c = 0; c < C; ++c) {
        const float v = x[c] * mul[c] + add[c];
        y[c] = Relu ? reluOf(v) : v;
      }
    }
  });
}

// batchNorm(x, mean, variance, offset|null, scale|null, eps, out): per-channel params of length C
// (or 1, broadcast).
napi_value batchNorm(const Args &a) {
  size_t lx, lm, lv, lof, lsc, lo;
  float *X = a.f32(0, &lx), *Mn = a.f32(1, &lm), *V = a.f32(2, &lv), *Of = a.f32(3, &lof), *Sc = a.f32(4, &lsc);
  const double eps = a.num(5);
  float *O = a.f32(6, &lo);
  const i64 C = static_cast<i64>(std::max({lm, lv, Of ? lof : 1, Sc ? lsc : 1}));
  checkLen(lo, lx, "out");
  if (C == 0 || lx % C != 0) throw ArgError{"batchNorm: x is not a multiple of the channel count"};
  std::vector<float> mul(C), add(C);
  for (i64 c = 0; c < C; ++c) {
    const double m = Mn[lm == 1 ? 0 : c], v = V[lv == 1 ? 0 : c];
    const double s = Sc ? Sc[lsc == 1 ? 0 : c] : 1.0, o = Of ? Of[lof == 1 ? 0 : c] : 0.0;
    const double k = s / std::sqrt(v + eps);
    mul[c] = static_cast<float>(k);
    add[c] = static_cast<float>(o - m * k);
  }
  affineRows(X, O, static_cast<i64>(lx) / C, C, mul, add);
  return undef(a.env);
}

// batchNormGrad(dy, x, mean, variance, scale|null, eps, dx, dmean, dvar, dscale, doffset): the
// gradient of y = (x - mean) * scale / sqrt(var + eps) + offset w.r.t. each input, with mean and
// variance treated as independent inputs (as tfjs-core's FusedBatchNorm gradient does).
napi_value batchNormGrad(const Args &a) {
  size_t ldy, lx, lm, lv, lsc, ldx, l1, l2, l3, l4;
  float *DY = a.f32(0, &ldy), *X = a.f32(1, &lx), *Mn = a.f32(2, &lm), *V = a.f32(3, &lv), *Sc = a.f32(4, &lsc);
  const double eps = a.num(5);
  float *DX = a.f32(6, &ldx), *DM = a.f32(7, &l1), *DV = a.f32(8, &l2), *DS = a.f32(9, &l3), *DO = a.f32(10, &l4);
  const i64 C = static_cast<i64>(lm);
  checkLen(lv, C, "variance"), checkLen(lx, ldy, "x"), checkLen(ldx, ldy, "dx");
  if (Sc) checkLen(lsc, C, "scale");
  checkLen(l1, C, "dmean"), checkLen(l2, C, "dvariance"), checkLen(l3, C, "dscale"), checkLen(l4, C, "doffset");
  if (C == 0 || lx % C != 0) throw ArgError{"batchNormGrad: x is not a multiple of the channel count"};
  const i64 rows = static_cast<i64>(lx) / C;
  std::vector<float> k(C);
  std::vector<double> inv(C);
  for (i64 c = 0; c < C; ++c) {
    inv[c] = 1.0 / std::sqrt(static_cast<double>(V[c]) + eps);
    k[c] = static_cast<float>(inv[c] * (Sc ? Sc[c] : 1.0));
  }
  // dx = dy * k in the same pass as the sums.
  std::vector<double> s1, s2;
  channelSums(rows, C, s1, s2, [&](i64 r, float *__restrict b1, float *__restrict b2) {
    const float *dy = DY + r * C, *x = X + r * C;
    float *dx = DX + r * C;
    for (i64 c = 0; c < C; ++c) {
      dx[c] = dy[c] * k[c];
      b1[c] += dy[c];
      b2[c] += dy[c] * (x[c] - Mn[c]);
    }
  });
  for (i64 c = 0; c < C; ++c) {
    const double a1 = s1[c], a2 = s2[c];
    const double s = Sc ? Sc[c] : 1.0;
    DM[c] = static_cast<float>(-inv[c] * s * a1);
    DV[c] = static_cast<float>(-0.5 * inv[c] * inv[c] * inv[c] * s * a2);
    DS[c] = static_cast<float>(inv[c] * a2);
    DO[c] = static_cast<float>(a1);
  }
  return undef(a.env);
}

// ---------------------------------------------------------------- training-mode batch norm
//
// tfjs-layers trains BatchNormalization as moments() + batchNorm(): mean, sub, square, mean, then
// the normalisation, and the gradient runs back through all of them (about ten full-size passes
// and as many allocations per layer and step). These two kernels do the same maths in two passes
// each way, as cuDNN/oneDNN training batch norm does.

// The per-channel constants of y = x * mul + add when a ReLU follows: from the float mean as stored
// (not the double one), so that batchNormTrainGrad recomputes every pre-activation bit for bit
// and masks the gradient exactly where the forward pass rectified.
void reluAffine(const float *M, const float *V, const float *Sc, const float *Of, double eps, i64 C,
                std::vector<float> &mul, std::vector<float> &add) {
  for (i64 c = 0; c < C; ++c) {
    const double k = (Sc ? Sc[c] : 1.0) / std::sqrt(static_cast<double>(V[c]) + eps);
    mul[c] = static_cast<float>(k);
    add[c] = static_cast<float>((Of ? Of[c] : 0.0) - static_cast<double>(M[c]) * k);
  }
}

// batchNormTrain(x, scale|null, offset|null, eps, y, mean, variance[, relu]): batch statistics over
// all axes but the last (biased variance, as tf.moments), then y = (x - mean) / sqrt(var + eps) *
// scale + offset, rectified when relu is 1. Sums are taken around the first row (a per-channel
// shift) so that channels whose mean is large against their spread keep their variance.
napi_value batchNormTrain(const Args &a) {
  size_t lx, lsc, lof, ly, lm, lv;
  float *X = a.f32(0, &lx), *Sc = a.f32(1, &lsc), *Of = a.f32(2, &lof);
  const double eps = a.num(3);
  float *Y = a.f32(4, &ly), *M = a.f32(5, &lm), *V = a.f32(6, &lv);
  const i64 C = static_cast<i64>(lm);
  checkLen(lv, C, "variance"), checkLen(ly, static_cast<i64>(lx), "y");
  if (Sc) checkLen(lsc, C, "scale");
  if (Of) checkLen(lof, C, "offset");
  if (C == 0 || lx == 0 || lx % C != 0) throw ArgError{"batchNormTrain: x is not a multiple of the channel count"};
  const i64 rows = static_cast<i64>(lx) / C;
  std::vector<float> shift(X, X + C);
  std::vector<double> s1, s2;
  channelSums(rows, C, s1, s2, [&](i64 r, float *__restrict b1, float *__restrict b2) {
    const float *x = X + r * C;
    for (i64 c = 0; c < C; ++c) {
      const float d = x[c] - shift[c];
      b1[c] += d;
      b2[c] += d * d;
    }
  });
  std::vector<float> mul(C), add(C);
  for (i64 c = 0; c < C; ++c) {
    const double md = s1[c] / rows;
    const double var = std::max(0.0, s2[c] / rows - md * md);
    const double mean = shift[c] + md;
    M[c] = static_cast<float>(mean);
    V[c] = static_cast<float>(var);
    const double k = (Sc ? Sc[c] : 1.0) / std::sqrt(var + eps);
    mul[c] = static_cast<float>(k);
    add[c] = static_cast<float>((Of ? Of[c] : 0.0) - mean * k);
  }
  if (a.argc > 7 && a.integer(7) != 0) {
    reluAffine(M, V, Sc, Of, eps, C, mul, add);
    affineRows<true>(X, Y, rows, C, mul, add);
  } else {
    affineRows(X, Y, rows, C, mul, add);
  }
  return undef(a.env);
}

// dy at one element, times the ReLU's step at the recomputed pre-activation x * rmul + radd when
// the forward pass was rectified (Relu).
template <bool Relu>
inline float bnGradDy(float dy, float x, float rmul, float radd) {
  return Relu ? dy * reluStep(x * rmul + radd) : dy;
}

// Pass 1 of batchNormTrainGrad: per channel, sum(dy) and sum(dy * (x - mean)).
template <bool Relu>
void bnGradSums(const float *DY, const float *X, const float *M, i64 rows, i64 C, const float *rmul,
                const float *radd, std::vector<double> &s1, std::vector<double> &s2) {
  channelSums(rows, C, s1, s2, [&](i64 r, float *__restrict b1, float *__restrict b2) {
    const float *__restrict dy = DY + r * C, *__restrict x = X + r * C, *__restrict m = M;
    for (i64 c = 0; c < C; ++c) {
      const float g = bnGradDy<Relu>(dy[c], x[c], Relu ? rmul[c] : 0.f, Relu ? radd[c] : 0.f);
      b1[c] += g;
      b2[c] += g * (x[c] - m[c]);
    }
  });
}

// Pass 2 of batchNormTrainGrad: dx = dy k + (x - mean) B + A per channel.
template <bool Relu>
void bnGradDx(const float *DY, const float *X, const float *M, i64 rows, i64 C, const float *rmul,
              const float *radd, const float *k, const float *A, const float *B, float *DX) {
  parFor(rows, rowGrain(C), [&](i64 r0, i64 r1) {
    for (i64 r = r0; r < r1; ++r) {
      const float *__restrict dy = DY + r * C, *__restrict x = X + r * C;
      float *__restrict dx = DX + r * C;
      for (i64 c = 0; c < C; ++c) {
        const float g = bnGradDy<Relu>(dy[c], x[c], Relu ? rmul[c] : 0.f, Relu ? radd[c] : 0.f);
        dx[c] = g * k[c] + (x[c] - M[c]) * B[c] + A[c];
      }
    }
  });
}

// batchNormTrainGrad(dy, x, scale|null, mean, variance, dmean|null, dvariance|null, eps, dx, dscale,
// doffset[, reluOffset]): the gradient of batchNormTrain, the batch statistics being functions of x.
// dmean and dvariance are gradients arriving at the statistics outputs (null when nothing used
// them). With reluOffset (the forward pass's offset, or a zero-length array for none) the forward
// pass was rectified: dy is first multiplied by the ReLU's step at the recomputed pre-activation,
// which spares the separate ReLU-gradient pass and the pre-activation tensor it would read.
napi_value batchNormTrainGrad(const Args &a) {
  size_t ldy, lx, lsc, lm, lv, ldm, ldv, ldx, lds, ldo;
  float *DY = a.f32(0, &ldy), *X = a.f32(1, &lx), *Sc = a.f32(2, &lsc), *M = a.f32(3, &lm), *V = a.f32(4, &lv);
  float *DM = a.f32(5, &ldm), *DV = a.f32(6, &ldv);
  const double eps = a.num(7);
  float *DX = a.f32(8, &ldx), *DS = a.f32(9, &lds), *DO = a.f32(10, &ldo);
  const i64 C = static_cast<i64>(lm);
  checkLen(lv, C, "variance"), checkLen(lx, static_cast<i64>(ldy), "x"), checkLen(ldx, static_cast<i64>(ldy), "dx");
  checkLen(lds, C, "dscale"), checkLen(ldo, C, "doffset");
  if (Sc) checkLen(lsc, C, "scale");
  if (DM) checkLen(ldm, C, "dmean");
  if (DV) checkLen(ldv, C, "dvariance");
  if (C == 0 || lx == 0 || lx % C != 0) throw ArgError{"batchNormTrainGrad: x is not a multiple of the channel count"};
  const i64 rows = static_cast<i64>(lx) / C;
  const bool relu = a.argc > 11 && !a.isNull(11);
  std::vector<float> rmul(C), radd(C);
  if (relu) {
    size_t lro;
    const float *RO = a.f32(11, &lro);
    if (lro != 0) checkLen(lro, C, "reluOffset");
    reluAffine(M, V, Sc, lro ? RO : nullptr, eps, C, rmul, radd);
  }
  std::vector<double> s1, s2;
  // Pass 1: sum(dy) and sum(dy * (x - mean)) per channel.
  if (relu)
    bnGradSums<true>(DY, X, M, rows, C, rmul.data(), radd.data(), s1, s2);
  else
    bnGradSums<false>(DY, X, M, rows, C, nullptr, nullptr, s1, s2);
  // dx = k dy + B (x - mean) + A, with k = scale * inv and (N rows, xhat = (x - mean) inv)
  //   from y:         k (dy - sum(dy)/N - xhat sum(dy xhat)/N)
  //   from mean/var:  dmean/N + dvar 2 (x - mean)/N
  std::vector<float> k(C), A(C), B(C);
  const double n = static_cast<double>(rows);
  for (i64 c = 0; c < C; ++c) {
    const double inv = 1.0 / std::sqrt(static_cast<double>(V[c]) + eps);
    const double kc = (Sc ? Sc[c] : 1.0) * inv;
    k[c] = static_cast<float>(kc);
    A[c] = static_cast<float>(-kc * s1[c] / n + (DM ? DM[c] : 0.0) / n);
    B[c] = static_cast<float>(-kc * inv * inv * s2[c] / n + (DV ? 2.0 * DV[c] : 0.0) / n);
    DS[c] = static_cast<float>(s2[c] * inv);
    DO[c] = static_cast<float>(s1[c]);
  }
  if (relu)
    bnGradDx<true>(DY, X, M, rows, C, rmul.data(), radd.data(), k.data(), A.data(), B.data(), DX);
  else
    bnGradDx<false>(DY, X, M, rows, C, nullptr, nullptr, k.data(), A.data(), B.data(), DX);
  return undef(a.env);
}

// ---------------------------------------------------------------- optimizer

// sgdMomentum(w, buf, g, lr, momentum, weightDecay, nesterov, wOut, bufOut): one step of
// training/sgd.ts MomentumSgd (PyTorch's convention) for one variable, in one pass instead of
// six tfjs ops:
//   g' = g + wd w;  buf' = momentum buf + g';  w' = w - lr (nesterov ? g' + momentum buf' : buf')
// With momentum 0 the buffer is left as it is (bufOut may be null) and w' = w - lr g'.
napi_value sgdMomentum(const Args &a) {
  size_t lw, lb, lg, lwo, lbo;
  float *W = a.f32(0, &lw), *B = a.f32(1, &lb), *G = a.f32(2, &lg);
  const float lr = static_cast<float>(a.num(3)), mom = static_cast<float>(a.num(4)),
              wd = static_cast<float>(a.num(5));
  const bool nesterov = a.integer(6) != 0;
  float *WO = a.f32(7, &lwo), *BO = a.f32(8, &lbo);
  const i64 n = static_cast<i64>(lw);
  checkLen(lg, n, "grad"), checkLen(lwo, n, "wOut");
  const bool useMomentum = mom > 0.f;
  if (useMomentum) {
    if (!B || !BO) throw ArgError{"sgdMomentum: buffers are required when momentum > 0"};
    checkLen(lb, n, "buf"), checkLen(lbo, n, "bufOut");
  }
  parFor(n, kGrainElems, [&](i64 i0, i64 i1) {
    for (i64 i = i0; i < i1; ++i) {
      const float g = wd != 0.f ? G[i] + W[i] * wd : G[i];
      if (useMomentum) {
        const float b = B[i] * mom + g;
        BO[i] = b;
        WO[i] = W[i] - (nesterov ? g + b * mom : b) * lr;
      } else {
        WO[i] = W[i] - g * lr;
      }
    }
  });
  return undef(a.env);
}

// ---------------------------------------------------------------- misc

// setNumThreads(n): size of the worker pool (the calling thread included).
napi_value setNumThreads(const Args &a) {
  const int n = a.integer(0);
  if (n < 1) throw ArgError{"threads must be >= 1"};
  auto &p = pool();
  if (p->threads() != n) {
    p.reset();
    p = std::make_unique<Pool>(n);
  }
  return undef(a.env);
}

napi_value info(const Args &a) {
  napi_value o, v;
  napi_create_object(a.env, &o);
  const dnnl_version_t *ver = dnnl_version();
  std::string s = std::to_string(ver->major) + "." + std::to_string(ver->minor) + "." + std::to_string(ver->patch);
  napi_create_string_utf8(a.env, s.c_str(), s.size(), &v);
  napi_set_named_property(a.env, o, "onednn", v);
  napi_create_int32(a.env, pool()->threads(), &v);
  napi_set_named_property(a.env, o, "threads", v);
  napi_create_int32(a.env, static_cast<int32_t>(convCache().size()), &v);
  napi_set_named_property(a.env, o, "cachedPrimitives", v);
  return o;
}

napi_value init(napi_env env, napi_value exports) {
  // oneDNN runs single-threaded in every thread; parallelism comes from the Pool.
  omp_set_num_threads(1);
  napi_property_descriptor props[] = {
      {"conv", nullptr, wrap<conv>, nullptr, nullptr, nullptr, napi_default_jsproperty, nullptr},
      {"convProfile", nullptr, wrap<convProfile>, nullptr, nullptr, nullptr, napi_default_jsproperty, nullptr},
      {"convImpl", nullptr, wrap<convImpl>, nullptr, nullptr, nullptr, napi_default_jsproperty, nullptr},
      {"matmul", nullptr, wrap<matmul>, nullptr, nullptr, nullptr, napi_default_jsproperty, nullptr},
      {"binary", nullptr, wrap<binary>, nullptr, nullptr, nullptr, napi_default_jsproperty, nullptr},
      {"unary", nullptr, wrap<unary>, nullptr, nullptr, nullptr, napi_default_jsproperty, nullptr},
      {"reduce", nullptr, wrap<reduce>, nullptr, nullptr, nullptr, napi_default_jsproperty, nullptr},
      {"gather", nullptr, wrap<gather>, nullptr, nullptr, nullptr, napi_default_jsproperty, nullptr},
      {"pad", nullptr, wrap<pad>, nullptr, nullptr, nullptr, napi_default_jsproperty, nullptr},
      {"maxPool", nullptr, wrap<poolFwd<true>>, nullptr, nullptr, nullptr, napi_default_jsproperty, nullptr},
      {"avgPool", nullptr, wrap<poolFwd<false>>, nullptr, nullptr, nullptr, napi_default_jsproperty, nullptr},
      {"maxPoolGrad", nullptr, wrap<maxPoolGrad>, nullptr, nullptr, nullptr, napi_default_jsproperty, nullptr},
      {"avgPoolGrad", nullptr, wrap<avgPoolGrad>, nullptr, nullptr, nullptr, napi_default_jsproperty, nullptr},
      {"batchNorm", nullptr, wrap<batchNorm>, nullptr, nullptr, nullptr, napi_default_jsproperty, nullptr},
      {"batchNormGrad", nullptr, wrap<batchNormGrad>, nullptr, nullptr, nullptr, napi_default_jsproperty, nullptr},
      {"batchNormTrain", nullptr, wrap<batchNormTrain>, nullptr, nullptr, nullptr, napi_default_jsproperty, nullptr},
      {"batchNormTrainGrad", nullptr, wrap<batchNormTrainGrad>, nullptr, nullptr, nullptr, napi_default_jsproperty, nullptr},
      {"sgdMomentum", nullptr, wrap<sgdMomentum>, nullptr, nullptr, nullptr, napi_default_jsproperty, nullptr},
      {"setNumThreads", nullptr, wrap<setNumThreads>, nullptr, nullptr, nullptr, napi_default_jsproperty, nullptr},
      {"info", nullptr, wrap<info>, nullptr, nullptr, nullptr, napi_default_jsproperty, nullptr},
  };
  napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props);
  return exports;
}

}  // namespace

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
