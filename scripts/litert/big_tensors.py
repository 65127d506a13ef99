"""Largest non-constant tensors per signature of a .tflite (activations the runtime must allocate)."""
import sys, mmap, collections, numpy as np
from ai_edge_litert import schema_py_generated as S
f = open(sys.argv[1], "rb"); buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
m = S.Model.GetRootAs(buf, 0)
sz = {S.TensorType.FLOAT32: 4, S.TensorType.INT32: 4, S.TensorType.INT8: 1, S.TensorType.BOOL: 1, S.TensorType.FLOAT16: 2, S.TensorType.INT64: 8}
for si in range(m.SignatureDefsLength()):
    sd = m.SignatureDefs(si); sg = m.Subgraphs(sd.SubgraphIndex())
    c = collections.Counter(); tot = 0
    for ti in range(sg.TensorsLength()):
        t = sg.Tensors(ti)
        b = m.Buffers(t.Buffer()) if t.Buffer() else None
        if b is not None and (b.DataLength() or b.Size()):
            continue  # constant
        n = int(np.prod(t.ShapeAsNumpy())) * sz.get(t.Type(), 4) if t.ShapeLength() else 0
        tot += n
        if n >= (1 << 22):
            c[(tuple(t.ShapeAsNumpy().tolist()), t.Type())] += 1
    print(sd.SignatureKey().decode(), f"non-const tensors total {tot/2**20:.0f} MiB (upper bound, no reuse)")
    for (shape, ty), k in sorted(c.items(), key=lambda x: -np.prod(x[0][0]) * x[1]):
        print(f"   {k:3d} x {shape} type{ty} = {np.prod(shape)*sz.get(ty,4)/2**20:.1f} MiB each")
