"""Opening a store: URLs, credentials, options and settings.

Goal: every supported URL opens the right backend with the right prefix, credentials and
endpoints are taken from the usual environment variables (obstore reads them) or from
options, and whatever cannot work is refused at once with an InvalidRequest that says
what to set: an unsupported or malformed URL, credentials or a port inside the URL, an
S3 store without credentials, half a key pair, a plain-HTTP endpoint without
AWS_ALLOW_HTTP, an Azure store without an account, an unknown option, bad settings.

Method: open_store with a clean environment (monkeypatch); no request is made except in
the test that reaches moto's S3 server through the environment variables alone.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from object_servers import S3Server, unique_prefix

from odradek.errors import InvalidRequest
from odradek.storage.objects import RetryPolicy, open_store


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in list(os.environ):
        if variable.startswith(("AWS_", "AZURE_", "GOOGLE_")):
            monkeypatch.delenv(variable)


KEYS = {"AWS_ACCESS_KEY_ID": "key", "AWS_SECRET_ACCESS_KEY": "secret"}


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("ftp://host/dir", "unsupported store URL"),
        ("https://bucket.s3.amazonaws.com/p", "unsupported store URL"),
        ("s3a://bucket/p", "unsupported store URL"),
        ("bucket/prefix", "unsupported store URL"),
        ("s3://", "names no bucket"),
        ("s3:///prefix", "names no bucket"),
        ("az:///prefix", "names no container"),
        ("s3://key:secret@bucket/p", "no credentials or port"),
        ("s3://bucket:9000/p", "no credentials or port"),
        ("s3://bucket/p?region=eu-west-1", "no query"),
        ("s3://bucket/p#x", "no query"),
        ("s3://bucket/a//b", "not a key"),
        ("s3://bucket/a/../b", "'..'"),
        ("file://relative/dir", "three slashes"),
        ("file:///", "not the root"),
        ("file:relative", "not the root"),
    ],
)
def test_bad_urls_are_refused(url: str, complaint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for variable, value in KEYS.items():
        monkeypatch.setenv(variable, value)
    with pytest.raises(InvalidRequest, match=complaint):
        open_store(url)


def test_s3_url_bucket_and_prefix() -> None:
    store = open_store("s3://bucket/agents/a1/", options={"access_key_id": "k", "secret_access_key": "s"})
    assert store.url == "s3://bucket/agents/a1" and store.prefix == "agents/a1"
    assert store.supports_compare_and_swap


def test_s3_without_credentials_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="no S3 credentials; set AWS_ACCESS_KEY_ID"):
        open_store("s3://bucket/p")


def test_s3_with_half_a_key_pair_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "key")
    with pytest.raises(InvalidRequest, match="without its secret"):
        open_store("s3://bucket/p")
    with pytest.raises(InvalidRequest, match="without its secret"):
        open_store("s3://bucket/p", options={"secret_access_key": ""})


@pytest.mark.parametrize(
    "source",
    [
        {"AWS_ACCESS_KEY_ID": "key", "AWS_SECRET_ACCESS_KEY": "secret"},
        {"AWS_WEB_IDENTITY_TOKEN_FILE": "/var/run/token"},
        {"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "/v2/credentials/x"},
        {"AWS_SKIP_SIGNATURE": "true"},
    ],
)
def test_s3_credentials_from_the_environment(source: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    for variable, value in source.items():
        monkeypatch.setenv(variable, value)
    assert open_store("s3://bucket/p").url == "s3://bucket/p"


def test_s3_instance_credentials_must_be_asked_for() -> None:
    assert open_store("s3://bucket/p", instance_credentials=True).url == "s3://bucket/p"


def test_plain_http_endpoint_needs_allow_http(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable, value in KEYS.items():
        monkeypatch.setenv(variable, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9000")
    with pytest.raises(InvalidRequest, match="AWS_ALLOW_HTTP=true"):
        open_store("s3://bucket/p")
    monkeypatch.setenv("AWS_ALLOW_HTTP", "true")
    assert open_store("s3://bucket/p").url == "s3://bucket/p"
    monkeypatch.delenv("AWS_ALLOW_HTTP")
    with pytest.raises(InvalidRequest, match="AWS_ALLOW_HTTP=true"):
        open_store("s3://bucket/p", options={"endpoint": "http://127.0.0.1:9001"})
    assert open_store("s3://bucket/p", options={"allow_http": True}).url == "s3://bucket/p"


def test_unknown_options_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable, value in KEYS.items():
        monkeypatch.setenv(variable, value)
    with pytest.raises(InvalidRequest, match="not valid"):
        open_store("s3://bucket/p", options={"no_such_setting": "1"})
    with pytest.raises(InvalidRequest, match="no options"):
        open_store("memory://", options={"endpoint": "x"})


def test_environment_variables_reach_the_server(moto_s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """AWS_ENDPOINT_URL, the key pair, AWS_REGION and AWS_ALLOW_HTTP, with no options."""
    for variable, value in moto_s3.env.items():
        monkeypatch.setenv(variable, value)
    store = open_store(moto_s3.url(unique_prefix()))
    assert store.put_new("k", b"through the environment")
    assert moto_s3.open(store.prefix).get("k") == b"through the environment"


def test_gcs_url() -> None:
    store = open_store("gs://bucket/prefix")
    assert store.url == "gs://bucket/prefix" and store.supports_compare_and_swap


def test_azure_needs_an_account(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InvalidRequest, match="AZURE_STORAGE_ACCOUNT_NAME"):
        open_store("az://container/prefix")
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_NAME", "account")
    assert open_store("az://container/prefix").url == "az://container/prefix"
    assert open_store("az://container/p", options={"account_name": "other"}).prefix == "p"


def test_a_directory_is_created_and_has_no_compare_and_swap(tmp_path: Path) -> None:
    root = tmp_path / "not" / "yet"
    store = open_store(f"file://{root}")
    assert root.is_dir() and store.url == f"file://{root.resolve()}"
    assert not store.supports_compare_and_swap
    store.put("a/b", b"x")
    assert (root / "a" / "b").read_bytes() == b"x"


def test_a_directory_that_cannot_be_one_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(InvalidRequest, match="cannot use the directory"):
        open_store(f"file://{tmp_path / 'file'}")


def test_memory_stores_fresh_and_named() -> None:
    first, second = open_store("memory://"), open_store("memory://")
    first.put("k", b"1")
    assert second.get("k") is None  # memory:// is a fresh store each time
    named_a, named_b = open_store("memory://shared-test-store"), open_store("memory://shared-test-store")
    named_a.put("k", b"2")
    assert named_b.get("k") == b"2"  # memory://NAME is one store per process
    under_a, under_b = open_store("memory://shared-test-store/a"), open_store("memory://shared-test-store/b")
    under_a.put("k", b"3")
    assert under_b.get("k") is None and named_a.get("a/k") == b"3"
    assert [item.key for item in named_b.list()] == ["a/k", "k"]


@pytest.mark.parametrize(
    "settings",
    [
        {"retry": {"attempts": 0}},
        {"retry": {"backoff_base_seconds": 2.0, "backoff_max_seconds": 1.0}},
        {"retry": {"backoff_base_seconds": -1.0}},
        {"retry": {"request_timeout_seconds": 0.0}},
        {"requests_in_flight": 0},
    ],
)
def test_bad_settings_are_refused(settings: dict[str, object]) -> None:
    with pytest.raises(InvalidRequest):
        retry = settings.get("retry")
        policy = RetryPolicy(**retry) if isinstance(retry, dict) else None
        open_store(
            "memory://", retry=policy, requests_in_flight=int(str(settings.get("requests_in_flight", 8)))
        )
