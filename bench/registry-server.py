#!/usr/bin/env python3
"""Load parts of bench/registry-server.sh: HTTP clients in threads against a registry.

  registry-server.py small-image HOST DIR N SIZE   an OCI layout in DIR: N random layers of SIZE bytes
  registry-server.py pulls HOST REPO TAG CLIENTS   CLIENTS concurrent pulls (manifest + blobs): seconds
  registry-server.py manifest-p99 HOST REPO TAG CLIENTS REQS   manifest GET latency under load
  registry-server.py blobs HOST REPO N             N tiny blobs pushed monolithically (for GC)
Prints one line of figures; asserts only that requests succeed.
"""
import hashlib
import http.client
import json
import os
import sys
import threading
import time

ACCEPT = ("application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, "
          "application/vnd.docker.distribution.manifest.v2+json")


def conn(host):
    h, p = host.split(":")
    return http.client.HTTPConnection(h, int(p), timeout=120)


def layout(dirname, n, size):
    blobs = os.path.join(dirname, "blobs", "sha256")
    os.makedirs(blobs, exist_ok=True)

    def put(data):
        d = hashlib.sha256(data).hexdigest()
        with open(os.path.join(blobs, d), "wb") as f:
            f.write(data)
        return "sha256:" + d

    layers = []
    for _ in range(n):
        data = os.urandom(size)
        layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": put(data), "size": len(data)})
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [l["digest"] for l in layers]}}).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": put(config), "size": len(config)},
                           "layers": layers}).encode()
    md = put(manifest)
    with open(os.path.join(dirname, "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion":"1.0.0"}')
    with open(os.path.join(dirname, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": len(manifest),
                                                      "annotations": {"org.opencontainers.image.ref.name": "1"}}]}, f)


def pull(host, repo, tag):
    c = conn(host)
    c.request("GET", f"/v2/{repo}/manifests/{tag}", headers={"Accept": ACCEPT})
    r = c.getresponse()
    body = r.read()
    assert r.status == 200, (r.status, body[:200])
    m = json.loads(body)
    total = 0
    for d in [m["config"]] + m["layers"]:
        c.request("GET", f"/v2/{repo}/blobs/{d['digest']}")
        r = c.getresponse()
        while True:
            chunk = r.read(1 << 20)
            if not chunk:
                break
            total += len(chunk)
        assert r.status == 200, r.status
    c.close()
    return total


def pulls(host, repo, tag, clients):
    errors = []
    sizes = []

    def one():
        try:
            sizes.append(pull(host, repo, tag))
        except Exception as e:  # noqa: BLE001 - reported, not raised, so all threads finish
            errors.append(repr(e))

    start = time.monotonic()
    threads = [threading.Thread(target=one) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    secs = time.monotonic() - start
    mib = sum(sizes) / (1 << 20)
    print(f"{clients} concurrent pulls: {secs:.2f} s, {mib / secs:.0f} MiB/s, errors {len(errors)} {errors[:1]}")


def manifest_p99(host, repo, tag, clients, reqs):
    lat = []
    lock = threading.Lock()
    errors = []

    def one():
        c = conn(host)
        mine = []
        for _ in range(reqs):
            t0 = time.perf_counter()
            c.request("GET", f"/v2/{repo}/manifests/{tag}", headers={"Accept": ACCEPT})
            r = c.getresponse()
            r.read()
            mine.append(time.perf_counter() - t0)
            if r.status != 200:
                errors.append(r.status)
        c.close()
        with lock:
            lat.extend(mine)

    start = time.monotonic()
    threads = [threading.Thread(target=one) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    secs = time.monotonic() - start
    lat.sort()
    pct = lambda p: lat[min(len(lat) - 1, int(len(lat) * p))] * 1000  # noqa: E731
    print(f"manifest GET, {clients} clients x {reqs}: p50 {pct(0.5):.2f} ms, p99 {pct(0.99):.2f} ms, "
          f"{len(lat) / secs:.0f} req/s, errors {len(errors)}")


def blobs(host, repo, n):
    def part(k):
        c = conn(host)
        for i in range(k, n, 8):
            data = b"gc-bench-%d" % i
            d = "sha256:" + hashlib.sha256(data).hexdigest()
            c.request("POST", f"/v2/{repo}/blobs/uploads/?digest={d}", body=data,
                      headers={"Content-Type": "application/octet-stream"})
            r = c.getresponse()
            r.read()
            if r.status == 202:  # no monolithic POST: PUT to the session
                loc = r.getheader("Location")
                path = loc.split(host, 1)[-1]
                sep = "&" if "?" in path else "?"
                c.request("PUT", f"{path}{sep}digest={d}", body=data)
                r = c.getresponse()
                r.read()
            assert r.status == 201, r.status
        c.close()

    start = time.monotonic()
    threads = [threading.Thread(target=part, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(f"{n} tiny blobs pushed in {time.monotonic() - start:.2f} s")


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "small-image":
        layout(args[1], int(args[2]), int(args[3]))
    elif cmd == "pulls":
        pulls(args[0], args[1], args[2], int(args[3]))
    elif cmd == "manifest-p99":
        manifest_p99(args[0], args[1], args[2], int(args[3]), int(args[4]))
    elif cmd == "blobs":
        blobs(args[0], args[1], int(args[2]))
