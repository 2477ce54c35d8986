"""`job_secrets.split_secrets` masks a value in every stored string and carries the real ones;
`build_script` runs each line those change from the environment."""

from __future__ import annotations

from pathlib import PurePosixPath

import pytest

from dumont_plan.server.provider.job_secrets import refused_field, split_secrets
from dumont_plan.server.provider.runner import build_script

VALUE = "tok-MARKER-42"


def test_values_are_masked_at_any_depth_and_the_real_fields_carried() -> None:
    config = {
        "name": "job",
        "source": "git",
        "git_url": f"https://host/{VALUE}/repo.git",
        "git_branch": f"b-{VALUE}",
        "pip_packages": ["numpy", f"--index-url=https://u:{VALUE}@idx/simple"],
        "command": "true",
    }
    stored, carried = split_secrets(config, {"TOKEN": VALUE})
    assert carried is not None
    assert VALUE not in repr(stored)
    assert stored["pip_packages"] == ["numpy", "--index-url=https://u:***@idx/simple"]
    assert stored["git_branch"] == "b-***" and stored["command"] == "true"
    assert carried.fields == {k: config[k] for k in ("git_url", "git_branch", "pip_packages")}

    script = build_script(stored, PurePosixPath("/workspace"), carried)
    assert VALUE not in script
    hidden = [line for line in script.splitlines() if line.startswith('eval "$DUMONT_JOB_LINE_')]
    assert len(hidden) == 2  # the clone and the pip install
    env = carried.workload_env("/env/bin")
    real = build_script({**stored, **carried.fields}, PurePosixPath("/workspace")).splitlines()
    lines = [env[name] for name in carried.lines]
    assert all(VALUE in line and line in real for line in lines)


@pytest.mark.parametrize(
    ("field", "value"),
    [("name", f"n-{VALUE}"), ("image", VALUE), ("output_paths", [f"/workspace/{VALUE}"])],
)
def test_a_value_where_it_has_no_use_is_refused(field: str, value: object) -> None:
    assert refused_field({"command": VALUE, field: value}, {"TOKEN": VALUE}) == field
    with pytest.raises(ValueError, match=f"`{field}`"):
        split_secrets({field: value}, {"TOKEN": VALUE})
    assert refused_field({"command": VALUE, field: "plain"}, {"TOKEN": VALUE}) is None
