"""The reproduction studies: the papers' comparisons rerun on real CIFAR-10 at one budget per comparison.

Three comparisons (:mod:`studies.study_configs` defines every run): supervised hashing (CSQ against
the pairwise-likelihood and triplet baselines), unsupervised hashing (SPQ against LSH and PCA-ITQ on
pixels and on an untrained backbone) and listwise, real-valued retrieval (mAP_Q against triplet).
Inside a comparison every method gets the same backbone, input size, batch, steps and seeds; each run
is trained with :func:`jaxretrieval.training.trainer.train_and_evaluate` (the classic hashes are
fitted) and scored once by the harness, and docs/results.md is rendered from the records.

Run from the repository root::

    python -m studies.reproduce --study supervised --bits 16,32,64 --protocol I,II --seeds 0,1 \\
        --budget cpu20 --data-root /path/to/cifar10 --out runs/study
    python -m studies.reproduce --report --out runs/study --doc docs/results.md
    python -m studies.tie_order --workdir runs/study/supervised-csq-64b-II-s1-cpu20

- :mod:`studies.reproduce`: runs a study, re-evaluates, archives the records, renders the report;
- :mod:`studies.study_configs`: the runs (method x bits x protocol x seed) and the budgets;
- :mod:`studies.tie_order`: how much a finished run's mAP@k depends on the database order.
"""
