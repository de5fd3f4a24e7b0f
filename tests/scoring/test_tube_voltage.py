import math

import pytest

from cacflow.scoring.tube_voltage import REFERENCE_KVP, kvp_note


def test_reference_voltage_has_no_note_and_its_boundary_is_half_a_kvp():
    assert REFERENCE_KVP == 120.0
    assert kvp_note(120.0) is None
    assert kvp_note(120.5) is None and kvp_note(119.5) is None
    assert kvp_note(120.6) is not None and kvp_note(119.4) is not None


@pytest.mark.parametrize("kvp, word", [(140.0, "lower"), (100.0, "higher"), (80.0, "higher")])
def test_other_voltages_are_flagged_with_the_direction_of_the_bias(kvp, word):
    note = kvp_note(kvp)
    assert note.startswith(f"acquired at {kvp:g} kVp") and f"tends to be {word} than at 120 kVp" in note


@pytest.mark.parametrize("kvp", [None, math.nan])
def test_unknown_voltage_is_flagged(kvp):
    assert kvp_note(kvp).startswith("tube voltage unknown")
