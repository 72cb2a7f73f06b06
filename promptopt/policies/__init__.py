"""Search policies, chosen by name: ``ape``, ``opro``, ``reflect`` (instruction search), and
over a search space ``tpe``, ``reinforce``, ``random`` (see :mod:`promptopt.policies.base`)."""

from promptopt.policies import ape, dspy_policies, opro, random_search, reflect, reinforce, tpe  # noqa: F401 - registers the built-in policies (dspy itself is imported only when a dspy-* policy runs)
from promptopt.policies.base import (
    POLICIES,
    Policy,
    PolicySettings,
    Proposal,
    SpacePolicy,
    get_policy,
    register_policy,
)

__all__ = ["POLICIES", "Policy", "PolicySettings", "Proposal", "SpacePolicy", "get_policy", "register_policy"]

# dspy-gepa and bootstrap-random (issue #21), registered apart from the line above
from promptopt.policies import bootstrap_random, dspy_gepa  # noqa: E402, F401
