"""Ours with the prototype layer of :mod:`bench.anchors.batched_layer` (bench only).

Measured before the stream hub (commit 7600af9), when every stream had its own channel in
the job's group; with the hub a job's group holds one channel per process.
"""

import copy

from copilot.settings import *  # noqa: F403
from copilot.settings import CHANNEL_LAYERS as _SHIPPED

CHANNEL_LAYERS = copy.deepcopy(_SHIPPED)
CHANNEL_LAYERS["default"]["BACKEND"] = "bench.anchors.batched_layer.BatchedLocalChannelLayer"
