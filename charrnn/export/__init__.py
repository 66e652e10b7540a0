"""Take a trained model out of charrnn and torch: `charrnn export RUN --format onnx|numpy|web --out PATH`.

Its rooms: `bundle` (a checkpoint as float32 arrays plus the metadata every format carries: cell, sizes,
vocabulary, preprocessing, seed character; and the atomic writes), `to_onnx` (a one-step ONNX graph
and `OnnxModel`, its onnxruntime runner), `to_numpy` (model.npz beside `charrnn_sampler`, the standalone
NumPy-only sampler, shipped as a module of this package so that it is tested as code), `to_web` (one
self-contained HTML page, the template `page.html`, weights embedded as float32 or float16) and
`export` (the entry point the command line calls).
"""
