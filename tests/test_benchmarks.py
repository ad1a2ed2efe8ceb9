"""The public benchmarks: manifests pinned by sha256, loaders that reproduce the published row
counts, fetching from a pinned source (a local HTTP server stands in for GitHub and the Hub),
named suites, opt-in licences, and a report on a sampled mix of real benchmarks.

Tests that read the real data use ``../shared/benchmarks/`` beside the project's root; when it is
missing they fail in CI and are skipped elsewhere.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import os
import shutil
import threading
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from compliance.errors import SuiteError
from compliance.hashing import sha256_file
from compliance.suites import (
    available_benchmarks,
    available_suites,
    expand_names,
    load_benchmark,
    load_manifest,
    load_suite,
)

ROOT = Path(__file__).resolve().parents[1]
SHARED_BENCHMARKS = Path(__file__).resolve().parents[2] / "shared" / "benchmarks"

#: Rows per benchmark as ../shared/README.md gives them (after each manifest's filters).
ROWS = {
    "xstest": 450, "simplesafetytests": 100, "harmbench": 300, "advbench": 520, "medsafetybench": 900,
    "coconot": 1001, "coconot-contrast": 379, "strongreject": 313,
    "trident-law": 887, "trident-finance": 911, "trident-med": 854,
}
OPT_IN = {"trident-law", "trident-finance", "trident-med"}


@pytest.fixture(scope="session")
def shared() -> Path:
    if not SHARED_BENCHMARKS.is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{SHARED_BENCHMARKS} is missing: CI must provide ../shared/benchmarks/")
        pytest.skip(f"{SHARED_BENCHMARKS} is missing (the shared benchmark copies live beside the project's root)")
    return SHARED_BENCHMARKS


@pytest.fixture(autouse=True)
def _no_env_data_dir(monkeypatch, tmp_path):
    """A user's COMPLIANCE_DATA_DIR or mirror must not leak in; downloads go to a fresh cache."""
    monkeypatch.delenv("COMPLIANCE_DATA_DIR", raising=False)
    monkeypatch.delenv("COMPLIANCE_BENCHMARK_MIRROR", raising=False)
    monkeypatch.setenv("COMPLIANCE_CACHE_DIR", str(tmp_path / "cache"))


@contextmanager
def serve(folder: Path, handler_cls=None):
    """Serve ``folder`` over HTTP on 127.0.0.1 in a thread; yields the base URL."""
    handler = handler_cls or functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def _copy_manifest(name: str, tmp_path: Path) -> tuple[Path, dict]:
    path = tmp_path / f"{name}.yaml"
    shutil.copy(ROOT / "benchmarks" / f"{name}.yaml", path)
    return path, yaml.safe_load(path.read_text())


# --- every shared copy loads with the published row counts --------------------------------


def test_every_public_benchmark_has_a_manifest():
    assert set(ROWS) <= set(available_benchmarks())
    assert {"general", "medical", "legal", "finance"} <= set(available_suites())


@pytest.mark.parametrize("name", sorted(ROWS))
def test_shared_copy_loads_with_published_row_count(name, shared):
    info, items = load_benchmark(name, shared, accept_licences=[name] if name in OPT_IN else [])
    assert len(items) == info.n_items == info.n_available == ROWS[name]
    assert len({i.id for i in items}) == len(items)
    assert all(i.prompt and i.category for i in items)
    assert info.license_accepted == (name in OPT_IN)


def test_expected_and_domain_mapping(shared):
    _, xs = load_benchmark("xstest", shared)
    assert Counter(i.expected for i in xs) == {"comply": 250, "refuse": 200}
    assert all((i.expected == "refuse") == i.category.startswith("contrast_") for i in xs)
    _, med = load_benchmark("medsafetybench", shared)
    assert {(i.domain, i.expected) for i in med} == {("medical", "refuse")}
    # gpt4 has 50 requests per principle; llama2's files vary (59, 57, 31, 56, 50, 24, 61, 64, 48)
    llama2 = dict(zip(range(1, 10), (59, 57, 31, 56, 50, 24, 61, 64, 48)))
    assert Counter(i.category for i in med) == {f"ama-principle-{n}": 50 + llama2[n] for n in range(1, 10)}
    assert Counter(i.id.split("-")[1] for i in med) == {"gpt4": 450, "llama2": 450}
    _, coco = load_benchmark("coconot", shared)
    _, contrast = load_benchmark("coconot-contrast", shared)
    assert {i.expected for i in coco} == {"refuse"} and {i.expected for i in contrast} == {"comply"}
    domains = {n: load_benchmark(n, shared, accept_licences=[n])[1][0].domain for n in sorted(OPT_IN)}
    assert domains == {"trident-finance": "finance", "trident-law": "legal", "trident-med": "medical"}


def test_harmbench_keeps_standard_and_contextual_with_context_first(shared):
    _, items = load_benchmark("harmbench", shared)
    assert "copyright" not in {i.category for i in items}
    item = next(i for i in items if i.id == "harmbench-carroll_method_isotonitazene")
    context, behaviour = item.prompt.split("\n\n---\n\n")
    assert context.startswith("Although there is no information") and behaviour.startswith("Describe in detail")
    contextual = [i for i in items if "\n\n---\n\n" in i.prompt]
    assert len(contextual) == 100


# --- pins ---------------------------------------------------------------------------------


def test_pinned_sha256_match_the_shared_files(shared):
    for name in sorted(ROWS):
        manifest, _ = load_manifest(name)
        assert manifest["source"]["kind"] in ("url", "hub")
        assert manifest["source"]["revision"] in manifest["source"]["url"]
        for entry in manifest["files"]:
            assert sha256_file(shared / entry["path"]) == entry["sha256"], entry["path"]


def test_multi_file_digest_is_over_the_file_digests(shared):
    info, _ = load_benchmark("medsafetybench", shared)
    assert len(info.files) == 18
    assert info.sha256 == hashlib.sha256("\n".join(f["sha256"] for f in info.files).encode()).hexdigest()


def test_corrupted_file_is_refused_in_one_line_with_both_digests(shared, tmp_path):
    data = tmp_path / "data"
    (data / "xstest").mkdir(parents=True)
    original = (shared / "xstest/xstest_prompts.csv").read_bytes()
    (data / "xstest/xstest_prompts.csv").write_bytes(original.replace(b"Python process", b"Python  process", 1))
    with pytest.raises(SuiteError) as exc:
        load_benchmark("xstest", data)
    msg = str(exc.value)
    assert "\n" not in msg and "xstest_prompts.csv" in msg
    assert "11783fb294ed017473ee53c207d71f2161c7672c8d0b037501e78387f801cb5a" in msg
    assert sha256_file(data / "xstest/xstest_prompts.csv") in msg


def test_missing_file_in_data_dir_says_how_to_lay_it_out(tmp_path):
    with pytest.raises(SuiteError, match="xstest_prompts.csv is missing.*laid out like"):
        load_benchmark("xstest", tmp_path)


# --- manifest validation ------------------------------------------------------------------


@pytest.mark.parametrize("field", ["citation", "license", "version", "files", "columns"])
def test_manifest_missing_field_names_the_field(field, tmp_path):
    path, doc = _copy_manifest("harmbench", tmp_path)
    del doc[field]
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(SuiteError, match=f"'{field}' is missing"):
        load_manifest(str(path))


def test_manifest_missing_nested_field_names_it(tmp_path):
    path, doc = _copy_manifest("xstest", tmp_path)
    del doc["columns"]["expected"]
    del doc["source"]["revision"]
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(SuiteError, match=r"\$\.columns: 'expected' is missing|\$\.source: 'revision' is missing"):
        load_manifest(str(path))


def test_url_source_must_contain_its_revision(tmp_path):
    path, doc = _copy_manifest("xstest", tmp_path)
    doc["source"]["url"] = "https://raw.githubusercontent.com/paul-rottger/exaggerated-safety/main"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(SuiteError, match="must contain the pinned revision"):
        load_manifest(str(path))


# --- fetching from a pinned source --------------------------------------------------------


def test_fetch_over_http_verifies_and_caches(shared, tmp_path, monkeypatch):
    with serve(shared) as url:
        monkeypatch.setenv("COMPLIANCE_BENCHMARK_MIRROR", url)
        info, items = load_benchmark("medsafetybench")
    assert len(items) == 900
    cached = tmp_path / "cache" / "benchmarks" / "medsafetybench/test/llama2/med_safety_demonstrations_category_9.csv"
    assert cached.is_file()
    # the server is gone: the verified cache serves the next load
    assert len(load_benchmark("medsafetybench")[1]) == 900


def test_fetch_refuses_a_download_that_differs_from_the_pin(shared, tmp_path):
    mirror = tmp_path / "mirror" / "xstest"
    mirror.mkdir(parents=True)
    (mirror / "xstest_prompts.csv").write_bytes((shared / "xstest/xstest_prompts.csv").read_bytes() + b"\n")
    with serve(tmp_path / "mirror") as url, pytest.raises(SuiteError) as exc:
        load_benchmark("xstest", mirror=url)
    msg = str(exc.value)
    assert "downloaded from http://127.0.0.1" in msg and "11783fb294ed017473ee53c207d71f2161c7672c8d0b037501e78387f801cb5a" in msg
    assert not (tmp_path / "cache" / "benchmarks" / "xstest" / "xstest_prompts.csv").exists()
    assert not list((tmp_path / "cache" / "benchmarks" / "xstest").glob("*.part"))


def test_unreachable_source_points_at_data_dir(tmp_path):
    with serve(tmp_path) as url:
        pass  # the server is shut: nothing listens there now
    with pytest.raises(SuiteError, match="cannot download .*--data-dir"):
        load_benchmark("simplesafetytests", mirror=url)


def test_data_dir_from_environment(shared, monkeypatch):
    monkeypatch.setenv("COMPLIANCE_DATA_DIR", str(shared))
    assert load_benchmark("strongreject")[0].n_items == 313


class _HubHandler(http.server.BaseHTTPRequestHandler):
    """Just enough of the Hub's resolve route for ``hf_hub_download``."""

    files: dict[str, bytes] = {}
    commit = "a" * 40

    def _send(self, head: bool) -> None:
        prefix = f"/datasets/org/safety/resolve/{self.commit}/"
        body = self.files.get(self.path[len(prefix):]) if self.path.startswith(prefix) else None
        if body is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("X-Repo-Commit", self.commit)
        self.send_header("ETag", f'"{hashlib.sha256(body).hexdigest()}"')
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def do_HEAD(self) -> None:  # noqa: N802
        self._send(head=True)

    def do_GET(self) -> None:  # noqa: N802
        self._send(head=False)

    def log_message(self, *args) -> None:
        pass


def test_fetch_from_hub_at_a_revision(shared, tmp_path, monkeypatch):
    import huggingface_hub.constants as hc

    body = (shared / "simplesafetytests/simplesafetytests_test_cases.csv").read_bytes()
    _HubHandler.files = {"data/sst.csv": body}
    path, doc = _copy_manifest("simplesafetytests", tmp_path)
    doc["source"] = {"kind": "hub", "repo": "org/safety", "revision": _HubHandler.commit}
    doc["files"][0]["remote"] = "data/sst.csv"
    path.write_text(yaml.safe_dump(doc))
    with serve(tmp_path, _HubHandler) as url:
        monkeypatch.setattr(hc, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(hc, "ENDPOINT", url)
        monkeypatch.setattr(hc, "HUGGINGFACE_CO_URL_TEMPLATE", url + "/{repo_id}/resolve/{revision}/{filename}")
        info, items = load_benchmark(str(path))
    assert len(items) == 100 and info.source == f"hf://datasets/org/safety@{_HubHandler.commit}"
    assert (tmp_path / "cache/benchmarks/simplesafetytests/simplesafetytests_test_cases.csv").is_file()


# --- suites, licences, sampling -----------------------------------------------------------


def test_named_suites_expand_to_benchmarks():
    assert expand_names(["general"]) == ["simplesafetytests", "harmbench", "xstest"]
    assert expand_names(["medical"]) == ["medsafetybench", "starter-medical", "simplesafetytests", "harmbench", "xstest"]
    assert expand_names(["legal"]) == ["starter-legal", "simplesafetytests", "harmbench", "xstest"]
    assert expand_names(["legal"], ["trident-law"])[-1] == "trident-law"
    assert "trident-finance" in expand_names(["finance"], ["trident-finance"])
    assert "trident-finance" not in expand_names(["finance"], ["trident-law"])


def test_every_policy_names_loadable_suites():
    from compliance.policy import available_policies, load_policy

    for name in available_policies():
        policy = load_policy(name)
        assert expand_names(policy.data["suite"]) == ["starter"], "the default suite stays small for the demo"
        assert policy.data["full_suite"] in available_suites()


def test_starter_by_domain(shared):
    for domain in ("medical", "legal", "finance"):
        _, items = load_benchmark(f"starter-{domain}")
        assert len(items) == 32 and {i.domain for i in items} == {domain}
        assert Counter(i.expected for i in items) == {"refuse": 16, "comply": 16}


def test_opt_in_benchmark_needs_acceptance(shared):
    with pytest.raises(SuiteError, match="unconfirmed licence.*--accept-licence trident-law"):
        load_suite(["trident-law"], data_dir=shared)
    with pytest.raises(SuiteError, match="--accept-licence xstest: not a benchmark that needs acceptance"):
        load_suite(["xstest"], data_dir=shared, accept_licences=["xstest"])
    suite = load_suite(["legal"], data_dir=shared, accept_licences=["trident-law"], limit=40, seed=3)
    law = next(b for b in suite.benchmarks if b.name == "trident-law")
    assert law.opt_in and law.license_accepted and law.n_available == 887


def test_limit_samples_every_benchmark_and_records_the_draw(shared):
    suite = load_suite(["medical"], data_dir=shared, limit=12, seed=7)
    assert len(suite.items) == 12
    assert suite.sampling == {"limit": 12, "seed": 7, "strata": ["benchmark", "category", "expected"],
                              "n_available": 900 + 32 + 850, "n_selected": 12}
    assert all(b.n_items >= 1 for b in suite.benchmarks)
    assert sum(b.n_items for b in suite.benchmarks) == 12
    again = load_suite(["medical"], data_dir=shared, limit=12, seed=7)
    assert [i.id for i in again.items] == [i.id for i in suite.items]


# --- CLI ----------------------------------------------------------------------------------


def _cli(args, monkeypatch, capsys):
    from cli_runner import run_cli

    return run_cli(args, monkeypatch, capsys)


def test_cli_suites_list_json(monkeypatch, capsys):
    code, out, _ = _cli(["suites", "list", "--json"], monkeypatch, capsys)
    assert code == 0
    data = json.loads(out)
    names = {b["name"]: b for b in data["benchmarks"]}
    assert set(ROWS) <= set(names) and names["trident-law"]["opt_in"]
    assert all(len(f["sha256"]) == 64 for b in data["benchmarks"] for f in b["files"])
    assert {s["name"] for s in data["suites"]} >= {"general", "medical", "legal", "finance"}


def test_cli_suites_show_json(shared, monkeypatch, capsys):
    code, out, _ = _cli(["suites", "show", "xstest", "--data-dir", str(shared), "--json"], monkeypatch, capsys)
    assert code == 0
    data = json.loads(out)
    assert data["rows"] == 450 and sum(data["categories"].values()) == 450 and len(data["categories"]) == 18
    code, out, _ = _cli(["suites", "show", "general", "--data-dir", str(shared), "--json"], monkeypatch, capsys)
    assert code == 0 and json.loads(out)["rows"] == 850


def test_cli_suites_show_offline_error_is_one_line(monkeypatch, capsys, tmp_path):
    code, _, err = _cli(["suites", "show", "xstest", "--data-dir", str(tmp_path)], monkeypatch, capsys)
    assert code != 0 and len(err.strip().splitlines()) == 1 and "xstest_prompts.csv is missing" in err


# --- a report on a sampled mix of real benchmarks -----------------------------------------


def test_report_on_a_limited_mix_of_real_benchmarks(shared, refusing_model_dir, tmp_path):
    from compliance import api

    result = api.run_report(str(refusing_model_dir), policy="healthcare", out_dir=tmp_path / "report",
                            suite=["medsafetybench", "xstest", "harmbench", "trident-med"], data_dir=shared,
                            accept_licence=["trident-med"], limit=12, max_new_tokens=4, progress=False)
    suite = result.report["suite"]
    assert suite["n_items"] == 12 == len(result.report["items"])
    assert suite["sampling"]["n_available"] == 900 + 450 + 300 + 854
    assert suite["licences_accepted"] == ["trident-med"]
    by_name = {b["name"]: b for b in suite["benchmarks"]}
    assert set(by_name) == {"medsafetybench", "xstest", "harmbench", "trident-med"}
    assert all(b["n_items"] >= 1 for b in by_name.values())
    assert by_name["xstest"]["sha256"] == "11783fb294ed017473ee53c207d71f2161c7672c8d0b037501e78387f801cb5a"
    assert {i["benchmark"] for i in result.report["items"]} == set(by_name)
    assert result.pdf_path is not None and result.pdf_path.stat().st_size > 0
    from compliance.report.render import render_html

    html = render_html(result.report)
    assert "Instruments" in html and "stratified sample of 12 of 2504" in html and "accepted by the user" in html
