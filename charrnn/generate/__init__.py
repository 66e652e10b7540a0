"""Stage 2, generation: text from a trained model after a warm-up prefix.

Training samples as it goes, so this stage sits below it. Its rooms: `sample` (temperature / top-k /
top-p sampling with an explicit generator, stop strings, and the prefix prepared as the training text
was), `beam` (beam search over characters) and `interactive` (the engine of `sample --interactive`:
turns with a carried state, and the loop over the lines typed).
"""
