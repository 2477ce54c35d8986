"""`dumont job create`'s command line -> CreateJob body (pure; no server needed)."""

from __future__ import annotations

from typing import Any

import pytest

from dumont_plan.cli.job_input import build_create_body, describe_rejection, parse_bool
from dumont_plan.errors import DumontError, UnprocessableError


def body(*words: str, **flags: Any) -> dict[str, Any]:
    return build_create_body(list(words), flags)


def error_of(*words: str, **flags: Any) -> str:
    with pytest.raises(DumontError) as info:
        body(*words, **flags)
    return str(info.value)


def test_flags_become_the_api_fields() -> None:
    assert body(
        "train",
        command="python train.py",
        gpu_type="RTX 4090",
        use_spot=False,
        timeout_minutes=480,
        disk_size=100.0,
        pip_packages=["a", "b"],
        hf_token=None,
    ) == {
        "name": "train",
        "command": "python train.py",
        "gpu_type": "RTX 4090",
        "use_spot": False,
        "timeout_minutes": 480,
        "disk_size": 100.0,
        "pip_packages": ["a", "b"],
    }


def test_old_key_value_words_map_to_the_same_fields() -> None:
    assert body(
        "train",
        'command=python x.py "quoted"',
        "gpu=RTX 4090",
        "use_spot=false",
        "timeout=30",
        "disk=20.5",
        "pip=a,b",
        "num_gpus=2",
    ) == {
        "name": "train",
        "command": 'python x.py "quoted"',
        "gpu_type": "RTX 4090",
        "use_spot": False,
        "timeout_minutes": 30,
        "disk_size": 20.5,
        "pip_packages": ["a", "b"],
        "num_gpus": 2,
    }


def test_a_numeric_looking_command_stays_text() -> None:
    assert body("x", "command=42")["command"] == "42"


def test_git_url_and_hf_repo_imply_their_source() -> None:
    assert body("x", git_url="file:///r", command="./run.sh")["source"] == "git"
    assert body("x", hf_repo="user/repo")["source"] == "huggingface"


def test_a_command_job_needs_a_command() -> None:
    assert error_of("x") == (
        'job create: no command to run; add one, e.g. dumont job create x --command="python '
        'train.py"'
    )
    assert "no command to run" in error_of("x", command="   ")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"source": "git"}, "job create: --source=git needs --git-url"),
        ({"source": "huggingface"}, "job create: --source=huggingface needs --hf-repo"),
        (
            {"command": "x", "git_branch": "dev"},
            "job create: --git-url/--git-branch only apply to --source=git",
        ),
        (
            {"git_url": "u", "hf_repo": "r"},
            "job create: both --git-url and --hf-repo are given",
        ),
    ],
)
def test_source_mismatches_are_refused_before_any_request(
    flags: dict[str, Any], message: str
) -> None:
    assert error_of("x", **flags).startswith(message)


def test_a_field_given_twice_differently_is_an_error_that_hides_secrets() -> None:
    assert error_of("x", "gpu=A100", command="c", gpu_type="RTX 4090").startswith(
        "job create: --gpu is given twice"
    )
    assert error_of("x", "y", command="c").startswith("job create: takes one NAME, got 2 words")
    assert "unknown option 'colour'" in error_of("x", "colour=red", command="c")


@pytest.mark.parametrize(
    ("text", "value"), [("true", True), ("FALSE", False), ("yes", True), ("0", False)]
)
def test_parse_bool(text: str, value: bool) -> None:
    assert parse_bool(text, "--use-spot") is value


def test_parse_bool_rejects_other_words() -> None:
    with pytest.raises(DumontError) as info:
        parse_bool("maybe", "--use-spot")
    assert str(info.value) == (
        "job create: --use-spot=maybe: expected true or false; use --use-spot=true or "
        "--use-spot=false (or the flags --spot / --no-spot)"
    )


def rejection(*details: dict[str, Any]) -> UnprocessableError:
    return UnprocessableError(
        "POST /api/v1/jobs/ failed (422): Validation error",
        status_code=422,
        body={"error": "Validation error", "details": list(details)},
    )


def test_a_422_names_the_flag_the_value_and_the_range() -> None:
    exc = rejection(
        {
            "type": "less_than_equal",
            "loc": ["body", "num_gpus"],
            "msg": "Input should be less than or equal to 8",
            "input": 9,
        }
    )
    assert str(describe_rejection(exc, "job create")) == (
        "job create: the API refused the job: --num-gpus=9: input should be less than or "
        "equal to 8 (use 1–8)"
    )


def test_a_422_never_echoes_a_secret() -> None:
    exc = rejection({"loc": ["body", "hf_token"], "msg": "Too long", "input": "hf_SECRET"})
    text = str(describe_rejection(exc, "job create"))
    assert "hf_SECRET" not in text
    assert text == "job create: the API refused the job: --hf-token: too long"


def test_a_422_without_details_keeps_the_server_message() -> None:
    exc = UnprocessableError("x", status_code=422, body={"error": "unknown source 'ftp'"})
    assert str(describe_rejection(exc, "job create")) == (
        "job create: the API refused the job: unknown source 'ftp'"
    )


def test_a_bad_old_style_bool_names_the_word() -> None:
    assert error_of("x", "auto_destroy=maybe", command="c") == (
        "job create: auto_destroy=maybe: expected true or false; use auto_destroy=true or "
        "auto_destroy=false"
    )
