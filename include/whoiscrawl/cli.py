"""The ``whoiscrawl`` command: stack, fleet, simulator, seed, telemetry, bootstrap, settings, stats, demo, lookup, changes."""

from __future__ import annotations

import argparse
import json
import sys

from whoiscrawl.errors import WhoiscrawlError


def _cmd_stack(args: argparse.Namespace, rest: list[str]) -> int:
    from whoiscrawl.devtools import stack

    return stack.main(rest)


def _cmd_fleet(args: argparse.Namespace, rest: list[str]) -> int:
    from whoiscrawl.devtools import namespace_fleet as localfleet

    return localfleet.main(rest)


def _cmd_simulate(args: argparse.Namespace, rest: list[str]) -> int:
    from whoiscrawl.simulator.cli import main

    return main(rest)


def _cmd_seed(args: argparse.Namespace, rest: list[str]) -> int:
    from whoiscrawl.crawl import seed
    from whoiscrawl.progress import Progress

    with Progress("seed", total=args.limit, unit="addresses") as progress:  # on stderr: stdout stays JSON
        summary = seed.prepare_seed(args.out, source=args.source, limit=args.limit, random_seed=args.random_seed)
        progress.update(summary.count)
    print(json.dumps(summary.as_dict(), indent=2))
    return 0


def _cmd_telemetry(args: argparse.Namespace, rest: list[str]) -> int:
    import time

    from whoiscrawl.crawl.kafka_io import make_consumer, read_all
    from whoiscrawl.crawl.config import RunConfig
    from whoiscrawl.crawl.telemetry import aggregate, format_aggregate
    from whoiscrawl.orchestration.connections import kafka_config
    from whoiscrawl.settings import Settings

    settings = Settings()
    live_table = args.follow and sys.stdout.isatty()  # JSON lines for pipes and logs
    consumer = make_consumer(kafka_config(settings, local_fallback=True), group_id="whoiscrawl-telemetry")
    try:
        while True:
            reports = [json.loads(v) for _k, v in read_all(consumer, RunConfig.from_env().metrics_topic)]
            if live_table:
                print("\x1b[H\x1b[2J" + _telemetry_table(reports), flush=True)
            else:
                print(format_aggregate(aggregate(reports)), flush=True)
            if not args.follow:
                return 0
            time.sleep(args.interval)
    except KeyboardInterrupt:
        return 0
    finally:
        consumer.close()


def _telemetry_table(reports: list[dict]) -> str:
    """The live table of the run that reported last: per registry, per host."""
    import time

    from whoiscrawl.orchestration.ui import figures

    runs = figures.runs(reports)
    if not runs:
        return "no reports on the metrics topic yet"
    return f"{time.strftime('%H:%M:%S')}  " + figures.text_table(figures.figures(reports, runs[0]["run"]))


def _cmd_bootstrap(args: argparse.Namespace, rest: list[str]) -> int:
    from whoiscrawl.crawl import bootstrap

    b = bootstrap.refresh(args.source or None)
    print(json.dumps({"source": b.source, "publication": b.publication,
                      "services": [{"registry": s.registry, "url": s.base_url} for s in b.services]}, indent=2))
    return 0


def _cmd_settings(args: argparse.Namespace, rest: list[str]) -> int:
    from whoiscrawl import settings

    if args.readme:
        settings.rewrite_readme_table()
    elif args.markdown:
        print(settings.markdown_table())
    else:
        from whoiscrawl.crawl.config import RunConfig

        print(json.dumps({"crawl": RunConfig.from_env().as_dict(), "service": settings.Settings().as_dict()},
                         indent=2, default=str))
    return 0


def _cmd_stats(args: argparse.Namespace, rest: list[str]) -> int:
    from whoiscrawl.crawl import stats
    from whoiscrawl.settings import PROJECT_ROOT

    if args.write:
        (PROJECT_ROOT / "docs" / "stats.md").write_text(stats.markdown())
    else:
        print(stats.markdown(), end="")
    return 0


def _cmd_demo(args: argparse.Namespace, rest: list[str]) -> int:
    from whoiscrawl.devtools.demo import run_demo

    return run_demo(limit=args.limit, chunks=args.chunks, random_seed=args.random_seed)


def _run_bases() -> list:
    """Where runs land by default: the DAG's output folder and the demo's."""
    from whoiscrawl.settings import Settings

    base = Settings().output_base_dir
    return [base, base / "demo"]


def _cmd_changes(args: argparse.Namespace, rest: list[str]) -> int:
    from whoiscrawl.results.changes import write_changes
    from whoiscrawl.results.lookup import resolve_run

    bases = _run_bases()
    print(json.dumps(write_changes(resolve_run(args.before, bases), resolve_run(args.after, bases))))
    return 0


def _cmd_lookup(args: argparse.Namespace, rest: list[str]) -> int:
    from whoiscrawl.results.lookup import LookupIndex, format_answer, newest_run, resolve_run

    bases = _run_bases()
    index = LookupIndex(resolve_run(args.run, bases) if args.run else newest_run(bases))
    addresses = args.address or (line.strip() for line in sys.stdin if line.strip())
    try:
        for address in addresses:
            answer = index.lookup(address)
            print(json.dumps(answer, default=str) if args.json else format_answer(answer), flush=not args.json)
    finally:
        index.close()
    return 0


def _param_value(text: str):
    """A ``--param NAME=VALUE`` value: JSON when it parses (numbers, null, lists), else the text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _cmd_crawl(args: argparse.Namespace, rest: list[str]) -> int:
    from whoiscrawl.devtools.demo import run_crawl

    params = {"seed": args.seed, "limit": args.limit, "random_seed": args.random_seed, "chunks": args.chunks,
              "bootstrap": args.bootstrap, "rate_limits": args.rate_limits, "output_dir": args.output_dir,
              "fleet": args.fleet}
    params = {k: v for k, v in params.items() if v is not None}  # flags not given keep the DAG's defaults
    for item in args.param:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise SystemExit(f"whoiscrawl crawl: --param {item!r}: expected NAME=VALUE")
        params[name] = _param_value(value)
    return run_crawl(params)


def _cmd_ui(args: argparse.Namespace, rest: list[str]) -> int:
    from whoiscrawl.devtools import ui

    return ui.main(rest)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="whoiscrawl", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("stack", help="start, check or stop the local stack: stack up|status|down",
                   add_help=False).set_defaults(func=_cmd_stack)
    sub.add_parser("fleet", help="the local CeleryExecutor fleet in network namespaces: fleet up|status|down",
                   add_help=False).set_defaults(func=_cmd_fleet)
    sub.add_parser("simulate", help="run the RDAP registry simulator (see simulate --help)",
                   add_help=False).set_defaults(func=_cmd_simulate)
    s = sub.add_parser("seed", help="write a seed list to sqlite")
    s.add_argument("--out", required=True)
    s.add_argument("--source", default="classic", help="'classic' or a file of addresses")
    s.add_argument("--limit", type=int, default=None)
    s.add_argument("--random-seed", type=int, default=2018)
    s.set_defaults(func=_cmd_seed)
    t = sub.add_parser("telemetry", help="print the cluster's aggregate counters from the metrics topic")
    t.add_argument("--follow", action="store_true", help="keep printing")
    t.add_argument("--interval", type=float, default=10.0)
    t.set_defaults(func=_cmd_telemetry)
    b = sub.add_parser("bootstrap", help="bootstrap refresh [SOURCE]: fetch the RFC 9224 file again")
    b.add_argument("action", choices=["refresh"])
    b.add_argument("source", nargs="?", default="")
    b.set_defaults(func=_cmd_bootstrap)
    st = sub.add_parser("settings", help="print the resolved settings")
    st.add_argument("--markdown", action="store_true", help="the README's table")
    st.add_argument("--readme", action="store_true", help="rewrite the README's settings table")
    st.set_defaults(func=_cmd_settings)
    sm = sub.add_parser("stats", help="every stat the crawl counts (docs/stats.md)")
    sm.add_argument("--markdown", action="store_true", help="print docs/stats.md (the default)")
    sm.add_argument("--write", action="store_true", help="rewrite docs/stats.md")
    sm.set_defaults(func=_cmd_stats)
    sub.add_parser("ui", help="the Airflow UI on the local stack: ui [up]|status|down",
                   add_help=False).set_defaults(func=_cmd_ui)
    c = sub.add_parser("crawl", help="run the DAG here (airflow dags test) with any Params; prints the report")
    c.add_argument("--seed", help="'classic' or a file of addresses (one a line)")
    c.add_argument("--limit", type=int, help="the first N addresses after shuffling")
    c.add_argument("--random-seed", type=int)
    c.add_argument("--chunks", type=int)
    c.add_argument("--bootstrap", help="RFC 9224 file (path or URL); default: the local simulator's")
    c.add_argument("--rate-limits", help="per-registry budgets per host, e.g. 'lacnic=10/60+1000/3600'")
    c.add_argument("--output-dir", help="folder for the run's datasets and coverage.json (inside WHOISCRAWL_OUTPUT_BASE_DIR)")
    c.add_argument("--fleet", help="local or celery")
    c.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="any other DAG Param (VALUE is JSON when it parses); repeatable")
    c.set_defaults(func=_cmd_crawl)
    d = sub.add_parser("demo", help="run the DAG against the local simulator and print the coverage report")
    d.add_argument("--limit", type=int, default=20000)
    d.add_argument("--chunks", type=int, default=8)
    d.add_argument("--random-seed", type=int, default=2018)
    d.set_defaults(func=_cmd_demo)
    lk = sub.add_parser("lookup", help="who holds an address, from the newest run's output (or --run)")
    lk.add_argument("address", nargs="*", help="IPv4 addresses; none: one per line from stdin")
    lk.add_argument("--run", default="", help="a run folder, or a run key under the runs folders")
    lk.add_argument("--json", action="store_true", help="one JSON object per address")
    lk.set_defaults(func=_cmd_lookup)
    ch = sub.add_parser("changes", help="what changed between two runs: writes AFTER/changes.jsonl.gz")
    ch.add_argument("before", help="the earlier run (folder or run key)")
    ch.add_argument("after", help="the later run (folder or run key)")
    ch.set_defaults(func=_cmd_changes)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.command not in ("stack", "simulate", "fleet", "ui") and rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        return int(args.func(args, rest) or 0)
    except WhoiscrawlError as exc:
        print(f"whoiscrawl {args.command}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
