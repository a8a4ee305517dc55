#!/usr/bin/env python3
"""Checks that the tree keeps DESIGN.md's layers.

    python3 tests/layout/check_layers.py --source . [--no-self-test]

Three checks, each over every C++ file of a library folder:

* includes: a file includes project headers only from its own folder and
  the folders below it (common <- models <- prompts <- {agents, training};
  common <- catalog <- {dataset, agents}; agents <- router;
  protos <- {router, training/service, gateway}); nothing includes upward,
  and dataset/ and training/ never include each other;
* foreign headers: models/, prompts/ and agents/ include no gRPC,
  protobuf, YAML or SQLite header; training/ (outside service/) no SQLite,
  gRPC or YAML; dataset/ and catalog/ no libtorch;
* links: each folder's CMakeLists.txt links only the vitrine_* targets of
  the folders below it, so a header included from above would not link.

Then it breaks copies of the tree on purpose (an upward include, a foreign
header, an upward link) and requires each break to be caught.
"""
import argparse
import os
import re
import shutil
import sys
import tempfile

# Folder -> project folders its code may include (itself included).
ALLOWED = {
    "common": {"common"},
    "protos": {"protos", "common"},
    "catalog": {"catalog", "common"},
    "models": {"models", "common"},
    "prompts": {"prompts", "models", "common"},
    "agents": {"agents", "prompts", "models", "catalog", "common"},
    "dataset": {"dataset", "catalog", "common"},
    "training": {"training", "prompts", "models", "common"},
    "training/service": {"training/service", "training", "prompts", "models", "common", "protos"},
    "router": {"router", "agents", "prompts", "models", "catalog", "common", "protos"},
    "gateway": {"gateway", "common", "protos"},
}
# Library targets each folder defines (its CMakeLists.txt) and may link.
TARGETS = {
    "common": {"vitrine_common", "vitrine_config_yaml", "vitrine_sqlite", "vitrine_program"},
    "protos": {"vitrine_protos"},
    "catalog": {"vitrine_catalog"},
    "models": {"vitrine_models"},
    "prompts": {"vitrine_prompts"},
    "agents": {"vitrine_agents"},
    "dataset": {"vitrine_dataset"},
    "training": {"vitrine_training"},
    "training/service": {"vitrine_training_service"},
    "router": {"vitrine_router"},
    "gateway": {"vitrine_gateway"},
}
# Header prefixes a folder must not include.
GRPC = ("grpcpp/", "grpc/", "google/protobuf/", "vitrine/v1/")
YAML = ("yaml-cpp/",)
SQLITE = ("sqlite3.h", "SQLiteCpp/")
TORCH = ("torch/", "ATen/", "c10/")
FORBIDDEN = {
    "models": GRPC + YAML + SQLITE,
    "prompts": GRPC + YAML + SQLITE,
    "agents": GRPC + YAML + SQLITE,
    "training": GRPC + YAML + SQLITE,
    "dataset": TORCH + GRPC,
    "catalog": TORCH + GRPC,
    "common": TORCH + GRPC,
}
# Libraries a folder's targets must not link.
SQLITE_LIBS = ("SQLite::SQLite3", "vitrine_sqlite")
YAML_LIBS = ("yaml-cpp", "vitrine_config_yaml")
GRPC_LIBS = ("PkgConfig::GRPCPP", "PkgConfig::PROTOBUF", "vitrine_protos")
FORBIDDEN_LINKS = {
    "models": SQLITE_LIBS + YAML_LIBS + GRPC_LIBS,
    "prompts": SQLITE_LIBS + YAML_LIBS + GRPC_LIBS,
    "agents": SQLITE_LIBS + YAML_LIBS + GRPC_LIBS,
    "training": SQLITE_LIBS + YAML_LIBS + GRPC_LIBS,
    "dataset": ("${TORCH_LIBRARIES}",) + GRPC_LIBS,
    "catalog": ("${TORCH_LIBRARIES}",) + GRPC_LIBS,
}
# Folders whose programs only wire libraries: anything goes.
UNCHECKED = {"cli", "bench", "tests", "deploy", "docs", "scripts", "configs", "build"}

INCLUDE = re.compile(r'^\s*#\s*include\s*[<"]([^">]+)[">]', re.M)
LINK = re.compile(r"target_link_libraries\s*\(([^)]*)\)", re.S)


def folder_of(rel):
    """The layer a source file belongs to: training/service or a top folder."""
    parts = rel.split("/")
    if parts[0] == "training" and len(parts) > 2 and parts[1] == "service":
        return "training/service"
    return parts[0]


def project_folder(header):
    """The layer a project header lives in, or None for a foreign header."""
    parts = header.split("/")
    if len(parts) < 2:
        return None
    if parts[0] == "training" and parts[1] == "service":
        return "training/service"
    return parts[0] if parts[0] in ALLOWED else None


def library_sources(root):
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        top = rel_dir.split(os.sep)[0]
        if rel_dir == ".":
            dirnames[:] = [d for d in dirnames if d not in UNCHECKED and not d.startswith(".")]
            continue
        if top not in ALLOWED:
            continue
        for name in filenames:
            if name.endswith((".h", ".cc", ".inc")):
                yield os.path.relpath(os.path.join(dirpath, name), root).replace(os.sep, "/")


def check_tree(root):
    errors = []
    for rel in library_sources(root):
        layer = folder_of(rel)
        with open(os.path.join(root, rel), encoding="utf-8") as f:
            text = f.read()
        for header in INCLUDE.findall(text):
            target = project_folder(header)
            if target is not None and target not in ALLOWED[layer]:
                errors.append(f"{rel}: includes {header}: {layer}/ may not include {target}/ "
                              f"(allowed: {', '.join(sorted(ALLOWED[layer]))})")
            # training/service/ is the training layer's gRPC and SQLite edge:
            # FORBIDDEN has no entry for it.
            for prefix in FORBIDDEN.get(layer, ()):
                if header == prefix or header.startswith(prefix):
                    errors.append(f"{rel}: includes <{header}>: {layer}/ keeps off {prefix}")
    for layer, allowed in ALLOWED.items():
        cmake = os.path.join(root, layer, "CMakeLists.txt")
        if not os.path.exists(cmake):
            errors.append(f"{layer}/CMakeLists.txt: missing")
            continue
        with open(cmake, encoding="utf-8") as f:
            text = f.read()
        may_link = set().union(*(TARGETS[a] for a in allowed))
        if layer == "training":  # its CMakeLists also adds service/
            may_link |= TARGETS["training"]
        for args in LINK.findall(text):
            words = args.split()
            owner = words[0] if words else ""
            for word in words[1:]:
                if word.startswith("vitrine_") and word not in may_link:
                    errors.append(f"{layer}/CMakeLists.txt: {owner} links {word}: {layer}/ may "
                                  f"link only {', '.join(sorted(may_link))}")
                if word in FORBIDDEN_LINKS.get(layer, ()):
                    errors.append(f"{layer}/CMakeLists.txt: {owner} links {word}, which "
                                  f"{layer}/ keeps off")
    return errors


# Deliberate breaks: (description, file, text appended or replaced).
BREAKS = [
    ("models/ includes router/", "models/llama.h", ('append', '#include "router/answerer.h"\n')),
    ("models/ includes gRPC", "models/engine.h", ('append', "#include <grpcpp/grpcpp.h>\n")),
    ("prompts/ includes SQLite", "prompts/prompts.h", ('append', "#include <sqlite3.h>\n")),
    ("training/ includes dataset/", "training/examples.h", ('append', '#include "dataset/tasks.h"\n')),
    ("dataset/ includes training/", "dataset/tasks.h", ('append', '#include "training/examples.h"\n')),
    ("training/ includes catalog/", "training/train_run.cc",
     ('append', '#include "catalog/catalog.h"\n')),
    ("agents/ includes YAML", "agents/qa_agent.cc", ('append', "#include <yaml-cpp/yaml.h>\n")),
    ("dataset/ includes libtorch", "dataset/prepare.cc", ('append', "#include <ATen/ATen.h>\n")),
    ("common/ includes models/", "common/progress.h", ('append', '#include "models/llama.h"\n')),
    ("gateway/ includes router/", "gateway/gateway.h", ('append', '#include "router/answerer.h"\n')),
    ("training/ includes its service", "training/train_run.h",
     ('append', '#include "training/service/job_store.h"\n')),
    ("training/ links agents", "training/CMakeLists.txt",
     ('replace', "PUBLIC vitrine_prompts", "PUBLIC vitrine_agents vitrine_prompts")),
    ("training/ links SQLite", "training/CMakeLists.txt",
     ('replace', "nlohmann_json::nlohmann_json)", "nlohmann_json::nlohmann_json SQLite::SQLite3)")),
    ("models/ links yaml-cpp", "models/CMakeLists.txt",
     ('replace', "PRIVATE PkgConfig::PCRE2", "PRIVATE yaml-cpp PkgConfig::PCRE2")),
    ("dataset/ links training", "dataset/CMakeLists.txt",
     ('replace', "PUBLIC vitrine_catalog", "PUBLIC vitrine_training vitrine_catalog")),
]


def self_test(root):
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        for description, rel, edit in BREAKS:
            copy = os.path.join(tmp, "tree")
            shutil.rmtree(copy, ignore_errors=True)
            for layer in ALLOWED:
                top = layer.split("/")[0]
                if not os.path.exists(os.path.join(copy, top)):
                    shutil.copytree(os.path.join(root, top), os.path.join(copy, top))
            path = os.path.join(copy, rel)
            with open(path, encoding="utf-8") as f:
                text = f.read()
            if edit[0] == "append":
                text += edit[1]
            else:
                if edit[1] not in text:
                    failures.append(f"break '{description}': '{edit[1]}' not in {rel}")
                    continue
                text = text.replace(edit[1], edit[2], 1)
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
            if not check_tree(copy):
                failures.append(f"break '{description}' ({rel}) was not caught")
    return failures


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default=".", help="the tree's root")
    parser.add_argument("--no-self-test", action="store_true", help="skip the deliberate breaks")
    args = parser.parse_args()
    root = os.path.abspath(args.source)
    errors = check_tree(root)
    for e in errors:
        print(f"layers: {e}")
    if not args.no_self_test:
        failures = self_test(root)
        for f in failures:
            print(f"layers self-test: {f}")
        errors += failures
        if not failures:
            print(f"layers: all {len(BREAKS)} deliberate breaks caught")
    if errors:
        print(f"layers: {len(errors)} problem(s)")
        return 1
    print("layers: the tree keeps its layers")
    return 0


if __name__ == "__main__":
    sys.exit(main())
