"""The apps depend on one another one way only (docs/architecture.md):

    classifier (the model) <- batches (photos, runs, the engine) <- reviews (decisions)
                                       ^-- bench (measures the batch path and the review desk)

and torch, timm, onnxruntime and mlflow are imported only inside classifier/. The one call the
other way, the engine queueing review items in its write transaction, is allowed in one place.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APPS = ("classifier", "batches", "reviews", "bench")
# What each app may import of the others.
ALLOWED = {
    "classifier": set(),
    "batches": {"classifier"},
    "reviews": {"classifier", "batches"},
    "bench": {"classifier", "batches", "reviews"},
}
# (file, module): the engine's one call into reviews.
EXCEPTIONS = {("batches/engine.py", "reviews.services")}
MODEL_LIBRARIES = {"torch", "torchvision", "timm", "onnxruntime", "onnx", "onnxscript", "mlflow", "safetensors"}


def imported_modules(path: Path, package: str) -> list[str]:
    """Every module a file imports, anywhere in it (in functions too), with relative imports resolved."""
    modules = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            modules.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                modules.append(".".join(base + ([node.module] if node.module else [])))
            else:
                modules.append(node.module)
    return modules


def violations(root: Path) -> list[str]:
    found = []
    for app in APPS:
        for path in sorted((root / app).rglob("*.py")):
            relative = path.relative_to(root).as_posix()
            package = ".".join(path.relative_to(root).with_suffix("").parts[:-1])
            for module in imported_modules(path, package):
                top = module.split(".")[0]
                if top in APPS and top != app and top not in ALLOWED[app]:
                    if (relative, module) not in EXCEPTIONS:
                        found.append(f"{relative} imports {module}")
                if top in MODEL_LIBRARIES and app != "classifier":
                    found.append(f"{relative} imports {module} (model libraries stay in classifier/)")
    return found


def test_every_import_between_the_apps_goes_one_way():
    assert violations(ROOT) == []


def test_the_engine_has_its_one_call_into_reviews():
    assert "reviews.services" in imported_modules(ROOT / "batches/engine.py", "batches")


def test_an_import_the_wrong_way_is_caught(tmp_path):
    for app in APPS:
        (tmp_path / app).mkdir()
    (tmp_path / "classifier" / "views.py").write_text("def f():\n    from batches.models import Image\n")
    (tmp_path / "batches" / "predict.py").write_text("from reviews import services\nimport torch\n")
    (tmp_path / "reviews" / "services.py").write_text("from .models import ReviewItem\nfrom batches import engine\n")
    assert violations(tmp_path) == [
        "classifier/views.py imports batches.models",
        "batches/predict.py imports reviews",
        "batches/predict.py imports torch (model libraries stay in classifier/)",
    ]


def test_the_top_level_folders_of_the_design_are_in_the_tree():
    """media/ is kept in a clone (its contents are not), with a README on what is stored there."""
    assert (ROOT / "media" / "README.md").is_file()
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    assert "/media/*" in ignored and "!/media/README.md" in ignored
