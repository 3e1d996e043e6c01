"""jaxretrieval.evaluation.scoring: an index's metrics equal the metrics module's, in any chunking."""
import numpy as np
import pytest

from jaxretrieval import index, metrics, search
from jaxretrieval.evaluation import EvaluationSettings, score_index
from jaxretrieval.evaluation import scoring
from jaxretrieval.training.config import base_config


def _problem(seed=0, num_queries=30, num_database=200, dim=16, num_classes=4):
    rng = np.random.default_rng(seed)
    query = rng.standard_normal((num_queries, dim)).astype(np.float32)
    database = rng.standard_normal((num_database, dim)).astype(np.float32)
    query_labels = np.eye(num_classes)[rng.integers(0, num_classes, num_queries)]
    database_labels = np.eye(num_classes)[rng.integers(0, num_classes, num_database)]
    return query, database, query_labels, database_labels


def test_settings_come_from_the_eval_section():
    config = base_config("csq")
    settings = EvaluationSettings.from_config(config)
    assert settings.top_k == config.eval.top_k and settings.batch_size == config.eval_batch_size
    assert settings.cut_off(100) is None and EvaluationSettings(top_k=10).cut_off(100) == 10
    assert EvaluationSettings(top_k=100).cut_off(100) is None


def test_hamming_scores_are_the_metrics_of_the_sign_codes():
    query, database, query_labels, database_labels = _problem()
    settings = EvaluationSettings(top_k=50, precision_at=20, radius=3, grid_results=5)
    evaluation = score_index(index.HammingIndex(16), query, database, query_labels, database_labels, settings, prefix="x_")
    arguments = (query, database, query_labels, database_labels)
    _, ranked = metrics.hamming_ranking(query, database, top_k=20)
    expected = {
        "x_mAP@50": metrics.mean_average_precision(*arguments, top_k=50),
        "x_mAP": metrics.mean_average_precision(*arguments),
        "x_tie_aware_mAP@50": metrics.mean_average_precision(*arguments, top_k=50, tie_aware=True),
        "x_precision@20": metrics.precision_at_k(ranked, query_labels, database_labels, k=20),
        "x_precision_within_radius_3": metrics.precision_within_radius(*arguments, radius=3),
    }
    assert evaluation.metrics == expected and list(evaluation.metrics) == list(expected)
    np.testing.assert_array_equal(evaluation.top_indices, ranked[:, :5])
    precision, recall = metrics.precision_recall_curve(*arguments)
    np.testing.assert_array_equal(evaluation.pr_curve[0], recall)
    np.testing.assert_array_equal(evaluation.pr_curve[1], precision)


@pytest.mark.parametrize("top_k", [0, 40])
def test_ranked_scores_equal_the_full_ranking_in_any_chunking(top_k, monkeypatch):
    query, database, query_labels, database_labels = _problem(1)
    settings = EvaluationSettings(top_k=top_k, precision_at=15, grid_results=4)
    scores = []
    for chunk_entries in (1 << 24, 200 * 3):  # one chunk; three queries per chunk
        monkeypatch.setattr(scoring, "_CHUNK_ENTRIES", chunk_entries)
        scores.append(score_index(index.FlatIndex(16, metric="cosine"), query, database, query_labels, database_labels, settings))
    assert scores[0].metrics == pytest.approx(scores[1].metrics, abs=1e-12)
    np.testing.assert_allclose(scores[0].pr_curve, scores[1].pr_curve, atol=1e-12)
    _, ranked = search.cosine_knn(query, database, 200)
    ranked = np.asarray(ranked)
    name = "mAP" if top_k == 0 else f"mAP@{top_k}"
    assert scores[0].metrics[name] == pytest.approx(
        metrics.ranked_mean_average_precision(ranked, query_labels, database_labels, top_k=top_k or None), abs=1e-12
    )
    assert scores[0].metrics["precision@15"] == pytest.approx(
        metrics.precision_at_k(ranked, query_labels, database_labels, k=15), abs=1e-12
    )
    np.testing.assert_array_equal(scores[1].top_indices, ranked[:, :4])
    recall = scores[0].pr_curve[0]
    assert np.all(np.diff(recall) >= 0) and recall[-1] <= 1.0


def test_pq_scores_rank_by_the_asymmetric_distance():
    query, database, query_labels, database_labels = _problem(2)
    codebooks = np.random.default_rng(3).standard_normal((4, 8, 4)).astype(np.float32)
    settings = EvaluationSettings(top_k=30, precision_at=10)
    evaluation = score_index(index.PQIndex(codebooks), query, database, query_labels, database_labels, settings)
    _, ranked = search.pq_knn(query, search.pq_encode(database, codebooks), codebooks, 30)
    assert evaluation.metrics["mAP@30"] == pytest.approx(
        metrics.ranked_mean_average_precision(np.asarray(ranked), query_labels, database_labels), abs=1e-12
    )


def test_score_index_takes_an_empty_index():
    query, database, query_labels, database_labels = _problem()
    full = index.HammingIndex(16)
    full.add(database)
    with pytest.raises(ValueError, match="takes an empty index"):
        score_index(full, query, database, query_labels, database_labels, EvaluationSettings())
