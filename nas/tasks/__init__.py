"""Tasks and their data: what a subnet is trained and scored on.

Below both the trainers (which fine-tune on a task) and export (which checks a
quantized graph against its PyTorch subnet on the same task), so neither
imports the other:

* :mod:`nas.tasks.wordnet` – WordNet 3.0 noun glosses, deterministic splits
  (and the line, file and hash rules every WordNet task shares);
* :mod:`nas.tasks.definitions` – glosses of all four parts of speech and
  definition → word multiple-choice items, for decoders;
* :mod:`nas.tasks.batches` – texts to token tensors, deterministic batches;
* :mod:`nas.tasks.lm_eval` – a decoder scored through its logits (the
  ``forward(ids, mask) -> logits`` contract): batched multiple choice, perplexity;
* :mod:`nas.tasks.metric` – the task metric of an exported subnet
  (head accuracy, fidelity to the full model, or a decoder's definition → word accuracy).

Missing WordNet data raises :class:`~nas.errors.DataError` with the install hint.
"""
