"""The S3 stores the tests of tests/integration/s3 run against, started
from their command lines: fakes3.py (ours), npm's s3rver behind
s3rver-wrap.js, and with ALPCRUND_S3_STORES=rgw a one-host Ceph RGW
(rgw-local, started once for the run). The fixture s3store gives each in
turn (ids [fake], [s3rver], [rgw]): .name .url .bucket .access_key
.secret_key .region .client() .stop(). Test modules import the fixtures
they use from here."""
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest

import fakes3
from alptest import free_port, wait_until

HERE = os.path.dirname(os.path.abspath(__file__))
FAKES3 = os.path.join(HERE, "fakes3.py")
WRAP = os.path.join(HERE, "s3rver-wrap.js")
RGW_LOCAL = os.path.join(HERE, "rgw-local")
S3RVER_DIR = os.environ.get("ALPCRUND_S3RVER_DIR", "/usr/local/lib/alpcrund-test")
AK, SK, REGION = "AKTESTFAKES3", "test/secret+key", "us-east-1"
BUCKET = "alpcrun-test"


class Store:
    """A store started from its command line: .name .url .bucket .access_key
    .secret_key .region .client() .stop()."""

    def __init__(self, name, argv, tmp_path, env=None):
        self.name, self.bucket = name, BUCKET
        self.access_key, self.secret_key, self.region = AK, SK, REGION
        port_file = tmp_path / ("%s.port" % name)
        self.log_path = tmp_path / ("%s.log" % name)
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(argv + ["--port-file", str(port_file)], stdout=self._log,
                                     stderr=subprocess.STDOUT, env=env)

        def ready():
            if self.proc.poll() is not None:
                raise AssertionError("%s exited with %s:\n%s" % (name, self.proc.returncode, self.log()))
            return port_file.exists() and port_file.read_text().strip()
        self.port = int(wait_until(ready, 20, what="%s's port file" % name))
        self.url = "http://127.0.0.1:%d" % self.port

    def log(self):
        return self.log_path.read_text(errors="replace")

    def client(self):
        return fakes3.Client(self.url, self.access_key, self.secret_key, self.region)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()


def start_fake_cli(tmp_path, *extra):
    return Store("fake", ["/usr/bin/python3", FAKES3, "--listen", "127.0.0.1:0", "--bucket", BUCKET,
                          "--access-key", AK, "--secret-key", SK, "--region", REGION] + list(extra),
                 tmp_path)


def start_s3rver(tmp_path):
    assert os.path.exists(os.path.join(S3RVER_DIR, "node_modules", "s3rver", "package.json")), \
        "s3rver is not installed under %s: scripts/install-deps installs it" % S3RVER_DIR
    node = shutil.which("node") or shutil.which("nodejs")
    assert node, "node is missing: scripts/install-deps installs it"
    return Store("s3rver", [node, WRAP, "--listen", "127.0.0.1:0", "--bucket", BUCKET,
                            "--dir", str(tmp_path / "s3rver-data"),
                            "--access-key", AK, "--secret-key", SK], tmp_path)


class RGW:
    """A one-host Ceph RADOS Gateway (rgw-local), started once for the
    run; each test gets the bucket emptied."""

    def __init__(self, workdir):
        self.dir = str(workdir / "rgw")
        p = subprocess.run([RGW_LOCAL, "start", self.dir, str(free_port()), str(free_port())],
                           capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, "rgw-local could not start Ceph:\n" + p.stdout + p.stderr
        self.url, self.access_key, self.secret_key = p.stdout.split("\n")[-2].split()
        self.name, self.bucket, self.region = "rgw", BUCKET, REGION
        c = self.client()
        r = c.request("PUT", BUCKET)
        assert r.status == 200, r

    def client(self):
        return fakes3.Client(self.url, self.access_key, self.secret_key, self.region)

    def empty(self):
        c = self.client()
        for key, uid in list_uploads(c):
            c.request("DELETE", BUCKET, key, query={"uploadId": uid})
        while True:
            keys = xml_texts(c.request("GET", BUCKET, query={"list-type": "2"}).body, "Key")
            if not keys:
                break
            for k in keys:
                c.request("DELETE", BUCKET, k)

    def stop(self):
        subprocess.run([RGW_LOCAL, "stop", self.dir], timeout=120)


@pytest.fixture(scope="session")
def rgw(tmp_path_factory):
    g = RGW(tmp_path_factory.mktemp("ceph"))
    yield g
    g.stop()


# The stores of the suites: fakes3 and s3rver by default; the RGW stage
# (tests/run-all --rgw) sets ALPCRUND_S3_STORES=rgw.
STORES = os.environ.get("ALPCRUND_S3_STORES", "fake,s3rver").split(",")


@pytest.fixture(params=STORES)
def s3store(request, tmp_path):
    if request.param == "rgw":
        g = request.getfixturevalue("rgw")
        g.empty()
        yield g
        return
    s = start_fake_cli(tmp_path) if request.param == "fake" else start_s3rver(tmp_path)
    yield s
    alive = s.proc.poll() is None
    s.stop()
    assert alive, "%s died during the test:\n%s" % (s.name, s.log())


def xml(body):
    """The parsed XML body, namespaces dropped (s3rver's listing names
    another namespace than S3's)."""
    root = ET.fromstring(body)
    for e in root.iter():
        e.tag = e.tag.rpartition("}")[2]
    return root


def xml_texts(body, tag):
    return [e.text or "" for e in xml(body).iter(tag)]


def list_uploads(c, **q):
    r = c.request("GET", BUCKET, query=dict({"uploads": ""}, **q))
    assert r.status == 200, r
    return [(u.findtext("Key"), u.findtext("UploadId")) for u in xml(r.body).iter("Upload")]
