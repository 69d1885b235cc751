"""The `mikb` command line: check, build, serve, new, graph, export, reproduce."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from mikb.atomic import write_text_atomic
from mikb.check import run_check
from mikb.layout import Layout, find_root


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    root = Path(args.root).resolve() if args.root else find_root()
    try:
        return args.handler(args, root)
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mikb", description="Mechanistic-interpretability knowledge base tools.")
    p.add_argument("--root", help="repository root (default: nearest folder with mkdocs.yml or problems/)")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("check", help="validate entries and cross-references")
    c.add_argument("paths", nargs="*", help="only report on these files or folders")
    c.add_argument("--strict", action="store_true", help="treat warnings as errors")
    c.add_argument("--format", choices=["text", "json"], default="text",
                   help="text: one `path:line:col: message` per line (default); json: a list of diagnostics")
    c.set_defaults(handler=_cmd_check)

    b = sub.add_parser("build", help="generate pages and build the site (strict) into site/")
    b.add_argument("--generate-only", action="store_true", help="write site_src/ and stop (for other generators)")
    b.set_defaults(handler=_cmd_build)

    s = sub.add_parser("serve", help="serve the site with live reload of entries and results")
    s.add_argument("--dev-addr", default="127.0.0.1:8000", help="address and port to serve on (default 127.0.0.1:8000)")
    s.set_defaults(handler=_cmd_serve)

    n = sub.add_parser("new", help="scaffold a new entry")
    n.add_argument("kind", choices=["problem", "circuit", "paper"], help="what to create")
    n.add_argument("id", help="the entry's id (problem id, circuit folder name or paper key)")
    n.add_argument("--title", default="Replace this title", help="title (any text; written as a quoted YAML string)")
    n.add_argument("--category", help="problem category slug (default: the first category)")
    n.add_argument("--paper", help="paper key the entry rests on (problems default to the category's source; "
                                   "circuits must name one)")
    n.add_argument("--model", help="model id for a circuit (default: the first registered model)")
    n.set_defaults(handler=_cmd_new)

    g = sub.add_parser("graph", help="export the knowledge graph")
    g.add_argument("--format", choices=["json", "graphml"], default="json",
                   help="json: node-link JSON (default); graphml: for Gephi, Cytoscape, networkx")
    g.add_argument("-o", "--output", help="file to write (default: stdout)")
    g.set_defaults(handler=_cmd_graph)

    e = sub.add_parser("export", help="write every entry as one JSON file")
    e.add_argument("-o", "--output", default="mikb-entries.json", help="file to write (default: mikb-entries.json)")
    e.set_defaults(handler=_cmd_export)

    lc = sub.add_parser("linkcheck", help="check internal links and anchors of the built site")
    lc.add_argument("site", nargs="?", help="built site folder (default: site/)")
    lc.set_defaults(handler=_cmd_linkcheck)

    r = sub.add_parser("reproduce", help="run reproduction scripts and publish their results")
    r.add_argument("circuit", nargs="?", help="circuit id")
    r.add_argument("--all", action="store_true", help="every circuit on every model its script supports")
    r.add_argument("--model", help="model id (default: the script's first model)")
    r.add_argument("--seed", type=int, default=0, help="random seed of the run (default 0; recorded in provenance)")
    r.add_argument("--quick", action="store_true",
                   help="CI-sized run that still shows the phenomenon; its results go to results/<model>.quick/ "
                        "(never committed, never shown on the site), leaving the full run's results untouched")
    r.add_argument("--force", action="store_true", help="re-run even if results are current")
    r.add_argument("--jobs", type=int, default=1, help="runs in parallel with --all")
    r.add_argument("--timeout", type=int, help="seconds before a run is killed (default: the script's)")
    r.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"],
                   help="where the script runs, if it supports it (auto: cuda when a GPU is visible)")
    r.add_argument("--dry-run", action="store_true",
                   help="run nothing: say which results are current (cached) and which would run (due)")
    r.add_argument("--no-progress", action="store_true", help="no progress bars (the script's and its libraries')")
    r.set_defaults(handler=_cmd_reproduce)
    return p


def _print_diagnostics(diags, stream=sys.stderr) -> None:
    for d in diags:
        print(d.format(), file=stream)


def _circuit_breakdown(kb) -> str:
    """How many circuits are studied on which kind of model: the zoo's shape in one line."""
    def kinds(circuit) -> set[str]:
        return {kb.models[m].kind for m in circuit.models if m in kb.models}

    circuits = list(kb.circuits.values())
    pretrained = sum("pretrained" in kinds(c) for c in circuits)
    trained = sum("trained-here" in kinds(c) for c in circuits)
    checks = sum(not (kinds(c) & {"pretrained", "trained-here"}) for c in circuits)
    return f"{pretrained} in pretrained language models, {trained} trained here, {checks} method checks only"


def _cmd_check(args, root: Path) -> int:
    result = run_check(root).only([Path(p) for p in args.paths])
    if args.format == "json":
        print(json.dumps([vars(d) for d in result.diagnostics], indent=1))
    else:
        _print_diagnostics(result.diagnostics, sys.stdout)
    kb = result.kb
    failing = result.errors + (result.warnings if args.strict else [])
    summary = (f"{len(kb.problems)} problems, {len(kb.circuits)} circuits ({_circuit_breakdown(kb)}), "
               f"{len(kb.papers)} papers, {len(kb.models)} models: "
               f"{len(result.errors)} error(s), {len(result.warnings)} warning(s)")
    print(summary, file=sys.stderr)
    return 1 if failing else 0


def _site_options(root: Path):
    from mikb.site.context import SiteOptions

    found: dict[str, str] = {}
    config = root / "mkdocs.yml"
    if config.is_file():  # a line scan: mkdocs.yml holds python tags a safe YAML loader rejects
        for line in config.read_text().splitlines():
            key, _, value = line.strip().partition(":")
            if key in ("mikb_repo", "mikb_branch", "site_url"):
                found[key] = value.strip()
    return SiteOptions(repo_url=found.get("mikb_repo"), branch=found.get("mikb_branch", "main"),
                       site_url=found.get("site_url"))


def _generate(root: Path) -> int:
    from mikb.site.generate import InvalidEntries, generate_site

    try:
        report = generate_site(root, options=_site_options(root))
    except InvalidEntries as exc:
        _print_diagnostics(exc.errors)
        print(f"mikb: {len(exc.errors)} error(s) in the entries; the site was not built", file=sys.stderr)
        return 1
    print(f"mikb: generated {Layout(root).site_src_dir.name}/ ({len(report.written)} written, "
          f"{report.unchanged} unchanged, {len(report.removed)} removed)", file=sys.stderr)
    return 0


def _cmd_build(args, root: Path) -> int:
    code = _generate(root)
    if code or args.generate_only:
        return code
    # Pages are fresh: tell the MkDocs hook not to generate them a second time.
    env = {**os.environ, "MIKB_PAGES_GENERATED": "1", "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(root / "mkdocs.yml")],
                          cwd=root, env=env)
    if proc.returncode:
        return proc.returncode
    return _audit_built_site(Layout(root).site_dir)


def _audit_built_site(site_dir: Path) -> int:
    """Refuse a built site whose pages could run script the theme did not bring."""
    from mikb.site.audit import audit_site

    findings = audit_site(site_dir)
    for finding in findings[:50]:
        print(f"{site_dir.name}/{finding.format()}", file=sys.stderr)
    if findings:
        print(f"mikb: {len(findings)} unsafe construct(s) in the built site: do not publish it", file=sys.stderr)
        return 1
    return 0


def _cmd_serve(args, root: Path) -> int:
    code = _generate(root)  # the docs folder must exist before MkDocs reads its config
    if code:
        return code
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    return _run_until_signalled([sys.executable, "-m", "mkdocs", "serve", "--livereload", "-a", args.dev_addr,
                                 "-f", str(root / "mkdocs.yml")], cwd=root, env=env)


def _run_until_signalled(command: list[str], *, cwd: Path, env: dict[str, str]) -> int:
    """Run a long-lived child (the MkDocs server) and end it when this process is told to
    stop: SIGTERM to `mikb serve` must not leave the server listening on its port."""
    import signal

    child = subprocess.Popen(command, cwd=cwd, env=env)

    def stop(signum: int, _frame: object) -> None:
        child.terminate()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        return child.wait()
    except KeyboardInterrupt:
        child.terminate()
        child.wait(10)
        return 130
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _cmd_new(args, root: Path) -> int:
    from mikb.loader import load_knowledge_base
    from mikb.scaffold import next_problem_number, scaffold

    kb = load_knowledge_base(root)
    if args.kind == "problem" and args.category and args.category not in kb.categories:
        known = ", ".join(kb.categories) or "none"
        print(f"mikb new: unknown category '{args.category}' (known: {known})", file=sys.stderr)
        return 1
    if args.kind == "circuit" and not args.paper:
        print("mikb new: a circuit needs the paper it comes from: --paper KEY (see literature/papers.yaml)", file=sys.stderr)
        return 1
    if args.paper and args.kind != "paper" and args.paper not in kb.papers:
        print(f"mikb new: unknown paper key '{args.paper}': register it first with `mikb new paper`", file=sys.stderr)
        return 1
    category = args.category or next(iter(kb.categories), "uncategorised")
    paper = args.paper or (kb.categories[category].source if category in kb.categories else None) or next(iter(kb.papers), "")
    model = args.model or next(iter(kb.models), "")
    number = None
    if args.kind == "problem" and category in kb.categories:
        number = next_problem_number(kb.categories[category].number, [str(p.number) for p in kb.problems.values() if p.number])
    try:
        files, done = scaffold(kb.layout, args.kind, args.id, args.title, category=category, paper=paper, model=model,
                               number=number)
    except (FileExistsError, ValueError) as exc:
        print(f"mikb new: {exc}", file=sys.stderr)
        return 1
    for path in files:
        print(f"{done} {kb.rel(path)}")
    print("next: replace every placeholder, then run `mikb check --strict`", file=sys.stderr)
    return 0


def _cmd_graph(args, root: Path) -> int:
    from mikb.graph import to_graphml, to_json

    result = run_check(root)
    text = to_graphml(result.graph) if args.format == "graphml" else json.dumps(to_json(result.graph), indent=1, sort_keys=True) + "\n"
    if args.output:
        write_text_atomic(Path(args.output), text)
    else:
        sys.stdout.write(text)
    return 0


def _cmd_export(args, root: Path) -> int:
    from mikb.export import export_entries
    from mikb.loader import load_knowledge_base

    kb = load_knowledge_base(root)
    write_text_atomic(Path(args.output), json.dumps(export_entries(kb), indent=1, sort_keys=True, default=str) + "\n")
    print(f"wrote {args.output}: {len(kb.problems)} problems, {len(kb.circuits)} circuits, {len(kb.papers)} papers",
          file=sys.stderr)
    return 0


def _cmd_linkcheck(args, root: Path) -> int:
    from mikb.site.linkcheck import check_site

    site = Path(args.site) if args.site else Layout(root).site_dir
    if not site.is_dir():
        print(f"mikb linkcheck: {site} does not exist; run `mikb build` first", file=sys.stderr)
        return 2
    checked, broken = check_site(site)
    for link in broken:
        print(link.format())
    print(f"{checked} internal links checked, {len(broken)} broken", file=sys.stderr)
    return 1 if broken else 0


def _reproduce_jobs(args, kb) -> list[tuple[str, str | None]] | str:
    """The (circuit, model) pairs to run, or why the request is malformed."""
    from mikb.reproduce.runner import ReproError, load_script

    if args.all and args.circuit:
        return (f"give a circuit id or --all, not both (--all runs every circuit; "
                f"to run only {args.circuit}: mikb reproduce {args.circuit})")
    if args.circuit:
        return [(args.circuit, args.model)]
    if not args.all:
        return "give a circuit id or --all"
    jobs: list[tuple[str, str | None]] = []
    for cid, circuit in sorted(kb.circuits.items()):
        try:
            models = load_script(circuit.script_path).SPEC.models
        except ReproError as exc:
            print(f"{cid}: {exc}", file=sys.stderr)
            continue
        jobs += [(cid, m) for m in models if not args.model or m == args.model]
    return jobs


def _cmd_reproduce(args, root: Path) -> int:
    """Exit codes: 0 ok, 1 a run failed or was refused, 2 a malformed request, 3 a model's
    weights are unavailable (single run), 128 + signal number when interrupted (130: Ctrl-C)."""
    from mikb.loader import load_knowledge_base
    from mikb.reproduce.runner import ReproError, reproduce
    from mikb.reproduce.supervise import forward_signals, interrupted

    kb = load_knowledge_base(root)
    jobs = _reproduce_jobs(args, kb)
    if isinstance(jobs, str):
        print(f"mikb reproduce: {jobs}", file=sys.stderr)
        return 2

    def one(job):
        cid, model = job
        try:
            return reproduce(kb, cid, model, seed=args.seed, quick=args.quick, force=args.force,
                             timeout_s=args.timeout, show_progress=not args.no_progress, device=args.device,
                             dry_run=args.dry_run)
        except ReproError as exc:
            return exc

    # Handlers in the main thread: the worker threads' children are ended on SIGINT/SIGTERM.
    with forward_signals(), ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        outcomes = list(pool.map(one, jobs))
        signum = interrupted()
    code = 0
    for _job, outcome in zip(jobs, outcomes, strict=True):
        if isinstance(outcome, Exception):
            print(f"mikb reproduce: {outcome}", file=sys.stderr)
            code = code or 1
            continue
        took = "" if outcome.status in ("cached", "due") else f" ({outcome.wall_time_s:.1f} s)"
        print(f"{outcome.circuit_id} on {outcome.model_id} [{outcome.mode}]: {outcome.status}{took} — {outcome.message}")
        if outcome.status == "failed":
            code = 1
        elif outcome.status == "unavailable" and not args.all:
            code = code or 3
    return 128 + signum if signum else code


if __name__ == "__main__":
    sys.exit(main())
