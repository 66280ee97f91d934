"""The CLI reference page, generated from nasforge's own argparse parsers so that it cannot drift.

Used two ways:

* as an MkDocs hook (``hooks:`` in mkdocs.yml): ``on_files`` adds the generated page
  ``reference/cli.md`` to the site on every build and every ``mkdocs serve`` reload;
* standalone: ``python scripts/cli_reference.py`` prints the same Markdown.

The page has one section per subcommand (nested ones such as ``scale family`` included): its usage
line, its description (or its one-line help), and every flag and positional argument, grouped as
the parser groups them, with its help (``%(default)s`` expanded), choices and default.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterator

PAGE = "reference/cli.md"

_INTRO = """\
# Command line

Every `nasforge` subcommand with all its flags, generated from the command's own argument parser
(`nasforge.cli.build_parser`) each time this site is built, so it always matches `nasforge --help`.
Errors a user can cause end as one line on stderr and exit status 2.
"""


def _build_parser() -> argparse.ArgumentParser:
    try:
        from nasforge.cli import build_parser
    except ImportError:  # building the site from a checkout where nasforge is not installed
        from pathlib import Path
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
        from nasforge.cli import build_parser
    return build_parser()


def _subcommands(parser: argparse.ArgumentParser) -> Iterator[tuple[argparse.ArgumentParser, str | None]]:
    """(parser, one-line help) of every subcommand below `parser`, depth first, in definition order."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                yield sub, helps.get(name)
                yield from _subcommands(sub)


_CODE = re.compile(r"(`+)(.+?)\1")


def _md(text: str) -> str:
    """Plain help text as Markdown: code spans kept, characters Markdown would act on escaped."""
    out, pos = [], 0
    for m in _CODE.finditer(text):
        out.append(_escape(text[pos:m.start()]))
        out.append(m.group(0))
        pos = m.end()
    out.append(_escape(text[pos:]))
    return "".join(out)


def _escape(text: str) -> str:
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return re.sub(r"([\\*_\[\]|#])", r"\\\1", text)


def _paragraphs(text: str) -> str:
    """A description argparse would re-wrap: its paragraphs (blank-line separated), unwrapped."""
    paras = [" ".join(p.split()) for p in re.split(r"\n\s*\n", text.strip())]
    return "\n\n".join(_md(p) for p in paras if p)


def _invocation(action: argparse.Action, formatter: argparse.HelpFormatter) -> str:
    if not action.option_strings:
        return formatter._metavar_formatter(action, action.dest)(1)[0]
    if action.nargs == 0:
        return ", ".join(action.option_strings)
    args = formatter._format_args(action, formatter._get_default_metavar_for_optional(action))
    return ", ".join(f"{opt} {args}" for opt in action.option_strings)


def _action(action: argparse.Action, formatter: argparse.HelpFormatter) -> str:
    line = f"- `{_invocation(action, formatter)}`"
    text = formatter._expand_help(action) if action.help else ""
    extra = []
    if action.choices is not None and not isinstance(action, argparse._SubParsersAction):
        if "{" not in _invocation(action, formatter):  # not already shown by the metavar
            extra.append("one of " + ", ".join(f"`{c}`" for c in action.choices))
    if action.required and action.option_strings:
        extra.append("required")
    if text:
        line += ": " + _md(" ".join(text.split()))
    if extra:
        line += (" (" if text else ": ") + "; ".join(extra) + (")" if text else "")
    return line


def _usage(parser: argparse.ArgumentParser) -> str:
    """The usage line(s) as argparse writes them, wrapped at a fixed width (not the terminal's)."""
    formatter = parser.formatter_class(prog=parser.prog, width=100)
    formatter.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups, prefix="")
    return formatter.format_help().strip("\n")


def _section(parser: argparse.ArgumentParser, help_line: str | None) -> str:
    name = parser.prog.split(" ", 1)[1]
    anchor = name.replace(" ", "-")
    level = "#" * (1 + name.count(" ") + 1)
    formatter = parser.formatter_class(prog=parser.prog)  # not _get_formatter(): no colour (3.14)
    parts = [f"{level} `nasforge {name}` {{#{anchor}}}", "", "```text", _usage(parser), "```", ""]
    if parser.description:
        parts += [_paragraphs(parser.description), ""]
    elif help_line:
        parts += [_md(help_line[:1].upper() + help_line[1:]) + ".", ""]
    for group in parser._action_groups:
        actions = [a for a in group._group_actions if a.help is not argparse.SUPPRESS
                   and not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction))]
        if not actions:
            continue
        title = group.title or "options"
        parts += [f"**{_md(title[:1].upper() + title[1:])}**", ""]
        if group.description:
            parts += [_paragraphs(group.description), ""]
        parts += [_action(a, formatter) for a in actions] + [""]
    subs = [(s, h) for a in parser._actions if isinstance(a, argparse._SubParsersAction)
            for s, h in [(a.choices[c.dest], c.help) for c in a._choices_actions]]
    if subs:
        parts += ["Subcommands: " + ", ".join(
            f"[`{s.prog}`](#{s.prog.split(' ', 1)[1].replace(' ', '-')})" for s, _ in subs), ""]
    return "\n".join(parts)


def render() -> str:
    """The whole page, Markdown."""
    parser = _build_parser()
    parts = [_INTRO, "```text", _usage(parser), "```", "", "| subcommand | what it does |", "| --- | --- |"]
    subs = list(_subcommands(parser))
    for sub, help_line in subs:
        name = sub.prog.split(" ", 1)[1]
        parts.append(f"| [`{name}`](#{name.replace(' ', '-')}) | {_md(help_line or '')} |")
    parts.append("")
    parts += [_section(sub, help_line) for sub, help_line in subs]
    return "\n".join(parts)


def on_files(files, config):  # MkDocs hook
    from mkdocs.structure.files import File

    files.append(File.generated(config, PAGE, content=render()))
    return files


if __name__ == "__main__":
    sys.stdout.write(render())
