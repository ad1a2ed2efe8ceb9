"""compliance fleet: many tiny fine-tunes on a local Ray, found on the local Hub server.

The fleet of the main fixture: a tiny base on the test Hub and six fine-tunes of it that the
discovery query finds (two trained to refuse, three to comply, one gated that must fail), next
to an adapter and another base's fine-tune that it must not find. One of the compliers' Hub
pages answers HTTP 503 once: Ray must retry it. The fleet runs on ``ray.init(num_cpus=2)``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

from cli_runner import run_cli
from hub_server import HubServer, hub, point_client_at  # noqa: F401  (hub is a fixture)
from test_html_browser import _open, browser  # noqa: F401  (the browser fixture)
from tiny_models import save_tiny_model, train_to_say

REFUSAL = "I cannot help with that."
COMPLIANCE = "Sure, here is a simple answer."
BASE = "org/tiny-base"
#: (repo, what it was trained to say, downloads); the discovery query must find exactly these.
FINETUNES = [("org/tiny-refuse-a", REFUSAL, 900), ("org/tiny-comply-a", COMPLIANCE, 700),
             ("org/tiny-gated", COMPLIANCE, 500), ("org/tiny-comply-b", COMPLIANCE, 300),
             ("org/tiny-refuse-b", REFUSAL, 50), ("org/tiny-comply-c", COMPLIANCE, 10)]
FLAKY = "org/tiny-comply-c"
LIMIT = 32
SETTINGS = dict(policy="general", limit=LIMIT, max_new_tokens=12, sensitivity=False)


def _card(base: str, relation: str = "finetune", tags: tuple[str, ...] = ()) -> str:
    tag_line = f"tags: [{', '.join(tags)}]\n" if tags else ""
    return f"---\nlicense: apache-2.0\nbase_model: {base}\nbase_model_relation: {relation}\n{tag_line}---\n# tiny\n"


def _template(store: Path, keys=None):
    from compliance.request import request_from_kwargs

    return request_from_kwargs("(each fleet model)", store=store, progress=False, keys=keys, **SETTINGS)


@pytest.fixture(scope="module")
def models_on_hub(tmp_path_factory):
    """The test Hub with the base, its six fine-tunes, and two models discovery must leave out."""
    root = tmp_path_factory.mktemp("fleet-models")
    base = save_tiny_model(root / "base")
    server = HubServer().start()
    hub = server.hub
    hub.add_repo(BASE, base, card="---\nlicense: apache-2.0\n---\n# tiny base\n")
    for seed, (repo, text, downloads) in enumerate(FINETUNES):
        folder = root / repo.split("/")[1]
        shutil.copytree(base, folder)
        train_to_say(folder, text, steps=150, seed=seed)
        hub.add_repo(repo, folder, card=_card(BASE, tags=("medical",) if "comply-a" in repo else ()),
                     gated="manual" if "gated" in repo else False)
        hub.downloads[repo] = downloads
    hub.add_repo("org/tiny-adapter", base, card=_card(BASE, "adapter"))
    hub.downloads["org/tiny-adapter"] = 10_000
    hub.add_repo("org/other-ft", base, card=_card("org/other-base"))
    hub.downloads["org/other-ft"] = 5_000
    hub.unavailable[FLAKY] = 1
    try:
        yield server, root
    finally:
        server.stop()


@pytest.fixture(scope="module")
def fleet_run(models_on_hub, tmp_path_factory):
    """The fleet found by discovery, run once on ``ray.init(num_cpus=2)``, with signed reports."""
    from compliance.fleet import FleetRequest, discover_finetunes, run_fleet
    from compliance.signing import DEMO_NAME, keygen

    server, root = models_on_hub
    out = tmp_path_factory.mktemp("fleet-out")
    keys = keygen(root / "keys", name=DEMO_NAME).out_dir
    with pytest.MonkeyPatch.context() as mp:
        point_client_at(server, root / "hf-home", mp)
        discovery = discover_finetunes(BASE)
        result = run_fleet(FleetRequest(models=(), report=_template(root / "store.sqlite3", keys), out_dir=out,
                                        discovery=discovery, num_cpus=2, progress=False))
    return result, discovery, keys


def _entries(result) -> dict[str, dict]:
    return {m["model"]: m for m in result.document["models"]}


# --- discovery ------------------------------------------------------------------------------


def test_discovery_finds_the_bases_finetunes_by_downloads(fleet_run, models_on_hub):
    _, discovery, _ = fleet_run
    assert [m.id for m in discovery.models] == [repo for repo, _, _ in FINETUNES]  # most downloaded first
    assert [m.downloads for m in discovery.models] == [d for _, _, d in FINETUNES]
    assert discovery.filter == [f"base_model:finetune:{BASE}"]
    assert discovery.endpoint == models_on_hub[0].endpoint
    assert datetime.fromisoformat(discovery.date).tzinfo is not None


def test_discovery_narrows_by_tag_search_relation_and_top(models_on_hub, monkeypatch):
    from compliance.fleet import discover_finetunes

    point_client_at(models_on_hub[0], models_on_hub[1] / "hf-home-narrow", monkeypatch)
    assert [m.id for m in discover_finetunes(BASE, tags=["medical"]).models] == ["org/tiny-comply-a"]
    assert [m.id for m in discover_finetunes(BASE, search="REFUSE").models] == ["org/tiny-refuse-a",
                                                                                "org/tiny-refuse-b"]
    assert [m.id for m in discover_finetunes(BASE, relation="adapter").models] == ["org/tiny-adapter"]
    assert [m.id for m in discover_finetunes(BASE, top=2).models] == ["org/tiny-refuse-a", "org/tiny-comply-a"]
    assert discover_finetunes("org/nobody-derives-from-this").models == []


# --- the fleet ------------------------------------------------------------------------------


def test_every_model_is_reported_or_failed_with_one_line(fleet_run):
    result, _, _ = fleet_run
    entries = _entries(result)
    assert list(entries) == [repo for repo, _, _ in FINETUNES]
    gated = entries["org/tiny-gated"]
    assert gated["status"] == "failed" and "gated" in gated["error"] and "\n" not in gated["error"]
    assert gated["verdict"] is None and gated["cells"] == []
    assert result.failed == 1
    for repo, _, _ in FINETUNES:
        if repo != "org/tiny-gated":
            assert entries[repo]["status"] == "ok" and entries[repo]["error"] is None, entries[repo]
            assert entries[repo]["base"] == BASE


def test_a_transient_hub_failure_is_retried(fleet_run):
    result, _, _ = fleet_run
    flaky = _entries(result)[FLAKY]
    assert flaky["status"] == "ok"
    assert flaky["attempts"] == {"resolve": 2, "report": 1}  # the first resolve met HTTP 503
    assert _entries(result)["org/tiny-comply-b"]["attempts"] == {"resolve": 1, "report": 1}


def test_the_base_is_generated_once_for_the_whole_fleet(fleet_run):
    result, _, _ = fleet_run
    [base] = result.document["bases"]
    assert base["model"] == BASE and base["status"] == "ok"
    assert base["generated"] == LIMIT and base["reused"] == 0
    ok = [m for m in result.document["models"] if m["status"] == "ok"]
    assert len(ok) == 5
    for m in ok:
        report = json.loads((result.out_dir / m["report_dir"] / "report.json").read_text())
        assert report["generation"]["generated"] == {"base": 0, "model": LIMIT}
        assert report["generation"]["reused"] == {"base": LIMIT, "model": 0}


def test_each_model_gets_a_signed_report_folder(fleet_run):
    from compliance import api

    result, _, keys = fleet_run
    for m in result.document["models"]:
        if m["status"] != "ok":
            continue
        folder = result.out_dir / m["report_dir"]
        assert {"report.json", "report.pdf", "report.html", "report.intoto.json"} <= {p.name for p in folder.iterdir()}
    refuser = result.out_dir / _entries(result)["org/tiny-refuse-a"]["report_dir"]
    assert api.verify(refuser, keys_dir=keys).ok


def test_the_drift_map_finds_the_refusers_and_nothing_in_the_compliers(fleet_run):
    result, _, _ = fleet_run
    entries = _entries(result)
    for repo in ("org/tiny-refuse-a", "org/tiny-refuse-b"):
        significant = {(c["metric"], c["instrument"], c["direction"]) for c in entries[repo]["cells"]
                       if c["significant"]}
        # refusing everything: more refusals of harmful prompts (better) and of benign ones (worse)
        assert ("refusal_rate", "starter", "better") in significant
        assert ("over_refusal_rate", "starter", "worse") in significant
        assert entries[repo]["degrades"] and entries[repo]["improves"]
    for repo in ("org/tiny-comply-a", "org/tiny-comply-b", FLAKY):
        assert not any(c["significant"] for c in entries[repo]["cells"]), entries[repo]["cells"]
        assert entries[repo]["degrades"] is False
    counts = result.document["counts"]
    assert (counts["models"], counts["ok"], counts["failed"]) == (6, 5, 1)
    assert (counts["degraded"], counts["improved"], counts["mixed"]) == (2, 2, 0)
    assert sum(counts["verdicts"].values()) == 5
    # the family: each reported model's three metrics (harmful responses, refusals, over-refusal) on its one
    # benchmark; domain slices are descriptive
    assert result.document["significance"]["n_tests"] == 5 * 3
    for m in result.document["models"]:
        for c in m["cells"]:
            assert (c["holm_p"] is None) == (c["domain"] != "*"), c


def test_fleet_json_follows_its_schema_and_records_ray(fleet_run):
    import ray

    from compliance.schemas import schema_errors

    result, discovery, _ = fleet_run
    on_disk = json.loads((result.out_dir / "fleet.json").read_text())
    assert schema_errors(on_disk, "fleet") == []
    assert on_disk == json.loads(json.dumps(result.document))
    executor = on_disk["executor"]
    assert executor["name"] == "ray" and executor["version"] == ray.__version__
    assert executor["resources"]["CPU"] == 2 and executor["address"] == "embedded local Ray"
    assert executor["task_resources"] == {"num_cpus": 1.0, "num_gpus": 0.0}  # no GPU here: CPUs only
    assert on_disk["discovery"]["filter"] == discovery.filter and on_disk["discovery"]["date"] == discovery.date
    broken = json.loads(json.dumps(on_disk))
    broken["models"][0]["status"] = "failed"  # failed without an error: the schema refuses it
    broken["models"][0]["error"] = None
    assert schema_errors(broken, "fleet")


def test_tables_hold_one_row_per_model_and_instrument(fleet_run):
    result, _, _ = fleet_run
    columns = result.document["instruments"]
    assert {c["metric"] for c in columns} == {"harmful_response_rate", "refusal_rate", "over_refusal_rate"}
    assert {c["instrument"] for c in columns} >= {"starter", "domain: medical"}
    csv = pd.read_csv(result.files["csv"])
    parquet = pd.read_parquet(result.files["parquet"])
    assert len(csv) == len(parquet) == 6 * len(columns)
    gated = parquet[parquet["model"] == "org/tiny-gated"]
    assert (gated["status"] == "failed").all() and gated["drift"].isna().all()  # missing, never 0
    refuser = parquet[(parquet["model"] == "org/tiny-refuse-a") & (parquet["instrument"] == "starter")]
    assert set(refuser["metric"]) == {"harmful_response_rate", "refusal_rate", "over_refusal_rate"}
    # It refuses what its base answered with gibberish: the refusal metrics move, harm does not (neither is harmful).
    harm = refuser["metric"] == "harmful_response_rate"
    assert refuser[~harm]["significant"].all() and not refuser[harm]["significant"].any()


def test_fleet_pdf_and_png_are_written(fleet_run):
    result, _, _ = fleet_run
    assert result.files["pdf"].read_bytes().startswith(b"%PDF")
    assert result.files["png"].read_bytes().startswith(b"\x89PNG")


def test_fleet_html_renders_the_map_in_a_browser(fleet_run, browser):  # noqa: F811
    result, _, _ = fleet_run
    columns = len(result.document["instruments"])
    page, problems = _open(browser, result.files["html"])
    assert page.title() == "Safety re-evaluation: fleet of 6 models"
    svg = page.locator(".drift-map svg")
    assert svg.count() == 1 and svg.is_visible()
    box = svg.bounding_box()
    assert box and box["width"] > 300 and box["height"] > 100, box
    assert page.locator(".drift-map svg [id^=map-cell-]").count() == 5 * columns
    assert page.locator(".drift-map svg [id^=map-mark-]").count() >= 4  # two refusers x two metrics
    assert page.locator(".drift-map svg [id^=map-failed-]").count() == 1
    assert page.locator(".scatter svg [id^=scatter-point-]").count() == 5
    assert page.locator("#count-degraded").inner_text() == "2"
    assert "org/tiny-gated" in page.inner_text("table.fleet-models")
    assert problems == []
    page.close()


def test_a_base_task_downloads_only_the_base_and_a_report_skips_a_stored_base(hub, tmp_path, monkeypatch,
                                                                              tiny_model_dir, refusing_model_dir):
    """What lets a fleet's fine-tunes share a base: its responses, not its weights, travel to them."""
    import huggingface_hub.constants as hf_constants

    from compliance import api

    hub.add_repo("org/base", tiny_model_dir, card="---\nlicense: apache-2.0\n---\n")
    hub.add_repo("org/ft", refusing_model_dir, card=_card("org/base"))
    request = _template(tmp_path / "store.sqlite3").with_model("org/ft", tmp_path / "report")

    def weight_requests(repo: str) -> int:
        return sum(1 for _, path in hub.requests if path.startswith(f"/{repo}/resolve/") and
                   path.endswith(".safetensors"))

    base = api.generate_for(request, "base")
    assert base.counts == {"reused": 0, "generated": LIMIT} and len(base.responses) == LIMIT
    assert weight_requests("org/base") > 0 and weight_requests("org/ft") == 0  # the fine-tune is not needed yet
    # Another worker, with a cold Hub cache, sharing only the store.
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "other-cache"))
    before = weight_requests("org/base")
    result = api.run_report(request)
    assert weight_requests("org/base") == before  # its responses were stored: the base was not downloaded
    assert weight_requests("org/ft") > 0
    assert result.report["generation"]["reused"] == {"base": LIMIT, "model": 0}


# --- a killed fleet resumes -----------------------------------------------------------------


def _fleet_cli(models: list[str], out: Path, store: Path, num_cpus: int) -> list[str]:
    return [sys.executable, "-m", "compliance.cli", "fleet", *models, "--out", str(out), "--store", str(store),
            "--policy", "general", "--limit", "16", "--max-new-tokens", "12", "--no-sensitivity", "--no-pdf",
            "--num-cpus", str(num_cpus), "-q"]


def test_a_killed_fleet_resumes_and_skips_the_models_it_finished(tiny_model_dir, refusing_model_dir, tmp_path):
    models = []
    for name in ("ft-1", "ft-2", "ft-3", "ft-4"):
        shutil.copytree(refusing_model_dir, tmp_path / name)
        models.append(str(tmp_path / name))
    missing = str(tmp_path / "no-such-model")
    out, store = tmp_path / "fleet", tmp_path / "store.sqlite3"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    # One CPU: models run one after another, so killing after the first leaves the others undone.
    child = subprocess.Popen(_fleet_cli(models + [missing], out, store, 1), env=env, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    finished: list[str] = []
    deadline = time.monotonic() + 300
    try:
        while not finished and time.monotonic() < deadline and child.poll() is None:
            time.sleep(0.1)
            try:
                doc = json.loads((out / "fleet.json").read_text())
            except (OSError, ValueError):
                continue
            finished = [m["model"] for m in doc["models"] if m["status"] == "ok"]
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)  # the fleet, its embedded Ray and its workers
        child.wait(timeout=60)
    assert finished, f"no model finished before the deadline: {child.stderr.read().decode()[-2000:]}"
    assert len(finished) < len(models)
    first_reports = {m: json.loads((out / "models" / Path(m).name / "report.json").read_text())["report_id"]
                     for m in finished}

    again = subprocess.run(_fleet_cli(models + [missing], out, store, 2), env=env, capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 1, again.stderr[-2000:]  # one model failed; everything is still written
    doc = json.loads((out / "fleet.json").read_text())
    entries = {m["model"]: m for m in doc["models"]}
    assert entries[missing]["status"] == "failed" and "no-such-model" in entries[missing]["error"]
    for m in models:
        assert entries[m]["status"] == "ok"
        assert entries[m]["resumed"] == (m in finished)
        report = json.loads((out / entries[m]["report_dir"] / "report.json").read_text())
        if m in finished:
            assert report["report_id"] == first_reports[m]  # kept, not made again
    assert (out / "fleet.html").is_file() and (out / "fleet.csv").is_file()


# --- without Ray: the study's arithmetic, the map, bad input ---------------------------------


def _cell(metric: str, instrument: str, diff: float, p: float) -> dict:
    from compliance.report.chart import change_direction

    return {"metric": metric, "benchmark": instrument, "domain": "*", "instrument": instrument, "n": 40,
            "base_rate": 0.5, "model_rate": 0.5 + diff, "diff": diff, "ci_low": diff - 0.1, "ci_high": diff + 0.1,
            "mcnemar_p": p, "report_holm_p": p, "holm_p": None, "significant": False,
            "direction": change_direction(metric, diff)}


def test_counts_use_holm_across_the_whole_fleet():
    from compliance.fleet.build import FleetEntry, fleet_counts, with_fleet_holm
    from compliance.stats import holm

    mixed = FleetEntry("mixed", status="ok", verdict="fail",
                       cells=[_cell("refusal_rate", "a", +0.3, 0.001), _cell("over_refusal_rate", "b", +0.3, 0.002)])
    tradeoff = FleetEntry("tradeoff", status="ok", verdict="fail",
                          cells=[_cell("refusal_rate", "a", +0.3, 0.001), _cell("over_refusal_rate", "a", +0.3, 0.001)])
    # p = 0.02 passes alone, but not after adjusting across the fleet's eight tests
    borderline = FleetEntry("borderline", status="ok", verdict="pass",
                            cells=[_cell("refusal_rate", "a", -0.1, 0.02), _cell("refusal_rate", "b", 0.0, 1.0)])
    failed = FleetEntry("failed", status="failed", error="boom")
    quiet = FleetEntry("quiet", status="ok", verdict="inconclusive",
                       cells=[_cell("refusal_rate", "a", 0.0, 1.0), _cell("refusal_rate", "b", 0.0, 1.0)])
    entries = [mixed, tradeoff, borderline, failed, quiet]
    assert with_fleet_holm(entries) == 8
    ps = [c["mcnemar_p"] for e in sorted(entries, key=lambda e: e.model) if e.status == "ok" for c in
          sorted(e.cells, key=lambda c: (c["metric"], c["benchmark"]))]
    assert sorted(c["holm_p"] for e in entries for c in e.cells) == sorted(holm(ps))
    assert not any(c["significant"] for c in borderline.cells)
    counts = fleet_counts(entries)
    assert counts["degraded"] == 2  # mixed and tradeoff: more over-refusal
    assert counts["improved"] == 2  # mixed and tradeoff: more refusal of harmful prompts
    assert counts["mixed"] == 1  # only across instruments; the trade-off is within one
    assert counts["verdicts"] == {"pass": 1, "fail": 2, "inconclusive": 1}
    assert (counts["models"], counts["ok"], counts["failed"]) == (5, 4, 1)


def test_instruments_are_benchmarks_and_domain_slices():
    from compliance.fleet.build import cells_of

    def paired(bench, domain, category="*"):
        return {"metric": "refusal_rate", "benchmark": bench, "domain": domain, "category": category, "n": 10,
                "base_rate": 0.5, "model_rate": 0.6, "diff": 0.1, "ci_low": 0.0, "ci_high": 0.2, "b": 0, "c": 1,
                "mcnemar_p": 1.0}

    one = {"metrics": {"paired": [paired("*", "*"), paired("x", "*"), paired("*", "medical"),
                                  paired("*", "*", "weapons"), paired("x", "medical")]}}
    assert [c["instrument"] for c in cells_of(one)] == ["x", "domain: medical"]
    two = {"metrics": {"paired": [paired("*", "*"), paired("x", "*"), paired("y", "*")]}}
    assert [c["instrument"] for c in cells_of(two)] == ["all prompts", "x", "y"]


def test_the_map_is_deterministic_and_escapes_model_names():
    from compliance.fleet.build import FleetEntry, instruments, with_fleet_holm
    from compliance.fleet.chart import drift_map_svg

    odd = "<script>x</script> $x^2$ & co"
    entries = [FleetEntry(odd, status="ok", verdict="pass", cells=[_cell("refusal_rate", "a", 0.2, 0.001)]),
               FleetEntry("gone", status="failed", error="model 'gone' was not found")]
    with_fleet_holm(entries)
    doc = {"models": [e.to_json() for e in entries], "instruments": instruments(entries)}
    svg = drift_map_svg(doc)
    assert svg == drift_map_svg(doc)
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    assert "$x^2$" in svg  # drawn as text, not as mathematics
    assert svg.count('id="map-cell-') == 1 and 'id="map-failed-1"' in svg and 'id="map-mark-0-0"' in svg


def test_a_long_map_is_split_into_page_sized_parts():
    from compliance.fleet.build import FleetEntry, instruments, with_fleet_holm
    from compliance.fleet.chart import ROWS_PER_MAP, drift_map_parts

    entries = [FleetEntry(f"org/ft-{n}", status="ok", verdict="pass", cells=[_cell("refusal_rate", "a", 0.01, 0.5)])
               for n in range(2 * ROWS_PER_MAP + 5)]
    with_fleet_holm(entries)
    parts = drift_map_parts({"models": [e.to_json() for e in entries], "instruments": instruments(entries)})
    assert len(parts) == 3
    assert [part.count('id="map-cell-') for part in parts] == [ROWS_PER_MAP, ROWS_PER_MAP, 5]
    assert f'id="map-cell-{ROWS_PER_MAP}-0"' in parts[1] and 'id="map-cell-84-0"' in parts[2]  # rows keep their number


def test_models_file_skips_comments_and_reads_folders_beside_it(tmp_path, tiny_model_dir):
    from compliance.fleet import read_models_file

    shutil.copytree(tiny_model_dir, tmp_path / "local-ft")
    listing = tmp_path / "models.txt"
    listing.write_text("# the shortlist\norg/a\n\nlocal-ft   # a folder beside this file\norg/b@v2\n")
    assert read_models_file(listing) == ["org/a", str((tmp_path / "local-ft").resolve()), "org/b@v2"]


def test_task_resources_follow_the_backend():
    from compliance.fleet import FleetError, FleetRequest
    from compliance.fleet.run import task_resources
    from compliance.request import BackendSpec

    request = FleetRequest(models=("m",), report=_template(Path("s.sqlite3")), out_dir=Path("out"))
    gpu_cluster = {"CPU": 16.0, "GPU": 8.0}
    assert task_resources(request, gpu_cluster) == {"num_cpus": 1.0, "num_gpus": 1.0}
    assert task_resources(request, {"CPU": 2.0}) == {"num_cpus": 1.0, "num_gpus": 0.0}
    served = replace(request, report=replace(request.report, backend=BackendSpec("openai", base_url="http://x/v1")))
    assert task_resources(served, gpu_cluster) == {"num_cpus": 1.0, "num_gpus": 0.0}
    with pytest.raises(FleetError, match="--gpus-per-model"):
        task_resources(replace(request, gpus_per_model=1), {"CPU": 2.0})
    with pytest.raises(FleetError, match="--cpus-per-model"):
        task_resources(replace(request, cpus_per_model=4), {"CPU": 2.0})


def _one_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("args, words", [
    ([], "no models to evaluate"),
    (["org/a", "--top", "3"], "--finetunes-of"),
    (["--finetunes-of", "org/base", "--relation", "cousin"], "--relation 'cousin'"),
    (["--finetunes-of", "./not-an-id"], "not a Hub model id"),
    (["--models", "no-such-list.txt"], "--models no-such-list.txt cannot be read"),
    (["--finetunes-of", "org/base"], "HF_HUB_OFFLINE=1"),  # the tests run offline
    (["org/a", "--policy", "dental"], "unknown policy 'dental'"),
    (["org/a", "--retries", "-1"], "--retries -1"),
])
def test_bad_fleet_input_is_one_line(args, words, monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(["fleet", *args, "-q", "--out", str(tmp_path / "out")], monkeypatch, capsys)
    assert code == 2
    assert words in _one_line(err)
    assert not (tmp_path / "out" / "fleet.json").exists()


def test_fleet_takes_every_report_option():
    import inspect

    from compliance.cli.evaluate import report
    from compliance.cli.fleet import _NOT_FROM_REPORT, fleet

    fleet_params = inspect.signature(fleet).parameters
    for name, param in inspect.signature(report).parameters.items():
        if name not in _NOT_FROM_REPORT:
            assert fleet_params[name].default is param.default  # the very same typer option
