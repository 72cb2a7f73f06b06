"""The options that place a search's model workers on a cluster, without Ray: the
``--ray-resources`` flag, its check, and its place in the stored config (a resume uses it)."""

from __future__ import annotations

import click
import pytest

from promptopt.cli.checks import parse_ray_resources
from promptopt.controller import SearchConfig
from promptopt.types import Candidate


def test_ray_resources_flag_parses_and_refuses_clearly() -> None:
    assert parse_ray_resources(None) is None
    assert parse_ray_resources('{"worker_node": 0.01, "GPU": 1}') == {"worker_node": 0.01, "GPU": 1.0}
    for bad in ("worker_node", '["a"]', '{"worker_node": 0}', '{"worker_node": "1"}', '{"x": true}'):
        with pytest.raises(click.BadParameter) as caught:
            parse_ray_resources(bad)
        assert (
            "--ray-resources" in caught.value.format_message() or caught.value.param_hint == "--ray-resources"
        )


def test_ray_resources_travel_with_the_stored_config() -> None:
    config = SearchConfig.from_preset(
        "light", task="t", model="fake", base=Candidate(instruction="Answer."), workers=2,
        ray_address="auto", ray_resources={"worker_node": 0.01},
    )  # fmt: skip
    again = SearchConfig.from_dict(config.to_dict())
    assert again.ray_resources == {"worker_node": 0.01} and again.ray_address == "auto"


def test_pool_placement_options() -> None:
    from promptopt.errors import ConfigError
    from promptopt.pool.backend import _placement

    assert _placement(None) == {} and _placement({}) == {}
    assert _placement({"worker_node": 1}) == {"resources": {"worker_node": 1.0}}
    with pytest.raises(ConfigError):
        _placement({"worker_node": -1})
