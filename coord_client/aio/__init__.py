"""The asyncio client: ``AsyncClient`` and the objects its methods return."""

from .client import AsyncClient, AsyncTxn
from .election import Campaign, Observation
from .lease import Lease, LeaseScope
from .lock import Lock
from .ring import RingView
from .watch import Watch

__all__ = ["AsyncClient", "AsyncTxn", "Campaign", "Lease", "LeaseScope", "Lock", "Observation", "RingView", "Watch"]
