"""The reproduction-study harness (studies/reproduce.py, studies/study_configs.py), at tiny size."""
import json
import subprocess
import sys
import types

import numpy as np
import pytest

from studies import reproduce, study_configs

DATA_ROOT = "/path/to/cifar10"  # configs only: nothing is read

SHARED_SETTINGS = (
    "model.backbone", "model.width", "model.dtype", "data.protocol", "data.seed", "data.image_size",
    "batch_size", "num_steps", "eval.top_k", "eval.precision_at", "seed",
)


def _value(config, dotted: str):
    for key in dotted.split("."):
        config = config[key]
    return config


@pytest.mark.parametrize("budget", ["cpu20", "gpu"])
def test_every_comparison_gives_its_methods_the_same_backbone_and_budget(budget):
    expected_methods = {
        "supervised": ["csq", "pairwise", "triplet"],
        "unsupervised": ["spq", "lsh", "lsh", "itq", "itq"],
        "listwise": ["map_q", "triplet"],
    }
    for study, methods in expected_methods.items():
        protocols = ("II",) if study == "unsupervised" else ("I", "II")
        runs = study_configs.study_runs(study, protocols=protocols, seeds=(0, 1), budget=budget, data_root=DATA_ROOT)
        assert len(runs) == 3 * len(protocols) * 2 * len(methods)
        assert len({run.name for run in runs}) == len(runs)
        comparisons = {}
        for run in runs:
            comparisons.setdefault((run.num_bits, run.protocol, run.seed), []).append(run)
        for (num_bits, protocol, seed), group in comparisons.items():
            assert [run.method for run in group] == methods
            for setting in SHARED_SETTINGS:
                assert len({_value(run.config, setting) for run in group}) == 1, (study, setting)
            config = group[0].config
            assert config.data.root == DATA_ROOT
            assert config.data.protocol == {"I": "cifar10_I", "II": "cifar10_II"}[protocol]
            assert config.eval.top_k == (0 if protocol == "I" else 1000)  # I: mAP over all; II: mAP@1000
            assert config.seed == config.data.seed == seed
            assert config.num_steps == study_configs.BUDGETS[budget].steps[study]
            trained = [run for run in group if run.kind == "trained"]
            assert all(not run.config.evaluate_at_end for run in trained)
            if study == "supervised":
                assert {run.config.model.num_bits for run in group} == {num_bits}
            elif study == "listwise":
                assert group[0].config.model.descriptor_dim == group[1].config.model.num_bits == num_bits
            else:
                pq = config.model
                assert pq.pq_num_books * np.log2(pq.pq_num_words) == num_bits


def test_study_runs_reject_what_the_study_does_not_define():
    with pytest.raises(ValueError, match="protocol II only"):
        study_configs.study_runs("unsupervised", protocols=("I",), data_root=DATA_ROOT)
    with pytest.raises(ValueError, match="bits must be among"):
        study_configs.study_runs("supervised", bits=(48,), data_root=DATA_ROOT)
    with pytest.raises(ValueError, match=r"methods \['spq'\] are not in the supervised study"):
        study_configs.study_runs("supervised", methods=("spq",), data_root=DATA_ROOT)
    with pytest.raises(ValueError, match="budget must be one of"):
        study_configs.study_runs("supervised", budget="tiny", data_root=DATA_ROOT)
    with pytest.raises(TypeError, match="data_root"):
        study_configs.study_runs("supervised")  # no default data path


def test_running_a_study_without_data_root_is_an_argparse_error():
    completed = subprocess.run(
        [sys.executable, "-m", "studies.reproduce", "--study", "supervised"],
        cwd=study_configs.REPO_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 2, completed.stderr
    assert "usage:" in completed.stderr and "--data-root is required" in completed.stderr


@pytest.mark.parametrize("method", ["map_q", "triplet"])
def test_listwise_cosine_metrics_match_hand_computed_values(method):
    query = np.array([[1.0, 0.0], [0.0, 2.0]])
    database = np.array([[1.0, 0.1], [0.0, 1.0], [1.0, -0.5], [-1.0, 0.0]])
    if method == "triplet":  # the harness ranks tanh(logits): feed the logits whose tanh are these
        query, database = np.arctanh(0.4 * query), np.arctanh(0.4 * database)
    query_labels = np.eye(2)[[0, 1]]
    database_labels = np.eye(2)[[0, 0, 1, 1]]
    # Query 0 ranks 0 (+), 2, 1 (+), 3: AP = (1 + 2/3) / 2, AP@2 = 1, P@2 = 1/2.
    # Query 1 ranks 1, 0, 3 (+), 2 (+): AP = (1/3 + 2/4) / 2, AP@2 = 0, P@2 = 0.
    expected = {"cosine_mAP": 0.625, "cosine_mAP@2": 0.5, "cosine_precision@2": 0.25}
    spec = types.SimpleNamespace(method=method)
    evaluation = types.SimpleNamespace(metrics={})  # the method's own (Hamming) metrics: none here
    settings = reproduce.EvaluationSettings(top_k=2, precision_at=2, grid_results=2)
    results = reproduce._listwise_metrics(
        spec, evaluation, reproduce.Encoded(query, query_labels, np.arange(2)),
        reproduce.Encoded(database, database_labels, np.arange(4)), settings,
    )
    assert results == pytest.approx(expected, abs=1e-6)
    # Protocol I (top_k = 0): mAP and precision over the whole database, no mAP@k.
    whole = reproduce._listwise_metrics(
        spec, evaluation, reproduce.Encoded(query, query_labels, np.arange(2)),
        reproduce.Encoded(database, database_labels, np.arange(4)), reproduce.EvaluationSettings(top_k=0, precision_at=2),
    )
    assert whole == pytest.approx({"cosine_mAP": 0.625, "cosine_precision@2": 0.25}, abs=1e-6)


def test_mean_and_spread_is_mean_and_sample_standard_deviation():
    assert reproduce.mean_and_spread([0.5, 0.6]) == "0.550 ± 0.071 (n=2)"
    assert reproduce.mean_and_spread([0.25]) == "0.250 (n=1)"


def test_tiny_study_runs_end_to_end_skips_done_runs_and_renders_the_report(cifar10_root, tmp_path):
    out = tmp_path / "study"
    common = ["--bits", "16", "--protocol", "II", "--seeds", "0", "--tiny", "--data-root", str(cifar10_root), "--out", str(out)]
    reproduce.main(["--study", "supervised", "--methods", "csq", *common])
    reproduce.main(["--study", "unsupervised", "--methods", "itq", *common])
    records = reproduce.read_records(out)
    assert [record["name"] for record in records] == [
        "supervised-csq-16b-II-s0-tiny-cpu20",
        "unsupervised-itq_pixels-16b-II-s0-tiny-cpu20",
        "unsupervised-itq_backbone-16b-II-s0-tiny-cpu20",
    ]
    tiny = study_configs.TINY_IMAGES_PER_CLASS
    for record in records:
        assert record["tiny"] and record["budget"] == "tiny-cpu20"
        assert (record["num_queries"], record["num_database"]) == (10 * tiny["test"], 10 * tiny["train"])
        assert {"mAP@50", "mAP", "tie_aware_mAP@50", "precision@20", "precision_within_radius_2"} == set(record["metrics"])
        assert all(0.0 <= value <= 1.0 for value in record["metrics"].values())
        assert record["train_seconds"] > 0 and record["hardware"]["cpu_count"] >= 1
        assert "--tiny" in record["command"] and f"--study {record['study']}" in record["command"]
        assert record["command"].startswith("python -m studies.reproduce ") and record["data_root"] == str(cifar10_root)
    assert records[0]["num_steps"] == study_configs.BUDGETS["tiny"].steps["supervised"]
    assert records[1]["num_fit_examples"] == 10 * tiny["train"]

    reproduce.main(["--study", "supervised", "--methods", "csq", *common])  # already done: skipped
    assert len(reproduce.read_records(out)) == 3

    # --reevaluate scores a finished run again without training: same metrics, training fields kept.
    stale = [dict(records[0], metrics={name: 0.0 for name in records[0]["metrics"]})] + records[1:]
    (out / reproduce.RESULTS_FILENAME).write_text("".join(json.dumps(record) + "\n" for record in stale))
    reproduce.main(["--study", "supervised", "--methods", "csq", "--reevaluate", *common])
    rescored = reproduce.read_records(out)
    assert rescored[0]["metrics"] == records[0]["metrics"]
    assert rescored[0]["reevaluated"]["previous_metrics"] == stale[0]["metrics"]
    assert rescored[0]["train_seconds"] == records[0]["train_seconds"] and rescored[1:] == records[1:]
    with pytest.raises(ValueError, match="classic hashes are refitted"):
        reproduce.main(["--study", "unsupervised", "--methods", "itq", "--reevaluate", *common])
    (out / reproduce.RESULTS_FILENAME).write_text("".join(json.dumps(record) + "\n" for record in records))

    doc = tmp_path / "docs" / "results.md"
    doc.parent.mkdir()
    doc.write_text("# Results\n\nHand-written design.\n")
    reproduce.main(["--report", "--out", str(out), "--doc", str(doc)])
    text = doc.read_text()
    assert text.startswith("# Results\n\nHand-written design.\n")
    assert text.count("TINY SMOKE RUN") == 2
    assert "--methods csq --tiny`" in text and "--methods itq --tiny`" in text  # each table's exact command
    # The report names no machine's folder: a placeholder stands for the recorded data root.
    assert "`python -m studies.reproduce --study supervised " in text and str(cifar10_root) not in text
    assert text.count(f"--data-root {reproduce.DATA_ROOT_PLACEHOLDER} ") == 2
    assert "**NOT YET RUN** on CPU at 16 bits: pairwise, triplet." in text
    assert "**NOT YET RUN** on CPU at 16 bits: spq, lsh (pixels), lsh (backbone)." in text
    assert "Studies with no run recorded: listwise: **NOT YET RUN**." in text
    assert "| 16 | csq | 0." in text and "| 16 | itq (backbone) | 0." in text and "| 16 | itq (pixels) | 0." in text
    for stem in ("supervised_II_tiny-cpu20_16b", "unsupervised_II_tiny-cpu20_16b"):
        for suffix in ("pr", "grid"):
            path = doc.parent / "results" / f"{stem}_{suffix}.png"
            assert path.read_bytes()[:4] == b"\x89PNG"
            assert f"(results/{stem}_{suffix}.png)" in text
    reproduce.main(["--report", "--out", str(out), "--doc", str(doc)])
    assert doc.read_text() == text  # the generated section is replaced, not appended

    # The archive (records + saved evaluations, no checkpoints) renders the same report.
    archive = tmp_path / "archive"
    reproduce.main(["--archive", str(archive), "--out", str(out)])
    reproduce.main(["--archive", str(archive), "--out", str(out)])  # again: nothing changes
    assert not list(archive.rglob("checkpoints"))
    assert [record["name"] for record in reproduce.read_records(archive)] == [r["name"] for r in records]
    reproduce.main(["--report", "--out", str(archive), "--doc", str(doc)])
    assert doc.read_text() == text
    altered = dict(records[0], metrics={"mAP@50": 0.0})
    with open(out / reproduce.RESULTS_FILENAME, "a") as results:
        results.write(json.dumps(altered) + "\n")
    with pytest.raises(ValueError, match="with other contents"):
        reproduce.archive_records(out, archive)
    (out / reproduce.RESULTS_FILENAME).write_text(
        "".join(json.dumps(record) + "\n" for record in records)
    )

    # A second results directory (e.g. runs merged from a GPU machine) gets its own section per hardware.
    gpu_out = tmp_path / "study_gpu"
    gpu_out.mkdir()
    gpu_record = dict(records[0], hardware=dict(records[0]["hardware"], platform="gpu", device_kind="Test GPU"))
    (gpu_out / reproduce.RESULTS_FILENAME).write_text(json.dumps(gpu_record) + "\n")
    reproduce.main(["--report", "--out", f"{out},{gpu_out}", "--doc", str(doc)])
    merged = doc.read_text()
    assert "### supervised, protocol II, budget tiny-cpu20, on Test GPU" in merged
    assert "### supervised, protocol II, budget tiny-cpu20, on CPU" in merged
    assert "**NOT YET RUN** on Test GPU at 16 bits: pairwise, triplet." in merged
    with pytest.raises(ValueError, match="recorded twice"):
        reproduce.main(["--report", "--out", f"{out},{out}", "--doc", str(doc)])


def test_an_interrupted_training_is_neither_evaluated_nor_recorded(monkeypatch, tmp_path):
    """The trainer stops early on SIGTERM; the study must not score that partial model as the budget's."""
    spec = study_configs.study_runs("supervised", bits=[16], seeds=[0], tiny=True, methods=["csq"],
                                    data_root=str(tmp_path))[0]
    monkeypatch.setattr(reproduce, "train_and_evaluate", lambda config, workdir: None)
    stopped_early = types.SimpleNamespace(step=spec.config.num_steps - 1)
    monkeypatch.setattr(reproduce, "restore_trained_model", lambda workdir: stopped_early)
    with pytest.raises(RuntimeError, match=f"stopped at step {spec.config.num_steps - 1} of {spec.config.num_steps}"):
        reproduce.run_trained(spec, tmp_path / spec.name)
