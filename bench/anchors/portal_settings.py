"""Ours with the prototype layer of :mod:`bench.anchors.batched_layer` (bench only)."""

from copilot.settings import *  # noqa: F403

CHANNEL_LAYERS = {"default": {"BACKEND": "bench.anchors.batched_layer.BatchedLocalChannelLayer"}}
