"""Hub lineage and Hub models, against a local Hub-compatible server with the real client."""

from __future__ import annotations

import hashlib
import json

import huggingface_hub.constants as hf_constants
import pytest

from compliance import api
from compliance.errors import (
    HubGatedRepoError,
    HubRepoNotFoundError,
    HubRevisionNotFoundError,
    HubUnreachableError,
    LineageCycleError,
    LineageDepthError,
    LineageNotFoundError,
    MalformedCardError,
    ModelNotFoundError,
    ModelTooLargeError,
)
from compliance.hub import download_model, hub_record, parse_hub_ref
from compliance.lineage import describe_lineage, resolve_lineage
from compliance.models import load_model, resolve_model_ref
from hub_server import HubServer, card, fake_sha, hub, weights  # noqa: F401  (hub is a fixture)
from cli_runner import run_cli

HEX40 = "0123456789abcdef" * 2 + "01234567"


@pytest.fixture(scope="session")
def adapter_dir(tiny_model_dir, tmp_path_factory):
    """A LoRA adapter of the tiny model, saved by peft: adapter_config.json + adapter_model.safetensors."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    peft_model = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    out = tmp_path_factory.mktemp("adapter")
    peft_model.save_pretrained(out)
    cfg = json.loads((out / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = "org/base"
    (out / "adapter_config.json").write_text(json.dumps(cfg))
    (out / "README.md").unlink(missing_ok=True)
    return out


@pytest.fixture
def family(hub, tiny_model_dir, refusing_model_dir):
    """org/base (tiny random) ← org/ft (trained to refuse), plus fake-weight relatives."""
    hub.add_repo("org/base", tiny_model_dir, card=card())
    hub.add_repo("org/ft", refusing_model_dir, card=card("org/base", "finetune", license="mit"))
    return hub




# --- references and pinning ---------------------------------------------------------------


def test_parse_hub_ref():
    assert parse_hub_ref("org/name").revision is None
    ref = parse_hub_ref("org/name@v1.0")
    assert (ref.repo_id, ref.revision) == ("org/name", "v1.0")
    with pytest.raises(ModelNotFoundError, match="org/name@revision"):
        parse_hub_ref("not a model")


def test_record_is_pinned_with_lfs_digests_without_download(family, refusing_model_dir):
    record = resolve_model_ref("org/ft")
    assert record.kind == "hub" and record.revision == fake_sha("org/ft", "main") and record.path == ""
    assert record.license == "mit"
    expected = hashlib.sha256((refusing_model_dir / "model.safetensors").read_bytes()).hexdigest()
    assert [(w.path, w.sha256) for w in record.weights] == [("model.safetensors", expected)]
    assert not any(p.endswith(".safetensors") for m, p in family.requests if m == "GET")


def test_revision_by_branch_and_by_sha(hub):
    hub.add_repo("org/m", weights("main"), card=card())
    v1 = hub.add_repo("org/m", weights("v1"), card=card(), revision="v1")
    assert hub_record("org/m@v1").revision == v1
    assert hub_record(f"org/m@{v1}").weights == hub_record("org/m@v1").weights
    assert hub_record("org/m").revision == fake_sha("org/m", "main") != v1


# --- lineage sources and relations --------------------------------------------------------


def test_finetune_with_card(family):
    info = describe_lineage("org/ft")
    assert [(n["id"], n["relation"], n["confidence"]) for n in info["chain"]] == [
        ("org/ft", "finetune", "high"), ("org/base", None, None)]
    assert all(len(n["revision"]) == 40 for n in info["chain"])
    assert info["base"] == "org/base" and info["parents"] == []


def test_peft_adapter_with_only_adapter_config(hub, tiny_model_dir, adapter_dir):
    hub.add_repo("org/base", tiny_model_dir, card=card())
    hub.add_repo("org/lora", adapter_dir)
    lin = api.resolve("org/lora")
    assert lin.chain[0].relation == "adapter" and lin.chain[0].confidence == "medium"
    assert lin.chain[0].source == "adapter_config.json: base_model_name_or_path"
    assert lin.base.id == "org/base"
    assert lin.model.adapter_base is not None and lin.model.adapter_base.id == "org/base"
    assert [w.path for w in lin.model.weights] == ["adapter_model.safetensors"]
    model, tokenizer = load_model(lin.model)  # downloads both, loads the base, applies and merges the LoRA
    assert type(model).__name__ == "LlamaForCausalLM" and tokenizer is not None


def test_gguf_quantization_of_a_finetune_compares_with_the_finetunes_base(family):
    family.add_repo("org/ft-gguf", {"ft.Q4_K_M.gguf": b"GGUF fake", "ft.Q8_0.gguf": b"GGUF fake 8"},
                    card=card("org/ft"))
    lin = api.resolve("org/ft-gguf")
    assert [n.relation for n in lin.chain] == ["quantized", "finetune", None]  # quantized inferred from files
    assert lin.model.gguf_file == "ft.Q8_0.gguf"
    assert lin.base.id == "org/base" and "skipped 1 quantization step" in lin.base_selection
    assert [(k.child, k.parent) for k in lin.links] == [("org/ft-gguf", "org/ft"), ("org/ft", "org/base")]


def test_quantization_of_a_root_compares_with_the_original(family):
    family.add_repo("org/base-q", weights("q") | {"config.json": json.dumps({"quantization_config": {"bits": 4}})},
                    card=card("org/base"))
    lin = api.resolve("org/base-q")
    assert lin.chain[0].relation == "quantized" and lin.base.id == "org/base"


def test_merge_of_two_finetunes_uses_their_common_ancestor(family):
    family.add_repo("org/ft-a", weights("a"), card=card("org/base"))
    family.add_repo("org/ft-b", weights("b"), card=card("org/base"))
    family.add_repo("org/merged", weights("m"), card=card(["org/ft-a", "org/ft-b"]))
    info = describe_lineage("org/merged")
    assert info["chain"][0]["relation"] == "merge"
    assert [p["id"] for p in info["parents"]] == ["org/ft-a", "org/ft-b"]
    assert info["chain"][0]["parents"] == [f"org/ft-a@{fake_sha('org/ft-a', 'main')}",
                                           f"org/ft-b@{fake_sha('org/ft-b', 'main')}"]
    assert info["base"] == "org/base" and "common ancestor" in info["base_selection"]


def test_merge_without_common_ancestor_asks_for_base(hub):
    hub.add_repo("org/x", weights("x"), card=card())
    hub.add_repo("org/y", weights("y"), card=card())
    hub.add_repo("org/xy", weights("xy"), card=card(["org/x", "org/y"]))
    with pytest.raises(LineageNotFoundError, match="merge of 2 models.*no common ancestor.*--base"):
        api.resolve("org/xy")
    assert describe_lineage("org/xy")["base"] is None
    assert api.resolve("org/xy", base="org/x").base.id == "org/x"


def test_three_level_chain_nearest_and_root(hub):
    hub.add_repo("org/l1", weights("1"), card=card())
    hub.add_repo("org/l2", weights("2"), card=card("org/l1", "finetune"))
    hub.add_repo("org/l3", weights("3"), card=card("org/l2", "finetune"))
    lin = api.resolve("org/l3")
    assert [n.id for n in lin.chain] == ["org/l3", "org/l2", "org/l1"] and lin.base.id == "org/l2"
    root = api.resolve("org/l3", base="root")
    assert root.base.id == "org/l1" and len(root.links) == 2
    explicit = api.resolve("org/l3", base="org/l1@main")
    assert explicit.base.id == "org/l1" and explicit.links[0].source.startswith("--base")
    with pytest.raises(LineageDepthError, match="deeper than 1 levels.*--base"):
        resolve_lineage(hub_record("org/l3"), max_depth=1)


def test_base_models_in_both_shapes(hub):
    hub.add_repo("org/base", weights("base"), card=card())
    hub.add_repo("org/bm-list", weights("l"), base_models=["org/base"])
    hub.add_repo("org/bm-dict", weights("d"), base_models={"relation": "adapter", "models": [{"id": "org/base"}]})
    listed, shaped = api.resolve("org/bm-list"), api.resolve("org/bm-dict")
    assert (listed.chain[0].relation, listed.chain[0].source) == ("finetune", "Hub API: baseModels")
    assert shaped.chain[0].relation == "adapter" and shaped.base.id == "org/base"


def test_config_name_or_path_is_a_low_confidence_hint(hub):
    hub.add_repo("org/base", weights("base"), card=card())
    hub.add_repo("org/hinted", {"config.json": json.dumps({"_name_or_path": "org/base"}),
                                "model.safetensors": b"w"})
    node = api.resolve("org/hinted").chain[0]
    assert node.confidence == "low" and "weak hint" in node.source


# --- errors -------------------------------------------------------------------------------


def test_no_lineage_suggests_base(family):
    with pytest.raises(LineageNotFoundError, match="declares no base model.*--base"):
        api.resolve("org/base")


def test_repo_and_revision_not_found(hub):
    hub.add_repo("org/m", weights("m"), card=card())
    with pytest.raises(HubRepoNotFoundError, match="'org/missing' was not found.*HF_TOKEN"):
        api.resolve("org/missing")
    with pytest.raises(HubRevisionNotFoundError, match="no revision 'nope'"):
        api.resolve("org/m@nope")


def test_malformed_card_yaml(hub):
    hub.add_repo("org/bad", weights("bad"), card="---\nbase_model: [unclosed\n---\n")
    with pytest.raises(MalformedCardError, match="org/bad.*malformed YAML front matter"):
        api.resolve("org/bad")


def test_cycle(hub):
    hub.add_repo("org/a", weights("a"), card=card("org/b"))
    hub.add_repo("org/b", weights("b"), card=card("org/a"))
    with pytest.raises(LineageCycleError, match="loops: org/a → org/b → org/a"):
        api.resolve("org/a")


def test_gated_repo_needs_terms_and_token_to_download(hub, monkeypatch, tiny_model_dir):
    hub.add_repo("org/gated", tiny_model_dir, card=card("org/open"), gated="manual")
    hub.add_repo("org/open", weights("o"), card=card())
    lin = api.resolve("org/gated")  # lineage is metadata: the API's cardData says what the card says
    assert lin.model.gated == "manual" and lin.base.id == "org/open"
    assert lin.chain[0].unreadable == ["README.md", "config.json"] and lin.chain[0].has_weights
    with pytest.raises(HubGatedRepoError, match="gated.*accept its terms.*HF_TOKEN"):
        download_model(lin.model)
    monkeypatch.setenv("HF_TOKEN", "hf_wrong")
    with pytest.raises(HubGatedRepoError, match="HF_TOKEN"):
        download_model(hub_record("org/gated"))
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    from compliance.hub import client

    client._MEMO.clear()
    lin = api.resolve("org/gated")
    assert lin.model.gated == "manual" and lin.chain[0].unreadable == [] and lin.base.id == "org/open"
    assert download_model(lin.model).path


def test_hub_unreachable_suggests_offline_cache(hub, monkeypatch):
    server = HubServer()  # bound, then closed: nothing listens on its port
    server._server.server_close()
    monkeypatch.setattr(hf_constants, "ENDPOINT", server.endpoint)
    with pytest.raises(HubUnreachableError, match="cannot be reached.*HF_HUB_OFFLINE=1.*local model folder"):
        api.resolve("org/anything")


def test_offline_with_warm_cache_resolves_from_cached_cards(family, monkeypatch):
    family.add_repo("org/ft-gguf", {"ft.Q4_K_M.gguf": b"GGUF fake"}, card=card("org/ft"))
    online = describe_lineage("org/ft-gguf")
    seen = len(family.requests)
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    from compliance.hub import client

    client._MEMO.clear()
    assert describe_lineage("org/ft-gguf") == online
    assert len(family.requests) == seen  # nothing asked of the server
    with pytest.raises(HubUnreachableError, match="HF_HUB_OFFLINE=1 is set and 'org/other' is not in the local cache"):
        api.resolve("org/other")


# --- downloads and loading ----------------------------------------------------------------


def test_pickle_only_repo_is_refused_without_allow_pickle(hub, tiny_model_dir):
    hub.add_repo("org/pickled", {"config.json": "{}", "pytorch_model.bin": b"pickle bytes"}, card=card())
    record = hub_record("org/pickled")
    with pytest.raises(ModelNotFoundError, match="pickle.*--allow-pickle"):
        download_model(record)
    assert not any(p.endswith(".bin") for m, p in hub.requests if m == "GET")


def test_download_verifies_digests_and_skips_code(hub, tiny_model_dir):
    hub.add_repo("org/base", tiny_model_dir, card=card(), files={"modeling_evil.py": "raise SystemExit"})
    record = download_model(hub_record("org/base"))
    assert (record.path and not any(p.endswith(".py") for p in __import__("os").listdir(record.path)))
    assert hub.sha("org/base") in record.path


def test_memory_estimate_refuses_what_will_not_fit(family, monkeypatch):
    import compliance.models.memory as memory

    monkeypatch.setattr(memory, "available_bytes", lambda device: 1000)
    with pytest.raises(ModelTooLargeError, match="'org/ft' needs at least .* GiB of RAM"):
        load_model(hub_record("org/ft"))


# --- CLI and end to end -------------------------------------------------------------------


def test_cli_lineage_json_and_tree(family, monkeypatch, capsys):
    code, out, _ = run_cli(["lineage", "org/ft", "--json"], monkeypatch, capsys)
    data = json.loads(out)
    assert code == 0 and data["base"] == "org/base"
    assert [(n["id"], n["revision"], n["relation"], n["confidence"]) for n in data["chain"]] == [
        ("org/ft", fake_sha("org/ft", "main"), "finetune", "high"), ("org/base", fake_sha("org/base", "main"), None, None)]
    code, out, _ = run_cli(["lineage", "org/ft"], monkeypatch, capsys)
    assert code == 0 and "org/base" in out and "comparison base" in out.lower()


def test_cli_errors_are_one_line(hub, monkeypatch, capsys):
    code, _, err = run_cli(["lineage", "org/missing"], monkeypatch, capsys)
    assert code != 0 and "was not found" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) <= 3  # one message, soft-wrapped by the console at most


def test_cli_lineage_still_works_for_local_folders(refusing_model_dir, monkeypatch, capsys):
    code, out, _ = run_cli(["lineage", str(refusing_model_dir), "--json"], monkeypatch, capsys)
    data = json.loads(out)
    assert code == 0 and data["chain"][0]["relation"] == "finetune" and len(data["chain"][0]["revision"]) == 64


def test_report_on_a_hub_finetune(family, refusing_model_dir, tmp_path):
    result = api.run_report("org/ft", out_dir=tmp_path, limit=8, max_new_tokens=4, progress=False, pdf=False)
    report = result.report
    model, base = report["models"]["model"], report["models"]["base"]
    assert (model["kind"], model["id"], model["revision"]) == ("hub", "org/ft", fake_sha("org/ft", "main"))
    assert base["id"] == "org/base" and base["revision"] == fake_sha("org/base", "main")
    digest = hashlib.sha256((refusing_model_dir / "model.safetensors").read_bytes()).hexdigest()
    assert model["weights"][0]["sha256"] == digest
    assert [n["id"] for n in report["lineage"]["chain"]] == ["org/ft", "org/base"]
    assert len(report["items"]) == 8
