"""Assignment a3 (masked diffusion): one deliberate bug per question loses exactly that question's points, with a
message naming the symptom. (Full marks for the master and zero for the student version are checked for every
assignment in tests/test_grading.py.)"""

from pathlib import Path

import pytest

MASTER = Path(__file__).resolve().parents[1] / "solutions" / "a3_masked_diffusion.py"

# (question, text in the master's solution, the bug, a phrase the grader's message must contain)
BUGS = [
    ("q1_masking", "masked = u < (1 - alpha_t).unsqueeze(-1)", "masked = u < alpha_t.unsqueeze(-1)",
     "probability alpha_t"),
    ("q1_masking", "masked = u < (1 - alpha_t).unsqueeze(-1)", "masked = u > alpha_t.unsqueeze(-1)", "convention"),
    ("q1_masking", "alpha_t = 1 - (1 - eps) * t  # (B,)", "alpha_t = 1 - t  # (B,)", "eps argument"),  # hidden only
    ("q2_nelbo", "nll = torch.where(x_t == MASK_ID, nll, torch.zeros_like(nll))", "nll = nll",
     "counted the unmasked positions"),
    ("q2_nelbo", "return -dalpha_t / (1 - alpha_t) * nll.sum(-1)", "return dalpha_t / (1 - alpha_t) * nll.sum(-1)",
     "wrong sign"),
    ("q2_nelbo", "return -dalpha_t / (1 - alpha_t) * nll.sum(-1)",
     "return -dalpha_t / (1 - alpha_t) * nll.sum(-1) / (x_t == MASK_ID).sum(-1).clamp(min=1)", "averaged"),
    ("q3_step", "return torch.where(x_t == MASK_ID, draw, x_t)", "return draw", "re-masked"),
    # outcome N returned for "stay masked": invisible when N = MASK_ID = 27, caught by the public N = 5 case
    ("q3_step", "draw = torch.where(k == probs.shape[-1], torch.full_like(k, MASK_ID), k)", "draw = k",
     "it must be MASK_ID whatever N is"),
    ("q3_step", "(a_s - a_t) / (1 - a_t)  # (B, L, N)\n    w_stay = ((1 - a_s) / (1 - a_t))",
     "(1 - a_s) / (1 - a_t)  # (B, L, N)\n    w_stay = ((a_s - a_t) / (1 - a_t))", "swapped"),
    ("q4_dse", "dse = tokens.exp().sum(-1) - r * log_s0 + r * (torch.log(r) - 1)",
     "dse = tokens.exp().sum(-1) + r * log_s0 + r * (torch.log(r) - 1)", "instead of subtracting"),
    ("q4_dse", "dse = tokens.exp().sum(-1) - r * log_s0 + r * (torch.log(r) - 1)",
     "dse = tokens.exp().sum(-1) - r * log_s0", "K(r)"),
    ("q4_dse", "tokens = log_score[..., :N]", "tokens = log_score", "y = x_t"),
    ("q4_dse", "return torch.where(x_t == MASK_ID, dse, torch.zeros_like(dse))",
     "return torch.where(x_t == N, dse, torch.zeros_like(dse))", "MASK_ID = 27 here too"),
    ("q4_dse", "r = 1.0 / torch.expm1(sigma_bar)", "r = torch.expm1(sigma_bar)", "inverted ratio"),
]


@pytest.mark.parametrize("question, old, new, symptom", BUGS, ids=[f"{b[0]}-{i}" for i, b in enumerate(BUGS)])
def test_one_bug_loses_exactly_its_question(question, old, new, symptom, one_bug):
    one_bug(MASTER, question, old, new, symptom)
