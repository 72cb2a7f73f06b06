"""Search policies, chosen by name: ``ape``, ``opro`` (see :mod:`promptopt.policies.base`)."""

from promptopt.policies import ape, opro  # noqa: F401 - registers the built-in policies
from promptopt.policies.base import POLICIES, Policy, PolicySettings, Proposal, get_policy, register_policy

__all__ = ["POLICIES", "Policy", "PolicySettings", "Proposal", "get_policy", "register_policy"]
