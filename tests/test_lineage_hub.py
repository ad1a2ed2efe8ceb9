"""Lineage is metadata: chains of Hub repositories whose ancestors hold no weights, are gated, merge or loop.

Every chain is served by the local Hub server to the real ``huggingface_hub`` client. Only the
two models a report evaluates need weight files; each ancestor records what is visible of it.
"""

from __future__ import annotations

import json

import huggingface_hub.constants as hf_constants
import pytest

from compliance import api
from compliance.errors import HubRepoNotFoundError, LineageCycleError, LineageNotFoundError, ModelNotFoundError
from compliance.hub import client
from compliance.lineage import describe_lineage
from cli_runner import run_cli
from hub_server import card, fake_sha, hub, metadata_only, weights  # noqa: F401  (hub is a fixture)


def shape(info: dict) -> list[tuple]:
    """``(id, relation, has_weights, gated)`` of each chain element."""
    return [(n["id"], n["relation"], n["has_weights"], n["gated"]) for n in info["chain"]]


@pytest.fixture
def meta_chain(hub):
    """org/ft (weights) ← org/instruct (card + config) ← org/pretrained (config only, the root)."""
    hub.add_repo("org/pretrained", metadata_only("pretrained"))
    hub.add_repo("org/instruct", metadata_only("instruct"), card=card("org/pretrained", "finetune"))
    hub.add_repo("org/ft", weights("ft"), card=card("org/instruct", "finetune"))
    return hub


# --- chains through metadata-only ancestors -----------------------------------------------


def test_metadata_only_ancestors_are_followed_to_the_root(meta_chain):
    info = describe_lineage("org/ft")
    assert shape(info) == [("org/ft", "finetune", True, None), ("org/instruct", "finetune", False, None),
                           ("org/pretrained", None, False, None)]
    assert info["chain"][1]["files"] == ["README.md", "config.json"]
    assert info["chain"][2]["files"] == ["config.json"] and info["chain"][2]["unreadable"] == []
    assert [n["revision"] for n in info["chain"]] == [fake_sha(r, "main") for r in
                                                       ("org/ft", "org/instruct", "org/pretrained")]
    assert info["base"] == "org/instruct"
    assert describe_lineage("org/ft", base="root")["base"] == "org/pretrained"


def test_a_metadata_only_model_has_a_lineage_but_no_report(meta_chain, monkeypatch, capsys, tmp_path):
    code, out, _ = run_cli(["lineage", "org/instruct", "--json"], monkeypatch, capsys)
    assert code == 0 and json.loads(out)["base"] == "org/pretrained"
    code, out, err = run_cli(["report", "org/instruct", "--out", str(tmp_path / "r"), "--no-pdf"], monkeypatch, capsys)
    assert code == 2 and "Traceback" not in err
    assert "model 'org/instruct' at" in err and "holds no weight files" in err
    assert not (tmp_path / "r").exists()


def test_report_refuses_a_metadata_only_base_in_one_line(meta_chain, tiny_model_dir, monkeypatch, capsys):
    with pytest.raises(ModelNotFoundError, match="comparison base 'org/instruct' at .* holds no weight files.*--base$"):
        api.run_report("org/ft", progress=False, pdf=False, store=False)
    meta_chain.add_repo("org/pretrained", tiny_model_dir)  # the root now has weights: the message names it
    client._MEMO.clear()
    code, _, err = run_cli(["report", "org/ft", "--no-pdf"], monkeypatch, capsys)
    assert code == 2 and len(err.strip().splitlines()) <= 4 and "Traceback" not in err
    err = " ".join(err.split())
    assert "holds no weight files" in err and "nearest ancestor with weights is 'org/pretrained'" in err


def test_cli_tree_marks_metadata_only_ancestors(meta_chain, monkeypatch, capsys):
    code, out, _ = run_cli(["lineage", "org/ft"], monkeypatch, capsys)
    text = " ".join(out.split())
    assert code == 0 and text.count("metadata only, no weights") == 2
    assert "The comparison base has no weight files" in text


def test_an_ancestor_known_only_from_the_hubs_base_models(hub):
    hub.add_repo("org/root", {})  # no files at all: the Hub still knows it
    hub.add_repo("org/mid", {}, base_models={"relation": "finetune", "models": [{"id": "org/root"}]})
    hub.add_repo("org/ft", weights("ft"), base_models=["org/mid"])
    info = describe_lineage("org/ft")
    assert shape(info) == [("org/ft", "finetune", True, None), ("org/mid", "finetune", False, None),
                           ("org/root", None, False, None)]
    assert info["chain"][1]["files"] == [] and info["chain"][1]["source"] == "Hub API: baseModels"


def test_a_long_metadata_only_chain_and_the_depth_limit(hub):
    hub.add_repo("org/m0", metadata_only("0"))
    for i in range(1, 8):
        hub.add_repo(f"org/m{i}", metadata_only(str(i)), card=card(f"org/m{i - 1}"))
    hub.add_repo("org/ft", weights("ft"), card=card("org/m7"))
    info = describe_lineage("org/ft")
    assert [n["id"] for n in info["chain"]] == ["org/ft"] + [f"org/m{i}" for i in range(7, -1, -1)]
    assert [n["has_weights"] for n in info["chain"]] == [True] + [False] * 8
    with pytest.raises(LineageNotFoundError, match="deeper than 3 levels"):
        describe_lineage("org/ft", max_depth=3)


def test_a_local_fine_tune_of_a_metadata_only_hub_model(hub, tiny_model_dir, tmp_path):
    import shutil

    hub.add_repo("org/meta", metadata_only("meta"), card=card())
    ft = tmp_path / "ft"
    shutil.copytree(tiny_model_dir, ft)
    (ft / "README.md").write_text(card("org/meta", "finetune"))
    info = describe_lineage(str(ft))
    assert [(n["kind"], n["has_weights"]) for n in info["chain"]] == [("local", True), ("hub", False)]
    assert "model.safetensors" in info["chain"][0]["files"] and info["base"] == "org/meta"


# --- gated ancestors ----------------------------------------------------------------------


def test_a_gated_ancestor_without_a_token_does_not_end_the_chain(hub):
    hub.add_repo("org/root", weights("root"), card=card())
    hub.add_repo("org/gated", weights("gated"), card=card("org/root", "finetune"), gated="manual")
    hub.add_repo("org/ft", weights("ft"), card=card("org/gated", "finetune"))
    info = describe_lineage("org/ft")
    assert shape(info) == [("org/ft", "finetune", True, None), ("org/gated", "finetune", True, "manual"),
                           ("org/root", None, True, None)]
    gated = info["chain"][1]
    assert gated["unreadable"] == ["README.md", "config.json"] and "model.safetensors" in gated["files"]
    assert gated["source"] == "model card: base_model" and info["base"] == "org/gated"


def test_gated_tree_and_token(hub, monkeypatch, capsys):
    hub.add_repo("org/root", weights("root"), card=card())
    hub.add_repo("org/gated", weights("gated"), card=card("org/root"), gated="auto")
    code, out, _ = run_cli(["lineage", "org/gated"], monkeypatch, capsys)
    text = " ".join(out.split())
    assert code == 0 and "gated: auto" in text and "no access to README.md, config.json" in text
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    client._MEMO.clear()
    info = describe_lineage("org/gated")
    assert info["chain"][0]["gated"] == "auto" and info["chain"][0]["unreadable"] == []


def test_a_gated_ancestor_known_through_base_models(hub):
    hub.add_repo("org/root", metadata_only("root"))
    hub.add_repo("org/gated", {"config.json": "{}"}, card="---\nlicense: other\n---\n", gated="manual",
                 base_models=["org/root"])
    hub.add_repo("org/ft", weights("ft"), card=card("org/gated"))
    info = describe_lineage("org/ft")
    assert [n["id"] for n in info["chain"]] == ["org/ft", "org/gated", "org/root"]
    assert info["chain"][1]["source"] == "Hub API: baseModels" and info["chain"][1]["license"] == "other"


def test_a_gated_adapter_is_still_an_adapter(hub):
    hub.add_repo("org/root", weights("root"), card=card())
    hub.add_repo("org/lora", {"adapter_config.json": json.dumps({"base_model_name_or_path": "org/root"}),
                              "adapter_model.safetensors": b"lora"}, card=card("org/root"), gated="manual")
    info = describe_lineage("org/lora")
    assert info["chain"][0]["relation"] == "adapter"  # from the listing: adapter_config.json is refused
    assert info["chain"][0]["unreadable"] == ["README.md", "adapter_config.json"]


def test_gated_lineage_resolves_offline_from_the_warm_cache(hub, monkeypatch):
    hub.add_repo("org/root", metadata_only("root"))
    hub.add_repo("org/gated", metadata_only("gated"), card=card("org/root"), gated="manual")
    hub.add_repo("org/ft", weights("ft"), card=card("org/gated"))
    online = describe_lineage("org/ft")
    seen = len(hub.requests)
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    client._MEMO.clear()
    assert describe_lineage("org/ft") == online and len(hub.requests) == seen


# --- merges -------------------------------------------------------------------------------


def test_a_merge_of_weightless_parents_finds_their_common_ancestor(hub):
    hub.add_repo("org/root", metadata_only("root"))
    hub.add_repo("org/a", metadata_only("a"), card=card("org/root"))
    hub.add_repo("org/b", metadata_only("b"), card=card("org/root"))
    hub.add_repo("org/merged", weights("m"), card=card(["org/a", "org/b"], "merge"))
    info = describe_lineage("org/merged")
    assert info["base"] == "org/root" and "common ancestor" in info["base_selection"]
    assert [(p["id"], [n["has_weights"] for n in p["chain"]]) for p in info["parents"]] == [
        ("org/a", [False, False]), ("org/b", [False, False])]
    with pytest.raises(ModelNotFoundError, match="comparison base 'org/root'.*holds no weight files"):
        api.run_report("org/merged", progress=False, pdf=False, store=False)


def test_a_merge_whose_parents_reach_the_ancestor_at_different_depths(hub):
    hub.add_repo("org/root", weights("root"), card=card())
    hub.add_repo("org/a", metadata_only("a"), card=card("org/root"))
    hub.add_repo("org/b1", metadata_only("b1"), card=card("org/root"))
    hub.add_repo("org/b2", metadata_only("b2"), card=card("org/b1"), gated="manual")
    hub.add_repo("org/merged", weights("m"), card=card(["org/a", "org/b2"]))
    lineage = api.resolve("org/merged")
    assert lineage.base.id == "org/root" and lineage.base.weights
    assert [n.id for n in lineage.chain] == ["org/merged", "org/root"]
    assert lineage.chain[0].relation == "merge" and len(lineage.chain[0].parents) == 2


def test_a_merge_without_a_common_ancestor_still_describes_its_parents(hub):
    hub.add_repo("org/x", metadata_only("x"))
    hub.add_repo("org/y", {}, gated="manual")
    hub.add_repo("org/xy", weights("xy"), card=card(["org/x", "org/y"]))
    info = describe_lineage("org/xy")
    assert info["base"] is None and "no common ancestor" in info["base_error"]
    assert [(p["id"], p["chain"][0]["has_weights"], p["chain"][0]["gated"]) for p in info["parents"]] == [
        ("org/x", False, None), ("org/y", False, "manual")]


# --- adapters and quantizations -----------------------------------------------------------


def test_an_adapter_on_a_metadata_only_base_traces_but_cannot_be_evaluated(hub):
    hub.add_repo("org/meta", metadata_only("meta"), card=card())
    hub.add_repo("org/lora", {"adapter_config.json": json.dumps({"base_model_name_or_path": "org/meta"}),
                              "adapter_model.safetensors": b"lora"})
    lineage = api.resolve("org/lora")
    assert lineage.chain[0].relation == "adapter" and lineage.model.adapter_base.id == "org/meta"
    with pytest.raises(ModelNotFoundError, match="base of adapter 'org/lora', the model 'org/meta'.*no weight files"):
        api.run_report("org/lora", progress=False, pdf=False, store=False)


def test_a_quantization_of_a_metadata_only_fine_tune_compares_with_the_fine_tunes_base(hub):
    hub.add_repo("org/base", weights("base"), card=card())
    hub.add_repo("org/ft", metadata_only("ft"), card=card("org/base", "finetune"))
    hub.add_repo("org/ft-gguf", {"ft.Q4_K_M.gguf": b"GGUF fake"}, card=card("org/ft"))
    lineage = api.resolve("org/ft-gguf")
    assert [(n.relation, n.has_weights) for n in lineage.chain] == [("quantized", True), ("finetune", False),
                                                                    (None, True)]
    assert lineage.base.id == "org/base" and "skipped 1 quantization step" in lineage.base_selection


# --- cycles and missing repositories ------------------------------------------------------


def test_a_cycle_through_metadata_only_repos(hub):
    hub.add_repo("org/a", metadata_only("a"), card=card("org/b"))
    hub.add_repo("org/b", metadata_only("b"), card=card("org/c"))
    hub.add_repo("org/c", metadata_only("c"), card=card("org/a"))
    with pytest.raises(LineageCycleError, match="loops: org/a → org/b → org/c → org/a"):
        describe_lineage("org/a")


def test_a_missing_ancestor_is_named_with_the_model_that_names_it(meta_chain, monkeypatch, capsys):
    meta_chain.add_repo("org/orphan", metadata_only("orphan"), card=card("org/deleted"))
    meta_chain.add_repo("org/ft2", weights("ft2"), card=card("org/orphan"))
    with pytest.raises(HubRepoNotFoundError, match="'org/orphan' names 'org/deleted' as its base "
                                                   r"\(model card: base_model\), but model 'org/deleted' was not found"):
        describe_lineage("org/ft2")
    code, _, err = run_cli(["lineage", "org/ft2"], monkeypatch, capsys)
    assert code == 2 and "Traceback" not in err and "org/deleted" in err


def test_a_base_pinned_to_a_missing_revision(hub):
    hub.add_repo("org/base", metadata_only("base"))
    hub.add_repo("org/ft", weights("ft"), card=card("org/base@v9"))
    with pytest.raises(ModelNotFoundError, match="'org/ft' names 'org/base@v9' as its base.*no revision 'v9'"):
        describe_lineage("org/ft")
