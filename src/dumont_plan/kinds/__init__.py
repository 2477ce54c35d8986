"""Kind handlers: everything kind-specific (jobs, instances, later fine-tunes, serverless, spot).

The engine (observe, plan, apply) only talks to `KindHandler`; adding a kind is adding a handler
to `HANDLERS`, a spec model to `spec.stack.KINDS`, and nothing else.
"""
