"""Assignment a1 (score matching): one deliberate bug per question loses exactly that question's points, with a
message naming the symptom; among them the mistakes the public tests now tell apart (a dropped 1/2 versus a sigma
weight, a reshape that only works for 2-D data). (Full marks for the master and zero for the student version are
checked for every assignment in tests/test_grading.py.)"""

from pathlib import Path

import pytest

MASTER = Path(__file__).resolve().parents[1] / "solutions" / "a1_score_matching.py"

# {case: (question, text in the master's solution, the bug, a phrase the grader's message must contain)}
BUGS = {
    "q1_rank_specific_reshape": ("q1_perturb", "sigma = sigma.reshape(-1, *[1] * (x.dim() - 1))  # (B, 1, ...)",
                                 "sigma = sigma.view(-1, 1)", "x = a tensor of shape (2, 3, 4, 4)"),
    "q1_sigma_squared": ("q1_perturb", "return x + sigma * z", "return x + sigma**2 * z",
                         "sigma^2 was used instead of sigma"),
    "q2_missing_half": ("q2_dsm_loss", "return 0.5 * residual.reshape(score.shape[0], -1).square().sum(dim=1).mean()",
                        "return residual.reshape(score.shape[0], -1).square().sum(dim=1).mean()",
                        "the 1/2 in front of the loss is missing"),
    "q2_sigma_weight": ("q2_dsm_loss", "residual = sigma * score + z  # σ (s + z/σ), (B, ...)",
                        "residual = sigma.sqrt() * (score + z / sigma)  # σ (s + z/σ), (B, ...)",
                        "the weight is sigma instead of sigma^2"),
    "q2_mean_over_coordinates": ("q2_dsm_loss", ".square().sum(dim=1).mean()", ".square().mean()",
                                 "averaged over the coordinates"),
    "q3_linspace": ("q3_noise_ladder", "return (sigma_max * (sigma_min / sigma_max) ** exponents).float()",
                    "return torch.linspace(sigma_max, sigma_min, num_levels)", "evenly spaced"),
    "q4_code_convention": ("q4_annealed_step", "return x + 0.5 * alpha * score + math.sqrt(alpha) * z",
                           "return x + alpha * score + math.sqrt(2 * alpha) * z", "released code's convention"),
}


@pytest.mark.parametrize("case", BUGS)
def test_one_bug_loses_exactly_its_question(case, one_bug):
    one_bug(MASTER, *BUGS[case])
