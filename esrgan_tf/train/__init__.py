"""The training loop, its state, steps, losses, optimizer and config loading."""
