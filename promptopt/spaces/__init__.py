"""Search spaces as data: which parts of a prompt a policy may change, and how.

A space is a YAML file with a list of named *dimensions*. Each name is a part of a
:class:`~promptopt.types.Candidate` (``instruction``, ``cot_mode``, ``n_demos``, ...;
see :data:`DIMENSIONS`), each has a type (``categorical``, ``integer``, ``float``, or
``pool`` for the instruction) and may be *conditional*: ``when: {cot_mode: [zero_shot,
few_shot]}`` means the dimension exists only when its parent takes one of those values
(``when: {n_demos: {min: 1}}`` for a numeric parent). An inactive dimension keeps the
starting prompt's value (or its own ``default``).

The instruction is a *pool*: the starting prompt's instruction, the seed instructions of
the file, and ``grow.max`` more slots that the proposer (APE forward generation or OPRO)
fills the first time a policy picks them. Policies see the pool as indices into a list
of fixed length, as DSPy's MIPROv2 does, so a Bayesian sampler's categories never change
while the pool grows during the search.

A file may start from another: ``extends: gsm8k`` (a name, or a path relative to the
file) inherits its dimensions; each dimension the file lists replaces the inherited one,
``null`` removes one, and new ones are added after.

Built-in spaces ship inside the package (``promptopt/search_spaces/*.yaml``) so that they
travel with the wheel; ``load_space(NAME)`` also looks in ``./search_spaces/`` and in the
folders of ``$PROMPTOPT_SPACE_PATH`` first, so a user's file of the same name wins.

:func:`load_space` validates everything and reports *every* problem at once, each with
its path in the file and its line: ``gsm8k.yaml:31: dimensions.temperature.low:
expected a number, got 'warm'``.
"""

from promptopt.spaces.candidates import DemoSolutions, bootstrap_count, build_candidate, describe_point
from promptopt.spaces.files import (
    builtin_dir,
    check_file,
    list_spaces,
    load_space,
    parse_space,
    space_file,
)
from promptopt.spaces.model import (
    DIMENSIONS,
    KINDS,
    ORDERS,
    PROPOSERS,
    SELECTIONS,
    SPACE_VERSION,
    Condition,
    Dimension,
    Point,
    SearchSpace,
    SpaceError,
)

__all__ = [
    "bootstrap_count",
    "DIMENSIONS",
    "KINDS",
    "ORDERS",
    "PROPOSERS",
    "SELECTIONS",
    "SPACE_VERSION",
    "Condition",
    "DemoSolutions",
    "Dimension",
    "Point",
    "SearchSpace",
    "SpaceError",
    "build_candidate",
    "builtin_dir",
    "check_file",
    "describe_point",
    "list_spaces",
    "load_space",
    "parse_space",
    "space_file",
]
