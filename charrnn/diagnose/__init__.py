"""`charrnn diagnose`: why a character model's loss is flat or rising, measured on the trained model.

    report = diagnose_checkpoint("runs/tinyshakespeare-lstm")            # its val split
    report = diagnose_factory("mymodel.py:build", "input.txt")           # a user's own model (torch or NumPy)
    report.verdict                      # "ok" | "warn" | "fail"
    report.headline                     # the check naming the root cause (see Check.cause)
    for check in report.checks: ...     # Check(id, section, status, values, message, advice)
    report.to_dict()                    # what --json prints

Three sections, each a set of checks with stable ids (see README, "diagnose"):

    loss   normalisation: recomputed vs recorded val loss, batch-partition invariance, baselines
           (uniform, unigram), the recorded curves, a worked example of the classic mistakes, the
           trained horizon (the training loop's loss against `charrnn eval`'s)
    state  hidden-state reset: the returned state's layout against begin_state's, row independence (first,
           last and a middle row), call independence, reset vs carry (against the run's sampling scheme x
           state policy), warm-up profile, memory horizon
    grad   gradient health: ||dL/dh_t|| against distance, spectral radius of the recurrent matrices,
           saturated units, the recorded gradient norms / clipping / learning rate

Its rooms, downstream first:

    `measure`         tensors in, plain numbers out, no judgement: the state as data, text layouts, losses
    `measure_state`   the returned state's layout, row and call independence
    `measure_grad`    ||dL/dh_t|| through time, recurrent matrices and their spectra, saturation
    `context`         report types, the check registry, Context (measurements shared by checks, made once),
                      the blame of a measurement that raised, symptoms linked to their root cause
    `checks_loss`, `checks_state`, `checks_grad`    the checks, each registered once with its id
    `numpy_model`     a user's NumPy model behind the torch interface
    `subjects`        what is diagnosed (checkpoint, factory) and the runner
    `training_log`, `log`    `diagnose --log`: a learner's own training log, read and judged
    `scale`           the factor search (T, B, B·T, len(dataset), ...) shared by `log` and `charrnn.watch`

The engine returns data and never prints; `charrnn.cli.app` renders the report.
"""

from charrnn.diagnose import checks_loss, checks_state, checks_grad
from charrnn.diagnose.context import REGISTRY, SECTIONS, STATUSES, Check
from charrnn.diagnose.subjects import (DiagnoseOptions, Diagnosis, Subject, diagnose_checkpoint, diagnose_factory,
                                       diagnose_model, load_factory, run_checks)

CHECK_MODULES = (checks_loss, checks_state, checks_grad)  # imported to register their checks, in report order

__all__ = ["REGISTRY", "SECTIONS", "STATUSES", "Check", "DiagnoseOptions", "Diagnosis", "Subject", "diagnose_checkpoint",
           "diagnose_factory", "diagnose_model", "load_factory", "run_checks"]
