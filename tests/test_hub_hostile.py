"""A hostile Hub repository, served by the local Hub server to the real ``huggingface_hub`` client.

None of these may write outside the cache, run code or exhaust memory; each is refused with one
line (an :class:`~compliance.errors.UnsafeModelError` or :class:`~compliance.errors.ModelTooLargeError`,
exit status 2 through the CLI). Sizes are small: a "100 MB card" is streamed by the server
without being stored, and the client stops reading at its cap.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import struct
import tracemalloc
from pathlib import Path

import pytest

from compliance.constants import ENV_HUB_HOSTS, HUB_METADATA_MAX_BYTES
from compliance.errors import ModelTooLargeError, UnsafeModelError
from compliance.hub import client, download_model, hub_record
from compliance.lineage import describe_lineage
from compliance.models import load_model, local_record
from cli_runner import run_cli
from hub_server import FakeHub, HubServer, Streamed, card, hub, metadata_only  # noqa: F401  (hub is a fixture)

MiB = 1024**2


def one_line_exit_2(args, monkeypatch, capsys) -> str:
    """Run the CLI; assert exit status 2 and one message (soft-wrapped at most) with no traceback."""
    code, _, err = run_cli(args, monkeypatch, capsys)
    assert code == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 4, err
    return " ".join(err.split())


def safetensors_bytes(header: dict, data: bytes = b"", length: int | None = None) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw) if length is None else length) + raw + data


class WritesAMarker:
    """Unpickling this creates a folder: the proof that a pickle ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


@pytest.fixture
def model_like(tiny_model_dir):
    """The tiny model's files as a dict, to serve with one file swapped for a hostile one."""
    return {p.name: p.read_bytes() for p in tiny_model_dir.iterdir() if p.is_file() and p.name != "README.md"}


# --- file names that leave the repository -------------------------------------------------


@pytest.mark.parametrize("name", ["../../escape.json", "sub/../../../escape.json", "/ABS/escape.json",
                                  "..\\..\\escape.json"])
def test_a_file_name_outside_the_repository_is_refused(hub, tmp_path, name, monkeypatch, capsys):
    outside = tmp_path / "outside"
    name = name.replace("/ABS", str(outside))
    hub.add_repo("org/escape", metadata_only("escape") | {name: b'{"evil": true}'}, card=card())
    with pytest.raises(UnsafeModelError, match="a path outside the repository"):
        hub_record("org/escape")
    hub.add_repo("org/ft", metadata_only("ft"), card=card("org/escape"))  # as an ancestor too
    err = one_line_exit_2(["lineage", "org/ft"], monkeypatch, capsys)
    assert "'org/ft' names 'org/escape' as its base" in err and "outside the repository" in err
    assert not any(p.name.endswith("escape.json") for p in tmp_path.rglob("*"))
    assert not any("escape" in path for _, path in hub.requests if "/resolve/" in path)


# --- weight files that are not what they say ----------------------------------------------


def test_a_safetensors_file_that_is_really_a_pickle_never_runs(hub, model_like, tmp_path, monkeypatch, capsys):
    marker = tmp_path / "pickle-ran"
    hub.add_repo("org/base", model_like, card=card())
    hub.add_repo("org/pickled", model_like | {"model.safetensors": pickle.dumps(WritesAMarker(marker), protocol=2)},
                 card=card("org/base"))
    for allow_pickle in (False, True):  # --allow-pickle is for .bin files, never for a .safetensors name
        with pytest.raises(UnsafeModelError, match="model.safetensors is a pickle, not a safetensors file"):
            load_model(hub_record("org/pickled"), allow_pickle=allow_pickle)
    err = one_line_exit_2(["report", "org/pickled", "--no-pdf", "--no-store", "--out", str(tmp_path / "r")],
                          monkeypatch, capsys)
    assert "is a pickle" in err
    local = tmp_path / "local"
    local.mkdir()
    for name, data in model_like.items():
        (local / name).write_bytes(data)
    import torch

    torch.save({"w": torch.zeros(2)}, local / "model.safetensors")  # a torch zip archive under the name
    with pytest.raises(UnsafeModelError, match="is a pickle"):
        load_model(local_record(local))
    assert not marker.exists()


@pytest.mark.parametrize("hostile", [
    safetensors_bytes({}, length=2**40),  # the header length claims a terabyte
    safetensors_bytes({"w": {"dtype": "F32", "shape": [2**20, 2**20], "data_offsets": [0, 2**42]}}, b"\0" * 16),
    safetensors_bytes({"w": {"dtype": "F32", "shape": [2**20, 2**20], "data_offsets": [0, 16]}}, b"\0" * 16),
    safetensors_bytes({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 16]}}, b"\0" * 16),
    b"[1, 2, 3]",
], ids=["header-length", "tensor-past-the-file", "shape-larger-than-its-bytes", "negative-shape", "not-safetensors"])
def test_a_safetensors_header_that_lies_about_its_size(hub, model_like, tmp_path, hostile):
    local = tmp_path / "m"
    local.mkdir()
    for name, data in (model_like | {"model.safetensors": hostile}).items():
        (local / name).write_bytes(data)
    tracemalloc.start()
    with pytest.raises(UnsafeModelError, match="not a valid safetensors file"):
        load_model(local_record(local))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 16 * MiB  # refused from the header, before reading or allocating what it claims
    hub.add_repo("org/terabytes", model_like | {"model.safetensors": hostile}, card=card())
    with pytest.raises(UnsafeModelError, match="not a valid safetensors file"):
        download_model(hub_record("org/terabytes"))


def test_a_valid_safetensors_file_passes_the_checks(hub, model_like, tiny_model_dir):
    from compliance.models.memory import read_safetensors_header, safetensors_parameters

    from safetensors.torch import load_file

    header = read_safetensors_header(tiny_model_dir / "model.safetensors", "tiny")
    tensors = load_file(tiny_model_dir / "model.safetensors")
    assert safetensors_parameters(header) == sum(t.numel() for t in tensors.values())
    hub.add_repo("org/fine", model_like, card=card())
    model, _ = load_model(hub_record("org/fine"))
    assert model.num_parameters() >= safetensors_parameters(header) // 2


# --- a config.json with absurd sizes ------------------------------------------------------


def test_a_config_with_absurd_sizes_is_refused_before_download_and_allocation(hub, model_like):
    config = json.loads(model_like["config.json"])
    huge = config | {"hidden_size": 2**20, "intermediate_size": 2**22, "num_hidden_layers": 2**12,
                     "vocab_size": 2**24}
    hub.add_repo("org/absurd", model_like | {"config.json": json.dumps(huge)}, card=card())
    too_large = r"'org/absurd' needs at least [0-9.]+ GiB of RAM \(what its config.json describes\)"
    with pytest.raises(ModelTooLargeError, match=too_large):
        load_model(hub_record("org/absurd"))
    assert not any(p.endswith(".safetensors") for m, p in hub.requests if m == "GET")  # nothing downloaded


@pytest.mark.parametrize("value", [-1, "4096", 2**50, True, 1.5])
def test_a_config_size_that_is_not_a_size(hub, model_like, tmp_path, value):
    config = json.loads(model_like["config.json"]) | {"num_hidden_layers": value}
    hub.add_repo("org/odd", model_like | {"config.json": json.dumps(config)}, card=card())
    with pytest.raises(UnsafeModelError, match=r"config.json of 'org/odd' has num_hidden_layers=.*not a size"):
        load_model(hub_record("org/odd"))


def test_a_local_config_with_absurd_sizes(model_like, tmp_path):
    local = tmp_path / "m"
    local.mkdir()
    config = json.loads(model_like["config.json"]) | {"hidden_size": 2**18, "vocab_size": 2**22}
    for name, data in (model_like | {"config.json": json.dumps(config).encode()}).items():
        (local / name).write_bytes(data)
    with pytest.raises(ModelTooLargeError, match="needs at least"):
        load_model(local_record(local))


# --- a 100 MB model card ------------------------------------------------------------------


def test_a_100_mb_card_listed_as_such_is_not_fetched(hub, monkeypatch, capsys):
    big = Streamed(100 * MiB, card().encode())
    hub.add_repo("org/bigcard", metadata_only("big"), files={"README.md": big})
    with pytest.raises(UnsafeModelError, match=r"README.md\) is listed at 104,857,600 bytes.*refused"):
        describe_lineage("org/bigcard")
    assert hub.bytes_sent.get("README.md", 0) == 0
    assert "listed at 104,857,600 bytes" in one_line_exit_2(["lineage", "org/bigcard"], monkeypatch, capsys)


def test_a_100_mb_card_listed_as_small_is_read_only_up_to_the_cap(hub):
    hub.add_repo("org/liar", metadata_only("liar"), files={"README.md": Streamed(100 * MiB, card().encode())})
    hub.repos["org/liar"].listed["README.md"] = {"size": 200}
    tracemalloc.start()
    with pytest.raises(UnsafeModelError, match="is served as more bytes than that"):
        describe_lineage("org/liar")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 4 * HUB_METADATA_MAX_BYTES
    assert hub.bytes_sent["README.md"] < 40 * MiB  # the client stopped; the socket buffers hold the rest


def test_an_oversized_tokenizer_file_is_refused_before_download(hub, model_like):
    hub.add_repo("org/bigtok", model_like | {"tokenizer.json": Streamed(200 * MiB, b"{")}, card=card())
    with pytest.raises(UnsafeModelError, match="tokenizer.json is listed at 209,715,200 bytes"):
        download_model(hub_record("org/bigtok"))
    assert hub.bytes_sent.get("tokenizer.json", 0) == 0


def test_the_card_is_not_downloaded_with_the_model(hub, model_like):
    hub.add_repo("org/m", model_like, card=card())
    folder = Path(download_model(hub_record("org/m")).path)
    assert (folder / "model.safetensors").is_file() and not (folder / "README.md").exists()


# --- a redirect to another host -----------------------------------------------------------


@pytest.fixture
def other_host():
    """A second server, another origin: what a hostile redirect points at. Yields its FakeHub."""
    with HubServer(FakeHub()) as server:
        yield server.hub


def test_a_card_redirected_to_another_host_is_not_fetched(hub, other_host, monkeypatch, capsys):
    sha = hub.add_repo("org/redir", metadata_only("r"), card=card())
    other_host.add_repo("org/redir", metadata_only("r"), card=card("org/elsewhere"))
    hub.repos["org/redir"].redirects["README.md"] = f"{other_host.endpoint}/org/redir/resolve/{sha}/README.md"
    with pytest.raises(UnsafeModelError, match=r"to another host, 127.0.0.1:\d+: refused.*" + ENV_HUB_HOSTS):
        describe_lineage("org/redir")
    assert other_host.requests == []
    assert "another host" in one_line_exit_2(["lineage", "org/redir"], monkeypatch, capsys)


def test_weights_redirected_to_another_host_are_not_fetched_unless_the_host_is_listed(
        hub, other_host, model_like, monkeypatch, tmp_path, capsys):
    sha = hub.add_repo("org/cdn", model_like, card=card())
    other_host.add_repo("org/cdn", model_like, card=card())  # the same bytes, served from the other origin too
    redirect = f"{other_host.endpoint}/org/cdn/resolve/{sha}/model.safetensors"
    hub.repos["org/cdn"].redirects["model.safetensors"] = redirect
    with pytest.raises(UnsafeModelError, match="another host"):
        download_model(hub_record("org/cdn"))
    assert other_host.requests == []
    err = one_line_exit_2(["report", "org/cdn", "--base", "org/cdn", "--no-pdf", "--no-store",
                           "--out", str(tmp_path / "r")], monkeypatch, capsys)
    assert "another host" in err and ENV_HUB_HOSTS in err
    monkeypatch.setenv(ENV_HUB_HOSTS, other_host.endpoint.removeprefix("http://"))
    folder = Path(download_model(hub_record("org/cdn")).path)
    assert (folder / "model.safetensors").read_bytes() == model_like["model.safetensors"]
    assert ("GET", f"/org/cdn/resolve/{sha}/model.safetensors") in other_host.requests


# --- an LFS digest that does not match the bytes ------------------------------------------


def test_an_lfs_digest_that_does_not_match_the_bytes(hub, model_like, monkeypatch, tmp_path, capsys):
    hub.add_repo("org/tampered", model_like, card=card())
    hub.repos["org/tampered"].listed["model.safetensors"] = {"sha256": "ab" * 32}
    record = hub_record("org/tampered")
    assert record.weights[0].sha256 == "ab" * 32
    with pytest.raises(UnsafeModelError, match=r"has sha256 [0-9a-f]{12}… but the Hub recorded abababababab…"):
        download_model(record)
    snapshots = Path(os.environ["HF_HUB_CACHE"]) / "models--org--tampered"
    assert not any(p.name == "model.safetensors" for p in snapshots.rglob("*"))  # removed, so a retry refetches
    assert not [p for p in (snapshots / "blobs").iterdir() if p.stat().st_size == len(model_like["model.safetensors"])]
    err = one_line_exit_2(["report", "org/tampered", "--base", "org/tampered", "--no-pdf", "--no-store",
                           "--out", str(tmp_path / "r")], monkeypatch, capsys)
    assert "but the Hub recorded" in err


def test_a_support_file_served_at_another_size_than_listed(hub, model_like):
    hub.add_repo("org/resized", model_like, card=card())
    hub.repos["org/resized"].listed["tokenizer_config.json"] = {"size": 3}
    with pytest.raises(UnsafeModelError, match="tokenizer_config.json was served as .* bytes but the Hub lists 3"):
        download_model(hub_record("org/resized"))


def test_the_metadata_cache_stays_inside_the_cache(hub, tmp_path):
    hub.add_repo("org/root", metadata_only("root"), card=card())
    hub.add_repo("org/fine", metadata_only("fine"), card=card("org/root"))
    describe_lineage("org/fine")
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written and all(p.is_relative_to(tmp_path / "hf-home") for p in written)
    assert client._meta_dir().is_relative_to(tmp_path / "hf-home")
    shutil.rmtree(tmp_path / "hf-home")


def test_which_hosts_downloads_may_reach(monkeypatch):
    import huggingface_hub.constants as hf_constants

    from compliance.hub.guard import trusted_url

    monkeypatch.delenv(ENV_HUB_HOSTS, raising=False)
    monkeypatch.setattr(hf_constants, "ENDPOINT", "https://huggingface.co")
    assert trusted_url("https://huggingface.co/org/m/resolve/main/config.json")
    assert trusted_url("https://cdn-lfs.hf.co/repos/ab/cd") and trusted_url("https://cas-bridge.xethub.hf.co/x")
    assert not trusted_url("http://cdn-lfs.hf.co/repos/ab/cd")  # the public Hub's files come over https only
    assert not trusted_url("https://huggingface.co.evil.example/x") and not trusted_url("https://169.254.169.254/")
    monkeypatch.setattr(hf_constants, "ENDPOINT", "http://mirror.internal:8080")
    assert trusted_url("http://mirror.internal:8080/x") and not trusted_url("http://mirror.internal:9090/x")
    assert not trusted_url("https://cdn-lfs.hf.co/x")  # a mirror's redirects are its own
    monkeypatch.setenv(ENV_HUB_HOSTS, "files.internal, blobs.internal:9000")
    assert trusted_url("https://files.internal/x") and trusted_url("http://blobs.internal:9000/x")
    assert not trusted_url("http://blobs.internal:9001/x")
