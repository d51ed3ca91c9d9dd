"""Training: config, distribution strategies, schedules, callbacks, and `train(config)`."""
