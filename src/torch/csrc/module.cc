// ringlink_torch._C: the process group class, ringlink's errors as Python exceptions, and what
// the Python side of the backend needs from the library (the environment it reads, creation).
#include <torch/csrc/utils/pybind.h>  // Python.h first; pybind11 with c10::intrusive_ptr holders

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <string>

#include <ringlink/ringlink.h>

#include "process_group.h"
#include "tensor_args.h"
#include "torch_compat.h"

namespace py = pybind11;

namespace ringlink_torch {
namespace {

// ringlink matches a process's communicators with the other ranks' by creation order; the
// Python side uses this count to keep a subgroup's members in step (pad_communicators).
std::atomic<int64_t> g_communicators_created{0};

ringlink::Options group_options(int rank, int size, int local_rank, int local_size, const std::string& master_addr,
                                int master_port, int64_t timeout_ms) {
  // Everything but the identity comes from RINGLINK_* as for any communicator: transport,
  // algorithm, chunk size, connect deadline, log level, and the job token.
  ringlink::Options o = ringlink::Options::from_environment();
  o.rank = rank;
  o.world_size = size;
  o.local_rank = local_rank;
  o.local_world_size = local_size;
  o.master_addr = master_addr;
  o.master_port = master_port;
  if (timeout_ms > 0) o.timeout = std::chrono::milliseconds(timeout_ms);
  if (o.launcher == ringlink::Launcher::None) o.launcher = ringlink::Launcher::Explicit;
  return o;
}

c10::intrusive_ptr<RinglinkProcessGroup> create(int rank, int size, int local_rank, int local_size,
                                                const std::string& master_addr, int master_port, int64_t timeout_ms) {
  ringlink::Options o = group_options(rank, size, local_rank, local_size, master_addr, master_port, timeout_ms);
  std::unique_ptr<ringlink::Communicator> comm;
  {
    // Joining waits for every rank (up to RINGLINK_CONNECT_TIMEOUT_MS): let other threads run.
    py::gil_scoped_release nogil;
    g_communicators_created.fetch_add(1);
    comm = std::make_unique<ringlink::Communicator>(std::move(o));
  }
  return c10::make_intrusive<RinglinkProcessGroup>(std::move(comm));
}

// Creates (and at once destroys) one-rank communicators until this process has created
// `target`: the members of a new subgroup then create its communicator as the same one in
// ringlink's order, whichever other groups each of them belongs to.
void pad_communicators(int64_t target) {
  py::gil_scoped_release nogil;
  while (g_communicators_created.load() < target) {
    ringlink::Options o;
    o.rank = 0;
    o.world_size = 1;
    g_communicators_created.fetch_add(1);
    ringlink::Communicator solo(o);
  }
}

py::dict environment() {
  ringlink::Options o = ringlink::Options::from_environment();
  py::dict d;
  d["rank"] = o.rank;
  d["world_size"] = o.world_size;
  d["local_rank"] = o.local_rank;
  d["local_world_size"] = o.local_world_size;
  d["master_addr"] = o.master_addr;
  d["launcher"] = std::string(ringlink::to_string(o.launcher));
  d["connect_timeout_ms"] = static_cast<int64_t>(o.connect_timeout.count());
  return d;
}

// ---- errors --------------------------------------------------------------------------------

// Python classes, created once and kept for the life of the process (translators may run late).
struct ErrorClasses {
  PyObject* base = nullptr;
  std::map<ringlink::ErrorKind, PyObject*> by_kind;
  PyObject* not_supported = nullptr;
};
ErrorClasses g_errors;

PyObject* new_class(py::module_& m, const char* name, PyObject* base, const char* doc) {
  std::string qualified = std::string("ringlink_torch.") + name;
  PyObject* cls = PyErr_NewExceptionWithDoc(qualified.c_str(), doc, base, nullptr);
  if (!cls) throw py::error_already_set();
  m.add_object(name, py::reinterpret_borrow<py::object>(cls));
  return cls;
}

void register_errors(py::module_& m) {
  g_errors.base = new_class(m, "Error", PyExc_RuntimeError,
                            "An error of ringlink: the message names the rank, the peer and the operation. "
                            "Attributes: kind, rank, peer (-1: none), operation, detail.");
  const std::pair<ringlink::ErrorKind, const char*> kinds[] = {
      {ringlink::ErrorKind::Timeout, "TimeoutError"},
      {ringlink::ErrorKind::PeerLost, "PeerLostError"},
      {ringlink::ErrorKind::Mismatch, "MismatchError"},
      {ringlink::ErrorKind::InvalidArgument, "InvalidArgumentError"},
      {ringlink::ErrorKind::Transport, "TransportError"},
  };
  for (const auto& [kind, name] : kinds) g_errors.by_kind[kind] = new_class(m, name, g_errors.base, nullptr);
  g_errors.not_supported = new_class(m, "NotSupportedError", PyExc_NotImplementedError,
                                     "An operation, element type or argument form ringlink does not implement.");

  // Registered globally (pybind11 shares its internals with torch's own bindings), so the error
  // reaches Python typed also when it passes through torch: work.wait(), the dispatcher, DDP.
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const ringlink::Error& e) {
      auto it = g_errors.by_kind.find(e.kind());
      PyObject* cls = it != g_errors.by_kind.end() ? it->second : g_errors.base;
      py::object instance = py::reinterpret_borrow<py::object>(cls)(e.what());
      instance.attr("kind") = std::string(ringlink::to_string(e.kind()));
      instance.attr("rank") = e.rank();
      instance.attr("peer") = e.peer();
      instance.attr("operation") = e.operation();
      instance.attr("detail") = e.detail();
      PyErr_SetObject(cls, instance.ptr());
    } catch (const NotSupportedError& e) {
      PyErr_SetString(g_errors.not_supported, e.what());
    }
  });
}

}  // namespace
}  // namespace ringlink_torch

PYBIND11_MODULE(_C, m) {
  using namespace ringlink_torch;
  m.doc() = "ringlink's torch.distributed backend (C++ part)";
  register_errors(m);

  py::class_<RinglinkProcessGroup, BackendBase, c10::intrusive_ptr<RinglinkProcessGroup>>(m, "ProcessGroupRinglink")
      .def_static("create", &create, py::arg("rank"), py::arg("size"), py::arg("local_rank"), py::arg("local_size"),
                  py::arg("master_addr"), py::arg("master_port"), py::arg("timeout_ms"),
                  "Joins the group through ringlink's rendezvous store at master_addr:master_port (served by "
                  "rank 0). timeout_ms: the silence a live peer may keep inside an operation.")
      .def_property_readonly("transport",
                             [](const RinglinkProcessGroup& pg) { return pg.communicator().transport_name(); });

  m.def("environment", &environment, "The identity and deadlines ringlink reads from the environment.");
  m.def("communicators_created", [] { return g_communicators_created.load(); });
  m.def("pad_communicators", &pad_communicators, py::arg("target"));
  m.attr("torch_version") = py::make_tuple(kTorchMajor, kTorchMinor);
}
