"""load_stack: discovery, merging, variables, templates, defaults, references (golden cases)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from dumont_plan.errors import SpecError, SpecErrors
from dumont_plan.loader import load_stack
from dumont_plan.spec import InstanceSpec, JobSpec, Stack, remote_name


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def load(
    folder: Path,
    paths: list[Path] | None = None,
    variables: dict[str, str] | None = None,
    var_files: list[Path] | None = None,
    env: dict[str, str] | None = None,
) -> Stack:
    return load_stack(paths, folder, variables or {}, var_files or [], env or {})


def errors_of(folder: Path, **kwargs: Any) -> list[str]:
    with pytest.raises(SpecError) as info:
        load(folder, **kwargs)
    exc = info.value
    return exc.lines() if isinstance(exc, SpecErrors) else [str(exc)]


def test_minimal_stack(tmp_path: Path) -> None:
    write(
        tmp_path,
        "dumont.yaml",
        """
        version: 1
        project: demo
        jobs:
          hello:
            command: echo hi
        instances:
          box:
            gpu_name: RTX 4090
        """,
    )
    stack = load(tmp_path)
    assert stack.project == "demo"
    assert list(stack.resources) == ["job.hello", "instance.box"]
    hello = stack.resources["job.hello"]
    assert (hello.kind, hello.name, hello.source, hello.refs) == (
        "job",
        "hello",
        "dumont.yaml:4",
        (),
    )
    assert isinstance(hello.spec, JobSpec)
    assert hello.spec_dict() == {"command": "echo hi"}
    assert hello.spec.num_gpus == 1  # type: ignore[attr-defined]
    assert isinstance(stack.resources["instance.box"].spec, InstanceSpec)
    assert stack.files == ["dumont.yaml"]
    assert stack.root == tmp_path.resolve()
    assert [r.address for r in stack.of_kind("instance")] == ["instance.box"]


def test_defaults_merge_under_resources_and_resource_wins(tmp_path: Path) -> None:
    write(
        tmp_path,
        "dumont.yaml",
        """
        project: demo
        defaults:
          job: {use_spot: false, timeout_minutes: 20}
          instance: {max_price: 1.5}
        jobs:
          a: {command: echo a}
          b: {command: echo b, timeout_minutes: 30}
        instances:
          box: {gpu_name: RTX 4090}
        """,
    )
    stack = load(tmp_path)
    assert stack.resources["job.a"].spec_dict() == {
        "command": "echo a",
        "use_spot": False,
        "timeout_minutes": 20,
    }
    assert stack.resources["job.b"].spec_dict()["timeout_minutes"] == 30
    assert stack.resources["instance.box"].spec_dict() == {"gpu_name": "RTX 4090", "max_price": 1.5}


def test_a_bad_default_is_reported_once_at_the_default(tmp_path: Path) -> None:
    write(
        tmp_path,
        "dumont.yaml",
        """
        project: demo
        defaults:
          job: {num_gpus: 12}
        jobs:
          a: {command: echo a}
          b: {command: echo b}
        """,
    )
    assert errors_of(tmp_path) == [
        "dumont.yaml:3:19 defaults.job.num_gpus: 12 is above the limit of 8; use 1–8."
    ]


def test_several_files_merge_into_one_stack(tmp_path: Path) -> None:
    write(
        tmp_path,
        "specs/base.yaml",
        """
        project: demo
        variables:
          msg: {default: hi}
        defaults:
          job: {timeout_minutes: 15}
        """,
    )
    write(tmp_path, "specs/jobs.yml", 'jobs:\n  greet: {command: "echo {{ var.msg }}"}\n')
    write(tmp_path, "specs/notes.txt", "not a spec")
    stack = load(tmp_path, paths=[Path("specs")])
    assert stack.files == ["specs/base.yaml", "specs/jobs.yml"]
    assert stack.resources["job.greet"].spec_dict() == {
        "command": "echo hi",
        "timeout_minutes": 15,
    }
    # The same file twice is loaded once.
    again = load(tmp_path, paths=[Path("specs/base.yaml"), Path("specs/jobs.yml"), Path("specs")])
    assert again.files == ["specs/base.yaml", "specs/jobs.yml"]


def test_discovery_prefers_dumont_yaml_then_yml_then_dumontfile(tmp_path: Path) -> None:
    write(tmp_path, "dumontfile", "project: from-dumontfile\n")
    assert load(tmp_path).project == "from-dumontfile"
    write(tmp_path, "dumont.yml", "project: from-yml\n")
    assert load(tmp_path).project == "from-yml"
    write(tmp_path, "dumont.yaml", "project: from-yaml\n")
    assert load(tmp_path).project == "from-yaml"


def test_discovery_errors_name_what_was_looked_for(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as info:
        load(tmp_path)
    assert str(info.value) == (
        f"no spec file in {tmp_path}: looked for dumont.yaml, dumont.yml, dumontfile; "
        "create dumont.yaml, or pass -f PATH"
    )
    with pytest.raises(SpecError, match=r"^nope.yaml: no such file or folder; check the -f path"):
        load(tmp_path, paths=[Path("nope.yaml")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(SpecError, match=r"^empty: no \*.yaml, \*.yml or dumontfile in this folder"):
        load(tmp_path, paths=[Path("empty")])


def test_variable_precedence(tmp_path: Path) -> None:
    write(
        tmp_path,
        "dumont.yaml",
        """
        project: demo
        variables:
          a: {default: from-default}
          b: {default: from-default}
          c: {default: from-default}
          d: {default: from-default}
          e: {default: from-default}
        jobs:
          show:
            command: "{{ var.a }} {{ var.b }} {{ var.c }} {{ var.d }} {{ var.e }}"
        """,
    )
    first = write(tmp_path, "first.yaml", "c: from-file-1\nd: from-file-1\ne: from-file-1\n")
    second = write(tmp_path, "second.json", '{"d": "from-file-2", "e": "from-file-2"}\n')
    stack = load(
        tmp_path,
        variables={"e": "from-cli"},
        var_files=[first, Path("second.json")],
        env={"DUMONT_VAR_b": "from-env", "DUMONT_VAR_c": "from-env", "DUMONT_VAR_e": "from-env"},
    )
    assert stack.resources["job.show"].spec_dict()["command"] == (
        "from-default from-env from-file-1 from-file-2 from-cli"
    )
    assert stack.variables["e"] == "from-cli"
    assert second.exists()


def test_a_single_expression_keeps_its_type(tmp_path: Path) -> None:
    write(
        tmp_path,
        "dumont.yaml",
        """
        project: demo
        variables:
          n: {default: 2}
          spot: {default: false}
          packages: {default: [numpy, torch]}
        jobs:
          train:
            num_gpus: "{{ var.n }}"
            use_spot: "{{ var.spot }}"
            pip_packages: "{{ var.packages }}"
            command: "echo {{ var.n * 2 }} {{ env.USER_NAME | default('nobody') }}"
        """,
    )
    spec = load(tmp_path, env={"USER_NAME": "ada"}).resources["job.train"].spec_dict()
    assert spec == {
        "num_gpus": 2,
        "use_spot": False,
        "pip_packages": ["numpy", "torch"],
        "command": "echo 4 ada",
    }
    # Values from --var are text; pydantic reads "3" as the integer 3.
    assert load(tmp_path, variables={"n": "3"}).resources["job.train"].spec_dict()["num_gpus"] == 3


def test_references_and_secrets_are_not_jinja(tmp_path: Path) -> None:
    write(
        tmp_path,
        "dumont.yaml",
        """
        project: demo
        variables:
          word: {default: hi}
        instances:
          box: {gpu_name: RTX 4090}
        jobs:
          a: {command: echo a}
          b:
            command: "{{ var.word }} ${jobs.a.id} ${instance.box.ssh_host} ${secret.TOKEN}"
            hf_token: ${secret.TOKEN}
            depends_on: [jobs.a, instance.box]
        """,
    )
    stack = load(tmp_path)
    b = stack.resources["job.b"]
    assert b.spec_dict()["command"] == "hi ${jobs.a.id} ${instance.box.ssh_host} ${secret.TOKEN}"
    assert b.spec_dict()["hf_token"] == "${secret.TOKEN}"
    assert b.refs == ("instance.box", "job.a")  # normalised, sorted, once each, no secrets
    assert b.spec_dict()["depends_on"] == ["job.a", "instance.box"]
    assert stack.graph() == {"instance.box": [], "job.a": [], "job.b": ["instance.box", "job.a"]}


def test_every_problem_is_reported_at_once_in_order(tmp_path: Path) -> None:
    write(
        tmp_path,
        "a.yaml",
        """
        project: demo
        jobs:
          train:
            num_gpus: 0
            comand: x
        """,
    )
    write(tmp_path, "b.yaml", "instances:\n  box: {region: mars}\n")
    assert errors_of(tmp_path, paths=[tmp_path]) == [
        "a.yaml:4:15 jobs.train.num_gpus: 0 is below the minimum of 1; use 1–8.",
        "a.yaml:5:5 jobs.train.comand: unknown field; did you mean 'command'?",
        "b.yaml:2:17 instances.box.region: 'mars' is not one of: global, US, EU, ASIA",
    ]


def test_template_error_inside_a_block_points_at_its_line(tmp_path: Path) -> None:
    write(
        tmp_path,
        "dumont.yaml",
        """
        project: demo
        jobs:
          train:
            command: |
              echo one
              echo {{ var.x
        """,
    )
    [line] = errors_of(tmp_path)
    assert line.startswith("dumont.yaml:6:")
    assert "template syntax error" in line


def test_empty_sections_and_empty_files_are_fine(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "project: demo\njobs:\ninstances:\nvariables:\ndefaults:\n")
    write(tmp_path, "b.yaml", "# nothing yet\n")
    write(tmp_path, "c.yaml", "jobs:\n  solo:\n")
    stack = load(tmp_path, paths=[tmp_path])
    assert list(stack.resources) == ["job.solo"]


def test_anchors_and_merge_keys(tmp_path: Path) -> None:
    write(
        tmp_path,
        "dumont.yaml",
        """
        project: demo
        jobs:
          a: &base {command: echo a, timeout_minutes: 15}
          b:
            <<: *base
            command: echo b
        """,
    )
    stack = load(tmp_path)
    assert stack.resources["job.b"].spec_dict() == {"command": "echo b", "timeout_minutes": 15}


@pytest.mark.slow
def test_alias_bombs_and_deep_nesting_are_errors(tmp_path: Path) -> None:
    lines = ["project: demo", "a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    write(tmp_path, "dumont.yaml", "\n".join(lines) + "\n")
    [line] = errors_of(tmp_path)
    assert "expands to more than" in line
    write(tmp_path, "dumont.yaml", "project: demo\nx: " + "[" * 200 + "]" * 200 + "\n")
    assert any("nested" in line for line in errors_of(tmp_path))


def test_remote_name_is_stable_and_bounded() -> None:
    assert remote_name("lab", "job", "train") == "lab-train"
    long = remote_name("p" * 64, "job", "n" * 64)
    assert len(long) == 100
    assert long == remote_name("p" * 64, "job", "n" * 64)
    assert long != remote_name("p" * 64, "job", "n" * 63 + "m")


def test_digest_depends_on_content_only(tmp_path: Path) -> None:
    write(tmp_path, "dumont.yaml", "project: demo\njobs:\n  a: {command: echo a}\n")
    first = load(tmp_path).digest()
    write(tmp_path, "dumont.yaml", "# comment\nproject: demo\njobs:\n  a:\n    command: echo a\n")
    assert load(tmp_path).digest() == first
    write(tmp_path, "dumont.yaml", "project: demo\njobs:\n  a: {command: echo b}\n")
    assert load(tmp_path).digest() != first


def test_jinja_is_imported_only_when_a_spec_uses_templates(tmp_path: Path) -> None:
    write(tmp_path, "plain.yaml", "project: demo\njobs:\n  a: {command: echo a}\n")
    write(tmp_path, "templated.yaml", 'project: demo\njobs:\n  a: {command: "{{ 1 + 1 }}"}\n')
    code = (
        "import json, sys; from pathlib import Path; from dumont_plan.loader import load_stack;"
        "load_stack([Path(sys.argv[1])], Path(sys.argv[2]), {}, [], {});"
        "print(json.dumps('jinja2' in sys.modules))"
    )
    for name, expected in (("plain.yaml", False), ("templated.yaml", True)):
        result = subprocess.run(
            [sys.executable, "-c", code, name, str(tmp_path)],
            capture_output=True,
            text=True,
            check=True,
        )
        assert json.loads(result.stdout) is expected, name


def test_a_broken_file_stops_before_cross_file_checks(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "project: demo\nvariables:\n  gpu: {default: x}\njobs:\n  a: [\n")
    write(tmp_path, "b.yaml", 'jobs:\n  b: {command: "${job.a.id} {{ var.gpu }}"}\n')
    write(tmp_path, "c.yaml", "jobs:\n  c: {command: x}\n  c: {}\n")
    assert errors_of(tmp_path, paths=[tmp_path]) == [
        "a.yaml:6:1 YAML syntax error: did not find expected node content; close the bracket "
        "or remove the stray comma",
        "c.yaml:3:3 duplicate key 'c' (first at line 2); keep only one of them",
    ]


def test_a_template_spelled_with_yaml_escapes_is_still_rendered(tmp_path: Path) -> None:
    # A file whose text has no `{{` skips the render walk; an escape may still spell one.
    write(
        tmp_path,
        "dumont.yaml",
        r"""
        project: demo
        variables:
          who: {default: world}
        jobs:
          hello:
            command: "echo \x7b{ var.who }}"
        """,
    )
    job = load(tmp_path).resources["job.hello"].spec
    assert isinstance(job, JobSpec) and job.command == "echo world"
