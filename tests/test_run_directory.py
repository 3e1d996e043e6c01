"""jaxretrieval.run_directory: every file of a run named in one place, read back as written."""
import ml_collections
import pytest

from jaxretrieval.run_directory import RunDirectory, checkpoints_of


def test_a_run_directory_names_its_files_and_round_trips_them(tmp_path):
    run = RunDirectory(tmp_path / "run")
    assert not run.path.exists()  # nothing is created until something is written
    config = ml_collections.ConfigDict({"method": "csq", "mesh": [("data", -1)], "eval": {"top_k": 5}})
    run.write_config(config)
    restored = run.read_config()
    assert restored.is_locked and restored.eval.top_k == 5 and restored.method == "csq"
    run.write_summary({"image_shape": [8, 8, 1]})
    assert run.read_summary() == {"image_shape": [8, 8, 1]}
    run.write_eval_report({"metrics": {"mAP": 0.5}})
    assert run.read_eval_report()["metrics"] == {"mAP": 0.5}
    names = {path.relative_to(run.path).as_posix() for path in (
        run.config_file, run.summary_file, run.splits_file, run.load_report_file, run.metrics_file,
        run.tensorboard_dir, run.checkpoints_dir, run.eval_metrics_file, run.pr_curve_file, run.retrieval_grid_file,
    )}
    assert names == {
        "config.json", "summary.json", "splits.json", "load_report.jsonl", "metrics.jsonl", "tensorboard",
        "checkpoints", "eval/metrics.json", "eval/pr_curve.png", "eval/retrieval_grid.png",
    }


def test_missing_or_damaged_files_are_named(tmp_path):
    run = RunDirectory(tmp_path)
    with pytest.raises(FileNotFoundError, match="config.json not found: is .* the workdir of a training run"):
        run.read_config()
    run.summary_file.write_text("{not json")
    with pytest.raises(ValueError, match="summary.json: not valid JSON"):
        run.read_summary()


def test_checkpoints_of_accepts_a_run_directory_or_its_checkpoints(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    assert checkpoints_of(tmp_path) == tmp_path / "checkpoints"
    assert checkpoints_of(tmp_path / "checkpoints") == tmp_path / "checkpoints"
