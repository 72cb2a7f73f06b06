"""Search spaces: parsing, validation messages (all at once, with path and line), and
the mapping from a point of the space to a Candidate."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from promptopt.cli import cli
from promptopt.errors import ConfigError
from promptopt.spaces import SpaceError, build_candidate, check_file, list_spaces, load_space, parse_space
from promptopt.types import Candidate

SHIPPED = Path(__file__).resolve().parent.parent / "search_spaces"  # the spaces the repository ships
GOOD = """\
name: tiny
dimensions:
  cot_mode: {type: categorical, choices: [none, zero_shot]}
  cot_trigger:
    type: categorical
    choices: ["Let's think step by step."]
    when: {cot_mode: [zero_shot]}
  n_demos: {type: integer, low: 0, high: 4}
  demo_selection: {type: categorical, choices: [random, fixed, similar], when: {n_demos: {min: 1}}}
  samples: {type: categorical, choices: [1, 3]}
  temperature: {type: float, low: 0.5, high: 1.0, step: 0.25, when: {samples: [3]}}
"""


def write(tmp_path: Path, text: str, name: str = "space.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(tmp_path: Path, text: str) -> list[str]:
    space, problems = check_file(write(tmp_path, text))
    assert space is None
    return problems


def test_builtin_spaces_load_from_the_package() -> None:
    spaces = list_spaces()
    assert {"default", "gsm8k"} <= set(spaces)
    gsm8k = load_space("gsm8k")
    assert gsm8k["n_demos"].low == 0 and gsm8k["n_demos"].high == 8
    assert set(gsm8k["demo_selection"].choices) == {"random", "fixed", "similar", "bootstrapped"}
    assert gsm8k["samples"].choices == (1, 3, 5)
    names = gsm8k.names
    for dimension in gsm8k.dimensions:  # parents always come before their children
        assert all(names.index(p) < names.index(dimension.name) for p in dimension.parents)


@pytest.mark.parametrize("path", sorted(SHIPPED.glob("*.yaml")), ids=str)
def test_the_spaces_shipped_in_search_spaces_are_valid(path: Path) -> None:
    space = load_space(str(path))
    assert space.name == path.stem and space.dimensions


def test_the_cpu_space_is_gsm8k_without_self_consistency() -> None:
    cpu, full = (
        load_space(str(SHIPPED / "gsm8k-cpu.yaml")),
        load_space("gsm8k"),
    )
    assert cpu["samples"].choices == (1,) and "temperature" not in cpu.names
    assert [n for n in full.names if n not in ("samples", "temperature")] == [
        n for n in cpu.names if n != "samples"
    ]


def test_a_mapping_round_trips(tmp_path: Path) -> None:
    space = load_space(write(tmp_path, GOOD))
    again = load_space(space.to_dict())
    assert again.dimensions == space.dimensions


def test_a_user_file_in_search_spaces_overrides_a_builtin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "search_spaces").mkdir()
    write(tmp_path / "search_spaces", GOOD.replace("name: tiny", "name: mine"), "gsm8k.yaml")
    monkeypatch.chdir(tmp_path)
    assert load_space("gsm8k").name == "mine"
    with pytest.raises(ConfigError, match="did you mean gsm8k"):
        load_space("gsm8kk")


def test_a_space_extends_another_replacing_removing_and_adding_dimensions(tmp_path: Path) -> None:
    write(tmp_path, GOOD, "tiny.yaml")
    child = write(tmp_path, """\
# a comment, then the parent
extends: tiny.yaml
dimensions:
  n_demos: {type: integer, low: 0, high: 2}
  temperature: null
  samples: {type: categorical, choices: [1]}
  answer_format: {type: categorical, choices: ["", "The answer is N."]}
""", "child.yaml")  # fmt: skip
    space = load_space(str(child))
    parent = load_space(str(tmp_path / "tiny.yaml"))
    assert space.name == "child"  # the name is the file's, never inherited
    assert space.names == ("cot_mode", "cot_trigger", "n_demos", "demo_selection", "samples", "answer_format")
    assert space["n_demos"].high == 2 and space["samples"].choices == (1,)
    assert (
        space["cot_trigger"] == parent["cot_trigger"] and space["demo_selection"] == parent["demo_selection"]
    )
    assert load_space(space.to_dict()) == dataclasses.replace(
        space, source="<mapping>"
    )  # stored runs need no parent


def test_extends_by_name_skips_the_extending_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "search_spaces").mkdir()
    write(tmp_path / "search_spaces", "extends: gsm8k\ndimensions:\n  n_demos: {type: integer, low: 0, high: 2}\n",
          "gsm8k.yaml")  # fmt: skip
    monkeypatch.chdir(tmp_path)
    mine, builtin = (
        load_space("gsm8k"),
        load_space(str(Path(__file__).parent.parent / "promptopt/search_spaces/gsm8k.yaml")),
    )
    assert mine["n_demos"].high == 2 and builtin["n_demos"].high == 8
    assert mine.description == builtin.description  # inherited
    assert [n for n in mine.names] == [n for n in builtin.names]


def test_the_cpu_space_extends_gsm8k() -> None:
    text = (SHIPPED / "gsm8k-cpu.yaml").read_text(encoding="utf-8")
    assert "extends: gsm8k" in text and "seeds:" not in text  # inherited, not copied


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"a.yaml": "extends: nosuchspace\n"}, "a.yaml:1: extends: unknown search space 'nosuchspace'"),
        ({"a.yaml": "extends: b.yaml\n", "b.yaml": "extends: a.yaml\n"},
         "b.yaml:1: extends: spaces extend each other in a cycle: a.yaml -> b.yaml -> a.yaml"),
        ({"a.yaml": "name: a\nextends: [gsm8k]\n"}, "a.yaml:2: extends: expected the name or path of a search space"),
        ({"a.yaml": "extends: gsm8k\ndimensions:\n  colour: null\n"},
         "a.yaml:3: dimensions.colour: null removes an inherited dimension, but gsm8k.yaml has no dimension 'colour'"),
        ({"a.yaml": "extends: b.yaml\n", "b.yaml": "name: b\ndimensions:\n  n_demos: {type: integer, low: 5, high: 2}\n"},
         "a.yaml:1: extends: the space it extends"),
        ({"a.yaml": "extends: gsm8k\ndimensions:\n  samples: null\n"},
         "a.yaml:1: dimensions.temperature.when.samples: depends on 'samples', which is not a dimension"),
    ],
)  # fmt: skip
def test_extends_mistakes_are_clear(tmp_path: Path, files: dict[str, str], message: str) -> None:
    for name, text in files.items():
        write(tmp_path, text, name)
    space, problems = check_file(tmp_path / "a.yaml")
    assert space is None and any(p.strip().startswith(message) for p in problems), problems


def test_a_broken_parent_lists_its_own_problems(tmp_path: Path) -> None:
    write(tmp_path, "name: b\ndimensions:\n  n_demos: {type: integer, low: 5, high: 2}\n", "b.yaml")
    _, problems = check_file(write(tmp_path, "extends: b.yaml\n", "a.yaml"))
    assert any("b.yaml:3: dimensions.n_demos.high: must not be below low (5)" in p for p in problems), (
        problems
    )


def test_a_mapping_may_extend_a_named_space() -> None:
    space = load_space({"extends": "gsm8k", "name": "mine", "dimensions": {"samples": {"type": "categorical", "choices": [1]}, "temperature": None}})  # fmt: skip
    assert space.name == "mine" and "temperature" not in space and space["samples"].choices == (1,)


def test_bad_yaml_names_the_line(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, "name: x\ndimensions:\n  cot_mode: {type: categorical\n")
    assert len(problems) == 1 and problems[0].startswith("space.yaml:") and "not valid YAML" in problems[0]


def test_every_problem_is_reported_at_once_with_path_and_line(tmp_path: Path) -> None:
    text = """\
name: bad
dimensions:
  temperature:
    type: float
    low: warm
    high: 1.0
    when: {sample: [3]}
  cot_mode: {type: categorical, choices: []}
  colour: {type: categorical, choices: [red]}
  n_demos: {type: integer, low: 5, high: 2}
  demo_selection: {type: categorical, choices: [random, nearest]}
  cot_trigger: {type: categorical, choices: [go], when: {cot_mode: [zero_shot]}}
  samples: {type: float, low: 1, high: 3}
"""
    problems = problems_of(tmp_path, text)
    expected = [
        "space.yaml:5: dimensions.temperature.low: expected a number, got str 'warm'",
        "space.yaml:7: dimensions.temperature.when.sample: depends on 'sample', which is not a dimension",
        "space.yaml:8: dimensions.cot_mode.choices: expected a non-empty list",
        "space.yaml:9: dimensions.colour: unknown dimension",
        "space.yaml:10: dimensions.n_demos.high: must not be below low (5)",
        "space.yaml:11: dimensions.demo_selection.choices[1]: 'nearest' is not one of random, fixed, similar, bootstrapped",
        "space.yaml:13: dimensions.samples.type: samples cannot be float",
    ]
    assert len(problems) == len(expected), problems
    for line, want in zip(problems, expected, strict=True):
        assert line.startswith(want), (line, want)
    with pytest.raises(SpaceError) as info:
        load_space(tmp_path / "space.yaml")
    assert "has 7 problems" in str(info.value) and info.value.problems == problems


@pytest.mark.parametrize(
    ("dims", "message"),
    [
        ("  n_demos: {type: integer, low: 0, high: 3, when: {samples: [3]}}\n", "depends on 'samples', which is not a dimension"),
        ("  cot_mode: {type: categorical, choices: [none]}\n  cot_trigger: {type: categorical, choices: [go], when: {cot_mode: [few]}}\n",
         "'few' is not a choice of cot_mode"),
        ("  n_demos: {type: integer, low: 0, high: 3, when: {demo_seed: [1]}}\n  demo_seed: {type: integer, low: 0, high: 3, when: {n_demos: {min: 1}}}\n",
         "conditions form a cycle"),
        ("  samples: {type: categorical, choices: [1, 1]}\n", "choices repeat a value"),
        ("  instruction: {type: pool, include_base: false}\n", "the pool is empty"),
        ("  temperature: {type: float, low: 0.1, high: 1, lo: 2}\n", "dimensions.temperature.lo: unknown key"),
    ],
)  # fmt: skip
def test_each_kind_of_mistake_has_a_clear_message(tmp_path: Path, dims: str, message: str) -> None:
    problems = problems_of(tmp_path, "name: x\ndimensions:\n" + dims)
    assert any(message in p for p in problems), problems


def test_top_level_mistakes(tmp_path: Path) -> None:
    assert "expected a non-empty mapping of dimensions" in problems_of(tmp_path, "name: x\n")[0]
    assert (
        "unknown key; did you mean 'dimensions'"
        in problems_of(tmp_path, "name: x\ndimension: {}\ndimensions: {}\n")[0]
    )
    _, problems = parse_space(["not", "a", "mapping"])
    assert "expected a mapping" in problems[0]


def test_inactive_dimensions_are_absent_and_keep_the_base_value(tmp_path: Path) -> None:
    space = load_space(write(tmp_path, GOOD))
    base = Candidate(instruction="Solve.", temperature=0.0)
    choices = iter(["none", 0, 1])
    point = space.sample(lambda d: next(choices))
    assert point == {"cot_mode": "none", "n_demos": 0, "samples": 1}
    candidate = build_candidate(space, point, base, pool=["Solve."], demo_pool_ids=["a", "b", "c"])
    assert candidate == base  # the point that changes nothing is the starting prompt itself


def test_demo_seed_picks_a_set_of_the_bootstrapped_pool() -> None:
    from promptopt.spaces import DemoSolutions, bootstrap_count

    space = load_space("default")
    assert bootstrap_count(space) == 16  # demo_seed is active with bootstrapped: a pool to draw from
    assert bootstrap_count(load_space("gsm8k")) == 16  # up to 8 demos a point
    narrow = load_space({"name": "narrow", "dimensions": {
        "n_demos": {"type": "integer", "low": 0, "high": 4},
        "demo_selection": {"type": "categorical", "choices": ["random", "bootstrapped"], "when": {"n_demos": {"min": 1}}},
        "demo_seed": {"type": "integer", "low": 0, "high": 3, "when": {"demo_selection": ["random"]}}}})  # fmt: skip
    assert bootstrap_count(narrow) == 4  # one bootstrapped set: only as many as a point shows
    ids = tuple(f"train-{i}" for i in range(16))
    pool = DemoSolutions(ids, tuple((i, f"worked {i}. So the answer is 1.") for i in ids))
    base = Candidate(instruction="Solve.", cot_mode="zero_shot", cot_trigger="Think.")

    def demos(seed: int) -> Candidate:
        point = {"cot_mode": "few_shot", "cot_trigger": "Think.", "n_demos": 3, "demo_selection": "bootstrapped",
                 "demo_seed": seed, "demo_order": "as_selected"}  # fmt: skip
        return build_candidate(
            space, point, base, pool=["Solve."], demo_pool_ids=ids, bootstrapped=lambda k: pool
        )

    sets = [demos(seed).demo_ids for seed in range(4)]
    assert sets[0] == ids[:3]  # seed 0: the first found, as before
    assert len(set(sets)) == 4 and all(len(set(s)) == 3 and set(s) <= set(ids) for s in sets)
    assert demos(2) == demos(2)  # seeded by the point
    assert {i for i, _ in demos(2).demo_solutions} == set(sets[2])  # each demo with its own worked solution


def test_points_become_candidates(tmp_path: Path) -> None:
    space = load_space(write(tmp_path, GOOD))
    base = Candidate(instruction="Solve.")
    ids = [f"train-{i}" for i in range(20)]
    common = {"pool": ["Solve."], "demo_pool_ids": ids, "fixed_demo_ids": ["cot-0", "cot-1"]}
    cot = build_candidate(space, {"cot_mode": "zero_shot", "cot_trigger": "Let's think step by step.", "n_demos": 0,
                                  "samples": 3, "temperature": 0.75}, base, **common)  # fmt: skip
    assert (cot.cot_mode, cot.cot_trigger, cot.samples, cot.temperature) == (
        "zero_shot",
        "Let's think step by step.",
        3,
        0.75,
    )
    fixed = build_candidate(
        space, {"cot_mode": "none", "n_demos": 3, "demo_selection": "fixed", "samples": 1}, base, **common
    )
    assert fixed.demo_ids == ("cot-0", "cot-1", "train-0")
    similar = build_candidate(
        space, {"cot_mode": "none", "n_demos": 2, "demo_selection": "similar", "samples": 1}, base, **common
    )
    assert similar.similar_demos == 2 and similar.demo_ids == ()
    random_a = build_candidate(
        space, {"cot_mode": "none", "n_demos": 4, "demo_selection": "random", "samples": 1}, base, **common
    )
    random_b = build_candidate(
        space, {"cot_mode": "none", "n_demos": 4, "demo_selection": "random", "samples": 1}, base, **common
    )
    assert random_a == random_b and len(set(random_a.demo_ids)) == 4  # seeded by the point
    assert random_a.demo_ids != tuple(ids[:4])


def test_validate_command_exit_codes(tmp_path: Path) -> None:
    runner = CliRunner()
    good = runner.invoke(cli, ["validate", str(write(tmp_path, GOOD))])
    assert good.exit_code == 0, good.output
    assert "valid search space 'tiny' with 6 dimensions" in good.output and "when cot_mode" in good.output
    assert runner.invoke(cli, ["validate", "gsm8k"]).exit_code == 0
    cpu = runner.invoke(cli, ["validate", str(SHIPPED / "gsm8k-cpu.yaml")])
    assert cpu.exit_code == 0 and "valid search space 'gsm8k-cpu'" in cpu.output, cpu.output
    bad = runner.invoke(
        cli, ["validate", str(write(tmp_path, GOOD.replace("low: 0,", "low: none,"), "bad.yaml"))]
    )
    assert bad.exit_code == 2
    assert "bad.yaml:8: dimensions.n_demos.low: expected an integer, got str 'none'" in bad.output
    as_json = runner.invoke(cli, ["validate", "--json", str(tmp_path / "bad.yaml")])
    assert as_json.exit_code == 2 and "problems" in yaml.safe_load(as_json.output)
    missing = runner.invoke(cli, ["validate", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 2 and "not found" in missing.output


def test_the_demos_space_is_few_shot_over_bootstrapped_sets_only() -> None:
    from promptopt.spaces import bootstrap_count

    space = load_space("demos")
    points = space.points(10_000)
    assert points is not None and len(points) == 4 * 3 * 8 * 2  # slots x demo counts x sets x orders
    assert {(p["cot_mode"], p["demo_selection"]) for p in points} == {("few_shot", "bootstrapped")}
    assert bootstrap_count(space) == 16
