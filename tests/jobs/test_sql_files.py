"""Loading a dialect's named queries: the common file with the dialect's own over it."""

from pathlib import Path

import pytest

from conveyor.jobs.stores.postgres_schema import queries as postgres_queries
from conveyor.jobs.stores.sql_files import QueryFileError, read_queries
from conveyor.jobs.stores.sqlite_schema import queries as sqlite_queries

SQL = Path(__file__).parents[2] / "src" / "conveyor" / "jobs" / "sql"


def sql_folder(tmp_path: Path, common: str, own: str) -> Path:
    """An ``sql`` folder with `common` as the common queries and `own` as dialect ``d``'s."""
    for name, text in (("common", common), ("d", own)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "queries.sql").write_text(text, encoding="utf-8")
    return tmp_path


def test_common_queries_name_their_tables_as_the_dialect_does():
    """A common statement reads the dialect's tables: prefixed on PostgreSQL, bare on SQLite."""
    assert sqlite_queries()["status_of"] == "SELECT status FROM jobs WHERE id = :job;"
    assert "FROM conveyor_jobs WHERE id = $1" in postgres_queries()["status_of"].sql


def test_a_dialect_adds_its_own_queries_and_may_override_a_common_one(tmp_path):
    """The dialect's file wins by name; the common statements it does not name stay."""
    common = "-- name: a\nSELECT 1 FROM {jobs};\n\n-- name: b\nSELECT 2;\n"
    own = "-- name: b\nSELECT 3;\n\n-- name: c\nSELECT 4;\n"
    got = read_queries(sql_folder(tmp_path, common, own), "d", prefix="p_")
    assert got == {"a": "SELECT 1 FROM p_jobs;", "b": "SELECT 3;", "c": "SELECT 4;"}


def test_a_query_left_to_the_dialects_must_be_written_by_each(tmp_path):
    """A common name with comments only, which the dialect does not write, fails the load."""
    common = "-- name: a\n-- Each dialect's.\n\n-- name: b\nSELECT 2;\n"
    with pytest.raises(QueryFileError, match=r"sql/d/queries.sql lacks \['a'\]"):
        read_queries(sql_folder(tmp_path, common, "-- name: c\nSELECT 3;\n"), "d", prefix="")


@pytest.mark.parametrize("where", ["common", "own"])
def test_a_name_written_twice_in_one_file_fails_the_load(tmp_path, where):
    """Two statements of one name in one file: the load says which name, not one silently."""
    twice = "-- name: a\nSELECT 1;\n\n-- name: a\nSELECT 2;\n"
    common, own = (twice, "") if where == "common" else ("", twice)
    with pytest.raises(QueryFileError, match="the query 'a' is written twice"):
        read_queries(sql_folder(tmp_path, common, own), "d", prefix="")


def test_an_unknown_table_in_a_common_query_fails_the_load(tmp_path):
    """A table in braces that the store does not have is a load error, not a runtime one."""
    with pytest.raises(QueryFileError, match=r"unknown table \{jobz\}"):
        read_queries(
            sql_folder(tmp_path, "-- name: a\nSELECT 1 FROM {jobz};\n", ""), "d", prefix=""
        )


def test_the_shipped_dialects_leave_no_query_without_a_statement():
    """Every name a store runs, in both dialects, is a statement, not a comment alone."""
    for queries in (sqlite_queries(), {k: q.sql for k, q in postgres_queries().items()}):
        for name, sql in queries.items():
            code = [line for line in sql.splitlines() if not line.lstrip().startswith("--")]
            assert "".join(code).strip(), name
