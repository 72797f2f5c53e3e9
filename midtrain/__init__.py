"""Mid-training: `pretrain`'s recipe continued from a finished run, on another mixture, with its own schedule."""
