"""Figures of the code's shape: longest functions, function-level imports of the package's own modules,
and how many places each shared concept is written in. Run on any checkout:

    python benchmarks/bench_codebase.py [ROOT]

Used to measure the architecture step (issue 14) before and after; no third-party dependencies.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

# A concept "lives" in a place when one of these patterns writes it out (a definition or a literal).
CONCEPTS = {
    "case-file naming (-ct.nrrd globs, suffix tuples)": [r'glob\("\*-ct', r'\("\.seg\.nrrd", "\.nrrd"',
                                                         r'\(\s*"\.nii", "\.nii\.gz"', r'-ct\.nrrd"\)\]'],
    "26-connectivity structure": [r"np\.ones\(\(3, 3, 3\)"],
    "grid comparison": [r"def check_same_grid", r"def _?grid_differences", r"allclose\(self\.spacing"],
    "label-value validation": [r"non-integer values"],
    "LPS reorientation": [r"DICOMOrient\("],
    "inference defaults (min_component_mm3)": [r'min_component_mm3"[:,]\s*[\d.]',
                                               r"min_component_mm3: float = [\d.]"],
    "label versioning (vNNN)": [r"v\{[a-z_]*:03d\}", r"v\(\\d\{3,\}\)"],
}


def function_lengths(tree: ast.AST, where: str) -> list[tuple[int, str]]:
    return [(node.end_lineno - node.lineno + 1, f"{where}:{node.name}") for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)]


def own_function_imports(tree: ast.AST) -> int:
    count = 0
    for func in ast.walk(tree):
        if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(func):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("lnq_napari"):
                count += 1
            elif isinstance(node, ast.Import) and any(a.name.startswith("lnq_napari") for a in node.names):
                count += 1
    return count


def main(root: Path) -> None:
    files = sorted((root / "lnq_napari").rglob("*.py"))
    lengths, imports, places = [], 0, {name: set() for name in CONCEPTS}
    for path in files:
        text = path.read_text()
        rel = str(path.relative_to(root))
        tree = ast.parse(text)
        lengths += function_lengths(tree, rel)
        imports += own_function_imports(tree)
        if "/phantom/" in rel:
            continue  # the generator's own geometry is not one of the shared concepts
        for name, patterns in CONCEPTS.items():
            if any(re.search(p, text) for p in patterns):
                places[name].add(rel)
    lengths.sort(reverse=True)
    print(f"modules: {len(files)}, lines: {sum(len(p.read_text().splitlines()) for p in files)}")
    print("longest functions:")
    for n, name in lengths[:8]:
        print(f"  {n:4d}  {name}")
    print(f"function-level imports of lnq_napari's own modules: {imports}")
    print("places each concept is written in:")
    for name, where in places.items():
        print(f"  {len(where):2d}  {name}: {', '.join(sorted(where))}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1])
