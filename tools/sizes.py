"""List the largest modules (lines) and functions (lines, decorators included) of a package.

    python tools/sizes.py [genreclf] [--top 8]

The style rule is: no module over ~300 lines, no function over ~60 lines.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path


def sizes(package: Path) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    modules, functions = [], []
    for path in sorted(package.rglob("*.py")):
        text = path.read_text()
        modules.append((len(text.splitlines()), str(path)))
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                start = min([node.lineno] + [d.lineno for d in node.decorator_list])
                functions.append((node.end_lineno - start + 1, f"{path}:{node.lineno} {node.name}"))
    return sorted(modules, reverse=True), sorted(functions, reverse=True)


def main(argv: list[str]) -> int:
    top = int(argv[argv.index("--top") + 1]) if "--top" in argv else 8
    package = Path(next((a for a in argv if not a.startswith("--") and not a.isdigit()), "genreclf"))
    modules, functions = sizes(package)
    print("largest modules (lines):")
    print("\n".join(f"  {n:4d}  {name}" for n, name in modules[:top]))
    print("largest functions (lines):")
    print("\n".join(f"  {n:4d}  {name}" for n, name in functions[:top]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
