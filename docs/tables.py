"""The docs' tables that restate what the project holds, generated from it so that they cannot drift.

    python docs/tables.py                # rewrite every generated table in README.md and docs/*.md
    python docs/tables.py --check [FILE ...]   # exit 1 naming each table that differs from its source

A number in the prose is generated too where a comment right after it names its source,
`99.69%<!-- = manifest:vgg_bn:test_acc -->`: `manifest:MODEL:KEY` (the shipped weights' records) or
`measured:NAME:KEY` (docs/results/measured.json, which `python docs/measure.py` writes by running the
documented commands); it keeps its shape (a percentage, and its number of decimals).

A generated table sits between `<!-- table: NAME [ARGUMENT] -->` and `<!-- end table -->`:

    weights                 the shipped weights, from digits_zoo/models/weights/manifest.json and the files
    leaderboard CSV         a leaderboard.csv that a sweep or `python -m digits_zoo.leaderboard` wrote
    seeds CSV               the same, one row per group of seeds: mean, std, 95% CI, Welch's t-test
    config-groups           every config group under configs/ and its options, from their comments
    config-options          every plain option of train.yaml, data/mnist.yaml and trainer/default.yaml
    demo-load JSON          the demo under load, from the JSON that benchmarks/demo_load.py wrote
    robustness              the shipped models on the robustness benchmark, from their manifest records
    reading JSON            a model on the benchmark per way of preparing pictures (benchmarks/reading.py's JSON)
    recipes NAME,NAME,...   the shipped robust_vgg and vgg_bn, then recipes measured on the benchmark (measured.json)
    zoo-sweep JSON          the zoo's sweep one job after another and in parallel (benchmarks/zoo_sweep.py's JSON)
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from digits_zoo import leaderboard

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs"
BLOCK = re.compile(
    r"(<!-- table: (?P<name>[\w-]+)(?: (?P<argument>\S+))? -->\n)(?P<body>.*?)(<!-- end table -->)", re.DOTALL
)


table = leaderboard.markdown_table


def weights_table() -> str:
    from digits_zoo.models.pretrained import SHIPPED, manifest

    rows = [
        [
            f"`{name}`",
            f"{100 * e['test_acc']:.2f}%",
            f"{e['test_loss']:.4f}",
            f"{e['params']:,}",
            f"{e['macs']:,}",
            f"`{e['command']}`",
            str(e["seed"]),
            str(e["epochs"]),
            f"{e['train_seconds']:.1f}",
            f"{(SHIPPED / e['file']).stat().st_size / 1e6:.2f} MB",
        ]
        for name, e in sorted(manifest().items(), key=lambda item: -item[1]["test_acc"])
    ]
    return table(
        [
            "model",
            "test accuracy",
            "test loss",
            "parameters",
            "multiply-adds",
            "command that trained it",
            "seed",
            "epochs",
            "training seconds",
            "file",
        ],
        rows,
    )


def leaderboard_table(csv_path: str) -> str:
    return leaderboard.runs_markdown(leaderboard.read(ROOT / csv_path))


def seeds_table(csv_path: str) -> str:
    return leaderboard.summary_markdown(leaderboard.read(ROOT / csv_path))


def first_sentence(path: Path) -> str:
    """The first sentence of the comment a config file starts with (after `# @package ...`)."""
    comment = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        if not line.startswith("# @package"):
            comment.append(line.lstrip("# "))
    text = " ".join(comment)
    if not text:
        raise SystemExit(f"error: {path.relative_to(ROOT)} starts without a comment that says what it is; add one")
    return re.split(r"(?<=\.)\s", text, maxsplit=1)[0]


def config_groups_table() -> str:
    defaults = re.findall(r"^  - (\w+): (\S+)", (CONFIGS / "train.yaml").read_text(), re.MULTILINE)
    default = dict(defaults)
    rows = []
    for group, _ in defaults:
        options = sorted((CONFIGS / group).glob("*.yaml"))
        if group == "model":  # one file per registered model, listed with the models: adding one changes no table
            option = f"`{default[group]}` (default), or any registered model ([the zoo](models.md#the-zoo))"
            rows.append(
                [f"`{group}`", option, "a registered model: its `name` and keyword arguments (`model.kwargs.*`)"]
            )
            continue
        if default[group] == "null":
            rows.append([f"`{group}`", "`null` (default)", "none"])
        for option in options:
            mark = " (default)" if option.stem == default[group] else ""
            rows.append([f"`{group}`", f"`{option.stem}`{mark}", first_sentence(option).replace("|", "\\|")])
    return table(["group", "option", "what it is"], rows)


def plain_options(path: Path, prefix: str = "") -> list[list[str]]:
    """`key | default | comment` for each leaf of a plain YAML file (not `_target_`, not paths or hydra)."""
    rows, parents = [], []  # parents: (indent, key) of the mappings around the current line
    for line in path.read_text().splitlines():
        match = re.match(r"^(\s*)([\w]+):\s*(.*?)\s*(?:#\s*(.*))?$", line)
        if not match:
            if line.strip().startswith("#") and rows and line.startswith(" "):
                rows[-1][2] += " " + line.strip().lstrip("# ")  # a comment continued on the next line
            continue
        indent, key, value, comment = len(match[1]), match[2], match[3], match[4] or ""
        parents = [(i, k) for i, k in parents if i < indent]
        if not value:  # a mapping: its keys follow, indented
            parents.append((indent, key))
            continue
        name = prefix + ".".join([k for _, k in parents] + [key])
        if key == "_target_" or name.split(".")[0] in ("paths", "hydra", "defaults"):
            continue
        rows.append([f"`{name}`", f"`{value}`", comment.replace("|", "\\|")])
    return rows


def config_options_table() -> str:
    rows = (
        plain_options(CONFIGS / "train.yaml")
        + plain_options(CONFIGS / "data" / "mnist.yaml", "data.")
        + plain_options(CONFIGS / "trainer" / "default.yaml", "trainer.")
    )
    return table(["option", "default", "what it does"], rows)


def demo_load_table(json_path: str) -> str:
    import json

    results = json.loads((ROOT / json_path).read_text())
    rows = [
        [
            kind,
            f"{row['bytes'] / 1000:,.0f} kB",
            str(row["requests"]),
            ", ".join(f"{count} x {status}" for status, count in sorted(row["statuses"].items())),
            f"{row['p50_ms']:,.0f} ms",
            f"{row['p95_ms']:,.0f} ms",
        ]
        for kind, row in results["kinds"].items()
    ]
    return (
        table(["picture", "body", "requests", "answers", "p50", "p95"], rows)
        + f"\nThe server used {results['server_rss_mb_after_warm_up']} MB after the warm-up and "
        f"{results['server_peak_rss_mb']} MB at its peak (VmHWM).\n"
    )


def robustness_table() -> str:
    from digits_zoo.data.corruptions import CORRUPTIONS
    from digits_zoo.models.pretrained import manifest

    entries = sorted(
        ((n, e) for n, e in manifest().items() if "mnist_c" in e), key=lambda item: -item[1]["mnist_c_mean"]
    )
    rows = [["clean (MNIST's test set)", *(f"{100 * e['test_acc']:.2f}" for _, e in entries)]]
    rows += [[f"`{c}`", *(f"{100 * e['mnist_c'][c]:.1f}" for _, e in entries)] for c in CORRUPTIONS]
    rows.insert(
        1, ["**MNIST-C mean** (the first 15 below)", *(f"**{100 * e['mnist_c_mean']:.2f}**" for _, e in entries)]
    )
    return table(["accuracy (%)", *(f"`{n}`" for n, _ in entries)], rows)


def reading_table(json_path: str) -> str:
    import json

    results = json.loads((ROOT / json_path).read_text())
    sets = [name for name in results["preparations"][0]["accuracy"] if name != "clean"]
    rows = [
        [p["name"], f"{100 * p['accuracy']['clean']:.2f}", f"{100 * p['mnist_c_mean']:.2f}"]
        + [f"{100 * p['accuracy'][s]:.1f}" for s in sets]
        for p in results["preparations"]
    ]
    return table(["preparation", "clean", "MNIST-C mean", *(f"`{s}`" for s in sets)], rows)


def recipes_table(names: str) -> str:
    import json
    import shlex

    from digits_zoo.data.corruptions import CORRUPTIONS
    from digits_zoo.models.pretrained import manifest

    shipped = manifest()
    measured = json.loads((ROOT / "docs" / "results" / "measured.json").read_text())

    def changes(command: str) -> str:  # the overrides that make the recipe, past `python train.py`
        words = shlex.split(command)[2:]
        return " ".join(f"`{w}`" for w in words if not w.startswith(("seed=", "robustness=", "threads=")))

    rows = []  # (recipe, clean accuracy, MNIST-C mean, {corruption: accuracy})
    for name in ("robust_vgg", "vgg_bn"):
        e = shipped[name]
        rows.append(
            (
                f"{changes(e['command'])} (`{name}` shipped, seed {e['seed']})",
                e["test_acc"],
                e["mnist_c_mean"],
                e["mnist_c"],
            )
        )
    for name in names.split(","):
        m = measured[name]
        seed = next(w for w in shlex.split(m["command"]) if w.startswith("seed="))
        corruptions = {c: m[f"mnist_c/{c}"] for c in CORRUPTIONS}
        rows.append(
            (
                f"{name}: {changes(m['command'])} ({seed.replace('=', ' ')})",
                m["test/acc"],
                m["mnist_c/mean"],
                corruptions,
            )
        )
    return table(
        ["recipe", "clean", "MNIST-C mean", *(f"`{c}`" for c in CORRUPTIONS)],
        [
            [r, f"{100 * clean:.2f}", f"{100 * mean:.2f}", *(f"{100 * c[k]:.1f}" for k in CORRUPTIONS)]
            for r, clean, mean, c in rows
        ],
    )


def zoo_sweep_table(json_path: str) -> str:
    import json

    sweeps = json.loads((ROOT / json_path).read_text())["sweeps"]
    times = [[name, f"`{s['command']}`", f"{s['wall_seconds'] / 60:.1f} min"] for name, s in sweeps.items()]
    same = "parallel = sequential_1_thread" if {"parallel", "sequential_1_thread"} <= set(sweeps) else None
    rows = []
    for model in next(iter(sweeps.values()))["models"]:
        row = [f"`{model}`", *(f"{100 * float(s['models'][model]['test/acc']):.2f}%" for s in sweeps.values())]
        if same:
            equal = sweeps["parallel"]["models"][model] == sweeps["sequential_1_thread"]["models"][model]
            row.append("yes" if equal else "no")
        rows.append(row)
    return (
        table(["sweep", "command", "wall time"], times)
        + "\nEach model's test accuracy in each sweep's leaderboard"
        + (f" (`{same}`: every figure of the leaderboard equal)" if same else "")
        + ":\n\n"
        + table(["model", *sweeps, *([f"`{same}`"] if same else [])], rows)
    )


TABLES = {
    "weights": weights_table,
    "leaderboard": leaderboard_table,
    "seeds": seeds_table,
    "config-groups": config_groups_table,
    "config-options": config_options_table,
    "demo-load": demo_load_table,
    "robustness": robustness_table,
    "reading": reading_table,
    "zoo-sweep": zoo_sweep_table,
    "recipes": recipes_table,
}


VALUE = re.compile(r"(?P<value>\d[\d.]*%?)(?P<comment><!-- = (?P<source>\S+) -->)")


def source_value(source: str, where: str) -> float:
    """The number a `manifest:MODEL:KEY` or `measured:NAME:KEY` source names."""
    import json

    from digits_zoo.models.pretrained import manifest

    kind, _, path = source.partition(":")
    name, _, key = path.partition(":")
    records = {"manifest": manifest, "measured": lambda: json.loads((ROOT / "docs/results/measured.json").read_text())}
    try:
        return float(records[kind]()[name][key])
    except (KeyError, ValueError):
        raise SystemExit(f"error: {where}: no number at {source} (manifest:MODEL:KEY or measured:NAME:KEY)") from None


def formatted(value: float, like: str) -> str:
    """`value` in the shape of `like`: a percentage of a fraction, or a plain number, with as many decimals."""
    decimals = len(like.rstrip("%").partition(".")[2])
    return f"{100 * value:.{decimals}f}%" if like.endswith("%") else f"{value:.{decimals}f}"


def regenerate(text: str, where: str) -> tuple[str, list[str]]:
    """The text with every generated table and value made anew, and the names of those that changed."""
    changed = []

    def value(match: re.Match) -> str:
        new = formatted(source_value(match["source"], where), match["value"])
        if new != match["value"]:
            changed.append(f"value {match['source']} ({match['value']} -> {new})")
        return new + match["comment"]

    text = VALUE.sub(value, text)

    def make(match: re.Match) -> str:
        name, argument = match["name"], match["argument"]
        if name not in TABLES:
            raise SystemExit(f"error: {where}: unknown table {name!r}; known: {', '.join(TABLES)}")
        body = TABLES[name](argument) if argument else TABLES[name]()
        if body != match["body"]:
            changed.append(f"table {name}")
        return match[1] + body + match[5]

    return BLOCK.sub(make, text), changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Make the generated tables of README.md and docs/ anew.")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a table differs")
    parser.add_argument("files", nargs="*", type=Path, help="Markdown files (default: README.md, docs/*.md)")
    args = parser.parse_args(argv)
    files = args.files or [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    stale = []
    for path in files:
        text = path.read_text()
        new, changed = regenerate(text, str(path))
        stale += [f"{path}: {name}" for name in changed]
        if changed and not args.check:
            path.write_text(new)
            print(f"rewrote {path}: {', '.join(changed)}")
    if args.check and stale:
        print(
            "\n".join(f"{line} differs from its source; run python docs/tables.py" for line in stale), file=sys.stderr
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
