"""Everything kind-specific (jobs, instances, later fine-tunes, serverless, spot).

Each kind is a pure *handler* (`kinds/<kind>.py`: field table, decisions, prices, status
predicates; the `KindHandler` Protocol of base.py), which the planner reads, and *ops*
(`kinds/<kind>_ops.py`: its API calls; the `KindOps` Protocol of ops.py), which observe and
apply call. `registry.REGISTRY` has one line per kind naming both. The pure modules import no
client, wizard or apply (tests/test_architecture.py); "How to add a kind" is in the README.
"""
