"""The classic backward bugs, each planted in numpy_lstm.py or torch_rnn.py as one changed line.

    charrnn gradcheck --user examples/buggy.py:c_prev

Every name in BUGS is an adapter (vocab_size, params, loss_and_grads) built from the original file with
exactly that one line changed, so what gradcheck reports can be read against a known diff.
"""

import types
from pathlib import Path

HERE = Path(__file__).resolve().parent

# name -> (file, the correct line's text, the buggy text, what a learner would have written)
BUGS = {
    "h_index": ("numpy_lstm.py", 'grads["W_v"] += dv @ h[t + 1].T', 'grads["W_v"] += dv @ h[t].T',
                "h[t] where h[t+1] (h_t) is meant"),
    "c_prev": ("numpy_lstm.py", "C_prev = C[t]  #", "C_prev = C[t - 1]  #",
               "C_prev = C[t-1] instead of C[t]"),
    "gate_derivative": ("numpy_lstm.py", "do *= o[t] * (1 - o[t])", "# (the output gate's sigmoid derivative left out)",
                        "the output gate's derivative left out"),
    "tanh_twice": ("numpy_lstm.py", "(1 - np.tanh(C[t + 1]) ** 2)", "(1 - np.tanh(np.tanh(C[t + 1])) ** 2)",
                   "tanh applied twice on the cell-state path"),
    "mean_loss": ("numpy_lstm.py", "    return loss\n", "    return loss / len(targets)\n",
                  "the loss reported as a mean over time, the gradients of the sum"),
    "vocab_mean": ("numpy_lstm.py", "loss += -np.log(y_hat[target, 0])",
                   "loss += -np.mean(np.log(y_hat) * one_hot(target, vocab_size))",
                   "the loss as -mean(log(y_hat) * y): a mean over the V entries of a one-hot row"),
    "forget_derivative": ("numpy_lstm.py", "df *= f[t] * (1 - f[t])", "# (the forget gate's sigmoid derivative left out)",
                          "the forget gate's derivative left out: invisible at T = 1, where C_prev = 0"),
    "forget_carry": ("numpy_lstm.py", "dC_next = dC * f[t]", "dC_next = dC",
                     "the forget gate left out of the cell gradient carried back"),
    "torch_tanh": ("torch_rnn.py", "ctx.save_for_backward(y)", "ctx.save_for_backward(x)",
                   "tanh's backward given the input instead of the output: 1 - x^2, not 1 - tanh(x)^2"),
    "torch_detach": ("torch_rnn.py", "state = h\n", "state = h.detach()\n",
                     "the state detached inside the loop: no gradient through time"),
}


def plant(name):
    """The adapter of BUGS[name]: its file's source with the one line changed, run as a fresh module."""
    file, correct, buggy, _ = BUGS[name]
    source = (HERE / file).read_text()
    if source.count(correct) != 1:
        raise ValueError(f"{file} no longer contains {correct!r} exactly once")
    module = types.ModuleType(f"{Path(file).stem}_{name}")
    exec(compile(source.replace(correct, buggy), f"{file} ({name})", "exec"), module.__dict__)
    return types.SimpleNamespace(vocab_size=module.vocab_size, params=module.params,
                                 loss_and_grads=module.loss_and_grads)


for _name in BUGS:
    globals()[_name] = plant(_name)
