"""Rules of issue 10's other clients, timed against a baseline measured in the same run.

- **pull secret**: `pullsecret.judge` on a Secret (YAML, `data`) with N registries and two
  `--image` picks, against the floor every reader pays: YAML + base64 + JSON parsing of the
  same document;
- **kubelet lookup**: `kubelet.lookup` for one image over a keyring of N keys (the kubelet scans
  its index the same way), against a plain `dict` lookup;
- **auth.json plan**: `authfile.plan` (containers' rules) on an auth.json with N keys, against
  `normalize.plan` (Docker's rules) on the same data.

    .venv/bin/python bench/documents.py            # N = 1,000, 200 rounds
    .venv/bin/python bench/documents.py --quick    # N = 100, 20 rounds
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "daemon"))

import yaml

from regauthd.dockerconfig import authfile, kubelet, normalize, pullsecret, secretdoc


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def timed(fn: Callable[[], object], rounds: int) -> list[float]:
    out = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50_ms": round(statistics.median(ordered), 4),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 4),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true", help="one JSON line of figures")
    args = parser.parse_args()
    n, rounds = (100, 20) if args.quick else (1000, 200)
    auth = b64("robot:pw")
    auths = {f"reg{i}.example.com": {"auth": auth} for i in range(n)}
    auths["docker.io"] = {"auth": auth}
    payload = json.dumps({"auths": auths})
    manifest = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "pull"},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": b64(payload)},
    }
    document = yaml.safe_dump(manifest).encode()
    images = ("alpine", f"reg{n - 1}.example.com/team/app:1")

    def judge() -> object:
        return pullsecret.judge(secretdoc.read(document), source="s", images=images)

    def floor() -> object:
        data = yaml.safe_load(document)
        return json.loads(base64.b64decode(data["data"][".dockerconfigjson"]))

    ring = kubelet.keyring(auths)
    image = f"reg{n // 2}.example.com/app"
    figures: dict[str, object] = {"registries": n, "rounds": rounds}
    judged, parsed = summary(timed(judge, rounds)), summary(timed(floor, rounds))
    ratio = round(judged["p50_ms"] / parsed["p50_ms"], 2)
    figures["pull_secret"] = {"judge": judged, "parse_floor": parsed, "ratio_p50": ratio}
    looked = summary(timed(lambda: kubelet.lookup(ring, image), rounds))
    plain = summary(timed(lambda: auths.get(f"reg{n // 2}.example.com"), rounds))
    figures["kubelet_lookup"] = {"lookup": looked, "dict_get": plain}
    config = {"auths": {f"https://reg{i}.example.com/v2/": {"auth": auth} for i in range(n)}}
    containers = summary(timed(lambda: authfile.plan(config), rounds))
    docker = summary(timed(lambda: normalize.plan(config), rounds))
    ratio = round(containers["p50_ms"] / docker["p50_ms"], 2)
    figures["auth_json_plan"] = {"containers": containers, "docker": docker, "ratio_p50": ratio}
    if args.json:
        print(json.dumps(figures))
    else:
        for name, value in figures.items():
            print(f"{name}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
