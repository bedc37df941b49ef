"""``fleet:`` parsing and the wave split (SPEC §13): pure, no I/O."""

from __future__ import annotations

from pathlib import Path

import pytest

from flamingock_provider.core.fleet import members_from_json, split_waves
from flamingock_provider.core.loader import load_pipeline, validate_pipeline
from flamingock_provider.core.model import Member, OnError, TargetConfig
from flamingock_provider.exceptions import ConfigurationError
from tests.conftest import sql_unit, write_tree

TARGETS = "targets:\n  app: {conn_id: base_db}\n  docs: {conn_id: base_mongo, database: shop}\n"


def fleet_dir(tmp_path: Path, fleet: str) -> Path:
    return write_tree(
        tmp_path / "p", {"pipeline.yaml": TARGETS + fleet, "0001_a.yaml": sql_unit("a", "SELECT 1", target="app")}
    )


def errors_of(tmp_path: Path, fleet: str) -> list[str]:
    return [issue.message for issue in validate_pipeline(fleet_dir(tmp_path, fleet)).errors]


def members(n: int) -> list[Member]:
    return [Member(f"m{i}") for i in range(n)]


def test_inline_members_map_pipeline_targets_to_their_own_connections(tmp_path: Path) -> None:
    pipeline = load_pipeline(
        fleet_dir(
            tmp_path,
            "fleet:\n  members:\n    - {name: acme, targets: {app: acme_db}}\n"
            "    - {name: globex, targets: {app: globex_db, docs: {conn_id: globex_mongo, database: g}}}\n"
            "  waves: [1, '50%', rest]\n  max_parallel: 8\n  on_error: continue\n",
        )
    )
    fleet = pipeline.fleet
    assert fleet is not None and fleet.members is not None
    assert [m.name for m in fleet.members] == ["acme", "globex"]
    assert fleet.members[0].targets == {"app": TargetConfig("app", "acme_db")}
    assert fleet.members[1].targets["docs"] == TargetConfig("docs", "globex_mongo", "g")
    assert fleet.waves == (1, "50%", "rest") and fleet.max_parallel == 8 and fleet.on_error is OnError.CONTINUE


@pytest.mark.parametrize(
    ("fleet", "expected"),
    [
        ("fleet: {}\n", "exactly one of 'members'"),
        ("fleet:\n  members: [{name: a}]\n  members_from: {variable: v}\n", "got both"),
        ("fleet:\n  members: [{name: Acme}]\n", "field 'fleet.members': field '[0].name': invalid value 'Acme'"),
        ("fleet:\n  members: [{name: a}, {name: a}]\n", "member name 'a' is used twice"),
        (
            "fleet:\n  members: [{name: a, targets: {ap: x}}]\n",
            "target 'ap' is not a pipeline target (did you mean 'app'?)",
        ),
        ("fleet:\n  members: [{name: a, targets: {app: 3}}]\n", "give a connection id or {conn_id, database}"),
        ("fleet:\n  members: [{name: a}]\n  waves: [rest, 1]\n", "'rest' takes every remaining member"),
        ("fleet:\n  members: [{name: a}]\n  waves: [0]\n", "field 'fleet.waves': entry 1 0"),
        ("fleet:\n  members: [{name: a}]\n  waves: ['120%']\n", "entry 1 '120%'"),
        (
            "fleet:\n  members: [{name: a}]\n  max_parallel: 0\n",
            "field 'fleet.max_parallel': must be a whole number >= 1",
        ),
        ("fleet:\n  members: [{name: a}]\n  on_error: stop\n", "field 'fleet.on_error': unknown value 'stop'"),
        ("fleet:\n  members_from: {variable: 'a b'}\n", "field 'fleet.members_from.variable': invalid value"),
        ("fleet:\n  members: [{name: a}]\n  wave: [1]\n", "field 'fleet.wave': unknown key (did you mean 'waves'?)"),
    ],
)
def test_a_bad_fleet_fails_validation_naming_field_and_value(tmp_path: Path, fleet: str, expected: str) -> None:
    errors = errors_of(tmp_path, fleet)
    assert any(expected in e for e in errors), errors


def test_waves_take_counts_percentages_of_all_members_rounded_up_and_the_rest() -> None:
    waves = split_waves(members(20), (1, "25%", "rest"))
    assert [len(w) for w in waves] == [1, 5, 14]
    assert [m.name for w in waves for m in w] == [f"m{i}" for i in range(20)]  # member order kept
    assert [len(w) for w in split_waves(members(3), (1, "10%", "rest"))] == [1, 1, 1]  # at least one
    assert [len(w) for w in split_waves(members(2), (1, 5, "rest"))] == [1, 1, 0]  # wave numbers stay
    assert [len(w) for w in split_waves(members(7), ("rest",))] == [7]


def test_waves_without_rest_get_one_for_the_members_left_over(tmp_path: Path) -> None:
    pipeline = load_pipeline(fleet_dir(tmp_path, "fleet:\n  members_from: {variable: tenants}\n  waves: [2]\n"))
    assert pipeline.fleet is not None and pipeline.fleet.waves == (2, "rest")
    assert pipeline.fleet.variable == "tenants" and pipeline.fleet.members is None


def test_a_variable_value_is_checked_like_inline_members_and_errors_name_the_variable() -> None:
    targets = {"app": TargetConfig("app", "base_db")}
    good = members_from_json('[{"name": "acme", "targets": {"app": "acme_db"}}]', "tenants", targets)
    assert good == (Member("acme", {"app": TargetConfig("app", "acme_db")}),)
    for raw, expected in [
        (None, "Airflow Variable 'tenants' is not set"),
        ("[{", "Airflow Variable 'tenants' is not JSON"),
        ('{"name": "a"}', "must be a non-empty list"),
        ('[{"name": "a", "targets": {"nope": "x"}}]', "target 'nope' is not a pipeline target"),
    ]:
        with pytest.raises(ConfigurationError, match="tenants") as caught:
            members_from_json(raw, "tenants", targets)
        assert expected in str(caught.value)
