"""Hand-corrupted stores through every public entry point (issue 26, "Trust nothing": the fuzz test).

Each damage kind of ``tests/_corrupt.py`` (link rows and fragments out of
range, a wrong vertex dtype, negative / zero / NaN bin and chunk shapes,
truncated, garbage, retyped and missing chunks, truncated metadata, a
symbolic link at every folder level pointing outside the store, a root
listing 10,000 levels) is applied to fresh copies of two small real stores
(points and streamlines, a three-level pyramid with cross-level links, and
the level-0-only twin a ``build`` starts from).  Every entry point then runs
on it in a separate process under a time limit and an address-space limit:
``info``, ``viewer.open`` in a headless napari, ``read_level`` per level with
and without a box, drilling (``parents`` / ``children``), ``density_pyramid``,
``export-dzi``, ``coarsen_level``, ``build``, ``remove``, ``repair --dry-run``,
``repair`` and ``download`` from a local web server.

Each must end within its limit, without a ``MemoryError``, writing nothing
outside the store (``outside/`` beside it, and the folder's listing, are
compared before and after), and either succeed with the data the intact
store gives or fail with one line that says what is wrong: no traceback, no
raw zarr / numpy error.  A writer that succeeds on a store holding a symbolic
link breaks docs/safety.md's promise to refuse it.

The whole matrix runs once per session (two processes at a time) for the
kinds selected; each test then reads its result.  Cases that fail on ``main``
today are listed in ``KNOWN_FAILURES`` and marked ``xfail(strict=False)``:
the list shrinks as the fixes land.  ``NZV_FUZZ_REPORT=PATH`` writes the
table of every failure there.
"""

from __future__ import annotations

import os
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import _corrupt  # noqa: E402 - the helper module beside this file

#: seconds each entry point may take: on these small stores each takes under 8 s here when all is well,
#: with the machine's two cores shared by four other test runs (opening in napari the longest)
LIMIT = float(os.environ.get("NZV_FUZZ_LIMIT", "30"))
#: damage kinds per process running the library and CLI entry points; processes running napari
KINDS_PER_PROCESS, VIEWER_PROCESSES = 3, 4
#: the address space each process may use
MEMORY = 3 * 2**30
KINDS = ("pristine", *_corrupt.KINDS)
TEMPLATES = _corrupt.TEMPLATES
ENTRIES = _corrupt.ENTRIES

#: What a failure message must mention (every pattern, case-insensitive), and must not, per damage kind.
WORDS: dict[str, tuple[list[str], str | None]] = {
    "links_huge": ([r"link"], None),
    "links_negative": ([r"link"], None),
    "fragment_start_beyond": ([r"fragment"], r"(?<!not )missing"),
    "fragment_count_huge": ([r"fragment"], r"(?<!not )missing"),
    "vertices_int8": ([r"int8|dtype|data type"], None),
    "bin_negative": ([r"bin"], None),
    "bin_zero": ([r"bin"], None),
    "bin_nan": ([r"bin"], None),
    "chunk_shape_negative": ([r"chunk"], None),
    "chunk_shape_zero": ([r"chunk"], None),
    "chunk_shape_nan": ([r"chunk"], None),
    "chunk_truncated": ([r"chunk|corrupt|damaged|truncated"], r"(?<!not )missing"),
    "chunk_garbage": ([r"chunk|corrupt|damaged"], r"(?<!not )missing"),
    "chunk_retyped": ([r"type"], r"(?<!not )missing"),
    "chunk_missing": ([r"missing|not found|no such"], None),
    "root_truncated": ([r"zarr\.json"], None),
    "level_truncated": ([r"level", r"zarr\.json"], r"root metadata"),
    "levels_10000": ([r"level"], None),
    "symlink_root": ([r"symbolic link"], None),
    "symlink_level": ([r"symbolic link"], None),
    "symlink_array": ([r"symbolic link"], None),
    "symlink_c": ([r"symbolic link"], None),
    "symlink_chunk_folder": ([r"symbolic link"], None),
    "symlink_chunk_file": ([r"symbolic link"], None),
}

# (template, kind, entry) or (kind, entry) -> why it fails on main today, run as a non-strict xfail; empty
# since issue 26 closed: a new failure is a failing test. Taken from the table NZV_FUZZ_REPORT writes.
KNOWN_FAILURES: dict[tuple[str, ...], str] = {}


def known_failure(template: str, kind: str, entry: str) -> str | None:
    return KNOWN_FAILURES.get((template, kind, entry)) or KNOWN_FAILURES.get((kind, entry))


# ------------------------------------------------------------------------------------------- verdicts

_FRAME = re.compile(r'File "[^"]*?/(napari_zarr_vectors/[^"]+)", line (\d+), in (\S+)')


def where(tb: str | None) -> str:
    """The deepest frame of our package in a traceback, as ``module.py:LINE function``."""
    frames = _FRAME.findall(tb or "")
    return (
        f" (at {frames[-1][0].removeprefix('napari_zarr_vectors/')}:{frames[-1][1]} {frames[-1][2]})" if frames else ""
    )


def last_line(text: str | None) -> str:
    lines = [ln for ln in (text or "").splitlines() if ln.strip()]
    return lines[-1].strip()[:220] if lines else ""


def message_problems(kind: str, message: str) -> list[str]:
    """What is unclear about a failure message for damage ``kind``."""
    out = []
    text = message.strip()
    if "\n" in text:
        out.append(f"message of {len(text.splitlines())} lines: {last_line(text)!r}")
    if "Traceback" in text:
        out.append("traceback in the message")
    if "MemoryError" in text or "Unable to allocate" in text:
        out.append(f"a memory error's text: {text[:200]!r}")
    needed, forbidden = WORDS.get(kind, ([], None))
    missing = [w for w in needed if not re.search(w, text, re.I)]
    if missing:
        out.append(f"message does not say what is wrong (no {' / '.join(missing)}): {text[:200]!r}")
    if forbidden and re.search(forbidden, text, re.I):
        out.append(f"message says {forbidden!r}: {text[:200]!r}")
    return out


def problems(kind: str, entry: str, record: dict, reference: dict | None) -> list[str]:
    """Every way ``record`` falls short of "ends in time, writes nothing outside, clear message or correct data"."""
    out: list[str] = []
    if record.get("timeout"):
        how = "hung where a signal cannot reach; killed" if record.get("killed") else "stopped by SIGALRM"
        return [f"timeout: still running after {LIMIT:g} s ({how})"] + [
            f"wrote outside the store: {c}" for c in record.get("outside", [])
        ]
    if "died" in record:
        tail = record.get("stderr", "")
        what = "MemoryError" if "MemoryError" in tail else f"process died (status {record['died']})"
        return [f"{what}: {last_line(tail)}"]
    out += [f"wrote outside the store: {c}" for c in record.get("outside", [])]
    symlinked = kind.startswith("symlink_") and entry in _corrupt.WRITERS
    if "cli" in record:
        r = record["cli"]
        if r.get("traceback") or "Traceback" in r["stderr"]:
            out.append(f"traceback: {last_line(r.get('traceback') or r['stderr'])}{where(r.get('traceback'))}")
        elif r["rc"] != 0:
            out += message_problems(kind, r["stderr"].strip().removeprefix("error: "))
        else:
            if symlinked:
                out.append("succeeded on a store with a symbolic link (docs/safety.md promises a refusal)")
            if entry == "download" and r.get("differs"):
                out.append(f"download succeeded but its copy differs from the source: {r['differs'][:3]}")
            ref = (reference or {}).get("cli", {})
            if entry not in ("repair", "repair_dry", "download") and r.get("digest") != ref.get("digest"):
                out.append(
                    f"succeeded with other data than the intact store: {_diff(ref.get('digest'), r.get('digest'))}"
                )
    elif "calls" in record:
        refs = {c["name"]: c for c in (reference or {}).get("calls", [])}
        for call in record["calls"]:
            if not call["ok"]:
                if "MemoryError" in call["type"]:
                    out.append(f"{call['name']}: MemoryError{where(call['traceback'])}")
                elif not call["store_error"]:
                    first = (call["message"].splitlines() or [""])[0][:200]
                    out.append(f"{call['name']}: raw {call['type']}: {first}{where(call['traceback'])}")
                else:
                    out += [f"{call['name']}: {p}" for p in message_problems(kind, call["message"])]
            else:
                if symlinked:
                    out.append(f"{call['name']} succeeded on a store with a symbolic link (docs promise a refusal)")
                ref = refs.get(call["name"])
                if ref is not None and ref.get("ok") and call["digest"] != ref["digest"]:
                    out.append(f"{call['name']}: silently other data: {_diff(ref['digest'], call['digest'])}")
    elif "open" in record:
        o = record["open"]
        for tb in o["escaped"]:
            out.append(f"exception escaped in napari: {last_line(tb)}{where(tb)}")
        if o["exception"]:
            out.append(f"viewer.open raised: {last_line(o['exception'])}{where(o['exception'])}")
        said = [n for n in o["notifications"] if n["severity"] in ("error", "warning")]
        for n in said:
            if n["exception"]:
                out.append(f"notification carries a traceback: {last_line(n['exception'])}{where(n['exception'])}")
            else:
                out += [f"{n['severity']}: {p}" for p in message_problems(kind, n["message"])]
        if not o["settled"]:
            out.append("the view never settled")
        ref = (reference or {}).get("open", {})
        if not said:
            if not o["layers"]:
                out.append("opened nothing and said nothing")
            elif o["layers"] != ref.get("layers"):
                out.append(f"silently shows other data: {_diff(ref.get('layers'), o['layers'])}")
    return out


def _diff(a, b) -> str:
    if isinstance(a, str) and isinstance(b, str):
        la, lb = a.splitlines(), b.splitlines()
        changed = [f"{x!r} -> {y!r}" for x, y in zip(la, lb, strict=False) if x != y]
        return "; ".join(changed[:2]) or f"{len(la)} -> {len(lb)} lines"
    return f"{str(a)[:120]} -> {str(b)[:120]}"


# -------------------------------------------------------------------------------------------- running


def _processes(kinds: list[str]) -> list[list[str]]:
    """The jobs (``KIND:TEMPLATE:ENTRY``) of each driver process: napari's first (they take longest)."""
    opens = [f"{k}:{t}:open" for k in kinds for t in TEMPLATES]
    viewers = [opens[i::VIEWER_PROCESSES] for i in range(VIEWER_PROCESSES)]
    groups = [kinds[i : i + KINDS_PER_PROCESS] for i in range(0, len(kinds), KINDS_PER_PROCESS)]
    entries = [[f"{k}:{t}:{e}" for k in g for t in TEMPLATES for e in ENTRIES if e != "open"] for g in groups]
    return [jobs for jobs in viewers + entries if jobs]


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    src = str(Path(__file__).parents[1] / "src")
    env["PYTHONPATH"] = os.pathsep.join([src, str(Path(__file__).parent), env.get("PYTHONPATH", "")])
    env["MALLOC_ARENA_MAX"] = "2"  # glibc reserves 64 MiB of address space per thread arena otherwise
    env["NAPARI_ZARR_VECTORS_VERTEX_BUDGET"] = "1000000"  # every level of these stores fits: level 0 shows
    if not env.get("DISPLAY"):
        env["QT_QPA_PLATFORM"] = "offscreen"
    return env


def _selected_kinds(session) -> set[str]:
    kinds = {"pristine"}
    for item in session.items:
        spec = getattr(item, "callspec", None)
        if spec is not None and item.module is sys.modules[__name__] and "kind" in spec.params:
            kinds.add(spec.params["kind"])
    return kinds


@pytest.fixture(scope="session")
def fuzz(request, tmp_path_factory) -> dict[tuple[str, str, str], dict]:
    """What every selected (kind, template, entry) did; the templates are written once."""
    root = tmp_path_factory.mktemp("fuzz")
    _corrupt.make_templates(root / "templates")
    env = _child_env()
    processes = _processes(sorted(_selected_kinds(request.session)))

    def run(numbered):
        i, jobs = numbered
        return _corrupt.run_jobs(root / "runs" / str(i), root / "templates", jobs, limit=LIMIT, memory=MEMORY, env=env)

    results: dict[tuple[str, str, str], dict] = {}
    with ThreadPoolExecutor(max_workers=2) as pool:
        for records in pool.map(run, enumerate(processes)):
            for job, record in records.items():
                kind, template, entry = job.split(":")
                results[(kind, template, entry)] = record
    report = os.environ.get("NZV_FUZZ_REPORT")
    if report:
        Path(report).write_text(failure_table(results))
    return results


def failure_table(results: dict[tuple[str, str, str], dict]) -> str:
    """A Markdown table of every failing (kind, template, entry) and what happened, and the time each took."""
    rows = ["| kind | template | entry | s | what happened |", "|---|---|---|---|---|"]
    for (kind, template, entry), record in sorted(results.items()):
        found = problems(kind, entry, record, results.get(("pristine", template, entry)))
        if found:
            text = "<br>".join(p.replace("|", "\\|") for p in found[:4])
            rows.append(f"| {kind} | {template} | {entry} | {record.get('seconds', 0):.1f} | {text} |")
    return "\n".join(rows) + "\n"


def _params():
    for kind in KINDS:
        for template in TEMPLATES:
            for entry in ENTRIES:
                reason = known_failure(template, kind, entry)
                marks = [pytest.mark.xfail(strict=False, reason=reason)] if reason else []
                yield pytest.param(kind, template, entry, id=f"{kind}-{template}-{entry}", marks=marks)


@pytest.mark.parametrize(("kind", "template", "entry"), list(_params()))
def test_a_damaged_store_gives_a_clear_message_or_correct_data(fuzz, kind, template, entry):
    record = fuzz[(kind, template, entry)]
    found = problems(kind, entry, record, fuzz.get(("pristine", template, entry)))
    assert not found, "\n".join(found)


def test_the_damage_is_real(tmp_path):
    """Each kind changes the stores it claims to (a corruption that did nothing would test nothing)."""
    templates = tmp_path / "templates"
    _corrupt.make_templates(templates)
    for template in TEMPLATES:
        intact = {}
        for kind in KINDS:
            case = tmp_path / "cases" / template / kind
            _corrupt.corrupt(kind, templates / template, case)
            state = {name: _corrupt.fingerprint(case / name) for name in ("store.zv", "flat.zv")}
            if kind == "pristine":
                intact = state
                continue
            assert state["store.zv"] != intact["store.zv"], (template, kind)
            if not kind.startswith("links_"):  # the level-0-only twin has no links to damage
                assert state["flat.zv"] != intact["flat.zv"], (template, kind)
