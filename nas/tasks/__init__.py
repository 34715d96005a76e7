"""Tasks and their data: what a subnet is trained and scored on.

Below both the trainers (which fine-tune on a task) and export (which checks a
quantized graph against its PyTorch subnet on the same task), so neither
imports the other:

* :mod:`nas.tasks.wordnet` – WordNet 3.0 noun glosses, deterministic splits;
* :mod:`nas.tasks.batches` – texts to token tensors, deterministic batches;
* :mod:`nas.tasks.metric` – the task metric of an exported subnet
  (head accuracy, or fidelity to the full model).

Missing WordNet data raises :class:`~nas.errors.DataError` with the install hint.
"""
