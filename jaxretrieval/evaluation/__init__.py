"""Evaluation: encode images with a trained model, score the method's retrieval, draw the figures.

- :mod:`.encoder`: images -> representations on the run's mesh;
- :mod:`.scoring`: one index's metrics (Hamming codes, PQ codes, float vectors);
- :mod:`.evaluator`: a run's evaluation, written into its ``eval/``;
- :mod:`.grid` and :mod:`.plots`: the retrieval grid and the precision-recall curves;
- :mod:`.image_index`: a saved index of a user's image files (encode / query).

The trainer calls the evaluation; the evaluation never imports the trainer.
"""
from jaxretrieval.evaluation.encoder import Encoded, Encoder
from jaxretrieval.evaluation.evaluator import MethodEvaluation, evaluate_encoded, evaluate_run, host_model
from jaxretrieval.evaluation.grid import GridImages, retrieval_grid
from jaxretrieval.evaluation.image_index import ImageIndex, load_image_index, save_image_index
from jaxretrieval.evaluation.scoring import Evaluation, EvaluationSettings, score_index

__all__ = [
    "Encoded",
    "Encoder",
    "Evaluation",
    "EvaluationSettings",
    "GridImages",
    "ImageIndex",
    "MethodEvaluation",
    "evaluate_encoded",
    "evaluate_run",
    "host_model",
    "load_image_index",
    "retrieval_grid",
    "save_image_index",
    "score_index",
]
