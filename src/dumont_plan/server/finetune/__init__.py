"""Fine-tune mode: the trainer and server scripts run in sandboxes, and the executor around them."""
