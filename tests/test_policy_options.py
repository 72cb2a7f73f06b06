"""A policy's own options (its ``Options`` dataclass): checked by SearchConfig, turned into
the CLI's flags, handed to the policy; runs stored before the policies owned their options
(the options at the top level of the stored config) still resume, with the same result."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from promptopt.controller import SearchConfig, SearchResult, search
from promptopt.errors import ConfigError
from promptopt.policies import POLICIES, Policy, Proposal, register_policy
from promptopt.policies.options import PolicyOptions, option, option_specs
from promptopt.store import Store
from promptopt.tasks import Task, task_reference
from promptopt.testing.contracts import InterruptingBackend
from promptopt.types import Candidate
from tests.test_reflect import _task, kind_backend, run
from tests.test_reflect import config as reflect_config

BASE = {"task": "gsm-symbolic", "model": "fake", "base": Candidate(instruction="Answer.")}
# The six options that were SearchConfig fields before the policies owned them.
OLDER_FIELDS = {"minibatch": 6, "reflect_demos": 0, "reflect_merge": False, "dspy_threads": 1,
                "dspy_share": None, "cost_penalty": 0.0}  # fmt: skip


@pytest.fixture
def task() -> Task:
    return _task()


def older_layout(config: SearchConfig) -> dict[str, Any]:
    """``config`` as a run stored it before: every policy's options at the top level."""
    data = config.to_dict()
    options = data.pop("policy_options")
    return {**data, **OLDER_FIELDS, **options}


def test_a_stored_config_of_an_older_version_reads_with_its_policys_options() -> None:
    for policy, own in [("reflect", {"minibatch": 4, "reflect_demos": 2, "reflect_merge": True}),
                        ("dspy-mipro", {"dspy_threads": 3, "dspy_share": 0.7}), ("tpe", {"cost_penalty": 0.1}),
                        ("ape", {})]:  # fmt: skip
        new = SearchConfig.from_preset("light", policy=policy, policy_options=own, **BASE)
        stored = older_layout(new)
        assert "policy_options" not in stored and stored["minibatch"] == own.get("minibatch", 6)
        read = SearchConfig.from_dict(stored)
        assert read == new and dict(read.policy_options) == {**dict(new.policy_options), **own}
    # the other policies' options of an older run are dropped: ape has none
    assert (
        SearchConfig.from_dict(older_layout(SearchConfig.from_preset("light", **BASE))).policy_options == {}
    )


def test_a_run_stored_by_an_older_version_resumes_after_a_kill_to_the_same_result(
    task: Task, tmp_path: Path
) -> None:
    own = {"minibatch": 4, "reflect_merge": True, "n_proposals": 3}
    reference = run(task, f"sqlite:///{tmp_path / 'ref.db'}", **own)
    config = reflect_config(**own)
    stored = {**older_layout(config), **task_reference(task)}
    db = f"sqlite:///{tmp_path / 'old.db'}"
    with Store(db) as store:
        run_id = store.create_run(kind="search", task=task.name, model="fake", config=stored, seed=config.seed,
                                  dataset_hash=task.dataset_hash)  # fmt: skip
    interrupting = InterruptingBackend(kind_backend(task), after=reference.model_calls // 2)
    with pytest.raises(KeyboardInterrupt):
        search(db=db, resume=run_id, backend=interrupting, task=task)
    resumed = search(db=db, resume=run_id, backend=kind_backend(task), task=task)
    assert isinstance(resumed, SearchResult)
    assert resumed.policy_state["reflection"]["minibatch"] == 4  # the default is 6
    assert resumed.winner.hash == reference.winner.hash and resumed.policy_state == reference.policy_state
    assert [(r.candidate.hash, r.mean, r.n) for r in resumed.leaderboard] == [
        (r.candidate.hash, r.mean, r.n) for r in reference.leaderboard
    ]
    assert resumed.spent["calls"] == reference.spent["calls"] and resumed.test == reference.test


@pytest.mark.parametrize(
    ("policy", "options", "says"),
    [
        ("ape", {"minibatch": 4}, "policy 'ape' has no option 'minibatch'"),
        ("reflect", {"minibatch": 0}, "policy 'reflect': option 'minibatch' takes an integer >= 1, not 0"),
        ("reflect", {"reflect_merge": "yes"}, "option 'reflect_merge' takes true or false, not 'yes'"),
        ("dspy-copro", {"dspy_share": 1.5}, "option 'dspy_share' takes a number in (0, 1] or None, not 1.5"),
        ("tpe", {"cost_penalty": -1}, "policy 'tpe': option 'cost_penalty' takes a number >= 0, not -1"),
    ],
)
def test_an_unknown_option_or_a_bad_value_names_the_policy_and_what_it_takes(
    policy: str, options: dict[str, Any], says: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        SearchConfig.from_preset("light", policy=policy, policy_options=options, **BASE)
    assert says in str(raised.value)


def test_options_as_keywords_of_their_own_as_before() -> None:
    config = SearchConfig.from_preset("light", policy="reflect", minibatch=8, dspy_threads=4, **BASE)
    assert dict(config.policy_options) == {"minibatch": 8, "reflect_demos": 0, "reflect_merge": False}
    # an option of another policy given as a keyword is ignored, as it was when it was a field
    assert SearchConfig.from_preset("light", policy="ape", minibatch=8, **BASE).policy_options == {}
    # a keyword that is no option of any policy: named, with the closest (a TypeError before)
    with pytest.raises(ConfigError, match="unknown search setting: minibatches") as info:
        SearchConfig.from_preset("light", policy="ape", minibatches=8, **BASE)
    assert info.value.hint == "did you mean minibatch?"


def test_the_policy_presets_are_the_policys() -> None:
    opro = SearchConfig.from_preset("medium", policy="opro", **BASE)
    assert (opro.n_proposals, opro.rounds) == (POLICIES["opro"].presets["medium"]["n_proposals"], 6)


def test_a_preset_without_a_required_field_names_it() -> None:
    from promptopt.errors import ConfigError

    with pytest.raises(ConfigError, match="from_preset: give base") as caught:
        SearchConfig.from_preset("light", task="t", model="fake")
    assert "make_candidate" in (caught.value.hint or "")


@pytest.mark.parametrize(
    ("policy", "flags", "says"),
    [
        ("ape", ["--reflect-merge"], "--reflect-merge is for the reflect policy, not ape"),
        (
            "opro",
            ["--cost-penalty", "0.1"],
            "--cost-penalty is for the random, reinforce and tpe policies, not opro",
        ),
        ("reflect", ["--dspy-share", "0.5"], "--dspy-share is for the dspy-* policies, not reflect"),
        ("reflect", ["--minibatch", "0"], "Invalid value for '--minibatch': 0 is not in the range x>=1"),
    ],
)
def test_the_cli_flags_come_from_the_options(
    tmp_path: Path, policy: str, flags: list[str], says: str
) -> None:
    from promptopt.cli import cli

    args = ["search", "--task", "gsm-symbolic", "--model", "fake", "--policy", policy, "--db",
            str(tmp_path / "c.db"), "--dry-run", *flags]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2 and says in result.output, result.output


def test_the_cli_hands_the_flags_to_the_policy(tmp_path: Path) -> None:
    from promptopt.cli import cli

    args = ["search", "--task", "gsm-symbolic", "--model", "fake", "--policy", "reflect", "--db",
            str(tmp_path / "c.db"), "--dry-run", "--json", "--minibatch", "3", "--proposals", "2"]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert '"minibatch": 3' in result.output  # the reflect estimate's minibatch


@dataclass(frozen=True)
class EchoOptions(PolicyOptions):
    times: int = option(1, "echo: how many copies of the instruction.", min=1)
    louder: bool = option(False, "echo: upper case.")
    quiet: float | None = option(None, "echo: unused.", min=0.0, max=1.0)

    def validate(self) -> None:
        if self.louder and self.times > 3:
            raise ConfigError("echo: --louder takes at most 3 copies")


class EchoPolicy(Policy):
    Options = EchoOptions
    options: EchoOptions

    def ask(self) -> list[Proposal]:
        if self.standings:
            return []
        text = " ".join([self.base.instruction] * self.options.times)
        return [
            Proposal(self.base, "seed"),
            Proposal(self.with_text(text.upper() if self.options.louder else text), "echo"),
        ]


def test_a_policy_declares_its_options_once() -> None:
    register_policy("echo-test")(EchoPolicy)
    try:
        specs = {s.name: s for s in option_specs(EchoOptions)}
        assert specs["quiet"].optional and specs["times"].accepts() == "an integer >= 1"
        config = SearchConfig.from_preset("light", policy="echo-test", policy_options={"times": 2}, **BASE)
        assert dict(config.policy_options) == {"times": 2, "louder": False, "quiet": None}
        with pytest.raises(ConfigError, match="at most 3 copies"):  # the validation hook
            SearchConfig.from_preset(
                "light", policy="echo-test", policy_options={"times": 4, "louder": True}, **BASE
            )
        assert EchoPolicy.read_options({"times": 3}) == EchoOptions(times=3)
    finally:
        POLICIES.pop("echo-test", None)


def test_optimize_takes_policy_options(tmp_path: Path) -> None:
    import promptopt

    with pytest.raises(ConfigError, match="policy 'ape' has no option 'minibatch'"):
        promptopt.optimize("gsm-symbolic", model="fake", policy="ape", policy_options={"minibatch": 2},
                           db=f"sqlite:///{tmp_path / 'o.db'}", progress=False)  # fmt: skip
