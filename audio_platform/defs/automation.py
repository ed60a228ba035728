"""Declarative automation shared by the assets that span shards."""

from dagster import AutomationCondition

# Refresh after any upstream update, once nothing upstream is still running. Unlike `eager()`, a
# missing upstream partition (a shard not processed yet, or one that failed) does not hold the
# asset back: other shards' rows must not wait for it.
AFTER_UPSTREAM_UPDATES = (
    AutomationCondition.any_deps_updated().since_last_handled()
    & ~AutomationCondition.any_deps_in_progress()
    & ~AutomationCondition.in_progress()
).with_label("after upstream updates")
