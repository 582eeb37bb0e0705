"""edgekd runtime side: preprocessing, backends, decode/NMS, metrics, latency.

Depends on numpy, opencv and the runtimes only; never imports torch, so it
runs alone on a Jetson.
"""

from deploy.detections import Detections
from deploy.errors import EdgeKDError

__all__ = ["Detections", "EdgeKDError"]
