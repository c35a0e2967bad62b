from datetime import datetime

import pytest

from orchestration.defs.dbt.partitions import dbt_vars_for_window


def test_a_range_of_days_becomes_one_inclusive_window():
    assert dbt_vars_for_window(datetime(2026, 11, 12), datetime(2026, 11, 27)) == {
        "min_date": "2026-11-12",
        "max_date": "2026-11-26",
    }


def test_one_day_partition():
    assert dbt_vars_for_window(datetime(2026, 11, 12), datetime(2026, 11, 13)) == {
        "min_date": "2026-11-12",
        "max_date": "2026-11-12",
    }


def test_an_empty_window_is_an_error():
    with pytest.raises(ValueError, match="empty partition window"):
        dbt_vars_for_window(datetime(2026, 11, 12), datetime(2026, 11, 12))
