"""Local execution: sandboxes, the job runner, the market simulator."""
