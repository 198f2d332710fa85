#include <Python.h>  // first, as Python asks

#include "gil.h"

namespace ringlink_torch {

ReleasedGil::ReleasedGil() {
  if (Py_IsInitialized() && PyGILState_Check()) saved_ = PyEval_SaveThread();
}

ReleasedGil::~ReleasedGil() {
  if (saved_) PyEval_RestoreThread(static_cast<PyThreadState*>(saved_));
}

}  // namespace ringlink_torch
