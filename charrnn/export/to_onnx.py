"""`charrnn export --format onnx`: one step of the model as an ONNX graph, and a runner for it.

The graph, written node by node with `onnx.helper` (no tracing, so what is exported is exactly the
cell equations of `charrnn_sampler`), takes one character per sequence and the state, and returns
the next character's logits and the new state; the batch dimension is dynamic:

    inputs:   ids (B,) int64,   h (L, B, H) float32,   c (L, B, H) float32 (lstm only)
    outputs:  logits (B, V) float32,   h_out (L, B, H),   c_out (L, B, H) (lstm only)

A zero state starts a sequence; feed each output state back in. What a graph cannot carry is in
the model's metadata (`custom_metadata_map`): `vocab` (JSON list, id i is vocab[i]), `preprocessing`
(JSON: lowercase, letters_only, applied to a prefix as `charrnn sample` does), `seed_char` (what an
empty prefix starts from) and `charrnn` (all of it, with the cell and sizes).

One-hot input times W_ih is a column of W_ih, so layer 0 of a one-hot model gathers rows of W_ih's
transpose (V, G*H) instead of multiplying: the same numbers, no (B, V) one-hot.

    model = OnnxModel("model.onnx")                  # needs onnxruntime
    for ch, p in generate(model, "ROMEO:", 200, temperature=0): ...   # charrnn_sampler's generate
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from charrnn.core.errors import CharRNNError
from charrnn.export.bundle import Bundle, write_atomic

OPSET = 17
MAX_BYTES = 2**31 - 1  # protobuf's limit for one file; larger models would need external data files
HINT = "pip install 'charrnn[export]'"


def _require(name: str):
    try:
        return __import__(name)
    except ImportError:
        raise CharRNNError(f"the ONNX format needs the {name} package: {HINT}") from None


class _Graph:
    """Nodes and initializers collected in order; `op` returns the name of the node's (first) output."""

    def __init__(self, helper, numpy_helper):
        self.helper, self.numpy_helper = helper, numpy_helper
        self.nodes, self.inits, self.n = [], [], 0

    def const(self, name: str, array: np.ndarray) -> str:
        self.inits.append(self.numpy_helper.from_array(np.array(array, order="C"), name))  # not ascontiguousarray: it makes 0-d 1-d
        return name

    def op(self, kind: str, *inputs: str, outputs: int = 1, name: str | None = None, **attrs) -> str | list[str]:
        self.n += 1
        outs = [name] if name else [f"{kind.lower()}_{self.n}_{i}" for i in range(outputs)]
        self.nodes.append(self.helper.make_node(kind, list(inputs), outs, **attrs))
        return outs[0] if outputs == 1 else outs


def _cell(g: _Graph, cell: str, k: int, gi: str, h: str, c: str | None, H: int) -> tuple[str, str | None]:
    """Layer k's cell: gi (B, G*H) the input's share of the gates (bias included), h and c (B, H)."""
    gh = g.op("Gemm", h, f"rnn.weight_hh_l{k}", f"rnn.bias_hh_l{k}", transB=1)  # (B, G*H)
    if cell == "rnn":
        return g.op("Tanh", g.op("Add", gi, gh)), None
    if cell == "lstm":
        i, f, gg, o = g.op("Split", g.op("Add", gi, gh), g.const(f"split4_l{k}", np.array([H] * 4)), outputs=4, axis=1)
        c_new = g.op("Add", g.op("Mul", g.op("Sigmoid", f), c), g.op("Mul", g.op("Sigmoid", i), g.op("Tanh", gg)))
        return g.op("Mul", g.op("Sigmoid", o), g.op("Tanh", c_new)), c_new
    sizes = g.const(f"split3_l{k}", np.array([H] * 3))
    ir, iz, in_ = g.op("Split", gi, sizes, outputs=3, axis=1)
    hr, hz, hn = g.op("Split", gh, sizes, outputs=3, axis=1)
    r = g.op("Sigmoid", g.op("Add", ir, hr))
    z = g.op("Sigmoid", g.op("Add", iz, hz))
    n = g.op("Tanh", g.op("Add", in_, g.op("Mul", r, hn)))
    return g.op("Add", n, g.op("Mul", z, g.op("Sub", h, n))), None  # (1 - z) n + z h


def build_graph(b: Bundle):
    """The one-step ModelProto for the bundle (metadata included)."""
    onnx = _require("onnx")
    from onnx import TensorProto, helper, numpy_helper

    m, a = b.meta, b.arrays
    L, H, V, lstm = m["layers"], m["hidden"], len(m["vocab"]), m["cell"] == "lstm"
    g = _Graph(helper, numpy_helper)
    for name, arr in a.items():
        if not (name == "rnn.weight_ih_l0" and m["embed"] == 0):
            g.const(name, arr)
    if m["embed"] > 0:
        emb = g.op("Gather", "embedding.weight", "ids", axis=0)  # (B, E)
        x_gates = g.op("Gemm", emb, "rnn.weight_ih_l0", "rnn.bias_ih_l0", transB=1)  # (B, G*H)
    else:
        table = g.const("rnn.weight_ih_l0_T", a["rnn.weight_ih_l0"].T)  # (V, G*H)
        x_gates = g.op("Add", g.op("Gather", table, "ids", axis=0), "rnn.bias_ih_l0")  # (B, G*H)
    hs, cs = [], []
    for k in range(L):
        idx = g.const(f"layer_{k}", np.array(k, dtype=np.int64))
        h_k = g.op("Gather", "h", idx, axis=0)  # (B, H)
        c_k = g.op("Gather", "c", idx, axis=0) if lstm else None
        if k > 0:
            x_gates = g.op("Gemm", hs[-1], f"rnn.weight_ih_l{k}", f"rnn.bias_ih_l{k}", transB=1)
        h_new, c_new = _cell(g, m["cell"], k, x_gates, h_k, c_k, H)
        hs.append(h_new)
        cs.append(c_new)
    g.op("Gemm", hs[-1], "head.weight", "head.bias", transB=1, name="logits")  # (B, V)
    axis0 = g.const("axis0", np.array([0], dtype=np.int64))
    g.op("Concat", *[g.op("Unsqueeze", h, axis0) for h in hs], axis=0, name="h_out")  # (L, B, H)
    state = lambda n: helper.make_tensor_value_info(n, TensorProto.FLOAT, [L, "batch", H])
    inputs = [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch"]), state("h")]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", V]), state("h_out")]
    if lstm:
        g.op("Concat", *[g.op("Unsqueeze", c, axis0) for c in cs], axis=0, name="c_out")
        inputs.append(state("c"))
        outputs.append(state("c_out"))
    graph = helper.make_graph(g.nodes, f"charrnn_{m['cell']}_step", inputs, outputs, g.inits,
                              doc_string="one character per sequence: (ids, state) -> (logits, new state)")
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="charrnn",
                              producer_version=m["charrnn_version"])
    model.ir_version = min(model.ir_version, 9)  # readable by onnxruntime releases from 1.16 on
    helper.set_model_props(model, {"charrnn": b.meta_json(), "vocab": json.dumps(m["vocab"], ensure_ascii=False),
                                   "preprocessing": json.dumps(m["preprocessing"]), "seed_char": m["seed_char"]})
    onnx.checker.check_model(model)
    return model


def export_onnx(b: Bundle, out: str | Path) -> Path:
    """Write the graph to `out` atomically; refuses a model over protobuf's 2 GiB."""
    size = sum(arr.nbytes for arr in b.arrays.values())
    if size > MAX_BYTES:
        raise CharRNNError(f"the model's weights take {size / 2**30:.1f} GiB, over the 2 GiB one ONNX file can hold")
    data = build_graph(b).SerializeToString()
    out = Path(out)
    write_atomic(out, data)
    return out


class OnnxModel:
    """An exported graph behind charrnn_sampler's model interface (`chars`, `index`, `meta`,
    `begin_state()`, `step(id, state)`), so `charrnn_sampler.generate` drives it; `run` is the batched
    step: ids (B,) and a state dict -> logits (B, V) and the next state dict."""

    def __init__(self, path: str | Path, threads: int = 0):
        ort = _require("onnxruntime")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.meta = json.loads(self.session.get_modelmeta().custom_metadata_map["charrnn"])
        self.chars = self.meta["vocab"]
        self.index = {ch: i for i, ch in enumerate(self.chars)}
        self.state_names = [i.name for i in self.session.get_inputs()][1:]  # ["h"] or ["h", "c"]

    def zero_state(self, batch: int) -> dict[str, np.ndarray]:
        shape = (self.meta["layers"], batch, self.meta["hidden"])
        return {n: np.zeros(shape, dtype=np.float32) for n in self.state_names}

    def run(self, ids: np.ndarray, state: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        logits, *new = self.session.run(None, {"ids": np.asarray(ids, dtype=np.int64), **state})
        return logits, dict(zip(self.state_names, new))

    def begin_state(self):
        return self.zero_state(1)

    def step(self, char_id: int, state):
        logits, state = self.run(np.array([char_id], dtype=np.int64), state)
        return logits[0], state
