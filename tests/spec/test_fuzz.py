"""Fuzz load_stack: any text or structure gives a Stack or located SpecErrors, nothing else."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dumont_plan.errors import DumontError, SpecError, SpecErrors
from dumont_plan.loader import load_stack
from dumont_plan.spec import InstanceSpec, JobSpec

FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))

TOP_KEYS = ["version", "project", "variables", "defaults", "jobs", "instances", "finetunes", "x"]
FIELDS = sorted({*JobSpec.model_fields, *InstanceSpec.model_fields, "comand", "default"})
NAMES = ["a", "b", "train", "Bad", "box", ""]
TEXTS = [
    "demo",
    "{{ var.gpu }}",
    "{{ env.HOME }}",
    "{{ var.nope }}",
    "{% if true %}x{% endif %}",
    "{{ 1 / 0 }}",
    "{{",
    "${job.a.id}",
    "${jobs.train.status}",
    "${instance.box.ssh_host}",
    "${instance.box}",
    "${secret.TOKEN}",
    "${secret.a.b}",
    "${nope.a.id}",
    "job.a",
    "jobs.b",
    "running",
    "RTX 4090",
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 2000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(TEXTS),
    st.text(max_size=8),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)
bodies = st.dictionaries(st.sampled_from(FIELDS), values, max_size=5)
resources = st.dictionaries(st.sampled_from(NAMES), bodies | values, max_size=3)
documents = st.fixed_dictionaries(
    {},
    optional={
        "version": scalars,
        "project": st.sampled_from(["demo", "Demo", "", "other"]) | scalars,
        "variables": st.dictionaries(
            st.sampled_from(["gpu", "n", "9x"]), st.fixed_dictionaries({"default": values}) | values
        ),
        "defaults": st.dictionaries(st.sampled_from(["job", "instance", "jobs"]), bodies | values),
        "jobs": resources | values,
        "instances": resources | values,
        "finetunes": values,
        "x": values,
    },
)


def check(texts: list[str]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        paths = []
        for index, text in enumerate(texts):
            path = root / f"f{index}.yaml"
            path.write_text(text, encoding="utf-8")
            paths.append(path)
        try:
            load_stack(paths, root, {}, [], {"HOME": "/home/x"})
        except SpecErrors as exc:
            assert all(error.file and error.line for error in exc.errors), exc.lines()
            assert "Traceback" not in str(exc)
        except SpecError as exc:
            assert exc.file, str(exc)
        except DumontError:
            pass


@FUZZ
@given(
    st.lists(st.text(alphabet=st.characters(codec="utf-8"), max_size=200), min_size=1, max_size=2)
)
def test_random_text(texts: list[str]) -> None:
    check(texts)


@FUZZ
@given(st.lists(documents, min_size=1, max_size=2), st.integers(0, 3), st.data())
def test_random_structures(docs: list[dict[str, Any]], mangle: int, data: st.DataObject) -> None:
    texts = [yaml.safe_dump(doc, sort_keys=False) for doc in docs]
    if mangle and texts[0]:  # and sometimes break the text a little
        text = texts[0]
        at = data.draw(st.integers(0, len(text) - 1))
        junk = data.draw(st.sampled_from(["\t", ":", "- ", "{", "'", "\n  ", "&a ", "*a "]))
        texts[0] = text[:at] + junk + text[at:]
    check(texts)
