"""Deployment files (spec §9): the example configurations name every
directive and check clean (those of backend s3 against a fake store), the
systemd units verify, and the Kubernetes manifests parse and carry what §9
asks for."""
import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml

import alptest

TOP = alptest.TOP_SRCDIR
sys.path.insert(0, os.path.join(TOP, "tests", "integration", "s3"))
import fakes3  # noqa: E402  (the fake S3 store the s3 examples check against)
EXAMPLES = ["conf/alpcrund-central.conf", "conf/alpcrund-node.conf"]


def directives():
    dump = subprocess.run([alptest.ALPCRUND, "-t", "-v", "-c", "/dev/null"],
                          capture_output=True, text=True, check=True).stdout
    names = set(re.findall(r"^#?\s*(\w+)[ \t]", dump, re.M))
    assert len(names) > 30, dump
    return names


@pytest.mark.parametrize("example", EXAMPLES)
def test_example_config_names_every_directive(example):
    text = open(os.path.join(TOP, example)).read()
    named = set(re.findall(r"^#?(\w+)[ \t]", text, re.M))
    missing = directives() - named
    assert not missing, "%s lacks %s" % (example, sorted(missing))


def test_central_example_config_checks_clean():
    r = subprocess.run([alptest.ALPCRUND, "-t", "-c",
                        os.path.join(TOP, "conf/alpcrund-central.conf")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_node_example_config_checks_clean():
    r = subprocess.run([alptest.ALPCRUND, "-t", "-v", "-c",
                        os.path.join(TOP, "conf/alpcrund-node.conf")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert re.search(r"^mode node$", r.stdout, re.M), r.stdout


@pytest.fixture
def bucket():
    """A fake S3 store with the examples' bucket, and its credentials."""
    with fakes3.FakeS3(buckets=("alpcrund",), access_key="AKEXAMPLE",
                       secret_key="example/secret") as s:
        yield s


def against(conf, store, tmp_path):
    """An s3 example's text pointed at the fake store, with credentials
    there; the rest as written."""
    cred = tmp_path / "s3.cred"
    cred.write_text("access_key_id AKEXAMPLE\nsecret_access_key example/secret\n")
    conf, n = re.subn(r"^(s3_endpoint\s+)\S+", r"\g<1>" + store.url, conf, flags=re.M)
    assert n == 1, conf
    conf, n = re.subn(r"^(s3_credentials\s+)\S+", r"\g<1>" + str(cred), conf, flags=re.M)
    assert n == 1, conf
    return conf


def test_central_s3_example_config_checks_clean(tmp_path, bucket):
    text = open(os.path.join(TOP, "conf/alpcrund-central-s3.conf")).read()
    assert re.search(r"^backend\s+s3\b", text, re.M)
    f = tmp_path / "central-s3.conf"
    f.write_text(against(text, bucket, tmp_path))
    r = subprocess.run([alptest.ALPCRUND, "-t", "-v", "-c", str(f)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "conditional writes honoured" in r.stderr, r.stderr
    assert re.search(r"^s3_bucket alpcrund$", r.stdout, re.M), r.stdout
    assert bucket.objects("alpcrund") == {}     # the probe's keys cleaned up


def test_rack_parent_example_config_checks_clean():
    r = subprocess.run([alptest.ALPCRUND, "-t", "-v", "-c",
                        os.path.join(TOP, "conf/alpcrund-rack.conf")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert re.search(r"^mode node$", r.stdout, re.M), r.stdout
    assert re.search(r"^upstream central-cache:2337 central-standby:2337$", r.stdout,
                     re.M), r.stdout


def checks_clean(tmp_path, conf, name):
    f = tmp_path / name
    f.write_text(conf)
    r = subprocess.run([alptest.ALPCRUND, "-t", "-c", str(f)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def units(tmp_path):
    """The units with ExecStart on the built binary, as installed."""
    out = []
    for name in ("alpcrund.service", "alpcrund@.service"):
        text = open(os.path.join(TOP, "contrib/systemd", name)).read()
        text = text.replace("/usr/local/sbin/alpcrund", alptest.ALPCRUND)
        dest = tmp_path / (name.replace("@.", "@central.") if "@" in name else name)
        dest.write_text(text)
        out.append(dest)
    return out


def test_systemd_units_verify(tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze not installed")
    for unit in units(tmp_path):
        r = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)],
                           capture_output=True, text=True)
        # verify exits 0 on unknown keys: any output is a finding.
        assert r.returncode == 0 and not (r.stdout + r.stderr).strip(), \
            "%s: %s" % (unit.name, r.stdout + r.stderr)


def load_all(name):
    with open(os.path.join(TOP, "contrib/kubernetes", name)) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def container(doc):
    return doc["spec"]["template"]["spec"]["containers"][0]


def probes_ok(c):
    assert "exec" in c["livenessProbe"] or c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    # what a cluster admin expects of a daemon's pod
    sc = c["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 10001, sc
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"] and "add" not in sc["capabilities"]


def k8s_bytes(q):
    units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40}
    m = re.fullmatch(r"(\d+)(Ki|Mi|Gi|Ti)?", str(q))
    assert m, q
    return int(m.group(1)) * units.get(m.group(2), 1)


def sized_from_max_memory(c, conf):
    """The pod asks for what max_memory holds and a margin (connections,
    buffers in flight), and its limit is above its request."""
    m = re.search(r"^max_memory\s+(\d+)([kmg])$", conf, re.M)
    assert m, "the example sets max_memory"
    budget = int(m.group(1)) << {"k": 10, "m": 20, "g": 30}[m.group(2)]
    req = k8s_bytes(c["resources"]["requests"]["memory"])
    lim = k8s_bytes(c["resources"]["limits"]["memory"])
    assert budget * 1.05 <= req <= lim <= budget * 1.5, (budget, req, lim)


def test_kubernetes_central(tmp_path):
    docs = load_all("central.yaml")
    svc = docs[("Service", "central-cache")]
    assert svc["spec"]["ports"][0]["port"] == 2337
    dep = docs[("Deployment", "alpcrund-central")]
    c = container(dep)
    probes_ok(c)
    conf = docs[("ConfigMap", "alpcrund-central")]["data"]["alpcrund.conf"]
    assert re.search(r"^listen\s+0\.0\.0\.0:2337$", conf, re.M)
    sized_from_max_memory(c, conf)
    mounts = {v["name"] for v in dep["spec"]["template"]["spec"]["volumes"]}
    assert {"config", "api-key"} <= mounts
    f = tmp_path / "central.conf"
    f.write_text(conf)
    r = subprocess.run([alptest.ALPCRUND, "-t", "-c", str(f)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_kubernetes_node_daemonset(tmp_path):
    docs = load_all("node-daemonset.yaml")
    ds = docs[("DaemonSet", "alpcrund-node")]
    c = container(ds)
    probes_ok(c)
    grpc_port = [p for p in c["ports"] if p["name"] == "grpc"][0]
    assert grpc_port["containerPort"] == 3337 and grpc_port["hostPort"] == 3337
    conf = docs[("ConfigMap", "alpcrund-node")]["data"]["alpcrund.conf"]
    assert re.search(r"^mode\s+node$", conf, re.M)
    assert re.search(r"^listen\s+0\.0\.0\.0:3337$", conf, re.M)
    assert re.search(r"^api_key_file\s+\S+", conf, re.M)
    checks_clean(tmp_path, conf, "node.conf")
    sized_from_max_memory(c, conf)
    worker = docs[("Pod", "worker-example")]
    env = {e["name"]: e for e in worker["spec"]["containers"][0]["env"]}
    assert env["NODE_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.hostIP"


def test_kubernetes_node_unix_socket(tmp_path):
    docs = load_all("node-unix-socket.yaml")
    ds = docs[("DaemonSet", "alpcrund-node-unix")]
    conf = docs[("ConfigMap", "alpcrund-node-unix")]["data"]["alpcrund.conf"]
    m = re.search(r"^listen\s+unix:(\S+)$", conf, re.M)
    assert m
    sock_dir = os.path.dirname(m.group(1))
    vols = {v["name"]: v for v in ds["spec"]["template"]["spec"]["volumes"]}
    assert vols["socket-dir"]["hostPath"]["path"] == sock_dir
    assert re.search(r"^mode\s+node$", conf, re.M)
    checks_clean(tmp_path, conf, "node-unix.conf")
    probes_ok(container(ds))
    sized_from_max_memory(container(ds), conf)
    init = ds["spec"]["template"]["spec"]["initContainers"][0]
    assert init["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["CHOWN"]}


def test_kubernetes_central_s3(tmp_path, bucket):
    """Two centrals on one bucket behind one Service, the store's
    credentials from a Secret."""
    docs = load_all("central-s3.yaml")
    dep = docs[("Deployment", "alpcrund-central-s3")]
    assert dep["spec"]["replicas"] == 2
    pod = dep["spec"]["template"]
    svc = docs[("Service", "central-cache")]
    assert svc["spec"]["ports"][0]["port"] == 2337
    assert svc["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    c = container(dep)
    probes_ok(c)
    conf = docs[("ConfigMap", "alpcrund-central-s3")]["data"]["alpcrund.conf"]
    assert re.search(r"^backend\s+s3$", conf, re.M)
    assert re.search(r"^listen\s+0\.0\.0\.0:2337$", conf, re.M)
    sized_from_max_memory(c, conf)
    # The credentials file the config names is the Secret's, mounted.
    cred = re.search(r"^s3_credentials\s+(\S+)$", conf, re.M).group(1)
    secret = docs[("Secret", "alpcrund-s3-credentials")]
    vols = {v["name"]: v for v in pod["spec"]["volumes"]}
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    assert vols["s3-credentials"]["secret"]["secretName"] == "alpcrund-s3-credentials"
    assert mounts["s3-credentials"]["readOnly"] is True
    assert cred == os.path.join(mounts["s3-credentials"]["mountPath"],
                                list(secret["stringData"])[0])
    assert {"config", "api-key"} <= set(vols)
    text = secret["stringData"]["credentials"]
    assert re.search(r"^access_key_id\s+\S+$", text, re.M) and \
        re.search(r"^secret_access_key\s+\S+$", text, re.M)
    f = tmp_path / "central-s3.conf"
    f.write_text(against(conf, bucket, tmp_path))
    r = subprocess.run([alptest.ALPCRUND, "-t", "-c", str(f)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
