// Thin N-API binding to OpenBLAS (CBLAS) and LAPACKE for @flatrank/core. JavaScript allocates every
// output array and passes it in; each function fills it and returns LAPACK's `info` (0 = success), so
// no memory crosses the boundary and errors stay typed on the JavaScript side.
#include <napi.h>
#include <cblas.h>
#include <lapacke.h>
#include <algorithm>
#include <cstring>
#include <vector>

namespace {

double* F64(const Napi::Value& v) {
  return reinterpret_cast<double*>(v.As<Napi::TypedArrayOf<double>>().Data());
}
float* F32(const Napi::Value& v) {
  return reinterpret_cast<float*>(v.As<Napi::TypedArrayOf<float>>().Data());
}
int I(const Napi::Value& v) { return v.As<Napi::Number>().Int32Value(); }

// gemm(transA, transB, m, n, k, a, lda, b, ldb, c, ldc): C = op(A) op(B), row-major, all float32 or all float64.
Napi::Value Gemm(const Napi::CallbackInfo& info) {
  const bool ta = info[0].As<Napi::Boolean>().Value();
  const bool tb = info[1].As<Napi::Boolean>().Value();
  const int m = I(info[2]), n = I(info[3]), k = I(info[4]);
  const int lda = I(info[6]), ldb = I(info[8]), ldc = I(info[10]);
  const auto opA = ta ? CblasTrans : CblasNoTrans;
  const auto opB = tb ? CblasTrans : CblasNoTrans;
  if (info[5].As<Napi::TypedArray>().TypedArrayType() == napi_float32_array) {
    cblas_sgemm(CblasRowMajor, opA, opB, m, n, k, 1.0f, F32(info[5]), lda, F32(info[7]), ldb, 0.0f, F32(info[9]), ldc);
  } else {
    cblas_dgemm(CblasRowMajor, opA, opB, m, n, k, 1.0, F64(info[5]), lda, F64(info[7]), ldb, 0.0, F64(info[9]), ldc);
  }
  return info.Env().Undefined();
}

// gesdd(a, m, n, s, u, vt): thin SVD of the row-major m x n matrix a (destroyed). A row-major m x n
// buffer is the column-major n x m matrix A^T = V S U^T, so LAPACK's "U" of A^T is V (returned as
// row-major V^T, k x n) and its "VT" is U^T (which read row-major is U, m x k): no transposition copies.
Napi::Value Gesdd(const Napi::CallbackInfo& info) {
  const int m = I(info[1]), n = I(info[2]);
  const int k = std::min(m, n);
  const lapack_int r = LAPACKE_dgesdd(LAPACK_COL_MAJOR, 'S', n, m, F64(info[0]), n, F64(info[3]),
                                      F64(info[5]), n, F64(info[4]), k);
  return Napi::Number::New(info.Env(), r);
}

// gesddValues(a, m, n, s): the singular values only of the row-major m x n matrix a (destroyed), descending.
// jobz = 'N': dgesdd reduces to bidiagonal form and runs dqds (dbdsdc -> dlasdq) without forming or
// updating U and V, a fraction of the full SVD's work for the callers that need only the spectrum.
Napi::Value GesddValues(const Napi::CallbackInfo& info) {
  const int m = I(info[1]), n = I(info[2]);
  double dummy = 0;  // U and VT are not referenced for jobz = 'N'; LAPACKE still wants ldu, ldvt >= 1.
  const lapack_int r = LAPACKE_dgesdd(LAPACK_COL_MAJOR, 'N', n, m, F64(info[0]), n, F64(info[3]),
                                      &dummy, 1, &dummy, 1);
  return Napi::Number::New(info.Env(), r);
}

// syevd(a, n, w): eigenvalues ascending in w; a (symmetric, so layout-free) is overwritten with the
// eigenvectors column-major, i.e. read row-major its rows are the eigenvectors.
Napi::Value Syevd(const Napi::CallbackInfo& info) {
  const int n = I(info[1]);
  const lapack_int r = LAPACKE_dsyevd(LAPACK_COL_MAJOR, 'V', 'U', n, F64(info[0]), n, F64(info[2]));
  return Napi::Number::New(info.Env(), r);
}

// qr(a, m, n, q, r): thin Householder QR of row-major a (destroyed): q is m x k, r is k x n, k = min(m, n).
Napi::Value Qr(const Napi::CallbackInfo& info) {
  double* a = F64(info[0]);
  const int m = I(info[1]), n = I(info[2]);
  const int k = std::min(m, n);
  double* q = F64(info[3]);
  double* r = F64(info[4]);
  std::vector<double> tau(std::max(1, k));
  lapack_int res = LAPACKE_dgeqrf(LAPACK_ROW_MAJOR, m, n, a, n, tau.data());
  if (res != 0) return Napi::Number::New(info.Env(), res);
  for (int i = 0; i < k; i++)
    for (int j = 0; j < n; j++) r[i * n + j] = j >= i ? a[i * n + j] : 0.0;
  for (int i = 0; i < m; i++) std::memcpy(q + i * k, a + i * n, sizeof(double) * k);
  res = LAPACKE_dorgqr(LAPACK_ROW_MAJOR, m, k, k, q, k, tau.data());
  return Napi::Number::New(info.Env(), res);
}

// gels(a, m, n, b, nrhs): least squares / minimum norm for full-rank a (destroyed); b is max(m,n) x nrhs
// row-major and holds the solution in its first n rows. info > 0 means a is rank deficient.
Napi::Value Gels(const Napi::CallbackInfo& info) {
  const int m = I(info[1]), n = I(info[2]), nrhs = I(info[4]);
  const lapack_int r = LAPACKE_dgels(LAPACK_ROW_MAJOR, 'N', m, n, nrhs, F64(info[0]), n, F64(info[3]), nrhs);
  return Napi::Number::New(info.Env(), r);
}

Napi::Value Config(const Napi::CallbackInfo& info) {
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("threads", Napi::Number::New(info.Env(), openblas_get_num_threads()));
  o.Set("openblas", Napi::String::New(info.Env(), openblas_get_config()));
  return o;
}

// threads(n): sets OpenBLAS's thread count when n > 0; returns the count in effect. Small problems run
// faster on one thread, and far faster when other processes keep the cores busy (no spinning workers).
Napi::Value Threads(const Napi::CallbackInfo& info) {
  const int n = I(info[0]);
  if (n > 0) openblas_set_num_threads(n);
  return Napi::Number::New(info.Env(), openblas_get_num_threads());
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("threads", Napi::Function::New(env, Threads));
  exports.Set("gemm", Napi::Function::New(env, Gemm));
  exports.Set("gesdd", Napi::Function::New(env, Gesdd));
  exports.Set("gesddValues", Napi::Function::New(env, GesddValues));
  exports.Set("syevd", Napi::Function::New(env, Syevd));
  exports.Set("qr", Napi::Function::New(env, Qr));
  exports.Set("gels", Napi::Function::New(env, Gels));
  exports.Set("config", Napi::Function::New(env, Config));
  return exports;
}

}  // namespace

NODE_API_MODULE(flatrank_linalg, Init)
