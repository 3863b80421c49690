"""Bit-accurate, batched simulation of deployment graphs, with activity and energy metrics."""

from neurodeploy.sim.accuracy import simulate_accuracy
from neurodeploy.sim.result import SimResult
from neurodeploy.sim.simulator import Simulator

__all__ = ["SimResult", "Simulator", "simulate_accuracy"]
