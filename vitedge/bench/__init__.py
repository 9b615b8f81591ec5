"""`vitedge bench`: accuracy and latency of every artifact, side by side (no TensorFlow).

  runner.py    plan, preprocess once, one worker process per artifact, figures per row
  worker.py    `python -m vitedge.bench.worker`: load, time and run one artifact, in its own process
  dataset.py   the images (ImageFolder, loose images or random), --limit, preprocessed input files
  stats.py     latency percentiles, accuracy, agreement, the Pareto front
  report.py    the table, JSON, CSV and the machine description
  plot.py      accuracy against latency (matplotlib, optional)
  keras_model.py  a .keras float reference (imports TensorFlow, only in its worker)
"""
