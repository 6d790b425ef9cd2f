"""Cache keys and the cache index, without a kernel."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from nbtools.runner.cache import CacheIndex, code_hash, environment_fingerprint, stage_key

NOTEBOOKS = Path(__file__).parents[1] / "notebooks"


def _key(parameters: dict[str, int], inputs: dict[str, dict[str, str]], code: str = "c"):
    return stage_key(
        "train", code=code, parameters=parameters, input_hashes=inputs, environment="env"
    )


def test_code_hash_ignores_outputs_and_markdown_but_not_code(tmp_path: Path) -> None:
    source = NOTEBOOKS / "produce.ipynb"
    nb = json.loads(source.read_text())
    before = code_hash(source)
    nb["cells"][1]["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "hi"}]
    nb["cells"][1]["execution_count"] = 7
    nb["cells"][0]["source"] = ["Another description."]
    (tmp_path / "a.ipynb").write_text(json.dumps(nb))
    assert code_hash(tmp_path / "a.ipynb") == before
    nb["cells"][-1]["source"].append("\nprint('more')")
    (tmp_path / "b.ipynb").write_text(json.dumps(nb))
    assert code_hash(tmp_path / "b.ipynb") != before


def test_a_key_names_the_parts_that_changed() -> None:
    key = _key({"C": 1}, {"split": {"train.parquet": "sha256:1"}})
    assert key.digest == _key({"C": 1}, {"split": {"train.parquet": "sha256:1"}}).digest
    assert key.changed_since(_key({"C": 2}, {"split": {"train.parquet": "sha256:1"}}).parts) == [
        "parameters"
    ]
    other = _key({"C": 1}, {"split": {"train.parquet": "sha256:2"}}, code="d")
    assert key.changed_since(other.parts) == ["code", "inputs"]
    assert key.changed_since(None) == []
    assert len(environment_fingerprint()) == 64


def test_the_index_returns_a_stored_record_while_its_outputs_exist(tmp_path: Path) -> None:
    index = CacheIndex(tmp_path)
    key = _key({"C": 1}, {})
    outputs = tmp_path / "runs" / "r1" / "05_train"
    outputs.mkdir(parents=True)
    assert index.lookup(key) is None and index.latest_parts("train") is None

    index.store(key, {"run_id": "r1", "output_dir": str(outputs)})
    assert index.lookup(key) == {"run_id": "r1", "output_dir": str(outputs)}
    assert index.latest_parts("train") == key.parts
    shutil.rmtree(outputs)
    assert index.lookup(key) is None


def test_sources_and_registry_are_parts_of_the_key_and_named_when_they_change() -> None:
    def key(sources: dict[str, str], registry: dict[str, object] | None):
        return stage_key(
            "ingest",
            code="c",
            parameters={},
            input_hashes={},
            environment="env",
            sources=sources,
            registry=registry,
        )

    base = key({"source": "sha-a"}, {"champion": None})
    assert key({"source": "sha-b"}, {"champion": None}).changed_since(base.parts) == ["source"]
    champion = {"champion": {"version": "2", "run_id": "r"}}
    moved = key({"source": "sha-a"}, champion)
    assert moved.changed_since(base.parts) == ["registry"]
    assert base.with_registry(champion).digest == moved.digest


def test_the_index_knows_the_record_of_a_stages_newest_execution(tmp_path: Path) -> None:
    index = CacheIndex(tmp_path)
    outputs = tmp_path / "out"
    outputs.mkdir()
    assert index.latest_record("train") is None
    index.store(_key({"C": 1}, {}), {"run_id": "r1", "output_dir": str(outputs)})
    index.store(_key({"C": 2}, {}), {"run_id": "r2", "output_dir": str(outputs)})
    assert index.latest_record("train") == {"run_id": "r2", "output_dir": str(outputs)}
    assert index.latest_parts("train") == _key({"C": 2}, {}).parts
