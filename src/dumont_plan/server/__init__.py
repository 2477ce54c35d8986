"""The Dumont local control plane: a reference implementation of the Dumont API v1.

Never imports `dumont_plan.client`, `dumont_plan.plan` or `dumont_plan.cli`.
"""
