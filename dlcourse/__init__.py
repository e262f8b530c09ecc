"""dlcourse: the companion package of an interactive course on deep generative models.

Families: score matching and NCSN (`dlcourse.score`), score SDEs (`dlcourse.sde`), discrete diffusion for text
(`dlcourse.discrete`) and adversarial imitation (`dlcourse.rl`); shared parts: `dlcourse.data`, `dlcourse.nn`,
`dlcourse.train` (one training loop), `dlcourse.viz` (widgets), `dlcourse.grading`.
"""

__version__ = "0.1.0"


def load(name_or_path, device=None):
    """``(model, config)`` of any trained model, in eval mode: a shipped name (``"ncsn_digits"``), an exported
    ``.safetensors`` file, a run folder or its ``ckpt.pt``; the family is read from the file (see
    `dlcourse.registry.load`). Policies come back as ``(policy, header)``."""
    from .registry import load as _load

    return _load(name_or_path, device)
