"""rl-zoo3's ``--env-kwargs KEY:VALUE`` items, one reader for the launcher and the diagnostics command line."""

import pytest

from sb3_pmac.env_kwargs import parse_env_kwarg, parse_env_kwargs


def test_values_are_python_literals_and_the_key_ends_at_the_first_colon():
    assert parse_env_kwargs(["g:2.0", "continuous:True", "size:(1, 2)", "name:'a:b'", "g:3"]) == {
        "g": 3,  # the last of a repeated key, as rl-zoo3's dict keeps it
        "continuous": True,
        "size": (1, 2),
        "name": "a:b",
    }


@pytest.mark.parametrize("item", ["g", ":2.0", ""])
def test_an_item_without_key_and_colon_is_refused(item):
    with pytest.raises(ValueError, match="KEY:VALUE"):
        parse_env_kwarg(item)
    with pytest.raises(ValueError, match="KEY:VALUE"):
        parse_env_kwarg(item, text_fallback=True)


def test_a_value_that_is_no_literal_is_refused_or_kept_as_text():
    with pytest.raises(ValueError, match="not a Python literal"):
        parse_env_kwarg("render_mode:rgb_array")
    assert parse_env_kwarg("render_mode:rgb_array", text_fallback=True) == ("render_mode", "rgb_array")


def test_the_launcher_and_the_diagnostics_read_items_alike():
    """What the launcher checks the env with is what the diagnostics make it with (for literal values)."""
    from sb3_pmac.diagnostics.cli import parse_args
    from sb3_pmac.zoo import train_env_kwargs

    items = ["g:2.0", "continuous:True", "size:(1, 2)"]
    diagnostics = dict(parse_args(["agent.zip", "--env", "Pendulum-v1", "--env-kwargs", *items]).env_kwargs)
    expected = {"g": 2.0, "continuous": True, "size": (1, 2)}
    assert diagnostics == train_env_kwargs("pmac", "Pendulum-v1", None, items) == expected
    assert train_env_kwargs("pmac", "Pendulum-v1", None, ["render_mode:rgb_array"]) is None  # rl-zoo3 would fail on it


def test_a_value_that_does_not_parse_is_refused_or_kept_as_text():
    with pytest.raises(ValueError, match="not a Python literal"):
        parse_env_kwarg("expr:1 +")  # a SyntaxError for ast.literal_eval
    assert parse_env_kwarg("expr:1 +", text_fallback=True) == ("expr", "1 +")
    assert parse_env_kwarg("path:/tmp/a b", text_fallback=True) == ("path", "/tmp/a b")
