"""Stage 4, analysis: what a trained model makes of a text, and what it tracks inside.

Its rooms: `texts` (a checkpoint's text, encoded as its run encoded it), `surprisal` (per-character
scores, `eval --show`), `horizon` (loss by position since the last state reset), `ngram` (the Kneser-Ney
yardstick), `activations` (every layer's and gate's activations, character by character), `probe` (units
that follow a property of the text), `explore` / `explore_server` (the explore page and its local server,
`explore.html` beside them) and `plot` (training curves, and the pictures the other rooms draw).
"""
