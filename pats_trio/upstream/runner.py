"""Temporary: `RunnerStats` for `upstream/bluesky.py` until that source moves onto the lifecycle.

The Twitter runner is `upstream/twitter/runner.py`; the counters every source keeps are
`upstream.source.SourceStats`.
"""

from pats_trio.upstream.source import SourceStats as RunnerStats

__all__ = ["RunnerStats"]
