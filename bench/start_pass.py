"""The start-up pass's file work alone: first backups made together per chunk, or one per fix.

`Repairer.repair_all` (the daemon's start-up pass, no daemon around it) over N mis-keyed configs
in a fresh tree, each round twice: as the daemon does it (each chunk's first backups made
together, `BackupStore.save_many`, before its fixes) and the baseline, the same code with that
step off (each fix makes its own backup, as before). The two alternate, a fresh tree each, so
the disk's drift hits both. Reported: seconds per pass (p50, min, max), milliseconds per repair
and the ratio of the p50s.

    .venv/bin/python bench/start_pass.py                   # 5,000 configs, 3 rounds, $TMPDIR
    sudo .venv/bin/python bench/start_pass.py --fs image   # on a fresh journaled ext4 image
    .venv/bin/python bench/start_pass.py --quick           # 300 configs, 1 round

``--fs image`` (root) puts every tree on one fresh journaled ext4 image, loop-mounted for the
run (`_machine.ext4_image`): there each fsync of a new file is a journal commit.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import logging
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "daemon"))

import structlog

from _common import latency
from _machine import ext4_image
from regauthd.alerts.metrics import Metrics
from regauthd.dockerconfig.file import flush_cleanup
from regauthd.service.loop import Loop
from regauthd.service.repair import Repairer
from regauthd.settingsfile import load_settings, with_overrides

MODES = ("batched", "per_fix")


def make_tree(parent: Path, configs: int) -> tuple[Path, list[str]]:
    root = Path(tempfile.mkdtemp(prefix="regauthd-start-pass-", dir=parent))
    paths = []
    for i in range(configs):
        docker = root / "home" / f"user{i:05d}" / ".docker"
        docker.mkdir(parents=True, mode=0o700)
        auth = base64.b64encode(f"user{i}:pw-{i}".encode()).decode()
        config = docker / "config.json"
        config.write_text(json.dumps({"auths": {"docker.io": {"auth": auth}}}, indent="\t"))
        config.chmod(0o600)
        paths.append(str(config))
    (root / "state").mkdir(mode=0o700)
    (root / "settings.toml").write_text("")
    return root, paths


def repairs_after(repairer: Repairer, paths: list[str], writes: int, seed: int) -> list[float]:
    """Milliseconds of each repair (the daemon's path after a write, less inotify) of
    ``writes`` Docker-style saves of a new credential under ``docker.io`` to random configs,
    one at a time: what the pass leaves on the disk for the writes that follow it."""
    rng = random.Random(seed)
    took = []
    for k in range(writes):
        config = Path(rng.choice(paths))
        auth = base64.b64encode(f"later:pw-{k}".encode()).decode()
        temp = config.with_name(f"config.json{k:06d}")
        temp.write_text(json.dumps({"auths": {"docker.io": {"auth": auth}}}, indent="\t"))
        temp.chmod(0o600)
        temp.rename(config)
        start = time.perf_counter()
        report = repairer.repair(str(config))
        took.append((time.perf_counter() - start) * 1000)
        if report is None or not report.written:
            raise SystemExit(f"{config}: a write after the pass was not repaired")
    return took


def one_pass(parent: Path, configs: int, mode: str, writes: int = 0) -> tuple[float, list[float]]:
    """Seconds for one `repair_all` over a fresh tree (every config must be repaired), and
    milliseconds of each of ``writes`` repairs after it."""
    root, paths = make_tree(parent, configs)
    try:
        os.sync()  # the tree's own writes are not the pass's
        settings = with_overrides(load_settings(root / "settings.toml"), state_dir=root / "state")
        loop = Loop()
        repairer = Repairer(
            settings, loop=loop, alert=lambda *a, **k: True, metrics=Metrics(), retry=print
        )
        if mode == "per_fix":
            repairer._back_up_first = lambda *args: None  # type: ignore[method-assign]  # baseline
        written: list[str] = []
        failed: list[str] = []
        start = time.perf_counter()
        repairer.repair_all(
            paths,
            done=lambda config, report: written.extend([config] if report.written else []),
            failed=lambda config, exc: failed.append(config),
            between=lambda: None,
        )
        took = time.perf_counter() - start
        after = repairs_after(repairer, paths, writes, seed=configs)
        loop.close()
        flush_cleanup()
        if failed or len(written) != configs:
            raise SystemExit(f"{mode}: {len(written)} of {configs} repaired, {len(failed)} failed")
        for path in paths[:: max(1, configs // 50)]:  # each sampled config: one backup, repaired
            folder = root / "state" / "backups" / quote(path, safe="")
            keys = json.loads(Path(path).read_bytes())["auths"]
            if len(list(folder.glob("*.json"))) != 1 or list(keys) != [
                "https://index.docker.io/v1/"
            ]:
                raise SystemExit(f"{mode}: {path} not repaired with one backup")
        return took, after
    finally:
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def file_system(kind: str) -> Iterator[Path]:
    if kind == "image":
        with ext4_image() as mountpoint:
            yield mountpoint
    else:
        yield Path(tempfile.gettempdir())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--fs", choices=("host", "image"), default="host")
    parser.add_argument(
        "--writes", type=int, default=1000, help="repairs timed after each pass (default 1000)"
    )
    parser.add_argument("--quick", action="store_true", help="300 configs, 1 round, 100 writes")
    parser.add_argument("--json", action="store_true", help="one JSON line on stdout")
    args = parser.parse_args(argv)
    if args.quick:
        args.configs, args.rounds, args.writes = 300, 1, 100
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    took: dict[str, list[float]] = {mode: [] for mode in MODES}
    after: dict[str, list[float]] = {mode: [] for mode in MODES}
    with file_system(args.fs) as parent:
        for round_ in range(args.rounds):
            order = MODES if round_ % 2 == 0 else MODES[::-1]
            for mode in order:
                seconds, repairs = one_pass(parent, args.configs, mode, args.writes)
                took[mode].append(seconds)
                after[mode].extend(repairs)
                print(f"round {round_ + 1} {mode}: {took[mode][-1]:.3f} s", file=sys.stderr)
    modes = {
        mode: {
            "p50_s": round(statistics.median(took[mode]), 3),
            "min_s": round(min(took[mode]), 3),
            "max_s": round(max(took[mode]), 3),
            "ms_per_repair": round(statistics.median(took[mode]) * 1000 / args.configs, 3),
            "repairs_after": latency(after[mode]),
        }
        for mode in MODES
    }
    ratio = statistics.median(took["batched"]) / statistics.median(took["per_fix"])
    if args.json:
        head = {"configs": args.configs, "rounds": args.rounds, "fs": args.fs}
        print(json.dumps({**head, **modes, "batched_over_per_fix": round(ratio, 3)}))
    else:
        for mode, f in modes.items():
            print(
                f"{mode:8} p50 {f['p50_s']} s (min {f['min_s']}, max {f['max_s']}), "
                f"{f['ms_per_repair']} ms per repair; repairs after it: {f['repairs_after']}"
            )
        print(f"batched / per fix: {ratio:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
