"""API keys and the serve / keys commands."""

import json

import pytest

from conveyor.cli import main
from conveyor.cli.serve import is_loopback
from conveyor.service.keys import KeyRing, add_key, read_keys, revoke_key


def test_keys_are_stored_hashed_and_map_to_their_tenant(tmp_path):
    """The file holds the key's SHA-256, never the key; the ring finds the tenant by key."""
    path = tmp_path / "keys.json"
    record, secret = add_key(path, tenant="acme", name="web")
    assert secret.startswith(f"cvy_{record.id}_")
    assert secret not in path.read_text()
    assert json.loads(path.read_text())["keys"][0]["tenant"] == "acme"
    ring = KeyRing(path)
    assert ring.enabled
    assert ring.tenant_of(secret) == "acme"
    assert ring.tenant_of(secret + "x") is None
    assert ring.tenant_of("not-a-key") is None


def test_a_revoked_key_stops_working_after_the_ring_rechecks(tmp_path):
    """Revoking rewrites the file; the ring re-reads it at its next check (clock moved by hand)."""
    path = tmp_path / "keys.json"
    record, secret = add_key(path, tenant="acme")
    now = [0.0]
    ring = KeyRing(path, clock=lambda: now[0])
    assert ring.tenant_of(secret) == "acme"
    revoke_key(path, record.id)
    now[0] = 2.0
    assert ring.tenant_of(secret) is None
    assert not ring.enabled
    assert read_keys(path) == []


def test_keys_add_prints_the_key_once_and_ls_never_shows_it(tmp_path, capsys):
    """`conveyor keys add` prints the key on stdout; `keys ls` lists ids and tenants only."""
    path = tmp_path / "keys.json"
    assert main(["keys", "--keys-file", str(path), "add", "--tenant", "acme"]) == 0
    secret = capsys.readouterr().out.strip()
    assert secret.startswith("cvy_")
    assert main(["keys", "--keys-file", str(path), "ls"]) == 0
    listed = capsys.readouterr().out
    assert "tenant=acme" in listed
    assert secret not in listed
    assert main(["keys", "--keys-file", str(path), "add", "--tenant", "no spaces"]) == 2


def test_serve_refuses_a_non_loopback_bind_without_keys(tmp_path, capsys):
    """Without keys, `conveyor serve --host 0.0.0.0` exits 2 and says how to fix it."""
    code = main(
        [
            "serve",
            "--host",
            "0.0.0.0",  # noqa: S104 - the bind that must be refused
            "--keys-file",
            str(tmp_path / "none.json"),
            "--store",
            "memory:",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "refusing to bind 0.0.0.0 without API keys" in err
    assert "conveyor keys add" in err
    assert is_loopback("127.0.0.1")
    assert is_loopback("::1")
    assert is_loopback("localhost")
    assert not is_loopback("0.0.0.0")  # noqa: S104 - the address under test


@pytest.mark.parametrize(
    ("command", "value", "message"),
    [
        (["serve"], "", "argument --keys-file: is empty: pass the keys file's path"),
        (["keys", "ls"], "", "argument --keys-file: is empty: pass the keys file's path"),
        (["serve"], "DIR", "is a directory: pass a file in it, e.g. --keys-file"),
        (["keys", "add", "--tenant", "a"], "DIR", "is a directory: pass a file in it"),
        (["keys", "add", "--tenant", "a"], "DIR/nodir/k.json", "does not exist: create it first"),
    ],
)
def test_a_keys_file_that_cannot_be_one_is_refused_naming_the_flag(
    tmp_path, capsys, command, value, message
):
    """--keys-file "" (the current directory), a directory, a missing folder: exit 2, the fix."""
    argv = [*command, "--keys-file", value.replace("DIR", str(tmp_path)), "--store", "memory:"]
    if command[0] == "keys":
        argv = [*command, "--keys-file", value.replace("DIR", str(tmp_path))]
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Is a directory" not in err
    assert "Traceback" not in err


@pytest.mark.parametrize("action", [["ls"], ["revoke", "0123abcd"]])
def test_keys_ls_or_revoke_of_a_missing_keys_file_says_how_to_make_one(tmp_path, capsys, action):
    """`conveyor keys ls --keys-file missing.json`: one line naming the flag and `keys add`."""
    path = tmp_path / "missing.json"
    assert main(["keys", *action, "--keys-file", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"conveyor keys {action[0]}: --keys-file {str(path)!r} does not exist: pass the"
        f" service's keys file, or make one with `conveyor keys add --keys-file {path}"
        " --tenant NAME`"
    )


def test_a_keys_file_of_deep_json_is_a_config_error_naming_it(tmp_path):
    """A keys file nested 100,000 deep is a ConfigError saying so, never a RecursionError."""
    from conveyor.errors import ConfigError

    path = tmp_path / "keys.json"
    path.write_bytes(b"[" * 100_000)
    with pytest.raises(ConfigError, match="nests arrays and objects more than 128 deep"):
        read_keys(path)


def test_the_keys_file_is_written_owner_only_on_add_and_revoke(tmp_path):
    """`keys add` and `keys revoke` leave the file readable and writable by its owner only."""
    path = tmp_path / "keys.json"
    record, _ = add_key(path, tenant="acme")
    assert path.stat().st_mode & 0o777 == 0o600
    path.chmod(0o644)  # loosened by hand: the next write makes it owner-only again
    add_key(path, tenant="globex")
    assert path.stat().st_mode & 0o777 == 0o600
    revoke_key(path, record.id)
    assert path.stat().st_mode & 0o777 == 0o600
