"""``corps schema MODULE ...``: the AsyncAPI 3.0 document of some modules; ``--diff OLD NEW``: compatibility."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from corps.cli._graph import classes_named
from corps.errors import IncompatibleSchema
from corps.tools._asyncapi import asyncapi
from corps.tools._compat import check, diff, schemas_of
from corps.tools._loader import LoadError

SCHEMA_EPILOG = """\
examples:
  corps schema corps.examples.shop.orchestrated corps.examples.shop.hybrid -o asyncapi.json
  corps schema myapp.actors --namespace shop --app-version 2.1.0
  corps schema --diff asyncapi.json myapp.actors      the committed contract against the code now
  corps schema --diff v1.json v2.json                 two written documents

OLD and NEW are each a .json document written by corps schema, or modules to describe now.
--diff prints every change and exits 1 if any is breaking (a field removed, retyped or added
without a default; a message removed), 0 if all are compatible (optional fields or messages
added). Nothing connects to NATS."""


def add_schema_parser(sub: Any, formatter: Callable[[str], argparse.HelpFormatter]) -> None:
    """Register ``corps schema`` on the top-level subparsers."""
    p = sub.add_parser("schema", help="write the AsyncAPI 3.0 contract of modules; --diff: check compatibility",
                       description="Describe the actors, events and sagas of Python modules as an AsyncAPI 3.0 "
                                   "document, or compare two versions of their messages.",
                       epilog=SCHEMA_EPILOG, formatter_class=formatter)
    p.add_argument("targets", nargs="*", metavar="MODULE", help="a module, or MODULE:CLASS")
    p.add_argument("--diff", nargs=2, metavar=("OLD", "NEW"), help="compare two versions (files or modules)")
    p.add_argument("--namespace", default="corps", metavar="NS", help="the subjects' namespace (default: corps)")
    p.add_argument("--title", default="corps services", help="info.title of the document")
    p.add_argument("--app-version", default="0.0.0", metavar="V", help="info.version of the document")
    p.add_argument("--output", "-o", metavar="FILE", help="write there instead of stdout")
    p.set_defaults(func=cmd_schema)


def cmd_schema(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.diff is not None:
        if args.targets:
            parser.exit(2, "corps schema: error: --diff takes OLD and NEW only, no MODULE\n")
        old, new = (_document(side, args, parser) for side in args.diff)
        return _print_diff(old, new, parser)
    if not args.targets:
        parser.exit(2, "corps schema: error: give a MODULE (or --diff OLD NEW)\n")
    text = json.dumps(_describe(args.targets, args, parser), indent=2) + "\n"
    if args.output is None:
        sys.stdout.write(text)
        return 0
    try:
        Path(args.output).write_text(text, encoding="utf-8")
    except OSError as exc:
        print(f"corps: error: cannot write {args.output}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


def _describe(targets: list[str], args: argparse.Namespace, parser: argparse.ArgumentParser) -> dict[str, Any]:
    classes: list[type] = []
    for target in targets:
        try:
            classes += classes_named(target)
        except LoadError as problem:
            if problem.detail:
                print(problem.detail, file=sys.stderr, end="")
            parser.exit(2, f"corps schema: error: {problem}\n")
    return asyncapi(classes, namespace=args.namespace, title=args.title, version=args.app_version)


def _document(side: str, args: argparse.Namespace, parser: argparse.ArgumentParser) -> dict[str, Any]:
    """A side of --diff: a written document (a path to a file), or modules described now."""
    path = Path(side)
    if side.endswith(".json") or path.is_file():
        try:
            doc: Any = json.loads(path.read_bytes())
            schemas_of(doc)
        except (OSError, ValueError) as exc:  # json's errors are ValueErrors; so are schemas_of's
            parser.exit(2, f"corps schema: error: cannot read {side}: {exc}\n")
        return dict(doc)
    return _describe(side.split(","), args, parser)


def _print_diff(old: dict[str, Any], new: dict[str, Any], parser: argparse.ArgumentParser) -> int:
    changes = diff(schemas_of(old), schemas_of(new))
    for change in changes:
        print(change)
    try:
        check(changes)
    except IncompatibleSchema as exc:
        print(f"corps schema: {len(exc.problems)} breaking change(s)", file=sys.stderr)
        return 1
    print(f"compatible ({len(changes)} change(s))" if changes else "no changes")
    return 0
