"""Local lineage: card front matter first, adapter_config.json as a fallback, --base to override."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from compliance.errors import LineageNotFoundError, ModelNotFoundError
from compliance.lineage import resolve_lineage
from compliance.models import load_model, local_record, require_weights, resolve_model_ref


def _clone(src: Path, dst: Path, card: str | None) -> Path:
    shutil.copytree(src, dst)
    (dst / "README.md").unlink(missing_ok=True)
    if card is not None:
        (dst / "README.md").write_text(card)
    return dst


def test_card_base_model_resolves_relative_to_card(tiny_model_dir, tmp_path):
    base = _clone(tiny_model_dir, tmp_path / "base", None)
    ft = _clone(tiny_model_dir, tmp_path / "ft", "---\nbase_model: ../base\nbase_model_relation: finetune\n---\n# ft\n")
    (ft / "extra.safetensors").write_bytes(b"different weights make a different revision")
    lin = resolve_lineage(local_record(ft))
    assert Path(lin.base.path) == base.resolve()
    assert lin.links[0].relation == "finetune"
    assert lin.links[0].source.startswith("README.md front matter")


def test_adapter_config_is_the_fallback(tiny_model_dir, tmp_path):
    base = _clone(tiny_model_dir, tmp_path / "base", None)
    ft = _clone(tiny_model_dir, tmp_path / "ft", "# a card without front matter\n")
    (ft / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(base)}))
    (ft / "extra.safetensors").write_bytes(b"x")
    lin = resolve_lineage(local_record(ft))
    assert lin.links[0].relation == "adapter"
    assert lin.links[0].source == "adapter_config.json: base_model_name_or_path"


def test_relation_inferred_when_card_omits_it(tiny_model_dir, tmp_path):
    base = _clone(tiny_model_dir, tmp_path / "base", None)
    ft = _clone(tiny_model_dir, tmp_path / "ft", f"---\nbase_model: {base}\n---\n")
    (ft / "extra.safetensors").write_bytes(b"x")
    assert resolve_lineage(local_record(ft)).links[0].relation == "finetune"


def test_no_lineage_suggests_base(tiny_model_dir, tmp_path):
    ft = _clone(tiny_model_dir, tmp_path / "ft", "---\nlicense: mit\n---\n")
    with pytest.raises(LineageNotFoundError, match="declares no base model.*--base"):
        resolve_lineage(local_record(ft))


def test_explicit_base_overrides(tiny_model_dir, tmp_path):
    other = _clone(tiny_model_dir, tmp_path / "other", None)
    ft = _clone(tiny_model_dir, tmp_path / "ft", "---\nlicense: mit\n---\n")
    lin = resolve_lineage(local_record(ft), base=str(other))
    assert lin.base.path == str(other.resolve())
    assert lin.links[0].source.startswith("--base")


def test_malformed_front_matter_is_named(tiny_model_dir, tmp_path):
    ft = _clone(tiny_model_dir, tmp_path / "ft", "---\nbase_model: [unclosed\n---\n")
    with pytest.raises(LineageNotFoundError, match="malformed YAML front matter"):
        resolve_lineage(local_record(ft))


def test_merge_of_several_bases_asks_for_base(tiny_model_dir, tmp_path):
    ft = _clone(tiny_model_dir, tmp_path / "ft", "---\nbase_model: [org/a, org/b]\n---\n")
    with pytest.raises(LineageNotFoundError, match="merge of 2 models.*--base"):
        resolve_lineage(local_record(ft))


def test_declared_base_that_does_not_exist(tiny_model_dir, tmp_path):
    ft = _clone(tiny_model_dir, tmp_path / "ft", "---\nbase_model: ./nowhere\n---\n")
    with pytest.raises(ModelNotFoundError, match="'./nowhere' is neither a folder"):
        resolve_lineage(local_record(ft))


def test_local_record_digests_every_weight_file(tiny_model_dir, tmp_path):
    rec = resolve_model_ref(str(tiny_model_dir))
    import hashlib

    for w in rec.weights:
        assert hashlib.sha256((tiny_model_dir / w.path).read_bytes()).hexdigest() == w.sha256
    copy = _clone(tiny_model_dir, tmp_path / "copy", None)
    assert resolve_model_ref(str(copy)).revision == rec.revision  # content, not location


def test_missing_folder_and_folder_without_weights(tmp_path):
    with pytest.raises(ModelNotFoundError, match="neither a folder"):
        resolve_model_ref(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "config.json").write_text("{}")
    record = resolve_model_ref(str(tmp_path / "empty"))  # an ancestor lineage may pass through
    assert record.weights == [] and len(record.revision) == 64
    with pytest.raises(ModelNotFoundError, match="model '.*empty' holds no weight files.*--base"):
        require_weights(record)
    with pytest.raises(ModelNotFoundError, match="holds no weight files"):
        load_model(record)
    (tmp_path / "nocfg").mkdir()
    with pytest.raises(ModelNotFoundError, match="has no config.json"):
        resolve_model_ref(str(tmp_path / "nocfg"))
