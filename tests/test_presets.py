"""Every preset that names a paper builds the network it says: its parameter count within 2% of the paper's, or,
where the preset says how it differs, exactly the count it states (to 0.5%)."""

import pytest

from dlcourse.registry import FAMILIES, family
from dlcourse.utils import count_parameters

CASES = [(name, preset) for name in FAMILIES for preset in family(name).presets.reproduces]


def test_the_paper_presets_are_there():
    assert {("sde", "cifar10"), ("sde", "cifar10-subvp"), ("ncsn", "cifar10"), ("mdlm", "text8"),
            ("sedd", "text8")} <= set(CASES)


@pytest.mark.parametrize("name,preset", CASES)
def test_parameter_count_is_the_stated_one(name, preset):
    fam = family(name)
    note = fam.presets.reproduces[preset]
    millions = count_parameters(fam.build_model(fam.presets.get(preset))) / 1e6
    if note.ours_m is None:
        assert abs(millions / note.params_m - 1) < 0.02, (millions, note)
    else:
        assert note.differs and abs(millions / note.ours_m - 1) < 0.005, (millions, note)
    assert note.paper and note.table and note.steps > 0
