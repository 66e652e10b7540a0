"""Gradient checks: proof that hand-written backward passes are right, ours and the user's.

Its rooms: `engine` (the scratch layers against autograd and finite differences, in float64), `user`
(`gradcheck --user`: a learner's own forward/backward, imported from their file) and `findings` (what a
failed user check most likely means, said in their terms).
"""
