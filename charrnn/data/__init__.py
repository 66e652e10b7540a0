"""Stage 1, data: from a corpus name or path to the encoded train / val / test splits and their batches.

Its rooms: `corpora` (the catalog: find, download, verify), `documents` (a directory or glob of many
files joined into one text), `cache` (big corpora encoded once and memory-mapped), `batches` (contiguous
splits, d2l's random and sequential minibatches, the trained horizon they imply) and `dataset` (a run's
corpus: located, read, encoded and split). The vocabulary itself lives on the ground floor
(`charrnn.core.vocab`), because every checkpoint carries it.
"""
