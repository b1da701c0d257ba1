import pytest

from probe.active.triggers import Accumulated, Threshold, Trigger, TrustBand
from probe.errors import ProbeError


def test_threshold():
    t = Threshold("u", 0.5)
    assert isinstance(t, Trigger)
    assert not t.check({"u": 0.5}).label
    d = t.check({"u": 0.51})
    assert d.label and d.reason == "candidate" and d.value == 0.51


def test_trust_band_follows_dpgen_levels():
    t = TrustBand("dev", 0.1, 0.3)
    assert t.check({"dev": 0.099}).reason == "accurate" and not t.check({"dev": 0.099}).label
    assert t.check({"dev": 0.1}).reason == "candidate" and t.check({"dev": 0.1}).label
    assert t.check({"dev": 0.3}).reason == "failed" and t.check({"dev": 0.3}).label
    assert not TrustBand("dev", 0.1, 0.3, label_failed=False).check({"dev": 0.5}).label


def test_accumulated_sums_until_tolerance_and_resets():
    t = Accumulated("e", 1.0)
    values = [0.3, 0.3, 0.3, 0.3]
    decisions = [t.check({"e": v}) for v in values]
    assert [d.label for d in decisions] == [False, False, False, True]
    assert decisions[-1].value == pytest.approx(1.2)
    t.reset()
    assert t.check({"e": 0.3}).value == pytest.approx(0.3)


def test_bad_observations_and_parameters():
    with pytest.raises(ProbeError, match="'dev'"):
        TrustBand("dev", 0.1, 0.3).check({"other": 1.0})
    with pytest.raises(ProbeError, match="NaN"):
        Threshold("u", 1.0).check({"u": float("nan")})
    with pytest.raises(ProbeError, match="trust_lo"):
        TrustBand("dev", 0.3, 0.1)
    with pytest.raises(ProbeError, match="non-negative"):
        Accumulated("e", 1.0).check({"e": -1.0})
