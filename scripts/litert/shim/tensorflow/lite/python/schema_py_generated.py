from ai_edge_litert.schema_py_generated import *  # shim: tensorflow not installed
