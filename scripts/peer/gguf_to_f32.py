#!/usr/bin/env python3
"""Copy a GGUF with every float tensor widened to F32 (exact: gguf.quants.dequantize), metadata
unchanged. Used to attribute the peer's tiny-quant error floor to its CPU activation rounding.

  conv-venv/bin/python gguf_to_f32.py IN.gguf OUT.gguf
"""
import sys

import numpy as np
import gguf
from gguf.quants import dequantize

r = gguf.GGUFReader(sys.argv[1])
arch = r.fields["general.architecture"].contents()
w = gguf.GGUFWriter(sys.argv[2], arch)
for name, f in r.fields.items():
    if name.startswith("GGUF.") or name == "general.architecture":
        continue
    vt = f.types[0]
    sub = f.types[-1] if vt == gguf.GGUFValueType.ARRAY else None
    w.add_key_value(name, f.contents(), vt, sub_type=sub)
for t in r.tensors:
    shape = tuple(int(x) for x in reversed(t.shape))
    if t.tensor_type in (gguf.GGMLQuantizationType.I32, gguf.GGMLQuantizationType.I8,
                         gguf.GGMLQuantizationType.I16, gguf.GGMLQuantizationType.I64):
        w.add_tensor(t.name, np.asarray(t.data).reshape(shape))
    else:
        w.add_tensor(t.name, dequantize(np.asarray(t.data), t.tensor_type).astype(np.float32).reshape(shape))
w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()
print("wrote", sys.argv[2])
