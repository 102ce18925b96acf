"""Dual-view (polarity-reversal) training of an instruction-aware encoder.

`pairs` synthesises (anchor, positive, hard negative) triples from the benchmark's instructed variants,
each with a verified polarity-reversed twin; `train` fine-tunes a sentence-transformers bi-encoder on one
of three arms at a matched budget; `run` chains synthesis, training and evaluation (`make dual-view`).
"""
