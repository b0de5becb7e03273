"""When a journal's clock went back (:func:`regauthd.journal.clocksteps.stepped_back`)."""

from __future__ import annotations

from regauthd.journal.clocksteps import stepped_back

S = 1_000_000
HOUR = 3600 * S


def test_a_steady_clock_and_boots_in_order() -> None:
    assert not stepped_back([])
    assert not stepped_back([((100 * S, 5 * S), (200 * S, 105 * S))])
    assert not stepped_back(
        [((100 * S, 5 * S), (200 * S, 105 * S)), ((300 * S, 1 * S), (400 * S, 101 * S))]
    )


def test_a_step_forward_is_harmless() -> None:
    assert not stepped_back([((100 * S, 5 * S), (200 * S + HOUR, 105 * S))])


def test_ntp_slewing_is_allowed_a_step_back_is_not() -> None:
    day = 24 * HOUR
    slewed = day * 500 // 1_000_000  # 500 ppm slower over a day: 43.2 s
    assert not stepped_back([((0, 0), (day - slewed, day))])
    assert stepped_back([((0, 0), (day - slewed - 2 * S, day))])
    assert stepped_back([((100 * S, 5 * S), (150 * S, 105 * S))])  # 50 s back
    assert stepped_back([((100 * S + HOUR, 5 * S), (200 * S, 105 * S))])  # last before first


def test_boots_whose_times_overlap() -> None:
    assert stepped_back(
        [((300 * S, 1 * S), (400 * S, 101 * S)), ((100 * S, 5 * S), (350 * S, 255 * S))]
    )
