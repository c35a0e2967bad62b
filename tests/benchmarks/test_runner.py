"""The runner: its --select (the part of the job an engineer re-runs after a fix) and its instance."""

import dagster as dg
import pytest

from benchmarks.runner import instance_home, selected_assets


def test_a_failed_asset_is_rerun_with_everything_downstream_of_it():
    keys = set(selected_assets("marts/activity_norms+, marts/funnel_conversion"))
    assert {dg.AssetKey(["marts", "activity_norms"]), dg.AssetKey(["marts", "funnel_conversion"])} <= keys
    # Downstream of the norms: the plan and the publication; nothing upstream, nothing beside.
    assert dg.AssetKey(["marts", "action_plan"]) in keys
    assert dg.AssetKey(["published", "warehouse"]) in keys
    assert dg.AssetKey(["marts", "dim_deals"]) not in keys
    assert dg.AssetKey(["marts", "funnel_cohorts"]) not in keys
    assert selected_assets(None) is None


def test_an_unknown_asset_is_a_clear_error():
    with pytest.raises(SystemExit, match="no asset 'marts/nope'"):
        selected_assets("marts/nope+")


def test_a_benchmark_run_has_the_instance_settings_of_make_run(tmp_path):
    """The same writer pool as production: each step claims its slot, as `make run` pays for it."""
    home = instance_home(tmp_path / "dagster_home")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.get_concurrency_config().pool_config.default_pool_limit == 1
