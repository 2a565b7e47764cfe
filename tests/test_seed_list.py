import pytest

from gfkd.errors import ConfigError
from gfkd.seed_list import parse_seeds


def test_parse_seeds():
    assert parse_seeds("0..3") == [0, 1, 2, 3] and parse_seeds("2,5") == [2, 5] and parse_seeds("4") == [4]
    for bad in ("3..1", "x", "", "-1", "1,,2"):
        with pytest.raises(ConfigError, match="is not a seed list"):
            parse_seeds(bad)
