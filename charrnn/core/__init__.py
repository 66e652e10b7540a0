"""The ground floor every stage stands on: what a model is, and the one way to store and load it.

Its rooms: `errors` (the one error family and its exit codes), `config` (ModelConfig / TrainConfig: a
flag, a YAML key and a checkpoint entry alike), `device` (which device a command runs on), `vocab` (text
read strictly, preprocessed, and turned into ids by the run's vocabulary), `models` (CharRNN and its
explicit-state interface), `regularise` (dropout masks, elementwise or locked, weight drop, embedding
dropout, AR/TAR, in both engines), `scratch` (RNN/GRU/LSTM layers with hand-written BPTT), `checkpoint` (the one
loader, `weights_only=True`) and `userfile` (a user's own Python file, imported by path, and whose
code raised); `presets/` holds the YAML recipes `config` reads for `train --preset`. Nothing here
imports from a stage above it.
"""
