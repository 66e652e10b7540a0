"""Stage 3, training: a run from its configs to its checkpoints.

Its rooms: `train` (sets a run up: configs -> corpus -> model -> loop), `loop` (train_step and the events
it publishes), `subscribers` (metrics, log lines, evaluation, checkpoints and samples around the loop),
`runstate` (where a run is and its budget), `optim` (optimizer and schedule), `ema` (the weight average
that evaluation, checkpoints and samples use under --ema), `evaluate` (per-character
loss of a model on a text, the number every report is made of), `rundir` (the run directory, its lock and
metrics.jsonl), `finetune` (--init-from), `distributed` (DDP under torchrun), `threads` (how many CPU threads
a run computes with: --threads auto) and `tensorboard`.
"""
