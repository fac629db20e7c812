"""The mock API's random draws, pure: which fault an admitted request meets, and its latency.

Both take the random source as an argument; the server seeds one per kind of draw from
`MockConfig.seed`, so the faults of a run do not change when the latency model does.
"""

from __future__ import annotations

import enum
import math
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .config import Faults, MockConfig

__all__ = ["Fault", "Random", "draw_fault", "draw_latency_s"]


class Random(Protocol):
    """The part of `random.Random` the draws use."""

    def random(self) -> float:
        """Return a uniform sample in ``[0, 1)``."""
        ...

    def lognormvariate(self, mu: float, sigma: float) -> float:
        """Return a lognormal sample."""
        ...


class Fault(enum.Enum):
    """What happens to an admitted request."""

    NONE = "none"  # answered 200
    FAIL = "fail"  # answered 500
    HANG = "hang"  # never answered
    DROP = "drop"  # connection closed without an answer


def draw_fault(faults: Faults, rng: Random) -> Fault:
    """Pick the fault of one request with one uniform draw (none drawn if no fault can happen).

    The unit interval is cut into ``[0, fail)``, ``[fail, fail + hang)``,
    ``[fail + hang, fail + hang + drop)`` and the rest (no fault).
    """
    if not faults.any:
        return Fault.NONE
    u = rng.random()
    if u < faults.fail_rate:
        return Fault.FAIL
    if u < faults.fail_rate + faults.hang_rate:
        return Fault.HANG
    if u < faults.fail_rate + faults.hang_rate + faults.drop_rate:
        return Fault.DROP
    return Fault.NONE


def draw_latency_s(config: MockConfig, rng: Random) -> float:
    """Return one answer's latency in seconds: fixed, or lognormal with median `latency_ms`."""
    median_s = config.latency_ms / 1000.0
    if config.latency == "fixed" or median_s == 0.0 or config.latency_sigma == 0.0:
        return median_s
    # The median of exp(N(mu, sigma)) is exp(mu).
    return rng.lognormvariate(math.log(median_s), config.latency_sigma)
