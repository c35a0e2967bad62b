from benchmarks.profile_backtest import spread


def test_spread_keeps_the_first_and_last_origin_and_spaces_the_others():
    origins = list(range(21))
    assert spread(origins, 3) == [0, 10, 20]
    assert spread(origins, 5) == [0, 5, 10, 15, 20]
    # Asking for more than there are, or for none in particular: all of them, in order.
    assert spread(origins, 40) == origins
    assert spread(origins, None) == origins
    assert spread(origins, 1) == [0]
