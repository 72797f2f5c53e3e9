"""Next-token training of a Qwen2 decoder on a corpus: pre-training here, mid-training (`midtrain`) on top.

config (typed configs) · model (build / load-and-check HF models) · data (packed, streamed, resumable batches)
· module (LightningModule: losses, AdamW, schedule) · metrics (append-only log) · recipe (one run: setup / train
/ save / cleanup) · cli (`lab pretrain`).
"""
