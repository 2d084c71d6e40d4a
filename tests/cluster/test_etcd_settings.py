"""`odradek serve`'s settings of a secured etcd: flags, environment variables, TOML keys.

Goal: --etcd-ca, --etcd-cert, --etcd-key, --etcd-user and --etcd-password-file are read
like every other cluster setting (flags over ODRADEK_ETCD_* variables over the config
file); the password comes from ODRADEK_ETCD_PASSWORD or a file, never from a flag (a
command line is visible to every user of the machine) nor from the config file, and is
never shown with the settings. Settings that cannot work together are refused when they
are read: TLS files with http:// endpoints, a certificate without its key, a user without
a password, these settings without --etcd. The password file is read as one line.
Method: the CLI's own parser and ``settings_from``; ``load_security`` on real files.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from odradek.cli.main import build_parser
from odradek.cli.serve import Settings, settings_from
from odradek.cluster.etcd_client import load_security
from odradek.errors import InvalidRequest

STORE = ["--store", "memory://"]


def _settings(arguments: list[str], environ: dict[str, str] | None = None) -> Settings:
    return settings_from(build_parser().parse_args(["serve", *arguments]), environ or {})


def test_flags_set_the_secured_etcd_settings() -> None:
    settings = _settings(
        [
            *STORE,
            *("--etcd", "https://e1:2379,https://e2:2379", "--etcd-user", "odradek"),
            *("--etcd-ca", "ca.pem", "--etcd-cert", "agent.pem", "--etcd-key", "agent-key.pem"),
        ],
        {"ODRADEK_ETCD_PASSWORD": "s3cret pass "},
    )
    assert (settings.etcd_ca, settings.etcd_cert, settings.etcd_key) == (
        "ca.pem",
        "agent.pem",
        "agent-key.pem",
    )
    assert (settings.etcd_user, settings.etcd_password) == ("odradek", "s3cret pass ")  # not stripped
    assert "s3cret" not in repr(settings)


def test_variables_and_the_config_file_set_them_and_flags_win(tmp_path: Path) -> None:
    config = tmp_path / "odradek.toml"
    config.write_text(
        '[serve]\nstore = "memory://"\netcd = "https://e1:2379"\netcd_ca = "file-ca.pem"\n'
        'etcd_user = "from-file"\netcd_password_file = "/run/secrets/etcd"\n'
    )
    environ = {
        "ODRADEK_CONFIG": str(config),
        "ODRADEK_ETCD_CA": "env-ca.pem",
        "ODRADEK_ETCD_USER": "from-env",
    }
    settings = _settings([], environ)
    assert (settings.etcd_ca, settings.etcd_user, settings.etcd_password_file) == (
        "env-ca.pem",
        "from-env",
        "/run/secrets/etcd",
    )
    settings = _settings(["--etcd-ca", "flag-ca.pem"], environ)
    assert settings.etcd_ca == "flag-ca.pem"


def test_no_password_in_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "odradek.toml"
    config.write_text('store = "memory://"\netcd = "http://e1:2379"\netcd_user = "u"\netcd_password = "x"\n')
    with pytest.raises(InvalidRequest, match="etcd_password is not read from a file of settings"):
        _settings(["--config", str(config)])


def test_no_password_flag(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    for flag in ("--etcd-password", "--etcd-password=hunter2"):
        with pytest.raises(SystemExit) as exited:
            parser.parse_args(["serve", flag, "hunter2"] if "=" not in flag else ["serve", flag])
        assert exited.value.code == 2
        errors = capsys.readouterr().err
        assert "there is no --etcd-password" in errors and "hunter2" not in errors


@pytest.mark.parametrize(
    ("arguments", "environ", "message"),
    [
        (["--etcd", "http://e:2379", "--etcd-ca", "ca.pem"], {}, "write them https://"),
        (["--etcd", "https://e:2379", "--etcd-cert", "c.pem"], {}, "--etcd-cert needs --etcd-key"),
        (["--etcd", "https://e:2379", "--etcd-user", "u"], {}, "needs a password"),
        (["--etcd", "https://e:2379"], {"ODRADEK_ETCD_PASSWORD": "x"}, "without a user"),
        (["--etcd", "http://e:2379,https://f:2379"], {}, "mix http:// and https://"),
    ],
)
def test_settings_that_cannot_work_are_refused(
    arguments: list[str], environ: dict[str, str], message: str
) -> None:
    with pytest.raises(InvalidRequest, match=message):
        _settings([*STORE, *arguments], environ)


def test_secured_settings_need_etcd() -> None:
    with pytest.raises(InvalidRequest, match="settings of --etcd"):
        _settings(["--etcd-ca", "ca.pem"])
    # a password in the environment alone (a shell that also runs `cluster status`) is no error
    assert _settings([], {"ODRADEK_ETCD_PASSWORD": "x"}).etcd is None


def test_the_password_file_is_read_as_one_line(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("correct horse\n")
    security = load_security(False, user="odradek", password_file=str(secret))
    assert security is not None and security.password == "correct horse"
    assert "correct horse" not in repr(security)
    with pytest.raises(InvalidRequest, match="given twice"):
        load_security(False, user="odradek", password="x", password_file=str(secret))
    secret.write_text("\n")
    with pytest.raises(InvalidRequest, match="the etcd password is empty"):
        load_security(False, user="odradek", password_file=str(secret))
    with pytest.raises(InvalidRequest, match="cannot read it"):
        load_security(False, user="odradek", password_file=str(tmp_path / "missing"))


def test_the_parser_takes_the_flags_for_cluster_status() -> None:
    args = build_parser().parse_args(
        ["cluster", "status", "--etcd", "https://e:2379", "--etcd-ca", "ca.pem", "--etcd-user", "u"]
    )
    assert isinstance(args, argparse.Namespace)
    assert (args.etcd_ca, args.etcd_user, args.etcd_cert) == ("ca.pem", "u", None)
