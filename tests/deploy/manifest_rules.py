"""The rules check_manifests.py applies to one rendered kustomization.

Render(checker, where, objects, twins).check() reports through
checker.error(); the tables below say what each program's config holds, so
a new program or config key is one entry here.
"""
import os
import re

import yaml

# What each program's config holds, by its ConfigMap key (the same name as
# its twin in configs/): listen addresses, paths it reads and writes, and
# the key that sets its torch or worker threads.
PROGRAMS = {
    "router.yaml": {
        "listen": ["listen", "metrics_listen"],
        "read": ["model", "adapters_dir", "classifier", "catalog", "experiments", "tls.cert",
                 "tls.key", "tls.client_ca", "auth.user_tokens_file", "auth.admin_tokens_file"],
        "write": ["response_log"], "threads": "threads"},
    "gateway.yaml": {"listen": ["listen"],
                     "read": ["daemon_tls_ca", "daemon_token_file", "tokens_file"], "write": []},
    "trainer.yaml": {"listen": ["listen"], "read": [], "write": ["state_dir", "adapters_dir"]},
    "train.yaml": {"listen": [], "read": ["base_model", "dataset"], "write": ["output"],
                   "threads": "threads"},
    "prepare.yaml": {"listen": [], "read": [], "write": [], "threads": "run.threads"},
}
# Entrypoint command (+ subcommand) -> the config its --config names.
CONFIG_OF = {("vitrined",): "router.yaml", ("gateway",): "gateway.yaml",
             ("trainer", "serve"): "trainer.yaml", ("train",): "train.yaml",
             ("prepare",): "prepare.yaml"}
# Command-line options that replace a config path, and prepare's own paths.
PATH_FLAGS = {"--adapters-dir": "adapters_dir", "--state-dir": "state_dir", "--output": "output",
              "--dataset": "dataset", "--base-model": "base_model"}
ARG_PATHS = {"--input": "read", "--out": "write"}
WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "Job")


def get(tree, dotted, default=None):
    for part in dotted.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return default
        tree = tree[part]
    return tree


def key_paths(tree, prefix=""):
    """Every key of a config as a dotted path (mappings only; lists are values)."""
    out = set()
    for key, value in (tree or {}).items():
        path = prefix + str(key)
        out.add(path)
        if isinstance(value, dict):
            out |= key_paths(value, path + ".")
    return out


def port_of(address):
    match = re.fullmatch(r"(?:dns:///)?\[?([^\]]*)\]?:(\d+)", str(address or ""))
    return (match.group(1), int(match.group(2))) if match else (None, None)


def quantity(value):
    """Kubernetes quantity -> float (cores or bytes)."""
    text = str(value)
    units = {"m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 1024, "Mi": 1024**2,
             "Gi": 1024**3, "Ti": 1024**4}
    match = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", text)
    if not match or (match.group(2) and match.group(2) not in units):
        raise ValueError(f"not a quantity: {text!r}")
    return float(match.group(1)) * units.get(match.group(2), 1)


def matches(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


class Render:
    """One rendered kustomization."""

    def __init__(self, checker, where, objects, twins):
        self.c, self.where, self.objects, self.twins = checker, where, objects, twins
        self.by_kind = {}
        for o in objects:
            self.by_kind.setdefault(o["kind"], {})[o["metadata"]["name"]] = o

    def kind(self, kind):
        return self.by_kind.get(kind, {})

    def error(self, obj, what):
        self.c.error(f"{self.where}: {obj['kind']}/{obj['metadata']['name']}", what)

    def check(self):
        if not self.objects:
            return
        self.configs = {}  # (configmap, key) -> parsed config
        for cm in self.kind("ConfigMap").values():
            for key, text in (cm.get("data") or {}).items():
                self.check_config(cm, key, yaml.safe_load(text))
        images = {c["image"] for w in self.workloads() for c in self.containers(w)}
        if len(images) > 1:
            self.c.error(self.where, f"containers use different images {sorted(images)}: "
                         "one image holds every program")
        self.listen = {}  # config name -> {key: port}
        for w in self.workloads():
            self.check_workload(w)
        self.check_services()
        self.check_autoscaling()
        self.check_ingress()

    def check_config(self, cm, key, config):
        if key == "experiments.yaml":
            allowed = {"experiment": {"name", "routes", "arms"}, "arm": {"name", "adapter_version", "weight"}}
            if set(config or {}) - {"experiments"}:
                self.error(cm, f"{key}: only the key 'experiments' is allowed")
            for e in (config or {}).get("experiments") or []:
                for extra in set(e) - allowed["experiment"]:
                    self.error(cm, f"{key}: unknown experiment key '{extra}'")
                for arm in e.get("arms") or []:
                    for extra in set(arm) - allowed["arm"]:
                        self.error(cm, f"{key}: unknown arm key '{extra}'")
            return
        if key not in PROGRAMS:
            return
        self.configs[(cm["metadata"]["name"], key)] = config
        twin = self.twins.get(key)
        if twin is None:
            return
        mine, theirs = key_paths(config), key_paths(twin)
        for extra in sorted(mine - theirs):
            self.error(cm, f"{key}: key '{extra}' is not in configs/{key} (the program would refuse it)")
        for missing in sorted(theirs - mine):
            self.error(cm, f"{key}: key '{missing}' of configs/{key} is missing (keep the mirror complete)")

    def workloads(self):
        return [o for k in WORKLOADS for o in self.kind(k).values()]

    @staticmethod
    def pod(w):
        return w["spec"]["template"]["spec"]

    def containers(self, w):
        return self.pod(w).get("containers", []) + self.pod(w).get("initContainers", [])

    def check_workload(self, w):
        pod, labels = self.pod(w), w["spec"]["template"]["metadata"].get("labels", {})
        is_job = w["kind"] == "Job"
        if (w["metadata"].get("labels", {}).get("vitrine/run") == "on-demand") != is_job:
            self.error(w, "Jobs, and only Jobs, carry vitrine/run=on-demand (docs/deploy.md applies by it)")
        if not is_job and not matches(w["spec"].get("selector", {}).get("matchLabels"), labels):
            self.error(w, "spec.selector.matchLabels does not match the pod template's labels")
        for other in self.kind("Deployment").values():
            other_labels = other["spec"]["template"]["metadata"].get("labels", {})
            if other is not w and w["kind"] == "Deployment" and matches(
                    w["spec"]["selector"].get("matchLabels"), other_labels):
                self.error(w, f"its selector also selects Deployment/{other['metadata']['name']}'s pods")
        security = pod.get("securityContext", {})
        if security.get("runAsNonRoot") is not True:
            self.error(w, "pod securityContext.runAsNonRoot must be true")
        if self.c.uid is not None and security.get("runAsUser") not in (None, self.c.uid):
            self.error(w, f"runAsUser {security.get('runAsUser')} is not the image's USER {self.c.uid}")
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for container in self.containers(w):
            self.check_container(w, container, volumes, is_job)
        if w["spec"].get("completionMode") == "Indexed" or any(
                e.get("name") == "WORLD_SIZE" for c in self.containers(w) for e in c.get("env", [])):
            self.check_indexed_job(w, labels)

    def check_container(self, w, c, volumes, is_job):
        name = f"container '{c['name']}'"
        resources = c.get("resources", {})
        for kind in ("requests", "limits"):
            for r in ("cpu", "memory"):
                if r not in resources.get(kind, {}):
                    self.error(w, f"{name}: resources.{kind}.{r} missing")
        for r in ("cpu", "memory"):
            try:
                if quantity(resources["requests"][r]) > quantity(resources["limits"][r]):
                    self.error(w, f"{name}: {r} request above its limit")
            except (KeyError, ValueError):
                pass
        sc = c.get("securityContext", {})
        if sc.get("readOnlyRootFilesystem") is not True:
            self.error(w, f"{name}: securityContext.readOnlyRootFilesystem must be true")
        if sc.get("allowPrivilegeEscalation") is not False:
            self.error(w, f"{name}: securityContext.allowPrivilegeEscalation must be false")
        if "ALL" not in (sc.get("capabilities", {}).get("drop") or []):
            self.error(w, f"{name}: securityContext.capabilities.drop must include ALL")
        mounts = c.get("volumeMounts", [])
        for m in mounts:
            if m["name"] not in volumes:
                self.error(w, f"{name}: mounts undefined volume '{m['name']}'")
        tmp = [m for m in mounts if m["mountPath"] == "/tmp"]
        if not tmp or "emptyDir" not in volumes.get(tmp[0]["name"], {}):
            self.error(w, f"{name}: /tmp must be an emptyDir (the root filesystem is read-only)")
        for v in volumes.values():
            claim = v.get("persistentVolumeClaim", {}).get("claimName")
            if claim and claim not in self.kind("PersistentVolumeClaim"):
                self.error(w, f"volume '{v['name']}': no PersistentVolumeClaim '{claim}' in the render")
            cm = v.get("configMap", {}).get("name")
            if cm and cm not in self.kind("ConfigMap"):
                self.error(w, f"volume '{v['name']}': no ConfigMap '{cm}' in the render")
        if c.get("command") not in (None, [], [self.c.bin_dir + "/vitrine-entrypoint"]):
            self.error(w, f"{name}: do not override the image's entrypoint (command)")
        args = [str(a) for a in c.get("args", [])]
        if not args or args[0] not in self.c.commands:
            self.error(w, f"{name}: args[0] {args[:1]} is not a command of deploy/entrypoint.sh "
                       f"({', '.join(sorted(self.c.commands))})")
            return
        binary, fixed = self.c.commands[args[0]]
        words = fixed + args[1:]
        if binary == "vitrine":
            subs = [a for a in words[:2] if not a.startswith("-")]
            for sub in subs:
                if sub not in self.c.subcommands:
                    self.error(w, f"{name}: `vitrine {' '.join(subs)}`: no subcommand '{sub}' in cli/")
        known = self.c.options.get(binary)
        for a in words:
            if a.startswith("-") and known is not None and a.split("=")[0] not in known:
                self.error(w, f"{name}: {binary} has no option '{a}'")
        env = {e["name"] for e in c.get("env", [])}
        for ref in re.findall(r"\$\((\w+)\)", " ".join(args)):
            if ref not in env:
                self.error(w, f"{name}: args use $({ref}), which is not in its env")
        program = next((cfg for cmd, cfg in CONFIG_OF.items()
                        if [args[0], *args[1:len(cmd)]] == list(cmd)), None)
        config_path = next((args[i + 1] for i, a in enumerate(args[:-1]) if a in ("--config", "-c")), None)
        if program is None:
            return
        if config_path is None:
            self.error(w, f"{name}: runs {args[0]} without --config")
            return
        mount = self.mount_of(config_path, mounts)
        cm_name = volumes.get(mount["name"], {}).get("configMap", {}).get("name") if mount else None
        key = os.path.relpath(config_path, mount["mountPath"]) if mount else None
        config = self.configs.get((cm_name, key))
        if config is None or key != program:
            self.error(w, f"{name}: --config {config_path} is not a {program} key of a mounted ConfigMap")
            return
        mounted = {k: cfg for (cmn, k), cfg in self.configs.items() if cmn == cm_name}
        self.check_threads(w, c, program, mounted)
        overrides = {PATH_FLAGS[a]: args[i + 1] for i, a in enumerate(args[:-1]) if a in PATH_FLAGS}
        uses = self.path_uses(program, config, overrides)
        uses += [(f"{a} {args[i + 1]}", args[i + 1], ARG_PATHS[a])
                 for i, a in enumerate(args[:-1]) if a in ARG_PATHS and args[0] == "prepare"]
        if program == "trainer.yaml" and "train.yaml" in mounted:  # the jobs it runs read these
            uses += self.path_uses("train.yaml", mounted["train.yaml"], {"output": None})
        self.check_paths(w, c, uses, mounts, volumes)
        ports = {p["containerPort"] for p in c.get("ports", [])}
        named = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
        for listen_key in PROGRAMS[program]["listen"]:
            host, port = port_of(config.get(listen_key))
            if port is None:
                continue
            self.listen.setdefault(program, {})[listen_key] = port
            if host in ("127.0.0.1", "localhost", "::1"):
                self.error(w, f"{name}: {program} {listen_key} {config[listen_key]} is loopback: "
                           "unreachable for probes and Services")
            if port not in ports:
                self.error(w, f"{name}: {program} {listen_key} port {port} is not a containerPort")
        if not is_job:
            self.check_probes(w, c, program, config, named)
        if program == "router.yaml":
            self.check_drain(w, c, config)
        if program == "gateway.yaml":
            grace = self.pod(w).get("terminationGracePeriodSeconds", 30)
            if grace <= config.get("timeout_seconds", 0):
                self.error(w, f"terminationGracePeriodSeconds {grace} <= gateway timeout_seconds")
        if is_job:
            for field in ("activeDeadlineSeconds", "backoffLimit"):
                if field not in w["spec"]:
                    self.error(w, f"a Job needs spec.{field} (a batch pod has no probes to end a hang)")

    @staticmethod
    def mount_of(path, mounts):
        best = None
        for m in mounts:
            root = m["mountPath"].rstrip("/") + "/"
            if (path + "/").startswith(root) and (best is None or len(root) > len(best["mountPath"])):
                best = m
        return best

    @staticmethod
    def path_uses(program, config, overrides):
        uses = []
        for mode in ("read", "write"):
            for key in PROGRAMS[program][mode]:
                value = overrides[key] if key in overrides else get(config, key)
                if value:
                    uses.append((f"{program} {key}", str(value), mode))
        return uses

    def check_paths(self, w, c, uses, mounts, volumes):
        name = f"container '{c['name']}'"
        usage = {}  # mountPath -> modes
        for what, path, mode in uses:
            if not path.startswith("/"):
                self.error(w, f"{name}: {what} '{path}' is relative; use the mount's absolute path")
                continue
            m = self.mount_of(path, mounts)
            if m is None:
                self.error(w, f"{name}: {what} '{path}' is under no volumeMount")
                continue
            volume = volumes.get(m["name"], {})
            usage.setdefault(m["mountPath"], set()).add(mode)
            writable = not m.get("readOnly") and not volume.get("persistentVolumeClaim", {}).get("readOnly") \
                and not ({"configMap", "secret"} & set(volume))
            if mode == "write" and not writable:
                self.error(w, f"{name}: {what} '{path}' is written but {m['mountPath']} is read-only")
            rel = os.path.relpath(path, m["mountPath"])
            if "configMap" in volume:
                cm = self.kind("ConfigMap").get(volume["configMap"]["name"], {})
                if rel not in (cm.get("data") or {}):
                    self.error(w, f"{name}: {what} '{path}': no key '{rel}' in the mounted ConfigMap")
            if "secret" in volume:
                self.c.secrets.setdefault(volume["secret"]["secretName"], set()).add(rel)
        for m in mounts:
            volume = volumes.get(m["name"], {})
            if "persistentVolumeClaim" in volume and usage.get(m["mountPath"]) == {"read"} \
                    and not m.get("readOnly"):
                self.error(w, f"{name}: {m['mountPath']} is only read, mount it readOnly")

    def check_threads(self, w, c, program, mounted):
        try:
            cpu = quantity(c["resources"]["limits"]["cpu"])
        except (KeyError, ValueError):
            return
        for key, config in mounted.items():
            threads_key = PROGRAMS[key].get("threads")
            threads = get(config, threads_key) if threads_key else None
            if threads_key and threads != cpu:
                self.error(w, f"container '{c['name']}': {key} {threads_key} is {threads}, not the CPU "
                           f"limit {c['resources']['limits']['cpu']} (0 means the node's cores)")
        if program in ("router.yaml", "trainer.yaml", "train.yaml"):  # libtorch, OpenBLAS
            blas = next((e for e in c.get("env", []) if e["name"] == "OPENBLAS_NUM_THREADS"), None)
            ok = blas and (get(blas, "valueFrom.resourceFieldRef.resource") == "limits.cpu"
                           or str(blas.get("value")) == str(int(cpu)))
            if not ok:
                self.error(w, f"container '{c['name']}': set OPENBLAS_NUM_THREADS to the CPU limit "
                           "(OpenBLAS starts a thread per node core otherwise)")

    def check_probes(self, w, c, program, config, named):
        name = f"container '{c['name']}'"
        _, port = port_of(config.get("listen"))
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            p = c.get(probe)
            if not p:
                self.error(w, f"{name}: no {probe}")
                continue
            if program in ("router.yaml", "trainer.yaml"):
                if get(p, "grpc.port") != port:
                    self.error(w, f"{name}: {probe} must be grpc on the listen port {port} "
                               f"(has {p.get('grpc') or list(p)})")
            elif program == "gateway.yaml":
                target = get(p, "httpGet.port")
                target = named.get(target, target)
                want = "/readyz" if probe == "readinessProbe" else "/healthz"
                if target != port or get(p, "httpGet.path") != want:
                    self.error(w, f"{name}: {probe} must be GET {want} on port {port}")

    def check_drain(self, w, c, config):
        drain = config.get("drain_seconds", 0)
        grace = self.pod(w).get("terminationGracePeriodSeconds", 30)
        command = get(c, "lifecycle.preStop.exec.command") or []
        pause = int(command[1]) if len(command) == 2 and command[0] == "sleep" else 0
        if grace <= drain + pause:
            self.error(w, f"terminationGracePeriodSeconds {grace} must exceed preStop {pause} s + "
                       f"drain_seconds {drain}")
        live = c.get("livenessProbe") or {}
        if live.get("periodSeconds", 10) * live.get("failureThreshold", 3) <= drain:
            self.error(w, "livenessProbe would kill a draining daemon (NOT_SERVING) before "
                       f"drain_seconds {drain}: raise periodSeconds x failureThreshold")

    def check_indexed_job(self, w, labels):
        spec, pod = w["spec"], self.pod(w)
        job = w["metadata"]["name"]
        if w["kind"] != "Job" or spec.get("completionMode") != "Indexed":
            self.error(w, "WORLD_SIZE is set: data-parallel ranks must be an Indexed Job")
            return
        n = spec.get("completions")
        if spec.get("parallelism") != n:
            self.error(w, f"parallelism {spec.get('parallelism')} != completions {n}: "
                       "every rank must run at once")
        subdomain = pod.get("subdomain")
        service = self.kind("Service").get(subdomain)
        if service is None or service["spec"].get("clusterIP") != "None":
            self.error(w, f"subdomain '{subdomain}' must name a headless Service in the render")
        elif not matches(service["spec"].get("selector"), labels):
            self.error(w, f"headless Service '{subdomain}' does not select the Job's pods")
        for c in pod["containers"]:
            env = {e["name"]: e for e in c.get("env", [])}
            size = env.get("WORLD_SIZE", {}).get("value")
            if str(size) != str(n):
                self.error(w, f"WORLD_SIZE {size} != completions {n}")
            rank = env.get("RANK", {})
            if get(rank, "valueFrom.fieldRef.fieldPath") != \
                    "metadata.annotations['batch.kubernetes.io/job-completion-index']" \
                    and rank.get("value") != "$(JOB_COMPLETION_INDEX)":
                self.error(w, "RANK must come from the job-completion-index annotation")
            master = str(env.get("MASTER_ADDR", {}).get("value", ""))
            if not re.fullmatch(re.escape(f"{job}-0.{subdomain}") + r"(\.[\w.-]+)?", master):
                self.error(w, f"MASTER_ADDR '{master}' is not rank 0's name '{job}-0.{subdomain}'")
            port = env.get("MASTER_PORT", {}).get("value")
            service_ports = {p["port"] for p in (service or {}).get("spec", {}).get("ports", [])}
            if port is None or int(port) not in service_ports:
                self.error(w, f"MASTER_PORT {port} is not a port of Service '{subdomain}'")

    def pods_of(self, selector):
        return [w for w in self.workloads()
                if matches(selector, w["spec"]["template"]["metadata"].get("labels", {}))]

    def check_services(self):
        for s in self.kind("Service").values():
            pods = self.pods_of(s["spec"].get("selector"))
            if not pods:
                self.error(s, "its selector matches no workload's pods")
            for p in s["spec"].get("ports", []):
                target = p.get("targetPort", p["port"])
                for w in pods:
                    ports = [q for c in self.pod(w)["containers"] for q in c.get("ports", [])]
                    if not any(target in (q.get("name"), q["containerPort"]) for q in ports):
                        self.error(s, f"port '{p.get('name')}': targetPort {target} is no containerPort "
                                   f"of {w['kind']}/{w['metadata']['name']}")
        gateway = next((cfg for (_, k), cfg in self.configs.items() if k == "gateway.yaml"), None)
        if gateway:
            host, port = port_of(gateway.get("daemon"))
            service = self.kind("Service").get((host or "").split(".")[0])
            if service is None:
                self.c.error(self.where, f"gateway.yaml daemon '{gateway.get('daemon')}' names no Service")
                return
            daemon_port = self.listen.get("router.yaml", {}).get("listen")
            for p in service["spec"]["ports"]:
                if p["port"] == port:
                    target = p.get("targetPort", port)
                    if target not in (daemon_port, "grpc"):
                        self.error(service, f"port {port} leads to {target}, not the daemon's {daemon_port}")
                    return
            self.error(service, f"has no port {port}, which gateway.yaml's daemon address uses")

    def check_autoscaling(self):
        hpa_min = {}
        for h in self.kind("HorizontalPodAutoscaler").values():
            if h["apiVersion"] != "autoscaling/v2":
                self.error(h, "use autoscaling/v2")
            ref = h["spec"]["scaleTargetRef"]
            target = self.kind(ref["kind"]).get(ref["name"])
            if target is None:
                self.error(h, f"scaleTargetRef {ref['kind']}/{ref['name']} is not in the render")
                continue
            if "replicas" in target["spec"]:
                self.error(target, "sets spec.replicas while an HPA scales it: every apply resets the count")
            if not any(get(m, "resource.name") == "cpu" for m in h["spec"].get("metrics", [])):
                self.error(h, "no CPU metric")
            if not 1 <= h["spec"].get("minReplicas", 1) <= h["spec"]["maxReplicas"]:
                self.error(h, "needs 1 <= minReplicas <= maxReplicas")
            hpa_min[ref["name"]] = h["spec"].get("minReplicas", 1)
        for b in self.kind("PodDisruptionBudget").values():
            selector = get(b, "spec.selector.matchLabels")
            targets = [w for w in self.pods_of(selector) if w["kind"] == "Deployment"]
            if not targets:
                self.error(b, "its selector matches no Deployment's pods")
            for t in targets:
                replicas = hpa_min.get(t["metadata"]["name"], t["spec"].get("replicas", 1))
                if "minAvailable" in b["spec"] and int(b["spec"]["minAvailable"]) >= replicas:
                    self.error(b, f"minAvailable >= the {replicas} replicas of {t['metadata']['name']}: "
                               "no node could ever be drained")

    def check_ingress(self):
        gateway = next((cfg for (_, k), cfg in self.configs.items() if k == "gateway.yaml"), {})
        for i in self.kind("Ingress").values():
            for rule in i["spec"].get("rules", []):
                for p in get(rule, "http.paths", []):
                    svc = get(p, "backend.service", {})
                    service = self.kind("Service").get(svc.get("name"))
                    port = svc.get("port", {})
                    if service is None or not any(
                            q["port"] == port.get("number") or q.get("name") == port.get("name")
                            for q in service["spec"]["ports"]):
                        self.error(i, f"backend {svc.get('name')}:{port} is no Service port in the render")
            notes = i["metadata"].get("annotations", {})
            size = notes.get("nginx.ingress.kubernetes.io/proxy-body-size")
            if size and gateway.get("max_body_bytes") and \
                    quantity(size.replace("k", "Ki").replace("m", "Mi")) != gateway["max_body_bytes"]:
                self.error(i, f"proxy-body-size {size} != gateway max_body_bytes {gateway['max_body_bytes']}")
            timeout = notes.get("nginx.ingress.kubernetes.io/proxy-read-timeout")
            if timeout and gateway.get("timeout_seconds") and int(timeout) <= gateway["timeout_seconds"]:
                self.error(i, f"proxy-read-timeout {timeout} <= gateway timeout_seconds")
