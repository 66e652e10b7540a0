"""Stage 4, analysis: what a trained model makes of a text, and what it tracks inside.

Its rooms: `subject` (the one loader: a checkpoint's or a --model-factory model on its device, with its
vocabulary, its preprocessing and the ids of a file or a split), `texts` (what `charrnn eval` reports),
`surprisal` (per-character scores, `eval --show`), `horizon` (loss by position since the last state
reset), `ngram` (the Kneser-Ney yardstick), `activations` (every layer's and gate's activations,
character by character), `signals` (properties of the text and the units that follow them), `probe`
(the linear probe and gate saturation, `charrnn probe`), `explore` / `explore_server` (the explore page
and its local server, `explore.html` beside them) and `plot` (training curves, and the pictures the
other rooms draw).
"""
