"""Plain data as YAML for people (`dumont finetune create --dry-run`): block style, keys in
the order given, multi-line strings as literal blocks (`|`), so a task's `run` reads as a
script."""

from __future__ import annotations

from typing import Any

import yaml


class _BlockDumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _str)


def dump_yaml(data: Any) -> str:
    """`data` (dicts, lists, scalars) as a YAML document."""
    text: str = yaml.dump(
        data, Dumper=_BlockDumper, sort_keys=False, default_flow_style=False, allow_unicode=True
    )
    return text
