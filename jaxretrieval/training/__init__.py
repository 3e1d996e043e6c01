"""The training system: config schema and loading, optimiser, state, the step and the loop, checkpoints.

- :mod:`.config`: the schema (:func:`~.config.base_config`) and :func:`~.config.load_config`;
- :mod:`.optimizer`: the optax optimiser and learning-rate schedule;
- :mod:`.state`: the train state, graph definitions, abstract shapes, the initial state;
- :mod:`.step`: the pure, jitted train step (plain or multistage backprop);
- :mod:`.trainer`: :func:`~.trainer.train_and_evaluate`, the loop, resume and pre-emption;
- :mod:`.checkpoint`, :mod:`.metric_writer`, :mod:`.preemption`: checkpoints, the training curve,
  SIGTERM handling;
- :mod:`.restore`: a trained model back from its run directory, for inference.

The run directory's files are named in :mod:`jaxretrieval.run_directory`; meshes, shardings and
host/device transfers live in :mod:`jaxretrieval.sharding`.
"""
