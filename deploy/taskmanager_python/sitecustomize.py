"""Runs once when the TaskManager's embedded CPython (thread mode, pemja) starts: this directory is
on the TaskManager's PYTHONPATH (deploy/flink.sh, the job image).

onnxruntime is a pybind11 extension; its module init calls PyGILState_Ensure. Imported later from an
operator, it runs under the operator's own thread state while the thread's GILState slot holds the
interpreter's main one, and the TaskManager deadlocks (seen with gdb: take_gil in PyInit). Imported
here, during interpreter start-up, both are the same thread state and the import is safe; operators
then find the module already loaded.
"""

import numpy  # noqa: F401
import onnxruntime  # noqa: F401
