"""Runs an ONNX model in ONNX Runtime for tests/export.rs:
onnx_run.py MODEL INPUT N C H W OUTPUT, INPUT and OUTPUT raw little-endian float32."""
import sys

import numpy as np
import onnxruntime as ort

model, inp, n, c, h, w, out = sys.argv[1:]
x = np.fromfile(inp, dtype="<f4").reshape(int(n), int(c), int(h), int(w))
session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
y = session.run(None, {session.get_inputs()[0].name: x})[0]
y.astype("<f4").tofile(out)
