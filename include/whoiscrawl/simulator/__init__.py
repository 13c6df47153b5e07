"""Offline RDAP registry simulator: the project's default target and benchmark yardstick.

``universe`` builds the registration universe, ``server`` serves it as the five
RIRs' RDAP services, ``cli`` starts it from the command line.
"""

from whoiscrawl.simulator.universe import Network, Universe, build_universe

__all__ = ["Network", "Universe", "build_universe"]
