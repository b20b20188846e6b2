"""Julia source read with tree-sitter-julia: method signatures, struct fields, calls, loads.

Used by ``scripts/describe_globtim_api.py`` (what Globtim defines) and by the static check of
the driver against it (tests/unit/test_globtim_api.py). tree-sitter and tree-sitter-julia are
test extras, imported only when a function here runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

Node = Any  # tree_sitter.Node


def parse(source: bytes) -> Node:
    import tree_sitter_julia
    from tree_sitter import Language, Parser

    return Parser(Language(tree_sitter_julia.language())).parse(source).root_node


def text(node: Node) -> str:
    return str(node.text.decode("utf-8"))


def walk(node: Node) -> Iterator[Node]:
    yield node
    for child in node.children:
        yield from walk(child)


@dataclass
class Method:
    line: int  # 1-based
    min_positional: int
    max_positional: int | None  # None: varargs
    keywords: list[str] = field(default_factory=list)
    any_keyword: bool = False  # kwargs...

    def to_dict(self) -> dict[str, Any]:
        return {
            "line": self.line,
            "min_positional": self.min_positional,
            "max_positional": self.max_positional,
            "keywords": sorted(self.keywords),
            "any_keyword": self.any_keyword,
        }


def _param_name(node: Node) -> str | None:
    while node.type in ("typed_expression", "named_argument", "splat_expression"):
        node = node.named_children[0]
    return text(node) if node.type == "identifier" else None


def _call_of_signature(sig: Node) -> Node | None:
    node = sig.named_children[0] if sig.type == "signature" and sig.named_children else sig
    while node.type in ("typed_expression", "where_expression"):
        node = node.named_children[0]
    return node if node.type == "call_expression" else None


def _callee_name(call: Node) -> str | None:
    callee = call.named_children[0]
    if callee.type == "field_expression":  # Base.show(...) or Globtim._solve_hc(...)
        callee = callee.named_children[-1]
    return text(callee) if callee.type == "identifier" else None


def _method(call: Node) -> Method:
    args = next(c for c in call.named_children if c.type == "argument_list")
    positional: list[Node] = []
    keywords: list[Node] = []
    after_semicolon = False
    for child in args.children:
        if child.type == ";":
            after_semicolon = True
        elif child.is_named:
            (keywords if after_semicolon else positional).append(child)
    method = Method(call.start_point[0] + 1, 0, 0)
    for param in positional:
        if param.type == "splat_expression":
            method.max_positional = None
        elif param.type == "named_argument":  # optional positional
            if method.max_positional is not None:
                method.max_positional += 1
        else:
            method.min_positional += 1
            if method.max_positional is not None:
                method.max_positional += 1
    for param in keywords:
        if param.type == "splat_expression":
            method.any_keyword = True
        else:
            name = _param_name(param)
            if name:
                method.keywords.append(name)
    return method


def methods(root: Node) -> dict[str, list[Method]]:
    """Every method defined in a file, long form or short form, also inside macros."""
    found: dict[str, list[Method]] = {}
    for node in walk(root):
        call = None
        if node.type == "function_definition":
            sig = [c for c in node.named_children if c.type == "signature"]
            call = _call_of_signature(sig[0]) if sig else None
        elif node.type == "assignment" and node.named_children:
            call = _call_of_signature(node.named_children[0])
        if call is None:
            continue
        name = _callee_name(call)
        if name:
            found.setdefault(name, []).append(_method(call))
    return found


def structs(root: Node) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for node in walk(root):
        if node.type != "struct_definition":
            continue
        head = next(c for c in node.named_children if c.type == "type_head").named_children[0]
        while head.type in ("binary_expression", "parametrized_type_expression"):
            head = head.named_children[0]
        fields = []
        for child in node.named_children:
            if child.type in ("typed_expression", "identifier"):
                name = _param_name(child)
                if name:
                    fields.append(name)
        out[text(head)] = {"line": node.start_point[0] + 1, "fields": fields}
    return out


@dataclass(frozen=True)
class Call:
    name: str
    line: int
    positional: int
    keywords: tuple[str, ...]
    splat: bool


def module_calls(root: Node, module: str) -> list[Call]:
    """Calls written ``module.name(...)`` in a file."""
    out = []
    for node in walk(root):
        if node.type != "call_expression":
            continue
        callee = node.named_children[0]
        if callee.type != "field_expression" or text(callee.named_children[0]) != module:
            continue
        args = [c for c in node.named_children if c.type == "argument_list"]
        positional, keywords, splat = 0, [], False
        for child in args[0].named_children if args else []:
            if child.type == "named_argument":
                keywords.append(text(child.named_children[0]))
            elif child.type == "splat_expression":
                splat = True
            else:
                positional += 1
        out.append(Call(text(callee.named_children[-1]), node.start_point[0] + 1, positional,
                        tuple(keywords), splat))
    return out


def module_references(root: Node, module: str) -> list[tuple[str, int]]:
    """Every ``module.name`` in a file (called or not), with its line."""
    return [
        (text(n.named_children[-1]), n.start_point[0] + 1)
        for n in walk(root)
        if n.type == "field_expression" and text(n.named_children[0]) == module
    ]


def loads(root: Node) -> list[tuple[str, int]]:
    """Top-level package names of every using/import statement, with their lines."""
    out = []
    for node in walk(root):
        if node.type not in ("using_statement", "import_statement"):
            continue
        for child in node.named_children:
            first = child
            while first.named_children and first.type != "identifier":
                first = first.named_children[0]
            if first.type == "identifier":
                out.append((text(first), node.start_point[0] + 1))
    return out
