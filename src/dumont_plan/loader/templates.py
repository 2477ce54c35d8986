"""`{{ var.x }}` / `{{ env.X }}`: Jinja2 (StrictUndefined) over each string value of a spec.

Only strings containing `{{` or `{%` are rendered, so most of a spec costs nothing (and jinja2
is imported only when a spec uses it). A string that is a single `{{ expression }}` keeps the
expression's type: `num_gpus: "{{ var.n }}"` with `n: {default: 2}` gives the integer 2.
`${...}` is not Jinja: references and secrets pass through untouched.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from dumont_plan.errors import TemplateProblem, TemplateUndefined
from dumont_plan.spec.messages import suggest

SINGLE_EXPR = re.compile(r"^\s*\{\{((?:(?!\{\{|\}\}).)*)\}\}\s*$", re.DOTALL)


def needs_render(text: str) -> bool:
    return "{{" in text or "{%" in text


class _Namespace(dict[str, Any]):
    """`var` / `env`: attribute access reads items only (a variable may be named `items`)."""

    def __init__(self, label: str, values: Mapping[str, Any]) -> None:
        super().__init__(values)
        self.label = label


class Renderer:
    """Renders strings with `var` and `env`; compiled templates are cached by their text."""

    def __init__(self, variables: Mapping[str, Any], env: Mapping[str, str]) -> None:
        self.var = _Namespace("var", variables)
        self.env = _Namespace("env", env)
        self._jinja: Any = None
        self._cache: dict[str, Any] = {}

    def _environment(self) -> Any:
        if self._jinja is None:
            self._jinja = _make_environment()
        return self._jinja

    def render(self, text: str) -> Any:
        """The rendered value; raises TemplateProblem."""
        import jinja2  # deferred: most specs have no templates, and import costs ~30 ms

        compiled = self._cache.get(text)
        try:
            if compiled is None:
                single = SINGLE_EXPR.match(text)
                jinja = self._environment()
                if single:
                    expression = jinja.compile_expression(single.group(1), undefined_to_none=False)
                    compiled = ("expr", expression)
                else:
                    compiled = ("template", jinja.from_string(text))
                self._cache[text] = compiled
            how, template = compiled
            if how == "expr":
                value = template(var=self.var, env=self.env)
                if isinstance(value, jinja2.Undefined):
                    str(value)  # raises the undefined error
                return value
            return template.render(var=self.var, env=self.env)
        except TemplateUndefined as exc:
            raise self._undefined(exc) from exc
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateProblem(
                f"template syntax error: {(exc.message or '').rstrip('.')}",
                "to keep '{{' literally, write {{ '{{' }} or wrap the text in "
                "{% raw %}...{% endraw %}",
                exc.lineno,
            ) from exc
        except Exception as exc:  # the user's expression failed: report it, not a traceback
            raise TemplateProblem(
                f"template error: {type(exc).__name__}: {exc}",
                "check the expression inside {{ }}",
            ) from exc

    def _undefined(self, exc: TemplateUndefined) -> TemplateProblem:
        from jinja2.utils import missing

        name = str(exc.name)
        if exc.obj is self.var:
            guess = suggest(name, sorted(self.var))
            fix = f"declare it under variables: or pass --var {name}=VALUE"
            return TemplateProblem(
                f"undefined variable '{name}'",
                f"did you mean '{guess}'? To add it, {fix}." if guess else fix,
            )
        if exc.obj is self.env:
            return TemplateProblem(
                f"environment variable '{name}' is not set",
                f"set it, or give a fallback: {{{{ env.{name} | default('...') }}}}",
            )
        if name in self.var:
            return TemplateProblem(f"undefined name '{name}'", f"did you mean 'var.{name}'?")
        if exc.obj is missing:
            return TemplateProblem(
                f"undefined name '{name}'",
                "write {{ var.NAME }} for a variable and {{ env.NAME }} for the environment",
            )
        return TemplateProblem(f"undefined value: {exc}", "check the expression inside {{ }}")


def _make_environment() -> Any:
    import jinja2
    from jinja2.utils import missing

    class _Undefined(jinja2.StrictUndefined):
        __slots__ = ()

        def __init__(
            self,
            hint: str | None = None,
            obj: Any = missing,
            name: str | None = None,
            exc: type[jinja2.TemplateRuntimeError] = jinja2.UndefinedError,
        ) -> None:
            super().__init__(hint, obj, name, exc)
            self._undefined_exception = lambda message: TemplateUndefined(message, obj, name)  # type: ignore[assignment]

    class _Environment(jinja2.Environment):
        def getattr(self, obj: Any, attribute: str) -> Any:
            if isinstance(obj, _Namespace):
                if attribute in obj:
                    return obj[attribute]
                return self.undefined(obj=obj, name=attribute)
            return super().getattr(obj, attribute)

        def getitem(self, obj: Any, argument: Any) -> Any:
            if isinstance(obj, _Namespace):
                if argument in obj:
                    return obj[argument]
                return self.undefined(obj=obj, name=argument)
            return super().getitem(obj, argument)

    return _Environment(
        undefined=_Undefined,
        autoescape=False,
        keep_trailing_newline=True,
    )
