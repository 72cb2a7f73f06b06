"""Upper bounds of a search's calls and tokens, as the policies give them
(:meth:`promptopt.policies.Policy.estimate`): the plan ``--dry-run`` prints and the
budget checks against."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from promptopt.bias.costs import (
    calibration_overhead,
    candidate_calls,
    option_counts,
    space_calibration_overhead,
    space_calls_per_example,
)
from promptopt.bias.space import offer_bias_dimensions
from promptopt.bootstrap import default_tries
from promptopt.prompt import render_messages
from promptopt.proposers import DEMO_ATTEMPTS
from promptopt.racing import schedule_size
from promptopt.spaces import SearchSpace, bootstrap_count, build_candidate, list_spaces, load_space

# A space with more points than this is not listed (:func:`finite_space_calls`): listing
# would take a while, and a search of any preset races far fewer candidates than that.
FINITE_POINTS = 10_000

if TYPE_CHECKING:
    from promptopt.search_config import SearchConfig
    from promptopt.tasks import Task


def estimate_plan(
    search_calls: int,
    final_calls: int,
    tokens_in: int,
    tokens_out: int,
    dev: int,
    test_n: int,
    proposer_calls: int | None = None,
) -> dict[str, Any]:
    """The estimate's dict (what ``--dry-run`` prints) from its parts; ``proposer_calls``:
    the part of ``search_calls`` the proposer (or reflection model) may make, where known."""
    plan: dict[str, Any] = {
        "search_calls": search_calls,
        "final_calls": final_calls,
        "search_tokens": search_calls * (tokens_in + tokens_out),
        "tokens_in_per_call": tokens_in,
        "tokens_out_per_call": tokens_out,
        "dev_size": dev,
        "test_size": test_n,
    }
    if proposer_calls is not None:
        plan["proposer_calls"] = proposer_calls
    return plan


def proposals_calls(wanted: int) -> int:
    """The proposer's calls for ``wanted`` texts at most: each proposal that is dropped
    (empty, a repeat, about its demos) is retried, up to ``DEMO_ATTEMPTS`` calls per text;
    a paraphrase of a short instruction and OPRO from a history of short ones are
    induction from demos, retried alike."""
    return DEMO_ATTEMPTS * wanted


def final_calls(config: SearchConfig, task: Task) -> int:
    """Calls of the final evaluation (outside the search budget): the ``final_top`` best
    on the whole dev set (inside it under ``Budget.covers_final``), then the winner and
    the starting prompt on test."""
    dev = min(config.dev_size, len(task.examples("dev")))
    test_n = len(task.examples("test", config.test_size))
    per_eval = candidate_calls(config.base)
    if config.budget.covers_final and config.budget.max_calls is not None:
        return 2 * test_n * per_eval  # the final dev scoring is inside --max-calls
    return (config.final_top * dev + 2 * test_n) * per_eval


def prompt_tokens(config: SearchConfig, task: Task) -> int:
    """Tokens in the starting prompt, estimated from words on a few dev examples."""
    sample = task.examples("dev", 5)
    words = sum(sum(len(m.content.split()) for m in render_messages(config.base, task, e)) for e in sample)
    return int(1.4 * words / max(1, len(sample)))


def instruction_estimate(config: SearchConfig, task: Task) -> dict[str, Any]:
    """The estimate of APE: a first race of the proposals and the starting prompt, then
    ``rounds`` races of the kept candidates and their paraphrases, plus the proposer's calls."""
    dev = min(config.dev_size, len(task.examples("dev")))
    first = schedule_size(
        config.n_proposals + 1, dev, start=config.race_start, eta=config.race_eta, keep=config.top_k
    )
    later_pool = config.top_k * (1 + config.paraphrases)
    proposer_calls = proposals_calls(config.n_proposals + config.rounds * config.top_k * config.paraphrases)
    return _propose_and_race(config, task, first, later_pool, proposer_calls)


def opro_estimate(config: SearchConfig, task: Task) -> dict[str, Any]:
    """The estimate of OPRO: a first race of the starting prompt alone, then ``rounds``
    steps, each a race of the kept candidates and ``n_proposals`` new ones."""
    dev = min(config.dev_size, len(task.examples("dev")))
    first = schedule_size(1, dev, start=config.race_start, eta=config.race_eta, keep=config.top_k)
    later_pool = config.top_k + config.n_proposals
    proposer_calls = proposals_calls(config.rounds * config.n_proposals)
    return _propose_and_race(config, task, first, later_pool, proposer_calls)


def _propose_and_race(
    config: SearchConfig, task: Task, first: int, later_pool: int, proposer_calls: int
) -> dict[str, Any]:
    """The estimate of a first race of ``first`` evaluations and ``rounds`` races of
    ``later_pool`` candidates, plus ``proposer_calls``."""
    dev = min(config.dev_size, len(task.examples("dev")))
    later = config.rounds * schedule_size(
        later_pool, dev, start=config.race_start, eta=config.race_eta, keep=config.top_k
    )
    per_eval = candidate_calls(config.base)
    return base_shaped_plan(config, task, (first + later) * per_eval + proposer_calls, proposer_calls)


def base_shaped_plan(
    config: SearchConfig, task: Task, search_calls: int, proposer_calls: int | None = None
) -> dict[str, Any]:
    """The plan of a search whose candidates answer as the starting prompt does (its
    tokens, its chain of thought or not), given its ``search_calls``."""
    dev = min(config.dev_size, len(task.examples("dev")))
    test_n = len(task.examples("test", config.test_size))
    tokens_out = 220 if config.base.cot_mode != "none" else 40
    return estimate_plan(
        search_calls, final_calls(config, task), prompt_tokens(config, task), tokens_out, dev, test_n,
        proposer_calls=proposer_calls,
    )  # fmt: skip


def resolve_space(config: SearchConfig, task: Task) -> SearchSpace:
    """The search space of a run: the configured one, else the task's own, else ``default``."""
    if config.space is not None:
        return load_space(config.space)
    known = list_spaces()
    return load_space(task.name if task.name in known else "default")


def searched_space(config: SearchConfig, task: Task) -> SearchSpace:
    """The space of a run as far as it can be known before the backend is: without the
    answer-bias choices the task cannot use (:func:`~promptopt.bias.space.offer_bias_dimensions`);
    calibrations the backend might not score are kept."""
    return offer_bias_dimensions(resolve_space(config, task), task, None, quiet=True)


def space_bootstraps(space: SearchSpace) -> bool:
    """Whether a point of ``space`` can show bootstrapped demos (the search then bootstraps them)."""
    return (
        "demo_selection" in space and "bootstrapped" in space["demo_selection"].choices and "n_demos" in space
    )


def space_estimate(config: SearchConfig, task: Task) -> dict[str, Any]:
    """Upper bound for the space policies: ``rounds + 1`` races of ``n_proposals`` points
    (plus the starting prompt), each point at the space's most expensive sampling, or,
    when fewer, every distinct point of a finite space once on each dev item
    (:func:`finite_space_calls`); plus the proposer filling every pool slot and the
    bootstrapping of demos."""
    space = searched_space(config, task)
    dev = min(config.dev_size, len(task.examples("dev")))
    races = sum(
        schedule_size(config.n_proposals + (1 if r == 0 else 0), dev, start=config.race_start,
                      eta=config.race_eta, keep=config.top_k)
        for r in range(config.rounds + 1)
    )  # fmt: skip
    per_eval = space_calls_per_example(space, config.base)  # sampling, second stage, permutation
    # a calibration's content-free or permuted dev items, once per candidate
    overhead = space_calibration_overhead(space, config.base, task)
    evaluations = races * per_eval + overhead * config.n_proposals * (config.rounds + 1)
    finite = finite_space_calls(config, task, space, dev)
    bounded_by_space = finite is not None and finite < evaluations
    if finite is not None and bounded_by_space:  # (the first test tells mypy finite is an int)
        evaluations = finite
    # a grown slot: its proposal, then, when that repeats the pool, a paraphrase of the best
    proposer_calls = 2 * proposals_calls(space["instruction"].grow) if "instruction" in space else 0
    boot = default_tries(bootstrap_count(space)) if space_bootstraps(space) else 0
    search_calls = evaluations + proposer_calls + boot
    if config.demo_teacher == "proposer":  # the proposer's model writes the demos
        proposer_calls += boot
    test_n = len(task.examples("test", config.test_size))
    final = (config.final_top * dev + test_n) * per_eval + test_n * candidate_calls(config.base)
    tokens_in = prompt_tokens(config, task) + 120 * (
        int(space["n_demos"].options()[-1]) if "n_demos" in space else 0
    )
    tokens_out = 220
    plan = {
        **estimate_plan(
            search_calls, final, tokens_in, tokens_out, dev, test_n, proposer_calls=proposer_calls
        ),
        "space": space.name,
    }
    if bounded_by_space:  # every point on every dev item: more rounds would spend no more
        plan["space_points"] = len(space.points(FINITE_POINTS) or ())
    # What may be spent before a first proposal has a score: the demos bootstrapped, the
    # instructions written, and the first racing stage of the start and one point.
    plan["before_first_score"] = boot + proposer_calls + 2 * min(config.race_start, dev) * per_eval
    return plan


def finite_space_calls(config: SearchConfig, task: Task, space: SearchSpace, dev: int) -> int | None:
    """The evaluation calls of a space policy's search when the space's points can be
    listed (:meth:`~promptopt.spaces.SearchSpace.points`), else None: the starting prompt
    and every distinct point at most once on each of the ``dev`` items, whatever the rounds
    (the evaluator keeps each candidate's results, so a point drawn again, or raced further,
    costs no call), each at its own calls per item, plus its calibration's once-per-candidate
    overhead. Not the proposer's calls nor the bootstrapping (:func:`space_estimate` adds
    them). ``space`` is best the one the task allows (:func:`searched_space`): the space as
    written is an upper bound of it."""
    points = space.points(FINITE_POINTS)
    if points is None:
        return None
    # What a point costs does not depend on its instruction (a pool slot, filled during the search).
    candidates = [config.base] + [
        build_candidate(space, {k: v for k, v in p.items() if k != "instruction"}, config.base, pool=(),
                        demo_pool_ids=())
        for p in points
    ]  # fmt: skip
    counts = option_counts(task) if any(c.calibration == "position" for c in candidates) else (5,)
    return sum(dev * candidate_calls(c) + calibration_overhead(c.calibration, counts) for c in candidates)
