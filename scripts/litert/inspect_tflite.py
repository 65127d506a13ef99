"""List signatures, KV-cache inputs (name/shape/dtype), and per-signature op counts / FC weight MACs of a .tflite."""
import sys, json, collections, mmap
import numpy as np
from ai_edge_litert import schema_py_generated as S

path = sys.argv[1]
out_json = sys.argv[2] if len(sys.argv) > 2 else None
f = open(path, "rb"); buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
m = S.Model.GetRootAs(buf, 0)
opnames = {v: k for k, v in vars(S.BuiltinOperator).items() if not k.startswith("_")}
tnames = {v: k for k, v in vars(S.TensorType).items() if not k.startswith("_")}
codes = []
for i in range(m.OperatorCodesLength()):
    oc = m.OperatorCodes(i)
    b = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
    codes.append(opnames.get(b, str(b)) if b != S.BuiltinOperator.CUSTOM else "CUSTOM:" + (oc.CustomCode() or b"").decode())
res = {"file": path, "signatures": {}}
for si in range(m.SignatureDefsLength()):
    sd = m.SignatureDefs(si)
    key = sd.SignatureKey().decode(); sg = m.Subgraphs(sd.SubgraphIndex())
    def tinfo(ti):
        t = sg.Tensors(ti)
        return {"tensor": t.Name().decode(), "shape": t.ShapeAsNumpy().tolist() if t.ShapeLength() else [],
                "dtype": tnames[t.Type()]}
    ins = {sd.Inputs(j).Name().decode(): tinfo(sd.Inputs(j).TensorIndex()) for j in range(sd.InputsLength())}
    outs = {sd.Outputs(j).Name().decode(): tinfo(sd.Outputs(j).TensorIndex()) for j in range(sd.OutputsLength())}
    ops = collections.Counter(); fc_macs = 0; fc_w = 0; fc_list = []
    for oi in range(sg.OperatorsLength()):
        op = sg.Operators(oi); name = codes[op.OpcodeIndex()]; ops[name] += 1
        if name in ("FULLY_CONNECTED", "BATCH_MATMUL"):
            a = sg.Tensors(op.Inputs(0)).ShapeAsNumpy(); w = sg.Tensors(op.Inputs(1)).ShapeAsNumpy()
            if name == "FULLY_CONNECTED":
                rows = int(np.prod(a[:-1])); macs = rows * int(w[0]) * int(w[1]); fc_w += int(w[0]) * int(w[1])
                fc_list.append([sg.Tensors(op.Inputs(1)).Name().decode()[:80], w.tolist(), rows])
            else:
                o = sg.Tensors(op.Outputs(0)).ShapeAsNumpy(); k = int(a[-1]) if True else 0
                macs = int(np.prod(o)) * k
            fc_macs += macs
    res["signatures"][key] = {"subgraph": sd.SubgraphIndex(), "n_ops": sg.OperatorsLength(), "ops": dict(ops.most_common()),
                              "inputs": ins, "outputs": outs, "matmul_macs": fc_macs, "fc_weight_elems": fc_w,
                              "n_fc": ops["FULLY_CONNECTED"], "fc": fc_list}
for k, s in res["signatures"].items():
    kv = {n: v for n, v in s["inputs"].items() if n.startswith("kv_cache")}
    print(f"== {k}: {s['n_ops']} ops, FC {s['n_fc']}, FC weight elems {s['fc_weight_elems']:,}, matmul MACs {s['matmul_macs']:,}")
    print("   inputs (non-KV):", {n: (v['shape'], v['dtype']) for n, v in s["inputs"].items() if not n.startswith("kv_cache")})
    print("   outputs (non-KV):", {n: (v['shape'], v['dtype']) for n, v in s["outputs"].items() if not n.startswith("kv_cache")})
    print(f"   KV inputs: {len(kv)}")
    for n in sorted(kv, key=lambda x: (int(''.join(c for c in x.split('_')[-1] if c.isdigit()) or 0), x)):
        print(f"     {n}: {kv[n]['shape']} {kv[n]['dtype']}")
if out_json:
    json.dump(res, open(out_json, "w"), indent=1)
