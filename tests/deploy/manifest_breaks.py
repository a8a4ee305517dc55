"""Deliberate breakages for check_manifests.py's self-test.

Each entry edits a copy of the tree the way a careless change would and
names a fragment of the error the checker must report. An edit that no
longer finds what it changes raises, so the self-test fails instead of
silently proving nothing.
"""
import os

import yaml

BASE = "deploy/k8s/base"


def edit_text(path, old, new):
    def edit(root):
        full = os.path.join(root, path)
        text = open(full, encoding="utf-8").read()
        assert old in text, f"'{old}' not in {path}"
        open(full, "w", encoding="utf-8").write(text.replace(old, new, 1))
    return edit


def edit_object(path, kind, name, change):
    """Loads a multi-document manifest, changes one object, writes it back."""
    def edit(root):
        full = os.path.join(root, path)
        docs = list(yaml.safe_load_all(open(full, encoding="utf-8")))
        target = next(d for d in docs if d and d["kind"] == kind and d["metadata"]["name"] == name)
        change(target)
        with open(full, "w", encoding="utf-8") as f:
            yaml.safe_dump_all(docs, f, sort_keys=False)
    return edit


def container(obj):
    return obj["spec"]["template"]["spec"]["containers"][0]


def env(obj, name, value):
    entry = next(e for e in container(obj)["env"] if e["name"] == name)
    entry["value"] = value


def remove_read_only_data(obj):
    mount = next(m for m in container(obj)["volumeMounts"] if m["mountPath"] == "/data")
    del mount["readOnly"]
    volume = next(v for v in obj["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"])
    del volume["persistentVolumeClaim"]["readOnly"]


def set_service_port(obj):
    next(p for p in obj["spec"]["ports"] if p["name"] == "grpc")["port"] = 50062


DAEMON = (f"{BASE}/daemon.yaml", "Deployment", "vitrine-daemon")
ROUTER = f"{BASE}/config/router.yaml"

BREAKS = [
    ("a probe removed",
     edit_object(*DAEMON, lambda d: container(d).pop("readinessProbe")), "no readinessProbe"),
    ("the daemon's Service port changed",
     edit_object(f"{BASE}/daemon.yaml", "Service", "vitrine-daemon", set_service_port),
     "gateway.yaml's daemon address uses"),
    ("the daemon's listen port changed",
     edit_text(ROUTER, "listen: 0.0.0.0:50061", "listen: 0.0.0.0:50071"),
     "grpc on the listen port 50071"),
    ("a loopback listen address",
     edit_text(f"{BASE}/config/trainer.yaml", "listen: 0.0.0.0:50062", "listen: 127.0.0.1:50062"),
     "is loopback"),
    ("threads 0 in a pod",
     edit_text(ROUTER, "threads: 2\n", "threads: 0\n"), "threads is 0"),
    ("a misspelt config key",
     edit_text(ROUTER, "  max_batch: 8\n", "  max_batchs: 8\n"),
     "'engine.max_batchs' is not in configs/router.yaml"),
    ("a config path outside every mount",
     edit_text(f"{BASE}/config/trainer.yaml", "state_dir: /data/trainer", "state_dir: /srv/trainer"),
     "is under no volumeMount"),
    ("WORLD_SIZE apart from completions",
     edit_object(f"{BASE}/jobs.yaml", "Job", "vitrine-train-dist", lambda d: env(d, "WORLD_SIZE", "3")),
     "WORLD_SIZE 3 != completions 2"),
    ("MASTER_ADDR without the headless Service",
     edit_object(f"{BASE}/jobs.yaml", "Job", "vitrine-train-dist",
                 lambda d: env(d, "MASTER_ADDR", "vitrine-train-dist-0")),
     "is not rank 0's name"),
    ("an overlay resizing the world without WORLD_SIZE",
     edit_text("deploy/k8s/overlays/production/train-world-size.yaml", 'value: "4"', 'value: "2"'),
     "WORLD_SIZE 2 != completions 4"),
    ("a writable root filesystem",
     edit_object(f"{BASE}/gateway.yaml", "Deployment", "vitrine-gateway",
                 lambda d: container(d)["securityContext"].update(readOnlyRootFilesystem=False)),
     "readOnlyRootFilesystem must be true"),
    ("a grace period shorter than the drain",
     edit_object(*DAEMON, lambda d: d["spec"]["template"]["spec"].update(terminationGracePeriodSeconds=20)),
     "must exceed preStop"),
    ("a PodDisruptionBudget selecting nothing",
     edit_object(f"{BASE}/daemon.yaml", "PodDisruptionBudget", "vitrine-daemon",
                 lambda d: d["spec"]["selector"]["matchLabels"].update({"vitrine/track": "stabel"})),
     "matches no Deployment"),
    ("a command the entrypoint does not know",
     edit_object(*DAEMON, lambda d: container(d)["args"].__setitem__(0, "vitrind")),
     "is not a command of deploy/entrypoint.sh"),
    ("an option the program does not have",
     edit_object(f"{BASE}/jobs.yaml", "Job", "vitrine-train",
                 lambda d: container(d)["args"].__setitem__(3, "--output-dir")),
     "has no option '--output-dir'"),
    ("a data volume only read but mounted read-write",
     edit_object(*DAEMON, remove_read_only_data), "mount it readOnly"),
    ("a program the image does not install",
     edit_text("deploy/entrypoint.sh", 'exec "$BIN/vitrined" "$@"', 'exec "$BIN/vitrined2" "$@"'),
     "which no CMake install(TARGETS ...) installs"),
    ("a Secret the docs never create",
     edit_text("docs/deploy.md", "--from-file=admin-tokens=", "--from-file=admin-token="),
     "key 'admin-tokens' is never created"),
]
