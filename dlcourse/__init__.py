"""dlcourse: the companion package of an interactive course on deep generative models.

Families: score matching and NCSN (`dlcourse.score`), score SDEs (`dlcourse.sde`), discrete diffusion for text
(`dlcourse.discrete`) and adversarial imitation (`dlcourse.rl`); shared parts: `dlcourse.data`, `dlcourse.nn`,
`dlcourse.train` (one training loop), `dlcourse.viz` (widgets), `dlcourse.grading`.
"""

__version__ = "0.1.0"
