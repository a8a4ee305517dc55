#!/usr/bin/env python3
"""Checks deploy/ (image, entrypoint, Kubernetes manifests) against the tree.

    python3 tests/deploy/check_manifests.py --source . [--kubectl PATH] [--build DIR]

Renders every kustomization under deploy/k8s with `kubectl kustomize` and
checks what a wrong edit would break: probes and ports against the
programs' listen addresses, config keys against configs/*.yaml, config
paths against the pods' mounts, programs and flags against the entrypoint,
CMake install targets and CLI sources, security contexts, resources and
threads, drain versus grace period, the Indexed Job's rendezvous,
Service/PDB/HPA/Ingress references, and the runtime packages of the
Dockerfile. Then it breaks copies of the tree on purpose and requires each
break to be caught (--no-self-test skips that).

Not a goal: building the image (no Docker in CI) or talking to a cluster.
"""
import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile

import yaml

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from manifest_breaks import BREAKS  # noqa: E402
from manifest_rules import PROGRAMS, Render  # noqa: E402

RUNTIME_MUST = ["libopenblas0-pthread", "libtorch1.13"]  # libtorch's BLAS, libtorch itself
_apt_cache = {}


class Checker:
    def __init__(self, root, kubectl, build=None):
        self.root, self.kubectl, self.build = root, kubectl, build
        self.errors, self.notes = [], []

    def error(self, where, what):
        self.errors.append(f"{where}: {what}")

    def note(self, what):
        if what not in self.notes:
            self.notes.append(what)

    def read(self, rel):
        with open(os.path.join(self.root, rel), encoding="utf-8") as f:
            return f.read()

    # ---- the image: entrypoint, CMake, Dockerfile, packages ----

    def load_entrypoint(self):
        text = self.read("deploy/entrypoint.sh")
        bin_dir = re.search(r"^BIN=(\S+)", text, re.M)
        self.bin_dir = bin_dir.group(1) if bin_dir else None
        self.commands = {}  # command word -> (binary, fixed args)
        body = text[text.index('case "$command" in'):]
        for labels, arm in re.findall(r"^\s*([a-z][\w|\s-]*)\)\s*\n(.*?);;", body, re.M | re.S):
            run = re.search(r'exec "\$BIN/([\w.-]+)"((?: [\w-]+)*) "\$@"', arm)
            for label in labels.split("|"):
                if run:
                    self.commands[label.strip()] = (run.group(1), run.group(2).split())
        if not self.commands:
            self.error("deploy/entrypoint.sh", "no `exec \"$BIN/<program>\"` arms found")

    def load_sources(self):
        cmake = ""
        for path in glob.glob(os.path.join(self.root, "**/CMakeLists.txt"), recursive=True):
            if not re.search(r"/(build[^/]*|out)/", os.path.relpath(path, self.root) + "/"):
                cmake += open(path, encoding="utf-8").read() + "\n"
        cmake = re.sub(r"#.*", "", cmake)
        names = dict(re.findall(
            r"set_target_properties\(\s*(\S+)\s+PROPERTIES[^)]*?OUTPUT_NAME\s+\"?([\w.-]+)",
                                cmake))
        self.executables = {names.get(t, t) for t in re.findall(r"add_executable\(\s*([\w.-]+)", cmake)}
        self.installed = set()
        keyword = r"(?:\s+(?:RUNTIME|EXPORT|DESTINATION|LIBRARY|ARCHIVE)\b|\))"
        for targets in re.findall(r"install\(\s*TARGETS\s+([^)]*?)" + keyword,
                                  cmake, re.S):
            self.installed |= {names.get(t, t) for t in targets.split()}
        self.options = {}  # program -> flags its sources declare (None: sources absent)
        for program, pattern in (("vitrine", "cli/*.cc"), ("vitrined", "router/vitrined.cc"),
                                 ("vitrine-gateway", "gateway/*.cc")):
            text = "".join(open(p, encoding="utf-8").read()
                           for p in glob.glob(os.path.join(self.root, pattern)))
            flags = set()
            for spec in re.findall(r'add_(?:option|flag)\(\s*"([^"]+)"', text):
                flags |= {f for f in spec.split(",") if f.startswith("-")}
            self.options[program] = flags or None  # None: sources absent, options unchecked
            if program == "vitrine":
                self.subcommands = set(re.findall(r'add_subcommand\(\s*"([\w-]+)"', text))

    def check_image(self):
        self.load_entrypoint()
        self.load_sources()
        where = "deploy/entrypoint.sh"
        for binary in sorted({b for b, _ in self.commands.values()} - self.installed):
            if binary not in self.executables and binary == "vitrine-gateway":
                self.note(f"{where}: '{binary}' is not built by CMake yet (gateway/ pending): "
                          "its install target is not checked")
            else:
                self.error(where, f"runs '{binary}', which no CMake install(TARGETS ...) installs")
        for command, (binary, fixed) in sorted(self.commands.items()):
            for sub in fixed:
                if sub not in self.subcommands:
                    self.error(where, f"'{command}' runs `vitrine {sub}`: no such subcommand in cli/")
        docker = self.read("deploy/Dockerfile")
        where = "deploy/Dockerfile"
        stages = re.findall(r"^FROM\s+(\S+)", docker, re.M)
        if len(stages) < 2 or stages[0] != "debian:12" or stages[-1] != "debian:12-slim":
            self.error(where, f"stages must be FROM debian:12 (build) ... FROM debian:12-slim "
                       f"(runtime), found {stages}")
        runtime = docker[docker.rindex("FROM "):]
        for needle, why in (("setup.sh", "the build stage must run scripts/setup.sh"),
                            ("-DVITRINE_BUILD_TESTS=OFF", "build without tests"),
                            ("OMP_WAIT_POLICY=PASSIVE", "set OMP_WAIT_POLICY=PASSIVE"),
                            ("COPY configs/ /etc/vitrine/", "copy configs/ to /etc/vitrine")):
            if needle not in docker:
                self.error(where, f"{why} (no '{needle}')")
        prefix = re.search(r"cmake --install \S+ --prefix (\S+)", docker)
        copy = re.search(r"COPY --from=\S+ (\S+) (\S+)", runtime)
        if not prefix or not copy or copy.group(1).rstrip("/") != prefix.group(1) + "/bin":
            self.error(where, "the runtime stage must COPY the install prefix's bin/ from the build stage")
        elif copy.group(2).rstrip("/") != self.bin_dir:
            self.error(where, f"programs are copied to {copy.group(2)} but the entrypoint runs "
                       f"them from BIN={self.bin_dir}")
        entry = re.search(r"COPY deploy/entrypoint.sh (\S+)", runtime)
        if not entry or f'ENTRYPOINT ["{entry.group(1)}"]' not in runtime:
            self.error(where, "ENTRYPOINT must be the copied deploy/entrypoint.sh")
        user = re.search(r"^USER\s+(\d+)", runtime, re.M)
        self.uid = int(user.group(1)) if user else None
        if self.uid is None or self.uid == 0:
            self.error(where, "the runtime stage must end as a numeric non-root USER")
        install = re.search(
            r"apt-get install[^\n]*?--no-install-recommends((?:\s*\\\n|[ \t]+[\w.+-]+)+)", runtime)
        self.packages = re.findall(r"[\w.+-]+", install.group(1)) if install else []
        for must in RUNTIME_MUST:
            if must not in self.packages:
                self.error(where, f"runtime packages lack {must}")
        self.check_packages_exist(where)
        if self.build:
            self.check_linked_libraries(where)
        if not re.search(r"^\s*[^#\n]*\bkubernetes-client\b", self.read("scripts/setup.sh"), re.M):
            self.error("scripts/setup.sh", "PACKAGES must include kubernetes-client (kubectl for this test)")

    def check_packages_exist(self, where):
        if not shutil.which("apt-cache"):
            self.note("apt-cache not found: runtime package names not looked up")
            return
        wanted = [p for p in self.packages if p not in _apt_cache]
        if wanted:
            out = subprocess.run(["apt-cache", "policy", *wanted], capture_output=True, text=True).stdout
            for name, candidate in re.findall(r"^(\S+):\n(?:\s+Installed:.*\n)?\s+Candidate: (\S+)", out, re.M):
                _apt_cache[name] = candidate != "(none)"
        for p in self.packages:
            if not _apt_cache.get(p, False):
                self.error(where, f"runtime package '{p}' is not known to apt (apt-cache policy)")

    def check_linked_libraries(self, where):
        """--build: every library the programs link directly comes from a named package."""
        for rel in ("router/vitrined", "cli/vitrine", "gateway/vitrine-gateway"):
            binary = os.path.join(self.build, rel)
            if not os.path.exists(binary):
                continue
            needed = re.findall(r"\(NEEDED\).*\[(.+)\]", subprocess.run(
                ["readelf", "-d", binary], capture_output=True, text=True).stdout)
            resolved = dict(re.findall(r"^\s*(\S+) => (\S+)", subprocess.run(
                ["ldd", binary], capture_output=True, text=True).stdout, re.M))
            for lib in needed:
                path = resolved.get(lib)
                owner = ""
                for candidate in ([path, os.path.realpath(path)] if path else []):
                    owner = owner or subprocess.run(["dpkg", "-S", candidate], capture_output=True,
                                                    text=True).stdout.split(":")[0]
                if not path or not owner:
                    self.error(where, f"{rel} needs {lib}, whose package is unknown")
                elif owner not in self.packages:
                    self.error(where, f"{rel} needs {lib} from {owner}, not installed in the runtime stage")

    # ---- the manifests ----

    def render(self, directory):
        run = subprocess.run([self.kubectl, "kustomize", directory], capture_output=True, text=True)
        if run.returncode != 0:
            self.error(os.path.relpath(directory, self.root), f"kubectl kustomize failed: {run.stderr.strip()}")
            return []
        return [d for d in yaml.safe_load_all(run.stdout) if d]

    def check_manifests(self):
        twins = {}
        for name in PROGRAMS:
            path = os.path.join(self.root, "configs", name)
            if os.path.exists(path):
                twins[name] = yaml.safe_load(open(path, encoding="utf-8"))
            else:
                self.note(f"configs/{name} absent: its deploy copies' keys are not compared")
        dirs = sorted({os.path.dirname(p) for p in glob.glob(
            os.path.join(self.root, "deploy/k8s/**/kustomization.yaml"), recursive=True)})
        if not dirs:
            self.error("deploy/k8s", "no kustomization.yaml found")
        for directory in dirs:
            Render(self, os.path.relpath(directory, self.root), self.render(directory), twins).check()

    def check_docs(self, secrets):
        path = os.path.join(self.root, "docs/deploy.md")
        if not os.path.exists(path):
            self.error("docs/deploy.md", "missing")
            return
        text = open(path, encoding="utf-8").read()
        for name, keys in sorted(secrets.items()):
            if f"create secret generic {name}" not in text:
                self.error("docs/deploy.md", f"does not show how to create Secret {name}")
            for key in sorted(keys):
                if f"--from-file={key}=" not in text:
                    self.error("docs/deploy.md", f"Secret {name}: key '{key}' is never created "
                               f"(--from-file={key}=...)")

    def run(self):
        self.secrets = {}
        self.check_image()
        self.check_manifests()
        self.check_docs(self.secrets)
        return not self.errors


def copy_tree(source, target):
    """What the checker reads, without build trees or history."""
    skip = shutil.ignore_patterns(".git", "build*", "out", "*.sqlite", "__pycache__")
    shutil.copytree(source, target, ignore=skip)


def self_test(source, kubectl):
    """Breaks copies of the tree on purpose: every break must be reported."""
    failures = []
    with tempfile.TemporaryDirectory(prefix="vitrine-deploy-") as tmp:
        pristine = os.path.join(tmp, "pristine")
        copy_tree(source, pristine)
        work = os.path.join(tmp, "work")
        copy_tree(source, work)
        for name, edit, expected in BREAKS:
            for part in ("deploy", "docs"):
                shutil.rmtree(os.path.join(work, part))
                shutil.copytree(os.path.join(pristine, part), os.path.join(work, part))
            try:
                edit(work)
            except (AssertionError, KeyError, StopIteration, ValueError) as e:
                failures.append(f"break '{name}' no longer applies to the tree ({e!r}): update "
                                "tests/deploy/manifest_breaks.py")
                continue
            checker = Checker(work, kubectl)
            checker.run()
            if not any(expected in e for e in checker.errors):
                failures.append(f"break '{name}' went unnoticed (expected an error with "
                                f"'{expected}'; got {checker.errors or 'none'})")
            else:
                print(f"self-test: caught {name}")
    return failures


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", default=".", help="repository root")
    parser.add_argument("--kubectl", default=os.environ.get("KUBECTL", "kubectl"),
                        help="kubectl to render with (default: $KUBECTL or kubectl on PATH)")
    parser.add_argument("--build", help="a build directory: also check that the runtime image "
                        "installs the package of every library its programs link")
    parser.add_argument("--no-self-test", action="store_true",
                        help="skip breaking copies of the tree to prove the checks bite")
    args = parser.parse_args()
    root = os.path.abspath(args.source)
    kubectl = shutil.which(args.kubectl)
    if kubectl is None:
        print(f"check_manifests: '{args.kubectl}' not found. kubectl renders the kustomizations: "
              "install Debian's kubernetes-client (scripts/setup.sh does) or pass --kubectl.",
              file=sys.stderr)
        return 1
    checker = Checker(root, kubectl, build=args.build)
    ok = checker.run()
    for note in checker.notes:
        print(f"note: {note}")
    for error in checker.errors:
        print(f"error: {error}")
    if not ok:
        print(f"check_manifests: {len(checker.errors)} problems in deploy/", file=sys.stderr)
        return 1
    print("check_manifests: deploy/ is consistent with the tree")
    if not args.no_self_test:
        failures = self_test(root, kubectl)
        for failure in failures:
            print(f"self-test: {failure}")
        if failures:
            return 1
        print(f"self-test: all {len(BREAKS)} breaks caught")
    return 0


if __name__ == "__main__":
    sys.exit(main())
