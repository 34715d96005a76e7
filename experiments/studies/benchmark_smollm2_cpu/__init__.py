"""The SmolLM2 CPU benchmark (``run.py``): search vs quantize-only and uniform pruning, per phase."""
