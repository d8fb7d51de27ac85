"""The pipeline's engine core: reading, parsing and mapping tracking logs; no Luigi, no Prefect.

The local engine's fork server preloads :mod:`pipeline.core.extraction` into a clean interpreter
and every worker forks from it: whatever this package imports, each worker carries. So nothing
here imports ``luigi`` or ``prefect`` (nor the flow packages), as
``tests/pipeline/test_import_rules.py`` checks. The Luigi tasks (``pipeline.total_events``,
``pipeline.enrollments``, ...) are built on top of it.

- :mod:`~pipeline.core.fs`: local paths and ``s3://``: listing, streaming reads, atomic writes;
- :mod:`~pipeline.core.selection`: which files to read for an interval;
- :mod:`~pipeline.core.reader`: gzip or plain logs in blocks of whole lines;
- :mod:`~pipeline.core.events`: one line's parsing rules, and the loader of the optional C fast
  path ``pipeline._fastscan`` (built from ``pipeline/_fastscan.c``);
- :mod:`~pipeline.core.extraction`: the per-file mappers the workers run;
- :mod:`~pipeline.core.engine`: the worker pool (fork server), progress;
- :mod:`~pipeline.core.spark_engine`: the same mappers on Spark executors (pyspark, an optional
  extra, imported only when a map runs);
- :mod:`~pipeline.core.sorting`: external merge sort.
"""
