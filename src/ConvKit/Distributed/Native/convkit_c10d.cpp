// ConvKit's bridge to libtorch's c10d (TCPStore + ProcessGroupGloo), exported as a small extern "C" API.
//
// Why hand-written declarations: the TorchSharp-cpu NuGet package ships libtorch 2.10's libraries but no headers,
// and Debian's libtorch-dev is 1.13 (another ABI). We declare only what we call, matching libtorch 2.10's layouts
// (checked against the library's own code: TCPStoreOptions.timeout at offset 0x20, read by TCPStore::TCPStore),
// and we call only exported, non-virtual entry points (mangled names resolved by the dynamic linker). The refcount
// layout of c10::intrusive_ptr_target is checked at run time by ck_c10d_probe before anything else is used.
//
// Why extern "C" with try/catch everywhere: a C++ exception (dead peer, timeout, refused connection) cannot cross
// P/Invoke; it would abort the .NET process. Every entry point catches, copies the message, returns an error code.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <exception>
#include <new>
#include <optional>
#include <string>
#include <vector>

namespace c10 {
namespace detail {
template <class T> struct intrusive_target_default_null_type {};
}
// Refcounts as libtorch 2.10 lays them out: one 64-bit word after the vtable pointer, strong count in the low
// 32 bits, weak count in the high 32 bits (checked by ck_c10d_probe).
constexpr uint64_t kStrongOne = 1;
constexpr uint64_t kWeakOne = uint64_t(1) << 32;

struct Target {
  void** vtable;
  std::atomic<uint64_t> combined;
};

inline void release_target(void* p) {
  if (!p) return;
  auto* t = static_cast<Target*>(p);
  uint64_t after = t->combined.fetch_sub(kStrongOne, std::memory_order_acq_rel) - kStrongOne;
  if ((after & 0xffffffffu) != 0) return;
  // vtable slots of intrusive_ptr_target: [0] complete dtor, [1] deleting dtor, [2] release_resources.
  using Fn = void (*)(void*);
  reinterpret_cast<Fn>(t->vtable[2])(p);
  uint64_t w = t->combined.fetch_sub(kWeakOne, std::memory_order_acq_rel) - kWeakOne;
  if ((w >> 32) == 0) reinterpret_cast<Fn>(t->vtable[1])(p);
}

inline void retain_target(void* p) {
  if (p) static_cast<Target*>(p)->combined.fetch_add(kStrongOne, std::memory_order_relaxed);
}

// Same name and template parameters as c10::intrusive_ptr, so the mangled names of the functions we call match.
// Non-trivial copy and destructor, so by-value parameters follow the same (indirect) calling convention.
template <class T, class N = detail::intrusive_target_default_null_type<T>>
class intrusive_ptr {
 public:
  T* target_ = nullptr;
  intrusive_ptr() = default;
  explicit intrusive_ptr(T* owned) : target_(owned) {}
  intrusive_ptr(const intrusive_ptr& o) : target_(o.target_) { retain_target(target_); }
  intrusive_ptr(intrusive_ptr&& o) noexcept : target_(o.target_) { o.target_ = nullptr; }
  intrusive_ptr& operator=(const intrusive_ptr&) = delete;
  intrusive_ptr& operator=(intrusive_ptr&& o) noexcept {
    if (this != &o) {
      release_target(target_);
      target_ = o.target_;
      o.target_ = nullptr;
    }
    return *this;
  }
  ~intrusive_ptr() { release_target(target_); }
  T* release() { T* t = target_; target_ = nullptr; return t; }
};
}  // namespace c10

namespace at {
// at::Tensor is one intrusive_ptr<TensorImpl>. TorchSharp's tensor handle is an at::Tensor*. Our copies are
// borrowed views of the caller's tensor (no refcount change); libtorch's own code copies them with its real
// copy constructor when it keeps a tensor, and the caller keeps its tensor alive until the call returns.
class Tensor {
 public:
  void* impl_;
  explicit Tensor(void* impl) : impl_(impl) {}
  Tensor(const Tensor& o) : impl_(o.impl_) {}
  ~Tensor() {}
};
}  // namespace at

namespace c10d {
class Store;
class Work {
 public:
  bool wait(std::chrono::milliseconds timeout);
};

struct TCPStoreOptions {
  std::uint16_t port = 29500;
  bool isServer = false;
  std::optional<std::size_t> numWorkers;
  bool waitWorkers = true;
  std::chrono::milliseconds timeout{300000};
  bool multiTenant = false;
  std::optional<int> masterListenFd;
  bool useLibUV = true;
};
static_assert(offsetof(TCPStoreOptions, timeout) == 0x20, "TCPStoreOptions layout");

class TCPStore {
 public:
  TCPStore(std::string host, const TCPStoreOptions& opts);
  void set(const std::string& key, const std::vector<uint8_t>& value);
  std::vector<uint8_t> get(const std::string& key);
};

enum RedOpType : uint8_t { SUM = 0, AVG = 1, PRODUCT = 2, MIN = 3, MAX = 4 };

// ReduceOp is an intrusive_ptr_target (torch::CustomClassHolder) with a vtable; libtorch exports its vtable.
struct ReduceOp {
  void* vptr;
  uint64_t refcount;
  RedOpType op_;
  void* supplement_;
};

struct AllreduceOptions {
  ReduceOp reduceOp;
  std::chrono::milliseconds timeout;
  std::optional<at::Tensor> sparseIndices;
  bool asyncOp = true;
};

struct BroadcastOptions {
  int64_t rootRank = 0;
  int64_t rootTensor = 0;
  std::chrono::milliseconds timeout{-1};
  bool asyncOp = true;
};

class ProcessGroupGloo {
 public:
  class Options {
   public:
    static c10::intrusive_ptr<Options> create_default(std::chrono::milliseconds timeout);
  };
  ProcessGroupGloo(const c10::intrusive_ptr<Store>& store, int rank, int size, c10::intrusive_ptr<Options> options);
  c10::intrusive_ptr<Work> allreduce(std::vector<at::Tensor>& tensors, const AllreduceOptions& opts);
  c10::intrusive_ptr<Work> broadcast(std::vector<at::Tensor>& tensors, const BroadcastOptions& opts);
};
}  // namespace c10d

extern "C" void* _ZTVN4c10d8ReduceOpE[];  // vtable for c10d::ReduceOp

namespace {
// The objects are built in place in generously sized, zeroed blocks from operator new (their exact sizes are not
// exported); their deleting destructors free them with operator delete, which does not depend on the size.
constexpr size_t kStoreBlock = 16384;
constexpr size_t kGroupBlock = 65536;

struct Group {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> pg;
  std::chrono::milliseconds timeout;
};

void copy_error(const char* what, char* err, int len) {
  if (!err || len <= 0) return;
  std::strncpy(err, what ? what : "unknown error", static_cast<size_t>(len) - 1);
  err[len - 1] = '\0';
}

template <class T>
c10::intrusive_ptr<T> adopt_fresh(void* block) {
  // What c10::make_intrusive does after construction: strong = weak = 1.
  static_cast<c10::Target*>(block)->combined.store(c10::kStrongOne | c10::kWeakOne, std::memory_order_relaxed);
  return c10::intrusive_ptr<T>(static_cast<T*>(block));
}

int wait_work(c10::intrusive_ptr<c10d::Work>& work, std::chrono::milliseconds timeout) {
  work.target_->wait(timeout);
  return 0;
}

c10d::ReduceOp sum_op() {
  c10d::ReduceOp op{};
  op.vptr = &_ZTVN4c10d8ReduceOpE[2];  // vtable address points past offset-to-top and typeinfo
  op.refcount = 0;
  op.op_ = c10d::SUM;
  op.supplement_ = nullptr;
  return op;
}

int allreduce_sum(Group* g, void* tensor) {
  std::vector<at::Tensor> v;
  v.emplace_back(*static_cast<void**>(tensor));
  c10d::AllreduceOptions opts{sum_op(), g->timeout, std::nullopt, true};
  auto work = g->pg.target_->allreduce(v, opts);
  return wait_work(work, g->timeout);
}
}  // namespace

extern "C" {

// Checks, on objects libtorch itself creates, that the declarations above match this libtorch.
// Returns 0 when they do, 1 (with a message) when they do not.
__attribute__((visibility("default"))) int ck_c10d_probe(char* err, int len) {
  try {
    auto opts = c10d::ProcessGroupGloo::Options::create_default(std::chrono::milliseconds(123457));
    auto* t = reinterpret_cast<c10::Target*>(opts.target_);
    uint64_t combined = t->combined.load();
    if (combined != (c10::kStrongOne | c10::kWeakOne)) {
      copy_error(("c10::intrusive_ptr_target refcount layout differs from libtorch 2.10's (word = " +
                  std::to_string(combined) + ")").c_str(), err, len);
      return 1;
    }
    return 0;
  } catch (const std::exception& e) {
    copy_error(e.what(), err, len);
    return 1;
  } catch (...) {
    copy_error("unknown C++ exception in the c10d probe", err, len);
    return 1;
  }
}

__attribute__((visibility("default"))) void* ck_c10d_init(const char* host, int port, int rank, int world,
                                                          int timeoutMs, char* err, int len) {
  Group* g = nullptr;
  try {
    auto timeout = std::chrono::milliseconds(timeoutMs);
    c10d::TCPStoreOptions so;
    so.port = static_cast<std::uint16_t>(port);
    so.isServer = rank == 0;
    so.numWorkers = static_cast<std::size_t>(world);
    so.waitWorkers = true;
    so.timeout = timeout;
    g = new Group();
    g->timeout = timeout;
    {
      void* block = ::operator new(kStoreBlock);
      std::memset(block, 0, kStoreBlock);
      try {
        new (block) c10d::TCPStore(std::string(host), so);
      } catch (...) {
        ::operator delete(block);
        throw;
      }
      g->store = adopt_fresh<c10d::Store>(block);
    }
    // Every rank must agree with rank 0 on the world size; otherwise the group would only time out.
    auto* tcp = reinterpret_cast<c10d::TCPStore*>(g->store.target_);
    std::string w = std::to_string(world);
    if (rank == 0) {
      tcp->set("convkit/world_size", std::vector<uint8_t>(w.begin(), w.end()));
    } else {
      auto v = tcp->get("convkit/world_size");
      std::string master(v.begin(), v.end());
      if (master != w) {
        delete g;
        copy_error(("convkit: WORLD_SIZE mismatch: " + w + " " + master).c_str(), err, len);
        return nullptr;
      }
    }
    auto options = c10d::ProcessGroupGloo::Options::create_default(timeout);
    {
      void* block = ::operator new(kGroupBlock);
      std::memset(block, 0, kGroupBlock);
      try {
        new (block) c10d::ProcessGroupGloo(g->store, rank, world, std::move(options));
      } catch (...) {
        ::operator delete(block);
        throw;
      }
      g->pg = adopt_fresh<c10d::ProcessGroupGloo>(block);
    }
    return g;
  } catch (const std::exception& e) {
    delete g;
    copy_error(e.what(), err, len);
    return nullptr;
  } catch (...) {
    delete g;
    copy_error("unknown C++ exception while creating the process group", err, len);
    return nullptr;
  }
}

// In-place sum of one contiguous CPU tensor (TorchSharp handle) across all ranks.
__attribute__((visibility("default"))) int ck_c10d_allreduce_sum(void* group, void* tensor, char* err, int len) {
  try {
    return allreduce_sum(static_cast<Group*>(group), tensor);
  } catch (const std::exception& e) {
    copy_error(e.what(), err, len);
    return 1;
  } catch (...) {
    copy_error("unknown C++ exception in allreduce", err, len);
    return 1;
  }
}

// In-place broadcast of one contiguous CPU tensor from rank `root`.
__attribute__((visibility("default"))) int ck_c10d_broadcast(void* group, void* tensor, int root, char* err, int len) {
  try {
    auto* g = static_cast<Group*>(group);
    std::vector<at::Tensor> v;
    v.emplace_back(*static_cast<void**>(tensor));
    c10d::BroadcastOptions opts;
    opts.rootRank = root;
    opts.rootTensor = 0;
    opts.timeout = g->timeout;
    auto work = g->pg.target_->broadcast(v, opts);
    return wait_work(work, g->timeout);
  } catch (const std::exception& e) {
    copy_error(e.what(), err, len);
    return 1;
  } catch (...) {
    copy_error("unknown C++ exception in broadcast", err, len);
    return 1;
  }
}

// Releases the process group and the store (joins Gloo's worker threads, closes the sockets).
__attribute__((visibility("default"))) int ck_c10d_destroy(void* group, char* err, int len) {
  try {
    delete static_cast<Group*>(group);
    return 0;
  } catch (const std::exception& e) {
    copy_error(e.what(), err, len);
    return 1;
  } catch (...) {
    copy_error("unknown C++ exception while destroying the process group", err, len);
    return 1;
  }
}
}
