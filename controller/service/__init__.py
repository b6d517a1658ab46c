"""The long-running agent's service parts: its HTTP listener (webhooks, /metrics, /healthz) and metrics."""
