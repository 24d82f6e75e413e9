"""``dx7lake`` command line: every stage on its own, the demo, and the services.

Each command prints a JSON summary as its last line, so scripts can read the result.
Each command imports only what it uses (numba, the render stack, Airflow and psycopg
each cost a second or more to import), so ``dx7lake extract`` pays for the parser alone.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path

from .config import DEFAULT_PATCHES, Settings, load_settings, parse_demo_limit

OVERRIDE_OPTIONS = (  # ad-hoc render profile settings (dx7lake.gold.profiles.OVERRIDES)
    ("bpm", float, "tempo"),
    ("sample_rate", int, "sample rate (16000, 22050, 44100, 48000)"),
    ("transpose", int, "semitones added to every pitch"),
    ("velocity_scale", float, "every velocity times this"),
)


def _settings(args: argparse.Namespace) -> Settings:
    """The environment's settings with this command's options over them."""
    limit = getattr(args, "limit", None)
    return load_settings(
        args.home,
        lake_uri=args.lake,
        source=getattr(args, "source", None),
        metabase_url=getattr(args, "url", None),
        demo_limit=parse_demo_limit(limit) if limit is not None else None,
    )


def _print(result: dict) -> None:
    print(json.dumps(result, default=str))


def cmd_corpus(args) -> int:
    from .bronze.corpus import write_demo_corpus

    settings = _settings(args)
    _print(write_demo_corpus(args.out or settings.source, settings.demo_limit))
    return 0


def cmd_db(args) -> int:
    from .warehouse.postgres import start_embedded, stop_embedded

    settings = _settings(args)
    if args.action == "stop":
        _print({"stopped": stop_embedded(settings)})
    else:  # start and url both leave it running: the URL is for connecting to it
        _print({"url": start_embedded(settings)})
    return 0


def cmd_extract(args) -> int:
    from .bronze import ExtractOptions, extract
    from .lake import lake_of

    settings = _settings(args)
    _print(extract(settings.source, lake_of(settings), ExtractOptions.from_settings(settings)).as_dict())
    return 0


def cmd_load(args) -> int:
    from . import stages

    settings = _settings(args)
    run_id = args.run_id or f"cli-{int(time.time())}"
    results = [stages.load_partition(settings, p, run_id) for p in stages.bronze_partitions(settings)]
    _print(stages.finish_load(settings, results))
    return 0


def cmd_dbt(args) -> int:
    from .warehouse.transform import run_dbt

    run_dbt(args.dbt_args or ["build"], settings=_settings(args))
    _print({"dbt": args.dbt_args or ["build"], "success": True})
    return 0


def _profiles(args: argparse.Namespace) -> list[str] | None:
    """The ``--profile`` names given (each may be comma-separated), None for the default."""
    names = [n.strip() for given in args.profile or [] for n in given.split(",") if n.strip()]
    return names or None


def _overrides(args: argparse.Namespace) -> dict:
    return {name: getattr(args, name) for name, _, _ in OVERRIDE_OPTIONS if getattr(args, name, None) is not None}


def cmd_render(args) -> int:
    from . import stages

    settings = _settings(args)
    plan = stages.plan_render(settings, args.patches, _profiles(args), _overrides(args))
    results = [stages.render_partition(settings, work, args.patches) for work in plan["partitions"]]
    gold = stages.load_renders(settings, f"cli-{int(time.time())}")
    _print(
        {
            "profiles": plan["profiles"],
            "partitions": len(results),
            "rendered": sum(r["rendered"] for r in results),
            **gold,
        }
    )
    return 0


def cmd_validate(args) -> int:
    from . import stages

    result = stages.run_validation(
        _settings(args),
        args.patches,
        args.run_id,
        audit=args.audit,
        full=args.full,
        profiles=_profiles(args),
        overrides=_overrides(args),
    )
    for failure in result["failures"]:
        print(f"FAIL {failure['key']}: {failure['reason']} [{failure['check']}]")
    _print(
        {k: result[k] for k in ("passed", "mode", "raw_rows", "bronze_rows", "patches", "new_renders", "audited")}
        | {"failures": len(result["failures"])}
    )
    return 0 if result["passed"] else 1


def cmd_compact(args) -> int:
    from . import stages

    _print(stages.compact(_settings(args), args.patches, args.min_parts, _profiles(args)))
    return 0


def cmd_backfill_features(args) -> int:
    from . import stages

    _print(stages.backfill_features(_settings(args), args.patches, _profiles(args)))
    return 0


def cmd_migrate_profiles(args) -> int:
    from . import stages

    _print(stages.migrate_profiles(_settings(args)))
    return 0


def _size(text: str) -> int:
    """Bytes of ``384M``, ``64K``, ``1G`` or a plain number."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = text.strip().upper().removesuffix("B")
    return int(float(text[:-1]) * units[text[-1]]) if text and text[-1] in units else int(text)


def cmd_release(args) -> int:
    from .lake import lake_of
    from .release import build_release
    from .stages import profile_ids_of
    from .warehouse.postgres import connect

    settings = _settings(args)
    patches = [p for p in (args.patches or "").split(",") if p] or None
    (profile_id,) = profile_ids_of(settings, args.profile)
    with connect(settings) as conn:
        _print(
            build_release(
                lake_of(settings),
                conn,
                args.name,
                patches,
                args.split_by,
                _size(args.shard_size),
                profile_id=profile_id,
            )
        )
    return 0


def cmd_metabase(args) -> int:
    """Provision the dashboards in the spec onto the Metabase at METABASE_URL (or --url)."""
    from .metabase.provision import provision_from_settings
    from .metabase.spec import DEFAULT_SPEC

    _print(provision_from_settings(_settings(args), args.spec or DEFAULT_SPEC))
    return 0


def cmd_demo(args) -> int:
    """Run the DAG for real with ``airflow dags test`` on the embedded default.

    By default tasks run one after another in one process (on 2 cores that is faster than
    the alternative: docs/SCALING.md). With ``DX7LAKE_DEMO_EXECUTOR=local`` and a metadata DB
    that takes concurrent writers (the embedded Postgres), the run goes through a
    LocalExecutor of one slot per core, so mapped tasks (extract shards, render partitions,
    dbt models) run side by side; each render task then renders with one process, so render
    tasks × processes stay at the cores.
    """
    import dataclasses

    from .bronze.corpus import write_demo_corpus
    from .gold.pool import worker_count
    from .orchestration.airflow_env import (
        airflow_environment,
        ensure_pools,
        execution_api,
        free_port,
        local_executor_env,
        runs_tasks_in_parallel,
    )
    from .warehouse.postgres import embedded_cpu_seconds, stop_embedded

    settings = _settings(args)
    started, cores = time.time(), worker_count()
    cpu_before = _children_cpu_seconds()
    try:
        if not args.source:
            print(f"==> demo corpus: Bach chorales from music21 into {settings.source}", flush=True)
            _print(write_demo_corpus(settings.source, settings.demo_limit))
        env = airflow_environment(settings)
        pg_cpu_before = embedded_cpu_seconds(settings)
        parallel = settings.demo_executor == "local"
        if parallel and not runs_tasks_in_parallel(env):
            print("DX7LAKE_DEMO_EXECUTOR=local needs a metadata DB with several writers, not SQLite", file=sys.stderr)
            return 2
        if parallel and settings.render_tasks_per_worker == 1:
            # left at its default: one render task per executor slot, one render process each
            settings = dataclasses.replace(settings, render_tasks_per_worker=cores)
            env["DX7LAKE_RENDER_TASKS_PER_WORKER"] = str(cores)
        settings.airflow_home.mkdir(parents=True, exist_ok=True)
        airflow = str(Path(sys.executable).with_name("airflow"))
        print(f"==> Airflow metadata DB in {_metadata_db_label(env, settings)}", flush=True)
        subprocess.run([airflow, "db", "migrate"], env=env, check=True, stdout=subprocess.DEVNULL)
        ensure_pools(settings, env)
        conf = json.dumps({"patches": args.patches, "profiles": _profiles(args) or ["default"], **_overrides(args)})
        cmd = [airflow, "dags", "test", "dx7lake", "--conf", conf]
        log_path = settings.airflow_home / "dags_test.log"
        if parallel:
            port = free_port()
            env.update(local_executor_env(cores, port))
            how = f"LocalExecutor, {cores} task slots"
            # the same command, from a parent that imported dbt and the stages for the tasks it forks
            warm = [sys.executable, "-m", "dx7lake.orchestration.warm_airflow", *cmd[1:], "--use-executor"]
            with execution_api(env, port, settings.airflow_home / "execution_api.log"):
                print(f"==> airflow dags test dx7lake ({how}; full log in {log_path})", flush=True)
                code = _run_logged(warm, env, log_path)
        else:
            print(f"==> airflow dags test dx7lake (task by task; full log in {log_path})", flush=True)
            code = _run_logged(cmd, env, log_path)
        if code != 0:
            print(f"airflow dags test failed (exit {code}); see {log_path}", file=sys.stderr)
            return code
        cpu = _children_cpu_seconds() - cpu_before + embedded_cpu_seconds(settings) - pg_cpu_before
    finally:
        stop_embedded(settings)
    wall = time.time() - started
    summary = json.loads(settings.summary_path.read_text())
    cpu += summary["render_pool_cpu_seconds"]  # not in any rusage this process can read
    summary["cpu"] = {
        "seconds": round(cpu, 1),
        "wall": round(wall, 1),
        "cores": cores,
        "util": round(cpu / wall / cores, 3),
    }
    print(f"==> done in {wall:.1f}s; everything is under {settings.home}")
    for key in (
        "files_seen",
        "files_extracted",
        "files_empty",
        "files_quarantined",
        "notes",
        "phrases",
        "unique_phrases",
        "patches",
        "renders",
        "validation",
    ):
        print(f"    {key:18} {summary[key]}")
    print(f"    {'cpu_use':18} {summary['cpu']['util']:.0%} of {cores} cores ({cpu:.0f} cpu-s in {wall:.0f} s)")
    _print(summary)
    return 0 if summary["validation"] == "passed" else 1


def _children_cpu_seconds() -> float:
    """CPU seconds of every finished child process tree of this one (the Airflow run)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _metadata_db_label(env: dict[str, str], settings: Settings) -> str:
    url = env.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "")
    if url.startswith("postgresql") and not settings.pg_url:
        return f"the embedded Postgres ({settings.pgdata}), database airflow"
    return str(settings.airflow_home) if not url or url.startswith("sqlite") else "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"


def _run_logged(cmd: list[str], env: dict[str, str], log_path: Path) -> int:
    """Run ``cmd`` with its whole output in ``log_path`` and task progress on the terminal."""
    with (
        open(log_path, "w") as log_file,
        subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc,
    ):
        assert proc.stdout is not None
        in_traceback = False
        for line in proc.stdout:
            log_file.write(line)
            # a task's end: logged by dags test itself, or (with an executor) on its executor event
            if "[DAG TEST] end task" in line or "TaskInstance Finished:" in line:
                task = re.search(r"task_id=([^\s,]+)", line)
                index = re.search(r"map_index=(-?\d+)", line)
                state = re.search(r"\bstate=(\w+)", line)
                mapped = f"[{index.group(1)}]" if index and index.group(1) != "-1" else ""
                done = "done" if state is None or state.group(1) == "success" else state.group(1)
                print(f"    {done:5} {task.group(1) if task else '?'}{mapped}", flush=True)
            elif line.startswith("Traceback") or in_traceback:
                in_traceback = bool(line.strip()) and not line.startswith("20")
                print(line, end="", file=sys.stderr)
            elif "[error" in line or "DagRun Finished" in line:
                print("    " + line.strip()[:300], flush=True)
        return proc.wait()


def cmd_airflow(args) -> int:
    """``airflow standalone`` on the same home, so the DAG can be triggered from the UI."""
    from .orchestration.airflow_env import airflow_environment, ensure_pools

    settings = _settings(args)
    env = airflow_environment(settings)
    settings.airflow_home.mkdir(parents=True, exist_ok=True)
    airflow = str(Path(sys.executable).with_name("airflow"))
    # standalone migrates too, but its scheduler must find the pools from its first loop
    subprocess.run([airflow, "db", "migrate"], env=env, check=True, stdout=subprocess.DEVNULL)
    ensure_pools(settings, env)
    return subprocess.call([airflow, "standalone"], env=env)


def cmd_pools(args) -> int:
    """Create or resize the DAG's Airflow pools (after ``airflow db migrate``), sized by
    DX7LAKE_WORKERS and the tasks per worker; compose's airflow-init runs it."""
    from .orchestration.airflow_env import ensure_pools

    settings = _settings(args)
    _print(ensure_pools(settings))
    return 0


def cmd_serve(args) -> int:
    """The phrase browser on its own: the app the Airflow plugin mounts, without Airflow's login."""
    import socket

    import uvicorn

    from .browser.app import create_app

    settings = _settings(args)
    sock = socket.create_server((args.host, args.port))  # bound here so --port 0 can say which port it got
    _print({"url": f"http://{args.host}:{sock.getsockname()[1]}/phrases", "home": str(settings.home)})
    sys.stdout.flush()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), log_level="warning"))
    server.run(sockets=[sock])
    return 0


def cmd_settings(args) -> int:
    """The settings this environment resolves to (secrets left out), or the README's table."""
    from dataclasses import fields

    from .config import settings_table

    if args.markdown:
        print(settings_table(), end="")
        return 0
    settings = _settings(args)
    _print({f.name: getattr(settings, f.name) for f in fields(settings) if f.repr})
    return 0


def cmd_dbt_parse(args) -> int:
    from .warehouse.transform import parse_project

    _print({"manifest": str(parse_project(_settings(args)))})
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dx7lake", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, fn, help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_)
        p.add_argument("--home", default=None, help="DX7LAKE_HOME (default .dx7lake)")
        p.add_argument("--lake", default=None, help="lake URI (default <home>/lake)")
        p.set_defaults(fn=fn)
        return p

    def add_profiles(p: argparse.ArgumentParser, overrides: bool = True) -> None:
        p.add_argument(
            "--profile",
            action="append",
            help="render profile name(s) from DX7LAKE_PROFILES, repeatable or comma-separated (default: default)",
        )
        for name, kind, help_ in OVERRIDE_OPTIONS if overrides else ():
            p.add_argument(f"--{name.replace('_', '-')}", type=kind, default=None, help=f"ad-hoc profile: {help_}")

    p = add("corpus", cmd_corpus, "write the demo corpus (music21 Bach chorales) as MIDI")
    p.add_argument("--out", default=None)
    p.add_argument("--limit", default=None, help="how many chorales, or 'all' (default DEMO_LIMIT or 40)")
    p = add("db", cmd_db, "start (and print the URL of) or stop the embedded Postgres (others stop what they start)")
    p.add_argument("action", choices=["start", "url", "stop"])
    p = add("extract", cmd_extract, "bronze: MIDI files to parquet in the lake")
    p.add_argument(
        "--source", default=None, help="MIDI folder, .tar(.gz) archive or s3:// prefix (default <home>/landing)"
    )
    p = add("load", cmd_load, "raw: bronze partitions into Postgres")
    p.add_argument("--run-id", default=None)
    p = add("dbt", cmd_dbt, "silver: run dbt (default: build)")
    p.add_argument("dbt_args", nargs=argparse.REMAINDER)
    add("dbt-parse", cmd_dbt_parse, "write dbt/target/manifest.json for Cosmos")
    for name, fn, help_ in (
        ("render", cmd_render, "gold: render pending phrase contents with Dexed"),
        ("validate", cmd_validate, "check a finished run; exits 1 naming each failing key"),
    ):
        p = add(name, fn, help_)
        p.add_argument("--patches", default=DEFAULT_PATCHES)
        add_profiles(p)
        if name != "render":
            p.add_argument("--run-id", default=None, help="record the results in ops.validation_* under this id")
            p.add_argument("--full", action="store_true", help="check every render, not this run's and an audit")
            p.add_argument(
                "--audit", type=int, default=None, help="older renders audited at random (DX7LAKE_VALIDATION_AUDIT)"
            )
    p = add("compact", cmd_compact, "gold: merge each partition's manifest parts into one")
    p.add_argument("--patches", default=None, help="only these voices (default: every patch in gold)")
    p.add_argument("--min-parts", type=int, default=2, help="compact partitions with at least this many parts")
    add_profiles(p, overrides=False)
    p = add("backfill-features", cmd_backfill_features, "gold: audio features for renders made before them (once)")
    p.add_argument("--patches", default=None, help="only these voices (default: every patch in gold)")
    add_profiles(p, overrides=False)
    add(
        "migrate-profiles",
        cmd_migrate_profiles,
        "gold: move a lake rendered before render profiles to their layout (once; resumable)",
    )
    p = add("release", cmd_release, "write an immutable, sharded dataset release under <lake>/releases/NAME")
    p.add_argument("--name", required=True)
    p.add_argument("--patches", default=None, help="patch names or ids, comma-separated (default: all in gold)")
    p.add_argument("--split-by", choices=["song", "patch"], default="song")
    p.add_argument("--shard-size", default="384M", help="target shard size: bytes, or with K/M/G (default 384M)")
    p.add_argument("--profile", default=None, help="the render profile released (default: default)")
    p = add("metabase", cmd_metabase, "dashboards as code: create or update them on Metabase (METABASE_URL)")
    p.add_argument("action", choices=["provision"])
    p.add_argument("--url", default=None, help="Metabase URL (default METABASE_URL)")
    p.add_argument("--spec", default=None, help="dashboard spec (YAML; default: the one shipped in the package)")
    p = add("demo", cmd_demo, "the whole DAG through `airflow dags test` on the embedded default")
    p.add_argument("--source", default=None, help="folder of .mid files (default: the demo corpus)")
    p.add_argument("--limit", default=None)
    p.add_argument("--patches", default=DEFAULT_PATCHES)
    add_profiles(p)
    p = add("settings", cmd_settings, "print the resolved settings as JSON (--markdown: the README's table)")
    p.add_argument("--markdown", action="store_true")
    add("airflow", cmd_airflow, "airflow standalone on this home (UI on :8080)")
    add("pools", cmd_pools, "create or resize the DAG's Airflow pools in the metadata DB (after db migrate)")
    p = add("serve", cmd_serve, "the phrase browser alone (no login: binds to localhost by default)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765, help="0 picks a free port (printed as JSON)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    # pgserver asks platformdirs for a runtime dir it does not need; not the user's concern
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
    if args.fn in (cmd_db, cmd_settings, cmd_pools):  # none starts the embedded Postgres
        return args.fn(args)
    from .warehouse.postgres import stopped_after

    with stopped_after(_settings(args)):
        return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
