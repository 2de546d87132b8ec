"""Training on partial labels: label states, losses, patch sampling, the trainer."""
