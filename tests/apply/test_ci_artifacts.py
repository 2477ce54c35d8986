"""The CI example and the pre-commit hooks run real `dumont` commands, as documented."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.support import REPO, cli_env, run_cli


def test_the_github_workflow_plans_pull_requests_with_detailed_exitcode() -> None:
    workflow = yaml.safe_load((REPO / "examples" / "ci" / "github-actions.yml").read_text())
    assert "pull_request" in workflow[True]  # YAML 1.1 reads the key `on` as True
    steps = workflow["jobs"]["plan"]["steps"]
    plan = next(s for s in steps if s.get("id") == "plan")
    script = plan["run"]
    assert "dumont plan --detailed-exitcode" in script
    assert 'if [ "$code" -eq 1 ]; then exit 1; fi' in script  # 2 (changes) is not a failure
    conditions = {s.get("if") for s in steps}
    assert "steps.plan.outputs.exitcode == '2'" in conditions
    assert "steps.plan.outputs.exitcode == '0'" in conditions


def test_the_github_workflow_uses_remote_state_applies_on_main_and_checks_drift() -> None:
    text = (REPO / "examples" / "ci" / "github-actions.yml").read_text()
    assert "backend:\n#     type: http" in text  # the spec it expects keeps remote state
    workflow = yaml.safe_load(text)
    triggers = workflow[True]
    assert triggers["push"]["branches"] == ["main"]
    assert triggers["schedule"][0]["cron"]
    jobs = workflow["jobs"]
    apply_steps = [s.get("run", "") for s in jobs["apply"]["steps"]]
    assert "dumont apply --auto-approve" in apply_steps
    assert "dumont plan --detailed-exitcode" in apply_steps  # nothing left after the apply
    drift = next(s for s in jobs["drift"]["steps"] if s.get("id") == "drift")["run"]
    assert "dumont plan --detailed-exitcode" in drift
    assert 'exit "$code"' in drift  # 2 (drift) fails the scheduled job
    assert "schedule" in jobs["drift"]["if"]


def test_the_pre_commit_hooks_name_real_commands(tmp_path: Path) -> None:
    hooks = {h["id"]: h for h in yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())}
    assert hooks["dumont-validate"]["entry"] == "dumont validate"
    assert hooks["dumont-fmt"]["entry"] == "dumont fmt --check"
    for hook in hooks.values():
        assert hook["language"] == "python" and hook["pass_filenames"] is False
    (tmp_path / "dumont.yaml").write_text(
        "version: 1\nproject: hooks\njobs:\n  a:\n    command: echo hi\n"
    )
    env = cli_env(tmp_path)
    assert run_cli(["fmt"], env, cwd=tmp_path).returncode == 0  # now in canonical form
    for hook in hooks.values():
        argv = hook["entry"].split()[1:]
        result = run_cli(argv, env, cwd=tmp_path)
        assert result.returncode == 0, (argv, result.stdout, result.stderr)
    (tmp_path / "dumont.yaml").write_text(  # a typo: validate fails, and untidy: fmt fails
        "version: 1\nproject:   hooks\njobs:\n    a:\n        comand: echo hi\n"
    )
    for hook in hooks.values():
        result = run_cli(hook["entry"].split()[1:], env, cwd=tmp_path)
        assert result.returncode == 1, (hook["id"], result.stdout, result.stderr)
        assert "Traceback" not in result.stderr
